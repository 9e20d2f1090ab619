"""The target interface stays small: a core every target has, and capabilities a target implements or not."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from harness.acceptance.pytest_plugin import MILESTONES
from harness.acceptance.targets import (
    CAPABILITIES,
    TAGS,
    Capability,
    ClusterTarget,
    KindTarget,
    LocalTarget,
    Target,
    TargetOptions,
    skip_reason,
)
from harness.provisioning.paths import REPO_ROOT
from harness.provisioning.profiles import PROFILES

MAX_CORE_METHODS = 10


def _methods(cls: type) -> list[str]:
    return [name for name, value in vars(cls).items() if (not name.startswith("__") and callable(value))
            or isinstance(value, classmethod)]  # fmt: skip


def test_the_core_has_at_most_ten_methods() -> None:
    methods = _methods(Target)
    assert len(methods) <= MAX_CORE_METHODS, methods


def test_no_capability_method_refuses_by_default() -> None:
    # A capability is implemented or not at all: no method of an interface raises TargetUnavailable as a default.
    for capability in CAPABILITIES:
        for name in _methods(capability):
            source = inspect.getsource(getattr(capability, name))
            assert "TargetUnavailable" not in source, f"{capability.__name__}.{name}"


def test_what_a_target_provides_is_read_from_the_interfaces_it_implements() -> None:
    local = TargetOptions(artifacts=Path("a"))
    assert LocalTarget.provides(local) == {
        "prometheus",
        "models",
        "tables",
        "gateway",
        "ratelimit",
        "drain",
        "jobs",
        "sigkill",
    }
    for name, profile in PROFILES.items():
        options = TargetOptions(artifacts=Path("a"), profile=name)
        cluster = ClusterTarget.provides(options)
        assert cluster <= profile.capabilities, name
        assert "sigkill" not in cluster and ("sigkill" in KindTarget.provides(options)) == profile.jobs, name


def test_a_target_without_an_interface_skips_the_scenarios_that_need_it() -> None:
    class Bare(Target):
        name = "bare"

        def start(self) -> None: ...
        def stop(self) -> None: ...
        def service_url(self) -> str: return "http://127.0.0.1:1"  # fmt: skip

        def prometheus(self):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        def scrape_job(self, component: str) -> str: return component  # fmt: skip

        def logs(self, component: str) -> str: return ""  # fmt: skip

    options = TargetOptions(artifacts=Path("a"))
    assert Bare.provides(options) == {"prometheus"}
    assert skip_reason(Bare, options, {"jobs"}, set()) == "needs jobs; target bare does not provide it"
    assert skip_reason(Bare, options, {"prometheus"}, set()) is None
    assert not issubclass(Bare, Capability)


def test_every_tag_belongs_to_one_interface_or_the_core() -> None:
    owners: dict[str, list[str]] = {}
    for capability in CAPABILITIES:
        for tag in capability.tags:
            owners.setdefault(tag, []).append(capability.__name__)
    assert all(len(found) == 1 for found in owners.values()), owners
    assert set(owners) | {"prometheus"} == TAGS


def test_the_feature_linter_allows_exactly_the_milestones_and_the_tags_targets_serve() -> None:
    rc = json.loads((REPO_ROOT / "features" / ".gherkin-lintrc").read_text())
    allowed = {tag.removeprefix("@") for tag in rc["allowed-tags"][1]["tags"]}
    assert allowed == set(MILESTONES) | TAGS
