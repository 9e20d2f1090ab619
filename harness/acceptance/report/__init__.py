"""The run report: ``artifacts/<run-id>/report.html``, one self-contained page built from the evidence alone.

Images are embedded PNGs and the page needs no JavaScript and no network. ``harness report RUN_DIR``
rebuilds it; every acceptance run writes it at the end and points ``artifacts/latest`` at the run.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from harness.acceptance.evidence import scenario_folder
from harness.acceptance.report import plots
from harness.errors import HarnessError
from harness.provisioning import versions


@dataclass
class Figure:
    title: str
    png: str  # base64


@dataclass
class ScenarioView:
    feature: str
    name: str
    outcome: str
    seconds: float
    reason: str | None
    failed_step: dict[str, Any] | None
    steps: list[dict[str, Any]]
    observations: str  # pretty JSON, whole
    figures: list[Figure] = field(default_factory=list)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _figure(title: str, png: bytes | None) -> Figure | None:
    return Figure(title, base64.b64encode(png).decode()) if png else None


def cucumber_steps(run_dir: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(feature name, scenario name) -> its steps with keyword, text, status and seconds (pytest-bdd's JSON).
    An outline's example is named as the run names it, ``name [values]`` (the values from the test's id), so
    each example keeps its own steps."""
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for feature in _read_json(run_dir / "cucumber.json") or []:
        for element in feature.get("elements") or []:
            steps = [
                {
                    "keyword": s.get("keyword", ""),
                    "name": s.get("name", ""),
                    "status": (s.get("result") or {}).get("status", "?"),
                    "seconds": round(((s.get("result") or {}).get("duration") or 0) / 1e9, 2),
                }
                for s in element.get("steps") or []
            ]
            name, test_id = str(element.get("name")), str(element.get("id") or "")
            if test_id.endswith("]") and "[" in test_id:
                name = f"{name} [{test_id[test_id.index('[') + 1 : -1]}]"
            found[(str(feature.get("name")), name)] = steps
    return found


def scenario_figures(folder: Path) -> list[Figure]:
    figures: list[Figure | None] = []
    history = sorted(folder.glob("load/*_stats_history.csv"))
    load_rows = plots.read_locust_history(history[0]) if history else []
    if load_rows:
        figures.append(_figure("load", plots.load(load_rows)))
    for path in sorted(folder.glob("timeline-*.json")):
        data = _read_json(path)
        if isinstance(data, list):  # timelines written before thresholds were recorded
            data = {"what": path.stem.removeprefix("timeline-"), "samples": data}
        if isinstance(data, dict):
            figures.append(_figure(str(data.get("what", path.stem)), plots.timeline(data, load_rows or None)))
    for path in sorted(folder.glob("promql-range-*.json")):
        data = _read_json(path)
        if isinstance(data, dict):
            figures.append(_figure(str(data.get("expr", path.stem)), plots.promql_range(data)))
    observations = _read_json(folder / "observations.json") or {}
    if isinstance(observations.get("per_second"), dict):
        limit = observations.get("rate_limit_per_s")
        picture = plots.per_second(observations["per_second"], float(limit) if isinstance(limit, int | float) else None)
        figures.append(_figure("answers per second and per key, by who answered, against the limit", picture))
    return [f for f in figures if f is not None]


def _model_version(run_dir: Path) -> str | None:
    """The model that answered, from any scenario's /readyz observation."""

    def dig(node: Any, *keys: str) -> Any:
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    for path in run_dir.glob("*/*/observations.json"):
        observations = _read_json(path)
        model = dig(observations, "readyz", "body", "model") or dig(observations, "readyz", "model")
        if isinstance(model, dict) and model.get("version"):
            return f"{model.get('name')} {model.get('version')}"
    return None


def build(run_dir: Path) -> Path:
    """Write ``report.html`` into ``run_dir`` from its evidence; the path."""
    summary = _read_json(run_dir / "summary.json")
    if not isinstance(summary, dict):
        raise HarnessError(f"{run_dir} holds no summary.json: not the evidence folder of a run")
    steps = cucumber_steps(run_dir)
    scenarios = []
    for outcome in summary.get("scenarios") or []:
        folder = run_dir / scenario_folder(outcome["feature"], outcome["scenario"])
        observations = _read_json(folder / "observations.json") or {}
        scenarios.append(
            ScenarioView(
                feature=outcome["feature"],
                name=outcome["scenario"],
                outcome=outcome["outcome"],
                seconds=outcome.get("duration_s") or 0.0,
                reason=outcome.get("reason"),
                failed_step=observations.get("failed_step"),
                steps=steps.get((outcome["feature"], outcome["scenario"]), []),
                observations=json.dumps(
                    {k: v for k, v in observations.items() if k not in ("feature", "scenario")}, indent=2
                ),
                figures=scenario_figures(folder) if folder.is_dir() else [],
            )
        )
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("harness.acceptance.report") / "templates")),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    page = environment.get_template("report.html.j2").render(
        run_id=run_dir.name,
        summary=summary,
        counts=summary.get("counts") or {},
        scenarios=scenarios,
        failed=[s for s in scenarios if s.outcome == "failed"],
        model=_model_version(run_dir),
        # The cluster tier's pins say what ran only where a cluster ran.
        pins={}
        if summary.get("target") == "local"
        else {
            "Kubernetes": versions.KUBERNETES,
            "kind": versions.KIND,
            "Istio": versions.ISTIO_VERSION,
            "KServe": versions.KSERVE_VERSION,
            "KEDA (chart)": versions.KEDA.version,
            "kube-prometheus-stack": versions.KUBE_PROMETHEUS_STACK.version,
            "Knative Serving": versions.KNATIVE_SERVING,
        },
        mutation=_read_json(run_dir.parent / "mutate" / "results.json") or None,
        built=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
    path = run_dir / "report.html"
    path.write_text(page)
    return path


def point_latest(run_dir: Path) -> Path:
    """``<artifacts>/latest`` -> this run (a relative link, replaced atomically)."""
    link = run_dir.parent / "latest"
    temporary = run_dir.parent / f".latest-{os.getpid()}"
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    temporary.symlink_to(run_dir.name, target_is_directory=True)
    temporary.replace(link)
    return link


def cmd_report(args: Any) -> int:
    print(f"report: {build(args.run_dir.resolve())}")
    return 0
