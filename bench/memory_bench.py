"""Peak memory of a real service process under the worst legal inputs, at concurrency, against the pod limit.

Starts ``python -m service`` (and a ``redis-server`` for /jobs) on loopback with the settings the
predictor runs with, then, for each scenario, resets the process's high-water mark
(``/proc/<pid>/clear_refs``) and reads its peak resident set size (``VmHWM``) once the scenario is done:

  * one request at a time: each worst legal image (pages just under the service's pixel limit, as its
    settings resolve it, in PNG, JPEG and TIFF, gray and RGBA; a tiny PNG declaring 6000x6000);
  * 60 concurrent uploads of a legal 10 MB page (just under the upload limit) on /predict, and on /jobs;
  * 20 concurrent pages just under the pixel limit on /predict, and on /jobs;
  * both at once: 30 near-limit pages and 30 10 MB pages split over /predict and /jobs;
  * content-heavy pages, one at a time and at concurrency: black-and-white noise; gray noise at each format's
    pixel limit (whatever fits the upload limit); 2-px noise strips across and down (the one at the pixel
    limit down is refused for its rows); a page full of small words; 24 clients of them over /predict,
    /jobs and both V2 encodings.

Every answer's status is recorded; the service must stay healthy throughout. The pod's memory limit is read
from ``manifests/base/inferenceservice.yaml``. ``--source DIR`` runs the service from another checkout
(e.g. a ``git worktree`` of an older commit) to measure it the same way; ``--label`` names the run in
``bench/results/memory.json`` (runs with other labels are kept).

``--env OCR_NAME=VALUE`` sets the service's settings (else its defaults, as resolved from this machine's CPUs).

Run: ``python bench/memory_bench.py [--label after] [--source DIR] [--env ...] [--record]`` (about 3 minutes
on 2 cores); results go to artifacts/bench/memory.json, or bench/results/memory.json with ``--record``.
"""

from __future__ import annotations

import argparse
import base64
import functools
import io
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import redis
import yaml
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import results_dir, write_result  # noqa: E402
from harness.acceptance.components import redis_url, start_redis  # noqa: E402
from harness.ports import LOOPBACK, free_port  # noqa: E402
from harness.processes import ManagedProcess  # noqa: E402
from harness.provisioning import samples  # noqa: E402
from service.images import REFERENCE_BYTES_PER_PIXEL, ROW_BYTES, pixel_limit  # noqa: E402

MANIFEST = ROOT / "manifests" / "base" / "inferenceservice.yaml"
UPLOAD_LIMIT = 10 * 1024 * 1024
REQUEST_TIMEOUT_S = 180.0
TARGET_SHARE = 0.90  # the peak the service must stay under, as a share of the pod's limit


def pod_memory_limit_mib(manifest: Path = MANIFEST) -> float:
    """The predictor container's memory limit, as the manifest states it (e.g. ``1Gi`` -> 1024)."""
    spec = yaml.safe_load(manifest.read_text())
    limit = spec["spec"]["predictor"]["containers"][0]["resources"]["limits"]["memory"]
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if limit.endswith(suffix):
            return float(limit[: -len(suffix)]) * factor
    return float(limit) / 2**20


def page_near_upload_limit(target: int = UPLOAD_LIMIT - 256 * 1024) -> bytes:
    """A legal page of text on faintly noisy paper (4 bits of noise a pixel), PNG just under ``target``."""
    side = int((target / 0.56) ** 0.5)
    noise = 255 - np.random.default_rng(7).integers(0, 16, size=(side, side), dtype=np.uint8)
    page = np.asarray(samples.text_page(side, side, "L"))
    data = samples.encode(Image.fromarray(np.minimum(noise, page), "L"), "PNG", compress_level=6)
    while len(data) > target:  # shave rows until it fits
        side -= 64
        data = samples.encode(Image.fromarray(np.minimum(noise, page)[:side, :side], "L"), "PNG", compress_level=6)
    return data


def worst_legal(max_pixels: int) -> tuple[dict[str, bytes], str]:
    """The worst legal images at the service's pixel limit (pages just under it in PNG, JPEG and TIFF, gray
    and RGBA; a tiny PNG declaring 6000x6000), and the name of the RGBA PNG page."""
    side = math.isqrt(int(max_pixels * 0.99)) // 10 * 10
    tiny = "png declaring 6000x6000 (tiny file)"
    images = {
        f"png {side}x{side} gray page": samples.near_limit_png(side, "L"),
        f"png {side}x{side} rgba page": samples.near_limit_png(side, "RGBA"),
        f"jpeg {side}x{side} page": samples.near_limit_jpeg(side),
        f"tiff {side}x{side} rgba page": samples.near_limit_tiff(side),
        tiny: samples.png_declaring(6000, 6000),
    }
    return images, f"png {side}x{side} rgba page"


