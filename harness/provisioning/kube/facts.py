"""What the Kubernetes targets read from API objects, as pure functions of the objects' JSON.

Every field path the targets rely on is here, and each function is tested on fixtures that validate
strictly against the Kubernetes 1.35 schema or the pinned CRDs (``tests/harness/fixtures/kube``), so a
wrong path fails a test rather than a user's run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

Obj = dict[str, Any]


def _conditions(obj: Obj) -> dict[str, Obj]:
    return {c.get("type", ""): c for c in (obj.get("status") or {}).get("conditions") or []}


def condition_true(obj: Obj, kind: str) -> bool:
    return _conditions(obj).get(kind, {}).get("status") == "True"


def deployment_replicas(deployment: Obj) -> dict[str, int]:
    """Desired, current, ready and updated replicas of a Deployment; ready counts only once the
    controller has seen the latest spec (observedGeneration), so a stale status is never taken as news."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    fresh = status.get("observedGeneration", 0) >= (deployment.get("metadata") or {}).get("generation", 0)
    return {
        "desired": int(spec.get("replicas", 1)),
        "current": int(status.get("replicas", 0)),
        "ready": int(status.get("readyReplicas", 0)) if fresh else -1,
        "updated": int(status.get("updatedReplicas", 0)),
    }


def pod_ready(pod: Obj) -> bool:
    meta = pod.get("metadata") or {}
    return not meta.get("deletionTimestamp") and condition_true(pod, "Ready")


def ready_pods(pods: list[Obj]) -> int:
    return sum(1 for p in pods if pod_ready(p))


def hpa_summary(hpa: Obj) -> dict[str, Any]:
    """An autoscaling/v2 HPA: bounds, current and desired replicas, and the CPU utilisation it sees."""
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    cpu: int | None = None
    for metric in status.get("currentMetrics") or []:
        resource = metric.get("resource") or {}
        if metric.get("type") == "Resource" and resource.get("name") == "cpu":
            cpu = (resource.get("current") or {}).get("averageUtilization")
    target: int | None = None
    for metric in spec.get("metrics") or []:
        resource = metric.get("resource") or {}
        if metric.get("type") == "Resource" and resource.get("name") == "cpu":
            target = (resource.get("target") or {}).get("averageUtilization")
    return {
        "min": spec.get("minReplicas", 1),
        "max": spec.get("maxReplicas"),
        "current": status.get("currentReplicas", 0),
        "desired": status.get("desiredReplicas", 0),
        "cpu_utilization": cpu,
        "cpu_target": target,
        "able_to_scale": condition_true(hpa, "AbleToScale"),
        "scaling_active": condition_true(hpa, "ScalingActive"),
    }


def scaledobject_summary(scaled_object: Obj) -> dict[str, Any]:
    """A KEDA ScaledObject: bounds, whether it is ready and active, and whether it is paused."""
    spec, status = scaled_object.get("spec") or {}, scaled_object.get("status") or {}
    annotations = (scaled_object.get("metadata") or {}).get("annotations") or {}
    return {
        "min": spec.get("minReplicaCount", 0),
        "max": spec.get("maxReplicaCount", 100),
        "ready": condition_true(scaled_object, "Ready"),
        "active": condition_true(scaled_object, "Active"),
        "paused_replicas": annotations.get(PAUSED_REPLICAS),
        "hpa": status.get("hpaName"),
    }


PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"


def isvc_summary(isvc: Obj) -> dict[str, Any]:
    """A KServe InferenceService: Ready, its URL, and the predictor's URL and latest revision."""
    status = isvc.get("status") or {}
    predictor = (status.get("components") or {}).get("predictor") or {}
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    return {
        "ready": condition_true(isvc, "Ready"),
        "url": status.get("url"),
        "predictor_url": predictor.get("url"),
        "deployment_mode": annotations.get("serving.kserve.io/deploymentMode"),
        "not_ready": {t: c.get("message", c.get("reason", "")) for t, c in _conditions(isvc).items()
                      if c.get("status") != "True"},
    }  # fmt: skip


def nodes_summary(nodes: list[Obj]) -> list[dict[str, Any]]:
    return [
        {
            "name": (n.get("metadata") or {}).get("name"),
            "ready": condition_true(n, "Ready"),
            "kubelet": ((n.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion"),
        }
        for n in nodes
    ]


def node_usage(metrics: list[Obj]) -> list[dict[str, Any]]:
    """metrics.k8s.io NodeMetrics (what ``kubectl top nodes`` reads): CPU and memory per node."""
    return [
        {
            "name": (m.get("metadata") or {}).get("name"),
            "cpu": (m.get("usage") or {}).get("cpu"),
            "memory": (m.get("usage") or {}).get("memory"),
        }
        for m in metrics
    ]


def container_exit_code(pod: Obj, container: str) -> int | None:
    """The exit code of a container that has terminated (now, or in its last run), else None."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != container:
            continue
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            terminated = state.get("terminated")
            if terminated is not None:
                return int(terminated.get("exitCode", -1))
    return None


def _container_status(pod: Obj, container: str) -> Obj:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return dict(status)
    return {}


def container_on_node(pod: Obj, container: str) -> tuple[str, str] | None:
    """(node name, the runtime's container id) of a running container, or None before it has both. The id
    comes as ``<runtime>://<id>``; the runtime's own tools (crictl) take the bare id."""
    node = (pod.get("spec") or {}).get("nodeName")
    found = _container_status(pod, container).get("containerID") or ""
    if not node or "://" not in found:
        return None
    return str(node), found.split("://", 1)[1]


def container_restarts(pod: Obj, container: str) -> int:
    return int(_container_status(pod, container).get("restartCount", 0))


def killed_by_sigkill(pod: Obj, container: str, restarts_before: int) -> bool:
    """The container has restarted since ``restarts_before`` and its last run ended with 137 (128 + SIGKILL)."""
    last = (_container_status(pod, container).get("lastState") or {}).get("terminated") or {}
    return container_restarts(pod, container) > restarts_before and last.get("exitCode") == 137


def pod_name(pod: Obj) -> str:
    return str((pod.get("metadata") or {}).get("name"))


def _timestamp(value: Any) -> float | None:
    """An API timestamp (RFC 3339, ``Z``) as seconds since the epoch, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def newest_pod_start(pods: list[Obj]) -> dict[str, Any] | None:
    """The newest pod's start as the API shows it: when it was created, scheduled, its containers started
    and it turned Ready (seconds since the epoch; None for what has not happened). None without pods."""
    if not pods:
        return None
    pod = max(pods, key=lambda p: _timestamp((p.get("metadata") or {}).get("creationTimestamp")) or 0.0)
    conditions = _conditions(pod)
    started = [
        _timestamp(((s.get("state") or {}).get("running") or {}).get("startedAt"))
        for s in (pod.get("status") or {}).get("containerStatuses") or []
    ]
    return {
        "pod": pod_name(pod),
        "created": _timestamp((pod.get("metadata") or {}).get("creationTimestamp")),
        "scheduled": _timestamp((conditions.get("PodScheduled") or {}).get("lastTransitionTime")),
        "containers_started": max((s for s in started if s is not None), default=None),
        "ready": _timestamp((conditions.get("Ready") or {}).get("lastTransitionTime"))
        if (conditions.get("Ready") or {}).get("status") == "True"
        else None,
    }
