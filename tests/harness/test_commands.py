"""The one command runner: a missing tool, a timeout and a failure each become one clear harness error."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness import commands
from harness.errors import CommandFailed, CommandTimeout, ToolMissing


def test_output_of_a_short_command() -> None:
    assert commands.run(["sh", "-c", "echo out; echo err >&2"], timeout=10) == "out\n"
    assert commands.run(["sh", "-c", "echo out; echo err >&2"], timeout=10, merge_stderr=True) == "out\nerr\n"
    assert commands.run(["cat"], timeout=10, input=b"bytes in") == "bytes in"


def test_a_missing_tool_says_how_to_get_it() -> None:
    with pytest.raises(ToolMissing) as caught:
        commands.run(["kind-that-does-not-exist"], timeout=10)
    assert caught.value.name == "kind-that-does-not-exist"
    with pytest.raises(ToolMissing, match="preflight --install-tools"):
        commands.run(["/nonexistent/bin/helm", "version"], timeout=10)


def test_a_failure_keeps_argv_code_and_stderr() -> None:
    with pytest.raises(CommandFailed) as caught:
        commands.run(["sh", "-c", "echo 'Error: release not found' >&2; exit 4"], timeout=10)
    assert caught.value.returncode == 4
    assert "release not found" in caught.value.stderr
    assert "exited 4" in str(caught.value)


def test_a_timeout_is_an_error_with_what_was_seen(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(CommandTimeout) as caught:
        commands.run(["sh", "-c", "echo waiting >&2; sleep 30"], timeout=0.5)
    assert time.monotonic() - start < 10
    assert "to finish" in str(caught.value)
    with pytest.raises(CommandTimeout, match="partial output"):
        commands.run_logged(["sh", "-c", "echo partial output; sleep 30"], log=tmp_path / "log", timeout=1.5)
    assert time.monotonic() - start < 20


def test_logged_output_streams_with_a_heartbeat_and_stays_in_the_log(tmp_path: Path) -> None:
    said: list[str] = []
    log = tmp_path / "provision.log"
    commands.run_logged(
        ["sh", "-c", "echo first; sleep 1.5; echo second"], log=log, timeout=30, say=said.append, heartbeat_s=0.4
    )
    assert said[0] == "first" and said[-1] == "second"
    assert any(line.startswith("... still running (") for line in said), said
    text = log.read_text()
    assert text.startswith("$ sh -c") and "first\n" in text and "second\n" in text


def test_a_logged_failure_reports_this_run_only(tmp_path: Path) -> None:
    log = tmp_path / "provision.log"
    commands.run_logged(["sh", "-c", "echo earlier step said connection refused"], log=log, timeout=10)
    with pytest.raises(CommandFailed) as caught:
        commands.run_logged(["sh", "-c", "echo unknown field; exit 1"], log=log, timeout=10)
    assert "unknown field" in caught.value.stderr
    assert "connection refused" not in caught.value.stderr


def test_elapsed_time_reads_like_a_person_writes_it() -> None:
    assert commands.format_elapsed(7.9) == "7s"
    assert commands.format_elapsed(95) == "1m35s"
    assert commands.format_elapsed(3600) == "60m00s"
