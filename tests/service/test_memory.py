"""Memory of a real service process under the worst legal inputs, against the predictor's 1 Gi pod limit.

The service's peak resident set size (``VmHWM``, reset before each case through ``/proc/<pid>/clear_refs``)
must stay under the limit the manifest gives the predictor, whatever a client sends: one image just under
the pixel limit in the widest pixel mode, a tiny file declaring a large image, or many 10 MB uploads at once
on /predict and /jobs. ``bench/memory_bench.py`` measures the same at full scale.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bench.memory_bench import gray_noise_pages, noise_strips, pod_memory_limit_mib
from harness.acceptance.components import Endpoint, redis_url, start_redis, start_service
from tests.service import corpus

LIMIT_MIB = pod_memory_limit_mib()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    root = tmp_path_factory.mktemp("memory")
    redis_ep = start_redis(root, root / "redis")
    # The predictor's settings at its 1-CPU limit: one inference at once, whatever this machine's CPUs.
    env = {"OCR_REDIS_URL": redis_url(redis_ep), "OCR_MAX_CONCURRENCY": "1"}
    endpoint = start_service(root, name="service-memory", env=env)
    yield endpoint
    endpoint.process.stop()
    redis_ep.process.stop()


def rss_mib(endpoint: Endpoint, key: str = "VmRSS") -> float:
    status = Path(f"/proc/{endpoint.process.pid}/status").read_text()
    return next(int(x.split()[1]) for x in status.splitlines() if x.startswith(key)) / 1024


def peak_during(endpoint: Endpoint, requests: list[tuple[str, bytes]], concurrency: int) -> tuple[float, list[int]]:
    """The service's peak RSS (MiB) while ``requests`` (route, file) are sent ``concurrency`` at a time."""
    Path(f"/proc/{endpoint.process.pid}/clear_refs").write_text("5")

    def post(request: tuple[str, bytes]) -> int:
        route, data = request
        return httpx.post(f"{endpoint.url}{route}", files={"file": ("f.png", data)}, timeout=120).status_code

    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(post, requests))
    peak = rss_mib(endpoint, "VmHWM")
    assert httpx.get(f"{endpoint.url}/healthz").status_code == 200
    return peak, statuses


@pytest.mark.parametrize("name", ["png 6300x6300 rgba page", "tiff 6300x6300 rgba page", "jpeg 6300x6300 page"])
def test_one_image_just_under_the_pixel_limit_fits_the_pod(api: Endpoint, name: str) -> None:
    data = corpus.worst_legal()[name]()
    peak, statuses = peak_during(api, [("/predict", data)], 1)
    assert statuses == [200]
    assert peak < LIMIT_MIB, f"{name}: peak RSS {peak:.0f} MiB, pod limit {LIMIT_MIB:.0f} MiB"


def test_a_tiny_png_declaring_6000x6000_is_refused_cheaply(api: Endpoint) -> None:
    data = corpus.worst_legal()["png declaring 6000x6000 (tiny file)"]()
    rss = rss_mib(api)
    peak, statuses = peak_during(api, [("/predict", data), ("/jobs", data)], 1)
    assert statuses == [400, 400]
    assert peak - rss < 50, f"a {len(data)}-byte file raised the peak RSS by {peak - rss:.0f} MiB"


@pytest.mark.parametrize("route", ["/predict", "/jobs"])
def test_forty_concurrent_10_mb_uploads_fit_the_pod(api: Endpoint, route: str) -> None:
    # Not images: each is refused once read, so only how uploads are received and held is measured.
    junk = b"\x01" * (10 * 1024 * 1024 - 4096)
    rss = rss_mib(api)
    peak, statuses = peak_during(api, [(route, junk)] * 40, 40)
    assert set(statuses) <= {415, 503}, statuses
    assert peak < LIMIT_MIB and peak - rss < 150, f"{route}: peak RSS {peak:.0f} MiB ({rss:.0f} before) for 40 uploads"


def test_content_heavy_pages_at_once_stay_within_90_percent_of_the_pod(api: Endpoint) -> None:
    """Content the pixel count does not show: gray noise at the pixel limit of JPEG and WebP, 2-px noise
    strips across and down (folded into pages of thin rows: lines of ratio 400+ for the recogniser before
    its bound), four at a time over /predict and /jobs."""
    pixels = 11_000_000  # what the bench's default settings resolve at 2 CPUs: the strips' legal length here
    heavy = list(gray_noise_pages(pixels).values()) + list(noise_strips(pixels).values())
    requests = [(route, data) for data in heavy for route in ("/predict", "/jobs")]
    peak, statuses = peak_during(api, requests, 4)
    assert set(statuses) <= {200, 202, 413, 503}, statuses
    assert statuses.count(200) >= 3, statuses
    assert peak < 0.9 * LIMIT_MIB, f"peak RSS {peak:.0f} MiB, 90% of the pod limit is {0.9 * LIMIT_MIB:.0f} MiB"
