"""Processes the harness starts get exactly the service settings it gives them, not the user's shell's."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.processes import ManagedProcess, ignored_settings, inherited_env


def test_a_started_process_inherits_no_service_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCR_MAX_UPLOAD_BYTES", "1000")
    monkeypatch.setenv("HARNESS_KEEP_ME", "yes")
    assert "OCR_MAX_UPLOAD_BYTES" not in inherited_env() and inherited_env()["HARNESS_KEEP_ME"] == "yes"
    assert "OCR_MAX_UPLOAD_BYTES" in ignored_settings()
    process = ManagedProcess("env", ["sh", "-c", "env"], tmp_path / "env.log", env={"OCR_PORT": "9999"}).start()
    assert process.wait_exit(10) == 0
    lines = process.log_text().splitlines()
    assert "OCR_PORT=9999" in lines and "HARNESS_KEEP_ME=yes" in lines
    assert not [line for line in lines if line.startswith("OCR_MAX_UPLOAD_BYTES")]
