"""``tox -e milestone1`` on a machine that cannot run it: preflight first, no environment built, a clear exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.provisioning.paths import REPO_ROOT


def test_a_milestone_run_checks_the_machine_before_building_its_environment(tmp_path: Path) -> None:
    # No docker, kind or helm on PATH and an empty tool cache: the preflight cannot pass, whatever this machine has.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {"PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    env |= {"XDG_CACHE_HOME": str(tmp_path / "cache"), "OCR_PLATFORM_CACHE": str(tmp_path / "cache")}
    work = tmp_path / "tox"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("tox")), "--workdir", str(work), "-e", "milestone1"],
        cwd=REPO_ROOT, env={**env, "DOCKER_HOST": "unix:///nonexistent.sock"}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith("milestone1: the run did not happen: this machine cannot run the milestone1 profile"), first
    assert "--install-tools" in first
    assert "kind v" in done.stderr and "helm v" in done.stderr
    assert not (work / "milestone1").exists(), "tox built the environment before the preflight refused the machine"
