"""The monitoring component read as data: its rules, its dashboard, and every PromQL expression in them.

- :func:`rule_groups` / :func:`write_rule_files`: the ``spec.groups`` of the PrometheusRule as a plain rule
  file, the form ``promtool`` and a bare Prometheus (2.42 included) load with ``rule_files``.
- :func:`expressions`: every expression of the dashboard and the rules, each marked ``local`` (all its
  metrics come from the service or the workers, so the local target can answer it) or ``cluster`` (it needs
  kube-state-metrics, KEDA or Istio).
- :func:`promtool_check` / :func:`promtool_test`: ``promtool check rules`` and ``promtool test rules``.
- :func:`dashboard_schema_errors`: the dashboard checked against Grafana's dashboard schema, as generated
  into the ``grafana-foundation-sdk`` package.

``python -m harness monitoring rules DIR`` writes the rule file; ``python -m harness monitoring promtool``
checks the rules and runs their unit tests (what CI runs); ``python -m harness monitoring expressions``
prints the expressions as JSON.
"""

from __future__ import annotations

import argparse
import enum
import json
import re
import shutil
import subprocess
import sys
import tempfile
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ToolMissing
from harness.provisioning.identity import NAMESPACE
from harness.provisioning.rules import (
    MONITORING_DIR,
    rule_groups,
    write_rule_files,
)

RULES_TEST = MONITORING_DIR / "rules.test.yaml"
DASHBOARD = MONITORING_DIR / "dashboards" / "ocr.json"

# The SLO the burn-rate alerts defend: 99.5 % of /predict answered without a 5xx, over 30 days.
SLO_TARGET = 0.995
ERROR_BUDGET = 1 - SLO_TARGET

# What each metric the dashboard and the rules use comes from. ``local`` sources run on the local target.
SOURCES: dict[str, str] = {
    "service": "local",  # python -m service (service/metrics.py, the queue collector, process metrics)
    "worker": "local",  # python -m service.jobs.worker
    "prometheus": "local",  # series Prometheus makes itself (up, scrape_*)
    "kube-state-metrics": "cluster",
    "keda": "cluster",  # the KEDA operator's own metrics
    "istio": "cluster",  # Envoy's standard Istio metrics (sidecars, ingress gateway)
}
_HISTOGRAM = ("_bucket", "_sum", "_count")
METRICS: dict[str, str] = {
    **{f"ocr_http_request_duration_seconds{s}": "service" for s in _HISTOGRAM},
    **{f"ocr_inference_duration_seconds{s}": "service" for s in _HISTOGRAM},
    **{f"ocr_request_payload_bytes{s}": "service" for s in _HISTOGRAM},
    "ocr_http_requests_total": "service",
    "ocr_http_requests_in_flight": "service",
    "ocr_rejections_total": "service",
    "ocr_model_info": "service",
    "ocr_ready": "service",
    "ocr_jobs_queue_lag": "service",  # the workers export it too
    "ocr_jobs_pending": "service",  # the workers export it too
    "process_start_time_seconds": "service",  # prometheus_client's process collector; the workers have none
    **{f"ocr_job_duration_seconds{s}": "worker" for s in _HISTOGRAM},
    **{f"ocr_job_queue_wait_seconds{s}": "worker" for s in _HISTOGRAM},
    **{f"ocr_job_attempts{s}": "worker" for s in _HISTOGRAM},
    "ocr_jobs_processed_total": "worker",
    "ocr_jobs_failed_total": "worker",
    "ocr_jobs_retried_total": "worker",
    "ocr_jobs_claimed_total": "worker",
    "ocr_worker_busy": "worker",
    "ocr_worker_redis_up": "worker",
    "up": "prometheus",
    "kube_deployment_status_replicas_available": "kube-state-metrics",
    "kube_deployment_spec_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_status_desired_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_status_current_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_spec_max_replicas": "kube-state-metrics",
    "keda_scaler_metrics_value": "keda",
    "istio_requests_total": "istio",
}

# What Grafana substitutes before a query reaches Prometheus: the dashboard's variables as the committed
# dashboard selects them, and the built-in intervals at values fit for a 15 s scrape.
VARIABLES: dict[str, str] = {
    "namespace": NAMESPACE,
    "predictor": ".+",  # All, the committed selection: Grafana sends the variable's allValue
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "30m",
}


class MonitoringError(Exception):
    pass


# -- the rules ----------------------------------------------------------------------------------------------


