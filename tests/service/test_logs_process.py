"""Every line a real service or worker process writes is one JSON object, whatever wrote it.

Each test sends an input that makes one source of output speak, then reads the process's output (stdout
and stderr, as the harness keeps them) and parses every line: Pillow's ``warnings`` (a decompression bomb
below the error threshold, a corrupt EXIF tag), libtiff writing on file descriptor 2 (a TIFF whose strip
byte count runs past the end of the file), and the model load.
"""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from harness import wait
from harness.acceptance.components import Endpoint, redis_url, start_redis, start_service, start_worker
from harness.processes import ManagedProcess
from harness.provisioning import samples
from service.jobs.store import JobStore
from service.settings import load_settings

LEVELS = {"debug", "info", "warning", "error", "critical"}


# -- inputs that make each source speak ----------------------------------------------------------------


def bomb_png(width: int = 9500, height: int = 9500) -> bytes:
    """A 66-byte PNG header declaring 90.25 M pixels: over Pillow's warning threshold, under its error one."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def corrupt_exif_jpeg() -> bytes:
    """A JPEG whose EXIF ImageDescription claims 40 bytes at an offset where 5 remain."""
    tiff = struct.pack("<2sHI", b"II", 42, 8) + struct.pack("<HHHII", 1, 0x010E, 2, 40, 26) + struct.pack("<I", 0)
    return samples.encode(Image.new("RGB", (32, 16), "white"), "JPEG", exif=b"Exif\0\0" + tiff + b"short")


def corrupt_strip_tiff() -> bytes:
    """A deflate TIFF (decoded by libtiff) whose StripByteCounts tag points 50 times past the end of the file."""
    data = bytearray(samples.encode(Image.new("L", (64, 32), 255), "TIFF", compression="tiff_deflate"))
    assert data[:4] == b"II*\0"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (entries,) = struct.unpack_from("<H", data, ifd)
    for i in range(entries):
        at = ifd + 2 + 12 * i
        tag, kind, count, value = struct.unpack_from("<HHII", data, at)
        if tag == 279:  # StripByteCounts, one LONG held in the entry itself
            assert (kind, count) == (4, 1)
            struct.pack_into("<I", data, at + 8, value * 50)
            return bytes(data)
    raise AssertionError("no StripByteCounts tag")


def blank_png() -> bytes:
    """Nothing to read: a job that succeeds with no text."""
    return samples.encode(Image.new("RGB", (200, 100), "white"))


# -- reading a process's output --------------------------------------------------------------------------


def parse_all(process: ManagedProcess) -> list[dict[str, Any]]:
    """Every line of the process's output as a JSON object with a level and a message, or fail naming it."""
    objects = []
    for number, line in enumerate(process.log_text().splitlines(), 1):
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError(f"{process.name} line {number} is not JSON: {line!r}") from None
        assert isinstance(obj, dict), f"{process.name} line {number} is not an object: {line!r}"
        assert obj.get("level") in LEVELS, f"{process.name} line {number} has no level: {line!r}"
        assert isinstance(obj.get("message"), str), f"{process.name} line {number} has no message: {line!r}"
        objects.append(obj)
    return objects


def seen(process: ManagedProcess, match: Callable[[str], bool], what: str, timeout: float = 30) -> str:
    """Wait until a line (JSON or not) matches; return it."""

    def lines() -> list[str]:
        return [line for line in process.log_text().splitlines() if match(line)]

    found = wait.until(lines, bool, timeout=timeout, interval=0.2, what=what).last
    assert found
    return found[0]


def the_object(process: ManagedProcess, line: str) -> dict[str, Any]:
    """The JSON object of one line, after checking that every line of the output is one."""
    parse_all(process)
    return json.loads(line)


def post(endpoint: Endpoint, data: bytes, name: str) -> httpx.Response:
    return httpx.post(f"{endpoint.url}/predict", files={"file": (name, data)}, timeout=60)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """A service of its own, so that its output holds only what these tests caused."""
    endpoint = start_service(tmp_path_factory.mktemp("logs"), name="service-logs")
    yield endpoint
    endpoint.process.stop()


# -- the API ------------------------------------------------------------------------------------------


def test_the_model_load_writes_json_lines_only(api: Endpoint) -> None:
    seen(api.process, lambda line: "model ready" in line, "the model ready line")
    lines = parse_all(api.process)
    assert any(line["message"] == "model ready" for line in lines)


