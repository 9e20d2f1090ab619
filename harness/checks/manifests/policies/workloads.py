"""Rules on every container: sized, probed, non-root, and running a pinned image."""

from __future__ import annotations

import re
from collections.abc import Iterator

from harness.checks.manifests.policies.base import Context, rule
from harness.provisioning.objects import SERVING_KINDS, Container, Finding, containers, finding, is_workload

# The project's own image: built locally and loaded into the kind node, so it has no registry or digest.
LOCAL_IMAGES = frozenset({"ocr:dev"})
# Tags that name a moving target rather than a release.
FLOATING_TAGS = frozenset({"latest", "master", "main", "dev", "edge", "nightly", "stable"})
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# Pull policies that never reach a registry for an image already on the node.
LOCAL_PULL_POLICIES = frozenset({"IfNotPresent", "Never"})


def _workload_containers(ctx: Context) -> Iterator[tuple[dict, Container]]:
    for obj in ctx.objects:
        if is_workload(obj):
            for container in containers(obj):
                yield obj, container


@rule("container-resources")
def container_resources(ctx: Context) -> Iterator[Finding]:
    """Every container requests and limits both CPU and memory."""
    for obj, container in _workload_containers(ctx):
        resources = container.spec.get("resources") or {}
        for section in ("requests", "limits"):
            values = resources.get(section) or {}
            for name in ("cpu", "memory"):
                if values.get(name) in (None, ""):
                    yield finding(
                        obj,
                        "container-resources",
                        f"container {container.name} sets no {section}.{name}",
                        [*container.path, "resources", section, name],
                    )


@rule("container-probes")
def container_probes(ctx: Context) -> Iterator[Finding]:
    """Every serving container (Deployments, StatefulSets, DaemonSets, the predictor) has both probes."""
    for obj, container in _workload_containers(ctx):
        if container.init or obj.get("kind") not in SERVING_KINDS:
            continue
        for probe in ("readinessProbe", "livenessProbe"):
            if not container.spec.get(probe):
                yield finding(
                    obj, "container-probes", f"container {container.name} has no {probe}", [*container.path, probe]
                )


@rule("run-as-non-root")
def run_as_non_root(ctx: Context) -> Iterator[Finding]:
    """Every container is held to a non-root user, by runAsNonRoot or a non-zero runAsUser."""
    for obj, container in _workload_containers(ctx):
        own = container.spec.get("securityContext") or {}
        pod = container.pod.get("securityContext") or {}
        non_root = own.get("runAsNonRoot", pod.get("runAsNonRoot"))
        user = own.get("runAsUser", pod.get("runAsUser"))
        path = [*container.path, "securityContext"]
        if user == 0:
            yield finding(obj, "run-as-non-root", f"container {container.name} runs as uid 0", [*path, "runAsUser"])
        elif non_root is False:
            yield finding(
                obj, "run-as-non-root", f"container {container.name} sets runAsNonRoot: false", [*path, "runAsNonRoot"]
            )
        elif non_root is not True and not (isinstance(user, int) and user > 0):
            yield finding(
                obj,
                "run-as-non-root",
                f"container {container.name} may run as root: neither runAsNonRoot nor a non-zero runAsUser "
                "(container or pod securityContext)",
                path,
            )


def image_problem(image: str) -> str | None:
    """Why an image reference is not pinned, or None when it is (digest, or a release tag)."""
    if image in LOCAL_IMAGES:
        return None
    name, at, digest = image.partition("@")
    if at:
        return None if DIGEST.match(digest) else f"malformed digest {digest!r}"
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return "untagged (pulls latest)"
    tag = last.rsplit(":", 1)[1]
    if tag in FLOATING_TAGS:
        return f"floating tag {tag!r}"
    return None


@rule("image-pinned")
def image_pinned(ctx: Context) -> Iterator[Finding]:
    """Every image is pinned by digest or a release tag (never latest, untagged, or a branch tag)."""
    for obj, container in _workload_containers(ctx):
        image = str(container.spec.get("image") or "")
        problem = "no image" if not image else image_problem(image)
        if problem:
            yield finding(
                obj,
                "image-pinned",
                f"container {container.name} image {image!r}: {problem}",
                [*container.path, "image"],
            )


@rule("local-image-pull-policy")
def local_image_pull_policy(ctx: Context) -> Iterator[Finding]:
    """The locally built image is never pulled (it exists only on the node it was loaded into)."""
    for obj, container in _workload_containers(ctx):
        if container.spec.get("image") in LOCAL_IMAGES:
            policy = container.spec.get("imagePullPolicy")
            if policy not in LOCAL_PULL_POLICIES:
                yield finding(
                    obj,
                    "local-image-pull-policy",
                    f"container {container.name} runs local image {container.spec['image']} with imagePullPolicy "
                    f"{policy!r}: use IfNotPresent",
                    [*container.path, "imagePullPolicy"],
                )