def noise_pages(max_pixels: int, upload_limit: int = UPLOAD_LIMIT) -> dict[str, bytes]:
    """Content-heavy pages at the pixel limit: black-and-white noise, which the detector finds boxes all over
    (many more boxes, and recognition crops, than any text page), as PNG, progressive JPEG and deflate TIFF;
    a format whose file would pass the upload limit is left out."""
    side = math.isqrt(int(max_pixels * 0.99)) // 10 * 10
    rng = np.random.default_rng(3)
    image = Image.fromarray(((rng.random((side, side)) < 0.5) * 255).astype(np.uint8), "L")
    pages = {}
    for name, options in (
        ("png", {"format": "PNG", "optimize": False}),
        ("progressive jpeg", {"format": "JPEG", "quality": 60, "progressive": True}),
        ("deflate tiff", {"format": "TIFF", "compression": "tiff_adobe_deflate"}),
    ):
        out = io.BytesIO()
        image.save(out, **options)
        if out.tell() <= upload_limit - 4096:
            pages[f"{name} {side}x{side} noise page"] = out.getvalue()
    return pages


def gray_noise_pages(max_pixels: int, upload_limit: int = UPLOAD_LIMIT) -> dict[str, bytes]:
    """Pages of uniform gray noise (8 random bits a pixel) at the pixel limit of their format
    (``service.images.pixel_limit``), in every format whose file stays under the upload limit at that size
    (PNG and deflate TIFF do not: noise does not compress)."""
    rng = np.random.default_rng(11)
    pages = {}
    for name, fmt, options in (
        ("png", "PNG", {"compress_level": 9}),
        ("progressive jpeg", "JPEG", {"quality": 75, "progressive": True}),
        ("webp", "WEBP", {"quality": 60}),
        ("deflate tiff", "TIFF", {"compression": "tiff_adobe_deflate"}),
    ):
        side = math.isqrt(int(pixel_limit(fmt, max_pixels) * 0.999))
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, size=(side, side), dtype=np.uint8), "L").save(out, format=fmt, **options)
        if out.tell() <= upload_limit - 4096:
            pages[f"{name} {side}x{side} gray noise page"] = out.getvalue()
    return pages


def noise_strips(max_pixels: int) -> dict[str, bytes]:
    """Strips 2 px wide of 4-bit gray noise (PNG), read folded into a page of rows: across at the pixel limit
    (2x5,499,000 at 11 M); down at the pixel limit (refused: its rows count against the limit,
    ``service.images.row_pixels``) and at the longest length the limit takes."""
    long = max_pixels // 2 - 1000
    legal = int((max_pixels - 1000) / (2 + ROW_BYTES / REFERENCE_BYTES_PER_PIXEL))
    rng = np.random.default_rng(13)
    strips = {}
    for shape in ((2, long), (long, 2), (legal, 2)):
        noise = (rng.integers(0, 16, size=shape, dtype=np.uint8) * 17).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(noise, "L").save(out, format="PNG", compress_level=9)
        strips[f"png {shape[1]}x{shape[0]} noise strip"] = out.getvalue()
    return strips


def dense_text_page(max_pixels: int) -> dict[str, bytes]:
    """A page at the pixel limit filled edge to edge with lines of small words: the most lines, and the
    longest, a page gives the recogniser (75 lines of 2,000 px at the pipeline's size)."""
    side = math.isqrt(int(max_pixels * 0.99))
    image = Image.new("L", (side, side), 255)
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=28)
    rng = np.random.default_rng(17)
    for top in range(4, side - 28, 44):
        left = 4
        while left < side - 60:
            word = "".join(chr(97 + int(c)) for c in rng.integers(0, 26, int(rng.integers(2, 7))))
            draw.text((left, top), word, fill=0, font=font)
            left += int(font.getlength(word)) + 28
    return {f"png {side}x{side} dense text page": samples.encode(image, "PNG")}


def memory_status(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) / 1024
    return out


