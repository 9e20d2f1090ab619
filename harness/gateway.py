"""The local gateway: HAProxy in front of the local service, keeping the cluster gateway's promises.

What it does, as the Istio ingress gateway does on a cluster:

* requires an API key in the ``x-api-key`` header; a missing or unknown key gets 403 with a JSON error in
  the service's shape (``{"error": {"code", "message", "request_id"}}``);
* limits each key to the requests per second of the cluster's rate-limit configuration
  (``manifests/components/ratelimit/config.yaml``: one source for both), counted in a fixed window per
  calendar second as Envoy's global rate limit counts; the excess gets 429 with a JSON error and
  ``Retry-After: 1``;
* sets ``X-Tenant-ID`` to the key's client name and drops any the client sent, so no caller logs as
  another tenant; does not forward the key;
* writes one JSON access-log line per request (client name, status, latency, the replica that served it
  and the gateway's retries), never the key;
* sends requests only to ready replicas, as the cluster's endpoints do: it checks each replica's
  ``/readyz`` every 250 ms and takes a replica out of rotation at the first 503 (a replica turns unready at
  SIGTERM and keeps serving for its drain pause, so a rollout restarting replicas one at a time fails no
  request); a replica is back in rotation after two passing checks. The backend has ``slots`` replica
  places: the first is the upstream, the others wait in maintenance until :meth:`Gateway.assign` gives
  them an address (HAProxy's runtime API on a socket readable by this user only).

Why HAProxy and a fixed window: measured by ``bench/gateway_limiter_bench.py`` (README, Benchmarks), it
admits request for request what Envoy's per-second counter admits; nginx's ``limit_req`` is a 100 ms leaky
bucket that refuses early arrivals without ``burst`` and lets 15 a second through with it.

The keys live in a map file (mode 0600) in the work folder, never on a command line or in a log.
"""

from __future__ import annotations

import atexit
import csv
import io
import json
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness import commands
from harness.errors import HarnessError
from harness.manifests.paths import COMPONENTS_DIR
from harness.ports import LOOPBACK, free_port
from harness.processes import ManagedProcess, require_binary

RATELIMIT_CONFIG = COMPONENTS_DIR / "ratelimit" / "config.yaml"
API_KEY_HEADER = "x-api-key"
TENANT_HEADER = "X-Tenant-ID"
CLIENTS = ("team-a", "team-b")
READY_TIMEOUT_S = 15.0
BACKEND = "service"
# Readiness checks: every CHECK_INTERVAL_MS; out at the first failure, back after two successes.
CHECK_INTERVAL_MS = 250


def requests_per_second(config: Path = RATELIMIT_CONFIG) -> int:
    """The per-key limit of the cluster's rate-limit service (envoyproxy/ratelimit configuration)."""
    parsed = yaml.safe_load(config.read_text())
    for descriptor in parsed.get("descriptors") or []:
        limit = descriptor.get("rate_limit") or {}
        if descriptor.get("key") == "api_key" and "value" not in descriptor:
            if limit.get("unit") != "second":
                raise HarnessError(f"{config}: the api_key limit is per {limit.get('unit')!r}, not per second")
            return int(limit["requests_per_unit"])
    raise HarnessError(f"{config}: no per-API-key descriptor (key: api_key, no value)")


def new_keys(clients: tuple[str, ...] = CLIENTS) -> dict[str, str]:
    """A fresh random key for each named client."""
    return {client: secrets.token_urlsafe(32) for client in clients}


def _error(code: str, message: str) -> str:
    """A JSON error in the service's shape, as an HAProxy log-format string (request id escaped)."""
    body = json.dumps({"error": {"code": code, "message": message, "request_id": "REQUEST_ID"}})
    return body.replace('"REQUEST_ID"', '"%[req.hdr(x-request-id),json(utf8s)]"')


def server_name(slot: int) -> str:
    """The HAProxy server of a replica slot (1-based)."""
    return f"ocr-{slot}"


