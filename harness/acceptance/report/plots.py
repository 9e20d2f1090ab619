"""The report's pictures, drawn with matplotlib from the evidence files, returned as PNG bytes.

Every plot is a function of one kind of evidence: a wait's timeline (with the threshold its step
asserted), a PromQL range, locust's stats history, the rate limit's per-second counts, a scaling timeline
with the load beside it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

WIDTH, HEIGHT, DPI = 8.0, 3.2, 100
THRESHOLD_STYLE: dict[str, Any] = {"color": "#c0392b", "linestyle": "--", "linewidth": 1.2}


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()


def numeric_leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """``{"ready": 2, "hpa": {"desired": 5}}`` -> ("ready", 2), ("hpa.desired", 5); bools and text are skipped."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield prefix or "value", float(value)
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from numeric_leaves(inner, f"{prefix}.{key}" if prefix else str(key))


def timeline_series(samples: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Each numeric leaf of the sampled values as its own series of (seconds, value)."""
    series: dict[str, list[tuple[float, float]]] = {}
    for sample in samples:
        for name, number in numeric_leaves(sample.get("value")):
            series.setdefault(name, []).append((float(sample["t"]), number))
    return series


def timeline(data: dict[str, Any], load: list[dict[str, float]] | None = None) -> bytes | None:
    """A wait's samples over its seconds, the asserted threshold dashed; the load on a second axis if given."""
    series = timeline_series(data.get("samples") or [])
    if not series:
        return None
    figure, axis = plt.subplots(figsize=(WIDTH, HEIGHT))
    # Utilisation-like series (percent) would flatten replica counts: they get their own axis.
    percent = {name for name in series if "utilization" in name or "cpu" in name}
    for name, points in series.items():
        if name in percent:
            continue
        axis.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=series_label(name))
    threshold = None if data.get("threshold") is None else float(data["threshold"])
    if threshold is not None:
        axis.axhline(threshold, label=f"threshold {threshold:g}", **THRESHOLD_STYLE)
    _floor_flat_axis(axis, [p[1] for name, points in series.items() if name not in percent for p in points], threshold)
    axis.set_xlabel(f"seconds ({data.get('mode', 'within')} {data.get('seconds', '?'):g} s)")
    axis.set_title(str(data.get("what", "")), fontsize=10)
    axis.grid(alpha=0.3)
    handles, labels = axis.get_legend_handles_labels()
    second = None
    if percent:
        second = axis.twinx()
        for name in sorted(percent):
            points = series[name]
            second.plot([p[0] for p in points], [p[1] for p in points], color="#7f8c8d", alpha=0.7,
                        label=series_label(name))  # fmt: skip
        second.set_ylabel("percent")
    elif load:
        start = float(data.get("started_at") or 0)
        rows = [r for r in load if r["at"] >= start - 1]
        if rows:
            second = axis.twinx()
            second.plot([r["at"] - start for r in rows], [r["rps"] for r in rows], color="#7f8c8d", alpha=0.6,
                        label="load requests/s")  # fmt: skip
            second.set_ylabel("requests/s")
    if second is not None:
        more_handles, more_labels = second.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    axis.legend(handles, labels, fontsize=8, loc="best")
    return _png(figure)


def promql_range(data: dict[str, Any]) -> bytes | None:
    series = data.get("series") or []
    if not series:
        return None
    start = float(data.get("start") or 0)
    figure, axis = plt.subplots(figsize=(WIDTH, HEIGHT))
    for item in series:
        points = item.get("points") or []
        label = ",".join(f"{k}={v}" for k, v in sorted(item.get("labels", {}).items())) or "value"
        axis.plot([p[0] - start for p in points], [p[1] for p in points], label=label[:60])
    threshold = None if data.get("threshold") is None else float(data["threshold"])
    if threshold is not None:
        axis.axhline(threshold, label=f"threshold {threshold:g}", **THRESHOLD_STYLE)
    _floor_flat_axis(axis, [p[1] for item in series for p in item.get("points") or []], threshold)
    axis.set_title(str(data.get("expr", ""))[:110], fontsize=9)
    axis.set_xlabel("seconds since the scenario began")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="best")
    return _png(figure)


