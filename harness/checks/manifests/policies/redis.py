"""Rules of the job Redis: it requires a password from a Secret, its clients all use that Secret, a
NetworkPolicy admits only them, and its memory is bounded without eviction.

"The job Redis" is found the way the workers find it: the host of their ``OCR_REDIS_URL`` names a Service,
whose selector picks the workload running ``redis-server``. A broken link in that chain is itself a finding.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from harness.checks.manifests.policies.autoscaling import RENDER, redis_triggers, worker_deployments
from harness.checks.manifests.policies.base import Context, rule
from harness.provisioning.objects import Container, Finding, Obj, containers, dig, find, finding

REDISCLI_AUTH = "REDISCLI_AUTH"  # the variable redis-cli reads its password from
URL_VAR = "OCR_REDIS_URL"
# What the KEDA 2.20 chart labels its operator's pods with (kedacore/charts keda/templates/manager/
# deployment.yaml: app, name and app.kubernetes.io/name, all the operator's name), in the namespace the
# platform installs KEDA into. A selector on other labels (shared with KEDA's other pods) is not accepted.
KEDA_NAMESPACE = "keda"
KEDA_OPERATOR_LABELS = {"app": "keda-operator", "name": "keda-operator", "app.kubernetes.io/name": "keda-operator"}
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by Kubernetes on every Namespace
ISVC_LABEL = "serving.kserve.io/inferenceservice"  # KServe's label on an InferenceService's pods

_SHELL_VAR = re.compile(r"^\"?\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?\"?$")
_KUBE_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str

    def __str__(self) -> str:
        return f"{self.name}/{self.key}"


@dataclass(frozen=True)
class RedisServer:
    """The job Redis as the render describes it."""

    workload: Obj
    container: Container
    port: int
    port_name: str | None

    @property
    def namespace(self) -> str:
        return str(dig(self.workload, "metadata", "namespace") or "")

    @property
    def pod_labels(self) -> dict[str, str]:
        return dig(self.workload, "spec", "template", "metadata", "labels") or {}


def _env_entry(container: Container, name: str) -> tuple[int, Obj] | None:
    for index, var in enumerate(container.spec.get("env") or []):
        if isinstance(var, dict) and var.get("name") == name:
            return index, var
    return None


def _secret_ref(var: Obj | None) -> SecretRef | None:
    ref = dig(var, "valueFrom", "secretKeyRef") if var else None
    if isinstance(ref, dict) and ref.get("name") and ref.get("key"):
        return SecretRef(str(ref["name"]), str(ref["key"]))
    return None


def _argv(container: Container) -> str:
    return " ".join(str(part) for part in (container.spec.get("command") or []) + (container.spec.get("args") or []))


def find_redis(objects: Sequence[Obj]) -> tuple[RedisServer | None, list[Finding]]:
    """The Redis the workers' OCR_REDIS_URL names, or the findings that say why it cannot be found."""
    name = "redis-auth"
    workers = worker_deployments(objects)
    urls = [(d, c, c.env(URL_VAR)) for d, running in workers for c in running]
    if not urls:
        return None, [finding(RENDER, name, "no Deployment runs the workers, so no job Redis to check")]
    deployment, container, url = urls[0]
    if not url:
        return None, [finding(deployment, name, f"the workers set no literal {URL_VAR}", [*container.path, "env"])]
    parts = urlsplit(url)
    labels = (parts.hostname or "").split(".")
    service_name = labels[0]
    namespace = labels[1] if len(labels) > 1 else str(dig(deployment, "metadata", "namespace"))
    services = find(objects, "Service", service_name, namespace)
    if not services:
        return None, [
            finding(deployment, name, f"{URL_VAR} names Service {namespace}/{service_name}, not in the render")
        ]
    service = services[0]
    selector = dig(service, "spec", "selector") or {}
    port = parts.port or 6379
    service_port = next((p for p in dig(service, "spec", "ports") or [] if p.get("port") == port), None)
    for kind in ("Deployment", "StatefulSet"):
        for workload in find(objects, kind, namespace=namespace):
            pod_labels = dig(workload, "spec", "template", "metadata", "labels") or {}
            if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
                continue
            for candidate in containers(workload):
                if "redis-server" in _argv(candidate):
                    target = (service_port or {}).get("targetPort", port)
                    declared = {p.get("name"): p.get("containerPort") for p in candidate.spec.get("ports") or []}
                    number = declared.get(target, target) if isinstance(target, str) else target
                    named = next((n for n, p in declared.items() if p == number), None)
                    return RedisServer(workload, candidate, int(number or port), named), []
    return None, [
        finding(service, name, f"Service {namespace}/{service_name} selects no workload running redis-server")
    ]


