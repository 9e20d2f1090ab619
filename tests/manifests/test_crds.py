"""Where CRDs come from: the directory order, loading, and the pinned upstream sources (never fetched here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import versions
from harness.errors import HarnessError
from harness.manifests import crds
from harness.manifests.crds import crd_sources, default_crd_dir, load_crds


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
