"""Environment functions: provision, tear down, inspect. ``harness up/down/status/logs`` and the kind target
call the same ones.

Composed in order, torn down in reverse: a failed ``up`` exports the cluster's logs before it reports the
failure; ``down`` exports logs best-effort and then always deletes the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from harness import commands
from harness.errors import HarnessError, ToolMissing
from harness.provisioning import preflight, secrets
from harness.provisioning.identity import IMAGE
from harness.provisioning.kube import facts
from harness.provisioning.kube.client import Kube
from harness.provisioning.plan import APP_NAMESPACE, GATEWAY_NODE_PORT, install_plan, teardown_plan
from harness.provisioning.run import LIVE_PROBES, StepResult, kind_clusters, run_plan
from harness.provisioning.spec import Spec
from harness.provisioning.tools import resolve

PLACEHOLDER_MARK = "placeholder-"
# Generated inputs (kind config, chart values, the rendered overlay with its secrets): git-ignored.
WORK_DIR = Path(".cache/platform")
LOCAL_IMAGES = ("ocr:dev", IMAGE)


def default_log_dir() -> Path:
    return Path("artifacts") / f"platform-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def with_image(objects: list[dict[str, Any]], image: str) -> list[dict[str, Any]]:
    """Point every container that runs the service image at ``image`` (a loaded name or a registry's)."""

    def visit(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (image if k == "image" and v in LOCAL_IMAGES else visit(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [visit(v) for v in node]
        return node

    return [visit(o) for o in objects]


def render_for(spec: Spec) -> Callable[[Path], None]:
    """The plan's render action: per-cluster secrets (generated once), the overlay, the image, one file."""

    def render(dest: Path) -> None:

        if secrets.uses_secrets(spec.profile.name):
            secrets.generate_secrets(secrets.SECRETS_DIR)  # API keys, the job Redis password; kept once made
        objects = with_image([dict(o) for o in secrets.render_with_keys(spec.profile.name)], spec.image)
        text = yaml.safe_dump_all(objects, sort_keys=False)
        if PLACEHOLDER_MARK in text:
            raise HarnessError(
                f"the {spec.profile.name} render still holds a placeholder secret: refusing to deploy it"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)

    return render


def plan(spec: Spec, *, only: str | None = None) -> list[Any]:
    return install_plan(spec, probes=LIVE_PROBES, render=render_for(spec), only=only)


def provision(
    spec: Spec,
    *,
    log_dir: Path,
    only: str | None = None,
    from_step: int = 1,
    say: Callable[[str], None] = print,
) -> list[StepResult]:
    """Preflight, then every step of the plan; on failure the cluster's logs are exported first."""
    needs_docker = only != "platform"
    preflight.check(spec, needs_docker=needs_docker or spec.owns_cluster).require()
    try:
        return run_plan(plan(spec, only=only), log_dir=log_dir, from_step=from_step, say=say)
    except HarnessError:
        where = export_logs(spec, log_dir / "cluster-logs", say=say)
        say(f"provisioning failed; the full log is {log_dir / 'provision.log'}, the cluster's logs are in {where}")
        raise


def export_logs(spec: Spec, dest: Path, *, say: Callable[[str], None] = print) -> Path:
    """Best effort: ``kind export logs`` for a kind cluster, and the app namespace's events and pod logs."""
    dest.mkdir(parents=True, exist_ok=True)
    if spec.owns_cluster:
        try:
            if spec.cluster in kind_clusters():
                commands.run_logged(
                    [resolve("kind"), "export", "logs", str(dest / "kind"), "--name", spec.cluster],
                    log=dest / "export.log",
                    timeout=300,
                )
        except HarnessError as exc:
            say(f"kind export logs failed: {exc}")
    try:
        Kube(spec.context).dump(APP_NAMESPACE, dest / APP_NAMESPACE)
    except HarnessError as exc:
        say(f"collecting {APP_NAMESPACE} failed: {exc}")
    return dest


def teardown(spec: Spec, *, log_dir: Path | None, say: Callable[[str], None] = print) -> None:
    """Export logs (best effort), then always delete the kind cluster; no cluster is nothing to do."""
    if not spec.owns_cluster:
        raise HarnessError("down deletes only the kind cluster the harness made; this spec names an existing context")
    try:
        exists = spec.cluster in kind_clusters()
    except ToolMissing:
        say(f"kind is not installed: there is no kind cluster {spec.cluster} to delete")
        return
    if not exists:
        say(f"no kind cluster {spec.cluster}: nothing to delete")
        return
    try:
        if log_dir is not None:
            where = export_logs(spec, log_dir, say=say)
            say(f"cluster logs: {where}")
    finally:
        run_plan(teardown_plan(spec.cluster), log_dir=log_dir or default_log_dir(), say=say)


def gateway_host_port(cluster: str) -> int | None:
    """The loopback port kind publishes the gateway's NodePort on (read from Docker, so a reused cluster
    is found without any state file)."""
    try:
        out = commands.run(
            [resolve("docker"), "port", f"{cluster}-control-plane", f"{GATEWAY_NODE_PORT}/tcp"], timeout=30
        )
    except HarnessError:  # no such container, or no Docker at all (preflight names that)
        return None
    for line in out.splitlines():
        host, _, port = line.strip().rpartition(":")
        if port.isdigit() and host in ("127.0.0.1", "0.0.0.0", "[::]", "::"):
            return int(port)
    return None


def status(spec: Spec) -> dict[str, Any]:
    """What exists: the cluster, the add-ons' Helm releases, the InferenceService, the gateway address."""

    report: dict[str, Any] = {"context": spec.context, "profile": spec.profile.name}
    if spec.owns_cluster:
        report["cluster"] = spec.cluster in kind_clusters()
        if not report["cluster"]:
            return report
        report["gateway"] = f"http://127.0.0.1:{port}" if (port := gateway_host_port(spec.cluster)) else "not published"
    try:
        out = commands.run([resolve("helm"), "list", "-A", "--kube-context", spec.context, "-o", "json"], timeout=60)
        report["releases"] = {r["name"]: f"{r['chart']} {r['status']}" for r in json.loads(out)}
    except HarnessError as exc:
        report["releases"] = str(exc)
    try:
        isvc = Kube(spec.context).custom_object(
            "serving.kserve.io", "v1beta1", APP_NAMESPACE, "inferenceservices", "ocr"
        )
        report["inferenceservice"] = facts.isvc_summary(isvc)
    except HarnessError as exc:
        report["inferenceservice"] = str(exc)
    return report