_REQUIREPASS = re.compile(r"(?<![-\w])requirepass\s+(\S+)")


def required_secret(server: RedisServer) -> tuple[SecretRef | None, str, str]:
    """The Secret key the server's requirepass reads (through a shell variable); else None, what is wrong,
    and which field of the container (command or env) is wrong."""
    match = _REQUIREPASS.search(_argv(server.container))
    if match is None:
        return None, "redis-server runs without requirepass: no password is required", "command"
    variable = _SHELL_VAR.match(match.group(1))
    if variable is None:
        return None, "requirepass is given a literal, not a variable from a Secret", "command"
    entry = _env_entry(server.container, variable.group(1))
    secret = _secret_ref(entry[1] if entry else None)
    if secret is None:
        return None, f"requirepass reads ${variable.group(1)}, which is not set from a Secret (secretKeyRef)", "env"
    return secret, "", ""


@rule("redis-auth", when=lambda p: p.jobs)
def redis_auth(ctx: Context) -> Iterator[Finding]:
    """The job Redis requires a password (requirepass) taken from a Secret through its environment, never on
    its command line; its exec probes log in (REDISCLI_AUTH from the same Secret) and check for PONG, since
    redis-cli exits 0 even on NOAUTH."""
    server, problems = find_redis(ctx.objects)
    yield from problems
    if server is None:
        return
    workload, container = server.workload, server.container
    command_path = [*container.path, "command"]
    env_path = [*container.path, "env"]
    argv = _argv(container)
    defined = {var.get("name") for var in container.spec.get("env") or [] if isinstance(var, dict)}
    if any(name in defined for name in _KUBE_VAR.findall(argv)):
        yield finding(
            workload,
            "redis-auth",
            "$(VAR) in the command: Kubernetes writes the value into the command line, visible in a process list",
            command_path,
        )
    if "--requirepass" in argv:
        yield finding(workload, "redis-auth", "--requirepass puts the password on the command line", command_path)
        return
    secret, problem, field = required_secret(server)
    if secret is None:
        yield finding(workload, "redis-auth", problem, [*container.path, field])
        return
    found = find(ctx.objects, "Secret", secret.name, server.namespace)
    keys = {*(dig(found[0], "data") or {}), *(dig(found[0], "stringData") or {})} if found else set()
    if secret.key not in keys:
        yield finding(workload, "redis-auth", f"Secret key {server.namespace}/{secret} is not in the render", env_path)
    cli = _env_entry(container, REDISCLI_AUTH)
    cli_secret = _secret_ref(cli[1]) if cli else None
    for probe in ("readinessProbe", "livenessProbe"):
        text = " ".join(map(str, dig(container.spec, probe, "exec", "command") or []))
        if "redis-cli" not in text:
            continue
        probe_path = [*container.path, probe, "exec", "command"]
        if re.search(r"(?:^|\s)(-a|--pass|--user)\s", text):
            yield finding(workload, "redis-auth", f"the {probe} passes the password on its command line", probe_path)
        if cli_secret != secret:
            yield finding(
                workload,
                "redis-auth",
                f"the {probe} cannot log in: {REDISCLI_AUTH} is not set from Secret key {secret}",
                env_path,
            )
        if "PONG" not in text:
            yield finding(
                workload,
                "redis-auth",
                f"the {probe} passes whatever Redis answers (redis-cli exits 0 on NOAUTH): check for PONG",
                probe_path,
            )


