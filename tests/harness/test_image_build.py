import os
from pathlib import Path

import pytest

from harness.provisioning import versions
from harness.provisioning.image.build import (
    CONTEXT_DIRS,
    CONTEXT_FILES,
    REPO,
    BuildRequest,
    build_args,
    default_cache_dir,
    https_source,
    stage_context,
)


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("git@github.com:acme/ocr-platform.git", "https://github.com/acme/ocr-platform"),
        ("https://github.com/acme/ocr-platform.git", "https://github.com/acme/ocr-platform"),
        ("https://user:s3cret@github.com/acme/ocr-platform", "https://github.com/acme/ocr-platform"),
        ("ssh://git@gitlab.example:2222/team/ocr.git", "https://gitlab.example/team/ocr"),
        ("/srv/git/ocr-platform.git", None),
        ("", None),
    ],
)
def test_https_source(remote: str, url: str | None) -> None:
    assert https_source(remote) == url


def test_build_args_leave_unknown_facts_to_the_dockerfile() -> None:
    args = build_args(BuildRequest(version="0.1.0", revision="abc", wheelhouse=False))
    assert args == {
        "BASE_IMAGE": versions.PYTHON_BASE_IMAGE,
        "IMAGE_VERSION": "0.1.0",
        "IMAGE_REVISION": "abc",
        "WHEELHOUSE": "0",
    }
    full = build_args(BuildRequest(source="https://x/y", model_version="3.10.0+abc", wheelhouse=True))
    assert full["IMAGE_SOURCE"] == "https://x/y" and full["MODEL_VERSION"] == "3.10.0+abc"
    assert full["WHEELHOUSE"] == "1"


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OCR_PLATFORM_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "ocr-platform"
    monkeypatch.setenv("OCR_PLATFORM_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"


def _repo(root: Path, *, readme: bool = True) -> Path:
    (root / "service" / "__pycache__").mkdir(parents=True)
    (root / "service" / "__init__.py").write_text("")
    (root / "service" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (root / "service" / "Dockerfile").write_text("FROM scratch\n")
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "x"\nreadme = "README.md"\n')
    if readme:
        (root / "README.md").write_text("# x\n")
    return root


LOCKED = "six==1.17.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"


def test_stage_context_copies_only_what_the_image_needs(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "six-1.17.0-py2.py3-none-any.whl").write_bytes(b"whl")
    (wheels / ".complete").write_text("")
    dest = tmp_path / "ctx"
    dest.mkdir()
    stage_context(repo, dest, wheels, LOCKED)
    staged = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert staged == [
        "service",
        "service/Dockerfile",
        "service/__init__.py",
        "service/requirements.txt",
        "wheelhouse",
        "wheelhouse/six-1.17.0-py2.py3-none-any.whl",
    ]
    assert (dest / "service/requirements.txt").read_text() == LOCKED
    assert (
        os.stat(dest / "wheelhouse/six-1.17.0-py2.py3-none-any.whl").st_ino
        == os.stat(wheels / "six-1.17.0-py2.py3-none-any.whl").st_ino
    )


def test_stage_context_without_wheelhouse(tmp_path: Path) -> None:
    dest = tmp_path / "ctx"
    dest.mkdir()
    stage_context(_repo(tmp_path / "repo"), dest, None, LOCKED)
    assert not (dest / "wheelhouse").exists()


def test_dockerignore_lets_in_what_the_staged_context_holds() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    for name in [*CONTEXT_FILES, *CONTEXT_DIRS]:
        if name != ".dockerignore":
            assert f"!{name}" in lines or f"!{name}/" in lines
    assert "!wheelhouse/" in lines


def test_dockerfile_defaults_to_the_pinned_base_and_a_fixed_non_root_user() -> None:
    lines = [line.strip() for line in (REPO / "service" / "Dockerfile").read_text().splitlines()]
    assert f"ARG BASE_IMAGE={versions.PYTHON_BASE_IMAGE}" in lines
    assert "USER 10001:10001" in lines
    assert 'CMD ["python", "-m", "service"]' in lines
    assert "EXPOSE 8080" in lines
