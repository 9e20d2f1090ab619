"""Where CRDs come from: the directory order, loading, and the pinned upstream sources (never fetched here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import cli
from harness.checks.manifests import crds
from harness.checks.manifests.crds import crd_sources, default_crd_dir, load_crds
from harness.errors import HarnessError
from harness.provisioning import versions


def test_the_environment_variable_wins(tmp_path: Path) -> None:
    assert default_crd_dir({"OCR_CRD_DIR": str(tmp_path)}) == tmp_path


def test_shared_crds_beside_the_repository_come_next(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(crds, "SHARED_CRD_DIR", tmp_path)
    assert default_crd_dir({}) == tmp_path


def test_the_cache_is_the_last_resort(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(crds, "SHARED_CRD_DIR", tmp_path / "absent")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_crd_dir({}) == tmp_path / ".cache" / "ocr-platform" / "crds"


def test_loading_indexes_served_versions_with_their_scope(crd_dir: Path) -> None:
    loaded = load_crds(crd_dir)
    isvc = loaded[("serving.kserve.io", "v1beta1", "InferenceService")]
    assert isvc.namespaced and isvc.schema["type"] == "object"
    assert ("networking.istio.io", "v1alpha3", "EnvoyFilter") in loaded
    assert not loaded[("keda.sh", "v1alpha1", "ClusterTriggerAuthentication")].namespaced


def test_a_missing_or_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="does not exist"):
        load_crds(tmp_path / "absent")
    (tmp_path / "notes.yaml").write_text("kind: ConfigMap\n")
    with pytest.raises(HarnessError, match="no CustomResourceDefinition"):
        load_crds(tmp_path)


def test_sources_are_the_pinned_tags() -> None:
    urls = [source.url for source in crd_sources()]
    assert all(url.startswith("https://raw.githubusercontent.com/") for url in urls)
    assert any(f"/kserve/kserve/{versions.KSERVE_VERSION}/" in url for url in urls)
    assert any(f"/istio/istio/{versions.ISTIO_VERSION}/" in url for url in urls)
    assert any(f"/kedacore/keda/v{versions.KEDA.version.removeprefix('v')}/" in url for url in urls)
    assert any(f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK.version}/" in url for url in urls)
    assert any(f"/knative/serving/knative-v{versions.KNATIVE_SERVING}.0/" in url for url in urls)
    assert len({source.filename for source in crd_sources()}) == len(urls)


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self) -> bytes:
        return self.data


def _fetch_fails_after(monkeypatch: pytest.MonkeyPatch, good: int) -> None:
    """urlopen answers ``good`` files, then fails as an unreachable network does."""
    calls = []

    def urlopen(url: str, timeout: float) -> _Body:
        calls.append(url)
        if len(calls) > good:
            raise OSError("network is unreachable")
        return _Body(b"kind: CustomResourceDefinition\n")

    monkeypatch.setattr(crds.urllib.request, "urlopen", urlopen)


def test_a_failed_fetch_leaves_no_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fetch_fails_after(monkeypatch, good=3)
    dest = tmp_path / "cache" / "crds"
    with pytest.raises(HarnessError, match=r"could not download .*network is unreachable"):
        crds.download_crds(dest)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_failed_fetch_keeps_the_previous_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dest = tmp_path / "crds"
    (dest / "old").mkdir(parents=True)
    (dest / "old" / "crd.yaml").write_text("kind: CustomResourceDefinition\n")
    _fetch_fails_after(monkeypatch, good=0)
    with pytest.raises(HarnessError):
        crds.download_crds(dest)
    assert [p.name for p in tmp_path.iterdir()] == ["crds"] and (dest / "old" / "crd.yaml").exists()


def test_a_complete_fetch_replaces_the_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dest = tmp_path / "crds"
    (dest / "stale.yaml").parent.mkdir(parents=True)
    (dest / "stale.yaml").write_text("old")
    _fetch_fails_after(monkeypatch, good=len(crd_sources()))
    written = crds.download_crds(dest)
    assert sorted(p.relative_to(dest).as_posix() for p in written) == sorted(s.filename for s in crd_sources())
    assert all(p.is_file() for p in written) and not (dest / "stale.yaml").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["crds"]


def test_without_crds_the_message_says_the_command_that_fetches_them(tmp_path: Path) -> None:
    for directory in (tmp_path / "absent", tmp_path):  # absent, then empty (what a failed fetch once left)
        with pytest.raises(HarnessError, match=re.escape(f"manifests fetch-crds --dest {directory}` (network)")):
            load_crds(directory)
    cache = crds.cache_crd_dir()
    assert "fetch-crds --dest" not in (crds.crd_dir_problem(cache) or "fetch-crds")


def test_validate_without_crds_says_how_to_get_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["manifests", "validate", "--crd-dir", str(tmp_path / "none"), "--overlay", "milestone1"]) == 2
    assert f"manifests fetch-crds --dest {tmp_path / 'none'}" in capsys.readouterr().err
