"""``harness rollout --version X``: roll the predictor to a new model version on a cluster, and wait for it.

The version lives in one place in the manifests, the InferenceService's ``app.kubernetes.io/version``
label, which the kustomization copies into the predictor's pod label and its ``OCR_MODEL_VERSION`` (what
every response, log line and ``ocr_model_info`` report). A rollout changes the three together, with one
JSON patch guarded by ``test`` operations (so it never edits the wrong container or variable if the object
changed since it was read). KServe writes the new pod template into the ``<name>-predictor`` Deployment,
which rolls it with ``maxUnavailable: 0`` (``spec.predictor.deploymentStrategy``).

The rollout is done when the Deployment has seen its latest spec, that spec carries the new version, every
replica is updated and available and no old pod is left, and the InferenceService is Ready. The wait has a
deadline; its failure names the last state seen. Everything here but :func:`run` is a pure function of the
objects' JSON, tested offline.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness import wait
from harness.acceptance.load import Pacer
from harness.errors import HarnessError
from harness.provisioning.kube.client import Kube, NotFound
from harness.provisioning.plan import APP_NAMESPACE, CLUSTER, ISVC

Obj = dict[str, Any]

VERSION_LABEL = "app.kubernetes.io/version"
VERSION_ENV = "OCR_MODEL_VERSION"
SERVING_CONTAINER = "kserve-container"
# As the service's OCR_MODEL_VERSION (service/settings.py), which is also a valid label value.
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
DEFAULT_TIMEOUT_S = 600.0
ISVC_API = ("serving.kserve.io", "v1beta1", "inferenceservices")


def _escape(key: str) -> str:
    """A key as a JSON Pointer token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def check_version(version: str) -> str:
    if not VERSION_RE.match(version) or not LABEL_VALUE_RE.match(version):
        raise HarnessError(
            f"version {version!r}: use 1 to 63 letters, digits, '.', '_' or '-', starting and ending with a letter "
            "or digit (it is a label value and OCR_MODEL_VERSION)"
        )
    return version


@dataclass(frozen=True)
class RolloutPlan:
    """What a rollout changes on one InferenceService."""

    namespace: str
    name: str
    version: str
    previous: str | None
    patch: list[Obj] = field(default_factory=list)

    @property
    def deployment(self) -> str:
        return f"{self.name}-predictor"

    def describe(self) -> str:
        ops = "\n".join(
            f"  {op['op']:<7} {op['path']}" + (f" = {op['value']!r}" if "value" in op else "") for op in self.patch
        )
        return (
            f"InferenceService {self.namespace}/{self.name}: model version {self.previous or '(none)'} -> "
            f"{self.version}\nJSON patch:\n{ops}"
        )


def plan_rollout(isvc: Obj, version: str) -> RolloutPlan:
    """The guarded JSON patch that sets ``version`` on the InferenceService's label, pod label and env."""
    check_version(version)
    meta = isvc.get("metadata") or {}
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    containers = predictor.get("containers") or []
    index = next((i for i, c in enumerate(containers) if c.get("name") == SERVING_CONTAINER), None)
    if index is None:
        raise HarnessError(f"InferenceService {meta.get('name')} has no container {SERVING_CONTAINER!r}")
    label = _escape(VERSION_LABEL)
    ops: list[Obj] = [{"op": "test", "path": f"/spec/predictor/containers/{index}/name", "value": SERVING_CONTAINER}]
    ops.append(
        {"op": "add", "path": f"/metadata/labels/{label}", "value": version}
        if meta.get("labels")
        else {"op": "add", "path": "/metadata/labels", "value": {VERSION_LABEL: version}}
    )
    ops.append(
        {"op": "add", "path": f"/spec/predictor/labels/{label}", "value": version}
        if predictor.get("labels")
        else {"op": "add", "path": "/spec/predictor/labels", "value": {VERSION_LABEL: version}}
    )
    env = containers[index].get("env")
    entry = {"name": VERSION_ENV, "value": version}
    base = f"/spec/predictor/containers/{index}/env"
    at = next((i for i, e in enumerate(env or []) if e.get("name") == VERSION_ENV), None)
    if env is None:
        ops.append({"op": "add", "path": base, "value": [entry]})
    elif at is None:
        ops.append({"op": "add", "path": f"{base}/-", "value": entry})
    else:
        ops += [
            {"op": "test", "path": f"{base}/{at}/name", "value": VERSION_ENV},
            {"op": "replace", "path": f"{base}/{at}", "value": entry},  # drops a valueFrom, if one was set
        ]
    previous = (meta.get("labels") or {}).get(VERSION_LABEL)
    return RolloutPlan(str(meta.get("namespace") or "default"), str(meta.get("name")), version, previous, ops)