def rules(groups: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every rule (recording and alerting) of every group, in file order."""
    return [r for g in (rule_groups() if groups is None else groups) for r in g["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in rules() if "alert" in r}


def recording_rules() -> dict[str, str]:
    return {r["record"]: r["expr"] for r in rules() if "record" in r}


# -- the dashboard ------------------------------------------------------------------------------------------


def dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr: str, variables: Mapping[str, str] = VARIABLES) -> str:
    """``expr`` as Grafana sends it, its ``$var``, ``${var}`` and ``[[var]]`` replaced; unknown ones are errors."""

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in variables:
            raise MonitoringError(f"no value for the dashboard variable ${name} in {expr!r}")
        return variables[name]

    return _VARIABLE.sub(replace, expr)


# -- PromQL, lexically --------------------------------------------------------------------------------------

_AGGREGATIONS = {
    "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values",
}  # fmt: skip
_LABEL_LIST_BEFORE = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"bool", "and", "or", "unless", "offset", "atan2", "inf", "nan", *_LABEL_LIST_BEFORE}
_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?(?:\d+(?:ms|[smhdwy]))*)
      | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^><=(){}\[\],@])
    """,
    re.VERBOSE,
)
_COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int


def _tokens(expr: str) -> list[_Token]:
    """The tokens of ``expr`` outside label matchers (``{...}``) and ranges (``[...]``), which are skipped."""
    found: list[_Token] = []
    depth = {"{": 0, "[": 0}
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise MonitoringError(f"cannot read PromQL {expr!r} at {pos}: {expr[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        text = match.group()
        pos = match.end()
        if kind == "op" and text in "{[":
            depth[text] += 1
        elif kind == "op" and text in "}]":
            depth["{" if text == "}" else "["] -= 1
        elif kind not in ("space", "comment") and not any(depth.values()):
            found.append(_Token(kind, text, match.start(), match.end()))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, label lists and durations left out)."""
    tokens = _tokens(expr)
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.kind == "ident" and token.text in _LABEL_LIST_BEFORE and following and following.text == "(":
            i += 2
            while i < len(tokens) and tokens[i].text != ")":
                i += 1
        elif token.kind == "ident" and token.text == "offset":
            i += 1  # its duration
        elif (
            token.kind == "ident"
            and token.text.lower() not in _KEYWORDS
            and token.text not in _AGGREGATIONS
            and not (following and following.text == "(")  # a function call
        ):
            names.add(token.text)
        i += 1
    return names


def with_bool(expr: str) -> str:
    """``expr`` with every comparison made a ``bool`` one, so it returns 0/1 where it would filter.

    An alert's expression returns nothing while the alert is quiet; its ``bool`` form returns a sample for
    every series the alert watches, so "the alert can be evaluated here" becomes "its bool form has data".
    """
    tokens = _tokens(expr)
    out: list[str] = []
    last = 0
    for i, token in enumerate(tokens):
        if token.kind == "op" and token.text in _COMPARISONS:
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            if not (following and following.text == "bool"):
                out.append(expr[last : token.end] + " bool")
                last = token.end
    out.append(expr[last:])
    return "".join(out)


# -- every expression ---------------------------------------------------------------------------------------


@dataclass
class Expression:
    source: str  # "dashboard" or "rules"
    kind: str  # "panel", "record" or "alert"
    name: str  # the panel and query, the recorded series, or the alert
    expr: str  # as written
    query: str  # as Prometheus receives it (dashboard variables substituted)
    scope: str  # "local" or "cluster"
    metrics: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    probe: str = ""  # what returns data where the expression can be evaluated (alerts: the bool form)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def classify(names: Iterable[str], recorded: Mapping[str, str] | None = None) -> tuple[str, list[str]]:
    """``local`` when every metric comes from a local source (recorded series by what they record)."""
    recorded = recording_rules() if recorded is None else recorded
    sources: set[str] = set()
    for name in names:
        if name in recorded:
            sources |= set(classify(metric_names(recorded[name]), recorded)[1])
        elif name in METRICS:
            sources.add(METRICS[name])
        else:
            raise MonitoringError(
                f"metric {name!r} is not one harness.checks.monitoring.METRICS knows: what exports it? "
                "(docs/api.md: Metrics, worker metrics; kube-state-metrics, KEDA, Istio)"
            )
    scope = "local" if all(SOURCES[s] == "local" for s in sources) else "cluster"
    return scope, sorted(sources)


def expressions(
    board: Mapping[str, Any] | None = None,
    groups: list[dict[str, Any]] | None = None,
    variables: Mapping[str, str] = VARIABLES,
) -> list[Expression]:
    """Every PromQL expression of the dashboard's panels and of the rules, classified."""
    board = dashboard() if board is None else board
    groups = rule_groups() if groups is None else groups
    recorded = {r["record"]: r["expr"] for r in rules(groups) if "record" in r}
    found: list[Expression] = []
    for panel in panels(board):
        for target in panel.get("targets", []):
            if "expr" not in target:
                continue
            query = substitute(target["expr"], variables)
            names = metric_names(query)
            scope, sources = classify(names, recorded)
            found.append(
                Expression(
                    "dashboard", "panel", f"panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}",
                    target["expr"], query, scope, sorted(names), sources, query,
                )
            )  # fmt: skip
    for rule in rules(groups):
        expr = str(rule["expr"]).strip()
        names = metric_names(expr)
        scope, sources = classify(names, recorded)
        if "alert" in rule:
            found.append(Expression("rules", "alert", rule["alert"], expr, expr, scope, sorted(names), sources,
                                    with_bool(expr)))  # fmt: skip
        else:
            found.append(Expression("rules", "record", rule["record"], expr, expr, scope, sorted(names), sources,
                                    expr))  # fmt: skip
    return found


