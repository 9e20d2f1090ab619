"""service.logs: the JSON formatter, and what ``configure`` does to a process (each case in a fresh one).

``configure`` takes over file descriptors 1 and 2, so it never runs inside pytest's process: every case runs
a short Python program in a child process and reads what it wrote.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from service.logs import MAX_RAW_LINE, JsonFormatter

ROOT = Path(__file__).resolve().parents[2]
LEVELS = {"debug", "info", "warning", "error", "critical"}


def run(program: str, *, timeout: float = 60) -> tuple[list[dict[str, Any]], subprocess.CompletedProcess[str]]:
    """Run ``program`` after ``from service import logs``; return its stderr as JSON objects (every line one)."""
    source = "from service import logs\n" + textwrap.dedent(program)
    done = subprocess.run(
        [sys.executable, "-c", source], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = []
    for line in done.stderr.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}\nstderr:\n{done.stderr}") from None
        assert isinstance(obj, dict) and obj.get("level") in LEVELS and isinstance(obj.get("message"), str), line
        lines.append(obj)
    return lines, done


def messages(lines: list[dict[str, Any]], **match: Any) -> list[str]:
    return [line["message"] for line in lines if all(line.get(k) == v for k, v in match.items())]


# -- the formatter ----------------------------------------------------------------------------------------


def test_formatter_writes_extra_fields_and_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, "f.py", 1, "failed %s", ("x",), sys.exc_info(), extra={"job_id": "j1"}
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "error" and line["logger"] == "t" and line["message"] == "failed x"
    assert line["job_id"] == "j1"
    assert "ValueError: boom" in line["exception"]
    assert line["timestamp"].endswith("Z")


# -- configure, in child processes ------------------------------------------------------------------------


def test_native_writes_on_fd_2_become_warning_records_with_a_source() -> None:
    lines, done = run(
        """
        import os
        logs.configure("info")
        os.write(2, b"TIFFFillStrip: Read error on strip 0.\\n\\x1b[33mcoloured\\x1b[0m\\r\\n\\n")
        os.write(2, b"no newline at exit")
        """
    )
    assert done.returncode == 0
    assert messages(lines, source="stderr", level="warning", logger="stderr") == [
        "TIFFFillStrip: Read error on strip 0.",
        "coloured",
        "no newline at exit",
    ]
    assert done.stdout == ""


def test_stdout_lines_become_info_records_on_stderr() -> None:
    lines, done = run(
        """
        import os
        logs.configure("info")
        print("a stray print")
        os.write(1, b"from C\\n")
        """
    )
    assert done.stdout == ""
    assert messages(lines, source="stdout", level="info") == ["a stray print", "from C"]


def test_a_raw_line_longer_than_the_limit_is_cut_into_records() -> None:
    lines, _ = run(
        f"""
        import os
        logs.configure("info")
        os.write(2, b"x" * {MAX_RAW_LINE * 2 + 10} + b"\\n")
        """
    )
    assert [len(m) for m in messages(lines, source="stderr")] == [MAX_RAW_LINE, MAX_RAW_LINE, 10]


def test_a_native_write_holding_the_gil_does_not_block_the_process() -> None:
    """libtiff may write while Pillow holds the GIL: the pipe holds far more than 64 KiB meanwhile."""
    lines, done = run(
        """
        import ctypes
        logs.configure("info")
        line = b"w" * 99 + b"\\n"
        data = line * 3000  # 300 KB in one write that keeps the GIL
        libc = ctypes.PyDLL(None)
        assert libc.write(2, data, len(data)) == len(data)
        """,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(messages(lines, source="stderr")) == 3000


def test_configure_twice_changes_the_level_and_captures_once() -> None:
    lines, _ = run(
        """
        import logging, os
        logs.configure()
        logs.configure("error")
        logging.getLogger("service").warning("hidden")
        os.write(2, b"hidden raw\\n")
        logging.getLogger("service").error("shown")
        """
    )
    assert [line["message"] for line in lines] == ["shown"]
    lines, _ = run(
        """
        import os
        logs.configure("error")
        logs.configure("debug")
        os.write(2, b"raw once\\n")
        """
    )
    assert [line["message"] for line in lines] == ["raw once"]


def test_loggers_with_their_own_stream_handlers_reach_the_json_handler() -> None:
    lines, _ = run(
        """
        import logging, sys
        lib = logging.getLogger("lib")
        lib.addHandler(logging.StreamHandler(sys.stderr))
        lib.propagate = False
        uv = logging.getLogger("uvicorn.error")
        uv.addHandler(logging.StreamHandler())
        logs.configure("info")
        lib.warning("from lib")
        uv.info("from uvicorn")
        logging.getLogger("uvicorn.access").info("access lines are the service's own")
        """
    )
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("lib", "from lib"),
        ("uvicorn.error", "from uvicorn"),
    ]


def test_pillow_warnings_are_records_with_category_and_origin_every_time() -> None:
    lines, _ = run(
        """
        import io, struct, zlib
        from PIL import Image
        logs.configure("info")
        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        png = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 9500, 9500, 1, 0, 0, 0, 0))
        for _ in range(2):
            Image.open(io.BytesIO(png + chunk(b"IEND", b"")))
        """
    )
    warned = [line for line in lines if line.get("source") == "warnings"]
    assert len(warned) == 2
    for line in warned:
        assert line["logger"] == "py.warnings" and line["level"] == "warning"
        assert line["category"] == "DecompressionBombWarning"
        assert line["origin"].split(":")[0].endswith("PIL/Image.py")
        assert line["message"].startswith("Image size (90250000 pixels) exceeds limit")


def test_other_warnings_keep_python_filters() -> None:
    lines, _ = run(
        """
        import warnings
        logs.configure("info")
        for _ in range(3):
            warnings.warn("once per place")
        """
    )
    assert messages(lines, source="warnings", category="UserWarning") == ["once per place"]


def test_uncaught_exceptions_are_one_record_each() -> None:
    lines, done = run(
        """
        import threading
        logs.configure("info")
        thread = threading.Thread(target=lambda: 1 / 0, name="worker-thread")
        thread.start(); thread.join()
        raise RuntimeError("main failed")
        """
    )
    assert done.returncode == 1
    thread, main = [line for line in lines if line.get("source") == "excepthook"]
    assert thread["message"] == "uncaught exception in thread worker-thread: ZeroDivisionError"
    assert "ZeroDivisionError" in thread["exception"]
    assert main["level"] == "critical" and main["message"] == "uncaught exception: RuntimeError"
    assert "RuntimeError: main failed" in main["exception"]


def test_without_capture_fds_the_descriptors_are_left_alone() -> None:
    _, done = run(
        """
        import logging, os
        logs.configure("info", capture_fds=False)
        logging.getLogger("service").info("json")
        os.write(1, b"raw stdout\\n")
        """
    )
    assert done.stdout == "raw stdout\n"
    assert json.loads(done.stderr)["message"] == "json"
