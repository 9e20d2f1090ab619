"""Cold start, layer by layer: what a predictor scaled up from zero (or a new pod) spends before it answers.

For each model the platform serves (``ocr``, ``layout``, ``table``), each measured ``--runs`` times in fresh
processes (median, min and max):

  * the interpreter alone (``python -c pass``), and the interpreter with the service's imports;
  * the model's construction (its ONNX sessions and files) and its warm-up, timed inside one process, and
    each of its ONNX sessions' creation on its own;
  * process start to ``/readyz`` 200, and to the first answered ``/predict`` (a one-line image for OCR, a
    page for layout, a drawn table for the table model);
  * with ``--image TAG`` (a built service image and a running Docker engine): container start to ready and to
    the first answer, the container run as production runs it (read-only root, a tmpfs /tmp), on the host's
    network at a loopback port;
  * steady state: pages per second of a warm service under closed-loop load (2 clients, seeded document
    pages), so that a faster start is not paid for in throughput.

With ``--baseline DIR`` (another checkout of the project, e.g. ``git worktree add ../before <commit>``) and
``--baseline-image TAG``, the same figures are taken for that code in the same run, its runs interleaved
with the current code's (one of each in turn, their order alternating), and the ratios current / baseline
are reported.

Run: ``python bench/coldstart_bench.py [--runs 5] [--image ocr:dev] [--baseline ../before --baseline-image
ocr:before] [--label after] [--record]``; results go to artifacts/bench/coldstart.json, or
bench/results/coldstart.json with ``--record`` (runs with other labels are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import results_dir, write_result  # noqa: E402
from bench.throughput_bench import closed_loop  # noqa: E402
from harness.ports import LOOPBACK, free_port  # noqa: E402
from harness.processes import ManagedProcess  # noqa: E402
from harness.provisioning import samples  # noqa: E402

MODELS = ("ocr", "layout", "table")
IMPORTS = "import onnxruntime, numpy, PIL.Image, fastapi, uvicorn; import service.api.app, service.models"
# Inside one process: the model's construction and its warm-up, printed as JSON.
_LAYERS = """
import dataclasses, json, sys, time
t0 = time.perf_counter()
from service.models import load
from service.settings import load_settings
t1 = time.perf_counter()
model = load(load_settings(model=sys.argv[1]))
t2 = time.perf_counter()
model.warm_up()
t3 = time.perf_counter()
# Each ONNX file the model loaded, its session made again the way the service makes it (graphs optimized at
# ENABLE_ALL, no arena, the model's threads): what one session's creation costs.
import onnxruntime as ort
files = {}
for holder in (model, getattr(model, "ocr", None)):
    if holder is not None:
        for f in dataclasses.fields(holder.files):
            path = getattr(holder.files, f.name)
            if path is not None and str(path).endswith(".onnx"):
                files[f"{getattr(holder, 'kind', '')}.{f.name}"] = path
sessions = {}
for name, path in files.items():
    opts = ort.SessionOptions()
    opts.enable_cpu_mem_arena = False
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads, opts.inter_op_num_threads = model.threads, 1
    start = time.perf_counter()
    ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    sessions[name] = time.perf_counter() - start
