"""Throughput by concurrency x intra-op threads at 1 and 2 CPUs, against the raw model and KServe's ModelServer.

In one run on one machine, on seeded document pages and small one-line images (``harness.provisioning.samples``), each
server pinned to its CPUs with ``taskset -c`` (the way a pod's CPU limit is emulated here), on loopback:

  * the grid: ``python -m service`` at OCR_MAX_CONCURRENCY x OCR_INTRA_OP_THREADS, at 1 CPU and at 2 CPUs
    (concurrency 3 and 4 get OCR_MEMORY_LIMIT_MB=2048: the budget refuses them at 1024);
  * the service with no settings at all (its default, resolved from the CPUs), at 1 and 2 CPUs;
  * the raw model in a process of its own (decode and read the same PNG bytes, no HTTP), at the old default
    (one inference, 2 threads) and the new one (two inferences, 1 thread each);
  * the peer: KServe's own ModelServer around the same model (``bench/peer_server.py``, run from the
    bench-only venv ``.venv-peer``: ``pip install -r bench/peer_requirements.txt``) in its default
    single-model configuration and in its best one (``--workers 2``, one thread each).

Each target gets the same work: the pages under closed-loop load (``LOAD`` clients, each sending the next
page as soon as its answer came: pages/s, p50/p95), then the small images one at a time (the latency of a
single small image: p50/p95), then the small images under the same load (images/s); its peak RSS is the sum
of ``VmHWM`` over its processes (the peer's workers included) after all of it. Only the counts are bounded:
it is one run, and on a shared machine the figures move from run to run.

Run: ``python bench/throughput_bench.py [--record] [--quick]``: results go to artifacts/bench/throughput.json
(and .md), or to bench/results with ``--record``; about 6 minutes on 2 cores, ``--quick`` about 2.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import percentile, results_dir, write_result  # noqa: E402
from harness.ports import LOOPBACK, free_port  # noqa: E402
from harness.processes import ManagedProcess  # noqa: E402
from harness.provisioning import samples  # noqa: E402

LOAD = 4  # closed-loop clients, as in issue 12's measurement
CPUSETS = {1: "0", 2: "0,1"}
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
BOUNDARY = "throughput-bench-boundary"
SMALL_P95_SLACK = 1.10  # the default's small-image p95 stays within 10% of the best (issue 12)
# The comparisons the defaults are judged by: measured again at the end, in the reverse order, and averaged,
# so that a machine that gets busier or quieter during the run favours none of them.
HEADLINE = (
    "service old default @ 2 CPU",
    "service default @ 2 CPU",
    "peer default @ 2 CPU",
    "peer best (workers 2) @ 2 CPU",
)
# The service's defaults before the concurrency was derived from the CPUs: one inference of all the CPUs'
# threads, and every block of 1 MiB or more its own mapping (now OCR_MALLOC_MMAP_THRESHOLD_KB, off).
OLD_DEFAULT = {"OCR_MAX_CONCURRENCY": "1", "OCR_INTRA_OP_THREADS": "2", "OCR_MALLOC_MMAP_THRESHOLD_KB": "1024"}


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # service | raw | peer
    cpus: int
    concurrency: int | None = None  # None: the service's default
    threads: int | None = None
    workers: int = 1  # the peer's processes
    env: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name} @ {self.cpus} CPU"


def grid(quick: bool) -> list[Target]:
    cells = [(1, 1, 1), (1, 2, 1), (2, 1, 1), (2, 1, 2), (2, 2, 1), (2, 2, 2), (2, 3, 1), (2, 4, 1)]
    if quick:
        cells = [(2, 1, 2), (2, 2, 1)]
    out = []
    for cpus, c, t in cells:
        env = {"OCR_MAX_CONCURRENCY": str(c), "OCR_INTRA_OP_THREADS": str(t)}
        if c > 2:
            env["OCR_MEMORY_LIMIT_MB"] = "2048"
        out.append(Target(f"service c{c} t{t}", "service", cpus, c, t, env=env))
    return out


def others(quick: bool) -> list[Target]:
    out = [Target("service old default", "service", 2, 1, 2, env=OLD_DEFAULT), Target("service default", "service", 2)]
    if not quick:
        out.insert(0, Target("service default", "service", 1))
    out += [
        Target("raw c1 t2", "raw", 2, 1, 2),
        Target("raw c2 t1", "raw", 2, 2, 1),
        Target("peer default", "peer", 2, 1, 2),
        Target("peer best (workers 2)", "peer", 2, 1, 1, workers=2),
    ]
    return out


# ---------------------------------------------------------------------------------------------- workload


@dataclass
class Workload:
    pages: list[bytes]
    small: list[bytes]


def workload(pages: int, small: int) -> Workload:
    return Workload(
        pages=[samples.document(seed=1000 + i, lines=8).encode() for i in range(pages)],
        small=[samples.words_image(seed=2000 + i).encode() for i in range(small)],
    )


def closed_loop(send: Callable[[bytes], int], bodies: list[bytes], clients: int) -> dict:
    """Send every body with ``clients`` clients, each sending its next as soon as its answer came."""
    pending = list(reversed(bodies))
    lock = threading.Lock()
    times: list[float] = []
    statuses: Counter[int] = Counter()

    def client() -> None:
        while True:
            with lock:
                if not pending:
                    return
                body = pending.pop()
            t = time.perf_counter()
            status = send(body)
            elapsed = time.perf_counter() - t
            with lock:
                times.append(elapsed)
                statuses[status] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - start
    return {
        "n": len(bodies),
        "per_s": round(len(bodies) / wall, 3),
        "p50_ms": round(percentile([x * 1000 for x in times], 50), 1),
        "p95_ms": round(percentile([x * 1000 for x in times], 95), 1),
        "statuses": dict(statuses),
    }


def measure(send: Callable[[bytes], int], work: Workload) -> dict:
    pages = closed_loop(send, work.pages, LOAD)
    alone = closed_loop(send, work.small, 1)
    small = closed_loop(send, work.small, LOAD)
    return {
        "pages": pages,
        "small_alone": {k: alone[k] for k in ("n", "p50_ms", "p95_ms", "statuses")},
        "small_load": small,
    }


# ---------------------------------------------------------------------------------------------- processes


def tree_peak_rss_mb(pid: int) -> float:
    """The sum of VmHWM over ``pid`` and its descendants, in MB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        total += next((int(x.split()[1]) / 1024 for x in status.splitlines() if x.startswith("VmHWM:")), 0.0)
    return round(total, 1)