def reset_peak(pid: int) -> None:
    """Reset the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


_RESOLVE = """
import json
from service.settings import load_settings
s = load_settings()
print(json.dumps({k: getattr(s, k) for k in ("max_concurrency", "intra_op_threads", "max_pixels", "memory_limit_mb")}))
"""


def resolved_settings(source: Path, env: dict[str, str]) -> dict[str, object]:
    """The settings the service resolves with ``env`` on this machine (its concurrency from the CPUs)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OCR_")}
    out = subprocess.run(
        [sys.executable, "-c", _RESOLVE], env={**base, **env}, cwd=source, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


class Service:
    def __init__(self, work: Path, source: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.process = ManagedProcess(
            name="service-memory",
            argv=[sys.executable, "-m", "service"],
            log_path=work / "service.log",
            env={"OCR_HOST": LOOPBACK, "OCR_PORT": str(self.port), **env},
            cwd=source,
        ).start()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.started = time.perf_counter()

        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        self.process.wait_ready(ready, timeout=90)
        self.ready_s = time.perf_counter() - self.started

    @property
    def pid(self) -> int:
        return self.process.pid

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False


@functools.cache
def v2_infer(url: str) -> str:
    """The V2 infer route of the model the service at ``url`` serves (its name, as /readyz gives it)."""
    return f"/v2/models/{httpx.get(f'{url}/readyz', timeout=10).json()['model']['name']}/infer"


def v2_request(data: bytes, encoding: str) -> tuple[bytes, dict[str, str]]:
    """An Open Inference Protocol request for one image: JSON with the image in base64, or the binary data
    extension (JSON header, then the element: its 4-byte length and the image)."""
    if encoding == "json":
        body = {
            "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(data).decode()]}]
        }
        return json.dumps(body).encode(), {"Content-Type": "application/json"}
    element = struct.pack("<I", len(data)) + data
    header = json.dumps(
        {
            "inputs": [
                {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(element)}}
            ]
        }
    ).encode()
    return header + element, {
        "Inference-Header-Content-Length": str(len(header)),
        "Content-Type": "application/octet-stream",
    }


def post(url: str, route: str, data: bytes, name: str) -> str:
    """``route`` is /predict, /jobs, or ``v2-json`` / ``v2-binary`` (the V2 infer route, so encoded)."""
    try:
        if route.startswith("v2-"):
            content, headers = v2_request(data, route.removeprefix("v2-"))
            response = httpx.post(f"{url}{v2_infer(url)}", content=content, headers=headers, timeout=REQUEST_TIMEOUT_S)
        else:
            response = httpx.post(f"{url}{route}", files={"file": (name, data)}, timeout=REQUEST_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return f"error:{type(exc).__name__}"
    try:
        error = response.json().get("error")
        code = error.get("code") if isinstance(error, dict) else ("v2-error" if error else None)
    except ValueError:
        code = "not-json"
    return f"{response.status_code}" + (f" {code}" if code else "")


def scenario(
    service: Service, requests: list[tuple[str, bytes, str]], *, concurrency: int, queue: redis.Redis
) -> dict[str, object]:
    """Send ``requests`` (route, body, file name) with ``concurrency`` clients; peak RSS over the scenario.
    The job queue is emptied first, so each scenario's jobs are refused for their own reasons only."""
    queue.flushall()
    reset_peak(service.pid)
    before = memory_status(service.pid)
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(lambda r: post(service.url, *r), requests))
    elapsed = time.perf_counter() - start
    after = memory_status(service.pid)
    return {
        "requests": len(requests),
        "concurrency": concurrency,
        "rss_before_mb": round(before["VmRSS"], 1),
        "peak_rss_mb": round(after["VmHWM"], 1),
        "rss_after_mb": round(after["VmRSS"], 1),
        "seconds": round(elapsed, 1),
        "statuses": dict(Counter(statuses)),
        "healthy_after": service.healthy(),
    }


def run(
    label: str, source: Path, extra_env: dict[str, str] | None = None, only: list[str] | None = None
) -> dict[str, object]:
    limit_mib = pod_memory_limit_mib()
    print(f"pod memory limit (manifest): {limit_mib:.0f} MiB", flush=True)
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp:
        work = Path(tmp)
        redis_ep = start_redis(work, work / "redis")
        env = {"OCR_REDIS_URL": redis_url(redis_ep), "OCR_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT), **(extra_env or {})}
        settings = resolved_settings(source, env)
        print(f"service settings: {json.dumps(settings)}", flush=True)
        worst, near_name = worst_legal(int(settings["max_pixels"]))  # type: ignore[call-overload]
        big = page_near_upload_limit()
        near = worst[near_name]
        print(f"10 MB page: {len(big)} bytes; near-limit page ({near_name}): {len(near)} bytes", flush=True)
        service = Service(work, source, env)
        queue = redis.Redis(host=redis_ep.host, port=redis_ep.port)
        results: dict[str, object] = {}
        try:
            idle = memory_status(service.pid)
            print(f"ready in {service.ready_s:.1f}s; idle RSS {idle['VmRSS']:.0f} MiB", flush=True)
            plan: list[tuple[str, list[tuple[str, bytes, str]], int]] = [
                (f"/predict one {name}", [("/predict", data, "p")], 1) for name, data in worst.items()
            ]
            mixed = [
                ("/predict", near, "n.png"),
                ("/jobs", big, "b.png"),
                ("/jobs", near, "n.png"),
                ("/predict", big, "b.png"),
            ]
            plan += [
                ("/predict 60 concurrent 10 MB pages", [("/predict", big, "b.png")] * 60, 60),
                ("/jobs 60 concurrent 10 MB pages", [("/jobs", big, "b.png")] * 60, 60),
                ("/predict 20 concurrent near-limit pages", [("/predict", near, "n.png")] * 20, 20),
                ("/jobs 20 concurrent near-limit pages", [("/jobs", near, "n.png")] * 20, 20),
                ("/predict and /jobs at once: 30 near-limit + 30 10 MB pages", mixed * 15, 60),
            ]
            # Content-heavy pages: the number of boxes and crops an inference holds grows with what the page
            # shows, not only with its pixels.
            noise = noise_pages(int(settings["max_pixels"]))  # type: ignore[call-overload]
            print(f"noise pages: { {k: len(v) for k, v in noise.items()} }", flush=True)
            first_noise = next(iter(noise.values()))
            noise_mix = [(route, data, "noise") for data in noise.values() for route in ("/predict", "/jobs")]
            plan += [(f"/predict one {name}", [("/predict", data, "noise")], 1) for name, data in noise.items()]
            plan += [
                ("/predict 6 noise pages at once", [("/predict", first_noise, "noise")] * 6, 6),
                ("/predict and /jobs: 24 clients of noise pages", noise_mix * (24 // len(noise_mix) + 1), 24),
            ]
            # The worst content at concurrency: gray noise at the pixel limit in every format that fits the
            # upload limit and 2-px strips, over /predict, /jobs and both V2 encodings, 24 clients.
            pixels = int(settings["max_pixels"])  # type: ignore[call-overload]
            heavy = {**gray_noise_pages(pixels), **noise_strips(pixels), **dense_text_page(pixels)}  # type: ignore[call-overload]
            noise = {**noise, **heavy}
            print(f"content-heavy inputs: { {k: len(v) for k, v in heavy.items()} }", flush=True)
            routes = ("/predict", "/jobs", "v2-json", "v2-binary")
            heavy_mix = [(route, data, "heavy") for data in heavy.values() for route in routes]
            plan += [(f"/predict one {name}", [("/predict", data, "heavy")], 1) for name, data in heavy.items()]
            plan += [
                ("/predict 6 gray noise pages at once", [("/predict", next(iter(heavy.values())), "heavy")] * 6, 6),
                (
                    "/predict, /jobs and V2: 24 clients of gray noise pages and strips",
                    heavy_mix * (48 // len(heavy_mix) + 1),
                    24,
                ),
            ]
            if only:
                plan = [step for step in plan if any(word in step[0] for word in only)]
            for name, requests, concurrency in plan:
                results[name] = scenario(service, requests, concurrency=concurrency, queue=queue)
                print(f"{name}: {json.dumps(results[name])}", flush=True)
        finally:
            service.process.stop()
            redis_ep.process.stop()
    peak = max(float(r["peak_rss_mb"]) for r in results.values())  # type: ignore[index,arg-type]
    return {
        "label": label,
        "source": str(source),
        "commit": _commit(source),
        "pod_limit_mib": limit_mib,
        "settings": settings,
        "idle_rss_mb": round(idle["VmRSS"], 1),
        "peak_rss_mb": peak,
        "peak_vs_limit": round(peak / limit_mib, 3),
        "under_limit": peak < limit_mib,
        "within_target": peak <= TARGET_SHARE * limit_mib,
        "inputs": {"ten_mb_page_bytes": len(big), **{k: len(v) for k, v in {**worst, **noise}.items()}},
        "scenarios": results,
    }


def _commit(source: Path) -> str | None:
    out = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="after", help="name of this run in the results file")
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout whose service is measured")
    parser.add_argument("--record", action="store_true", help="write to bench/results (committed), not artifacts/bench")
    parser.add_argument(
        "--env", action="append", default=[], metavar="OCR_NAME=VALUE", help="a setting for the service (repeatable)"
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="WORDS", help="run only the scenarios whose name holds WORDS"
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    run_result = run(args.label, args.source.resolve(), extra, args.only)
    path = results_dir(args.record) / "memory.json"
    runs = json.loads(path.read_text()).get("runs", {}) if path.exists() else {}
    runs[args.label] = run_result
    written = write_result("memory", {"runs": runs}, record=args.record)
    print(f"peak RSS {run_result['peak_rss_mb']} MiB vs pod limit {run_result['pod_limit_mib']:.0f} MiB -> {written}")
    return 0 if run_result["within_target"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
