"""The ``harness manifests`` command: one line per overlay, non-zero exit on any error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import cli
from harness.checks.manifests import actions
from harness.provisioning.paths import REPO_ROOT


def test_validate_prints_one_line_per_overlay(crd_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["manifests", "validate", "--crd-dir", str(crd_dir), "--overlay", "milestone1", "--overlay", "milestone3"]
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(out) == 2
    assert out[0].startswith("milestone1: ") and out[0].endswith(" objects, 0 errors")
    assert out[1].startswith("milestone3: ")


def test_validate_exits_non_zero_and_lists_errors(
    crd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Only KServe's CRDs: every other custom kind of milestone2 has no schema, which is an error.
    partial = tmp_path / "crds"
    partial.mkdir()
    for crd in (crd_dir / "kserve").glob("*.yaml"):
        (partial / crd.name).write_text(crd.read_text())
    code = cli.main(["manifests", "validate", "--crd-dir", str(partial), "--overlay", "milestone2"])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[0].startswith("milestone2: ") and not out[0].endswith(" 0 errors")
    assert any(line.startswith("  PeerAuthentication/istio-system/default: [schema]") for line in out[1:])


def test_a_missing_crd_dir_is_a_harness_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["manifests", "validate", "--crd-dir", str(tmp_path / "nowhere"), "--overlay", "milestone1"])
    assert code == 2
    assert "fetch-crds" in capsys.readouterr().err


def test_render_prints_the_objects(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["manifests", "render", "milestone1"]) == 0
    kinds = {doc["kind"] for doc in yaml.safe_load_all(capsys.readouterr().out) if doc}
    assert {"Namespace", "InferenceService", "PodMonitor"} <= kinds


def test_the_harness_command_line_has_the_manifests_command() -> None:
    args = cli.build_parser().parse_args(["manifests", "validate", "--overlay", "full", "--crd-dir", "/x"])
    assert args.func is actions.run_validate
    assert args.overlays == ["full"]
    assert args.crd_dir == Path("/x")


def test_python_dash_m_runs_the_same_command(crd_dir: Path) -> None:
    env = {**os.environ, "OCR_CRD_DIR": str(crd_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "harness", "manifests", "validate", "--overlay", "scale-to-zero"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("scale-to-zero: ")


def test_keys_rotate_replaces_one_key_and_says_how_to_apply_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.provisioning.secrets import HASHES_FILE, generate_api_keys, read_api_keys

    before = read_api_keys(generate_api_keys(tmp_path))
    monkeypatch.setattr(actions, "SECRETS_DIR", tmp_path)
    assert cli.main(["manifests", "keys", "--rotate", "primary"]) == 0
    after = read_api_keys(tmp_path / "api-keys.env")
    assert after["OCR_API_KEY_PRIMARY"] != before["OCR_API_KEY_PRIMARY"]
    assert after["OCR_API_KEY_SECONDARY"] == before["OCR_API_KEY_SECONDARY"]
    out = capsys.readouterr().out
    assert f"kubectl apply -f {tmp_path / HASHES_FILE}" in out
    assert not [key for key in (*before.values(), *after.values()) if key in out]
    with pytest.raises(SystemExit):
        cli.main(["manifests", "keys", "--rotate", "tertiary"])
