"""A line logged for a signal is never lost to the line the signal interrupted.

Reproduced for real in a child process: its log stream is a pipe of 4 KiB that nobody reads yet, so writing a
100 KB record blocks the main thread inside the stream's write; a signal arrives then, and its handler logs.
Logged in the handler itself (the control), Python refuses the reentrant write and the line is lost; through
``service.logs.log_from_signal`` it is written once the interrupted record is out.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import fcntl, logging, os, signal, sys, threading, time
from service.logs import log_from_signal

direct = sys.argv[1] == "direct"
read_end, write_end = os.pipe()
fcntl.fcntl(write_end, 1031, 4096)  # F_SETPIPE_SZ: smaller than the record below
log = logging.getLogger("signal-test")
log.setLevel(logging.INFO)
handler = logging.StreamHandler(os.fdopen(write_end, "w", buffering=1))
handler.handleError = lambda record: None  # as the service's handler: a failed write is dropped
log.addHandler(handler)

def on_signal(sig, frame):
    if direct:
        log.info("the signal's line")
    else:
        log_from_signal(log, "the signal's line")

signal.signal(signal.SIGUSR1, on_signal)

def read_later():
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGUSR1)  # while the main thread is blocked writing
    time.sleep(0.5)
    os.set_blocking(read_end, False)
    out, deadline = b"", time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            out += os.read(read_end, 65536)
        except BlockingIOError:
            time.sleep(0.05)
    print("kept" if b"the signal's line" in out else "lost", flush=True)
    os._exit(0)

threading.Thread(target=read_later).start()
log.info("x" * 100_000)
time.sleep(10)
"""


def _child(mode: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout.strip() or done.stderr[-500:]


@pytest.mark.parametrize(("mode", "expected"), [("direct", "lost"), ("thread", "kept")])
def test_a_signal_handler_logs_through_a_thread_so_its_line_is_kept(mode: str, expected: str) -> None:
    # "direct" is the control: it shows the setup does interrupt a write, which is what the fix is for.
    assert _child(mode) == expected