def haproxy_config(
    *,
    port: int,
    upstream: str,
    keys_map: Path,
    limit: int,
    timeout_s: float = 60.0,
    slots: int = 1,
    runtime_socket: Path | None = None,
) -> str:
    """The gateway's HAProxy configuration (HAProxy >= 2.2: ``http-request return``, ``lf-string``)."""
    host, _, upstream_port = upstream.removeprefix("http://").partition(":")
    unavailable = _error("no_ready_replica", "no ready replica of the service; retry later")
    servers = "\n".join(
        f"    server {server_name(slot)} {host}:{upstream_port}" + ("" if slot == 1 else " disabled")
        for slot in range(1, slots + 1)
    )
    runtime = f"    stats socket {runtime_socket} mode 600 level admin\n" if runtime_socket else ""
    denied = _error("invalid_api_key", f"a known API key is required in the {API_KEY_HEADER} header")
    limited = _error("rate_limited", f"more than {limit} requests per second for this API key")
    timeout_ms = int(timeout_s * 1000)
    refuse_unknown = (
        f"http-request return status 403 content-type application/json lf-string '{denied}'"
        " unless { var(txn.client) -m found }"
    )
    refuse_excess = (
        "http-request deny deny_status 429 content-type application/json hdr Retry-After 1"
        f" lf-string '{limited}' if {{ sc_http_req_cnt(0) gt {limit} }}"
    )
    access_log = (
        '{"time":"%t","client":"%[var(txn.client),json(utf8s)]","method":"%HM","path":"%{+E}HP",'
        '"status":%ST,"latency_ms":%Ta,"request_id":"%[var(txn.request_id),json(utf8s)]","server":"%s",'
        '"retries":"%rc"}'
    )
    return f"""\
# The local gateway (harness.gateway): API keys, {limit} requests per second per key, tenant from the key.
global
    log stdout format raw local0
    maxconn 1024
{runtime}
defaults
    mode http
    log global
    log-format '{access_log}'
    timeout connect 5s
    timeout client {timeout_ms}ms
    timeout server {timeout_ms}ms
    timeout http-request 10s
    unique-id-format %[uuid()]

frontend gateway
    bind {LOOPBACK}:{port}
    # A request id for the error bodies and the service's log line: the client's, else a new one.
    http-request set-header X-Request-ID %[unique-id] unless {{ req.hdr(x-request-id) -m found }}
    http-request set-var(txn.request_id) req.hdr(x-request-id)
    # The key's client name ("" when the key is missing or unknown); the key check comes before the
    # limit: a request without a key is never tracked, so it must never pass.
    http-request set-var(txn.client) req.hdr({API_KEY_HEADER}),map({keys_map})
    {refuse_unknown}
    # Fixed window per calendar second, per key: the table key is "<client>:<epoch second>".
    http-request set-var(txn.now) date
    http-request set-var(txn.window) var(txn.client),concat(:,txn.now)
    http-request track-sc0 var(txn.window) table per_key_second
    {refuse_excess}
    # The tenant is the key's client, whatever the client said; the key itself goes no further.
    http-request del-header {TENANT_HEADER}
    http-request set-header {TENANT_HEADER} %[var(txn.client)]
    http-request del-header {API_KEY_HEADER}
    default_backend service

backend per_key_second
    # Entries outlive their second (expiry over 1 s); size covers keys x live seconds many times over.
    stick-table type string len 96 size 10k expire 3s store http_req_cnt

backend {BACKEND}
    # Only ready replicas get requests (see the module's docstring); none ready: a JSON 503.
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter {CHECK_INTERVAL_MS}ms fall 1 rise 2
    http-error status 503 content-type application/json lf-string '{unavailable}'
{servers}
"""


