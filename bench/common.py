"""Shared pieces of the benchmarks: percentiles, RSS, result files.

A run's results go to ``artifacts/bench/`` (git-ignored); the committed figures in ``bench/results/`` (which
docs/benchmarks.md quotes) change only when a benchmark is run with ``--record``.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"  # recorded runs, committed
LOCAL_RESULTS = Path(__file__).resolve().parents[1] / "artifacts" / "bench"  # every other run, ignored


def results_dir(record: bool) -> Path:
    return RESULTS if record else LOCAL_RESULTS


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "mean_ms": round(statistics.fmean(ms), 1) if ms else float("nan"),
    }


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def write_result(name: str, result: dict, *, record: bool = False) -> Path:
    """Write ``<name>.json`` to bench/results when ``record``, else to artifacts/bench."""
    folder = results_dir(record)
    folder.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": {"cpus": len(__import__("os").sched_getaffinity(0)), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **result,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