def _env_value(template: Obj, name: str) -> str | None:
    for container in (template.get("spec") or {}).get("containers") or []:
        if container.get("name") == SERVING_CONTAINER:
            for var in container.get("env") or []:
                if var.get("name") == name:
                    return var.get("value")
    return None


@dataclass(frozen=True)
class Progress:
    """One look at a rollout: done, and what was seen (for the wait's failure message and the evidence)."""

    done: bool
    seen: Obj

    def __str__(self) -> str:
        return json.dumps(self.seen, sort_keys=True)


def rollout_progress(isvc: Obj, deployment: Obj | None, pods: list[Obj], version: str) -> Progress:
    """Whether the predictor runs ``version`` everywhere: pure, from the objects' JSON."""
    conditions = {c.get("type"): c.get("status") for c in (isvc.get("status") or {}).get("conditions") or []}
    seen: Obj = {"isvc_ready": conditions.get("Ready") == "True"}
    if deployment is None:
        seen["deployment"] = "missing"
        return Progress(False, seen)
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    template = spec.get("template") or {}
    seen.update(
        template_version=_env_value(template, VERSION_ENV),
        observed=status.get("observedGeneration", 0) >= meta.get("generation", 0),
        desired=desired,
        replicas=int(status.get("replicas", 0)),
        updated=int(status.get("updatedReplicas", 0)),
        available=int(status.get("availableReplicas", 0)),
        unavailable=int(status.get("unavailableReplicas", 0)),
    )
    # Every pod, terminating ones included: an old pod in its preStop pause still serves what the gateway
    # sends it until the endpoint change reaches the gateway, so the rollout is done once it is gone.
    versions: dict[str, int] = {}
    draining: dict[str, int] = {}
    for pod in pods:
        label = ((pod.get("metadata") or {}).get("labels") or {}).get(VERSION_LABEL, "(none)")
        counts = draining if (pod.get("metadata") or {}).get("deletionTimestamp") else versions
        counts[label] = counts.get(label, 0) + 1
    seen["pods_by_version"] = versions
    seen["terminating_by_version"] = draining
    done = (
        seen["isvc_ready"]
        and seen["observed"]
        and seen["template_version"] == version
        and seen["updated"] == desired
        and seen["replicas"] == desired
        and seen["available"] == desired
        and set(versions) == {version}
        and set(draining) <= {version}
    )
    return Progress(bool(done), seen)


