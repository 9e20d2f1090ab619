"""Benchmark of the table model: its accuracy on seeded tables with known structure and text, and the
service against the raw model at the same settings, in one run on one machine.

The corpus (``harness.provisioning.samples.table``): ruled and unruled tables, with and without a merged
header cell, 3 to 8 rows, 2 to 5 columns, three font sizes, a header of words over rows of words and numbers.
Each table's HTML is known, so each answer is scored with TEDS (the tree-edit-distance similarity PubTabNet
defines, ``table_recognition_metric``) and structure-only TEDS (the same, cell text ignored).

Measured:
  * the raw model in-process (``TableModel.predict`` on decoded pixels, sequential, the settings the service
    starts with);
  * the service (``OCR_MODEL=table``, at its defaults) over HTTP on loopback at concurrency 1 and 2: PNG upload,
    admission, decode, inference, JSON;
  * that both answer the same HTML for every table.

Run: ``python bench/table_bench.py [--tables 24] [--record]``; writes artifacts/bench/table.json
(bench/results/table.json with ``--record``) and prints Markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import mean
from tempfile import mkdtemp

import httpx
from PIL import Image
from table_recognition_metric import TEDS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import summary_ms, write_result
from harness.acceptance.components import start_service
from harness.provisioning import samples
from service.models.table import TableModel
from service.settings import load_settings

FONTS = (18, 22, 28)


def corpus(count: int) -> list[samples.TableSample]:
    """``count`` seeded tables, every combination of ruled, merged and font in turn, sizes varying."""
    tables = []
    for i in range(count):
        ruled, merged, font = i % 2 == 0, (i // 2) % 2 == 1, FONTS[(i // 4) % len(FONTS)]
        tables.append(samples.table(
            7000 + i, rows=3 + i % 6, columns=2 + (i // 3) % 4, ruled=ruled, merged=merged, font_size=font,
        ))  # fmt: skip
    return tables


def scores(predicted: list[str], tables: list[samples.TableSample]) -> dict[str, object]:
    """TEDS and structure-only TEDS of each answer against its table, overall and by kind of table."""
    full, structure = TEDS(), TEDS(structure_only=True)

    def wrapped(html: str) -> str:
        return f"<html><body>{html}</body></html>"

    rows = [
        {"ruled": t.ruled, "merged": any(c.colspan > 1 for c in t.cells), "exact": p == t.html,
         "teds": full(wrapped(p), wrapped(t.html)), "teds_struct": structure(wrapped(p), wrapped(t.html))}
        for p, t in zip(predicted, tables, strict=True)
    ]  # fmt: skip

    def summary(chosen: list[dict]) -> dict[str, object]:
        return {
            "tables": len(chosen),
            "exact": sum(r["exact"] for r in chosen),
            "teds": round(mean(r["teds"] for r in chosen), 4),
            "teds_struct": round(mean(r["teds_struct"] for r in chosen), 4),
        }

    return {
        "all": summary(rows),
        "ruled": summary([r for r in rows if r["ruled"]]),
        "unruled": summary([r for r in rows if not r["ruled"]]),
        "merged": summary([r for r in rows if r["merged"]]),
        "not_merged": summary([r for r in rows if not r["merged"]]),
    }


def raw(pages: list[bytes]) -> tuple[dict, list[str]]:
    model = TableModel.from_settings(load_settings(model="table"))
    model.warm_up()
    seconds, answers = [], []
    start = time.perf_counter()
    for data in pages:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        t = time.perf_counter()
        answers.append(model.predict(image).html)
        seconds.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    return {"threads": model.threads, "tables_per_s": round(len(pages) / wall, 2), **summary_ms(seconds)}, answers


def service(pages: list[bytes], concurrency: int, url: str) -> tuple[dict, list[str]]:
    def one(data: bytes) -> tuple[float, str]:
        t = time.perf_counter()
        response = httpx.post(f"{url}/predict", files={"file": ("table.png", data)}, timeout=120)
        response.raise_for_status()
        return time.perf_counter() - t, str(response.json()["html"])

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = list(pool.map(one, pages))
    wall = time.perf_counter() - start
    stats = {
        "concurrency": concurrency,
        "tables_per_s": round(len(pages) / wall, 2),
        **summary_ms([s for s, _ in done]),
    }
    return stats, [html for _, html in done]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=24)
    parser.add_argument("--record", action="store_true", help="write bench/results/table.json")
    args = parser.parse_args()
    tables = corpus(args.tables)
    pages = [samples.encode(t.image) for t in tables]
    load_before = os.getloadavg()[0]  # other work on the machine: the figures are only comparable within a run

    raw_stats, raw_html = raw(pages)
    endpoint = start_service(Path(mkdtemp(prefix="table-bench-")), name="table-bench", env={"OCR_MODEL": "table"})
    try:
        ready = httpx.get(f"{endpoint.url}/readyz", timeout=10).json()
        service(pages[:2], 1, endpoint.url)  # connections and allocator warm, as for the raw model
        runs = []
        for concurrency in (1, 2):
            stats, html = service(pages, concurrency, endpoint.url)
            stats["same_html_as_raw"] = html == raw_html
            stats["throughput_ratio_to_raw"] = round(stats["tables_per_s"] / raw_stats["tables_per_s"], 2)
            stats["p95_ratio_to_raw"] = round(stats["p95_ms"] / raw_stats["p95_ms"], 2)
            runs.append(stats)
    finally:
        endpoint.process.stop()

    accuracy = scores(raw_html, tables)
    result = {
        "tables": args.tables,
        "corpus": "harness.provisioning.samples.table, seeds 7000+: ruled/unruled, merged header or not, "
        f"3-8 rows, 2-5 columns, fonts {list(FONTS)}",
        "model": ready["model"],
        "accuracy": accuracy,
        "raw": raw_stats,
        "service": runs,
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }
    path = write_result("table", result, record=args.record)
    print(f"results: {path}")
    print("| tables | count | exact HTML | TEDS | structure-only TEDS |\n|---|---|---|---|---|")
    for name, row in accuracy.items():
        print(f"| {name} | {row['tables']} | {row['exact']} | {row['teds']} | {row['teds_struct']} |")  # type: ignore[index]
    print("\n| run | tables/s | p50 ms | p95 ms | vs raw: throughput, p95 |\n|---|---|---|---|---|")
    print(f"| raw model ({raw_stats['threads']} threads) | {raw_stats['tables_per_s']} | {raw_stats['p50_ms']} |"
          f" {raw_stats['p95_ms']} | 1, 1 |")  # fmt: skip
    for run in runs:
        print(f"| service, concurrency {run['concurrency']} | {run['tables_per_s']} | {run['p50_ms']} |"
              f" {run['p95_ms']} | {run['throughput_ratio_to_raw']}, {run['p95_ratio_to_raw']} |")  # fmt: skip


if __name__ == "__main__":
    main()