def _pinned(cpus: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", CPUSETS[cpus], *argv]


def _wait(probe: Callable[[], bool], process: ManagedProcess, timeout: float = 120) -> None:
    process.wait_ready(probe, timeout=timeout, interval=0.25)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


_RESOLVE = (
    "from service.settings import load_settings; s = load_settings(); print(s.max_concurrency, s.intra_op_threads)"
)


def resolved(target: Target) -> dict:
    """The concurrency and threads the service's settings resolve to, pinned and configured as it is."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OCR_")}, **target.env}
    argv = _pinned(target.cpus, [sys.executable, "-c", _RESOLVE])
    out = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=True).stdout.split()
    return {"concurrency": int(out[-2]), "threads": int(out[-1])}


def run_http(target: Target, work: Workload, logs: Path) -> dict:
    port = free_port()
    if target.kind == "service":
        argv = [sys.executable, "-m", "service"]
        env = {"OCR_HOST": LOOPBACK, "OCR_PORT": str(port), **target.env}
        ready_url = f"http://{LOOPBACK}:{port}/readyz"
    else:
        argv = [str(PEER_PYTHON), str(ROOT / "bench" / "peer_server.py"), "--http_port", str(port)]
        argv += ["--grpc_port", str(free_port()), "--threads", str(target.threads or 0)]
        if target.workers > 1:
            argv += ["--workers", str(target.workers)]
        env = {}
        ready_url = f"http://{LOOPBACK}:{port}/v1/models/ocr"
    process = ManagedProcess(
        name=target.label.replace(" ", "-").replace("@", "at"),
        argv=_pinned(target.cpus, argv),
        log_path=logs / f"{target.kind}-{port}.log",
        env=env,
        cwd=ROOT,
    ).start()
    client = httpx.Client(timeout=180, limits=httpx.Limits(max_connections=LOAD + 1))
    if target.kind == "service":
        url, content_type = f"http://{LOOPBACK}:{port}/predict", f"multipart/form-data; boundary={BOUNDARY}"

        def body(data: bytes) -> bytes:
            head = (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="p.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            )
            return head.encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()
    else:
        url, content_type = f"http://{LOOPBACK}:{port}/v1/models/ocr:predict", "application/json"

        def body(data: bytes) -> bytes:
            return json.dumps({"instances": [{"image": {"b64": base64.b64encode(data).decode()}}]}).encode()

    def send(data: bytes) -> int:
        try:
            return client.post(url, content=data, headers={"content-type": content_type}).status_code
        except httpx.HTTPError:
            return 0

    try:
        _wait(lambda: _ok(ready_url), process)
        if target.workers > 1:  # each worker loads its model once started: wait for all of them
            _wait(lambda: tree_peak_rss_mb(process.pid) > 150 * (target.workers + 1), process)
        encoded = Workload([body(p) for p in work.pages], [body(s) for s in work.small])
        closed_loop(send, encoded.pages[: 2 * LOAD] + encoded.small[:LOAD], LOAD)  # warm-up, not counted
        result = measure(send, encoded)
        result["peak_rss_mb"] = tree_peak_rss_mb(process.pid)
        if target.kind == "service":
            result["resolved"] = resolved(target)
    finally:
        client.close()
        process.stop(grace=15)
    return result


_RAW = """
import json, sys, threading, time
sys.path.insert(0, sys.argv[1])
from bench.throughput_bench import closed_loop, Workload
from service.images import decode_image
from service.settings import load_settings
from service.startup import load_model
concurrency, threads, path = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
settings = load_settings(max_concurrency=concurrency, intra_op_threads=threads, log_level="warning")
model = load_model(settings).model
data = json.load(open(path))
work = Workload([bytes.fromhex(x) for x in data["pages"]], [bytes.fromhex(x) for x in data["small"]])
def send(body):
    model.read(decode_image(body, max_pixels=settings.max_pixels))
    return 200
closed_loop(send, work.pages[: 2 * concurrency] + work.small[:concurrency], concurrency)
out = {
    "pages": closed_loop(send, work.pages, concurrency),
    "small_alone": closed_loop(send, work.small, 1),
    "small_load": closed_loop(send, work.small, concurrency),
}
hwm = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
out["peak_rss_mb"] = round(int(hwm.split()[1]) / 1024, 1)
print(json.dumps(out))
"""


def run_raw(target: Target, work: Workload, logs: Path) -> dict:
    """The model in a process of its own, pinned like the servers: ``concurrency`` threads read the pages."""
    path = logs / "raw-workload.json"
    path.write_text(json.dumps({"pages": [p.hex() for p in work.pages], "small": [s.hex() for s in work.small]}))
    argv = [sys.executable, "-c", _RAW, str(ROOT), str(target.concurrency), str(target.threads), str(path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCR_")}
    done = subprocess.run(_pinned(target.cpus, argv), capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- report


def merge(runs: list[dict]) -> dict:
    """One target measured more than once: the mean of each figure (counts summed, the highest peak RSS)."""
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[0])
    for part in ("pages", "small_alone", "small_load"):
        merged: dict = {}
        for key in runs[0][part]:
            values = [r[part][key] for r in runs]
            if key == "statuses":
                merged[key] = dict(sum((Counter(v) for v in values), Counter()))
            elif key == "n":
                merged[key] = sum(values)
            else:
                merged[key] = round(statistics.fmean(values), 3 if key == "per_s" else 1)
        out[part] = merged
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    out["runs"] = [
        {
            "pages_per_s": r["pages"]["per_s"],
            "page_p95_ms": r["pages"]["p95_ms"],
            "small_alone_p95_ms": r["small_alone"]["p95_ms"],
            "peak_rss_mb": r["peak_rss_mb"],
        }
        for r in runs
    ]
    return out


def choose(cells: list[dict], cpus: int) -> dict | None:
    """The grid cell issue 12's rule picks at ``cpus``: the most pages/s among those whose small-image p95
    (alone) is within 10% of the best small-image p95 at those CPUs."""
    at = [c for c in cells if c["cpus"] == cpus]
    if not at:
        return None
    best_small = min(c["small_alone"]["p95_ms"] for c in at)
    eligible = [c for c in at if c["small_alone"]["p95_ms"] <= best_small * SMALL_P95_SLACK]
    return max(eligible, key=lambda c: c["pages"]["per_s"])


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def summarise(results: list[dict]) -> dict:
    by = {r["label"]: r for r in results}
    out: dict = {"chosen_by_rule": {}}
    cells = [r for r in results if r["kind"] == "service" and r["concurrency"] is not None]
    for cpus in CPUSETS:
        pick = choose(cells, cpus)
        if pick:
            out["chosen_by_rule"][str(cpus)] = {"concurrency": pick["concurrency"], "threads": pick["threads"]}
    default, old = by.get("service default @ 2 CPU"), by.get("service old default @ 2 CPU")
    peer, best = by.get("peer default @ 2 CPU"), by.get("peer best (workers 2) @ 2 CPU")
    raw_old, raw_new = by.get("raw c1 t2 @ 2 CPU"), by.get("raw c2 t1 @ 2 CPU")

    def per_s(r: dict) -> float:
        return float(r["pages"]["per_s"])

    def p95(r: dict) -> float:
        return float(r["pages"]["p95_ms"])

    def rss(r: dict) -> float:
        return float(r["peak_rss_mb"])

    comparisons = [
        ("default_vs_old_settings_today", default, by.get("service c1 t2 @ 2 CPU"), per_s),
        ("default_vs_old_default", default, old, per_s),
        ("default_vs_peer_default", default, peer, per_s),
        ("default_p95_vs_peer_default_p95", default, peer, p95),
        ("default_vs_peer_best", default, best, per_s),
        ("default_rss_vs_peer_best_rss", default, best, rss),
        ("old_default_vs_peer_default", old, peer, per_s),
        ("default_vs_raw_c2_t1", default, raw_new, per_s),
        ("old_default_vs_raw_c1_t2", old, raw_old, per_s),
    ]
    for key, a, b, metric in comparisons:
        if a and b:  # a cell a --quick run leaves out has no ratio
            out[key] = ratio(metric(a), metric(b))
    return out


def row(r: dict) -> str:
    resolved = r.get("resolved") or {}
    c = r["concurrency"] if r["concurrency"] is not None else f"auto: {resolved.get('concurrency', '?')}"
    t = r["threads"] if r["threads"] is not None else f"auto: {resolved.get('threads', '?')}"
    if r["kind"] == "peer":
        c = f"{r['workers']} process{'es' if r['workers'] > 1 else ''}, 1 request at a time each"
    p, a, s = r["pages"], r["small_alone"], r["small_load"]
    name = r["name"] + (f" (mean of {len(r['runs'])} runs)" if "runs" in r else "")
    return (
        f"| {name} | {r['cpus']} | {c} | {t} | **{p['per_s']}** | {p['p50_ms']:.0f} / {p['p95_ms']:.0f} |"
        f" {a['p50_ms']:.0f} / {a['p95_ms']:.0f} | {s['per_s']} | {r['peak_rss_mb']:.0f} |"
    )


def markdown(result: dict) -> str:
    head = (
        "| what | CPUs | concurrency | intra-op threads | pages/s | page p50 / p95 ms |"
        " small image alone p50 / p95 ms | small images/s | peak RSS MB |\n|---|---|---|---|---|---|---|---|---|"
    )
    results = result["results"]
    grid_rows = [r for r in results if r["kind"] == "service"]
    other_rows = [r for r in results if r["kind"] != "service" or r["concurrency"] is None]
    s = result["summary"]
    lines = [
        f"Machine: {result['machine_cpu']}; {result['corpus']}; closed-loop load of {LOAD} clients.",
        "",
        head,
        *(row(r) for r in grid_rows),
        "",
        head,
        *(row(r) for r in other_rows),
        "",
        f"chosen by the rule (most pages/s with the small-image p95 within 10% of its best): {s['chosen_by_rule']}",
        "ratios: " + ", ".join(f"{k} {v}" for k, v in s.items() if k != "chosen_by_rule"),
    ]
    return "\n".join(lines) + "\n"


def machine_cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{os.cpu_count()} x {line.split(':', 1)[1].strip()}"
    return f"{os.cpu_count()} CPUs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=12, help="pages per target (a multiple of the load)")
    parser.add_argument("--small", type=int, default=40, help="small images per target")
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer targets, fewer images")
    parser.add_argument("--no-peer", action="store_true", help="leave out KServe's ModelServer")
    parser.add_argument("--rounds", type=int, default=2, help="runs of the headline comparisons (1 with --quick)")
    parser.add_argument("--record", action="store_true", help="write to bench/results (committed), not artifacts/bench")
    args = parser.parse_args()
    if args.quick:
        args.pages, args.small, args.rounds = 4, 8, 1
    if len(os.sched_getaffinity(0)) < 2:
        print("needs 2 CPUs", file=sys.stderr)
        return 2
    targets = grid(args.quick) + others(args.quick)
    if args.no_peer or not PEER_PYTHON.exists():
        if not args.no_peer:
            print(f"no {PEER_PYTHON}: the peer is left out (pip install -r bench/peer_requirements.txt)", flush=True)
        targets = [t for t in targets if t.kind != "peer"]
    headline = [t for t in targets if t.label in HEADLINE]
    for _ in range(args.rounds - 1):
        targets += headline[::-1]
    work = workload(args.pages, args.small)
    results: list[dict] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="throughput-bench-") as tmp:
        for i, target in enumerate(targets, 1):
            t0 = time.perf_counter()
            measured = (run_raw if target.kind == "raw" else run_http)(target, work, Path(tmp))
            results.append(
                {
                    "label": target.label,
                    "name": target.name,
                    "kind": target.kind,
                    "cpus": target.cpus,
                    "concurrency": target.concurrency,
                    "threads": target.threads,
                    "workers": target.workers,
                    **measured,
                }
            )
            p = measured["pages"]
            print(
                f"[{i}/{len(targets)} {time.perf_counter() - started:5.0f}s] {target.label}: {p['per_s']} pages/s"
                f" (p50 {p['p50_ms']:.0f} ms, p95 {p['p95_ms']:.0f} ms), small alone p95"
                f" {measured['small_alone']['p95_ms']:.0f} ms, peak RSS {measured['peak_rss_mb']:.0f} MB"
                f" {measured.get('resolved', '')} in {time.perf_counter() - t0:.0f}s",
                flush=True,
            )
    by_label: dict[str, list[dict]] = {}
    for r in results:
        by_label.setdefault(r["label"], []).append(r)
    results = [merge(runs) for runs in by_label.values()]
    result = {
        "machine_cpu": machine_cpu(),
        "corpus": f"{args.pages} document pages (8 lines, 900 px wide) and {args.small} one-line images",
        "load_clients": LOAD,
        "peer": "kserve 0.20.0 ModelServer (bench/peer_server.py)",
        "results": results,
    }
    result["summary"] = summarise(results)
    path = write_result("throughput", result, record=args.record)
    table = markdown(result)
    (results_dir(args.record) / "throughput.md").write_text(table)
    print(f"wrote {path}\n\n{table}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