@dataclass
class PodTimeline:
    """Each predictor pod seen while a rollout ran, as the harness saw it: when (seconds from the rollout's
    start) it was first seen, first seen Ready, first seen terminating (its deletionTimestamp set) and first
    missed. Looks come 4 a second, so the order of two events is known to that resolution; events seen in the
    same look count as simultaneous."""

    started: float = field(default_factory=time.monotonic)
    pods: dict[str, Obj] = field(default_factory=dict)
    looks: int = 0
    last_look: float = 0.0
    max_gap_s: float = 0.0  # the longest time between two looks: the order's resolution at worst

    def observe(self, pods: list[Obj], at: float | None = None) -> None:
        now = round((time.monotonic() if at is None else at) - self.started, 3)
        if self.looks:
            self.max_gap_s = max(self.max_gap_s, round(now - self.last_look, 3))
        self.looks, self.last_look = self.looks + 1, now
        names = set()
        for pod in pods:
            meta = pod.get("metadata") or {}
            name = str(meta.get("name", ""))
            names.add(name)
            entry = self.pods.setdefault(
                name, {"version": (meta.get("labels") or {}).get(VERSION_LABEL), "first_seen": now}
            )
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (pod.get("status") or {}).get("conditions") or []
            )
            if ready and not meta.get("deletionTimestamp"):
                entry.setdefault("ready_at", now)
            if meta.get("deletionTimestamp"):
                entry.setdefault("terminating_at", now)
        for name, entry in self.pods.items():
            if name not in names:
                entry.setdefault("gone_at", now)


def handover_order(timeline: PodTimeline, version: str) -> Obj:
    """Whether each old pod began to go only once a new pod was ready in its place: the k-th old pod to start
    terminating needs k new-version pods seen Ready at or before that look. An old pod that vanished without
    ever being seen terminating, or never went, has no known time and is reported as unknown."""
    new_ready = sorted(p["ready_at"] for p in timeline.pods.values() if p["version"] == version and "ready_at" in p)
    old = {n: p for n, p in timeline.pods.items() if p["version"] != version}
    unknown = sorted(n for n, p in old.items() if "terminating_at" not in p)
    goes = sorted((p["terminating_at"], n) for n, p in old.items() if "terminating_at" in p)
    handovers, violations = [], []
    for k, (at, name) in enumerate(goes, start=1):
        ready_before = sum(1 for r in new_ready if r <= at)
        entry = {"old_pod": name, "terminating_at": at, "new_pods_ready_by_then": ready_before}
        handovers.append(entry)
        if ready_before < k:
            violations.append(entry)
    return {"looks": timeline.looks, "max_gap_s": timeline.max_gap_s, "old_pods": len(old),
            "new_ready_at": new_ready, "handovers": handovers, "violations": violations,
            "unknown": unknown}  # fmt: skip


def wait_for_rollout(
    observe: Callable[[], Progress], version: str, *, timeout: float = DEFAULT_TIMEOUT_S, interval: float = 2.0
) -> wait.Observation[Progress]:
    """Poll until the rollout is done; WaitTimeout names the last state seen."""
    return wait.until(
        observe, lambda p: p.done, timeout=timeout, interval=interval, what=f"rollout of version {version}"
    )


