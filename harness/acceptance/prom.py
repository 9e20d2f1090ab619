"""PromQL access for the steps: instant queries that return plain numbers.

Built on prometheus-api-client. An expression with no result is ``None`` (a series that does not exist
yet), never 0: "the request rate is above 0" must not pass because nothing was scraped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect

from harness.errors import HarnessError


class PromQueryError(HarnessError):
    pass


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class Prometheus:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self._client = PrometheusConnect(url=url, disable_ssl=True)
        self._timeout = timeout

    def query(self, expr: str) -> list[Sample]:
        """Evaluate ``expr`` now; one sample per series (a scalar result is one sample with no labels)."""
        try:
            data = self._client.custom_query(query=expr, params={"timeout": f"{self._timeout:g}s"})
        except (PrometheusApiClientException, OSError) as exc:  # requests' errors are OSErrors
            raise PromQueryError(f"PromQL {expr!r} failed at {self.url}: {exc}") from exc
        if isinstance(data, list) and len(data) == 2 and not isinstance(data[0], dict):  # scalar result
            return [Sample({}, float(data[1]))]
        return [Sample(dict(item.get("metric", {})), float(item["value"][1])) for item in data]

    def value(self, expr: str) -> float | None:
        """The single value of ``expr``; None when it has no series or is NaN; an error when it has several."""
        samples = self.query(expr)
        if not samples:
            return None
        if len(samples) > 1:
            raise PromQueryError(f"PromQL {expr!r} returned {len(samples)} series; aggregate it to one")
        v = samples[0].value
        return None if math.isnan(v) else v

    def range(self, expr: str, *, start: float, end: float, step: float) -> list[dict[str, object]]:
        """``expr`` over [start, end] (epoch seconds) every ``step`` seconds: one ``{"labels", "points"}``
        per series, points as ``[epoch, value]``; what a report draws."""
        try:
            data = self._client.custom_query_range(
                query=expr,
                start_time=datetime.fromtimestamp(start, UTC),
                end_time=datetime.fromtimestamp(end, UTC),
                step=f"{step:g}s",
            )
        except (PrometheusApiClientException, OSError) as exc:  # requests' errors are OSErrors
            raise PromQueryError(f"PromQL range {expr!r} failed at {self.url}: {exc}") from exc
        return [
            {"labels": dict(item.get("metric", {})), "points": [[float(t), float(v)] for t, v in item["values"]]}
            for item in data
        ]

    def targets_up(self) -> dict[str, str]:
        """Scrape jobs and the health of their last scrape."""
        response = httpx.get(f"{self.url}/api/v1/targets", timeout=5)
        response.raise_for_status()
        return {t["labels"].get("job", "?"): t["health"] for t in response.json()["data"]["activeTargets"]}


def compare(value: float | None, op: str, threshold: float) -> bool:
    """``value <op> threshold`` for the words the steps use; a missing value never compares true."""
    if value is None:
        return False
    ops = {
        "above": value > threshold,
        "below": value < threshold,
        "at least": value >= threshold,
        "at most": value <= threshold,
        "equal to": value == threshold,
    }
    if op not in ops:
        raise ValueError(f"unknown comparison {op!r}; use one of {', '.join(ops)}")
    return ops[op]