print(json.dumps({"imports_s": t1 - t0, "construct_s": t2 - t1, "warm_up_s": t3 - t2, "sessions_s": sessions}))
"""
DEADLINE_S = 120.0
STEADY_PAGES = 24
STEADY_CLIENTS = 2


def page(model: str) -> bytes:
    if model == "layout":
        return samples.encode(samples.layout_page(seed=1))
    if model == "table":
        return samples.encode(samples.table(2, rows=4, columns=3).image)
    return samples.words_image(seed=1).encode()


def stats(values: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3), "runs": len(values)}  # fmt: skip


def timed_command(argv: list[str], tree: Path = ROOT) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=tree, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - start


def in_process(model: str, tree: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _LAYERS, model], cwd=tree, check=True, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def first_answer(url: str, data: bytes, start: float) -> tuple[float, float]:
    """Seconds from ``start`` to /readyz 200, and to the first 200 answer of /predict (polled, no gaps)."""
    deadline = start + DEADLINE_S
    ready = None
    while time.perf_counter() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                ready = time.perf_counter() - start
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    if ready is None:
        raise RuntimeError(f"{url} was not ready within {DEADLINE_S} s")
    answer = httpx.post(f"{url}/predict", files={"file": ("page.png", data)}, timeout=60)
    answer.raise_for_status()
    return ready, time.perf_counter() - start


def service_process(model: str, tree: Path, log: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    env = {"OCR_HOST": LOOPBACK, "OCR_PORT": str(port), "OCR_MODEL": model}
    process = ManagedProcess(log.stem, [sys.executable, "-m", "service"], log, env=env, cwd=tree)
    return process, f"http://{LOOPBACK}:{port}"


def process_start(model: str, tree: Path, log: Path) -> tuple[float, float]:
    process, url = service_process(model, tree, log)
    start = time.perf_counter()
    process.start()
    try:
        return first_answer(url, page(model), start)
    finally:
        process.stop()


def steady_state(tree: Path, log: Path, pages: list[bytes], clients: int = STEADY_CLIENTS) -> float:
    """Pages per second of a warm OCR service under closed-loop load: ``clients`` each send the next page as
    soon as their answer came."""
    process, url = service_process("ocr", tree, log)
    process.start()
    try:
        first_answer(url, pages[0], time.perf_counter())
        with httpx.Client(timeout=120) as http:

            def send(body: bytes) -> int:
                return http.post(f"{url}/predict", files={"file": ("page.png", body)}).status_code

            run = closed_loop(send, pages, clients)
        if run["statuses"] != {200: len(pages)}:
            raise RuntimeError(f"not every page was answered 200 under load: {run['statuses']}")
        return float(run["per_s"])
    finally:
        process.stop()


def container_start(image: str, model: str) -> tuple[float, float]:
    port = free_port()
    name = f"coldstart-{model}-{port}"
    # The host's network, on a loopback port of its own: the bench's Docker engine may have no bridge (as CI's).
    argv = ["docker", "run", "-d", "--rm", "--name", name, "--read-only", "--tmpfs", "/tmp:size=256m",
            "--network", "host", "-e", f"OCR_HOST={LOOPBACK}", "-e", f"OCR_PORT={port}", "-e", f"OCR_MODEL={model}",
            image]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    try:
        return first_answer(f"http://{LOOPBACK}:{port}", page(model), start)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)


@dataclass(frozen=True)
class Code:
    """What is measured: a checkout of the project and, optionally, its built image."""

    label: str
    tree: Path
    image: str | None


def measure_model(model: str, runs: int, codes: list[Code], logs: Path) -> dict[str, dict[str, object]]:
    """Every layer of one model for each code, their runs interleaved (the order alternating each run)."""
    samples_of: dict[str, dict[str, list[float]]] = {c.label: {} for c in codes}

    def add(code: Code, key: str, value: float) -> None:
        samples_of[code.label].setdefault(key, []).append(value)

    for i in range(runs):
        for code in codes if i % 2 == 0 else codes[::-1]:
            layers = in_process(model, code.tree)
            add(code, "imports_in_process", layers["imports_s"])
            add(code, "construct", layers["construct_s"])
            add(code, "warm_up", layers["warm_up_s"])
            for name, seconds in layers["sessions_s"].items():
                add(code, f"session {name}", seconds)
            ready, answer = process_start(model, code.tree, logs / f"{code.label}-{model}-{i}.log")
            add(code, "process_to_ready", ready)
            add(code, "process_to_first_answer", answer)
            if code.image:
                ready, answer = container_start(code.image, model)
                add(code, "container_to_ready", ready)
                add(code, "container_to_first_answer", answer)
    return {label: {key: stats(values) for key, values in by_key.items()} for label, by_key in samples_of.items()}


def ratios(current: dict[str, object], baseline: dict[str, object]) -> dict[str, float]:
    """current / baseline of each median both have."""
    out = {}
    for key, value in current.items():
        other = baseline.get(key)
        if isinstance(value, dict) and isinstance(other, dict) and "median_s" in value and "median_s" in other:
            out[key] = round(value["median_s"] / other["median_s"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default=None, help="a built service image: measure container starts too")
    parser.add_argument("--model", action="append", choices=MODELS, default=[], help="default: every model")
    parser.add_argument("--label", default="current", help="name of this run in the results file")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout, measured in the same run")
    parser.add_argument("--baseline-image", default=None, help="the baseline's built image")
    parser.add_argument("--steady-rounds", type=int, default=2, help="steady-state rounds per code (0: none)")
    parser.add_argument("--record", action="store_true", help="write bench/results/coldstart.json")
    args = parser.parse_args()
    logs = Path(mkdtemp(prefix="coldstart-"))
    codes = [Code(args.label, ROOT, args.image)]
    if args.baseline is not None:
        codes.append(Code("baseline", args.baseline.resolve(), args.baseline_image))
    load_before = os.getloadavg()[0]
    run: dict[str, object] = {
        "interpreter": stats([timed_command([sys.executable, "-c", "pass"]) for _ in range(args.runs)]),
        "interpreter_and_imports": {
            c.label: stats([timed_command([sys.executable, "-c", IMPORTS], c.tree) for _ in range(args.runs)])
            for c in codes
        },
    }
    for model in args.model or MODELS:
        run[model] = measure_model(model, args.runs, codes, logs)
        print(f"{model}: {json.dumps(run[model])}", flush=True)
    if args.steady_rounds:
        pages = [samples.document(seed).encode() for seed in range(1, STEADY_PAGES + 1)]
        rates: dict[str, list[float]] = {c.label: [] for c in codes}
        for i in range(args.steady_rounds):
            for code in codes if i % 2 == 0 else codes[::-1]:
                rates[code.label].append(steady_state(code.tree, logs / f"{code.label}-steady-{i}.log", pages))
        run["steady_state_pages_per_s"] = {
            label: {"mean": round(statistics.fmean(r), 3), "rounds": [round(x, 3) for x in r]}
            for label, r in rates.items()
        }
        print(f"steady state: {json.dumps(run['steady_state_pages_per_s'])}", flush=True)
    if args.baseline is not None:
        run["ratios_to_baseline"] = {
            model: ratios(run[model][args.label], run[model]["baseline"])  # type: ignore[index]
            for model in args.model or MODELS
        }
        if args.steady_rounds:
            steady = run["steady_state_pages_per_s"]
            run["ratios_to_baseline"]["steady_state_pages_per_s"] = round(  # type: ignore[index]
                steady[args.label]["mean"] / steady["baseline"]["mean"],
                3,  # type: ignore[index]
            )
        print(f"ratios: {json.dumps(run['ratios_to_baseline'])}", flush=True)
    run["load_average_1m"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    previous = results_dir(args.record) / "coldstart.json"
    runs = json.loads(previous.read_text()).get("runs", {}) if previous.exists() else {}
    runs[args.label] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "images": {c.label: c.image for c in codes},
        "baseline": str(args.baseline) if args.baseline else None,
        **run,
    }
    path = write_result("coldstart", {"runs": runs}, record=args.record)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
