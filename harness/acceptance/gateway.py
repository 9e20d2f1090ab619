"""The local gateway: HAProxy in front of the local service, keeping the cluster gateway's promises.

What it does, as the Istio ingress gateway does on a cluster:

* asks the platform's own API-key authorizer (``python -m service.authz``, the process the cluster runs)
  about every request, the way Envoy's ext_authz HTTP filter calls it there: the client's method and path,
  ``Content-Length: 0``, and the headers the Istio provider includes in the check
  (:data:`harness.provisioning.extauthz.PROVIDER`, the one list both gateways read), each occurrence as the
  client sent it. 200 allows the request, and the headers the provider copies upstream on allow
  (``x-tenant-id``, ``x-api-key-id``) replace any the client sent; any other 2xx-4xx answer goes back to
  the client with its status, body and ``content-type``; an authorizer that fails, times out (1 s) or
  answers 5xx is a 403 (``failOpen: false``). One check, no retry, as Envoy. HAProxy's Lua ``httpclient``
  makes the call (``authz.lua``, written beside the configuration);
* limits each key to the requests per second of the cluster's rate-limit configuration
  (``manifests/components/ratelimit/config.yaml``: one source for both), counted per ``x-api-key-id`` (the
  authorizer's name for the key, as the cluster's rate-limit descriptor counts) in a fixed window per
  calendar second as Envoy's global rate limit counts; the excess gets 429 with a JSON error and
  ``Retry-After: 1``;
* sets ``X-Tenant-ID`` from the authorizer, so no caller logs as another tenant; does not forward the key;
* writes one JSON access-log line per request (client name, status, latency, the replica that served it
  and the gateway's retries), never the key;
* sends requests only to ready replicas, as the cluster's endpoints do: it checks each replica's
  ``/readyz`` every 250 ms and takes a replica out of rotation at the first 503 (a replica turns unready at
  SIGTERM and keeps serving for its drain pause, so a rollout restarting replicas one at a time fails no
  request); a replica is back in rotation after two passing checks. The backend has ``slots`` replica
  places: the first is the upstream, the others wait in maintenance until :meth:`Gateway.assign` gives
  them an address (HAProxy's runtime API on a socket readable by this user only).

Why HAProxy and a fixed window: measured by ``bench/gateway_limiter_bench.py`` (docs/benchmarks.md), it
admits request for request what Envoy's per-second counter admits; nginx's ``limit_req`` is a 100 ms leaky
bucket that refuses early arrivals without ``burst`` and lets 15 a second through with it.

The gateway never sees a key table: the authorizer knows the keys by their salted hashes only.
"""

from __future__ import annotations

import atexit
import csv
import io
import json
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
from harness.ports import LOOPBACK, free_port
from harness.processes import ManagedProcess, require_binary
from harness.provisioning.extauthz import PROVIDER
from harness.provisioning.paths import COMPONENTS_DIR

RATELIMIT_CONFIG = COMPONENTS_DIR / "ratelimit" / "config.yaml"
API_KEY_HEADER = "x-api-key"
TENANT_HEADER = "x-tenant-id"
KEY_ID_HEADER = "x-api-key-id"
# What Envoy's ext_authz filter sends and keeps, as the cluster's provider declares it.
CHECK_HEADERS: tuple[str, ...] = tuple(PROVIDER["envoyExtAuthzHttp"]["includeRequestHeadersInCheck"])
UPSTREAM_ON_ALLOW: tuple[str, ...] = tuple(PROVIDER["envoyExtAuthzHttp"]["headersToUpstreamOnAllow"])
DOWNSTREAM_ON_DENY: tuple[str, ...] = tuple(PROVIDER["envoyExtAuthzHttp"]["headersToDownstreamOnDeny"])
AUTHZ_TIMEOUT_MS = 1000  # the provider's timeout (1s)
CLIENTS = ("team-a", "team-b")
READY_TIMEOUT_S = 15.0
BACKEND = "service"
# Readiness checks every CHECK_INTERVAL_MS, each given CHECK_TIMEOUT_MS: a replica is out after CHECK_FALL
# failures in a row (its 503 at SIGTERM: 0.75 s, inside the service's 1.5 s drain pause) and back after
# CHECK_RISE passes. /readyz answers in milliseconds on an idle replica and stays under a second on a busy
# one; one slow answer must not take the only replica out (fall 1 and a 250 ms timeout did, under load).
CHECK_INTERVAL_MS = 250
CHECK_TIMEOUT_MS = 1000
CHECK_FALL = 3
CHECK_RISE = 2


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


# HAProxy's own errors: status, code, message. Before a request is parsed there is no request id to name.
OWN_ERRORS = (
    (400, "malformed_request", "not a valid HTTP/1.1 request (its line, its headers or their size)"),
    (408, "request_timeout", "the request head did not arrive in time"),
    (413, "payload_too_large", "the request is larger than the gateway accepts"),
    (501, "not_implemented", "the request uses something the gateway does not implement"),
    (502, "bad_gateway", "the service answered with an invalid response"),
    (504, "gateway_timeout", "the service did not answer in time"),
)


REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Payload Too Large", 501: "Not Implemented",
           502: "Bad Gateway", 504: "Gateway Timeout"}  # fmt: skip


def write_error_files(folder: Path) -> dict[int, Path]:
    """HAProxy's own answers as whole HTTP responses (``errorfile``: the form HAProxy also uses for the errors
    of a request it could not parse), one file a status."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for status, code, message in OWN_ERRORS:
        body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
        head = (
            f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        )
        files[status] = folder / f"{status}.http"
        files[status].write_bytes(head.encode() + body)
    return files


def own_error_lines(files: dict[int, Path]) -> str:
    return "\n".join(f"    errorfile {status} {path}" for status, path in sorted(files.items()))


def server_name(slot: int) -> str:
    """The HAProxy server of a replica slot (1-based)."""
    return f"ocr-{slot}"


def lua_script(authorizer: str) -> str:
    """The ext_authz call as HAProxy Lua (HAProxy >= 2.5: ``core.httpclient``): action ``lua.ocr_authz``."""

    def lua_list(names: tuple[str, ...]) -> str:
        return "{" + ", ".join(json.dumps(n) for n in names) + "}"

    unavailable = json.dumps(
        {"error": {"code": "authorizer_unavailable", "message": "the API-key authorizer did not answer"}}
    )
    return f"""\
-- The local gateway's ext_authz call (harness.acceptance.gateway): one check per request, no retry, fail closed.
local AUTHZ = {json.dumps(authorizer)}
local CHECK = {lua_list(CHECK_HEADERS)}
local UPSTREAM = {lua_list(UPSTREAM_ON_ALLOW)}
local DOWNSTREAM = {lua_list(DOWNSTREAM_ON_DENY)}
local UNAVAILABLE = {json.dumps(unavailable)}