# -- promtool -----------------------------------------------------------------------------------------------


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise ToolMissing("promtool", "apt-get install prometheus (Debian/Ubuntu) or brew install prometheus (macOS)")
    return path


@dataclass(frozen=True)
class PromtoolResult:
    ok: bool
    output: str


def _run(argv: list[str], cwd: Path) -> PromtoolResult:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=120)
    return PromtoolResult(done.returncode == 0, (done.stdout + done.stderr).strip())


def promtool_check(groups: list[dict[str, Any]] | None = None) -> PromtoolResult:
    """``promtool check rules`` on the extracted rule file."""
    with tempfile.TemporaryDirectory(prefix="ocr-rules-") as tmp:
        (path,) = write_rule_files(Path(tmp), groups)
        return _run([promtool(), "check", "rules", str(path)], Path(tmp))


def promtool_check_expression(expr: str) -> PromtoolResult:
    """Whether ``expr`` parses: it is put in a recording rule of its own and ``promtool check rules`` reads it."""
    groups = [{"name": "syntax", "rules": [{"record": "syntax:check", "expr": expr}]}]
    with tempfile.TemporaryDirectory(prefix="ocr-expr-") as tmp:
        path = Path(tmp) / "expr.rules.yaml"
        path.write_text(yaml.safe_dump({"groups": groups}))
        return _run([promtool(), "check", "rules", str(path)], Path(tmp))


def promtool_test(
    test_file: Path = RULES_TEST, groups: list[dict[str, Any]] | None = None, test: dict[str, Any] | None = None
) -> PromtoolResult:
    """``promtool test rules`` on the committed unit tests (or ``test``), next to the extracted rule file."""
    with tempfile.TemporaryDirectory(prefix="ocr-rules-test-") as tmp:
        write_rule_files(Path(tmp), groups)
        target = Path(tmp) / test_file.name
        if test is None:
            shutil.copyfile(test_file, target)
        else:
            target.write_text(yaml.safe_dump(test, sort_keys=False))
        return _run([promtool(), "test", "rules", target.name], Path(tmp))


def rules_tests(test_file: Path = RULES_TEST) -> dict[str, Any]:
    return dict(yaml.safe_load(test_file.read_text()))


# -- the dashboard against Grafana's schema -----------------------------------------------------------------

# The Grafana release whose schema the pinned grafana-foundation-sdk was generated from.
GRAFANA_SDK_REQUIREMENT = "grafana-foundation-sdk==1769699379!11.6.0"


def grafana_sdk_available() -> bool:
    try:
        import grafana_foundation_sdk  # noqa: F401
    except ImportError:
        return False
    return True


def dashboard_schema_errors(board: Mapping[str, Any]) -> list[str]:
    """Where ``board`` departs from Grafana's dashboard schema; empty when it conforms.

    The schema is the one Grafana's CUE kinds define, as generated into ``grafana-foundation-sdk`` (its
    models: the dashboard, each panel plugin's options and field config, each data source's query). The
    dashboard is decoded into those models and three things are checked:

    - every key of the JSON is a field the schema declares where it appears: the models are encoded back,
      and a key they dropped is unknown (a typo, or a field from another Grafana version);
    - every value has the type the schema gives it (strings, numbers, booleans, enums and literal sets,
      lists, nested objects), checked against the models' type annotations;
    - every panel's type is a panel plugin the schema knows, and every query decodes as its data source's
      query (a query of an unknown data source is an error).
    """
    try:
        from grafana_foundation_sdk.cog import plugins
        from grafana_foundation_sdk.cog.encoder import JSONEncoder
        from grafana_foundation_sdk.cog.runtime import UnknownDataquery, panelcfg_config
        from grafana_foundation_sdk.models import dashboard as schema
    except ImportError as exc:
        raise MonitoringError(f"the dashboard schema needs {GRAFANA_SDK_REQUIREMENT} ({exc})") from exc

    plugins.register_default_plugins()
    errors: list[str] = []
    try:
        model = schema.Dashboard.from_json(dict(board))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return [f"$: does not decode as a dashboard: {type(exc).__name__}: {exc}"]
    encoded = json.loads(json.dumps(model, cls=JSONEncoder))
    errors += _unknown_keys(board, encoded, "$")
    errors += _type_errors(model, "$")
    for panel in panels(board):
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        if panel.get("type") != "row" and panelcfg_config(str(panel.get("type", ""))) is None:
            errors.append(f"{where}: unknown panel type {panel.get('type')!r}")
    for decoded in model.panels or []:
        for target in getattr(decoded, "targets", None) or []:
            if isinstance(target, UnknownDataquery):
                errors.append(
                    f"panel {decoded.id_val} {decoded.title!r}: a query of no known data source: {target.data}"
                )
    return errors