def _url_password_variable(container: Container) -> tuple[str, str]:
    """(the variable OCR_REDIS_URL's password comes from, "") or ("", what is wrong)."""
    url = container.env(URL_VAR)
    if url is None:
        return "", f"sets no literal {URL_VAR}"
    password = urlsplit(url).password
    if not password:
        return "", f"connects without a password ({URL_VAR} carries none)"
    variable = re.fullmatch(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", password)
    if variable is None:
        return "", f"has the password written into {URL_VAR}, not $(VAR) from a Secret"
    return variable.group(1), ""


def job_clients(objects: Sequence[Obj]) -> list[Obj]:
    """The InferenceServices that queue jobs: those serving the OCR model (``OCR_MODEL`` unset or ``ocr``), the
    one model the workers run; another model's service answers ``POST /jobs`` 404 and needs no Redis."""
    out = []
    for isvc in find(objects, "InferenceService"):
        main = next((c for c in containers(isvc) if not c.init), None)
        if main is None or main.env("OCR_MODEL") in (None, "ocr"):
            out.append(isvc)
    return out


@rule("redis-auth-shared", when=lambda p: p.jobs)
def redis_auth_shared(ctx: Context) -> Iterator[Finding]:
    """The predictor and the workers build OCR_REDIS_URL from a variable set earlier from the Secret key the
    job Redis requires (Kubernetes expands $(VAR) only from variables above it), and KEDA's trigger
    authenticates through a TriggerAuthentication whose "password" is that same Secret key."""
    server, _ = find_redis(ctx.objects)
    secret = required_secret(server)[0] if server else None
    if secret is None:
        return  # redis-auth says why
    clients: list[tuple[Obj, Container]] = [(d, c) for d, running in worker_deployments(ctx.objects) for c in running]
    for isvc in job_clients(ctx.objects):
        main = [c for c in containers(isvc) if not c.init]
        if main:
            clients.append((isvc, main[0]))
    for owner, container in clients:
        env_path = [*container.path, "env"]
        name, problem = _url_password_variable(container)
        if problem:
            yield finding(owner, "redis-auth-shared", f"container {container.name} {problem}", env_path)
            continue
        url_index = _env_entry(container, URL_VAR)
        var = _env_entry(container, name)
        if var is None or _secret_ref(var[1]) != secret:
            yield finding(
                owner,
                "redis-auth-shared",
                f"container {container.name}: {name} is not set from Secret key {secret}, the one Redis requires",
                env_path,
            )
        elif url_index is not None and var[0] > url_index[0]:
            yield finding(
                owner,
                "redis-auth-shared",
                f"container {container.name}: {name} is defined after {URL_VAR}, so $({name}) is not expanded",
                [*env_path, var[0]],
            )
    if not ctx.profile.keda:
        return
    for scaled in find(ctx.objects, "ScaledObject"):
        namespace = dig(scaled, "metadata", "namespace")
        for index, trigger in redis_triggers(scaled):
            path: list[str | int] = ["spec", "triggers", index]
            if "password" in (trigger.get("metadata") or {}):
                yield finding(scaled, "redis-auth-shared", "the trigger has a literal password", [*path, "metadata"])
            ref = trigger.get("authenticationRef") or {}
            if ref.get("kind", "TriggerAuthentication") != "TriggerAuthentication":
                yield finding(
                    scaled,
                    "redis-auth-shared",
                    f"authenticationRef is a {ref.get('kind')}: its Secrets are read in KEDA's namespace, not the"
                    " one holding the job Redis' Secret",
                    [*path, "authenticationRef"],
                )
                continue
            auths = find(ctx.objects, "TriggerAuthentication", ref.get("name"), namespace) if ref.get("name") else []
            if not auths:
                yield finding(
                    scaled,
                    "redis-auth-shared",
                    f"no TriggerAuthentication {ref.get('name')!r} in the render: KEDA would connect without the"
                    " password",
                    [*path, "authenticationRef"],
                )
                continue
            targets = [
                SecretRef(str(t.get("name")), str(t.get("key")))
                for t in dig(auths[0], "spec", "secretTargetRef") or []
                if isinstance(t, dict) and t.get("parameter") == "password"
            ]
            if targets != [secret]:
                shown = ", ".join(map(str, targets)) or "not set"
                yield finding(
                    auths[0],
                    "redis-auth-shared",
                    f"parameter password is {shown}, not Secret key {secret}, the one Redis requires",
                    "spec.secretTargetRef",
                )


# --- the fence ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    what: str
    namespace: str
    labels: Mapping[str, str]


def _selects(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions); an empty selector selects all."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _clients(ctx: Context) -> list[Client]:
    out = [
        Client(
            "the predictor", str(dig(isvc, "metadata", "namespace")), {ISVC_LABEL: str(dig(isvc, "metadata", "name"))}
        )
        for isvc in job_clients(ctx.objects)
    ]
    out += [
        Client(
            "the workers",
            str(dig(deployment, "metadata", "namespace")),
            dig(deployment, "spec", "template", "metadata", "labels") or {},
        )
        for deployment, _ in worker_deployments(ctx.objects)
    ]
    if ctx.profile.keda:
        out.append(Client("KEDA's operator", KEDA_NAMESPACE, KEDA_OPERATOR_LABELS))
    return out


def _peer_admits(peer: Obj, policy_namespace: str, client: Client) -> bool:
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], {NAMESPACE_NAME_LABEL: client.namespace}):
            return False
    elif client.namespace != policy_namespace:
        return False
    return _selects(peer.get("podSelector"), client.labels)


