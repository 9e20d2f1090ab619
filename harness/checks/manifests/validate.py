"""Validate an overlay: render it, check every object's schema, then the platform's promises."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.checks.manifests import policies
from harness.checks.manifests.overlays import OVERLAYS, Profile, profile_for
from harness.checks.manifests.schemas import SchemaCatalog
from harness.errors import HarnessError
from harness.provisioning.objects import Finding, Obj
from harness.provisioning.render import overlay_names, render


@dataclass
class OverlayReport:
    """What validation found for one overlay; ``failure`` is set when it could not even be rendered."""

    name: str
    objects: int = 0
    findings: list[Finding] = field(default_factory=list)
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.findings

    def summary(self) -> str:
        if self.failure is not None:
            return f"{self.name}: render failed: {self.failure}"
        count = len(self.findings)
        return f"{self.name}: {self.objects} objects, {count} error{'' if count == 1 else 's'}"


def check_objects(objects: Sequence[Obj], catalog: SchemaCatalog, profile: Profile) -> list[Finding]:
    """Schema findings of every object, then the findings of every rule that applies to the profile."""
    found = [f for obj in objects for f in catalog.validate(obj)]
    found += policies.check(policies.Context(objects, profile, catalog.is_namespaced))
    return found


def validate_overlay(
    name: str, catalog: SchemaCatalog, *, directory: Path | None = None, kubectl: str | None = None
) -> OverlayReport:
    """Render one overlay (by name, or a kustomization directory) and check it."""
    report = OverlayReport(name)
    try:
        objects = render(directory if directory is not None else name, kubectl=kubectl)
    except HarnessError as exc:
        report.failure = str(exc)
        return report
    report.objects = len(objects)
    report.findings = check_objects(objects, catalog, profile_for(name, objects))
    return report


def validate_overlays(
    catalog: SchemaCatalog, names: Iterable[str] | None = None, *, kubectl: str | None = None
) -> list[OverlayReport]:
    """Validate the named overlays, or every overlay in the repository (milestones first)."""
    available = overlay_names()
    ordered = [name for name in OVERLAYS if name in available] + [n for n in available if n not in OVERLAYS]
    chosen = list(names) if names else ordered
    if not chosen:
        raise HarnessError("no overlays to validate")
    return [validate_overlay(name, catalog, kubectl=kubectl) for name in chosen]
