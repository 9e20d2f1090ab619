"""Rendered Kubernetes objects: how to name them, walk their pod specs, and report what is wrong with them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

# Kinds whose objects run containers, and where their pod spec sits.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    # KServe's predictor is a pod spec with extra fields (replicas, scaling, ...).
    "InferenceService": ("spec", "predictor"),
}
# Long-running workloads: these need readiness and liveness probes.
SERVING_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "InferenceService"})


def ref(obj: Obj) -> str:
    """``Kind/namespace/name``, or ``Kind/name`` for an object without a namespace."""
    meta = obj.get("metadata") or {}
    kind = obj.get("kind", "?")
    name = meta.get("name", "?")
    namespace = meta.get("namespace")
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def format_path(parts: Sequence[str | int]) -> str:
    """``("spec", "containers", 0, "image")`` -> ``spec.containers[0].image``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class Finding:
    """One thing wrong with one object: which object, which rule, where in it, and what."""

    obj: str
    rule: str
    message: str
    path: str = ""

    def __str__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"{self.obj}: [{self.rule}]{where}: {self.message}"


def finding(obj: Obj | str, rule: str, message: str, path: Sequence[str | int] | str = "") -> Finding:
    """Build a Finding for an object (or an already formatted reference)."""
    where = path if isinstance(path, str) else format_path(path)
    return Finding(obj if isinstance(obj, str) else ref(obj), rule, message, where)


def dig(obj: Any, *keys: str | int) -> Any:
    """``obj[k1][k2]...``, or None as soon as a step is missing."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(obj, list) or key >= len(obj):
                return None
        elif not isinstance(obj, dict):
            return None
        obj = obj[key] if isinstance(key, int) else obj.get(key)
        if obj is None:
            return None
    return obj


def pod_spec(obj: Obj) -> tuple[Obj, tuple[str, ...]] | None:
    """The pod spec of a workload object and its path, or None for kinds that run no containers."""
    path = POD_SPEC_PATHS.get(obj.get("kind", ""))
    if path is None:
        return None
    spec = dig(obj, *path)
    return (spec, path) if isinstance(spec, dict) else None


@dataclass(frozen=True)
class Container:
    """A container of a workload with the context the rules need."""

    spec: Obj
    pod: Obj
    path: tuple[str | int, ...]
    init: bool

    @property
    def name(self) -> str:
        return str(self.spec.get("name", "?"))

    def env(self, name: str) -> str | None:
        """The literal value of an environment variable, if the container sets one."""
        for var in self.spec.get("env") or []:
            if isinstance(var, dict) and var.get("name") == name:
                value = var.get("value")
                return None if value is None else str(value)
        return None


def containers(obj: Obj) -> Iterator[Container]:
    """Every container (init containers too) of a workload object."""
    found = pod_spec(obj)
    if found is None:
        return
    spec, path = found
    for field, init in (("initContainers", True), ("containers", False)):
        for index, container in enumerate(spec.get(field) or []):
            if isinstance(container, dict):
                yield Container(container, spec, (*path, field, index), init)


def is_workload(obj: Obj) -> bool:
    return obj.get("kind") in POD_SPEC_PATHS


def find(objects: Sequence[Obj], kind: str, name: str | None = None, namespace: str | None = None) -> list[Obj]:
    """Objects of a kind, optionally with a given name and namespace."""
    out = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        if obj.get("kind") != kind:
            continue
        if name is not None and meta.get("name") != name:
            continue
        if namespace is not None and meta.get("namespace") != namespace:
            continue
        out.append(obj)
    return out
