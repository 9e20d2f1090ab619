"""Validation of whole overlays: the repository's are clean; a broken tree is reported, object by object."""

from __future__ import annotations

from pathlib import Path

from harness.checks.manifests.schemas import SchemaCatalog
from harness.checks.manifests.validate import OverlayReport, validate_overlay, validate_overlays


def test_every_overlay_validates_with_zero_errors(catalog: SchemaCatalog) -> None:
    reports = validate_overlays(catalog)
    assert [r.summary() for r in reports if not r.ok] == []
    counts = {r.name: r.objects for r in reports}
    assert set(counts) == {"full", "milestone1", "milestone2", "milestone3", "scale-to-zero"}
    # Each milestone adds to the one before.
    assert counts["milestone1"] < counts["milestone2"] < counts["milestone3"]


def test_a_broken_tree_is_reported_with_object_rule_and_path(catalog: SchemaCatalog, manifests_copy: Path) -> None:
    isvc = manifests_copy / "base" / "inferenceservice.yaml"
    isvc.write_text(isvc.read_text().replace("scaleTarget: 65", "scaleTargt: 65").replace("maxReplicas: 10", ""))
    report = validate_overlay("milestone1", catalog, directory=manifests_copy / "overlays" / "milestone1")
    assert not report.ok
    lines = [str(f) for f in report.findings]
    assert "InferenceService/ocr-dev/ocr: [schema] at spec.predictor.scaleTargt: unknown field" in lines
    assert any("[isvc-scalable] at spec.predictor.maxReplicas: maxReplicas unset" in line for line in lines)
    assert report.summary() == f"milestone1: {report.objects} objects, 2 errors"


def test_a_tree_that_does_not_render_is_a_failure(catalog: SchemaCatalog, tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    report = validate_overlay("broken", catalog, directory=tmp_path)
    assert not report.ok
    assert report.summary().startswith("broken: render failed: ")
    assert "missing.yaml" in report.summary()


def test_summary_wording() -> None:
    assert OverlayReport("x", 3).summary() == "x: 3 objects, 0 errors"
