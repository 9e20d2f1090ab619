"""The platform's alerting and recording rules as a plain Prometheus rule file.

The cluster loads them from the PrometheusRule of ``manifests/components/monitoring``; a Prometheus without the
operator (the local target's, promtool's tests) loads its ``spec.groups`` from the file written here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError
from harness.provisioning.paths import COMPONENTS_DIR

MONITORING_DIR = COMPONENTS_DIR / "monitoring"
PROMETHEUS_RULE = MONITORING_DIR / "prometheusrule.yaml"
# The name rules.test.yaml gives the extracted rule file (its rule_files entry).
RULES_FILE_NAME = "ocr.rules.yaml"


def prometheus_rule(path: Path = PROMETHEUS_RULE) -> dict[str, Any]:
    with path.open() as fh:
        rule = yaml.safe_load(fh)
    if rule.get("kind") != "PrometheusRule":
        raise HarnessError(f"{path} holds a {rule.get('kind')}, not a PrometheusRule")
    return dict(rule)


def rule_groups(path: Path = PROMETHEUS_RULE) -> list[dict[str, Any]]:
    """The PrometheusRule's ``spec.groups``: exactly what a Prometheus rule file holds under ``groups:``."""
    return copy.deepcopy(list(prometheus_rule(path)["spec"]["groups"]))


def rules_document(groups: list[dict[str, Any]] | None = None) -> str:
    return yaml.safe_dump({"groups": rule_groups() if groups is None else groups}, sort_keys=False, width=120)


def write_rule_files(dest: Path, groups: list[dict[str, Any]] | None = None) -> list[Path]:
    """Write the rules as plain Prometheus rule files under ``dest``; the paths, for ``rule_files``."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / RULES_FILE_NAME
    path.write_text(rules_document(groups))
    return [path]