def _is_ingress(policy: Obj) -> bool:
    types = dig(policy, "spec", "policyTypes")
    return "Ingress" in types if types else True  # unset: Ingress (plus Egress when egress rules exist)


def _ingress_rule(
    policy: Obj,
    r_index: int,
    entry: Mapping[str, Any],
    server: RedisServer,
    ports: set[Any],
    clients: list[Client],
    admitted: set[str],
) -> Iterator[Finding]:
    """One ingress rule of a policy fencing the job Redis: what it opens too wide; the clients it admits to the
    Redis port are added to ``admitted``."""
    path: list[str | int] = ["spec", "ingress", r_index]
    peers = entry.get("from") or []
    rule_ports = entry.get("ports") or []
    if not peers:
        yield finding(policy, "redis-network-policy", "an ingress rule without from admits every peer", path)
    if not rule_ports:
        yield finding(policy, "redis-network-policy", "an ingress rule without ports opens every port", path)
    for p_index, port in enumerate(rule_ports):
        if (port or {}).get("port") not in ports or (port or {}).get("endPort") is not None:
            yield finding(
                policy,
                "redis-network-policy",
                f"admits port {(port or {}).get('port')!r}, not only the Redis port {server.port}",
                [*path, "ports", p_index],
            )
    for p_index, peer in enumerate(peers):
        peer = peer or {}
        peer_path = [*path, "from", p_index]
        if "ipBlock" in peer:
            yield finding(policy, "redis-network-policy", "admits an address block (ipBlock)", peer_path)
            continue
        if "podSelector" not in peer:
            yield finding(policy, "redis-network-policy", "admits every pod of the selected namespaces", peer_path)
            continue
        matched = [c for c in clients if _peer_admits(peer, server.namespace, c)]
        if not matched or not (peer.get("podSelector") or {}):
            yield finding(
                policy,
                "redis-network-policy",
                "a peer that selects none of the job Redis' clients (or every pod)",
                peer_path,
            )
        if rule_ports and all((p or {}).get("port") in ports for p in rule_ports):
            admitted.update(c.what for c in matched)


@rule("redis-network-policy", when=lambda p: p.jobs)
def redis_network_policy(ctx: Context) -> Iterator[Finding]:
    """A NetworkPolicy selects the job Redis' pods, and its ingress rules admit only the predictor, the workers
    and (with KEDA) KEDA's operator, each by a selector that matches it, to the Redis port only. Port 6379 is
    PERMISSIVE in the mesh for KEDA: this fence is what keeps other plaintext clients out."""
    server, _ = find_redis(ctx.objects)
    if server is None:
        return  # redis-auth says why
    policies = [
        p
        for p in find(ctx.objects, "NetworkPolicy", namespace=server.namespace)
        if _is_ingress(p) and _selects(dig(p, "spec", "podSelector"), server.pod_labels)
    ]
    if not policies:
        yield finding(
            server.workload,
            "redis-network-policy",
            "no NetworkPolicy selects the job Redis' pods for ingress: every pod in the cluster can reach it",
        )
        return
    clients = _clients(ctx)
    admitted: set[str] = set()
    ports = {server.port, *([server.port_name] if server.port_name else [])}
    for policy in policies:
        for r_index, entry in enumerate(dig(policy, "spec", "ingress") or []):
            yield from _ingress_rule(policy, r_index, entry or {}, server, ports, clients, admitted)
    for client in clients:
        if client.what not in admitted:
            yield finding(
                server.workload,
                "redis-network-policy",
                f"no NetworkPolicy admits {client.what} to the job Redis' port: it could not connect",
            )


# --- memory ---------------------------------------------------------------------------------------------

