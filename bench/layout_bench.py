"""Benchmark of the layout model in the service against the raw model, in one run on one machine.

Measures, on seeded A4 pages at 150 dpi (a title, three paragraphs, a figure:
``harness.provisioning.samples.layout_page``):
  * the raw model in-process (``LayoutModel.predict`` on decoded pixels, sequential, the process's cores);
  * the service (``OCR_MODEL=layout``, at its defaults) over HTTP on loopback at concurrency 1 and 2: PNG
    upload, admission, decode, inference, JSON;
  * that both find the same regions on every page.

Run: ``python bench/layout_bench.py [--pages 12] [--record]``; writes artifacts/bench/layout.json
(bench/results/layout.json with ``--record``) and prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import mkdtemp

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import summary_ms, write_result
from harness.acceptance.components import start_service
from harness.provisioning import samples
from service.models.layout import LayoutFiles, LayoutModel


def raw(pages: list[bytes]) -> tuple[dict, list[list[str]]]:
    model = LayoutModel(LayoutFiles.bundled())
    model.warm_up()
    seconds, labels = [], []
    start = time.perf_counter()
    for data in pages:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        t = time.perf_counter()
        result = model.predict(image)
        seconds.append(time.perf_counter() - t)
        labels.append([r.label for r in result.regions])
    wall = time.perf_counter() - start
    return {"threads": model.threads, "pages_per_s": round(len(pages) / wall, 2), **summary_ms(seconds)}, labels


def service(pages: list[bytes], concurrency: int, url: str) -> tuple[dict, list[list[str]]]:
    def one(data: bytes) -> tuple[float, list[str]]:
        t = time.perf_counter()
        response = httpx.post(f"{url}/predict", files={"file": ("page.png", data)}, timeout=60)
        response.raise_for_status()
        return time.perf_counter() - t, [r["label"] for r in response.json()["regions"]]

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = list(pool.map(one, pages))
    wall = time.perf_counter() - start
    stats = {"concurrency": concurrency, "pages_per_s": round(len(pages) / wall, 2), **summary_ms([s for s, _ in done])}
    return stats, [labels for _, labels in done]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=12)
    parser.add_argument("--record", action="store_true", help="write bench/results/layout.json")
    args = parser.parse_args()
    pages = [samples.encode(samples.layout_page(seed=3000 + i)) for i in range(args.pages)]
    load_before = os.getloadavg()[0]  # other work on the machine: the figures are only comparable within a run

    raw_stats, raw_labels = raw(pages)
    endpoint = start_service(Path(mkdtemp(prefix="layout-bench-")), name="layout-bench", env={"OCR_MODEL": "layout"})
    try:
        ready = httpx.get(f"{endpoint.url}/readyz", timeout=10).json()
        service(pages[:2], 1, endpoint.url)  # connections and allocator warm, as for the raw model
        runs = []
        for concurrency in (1, 2):
            stats, labels = service(pages, concurrency, endpoint.url)
            stats["same_regions_as_raw"] = labels == raw_labels
            runs.append(stats)
    finally:
        endpoint.process.stop()

    result = {
        "pages": args.pages,
        "page_size": list(samples.layout_page(0).size),
        "model": ready["model"],
        "raw": raw_stats,
    }
    result["service"] = runs
    result["load_average_1m"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    path = write_result("layout", result, record=args.record)
    print(f"results: {path}")
    print("| run | pages/s | p50 ms | p95 ms |\n|---|---|---|---|")
    print(f"| raw model ({raw_stats['threads']} threads) | {raw_stats['pages_per_s']} | {raw_stats['p50_ms']} |"
          f" {raw_stats['p95_ms']} |")  # fmt: skip
    for run in runs:
        print(f"| service, concurrency {run['concurrency']} | {run['pages_per_s']} | {run['p50_ms']} |"
              f" {run['p95_ms']} |")  # fmt: skip


if __name__ == "__main__":
    main()