def _unknown_keys(original: Any, encoded: Any, path: str) -> list[str]:
    if isinstance(original, Mapping):
        if not isinstance(encoded, Mapping):
            return [f"{path}: an object where the schema has {type(encoded).__name__}"]
        errors = []
        for key, value in original.items():
            if key not in encoded:
                errors.append(f"{path}.{key}: unknown field")
            else:
                errors += _unknown_keys(value, encoded[key], f"{path}.{key}")
        return errors
    if isinstance(original, list) and isinstance(encoded, list) and len(original) == len(encoded):
        return [
            e
            for i, (o, n) in enumerate(zip(original, encoded, strict=True))
            for e in _unknown_keys(o, n, f"{path}[{i}]")
        ]
    return []


def _type_errors(obj: Any, path: str) -> list[str]:
    """The schema's types, as the models annotate them, against the values decoded into the models."""
    try:
        hints = typing.get_type_hints(type(obj))
    except (NameError, TypeError):
        return []
    errors: list[str] = []
    for attr, hint in hints.items():
        if attr.startswith("_") or not hasattr(obj, attr):
            continue
        errors += _check(getattr(obj, attr), hint, f"{path}.{attr}")
    return errors


def _is_model(value: Any) -> bool:
    return hasattr(value, "to_json") and hasattr(type(value), "from_json")


def _check(value: Any, hint: Any, path: str) -> list[str]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint in (typing.Any, object) or isinstance(hint, typing.TypeVar):
        return _type_errors(value, path) if _is_model(value) else []
    if origin in (typing.Union, types.UnionType):
        return _check_union(value, args, path)
    if origin is typing.Literal:
        return [] if value in args else [f"{path}: {value!r} is not one of {list(args)}"]
    if origin in (list, typing.List, dict, typing.Dict):  # noqa: UP006 - the models use both spellings
        return _check_container(value, origin, args, path)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, hint) or value in {m.value for m in hint}:
            return []
        return [f"{path}: {value!r} is not one of {[m.value for m in hint]}"]
    if hint in _SCALARS:
        ok, what = _SCALARS[hint]
        return [] if ok(value) else [f"{path}: {value!r} is not {what}"]
    if isinstance(hint, type):
        if not isinstance(value, hint):
            return [f"{path}: {type(value).__name__} where the schema has {hint.__name__}"]
        return _type_errors(value, path)
    return []


def _check_union(value: Any, args: tuple[Any, ...], path: str) -> list[str]:
    """No error when the value fits any member; else the fewest errors of one member."""
    if value is None and type(None) in args:
        return []
    results = [_check(value, arg, path) for arg in args if arg is not type(None)]
    if any(not r for r in results):
        return []
    return min(results, key=len)


def _check_container(value: Any, origin: Any, args: tuple[Any, ...], path: str) -> list[str]:
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__} where the schema has a list"]
        return [e for i, item in enumerate(value) for e in (_check(item, args[0], f"{path}[{i}]") if args else [])]
    if not isinstance(value, dict):
        return [f"{path}: {type(value).__name__} where the schema has an object"]
    return [e for k, v in value.items() for e in (_check(v, args[1], f"{path}.{k}") if len(args) == 2 else [])]


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# The scalar types of the models: the test a value passes, and what the error calls it.
_SCALARS: dict[Any, tuple[Any, str]] = {
    bool: (lambda v: isinstance(v, bool), "a boolean"),
    int: (_is_integer, "an integer"),
    float: (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    str: (lambda v: isinstance(v, str), "a string"),
}


# -- command line -------------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    if args.monitoring_command == "rules":
        for path in write_rule_files(args.dest):
            print(path)
        return 0
    if args.monitoring_command == "expressions":
        json.dump([e.as_dict() for e in expressions()], sys.stdout, indent=2)
        print()
        return 0
    failed = False
    for what, result in (("check rules", promtool_check()), ("test rules", promtool_test())):
        print(f"promtool {what}: {'ok' if result.ok else 'FAILED'}\n{result.output}\n")
        failed |= not result.ok
    return 1 if failed else 0
