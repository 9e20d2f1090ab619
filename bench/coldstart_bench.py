"""Cold start, layer by layer: what a predictor scaled up from zero (or a new pod) spends before it answers.

For each model the platform serves (``ocr``, ``layout``, ``table``), each measured ``--runs`` times in fresh
processes (median, min and max):

  * the interpreter alone (``python -c pass``), and the interpreter with the service's imports;
  * the model's construction (its ONNX sessions and files) and its warm-up, timed inside one process;
  * process start to ``/readyz`` 200, and to the first answered ``/predict`` (a one-line image for OCR, a
    page for layout, a drawn table for the table model);
  * with ``--image TAG`` (a built service image and a running Docker engine): container start to ready and to
    the first answer, the container run as production runs it (read-only root, a tmpfs /tmp), on the host's
    network at a loopback port.

Run: ``python bench/coldstart_bench.py [--runs 5] [--image ocr:dev] [--label before] [--record]``; results go to
artifacts/bench/coldstart.json, or bench/results/coldstart.json with ``--record`` (runs with other labels are
kept, so a "before" and an "after" sit side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import mkdtemp

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import results_dir, write_result  # noqa: E402
from harness.ports import LOOPBACK, free_port  # noqa: E402
from harness.processes import ManagedProcess  # noqa: E402
from harness.provisioning import samples  # noqa: E402

MODELS = ("ocr", "layout", "table")
IMPORTS = "import onnxruntime, numpy, PIL.Image, fastapi, uvicorn; import service.api.app, service.models"
# Inside one process: the model's construction and its warm-up, printed as JSON.
_LAYERS = """
import json, sys, time
t0 = time.perf_counter()
from service.models import load
from service.settings import load_settings
t1 = time.perf_counter()
model = load(load_settings(model=sys.argv[1]))
t2 = time.perf_counter()
model.warm_up()
t3 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "construct_s": t2 - t1, "warm_up_s": t3 - t2}))
"""
DEADLINE_S = 120.0


def page(model: str) -> bytes:
    if model == "layout":
        return samples.encode(samples.layout_page(seed=1))
    if model == "table":
        return samples.encode(samples.table(2, rows=4, columns=3).image)
    return samples.words_image(seed=1).encode()


def stats(values: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(values), 3), "min_s": round(min(values), 3),
            "max_s": round(max(values), 3), "runs": len(values)}  # fmt: skip


def timed_command(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env={**os.environ, **(env or {})}, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - start


def in_process(model: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", _LAYERS, model], cwd=ROOT, check=True, capture_output=True,
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


def process_start(model: str, logs: Path, run: int) -> tuple[float, float]:
    port = free_port()
    env = {"OCR_HOST": LOOPBACK, "OCR_PORT": str(port), "OCR_MODEL": model}
    process = ManagedProcess(f"{model}-{run}", [sys.executable, "-m", "service"], logs / f"{model}-{run}.log", env=env)
    start = time.perf_counter()
    process.start()
    try:
        return first_answer(f"http://{LOOPBACK}:{port}", page(model), start)
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


def measure(model: str, runs: int, image: str | None, logs: Path) -> dict[str, object]:
    layers = [in_process(model) for _ in range(runs)]
    starts = [process_start(model, logs, i) for i in range(runs)]
    result: dict[str, object] = {
        "imports_in_process": stats([r["imports_s"] for r in layers]),
        "construct": stats([r["construct_s"] for r in layers]),
        "warm_up": stats([r["warm_up_s"] for r in layers]),
        "process_to_ready": stats([r for r, _ in starts]),
        "process_to_first_answer": stats([a for _, a in starts]),
    }
    if image:
        boots = [container_start(image, model) for _ in range(runs)]
        result["container_to_ready"] = stats([r for r, _ in boots])
        result["container_to_first_answer"] = stats([a for _, a in boots])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default=None, help="a built service image: measure container starts too")
    parser.add_argument("--model", action="append", choices=MODELS, default=[], help="default: every model")
    parser.add_argument("--label", default="current", help="name of this run in the results file")
    parser.add_argument("--record", action="store_true", help="write bench/results/coldstart.json")
    args = parser.parse_args()
    logs = Path(mkdtemp(prefix="coldstart-"))
    load_before = os.getloadavg()[0]
    run: dict[str, object] = {
        "interpreter": stats([timed_command([sys.executable, "-c", "pass"]) for _ in range(args.runs)]),
        "interpreter_and_imports": stats([timed_command([sys.executable, "-c", IMPORTS]) for _ in range(args.runs)]),
    }
    for model in args.model or MODELS:
        run[model] = measure(model, args.runs, args.image, logs)
        print(f"{model}: {json.dumps(run[model])}", flush=True)
    run["load_average_1m"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    previous = results_dir(args.record) / "coldstart.json"
    runs = json.loads(previous.read_text()).get("runs", {}) if previous.exists() else {}
    runs[args.label] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "image": args.image, **run}
    path = write_result("coldstart", {"runs": runs}, record=args.record)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
