"""Benchmark of the async job path: drain throughput with 1 and 2 workers against the raw model, and the
queue's own overhead (enqueue to pick-up) on an idle worker.

Each run: a real redis-server, the real API (``python -m service``) and real workers
(``python -m service.jobs.worker``, one onnxruntime thread each, as the local target runs them).
Workers are started and ready before the jobs are queued; throughput runs from the first enqueue to the\nlast finish.

Run: ``python bench/jobs_bench.py [--jobs 40] [--pickups 20]``; writes bench/results/jobs.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import summary_ms, write_result
from harness import wait
from harness.acceptance.components import start_redis, start_service, start_worker
from harness.processes import stop_all
from harness.provisioning import samples
from service.jobs.store import JobStore
from service.models.ocr import OcrModel
from service.settings import load_settings


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def raw_rate(images: list[samples.Sample], threads: int) -> float:
    model = OcrModel.load(threads=threads)
    model.warm_up()
    start = time.perf_counter()
    for s in images:
        model.read(s.image)
    return len(images) / (time.perf_counter() - start)


def drain(images: list[samples.Sample], workers: int, root: Path) -> dict:
    """Start the workers, wait until each is ready, then queue every job at once and time the drain."""
    redis_ep = start_redis(root, root / f"redis-{workers}")
    env = {"OCR_REDIS_URL": f"redis://127.0.0.1:{redis_ep.port}/0", "OCR_LOG_LEVEL": "warning"}
    api = start_service(root, name=f"api-{workers}", env=env)
    procs = [redis_ep.process, api.process]
    try:
        for i in range(workers):
            env_w = {**env, "OCR_INTRA_OP_THREADS": "1"}
            procs.append(start_worker(root, name=f"w{workers}-{i}", env=env_w).process)
        # Straight into the store (the API's own enqueue code, minus HTTP) so the queue fills in
        # milliseconds and the workers, not the client, set the pace.
        store = JobStore(load_settings(redis_url=env["OCR_REDIS_URL"]))
        payloads = [s.encode() for s in images]
        ids = [store.enqueue(data, request_id=f"bench-{i}", tenant_id="bench")[0] for i, data in enumerate(payloads)]
        with httpx.Client(timeout=60) as client:

            def views() -> list[dict]:
                return [client.get(f"{api.url}/jobs/{j}").json() for j in ids]

            final = wait.until(
                views, lambda vs: all(v["status"] == "succeeded" for v in vs), timeout=600, interval=0.5,
                what=f"{len(ids)} jobs with {workers} workers",
            ).last  # fmt: skip
        assert final is not None
        first = min(ts(v["created_at"]) for v in final)
        last = max(ts(v["finished_at"]) for v in final)
        return {"workers": workers, "jobs": len(ids), "jobs_per_s": round(len(ids) / (last - first), 2)}
    finally:
        stop_all(procs)


def pickup_latency(count: int, root: Path) -> dict:
    """Enqueue one job at a time on an idle worker: started_at - created_at is the queue's overhead."""
    redis_ep = start_redis(root, root / "redis-pickup")
    env = {"OCR_REDIS_URL": f"redis://127.0.0.1:{redis_ep.port}/0", "OCR_LOG_LEVEL": "warning"}
    api = start_service(root, name="api-pickup", env=env)
    worker = start_worker(root, name="w-pickup", env={**env, "OCR_INTRA_OP_THREADS": "1"})
    waits = []
    try:
        with httpx.Client(timeout=60) as client:
            for i in range(count):
                data = samples.words_image(seed=9000 + i).encode()
                job_id = client.post(f"{api.url}/jobs", files={"file": ("j.png", data)}).json()["job_id"]
                view = wait.until(
                    lambda: client.get(f"{api.url}/jobs/{job_id}").json(),  # noqa: B023 - used at once
                    lambda v: v["status"] == "succeeded", timeout=30, interval=0.02, what="one job",
                ).last  # fmt: skip
                assert view is not None
                waits.append(ts(view["started_at"]) - ts(view["created_at"]))
    finally:
        stop_all([redis_ep.process, api.process, worker.process])
    return summary_ms(waits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--pickups", type=int, default=20)
    parser.add_argument("--record", action="store_true", help="write to bench/results (committed), not artifacts/bench")
    args = parser.parse_args()
    images = [samples.words_image(seed=7000 + i) for i in range(args.jobs)]
    root = Path(tempfile.mkdtemp(prefix="bench-jobs-"))

    raw1 = raw_rate(images, threads=1)
    raw2 = raw_rate(images, threads=2)
    one = drain(images, 1, root)
    two = drain(images, 2, root)
    pickup = pickup_latency(args.pickups, root)
    result = {
        "corpus": {"jobs": args.jobs, "image": "1-3 seeded words, one line"},
        "raw_jobs_per_s": {"1_thread": round(raw1, 2), "2_threads": round(raw2, 2)},
        "workers": {"1": one, "2": two},
        "ratios": {
            "1_worker_vs_raw_1_thread": round(one["jobs_per_s"] / raw1, 3),
            "2_workers_vs_raw_2_threads": round(two["jobs_per_s"] / raw2, 3),
            "scaling_efficiency_2_vs_1": round(two["jobs_per_s"] / (2 * one["jobs_per_s"]), 3),
        },
        "pickup_idle_worker": pickup,
    }
    path = write_result("jobs", result, record=args.record)
    print(f"wrote {path}")
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
