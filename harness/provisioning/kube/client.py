"""Reading and nudging a cluster: the Kubernetes Python client for objects, kubectl for exec and describe.

Objects come back as plain JSON dicts (the API's own field names), so :mod:`harness.provisioning.kube.facts` reads
the same shapes as the fixtures its tests validate against the schemas. Client errors are translated at
this boundary into :class:`~harness.errors.HarnessError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from harness import commands
from harness.errors import HarnessError, TargetUnavailable
from harness.provisioning.tools import resolve

Obj = dict[str, Any]
T = TypeVar("T")
REQUEST_TIMEOUT_S = 20


class NotFound(HarnessError):
    """The object does not exist."""


class Kube:
    """One kubeconfig context."""

    def __init__(self, context: str) -> None:
        from kubernetes import client, config

        self.context = context
        try:
            # $KUBECONFIG read now (the client reads it once, at import); a ':'-separated list is merged.
            self.api = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"), context=context)
        except Exception as exc:
            raise TargetUnavailable(f"cannot use kubeconfig context {context!r}: {exc}") from exc
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.autoscaling = client.AutoscalingV2Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    # -- reading ------------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn()
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f"{what}: not found") from exc
            raise HarnessError(f"{what}: the API server answered {exc.status} {exc.reason}") from exc
        except HTTPError as exc:
            raise HarnessError(f"{what}: the API server is unreachable ({exc})") from exc

    def _raw(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the API and read the reply as the server sent it (JSON), not through the client's models:
        the targets read the API's own field names, like the fixtures their tests validate."""
        reply = self._call(
            what, lambda: fn(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S, **kwargs)
        )
        data = reply.data
        return json.loads(data) if data else None

    def deployment(self, namespace: str, name: str) -> Obj:
        return dict(self._raw(f"deployment {namespace}/{name}", self.apps.read_namespaced_deployment, name, namespace))

    def pods(self, namespace: str, selector: str) -> list[Obj]:
        reply = self._raw(
            f"pods {namespace}/{selector}", self.core.list_namespaced_pod, namespace, label_selector=selector
        )
        return list(reply.get("items") or [])

    def pod(self, namespace: str, name: str) -> Obj:
        return dict(self._raw(f"pod {namespace}/{name}", self.core.read_namespaced_pod, name, namespace))

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        body = {"spec": {"replicas": replicas}}
        self._raw(
            f"scale deployment {namespace}/{name}", self.apps.patch_namespaced_deployment_scale, name, namespace, body
        )

    def hpa(self, namespace: str, name: str) -> Obj:
        return dict(
            self._raw(
                f"hpa {namespace}/{name}", self.autoscaling.read_namespaced_horizontal_pod_autoscaler, name, namespace
            )
        )

    def custom_object(self, group: str, version: str, namespace: str, plural: str, name: str) -> Obj:
        return dict(
            self._raw(
                f"{plural}.{group} {namespace}/{name}",
                self.custom.get_namespaced_custom_object,
                group,
                version,
                namespace,
                plural,
                name,
            )
        )

    def patch_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str, body: Obj) -> None:
        self._raw(
            f"patch {plural}.{group} {namespace}/{name}",
            self.custom.patch_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
            body,
        )

    def nodes(self) -> list[Obj]:
        return list(self._raw("nodes", self.core.list_node).get("items") or [])

    def namespaces(self) -> list[str]:
        return [n["metadata"]["name"] for n in self._raw("namespaces", self.core.list_namespace).get("items") or []]

    def node_metrics(self) -> list[Obj]:
        reply = self._raw(
            "node metrics (metrics.k8s.io)",
            self.custom.list_cluster_custom_object,
            "metrics.k8s.io",
            "v1beta1",
            "nodes",
        )
        return list(reply.get("items") or [])

    def pod_log(self, namespace: str, name: str, container: str | None = None, *, previous: bool = False) -> str:
        reply = self._call(
            f"log of {namespace}/{name}",
            lambda: self.core.read_namespaced_pod_log(
                name, namespace, container=container, previous=previous, _preload_content=False, _request_timeout=60
            ),
        )
        return bytes(reply.data).decode(errors="replace")  # type: ignore[attr-defined]

    def delete_pod(self, namespace: str, name: str, *, grace_seconds: int | None = None) -> None:
        self._call(
            f"delete pod {namespace}/{name}",
            lambda: self.core.delete_namespaced_pod(
                name, namespace, grace_period_seconds=grace_seconds, _request_timeout=REQUEST_TIMEOUT_S
            ),
        )

    @contextmanager
    def watch_pod(self, namespace: str, name: str, seconds: float) -> Iterator[Iterator[tuple[str, Obj]]]:
        """(event type, pod JSON) for one pod until ``seconds`` pass."""
        from kubernetes import watch

        w = watch.Watch()

        def events() -> Iterator[tuple[str, Obj]]:
            for event in w.stream(
                self.core.list_namespaced_pod,
                namespace,
                field_selector=f"metadata.name={name}",
                timeout_seconds=max(int(seconds), 1),
            ):
                yield str(event["type"]), dict(event["raw_object"])

        try:
            yield events()
        finally:
            w.stop()

    # -- kubectl, for what the client does awkwardly -----------------------------------------------------

    def kubectl(self, *args: str, timeout: float = 60, input: bytes | None = None) -> str:
        return commands.run([resolve("kubectl"), "--context", self.context, *args], timeout=timeout, input=input)

    def exec(self, namespace: str, target: str, container: str, argv: list[str], *, input: bytes | None = None,
             timeout: float = 60) -> str:  # fmt: skip
        """Run ``argv`` in a container of ``target`` (``deploy/x`` or a pod name); its stdout."""
        flags = ["-i"] if input is not None else []
        return self.kubectl(
            "exec", *flags, "-n", namespace, target, "-c", container, "--", *argv, timeout=timeout, input=input
        )

    def dump(self, namespace: str, dest: Path) -> None:
        """Events, ``describe`` of the platform's objects and every pod's logs, for a person to read."""
        dest.mkdir(parents=True, exist_ok=True)
        for name, args in (
            ("events.txt", ["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"]),
            ("objects.txt", ["get", "all,inferenceservices,scaledobjects,hpa,pdb", "-n", namespace, "-o", "wide"]),
            ("describe.txt", ["describe", "inferenceservices,hpa,scaledobjects,deployments,pods", "-n", namespace]),
        ):
            try:
                (dest / name).write_text(self.kubectl(*args, timeout=120))
            except HarnessError as exc:
                (dest / name).write_text(f"unavailable: {exc}\n")
        try:
            pods = self.pods(namespace, "")
        except HarnessError as exc:
            (dest / "pods.txt").write_text(f"unavailable: {exc}\n")
            return
        for pod in pods:
            pod_name = pod["metadata"]["name"]
            # Init containers too: at Kubernetes 1.35 Istio injects istio-proxy as a native sidecar, an init
            # container with restartPolicy Always, whose log holds the mesh's side of every request.
            spec = pod["spec"]
            for container in [c["name"] for c in [*spec.get("initContainers", []), *spec.get("containers", [])]]:
                for previous in (False, True):
                    try:
                        text = self.pod_log(namespace, pod_name, container, previous=previous)
                    except HarnessError:
                        continue
                    suffix = ".previous" if previous else ""
                    (dest / f"{pod_name}.{container}{suffix}.log").write_text(text)
