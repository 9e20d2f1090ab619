"""Evidence: what each scenario observed, kept under ``artifacts/<run-id>/<feature>/<scenario>/``.

Then-steps record the facts they checked (pass or fail); waits record their timelines; a failure adds
the components' logs, collected before teardown. The run ends with ``summary.json`` and ``summary.md``.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def slug(text: str, limit: int = 80) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "unnamed"


def scenario_folder(feature: str, scenario: str) -> Path:
    """A scenario's evidence folder under the run's: the feature's and the scenario's slugs. An outline's
    example (``name [values]``) keeps its values in the name, so no two examples share a folder however long
    the scenario's name."""
    base, bracket, example = scenario.partition(" [")
    if bracket:
        return Path(slug(feature)) / f"{slug(base, 60)}--{slug(example.rstrip(']'), 40)}"
    return Path(slug(feature)) / slug(scenario)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass
class ScenarioEvidence:
    """The evidence folder of one scenario, and the facts recorded so far."""

    path: Path
    feature: str
    scenario: str
    observations: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    def record(self, key: str, value: Any) -> None:
        """Keep ``value`` under ``key`` (a key recorded twice becomes a list of values)."""
        value = _jsonable(value)
        if key in self.observations:
            previous = self.observations[key]
            self.observations[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            self.observations[key] = value
        self.flush()

    def write_json(self, name: str, data: Any) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / f"{name}.json"
        target.write_text(json.dumps(_jsonable(data), indent=2) + "\n")
        return target

    def write_text(self, name: str, text: str) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / name
        target.write_text(text)
        return target

    def flush(self) -> None:
        self.write_json("observations", {"feature": self.feature, "scenario": self.scenario, **self.observations})


@dataclass
class ScenarioOutcome:
    feature: str
    scenario: str
    nodeid: str
    outcome: str
    duration_s: float
    reason: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunEvidence:
    root: Path
    target: str
    outcomes: list[ScenarioOutcome] = field(default_factory=list)
    # Where the run's platform was: its profile and what served as its gateway, once the target knows.
    facts: dict[str, Any] = field(default_factory=dict)

    def scenario(self, feature: str, scenario: str) -> ScenarioEvidence:
        return ScenarioEvidence(self.root / scenario_folder(feature, scenario), feature, scenario)

    def add(self, outcome: ScenarioOutcome) -> None:
        self.outcomes.append(outcome)

    def write_summary(self) -> Path:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            counts[o.outcome] = counts.get(o.outcome, 0) + 1
        self.root.mkdir(parents=True, exist_ok=True)
        data = {
            "target": self.target,
            **self.facts,
            "counts": counts,
            "scenarios": [vars(o) for o in self.outcomes],
        }
        (self.root / "summary.json").write_text(json.dumps(_jsonable(data), indent=2) + "\n")
        lines = [
            f"# Acceptance run on target `{self.target}`",
            "",
            *[f"- {key}: {value}" for key, value in self.facts.items() if value is not None],
            "",
            ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no scenarios",
            "",
            "| feature | scenario | outcome | seconds | reason or key figures |",
            "|---|---|---|---|---|",
        ]
        for o in self.outcomes:
            detail = o.reason or "; ".join(f"{k}={_short(v)}" for k, v in o.figures.items())
            lines.append(f"| {o.feature} | {o.scenario} | {o.outcome} | {o.duration_s:.1f} | {detail} |")
        path = self.root / "summary.md"
        path.write_text("\n".join(lines) + "\n")
        return path


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"
