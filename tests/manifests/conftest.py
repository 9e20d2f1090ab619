"""Fixtures of the manifests tier: the pinned CRDs, a schema catalog, and cached renders of every overlay."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.checks.manifests.schemas import SchemaCatalog
from harness.provisioning.objects import Obj
from harness.provisioning.paths import REPO_ROOT
from harness.provisioning.render import render
from tests.manifests.helpers import CRD_DIR, CRD_SKIP_REASON


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    if CRD_SKIP_REASON is not None:
        pytest.skip(f"the manifests tier needs the pinned upstream CRDs: {CRD_SKIP_REASON}")
    return CRD_DIR


@pytest.fixture(scope="session")
def catalog(crd_dir: Path) -> SchemaCatalog:
    return SchemaCatalog(crd_dir)


@pytest.fixture(scope="session")
def _render_cache() -> dict[str, list[Obj]]:
    return {}


@pytest.fixture
def rendered(_render_cache: dict[str, list[Obj]]) -> Callable[[str], list[Obj]]:
    """A fresh copy of an overlay's objects (rendered once per session), free to break."""

    def get(name: str) -> list[Obj]:
        if name not in _render_cache:
            _render_cache[name] = render(name)
        return copy.deepcopy(_render_cache[name])

    return get


@pytest.fixture
def manifests_copy(tmp_path: Path) -> Iterator[Path]:
    """A copy of the manifests tree to generate keys into or to break, leaving the repository untouched."""
    target = tmp_path / "manifests"
    shutil.copytree(REPO_ROOT / "manifests", target, ignore=shutil.ignore_patterns("secrets"))
    yield target
