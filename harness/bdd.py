"""pytest-bdd wiring: ``.feature`` files collected as test modules, tags mapped to skips.

pytest-bdd binds scenarios only from Python modules that call ``scenarios()``; :class:`FeatureFile`
is that module, built in memory for each ``.feature`` file pytest is pointed at.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

import pytest

from harness.evidence import RunEvidence, ScenarioEvidence
from harness.targets import CAPABILITIES, Target

RUN_KEY = pytest.StashKey[RunEvidence]()
EVIDENCE_KEY = pytest.StashKey[ScenarioEvidence]()
TARGET_KEY = pytest.StashKey[Target]()
SUMMARY_KEY = pytest.StashKey[str]()
# Observations that every scenario makes; the summary shows what the scenario itself checked.
_BACKGROUND_KEYS = frozenset({"readyz", "profile", "scrape_targets", "api_key_clients"})

MILESTONES = ("milestone1", "milestone2", "milestone3", "optional")
MARKERS = {
    **{m: f"scenario belongs to {m}" for m in MILESTONES},
    **{c: f"scenario needs the {c} capability of its target" for c in sorted(CAPABILITIES)},
}


class FeatureFile(pytest.Module):
    """A ``.feature`` file as a test module whose tests are its scenarios."""

    def _getobj(self) -> types.ModuleType:
        module = types.ModuleType(f"feature_{self.path.stem}")
        module.__file__ = str(self.path)
        namespace: dict[str, Any] = module.__dict__
        namespace["__feature_path__"] = str(self.path)
        code = compile("from pytest_bdd import scenarios\nscenarios(__feature_path__)\n", str(self.path), "exec")
        exec(code, namespace)  # scenarios() binds each scenario into the calling module's namespace
        return module


def needed_capabilities(item: pytest.Item) -> set[str]:
    return {m.name for m in item.iter_markers() if m.name in CAPABILITIES}


def apply_capability_skips(items: Iterable[pytest.Item], target: type[Target]) -> None:
    for item in items:
        reason = target.skip_reason(needed_capabilities(item))
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def _template(item: pytest.Item) -> Any:
    from pytest_bdd.scenario import scenario_wrapper_template_registry
    from pytest_bdd.utils import registry_get_safe

    function = getattr(item, "obj", None)
    return registry_get_safe(scenario_wrapper_template_registry, function) if function is not None else None


def scenario_key(item: pytest.Item) -> tuple[str, str] | None:
    """(feature file, scenario name) for a pytest-bdd test, None for any other test."""
    template = _template(item)
    if template is None:
        return None
    return (str(template.feature.filename), str(template.name))


def scenario_names(item: pytest.Item) -> tuple[str, str] | None:
    """(feature name, scenario name) as the feature file says them; an outline's example adds its values."""
    template = _template(item)
    if template is None:
        return None
    scenario = str(template.name)
    param = getattr(getattr(item, "callspec", None), "id", None)
    if param:
        scenario = f"{scenario} [{param}]"
    return (str(template.feature.name), scenario)


def drop_duplicate_scenarios(items: list[pytest.Item]) -> list[pytest.Item]:
    """Run each scenario once. A test module that binds a scenario itself wins over the ``.feature`` file's
    binding (its module-local steps apply); otherwise the first binding is kept.
    """

    def full_key(item: pytest.Item) -> tuple[str, ...] | None:
        key = scenario_key(item)
        if key is None:
            return None
        return (*key, getattr(getattr(item, "callspec", None), "id", ""))

    bound_by_modules = {k for item in items if not isinstance(item.parent, FeatureFile) and (k := full_key(item))}
    seen: set[tuple[str, ...]] = set()
    kept = []
    for item in items:
        key = full_key(item)
        if key is not None:
            if key in seen or (isinstance(item.parent, FeatureFile) and key in bound_by_modules):
                continue
            seen.add(key)
        kept.append(item)
    return kept


def key_figures(evidence: ScenarioEvidence | None) -> dict[str, Any]:
    if evidence is None:
        return {}
    return {k: v for k, v in evidence.observations.items() if k not in _BACKGROUND_KEYS}