@dataclass
class Gateway:
    process: ManagedProcess
    port: int
    keys: dict[str, str]
    limit: int
    slots: int = 1
    runtime_socket: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def runtime(self, command: str, timeout: float = 5.0) -> str:
        """One command of HAProxy's runtime API; its answer."""
        if self.runtime_socket is None:
            raise HarnessError("this gateway was started without a runtime socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(self.runtime_socket))
            conn.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def server_states(self) -> dict[str, str]:
        """Each replica slot's state as HAProxy sees it: ``UP``, ``DOWN``, ``MAINT``, ``UP 1/2``..."""
        rows = csv.DictReader(io.StringIO(self.runtime("show stat").lstrip("# ")))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row.get("pxname") == BACKEND and row["svname"].startswith("ocr-")
        }

    def assign(self, slot: int, host: str, port: int) -> None:
        """Point a replica slot at ``host:port`` and put it in rotation (once its checks pass)."""
        server = f"{BACKEND}/{server_name(slot)}"
        for command in (f"set server {server} addr {host} port {port}", f"set server {server} state ready"):
            answer = self.runtime(command).strip()
            if answer and "changed" not in answer and "no need to change" not in answer:
                raise HarnessError(f"HAProxy refused {command!r}: {answer}")

    def retire(self, slot: int) -> None:
        """Take a replica slot out of rotation for good (maintenance)."""
        self.runtime(f"set server {BACKEND}/{server_name(slot)} state maint")


def write_keys_map(path: Path, keys: Mapping[str, str]) -> Path:
    """``<key> <client>`` lines, readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.writelines(f"{key} {client}\n" for client, key in keys.items())
    return path


def check_config(haproxy: str, config: Path) -> None:
    """HAProxy's own checker (``haproxy -c``); CommandFailed carries its complaint."""
    commands.run([haproxy, "-c", "-q", "-f", str(config)], timeout=30, merge_stderr=True)


def start_gateway(
    log_dir: Path,
    work_dir: Path,
    *,
    upstream: str,
    keys: Mapping[str, str],
    name: str = "gateway",
    ready_timeout: float = READY_TIMEOUT_S,
    slots: int = 1,
) -> Gateway:
    """HAProxy on a free loopback port in front of ``upstream`` (and ``slots - 1`` replica places to assign);
    ready when it answers a keyless request with its 403."""
    import httpx

    haproxy = require_binary("haproxy")
    limit = requests_per_second()
    port = free_port()
    keys_map = write_keys_map(work_dir / "api-keys.map", keys)
    config = work_dir / "haproxy.cfg"
    # A short path: a Unix socket's path is limited to 107 bytes.
    runtime_dir = Path(tempfile.mkdtemp(prefix="ocr-gw-"))
    runtime_socket = runtime_dir / "haproxy.sock"
    config.write_text(
        haproxy_config(
            port=port, upstream=upstream, keys_map=keys_map, limit=limit, slots=slots, runtime_socket=runtime_socket
        )
    )
    check_config(haproxy, config)
    # -db: stay in the foreground, log to stdout (captured in the process log), stop on SIGTERM.
    process = ManagedProcess(name, [haproxy, "-db", "-f", str(config)], log_dir / f"{name}.log").start()
    atexit.register(shutil.rmtree, runtime_dir, True)
    gateway = Gateway(process, port, dict(keys), limit, slots, runtime_socket)

    def answers() -> bool:
        try:
            return httpx.get(f"{gateway.url}/healthz", timeout=2.0).status_code == 403
        except httpx.HTTPError:
            return False

    try:
        process.wait_ready(answers, timeout=ready_timeout)
    except BaseException:
        process.stop()
        raise
    return gateway


def version(haproxy: str | None = None) -> str:
    """``HAProxy 2.6.12``: what served the run, for the summary."""
    out = commands.run([haproxy or require_binary("haproxy"), "-v"], timeout=10)
    first = out.splitlines()[0] if out else "HAProxy"
    parts = first.split()
    return f"HAProxy {parts[2].split('-')[0]}" if len(parts) > 2 else first