local function values(t)
  local out = {{}}
  if t then for _, v in pairs(t) do out[#out + 1] = v end end
  return out
end

core.register_action("ocr_authz", {{ "http-req" }}, function(txn)
  local sent = txn.http:req_get_headers()
  local headers = {{ ["content-length"] = {{ "0" }} }}
  for _, name in ipairs(CHECK) do
    local v = values(sent[name])
    if #v > 0 then headers[name] = v end
  end
  local client = core.httpclient()
  local method = ({{ GET = client.get, HEAD = client.head, PUT = client.put, POST = client.post,
                    DELETE = client.delete }})[txn.sf:method()] or client.get
  local ok, res = pcall(method, client,
    {{ url = AUTHZ .. txn.sf:pathq(), headers = headers, timeout = {AUTHZ_TIMEOUT_MS} }})
  local status = ok and res and tonumber(res.status) or 0
  if status == 200 then
    for _, name in ipairs(UPSTREAM) do
      local v = values(res.headers and res.headers[name])
      txn:set_var("txn.authz_" .. name:gsub("-", "_"), v[1] or "")
    end
    txn:set_var("txn.authz_status", "200")
    return
  end
  local reply = txn:reply()
  if status >= 200 and status < 500 then
    reply:set_status(status)
    for _, name in ipairs(DOWNSTREAM) do
      for _, v in ipairs(values(res.headers and res.headers[name])) do reply:add_header(name, v) end
    end
    reply:set_body(res.body or "")
  else
    -- failOpen: false. Envoy's own 403 has no body; the platform's front door answers JSON.
    reply:set_status(403)
    reply:add_header("content-type", "application/json")
    reply:set_body(UNAVAILABLE)
  end
  txn:set_var("txn.authz_status", tostring(status))
  txn:done(reply)
end, 0)
"""


def haproxy_config(
    *,
    port: int,
    upstream: str,
    lua: Path,
    limit: int,
    timeout_s: float = 60.0,
    slots: int = 1,
    runtime_socket: Path | None = None,
    error_files: dict[int, Path] | None = None,
    routes: Mapping[str, str] | None = None,
) -> str:
    """The gateway's HAProxy configuration (HAProxy >= 2.5: Lua ``httpclient``; ``lua`` is :func:`lua_script`).
    ``routes``: other hosts it serves (another model's, as the cluster's gateway does) and their upstream; every
    other request goes to ``upstream``. The key check and the limit per key come first, for every host."""
    host, _, upstream_port = upstream.removeprefix("http://").partition(":")
    unavailable = _error("no_ready_replica", "no ready replica of the service; retry later")
    servers = "\n".join(
        f"    server {server_name(slot)} {host}:{upstream_port}" + ("" if slot == 1 else " disabled")
        for slot in range(1, slots + 1)
    )
    runtime = f"    stats socket {runtime_socket} mode 600 level admin\n" if runtime_socket else ""
    hosts = sorted((routes or {}).items())
    use_hosts = "".join(
        f"    use_backend host_{i} if {{ req.hdr(host),field(1,:) -m str -i {name} }}\n"
        for i, (name, _) in enumerate(hosts)
    )
    host_backends = "".join(
        f"\nbackend host_{i}\n    option httpchk GET /readyz\n    http-check expect status 200\n"
        f"    http-error status 503 content-type application/json lf-string '{unavailable}'\n"
        f"    server {i} {url.removeprefix('http://')} check inter {CHECK_INTERVAL_MS}ms\n"
        for i, (_, url) in enumerate(hosts)
    )
    limited = _error("rate_limited", f"more than {limit} requests per second for this API key")
    own_errors = own_error_lines(error_files or {})
    timeout_ms = int(timeout_s * 1000)
    refuse_excess = (
        "http-request deny deny_status 429 content-type application/json hdr Retry-After 1"
        f" lf-string '{limited}' if {{ sc_http_req_cnt(0) gt {limit} }}"
    )
    set_upstream = "\n".join(
        f"    http-request del-header {name}\n"
        f"    http-request set-header {name} %[var(txn.authz_{name.replace('-', '_')})]"
        for name in UPSTREAM_ON_ALLOW
    )
    access_log = (
        '{"time":"%t","client":"%[var(txn.authz_x_tenant_id),json(utf8s)]",'
        '"key_id":"%[var(txn.authz_x_api_key_id),json(utf8s)]","authz":"%[var(txn.authz_status)]",'
        '"method":"%HM","path":"%{+E}HP",'
        '"status":%ST,"latency_ms":%Ta,"request_id":"%[var(txn.request_id),json(utf8s)]","server":"%s",'
        '"retries":"%rc"}'
    )
    return f"""\
# The local gateway (harness.acceptance.gateway): the platform's authorizer decides,
# {limit} requests per second per key.
global
    log stdout format raw local0
    maxconn 1024
    lua-load {lua}
{runtime}
defaults
    mode http
    log global
    log-format '{access_log}'
    timeout connect 5s
    timeout client {timeout_ms}ms
    timeout server {timeout_ms}ms
    timeout http-request 10s
    timeout check {CHECK_TIMEOUT_MS}ms
    unique-id-format %[uuid()]
    # HAProxy's own answers (a malformed request, a head too large or too slow, a service that answered
    # nothing valid) in the platform's JSON error shape, as every other answer at the front door.
{own_errors}

frontend gateway
    bind {LOOPBACK}:{port}
    # A request id for the error bodies and the service's log line: the client's, else a new one.
    http-request set-header X-Request-ID %[unique-id] unless {{ req.hdr(x-request-id) -m found }}
    http-request set-var(txn.request_id) req.hdr(x-request-id)
    # The authorizer decides (ext_authz): a request it does not allow ends here with its answer.
    http-request lua.ocr_authz
    # Fixed window per calendar second, per key id: the table key is "<key id>:<epoch second>".
    http-request set-var(txn.now) date
    http-request set-var(txn.window) var(txn.authz_x_api_key_id),concat(:,txn.now)
    http-request track-sc0 var(txn.window) table per_key_second
    {refuse_excess}
    # The authorizer's tenant and key id, whatever the client said; the key itself goes no further.
{set_upstream}
    http-request del-header {API_KEY_HEADER}
{use_hosts}    default_backend service

backend per_key_second
    # Entries outlive their second (expiry over 1 s); size covers keys x live seconds many times over.
    stick-table type string len 96 size 10k expire 3s store http_req_cnt

backend {BACKEND}
    # Only ready replicas get requests (see the module's docstring); none ready: a JSON 503.
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter {CHECK_INTERVAL_MS}ms fall {CHECK_FALL} rise {CHECK_RISE}
    http-error status 503 content-type application/json lf-string '{unavailable}'
{servers}
{host_backends}"""


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


def check_config(haproxy: str, config: Path) -> None:
    """HAProxy's own checker (``haproxy -c``); CommandFailed carries its complaint."""
    commands.run([haproxy, "-c", "-q", "-f", str(config)], timeout=30, merge_stderr=True)


def start_gateway(
    log_dir: Path,
    work_dir: Path,
    *,
    upstream: str,
    authorizer: str,
    keys: Mapping[str, str],
    name: str = "gateway",
    ready_timeout: float = READY_TIMEOUT_S,
    slots: int = 1,
    routes: Mapping[str, str] | None = None,
) -> Gateway:
    """HAProxy on a free loopback port in front of ``upstream`` (and ``slots - 1`` replica places to assign),
    asking the ``authorizer`` (its check URL) about every request; ready when it answers a keyless request
    with 403. ``keys`` (client -> key) are the keys the authorizer knows, kept for the clients."""
    import httpx

    haproxy = require_binary("haproxy")
    limit = requests_per_second()
    port = free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    lua = work_dir / "authz.lua"
    lua.write_text(lua_script(authorizer))
    config = work_dir / "haproxy.cfg"
    # A short path: a Unix socket's path is limited to 107 bytes.
    runtime_dir = Path(tempfile.mkdtemp(prefix="ocr-gw-"))
    runtime_socket = runtime_dir / "haproxy.sock"
    config.write_text(
        haproxy_config(
            port=port,
            upstream=upstream,
            lua=lua,
            limit=limit,
            slots=slots,
            runtime_socket=runtime_socket,
            error_files=write_error_files(work_dir / "errors"),
            routes=routes,
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