# -- steady load during a rollout ----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One request of a steady load: when it was sent (seconds from the load's start), its status (0: a
    transport error) and the model version it names."""

    sent_at: float
    status: int
    version: str | None
    latency_s: float
    error: str | None = None


class SteadyLoad:
    """``send`` called ``rate`` times a second from background threads until :meth:`stop`, on schedule
    whatever the answers take (at most ``max_in_flight`` outstanding); every answer recorded
    (``harness.acceptance.load.Pacer``)."""

    def __init__(self, send: Callable[[], Any], *, rate: float, max_in_flight: int = 16) -> None:
        self.send = send
        self.rate = rate
        self._pacer = Pacer(self._one, rate=rate, max_in_flight=max_in_flight)

    def elapsed(self) -> float:
        return self._pacer.elapsed()

    def start(self) -> SteadyLoad:
        self._pacer.start()
        return self

    def _one(self, _: int, sent_at: float) -> Answer:
        status, version, error = 0, None, None
        try:
            response = self.send()
            status = response.status_code
            if status == 200:
                version = ((response.json() or {}).get("model") or {}).get("version")
            else:
                error = response.text[:300]
        except Exception as exc:  # noqa: BLE001 - a transport error is an observation (status 0)
            error = f"{type(exc).__name__}: {exc}"
        return Answer(round(sent_at, 3), status, version, round(self.elapsed() - sent_at, 3), error)

    def answered(self, since: float = 0.0) -> int:
        return sum(1 for a in self._pacer.snapshot() if a.sent_at >= since)

    def stop(self, timeout: float = 60.0) -> list[Answer]:
        """Stop sending, wait for the answers outstanding (up to ``timeout`` s); every answer by send time."""
        return sorted(self._pacer.stop(timeout), key=lambda a: a.sent_at)


def switch_summary(answers: list[Answer], version: str, started: float, ended: float) -> Obj:
    """What a rollout looked like to clients: failures, answers by version, when the new version was first
    and the old one last seen (seconds from the rollout's start)."""
    failed = [a for a in answers if a.status != 200]
    new = [a.sent_at for a in answers if a.version == version]
    old = [a.sent_at for a in answers if a.status == 200 and a.version != version]
    by_version: dict[str, int] = {}
    for answer in answers:
        if answer.status == 200:
            by_version[str(answer.version)] = by_version.get(str(answer.version), 0) + 1
    return {
        "requests": len(answers),
        "failed": len(failed),
        "failures": [vars(a) for a in failed[:20]],
        "by_version": by_version,
        "rollout_s": round(ended - started, 3),
        "first_new_after_s": round(min(new) - started, 3) if new else None,
        "last_old_after_s": round(max(old) - started, 3) if old else None,
        "old_after_rollout": sum(1 for a in answers if a.sent_at > ended and a.status == 200 and a.version != version),
        "latency_max_s": max((a.latency_s for a in answers), default=None),
    }


# -- on a cluster -------------------------------------------------------------------------------------


class ClusterRollout:
    """A rollout through a :class:`harness.provisioning.kube.client.Kube`."""

    def __init__(self, kube: Any, namespace: str, name: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name

    def isvc(self) -> Obj:
        group, version, plural = ISVC_API
        return dict(self.kube.custom_object(group, version, self.namespace, plural, self.name))

    def plan(self, version: str) -> RolloutPlan:
        return plan_rollout(self.isvc(), version)

    def apply(self, plan: RolloutPlan) -> None:
        self.kube.kubectl(
            "-n", plan.namespace, "patch", "inferenceservice", plan.name, "--type=json", "-p", json.dumps(plan.patch)
        )

    def progress(self, version: str, timeline: PodTimeline | None = None) -> Progress:

        try:
            deployment: Obj | None = dict(self.kube.deployment(self.namespace, f"{self.name}-predictor"))
        except NotFound:
            deployment = None
        pods = self.kube.pods(self.namespace, f"serving.kserve.io/inferenceservice={self.name}")
        if timeline is not None:
            timeline.observe(pods)
        return rollout_progress(self.isvc(), deployment, pods, version)

    def run(
        self, version: str, *, timeout: float = DEFAULT_TIMEOUT_S, timeline: PodTimeline | None = None,
        interval: float = 2.0,
    ) -> Progress:  # fmt: skip
        plan = self.plan(version)
        if timeline is not None:
            timeline.observe(self.kube.pods(self.namespace, f"serving.kserve.io/inferenceservice={self.name}"))
        self.apply(plan)
        last = wait_for_rollout(
            lambda: self.progress(version, timeline), version, timeout=timeout, interval=interval
        ).last
        assert last is not None
        return last


def cmd_rollout(args: argparse.Namespace) -> int:

    check_version(args.version)
    rollout = ClusterRollout(
        Kube(args.kube_context or f"kind-{CLUSTER}"), args.namespace or APP_NAMESPACE, args.name or ISVC
    )
    plan = rollout.plan(args.version)
    print(plan.describe())
    if args.dry_run:
        return 0
    rollout.apply(plan)
    observation = wait_for_rollout(lambda: rollout.progress(args.version), args.version, timeout=args.timeout)
    elapsed, last = observation.samples[-1]
    print(f"rolled out {args.version} in {elapsed:.0f} s: {last}")
    return 0
