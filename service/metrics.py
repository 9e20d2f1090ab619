"""Prometheus metrics of the API. Label values are bounded: route templates, methods, status codes."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1024, 10 * 1024, 100 * 1024, 512 * 1024, 1024**2, 4 * 1024**2, 10 * 1024**2, 50 * 1024**2)
REJECTION_REASONS = ("too_large", "bad_image", "bad_request", "overload", "timeout", "not_ready", "queue_unavailable")


disable_created_metrics()


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "ocr_http_requests", "HTTP requests answered", ("route", "method", "status"), registry=r
        )
        self.request_duration = Histogram(
            "ocr_http_request_duration_seconds",
            "Time from request to response",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "ocr_inference_duration_seconds", "Time the model spends on one image", buckets=LATENCY_BUCKETS, registry=r
        )
        self.payload = Histogram(
            "ocr_request_payload_bytes", "Size of request bodies", ("route",), buckets=SIZE_BUCKETS, registry=r
        )
        self.in_flight = Gauge("ocr_http_requests_in_flight", "Requests being handled", registry=r)
        self.rejections = Counter("ocr_rejections", "Requests refused, by reason", ("reason",), registry=r)
        for reason in REJECTION_REASONS:
            self.rejections.labels(reason)
        self.model = Info("ocr_model", "The loaded OCR model", registry=r)
        self.ready = Gauge("ocr_ready", "1 when the model is loaded and warmed", registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
