"""Benchmark of the OCR service against the raw model, in one run on one machine.

Measures, on seeded document-like images with known text:
  * the raw model in-process at the service's settings (sequential, all the process's cores);
  * the service over HTTP on loopback at concurrency 1, 2 and 4;
  * character error rate (CER) against the ground truth;
  * p50 latency on a small one-line image, raw and through the service;
  * cold start (process start to /readyz 200) and the service's peak RSS;
  * the detector's resize settings ("min" 736 vs "max" 960): speed and CER on small images and pages.

Run: ``python bench/service_bench.py [--pages 12] [--small 30] [--record]``; writes
artifacts/bench/service.json (bench/results/service.json with ``--record``) and prints a Markdown table for
docs/benchmarks.md. The service runs at its defaults, resolved from this machine's CPUs.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import mkdtemp

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import peak_rss_mb, summary_ms, write_result
from harness.acceptance.components import start_service
from harness.acceptance.textmetrics import levenshtein
from harness.provisioning import samples
from service.images import decode_image
from service.models.ocr import OcrModel


def corpus(pages: int, small: int) -> tuple[list[samples.Sample], list[samples.Sample]]:
    return (
        [samples.document(seed=1000 + i, lines=8) for i in range(pages)],
        [samples.words_image(seed=2000 + i) for i in range(small)],
    )


def corpus_cer(texts: list[str], truth: list[samples.Sample]) -> float:
    if not truth:
        return 0.0
    errors = sum(levenshtein(t, s.text) for t, s in zip(texts, truth, strict=True))
    return errors / sum(len(s.text) for s in truth)


def raw_model(model: OcrModel, pages: list[samples.Sample], small: list[samples.Sample]) -> dict:
    start = time.perf_counter()
    texts, page_times = [], []
    for s in pages:
        t = time.perf_counter()
        texts.append(model.read(s.image).text)
        page_times.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    small_times, small_texts = [], []
    for s in small:
        t = time.perf_counter()
        small_texts.append(model.read(s.image).text)
        small_times.append(time.perf_counter() - t)
    return {
        "pages_per_s": round(len(pages) / wall, 3),
        "page": summary_ms(page_times),
        "small": summary_ms(small_times),
        "cer_pages": round(corpus_cer(texts, pages), 4),
        "cer_small": round(corpus_cer(small_texts, small), 4),
    }


def raw_with_decode(model: OcrModel, pages: list[samples.Sample]) -> dict:
    """The raw model fed the same PNG bytes the service receives: decoding is work any server must do."""

    payloads = [s.encode() for s in pages]
    start = time.perf_counter()
    texts = [model.read(decode_image(data, max_pixels=40_000_000)).text for data in payloads]
    wall = time.perf_counter() - start
    return {"pages_per_s": round(len(pages) / wall, 3), "cer_pages": round(corpus_cer(texts, pages), 4)}


def angle_classifier(pages: list[samples.Sample]) -> dict:
    out = {}
    for enabled in (False, True):
        model = OcrModel.load(angle_cls=enabled)
        model.warm_up()
        r = raw_model(model, pages, [])
        out["with-cls" if enabled else "without-cls"] = {
            "page_p50_ms": r["page"]["p50_ms"],
            "cer_pages": r["cer_pages"],
        }
    return out


def http_run(url: str, payloads: list[bytes], concurrency: int) -> tuple[float, list[float], list[str], dict]:
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:

        def one(data: bytes) -> tuple[float, str, int]:
            t = time.perf_counter()
            r = client.post(f"{url}/predict", files={"file": ("x.png", data)})
            return time.perf_counter() - t, r.json().get("text", "") if r.status_code == 200 else "", r.status_code

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, payloads))
        wall = time.perf_counter() - start
    for _, _, status in results:
        statuses[status] = statuses.get(status, 0) + 1
    return wall, [r[0] for r in results], [r[1] for r in results], statuses


def service_runs(pages: list[samples.Sample], small: list[samples.Sample], log_dir: Path) -> dict:
    t0 = time.perf_counter()
    endpoint = start_service(log_dir, name="bench-service", env={"OCR_MAX_QUEUE": "16", "OCR_LOG_LEVEL": "warning"})
    cold_start = time.perf_counter() - t0
    out: dict = {"cold_start_s": round(cold_start, 2)}
    try:
        page_bytes = [s.encode() for s in pages]
        for c in (1, 2, 4):
            wall, times, texts, statuses = http_run(endpoint.url, page_bytes, c)
            out[f"c{c}"] = {
                "pages_per_s": round(len(pages) / wall, 3),
                **summary_ms(times),
                "statuses": statuses,
                "cer": round(corpus_cer(texts, pages), 4),
            }
        _, times, texts, _ = http_run(endpoint.url, [s.encode() for s in small], 1)
        out["small"] = {**summary_ms(times), "cer": round(corpus_cer(texts, small), 4)}
        out["peak_rss_mb"] = round(peak_rss_mb(endpoint.process.pid), 1)
    finally:
        endpoint.process.stop()
    return out


def detector_settings(pages: list[samples.Sample], small: list[samples.Sample]) -> dict:
    out = {}
    for limit_type, side in (("min", 736), ("max", 960)):
        model = OcrModel.load(det_limit_type=limit_type, det_limit_side_len=side)
        model.warm_up()
        r = raw_model(model, pages, small)
        out[f"{limit_type}-{side}"] = {
            "small_p50_ms": r["small"]["p50_ms"],
            "page_p50_ms": r["page"]["p50_ms"],
            "cer_small": r["cer_small"],
            "cer_pages": r["cer_pages"],
        }
    return out


# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork and exec, so a child would report its parent's.
_REC_BATCH_PROBE = """
import sys, time
from harness.provisioning import samples
from service.models.ocr import OcrModel
m = OcrModel.load(rec_batch_size=int(sys.argv[1])); m.warm_up()
pages = [samples.document(seed=1000 + i, lines=8) for i in range(int(sys.argv[2]))]
t = time.perf_counter()
for p in pages:
    m.read(p.image)