def read_locust_history(path: Path) -> list[dict[str, float]]:
    """locust's ``*_stats_history.csv``, aggregated rows: time, users, requests/s, failures/s, p50, p95."""

    def number(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return float("nan")

    rows = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("Name") != "Aggregated":
                continue
            rows.append({
                "at": number(row["Timestamp"]), "users": number(row["User Count"]),
                "rps": number(row["Requests/s"]), "fps": number(row["Failures/s"]),
                "p50": number(row["50%"]), "p95": number(row["95%"]),
            })  # fmt: skip
    return rows


def load(rows: list[dict[str, float]]) -> bytes | None:
    if not rows:
        return None
    start = rows[0]["at"]
    t = [r["at"] - start for r in rows]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(WIDTH, HEIGHT * 1.6), sharex=True)
    top.plot(t, [r["rps"] for r in rows], label="requests/s")
    top.plot(t, [r["fps"] for r in rows], label="failures/s", color="#c0392b")
    top.set_ylabel("per second")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    top.set_title("load (locust)", fontsize=10)
    bottom.plot(t, [r["p50"] for r in rows], label="p50")
    bottom.plot(t, [r["p95"] for r in rows], label="p95")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("seconds")
    bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3)
    return _png(figure)


# Each kind of gateway answer (steps/gateway.py's classification), in stacking order, with its colour:
# admitted (answered by the service) in greens, the gateway's refusals in oranges, failures in reds and black.
ANSWER_KINDS: dict[str, tuple[str, str]] = {
    "served": ("served by the service (2xx)", "#27ae60"),
    "service 4xx": ("refused by the service (4xx)", "#82e0aa"),
    "refused: limit": ("refused by the gateway: over the limit (429)", "#e67e22"),
    "refused: key": ("refused by the gateway: API key (403)", "#af7ac5"),
    "service 5xx": ("failed in the service (5xx)", "#c0392b"),
    "gateway 5xx": ("failed at the gateway (5xx)", "#641e16"),
    "gateway other": ("other gateway answer", "#95a5a6"),
    "transport": ("no answer (transport error)", "#17202a"),
}


def series_label(name: str) -> str:
    """An evidence key path as a reader's label: ``counts.succeeded`` -> ``counts: succeeded``."""
    return ": ".join(part.replace("_", " ") for part in name.split("."))


def _floor_flat_axis(axis: Any, values: list[float], threshold: float | None = None) -> None:
    """A series that never changes would sit on an axis from -0.04 to 0.04: show it from 0 (or below it) instead."""
    shown = [*values, *([threshold] if threshold is not None else [])]
    if shown and max(shown) == min(shown):
        value = shown[0]
        axis.set_ylim(min(0.0, value) - 0.5, max(0.0, value) + max(1.0, abs(value) * 0.2))


def per_second(counts: dict[str, dict[str, dict[str, int]]], limit: float | None = None) -> bytes | None:
    """Each second's answers per API key, stacked by who answered and how, with the per-key limit dashed."""
    return _png(per_second_figure(counts, limit)) if counts else None


def per_second_figure(counts: dict[str, dict[str, dict[str, int]]], limit: float | None = None) -> Figure:
    names = sorted(counts)
    figure, axes = plt.subplots(len(names), 1, figsize=(WIDTH, HEIGHT * 1.1 * len(names)), squeeze=False)
    for axis, name in zip((a[0] for a in axes), names, strict=True):
        seconds = sorted(counts[name], key=int)
        x = [int(s) for s in seconds]
        present = {kind for s in seconds for kind in counts[name][s]}
        kinds = [k for k in ANSWER_KINDS if k in present] + sorted(present - set(ANSWER_KINDS))
        bottom = [0] * len(seconds)
        for kind in kinds:
            values = [counts[name][s].get(kind, 0) for s in seconds]
            label, colour = ANSWER_KINDS.get(kind, (kind, "#bdc3c7"))
            axis.bar(x, values, bottom=bottom, label=label, color=colour)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        if limit is not None:
            axis.axhline(float(limit), label=f"limit: {limit:g} per second per key", **THRESHOLD_STYLE)
        axis.set_title(f"{name}: answers in each second", fontsize=10)
        axis.set_xlabel("second since the first request")
        axis.set_ylabel("requests")
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        axis.grid(alpha=0.3, axis="y")
    return figure