# Redis' memory units (redis.conf): 1k = 1000, 1kb = 1024, and so on; case-insensitive.
_REDIS_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 2**10, "m": 10**6, "mb": 2**20, "g": 10**9, "gb": 2**30}
# Kubernetes quantities (the suffixes a memory size uses).
_KUBE_UNITS = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}  # fmt: skip
_MAXMEMORY = re.compile(r"(?<![\w-])(?:--)?maxmemory\s+(\S+)")
_MAXMEMORY_POLICY = re.compile(r"(?<![\w-])(?:--)?maxmemory-policy\s+(\S+)")
QUEUE_BYTES_VAR = "OCR_JOBS_QUEUE_MAX_BYTES"
MIN_HEADROOM = 64 * 2**20  # bytes above maxmemory in the container's limit, at the least


def redis_bytes(text: str) -> int | None:
    match = re.fullmatch(r"(\d+)([a-zA-Z]*)", text.strip("\"'"))
    if match is None or match.group(2).lower() not in _REDIS_UNITS:
        return None
    return int(match.group(1)) * _REDIS_UNITS[match.group(2).lower()]


def kube_bytes(value: object) -> int | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([a-zA-Z]*)", str(value))
    if match is None or match.group(2) not in _KUBE_UNITS:
        return None
    return int(float(match.group(1)) * _KUBE_UNITS[match.group(2)])


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


@rule("redis-memory", when=lambda p: p.jobs)
def redis_memory(ctx: Context) -> Iterator[Finding]:
    """The job Redis holds the queued images, so its memory is bounded and never evicts: redis-server runs
    with maxmemory and maxmemory-policy noeviction (an evicted job hash or stream entry is a lost job; past
    maxmemory Redis refuses writes and the API answers 503 queue_full); the container's memory limit exceeds
    maxmemory by at least half of it (64 MiB at the least) for what maxmemory does not count: the fork of an
    AOF rewrite (copy-on-write), Lua and the allocator; and the predictor bounds the queue's images
    (OCR_JOBS_QUEUE_MAX_BYTES, set as a literal) to at most half of maxmemory, leaving the rest for results,
    stream entries and client buffers."""
    server, _ = find_redis(ctx.objects)
    if server is None:
        return  # redis-auth says why
    workload, container = server.workload, server.container
    argv = _argv(container)
    command_path = [*container.path, "command"]
    found = _MAXMEMORY.search(argv)
    maxmemory = redis_bytes(found.group(1)) if found else None
    if found is None:
        yield finding(workload, "redis-memory", "redis-server runs without maxmemory: its memory is unbounded",
                      command_path)  # fmt: skip
    elif not maxmemory:
        yield finding(workload, "redis-memory", f"maxmemory {found.group(1)!r} is not a positive size", command_path)
    policy = _MAXMEMORY_POLICY.search(argv)
    if policy is None or policy.group(1).strip("\"'") != "noeviction":
        shown = f"maxmemory-policy {policy.group(1)}" if policy else "no maxmemory-policy"
        yield finding(
            workload,
            "redis-memory",
            f"{shown}: the job Redis must run with noeviction (an evicted job is a lost job)",
            command_path,
        )
    if not maxmemory:
        return
    limit_path = [*container.path, "resources", "limits", "memory"]
    limit_value = dig(container.spec, "resources", "limits", "memory")
    limit = kube_bytes(limit_value) if limit_value is not None else None
    needed = maxmemory + max(MIN_HEADROOM, maxmemory // 2)
    if limit is not None and limit < needed:
        yield finding(
            workload,
            "redis-memory",
            f"memory limit {limit_value} is under maxmemory {_mib(maxmemory)} plus room for the AOF rewrite's fork,"
            f" Lua and the allocator: at least {_mib(needed)}",
            limit_path,
        )
    for isvc in job_clients(ctx.objects):
        main = next((c for c in containers(isvc) if not c.init), None)
        if main is None:
            continue
        env_path = [*main.path, "env"]
        value = main.env(QUEUE_BYTES_VAR)
        queue_bytes = int(value) if value is not None and value.isdigit() else None
        if queue_bytes is None:
            yield finding(
                isvc,
                "redis-memory",
                f"container {main.name} sets no literal {QUEUE_BYTES_VAR}: the queue's images are not bounded to"
                f" fit the job Redis' maxmemory {_mib(maxmemory)}",
                env_path,
            )
        elif queue_bytes > maxmemory // 2:
            yield finding(
                isvc,
                "redis-memory",
                f"container {main.name}: {QUEUE_BYTES_VAR} {_mib(queue_bytes)} is over half of the job Redis'"
                f" maxmemory {_mib(maxmemory)}: no room left for results, stream entries and client buffers",
                env_path,
            )