hwm = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
print((time.perf_counter() - t) / len(pages), int(hwm.split()[1]) / 1024)
"""


def rec_batch_sizes(pages: int) -> dict:
    """Page time and the whole process's peak RSS for recogniser batches of 1 and 6 (rapidocr's default)."""
    import subprocess

    out = {}
    for size in (1, 6):
        line = subprocess.run(
            [sys.executable, "-c", _REC_BATCH_PROBE, str(size), str(pages)],
            capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
        ).stdout.split()  # fmt: skip
        out[f"batch-{size}"] = {
            "page_mean_ms": round(float(line[0]) * 1000, 1),
            "peak_rss_mb": round(float(line[1]), 1),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=12)
    parser.add_argument("--small", type=int, default=30)
    parser.add_argument("--record", action="store_true", help="write to bench/results (committed), not artifacts/bench")
    args = parser.parse_args()
    pages, small = corpus(args.pages, args.small)

    def progress(what: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f}s] {what}", flush=True)

    started = time.perf_counter()
    model = OcrModel.load()
    model.warm_up()
    progress("raw model")
    raw_before = raw_model(model, pages, small)
    raw_decode = raw_with_decode(model, pages)
    progress("service over HTTP at 1, 2 and 4 clients")
    service = service_runs(pages, small, Path(mkdtemp(prefix="bench-")))
    # The raw model again after the service runs: the machine's drift shows as the gap between the two.
    progress("raw model again")
    raw_after = raw_model(model, pages, small)
    del model
    raw = {
        **raw_before,
        "pages_per_s": round((raw_before["pages_per_s"] + raw_after["pages_per_s"]) / 2, 3),
        "pages_per_s_runs": [raw_before["pages_per_s"], raw_after["pages_per_s"]],
        "small": {
            **raw_before["small"],
            "p50_ms": round((raw_before["small"]["p50_ms"] + raw_after["small"]["p50_ms"]) / 2, 1),
        },
        "small_p50_ms_runs": [raw_before["small"]["p50_ms"], raw_after["small"]["p50_ms"]],
    }
    progress("detector settings")
    detector = detector_settings(pages[:4], small[:6])
    progress("recogniser batch sizes")
    rec_batch = rec_batch_sizes(min(len(pages), 8))
    progress("angle classifier")
    cls = angle_classifier(pages)

    ratios = {
        "throughput_c4_vs_raw": round(service["c4"]["pages_per_s"] / raw["pages_per_s"], 3),
        "throughput_c1_vs_raw": round(service["c1"]["pages_per_s"] / raw["pages_per_s"], 3),
        "throughput_c4_vs_raw_with_decode": round(service["c4"]["pages_per_s"] / raw_decode["pages_per_s"], 3),
        "small_p50_overhead_ms": round(service["small"]["p50_ms"] - raw["small"]["p50_ms"], 1),
    }
    targets = {
        "throughput_c4 >= 0.95 x raw": ratios["throughput_c4_vs_raw"] >= 0.95,
        "small p50 <= raw + 10 ms": ratios["small_p50_overhead_ms"] <= 10,
        "cold start <= 3 s": service["cold_start_s"] <= 3,
        "peak RSS <= 450 MB": service["peak_rss_mb"] <= 450,
        "CER <= 2%": max(service["c1"]["cer"], raw["cer_pages"]) <= 0.02,
    }
    result = {
        "corpus": {"pages": len(pages), "lines_per_page": 8, "small_images": len(small)},
        "raw": raw,
        "raw_with_decode": raw_decode,
        "service": service,
        "ratios": ratios,
        "targets_met": targets,
        "detector_settings": detector,
        "recogniser_batch": rec_batch,
        "angle_classifier": cls,
    }
    path = write_result("service", result, record=args.record)
    print(f"wrote {path}")
    print("| measure | raw model | service c1 | service c2 | service c4 |")
    print("|---|---|---|---|---|")
    print(
        f"| pages/s | {raw['pages_per_s']} | {service['c1']['pages_per_s']} | {service['c2']['pages_per_s']} |"
        f" {service['c4']['pages_per_s']} |"
    )
    print(
        f"| page p50 / p95 ms | {raw['page']['p50_ms']} / {raw['page']['p95_ms']} |"
        + "".join(f" {service[c]['p50_ms']} / {service[c]['p95_ms']} |" for c in ("c1", "c2", "c4"))
    )
    print(f"ratios: {ratios}")
    print(f"small image p50: raw {raw['small']['p50_ms']} ms, service {service['small']['p50_ms']} ms")
    print(f"CER: raw pages {raw['cer_pages']}, service {service['c1']['cer']}, small {service['small']['cer']}")
    print(f"cold start {service['cold_start_s']} s, peak RSS {service['peak_rss_mb']} MB")
    print(f"detector settings: {detector}")
    print(f"recogniser batch: {rec_batch}")
    print(f"angle classifier: {cls}")
    print(f"raw with decode: {raw_decode}")
    print(f"targets: {targets}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