def test_a_decompression_bomb_warning_is_a_json_line(api: Endpoint) -> None:
    response = post(api, bomb_png(), "bomb.png")
    assert response.status_code == 413, response.text  # over OCR_MAX_PIXELS: refused after the warning
    line = seen(api.process, lambda line: "DecompressionBombWarning" in line, "the decompression bomb warning")
    warning = the_object(api.process, line)
    assert warning["level"] == "warning"
    assert warning["source"] == "warnings"
    assert warning["category"] == "DecompressionBombWarning"
    assert "90250000 pixels" in warning["message"]


def test_a_corrupt_exif_warning_is_a_json_line(api: Endpoint) -> None:
    response = post(api, corrupt_exif_jpeg(), "exif.jpg")
    assert response.status_code == 200, response.text
    line = seen(api.process, lambda line: "Tag data larger than file" in line, "the corrupt EXIF warning")
    warning = the_object(api.process, line)
    assert warning["level"] == "warning"
    assert warning["source"] == "warnings"
    assert warning["category"] == "UserWarning"


def test_libtiff_writing_on_stderr_is_a_json_line(api: Endpoint) -> None:
    response = post(api, corrupt_strip_tiff(), "strip.tif")
    assert response.status_code == 400, response.text
    line = seen(api.process, lambda line: "TIFFFillStrip" in line, "libtiff's read error")
    raw = the_object(api.process, line)
    assert raw["level"] == "warning"
    assert raw["source"] == "stderr"
    assert raw["message"].startswith("TIFFFillStrip: Read error on strip 0")


def test_the_shutdown_lines_are_json_too(tmp_path: Path) -> None:
    endpoint = start_service(tmp_path, name="service-stop", env={"OCR_SHUTDOWN_DRAIN_S": "0"})
    try:
        assert post(endpoint, corrupt_strip_tiff(), "strip.tif").status_code == 400
        endpoint.process.signal(signal.SIGTERM)
        assert endpoint.process.wait_exit(30) == 0
    finally:
        endpoint.process.stop()
    lines = parse_all(endpoint.process)
    assert any(line.get("source") == "stderr" and "TIFFFillStrip" in line["message"] for line in lines)
    assert lines[-1]["message"].startswith("Finished server process")


@pytest.mark.parametrize("module", ["service", "service.jobs.worker"])
def test_a_bad_setting_is_one_json_line(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module],
        env={"PATH": "/usr/bin:/bin", "OCR_MAX_PIXELS": "-5"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [line["level"] for line in lines] == ["critical"]
    assert "OCR_MAX_PIXELS" in lines[0]["message"]


# -- the workers ----------------------------------------------------------------------------------------


def test_a_worker_writes_json_lines_only(tmp_path: Path) -> None:
    """The model load, Pillow's warnings and libtiff, through the job path."""
    redis_ep = start_redis(tmp_path, tmp_path / "data")
    env = {"OCR_REDIS_URL": redis_url(redis_ep), "OCR_INTRA_OP_THREADS": "1", "OCR_MAX_ATTEMPTS": "1"}
    store = JobStore(load_settings(redis_url=env["OCR_REDIS_URL"]))
    store.ensure_group()
    inputs = {"blank": blank_png(), "exif": corrupt_exif_jpeg(), "strip": corrupt_strip_tiff(), "bomb": bomb_png()}
    jobs = {name: store.enqueue(data, request_id=name, tenant_id="t")[0] for name, data in inputs.items()}
    worker = start_worker(tmp_path, name="worker-logs", env=env)
    try:
        wait.until(
            lambda: {name: getattr(store.get(job), "status", None) for name, job in jobs.items()},
            lambda status: set(status.values()) <= {"succeeded", "failed"},
            timeout=60,
            what="every job to end",
        )
        worker.process.signal(signal.SIGTERM)
        assert worker.process.wait_exit(30) == 0
    finally:
        worker.process.stop()
        redis_ep.process.stop()
    lines = parse_all(worker.process)
    messages = [(line.get("logger"), line.get("source"), line["message"]) for line in lines]
    assert any(s == "warnings" and "Tag data larger than file" in m for _, s, m in messages), messages
    assert any(s == "warnings" and "decompression bomb" in m for _, s, m in messages), messages
    assert any(s == "stderr" and m.startswith("TIFFFillStrip") for _, s, m in messages), messages
