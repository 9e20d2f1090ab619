"""The locked set: reading uv's export, and comparing an installed set with it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.provisioning import lock

H = "--hash=sha256:" + "c" * 64


def test_parse_requirements_reads_pins_markers_and_hashes() -> None:
    text = f"# header\nRedis==8.2.0 \\\n    {H}\nasync-timeout==5.0.1 ; python_full_version < '3.11.3' \\\n    {H}\n"
    pins = lock.parse_requirements(text)
    assert [(p.name, p.version, p.hashes) for p in pins] == [
        ("redis", "8.2.0", ("sha256:" + "c" * 64,)),
        ("async-timeout", "5.0.1", ("sha256:" + "c" * 64,)),
    ]
    assert pins[1].applies({"python_full_version": "3.11.2"})
    assert not pins[1].applies({"python_full_version": "3.11.7"})


@pytest.mark.parametrize("line", ["redis>=8.2", f"redis>=8,<9 {H}", "redis==8.2.0", "redis"])
def test_parse_requirements_refuses_anything_but_exact_hashed_pins(line: str) -> None:
    with pytest.raises(HarnessError, match="not one exact pin with hashes"):
        lock.parse_requirements(line + "\n")


def test_expected_set_and_its_difference_from_what_is_installed() -> None:
    pins = lock.parse_requirements(f"a==1 {H}\nb==2 ; sys_platform == 'win32' {H}\nc_d==3 {H}\n")
    expected = lock.expected_set(pins, {"sys_platform": "linux"})
    assert expected == {"a": "1", "c-d": "3"}
    assert lock.set_difference(expected, {"A": "1", "c.d": "3"}) == []
    assert lock.set_difference(expected, {"a": "1.1", "pip": "24.0"}) == [
        "a is 1.1, the lock says 1",
        "c-d 3 is locked but not installed",
        "pip 24.0 is installed but not locked",
    ]


def test_the_service_export_of_the_real_lock_is_the_services_dependencies() -> None:
    pins = lock.parse_requirements(lock.service_requirements())
    names = {pin.name for pin in pins}
    for needed in ("fastapi", "uvicorn", "onnxruntime", "rapidocr", "rapid-layout", "pillow", "redis"):
        assert needed in names
    # The service extra leaves the harness and the dev tools out.
    assert not names & {"pytest", "kubernetes", "locust", "ruff", "mypy"}


def _copy(repo: Path, *names: Path | str) -> None:
    for name in names:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lock.REPO / name, repo / name)


def test_check_passes_on_the_committed_files_and_names_each_stale_one(tmp_path: Path) -> None:
    assert lock.problems() == []
    repo = tmp_path / "repo"
    _copy(
        repo, "pyproject.toml", "uv.lock", ".python-version", "README.md", *(p for pair in lock.COMPILED for p in pair)
    )
    assert lock.problems(repo) == []

    source, output = lock.COMPILED[0]
    (repo / source).write_text((repo / source).read_text() + "six==1.16.0\n")
    pyproject = (repo / "pyproject.toml").read_text()
    (repo / "pyproject.toml").write_text(pyproject.replace('"jinja2>=3.1",', '"jinja2>=3.1",\n    "six==1.16.0",'))
    found = lock.problems(repo)
    assert len(found) == 2
    assert found[0].startswith("uv.lock is out of date with pyproject.toml: run `make lock`")
    assert found[1] == f"{output} is not the compiled {source}: run `python -m harness lock export`"
