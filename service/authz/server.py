"""The gateway's API-key authorizer: an Envoy ext_authz HTTP service that knows keys only by salted hashes.

``python -m service.authz`` (same image as the service). The ingress gateway asks it about every request
(Istio ``envoyExtAuthzHttp`` provider): Envoy sends the original method and path (after the provider's
``pathPrefix``, none here) with ``Content-Length: 0`` and the headers the provider includes (``x-api-key``,
``x-request-id``), and takes the answer as the decision:

- **200**: allowed. ``x-tenant-id`` and ``x-api-key-id`` name the key's client and the key; the gateway
  copies them onto the request it forwards (``headersToUpstreamOnAllow``: Envoy's ``allowed_upstream_headers``,
  which overwrite a value the client sent). ``x-envoy-auth-headers-to-remove: x-api-key`` has Envoy drop the
  key itself, so the predictor never sees it.
- **403** with the JSON error of the service and the local gateway
  (``{"error": {"code": "invalid_api_key", "message": ..., "request_id": ...}}``): denied. Envoy answers the
  client with this status and body (``headersToDownstreamOnDeny: content-type``).
- Any path and any method are checks: the path is the client's. Health lives on a second port
  (``/healthz``, ``/readyz``), which no client path can reach.

**The hashes file** (``OCR_AUTHZ_HASHES_FILE``, mounted from the Secret ``ocr-api-key-hashes``) holds one JSON
object per line; blank lines and lines starting with ``#`` are ignored::

    {"key_id": "primary", "tenant": "team-a", "alg": "hmac-sha256", "salt": "<hex>", "hash": "<hex>"}

``hash`` is HMAC-SHA256 of the key, keyed with the line's random salt. Keys are 256-bit random values
(``secrets.token_urlsafe(32)``), so guessing one from its hash is out of reach without any work factor; a slow
hash (scrypt) would protect low-entropy passwords, and here would only cost CPU on every request. The salt
makes equal keys hash differently per line and per generation. A presented key is compared with every line
(``hmac.compare_digest``, no early exit), so the time taken does not say which line came close.

**Reloading.** The file is polled every ``OCR_AUTHZ_RELOAD_S`` seconds (its mtime, size and inode): when the
Secret changes, kubelet swaps the mounted file and the next poll loads it, so rotating or revoking a key needs
no restart. A file that does not parse is refused as a whole, with a log line that names the line number
(never its content), and the keys loaded before stay in force; until a valid file has been loaded once, every
key is refused and ``/readyz`` answers 503.

Logs are JSON lines (:mod:`service.logs`): one per decision (``allowed``/``denied`` with ``key_id``,
``tenant``, ``reason``, ``method``, ``path`` without its query, ``request_id``) at info, and reloads. The key
is never logged, nor anything derived from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import signal
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from service import logs
from service.authz.settings import AuthzSettings, load_authz_settings
from service.errors import InvalidHashes, SettingsError
from service.headers import TENANT_RE, ascii_int

log = logging.getLogger("service.authz")

ALG = "hmac-sha256"
API_KEY_HEADER = "x-api-key"
TENANT_HEADER = "x-tenant-id"
KEY_ID_HEADER = "x-api-key-id"
REQUEST_ID_HEADER = "x-request-id"
# Envoy's ext_authz HTTP client removes the headers this names from the request it forwards, on allow.
HEADERS_TO_REMOVE = "x-envoy-auth-headers-to-remove"
DENIED_CODE = "invalid_api_key"
DENIED_MESSAGE = f"a known API key is required in the {API_KEY_HEADER} header"
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MIN_SALT_BYTES = 16
MAX_KEY_LENGTH = 512  # longer values are refused without hashing
MAX_CHECK_BODY = 64 * 1024  # Envoy sends none (Content-Length: 0); a larger one closes the connection

ENVOY_IDLE_TIMEOUT_S = 3600  # Envoy's default idle timeout of upstream HTTP connections
IDLE_TIMEOUT_S = ENVOY_IDLE_TIMEOUT_S + 300


# -- hashes ------------------------------------------------------------------------------------------------


def hash_key(key: str, salt: bytes) -> str:
    """HMAC-SHA256 of the key, keyed with the salt, in hex."""
    return hmac.new(salt, key.encode("utf-8"), hashlib.sha256).hexdigest()


def hash_line(key_id: str, tenant: str, key: str, *, salt: bytes | None = None) -> str:
    """One line of the hashes file for a key (a fresh 16-byte salt unless one is given)."""
    salt = secrets.token_bytes(MIN_SALT_BYTES) if salt is None else salt
    entry = {"key_id": key_id, "tenant": tenant, "alg": ALG, "salt": salt.hex(), "hash": hash_key(key, salt)}
    parse_hashes(json.dumps(entry))  # the same checks the authorizer makes
    return json.dumps(entry, separators=(",", ":"))


@dataclass(frozen=True)
class Entry:
    key_id: str
    tenant: str
    salt: bytes
    digest: bytes


def _field(entry: dict[str, Any], name: str, number: int) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidHashes(f"line {number}: {name!r} is missing or not a string")
    return value


def _hex(entry: dict[str, Any], name: str, number: int) -> bytes:
    try:
        return bytes.fromhex(_field(entry, name, number))
    except ValueError:
        raise InvalidHashes(f"line {number}: {name!r} is not hexadecimal") from None


def parse_hashes(text: str) -> list[Entry]:
    """The entries of a hashes file; :class:`InvalidHashes` for the first line that is wrong."""
    if not text.strip():
        # An empty file is one caught while it is rewritten in place (truncated, not yet written), far more
        # often than a decision: a file that admits nobody on purpose says so in a comment (the committed
        # placeholder does), and is loaded.
        raise InvalidHashes("the file is empty (caught while it was being rewritten?)")
    entries: list[Entry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise InvalidHashes(f"line {number}: not a JSON object") from None
        if not isinstance(entry, dict):
            raise InvalidHashes(f"line {number}: not a JSON object")
        key_id, tenant = _field(entry, "key_id", number), _field(entry, "tenant", number)
        if not KEY_ID_PATTERN.match(key_id):
            raise InvalidHashes(f"line {number}: key_id does not match {KEY_ID_PATTERN.pattern}")
        if not TENANT_RE.match(tenant):
            raise InvalidHashes(f"line {number}: tenant does not match {TENANT_RE.pattern}")
        if entry.get("alg", ALG) != ALG:
            raise InvalidHashes(f"line {number}: alg is not {ALG}")
        salt, digest = _hex(entry, "salt", number), _hex(entry, "hash", number)
        if len(salt) < MIN_SALT_BYTES:
            raise InvalidHashes(f"line {number}: salt shorter than {MIN_SALT_BYTES} bytes")
        if len(digest) != hashlib.sha256().digest_size:
            raise InvalidHashes(f"line {number}: hash is not {hashlib.sha256().digest_size} bytes")
        if any(e.key_id == key_id for e in entries):
            raise InvalidHashes(f"line {number}: key_id {key_id!r} appears twice")
        entries.append(Entry(key_id, tenant, salt, digest))
    return entries


class KeyTable:
    """The keys in force: looks a presented key up against every entry, in time that does not depend on
    which entry (if any) matches."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self.entries: tuple[Entry, ...] = tuple(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, key: str) -> Entry | None:
        found: Entry | None = None
        raw = key.encode("utf-8", "surrogateescape")
        for entry in self.entries:
            candidate = hmac.new(entry.salt, raw, hashlib.sha256).digest()
            if hmac.compare_digest(candidate, entry.digest) and found is None:
                found = entry
        return found


class HashesFile:
    """The mounted hashes file, reloaded when its mtime, size or inode changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.table = KeyTable()
        self.loaded = False  # a valid file has been loaded at least once
        self._seen: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    def poll(self) -> bool:
        """Load the file if it changed since the last poll; whether a new table is in force."""
        with self._lock:
            try:
                stat = self.path.stat()  # follows kubelet's ..data symlink to the current file
                seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
                if seen == self._seen:
                    return False
                self._seen = seen
                text = self.path.read_text(encoding="utf-8")
            except OSError as exc:
                if self._seen != (0, 0, 0):
                    log.error("hashes file unreadable", extra={"path": str(self.path), "error": exc.strerror})
                self._seen = (0, 0, 0)
                return False
            try:
                entries = parse_hashes(text)
            except InvalidHashes as exc:
                log.error(
                    "hashes file refused; the keys loaded before stay in force",
                    extra={"path": str(self.path), "error": str(exc), "keys": len(self.table)},
                )
                return False
            self.table = KeyTable(entries)
            self.loaded = True
            log.info(
                "hashes file loaded",
                extra={"path": str(self.path), "keys": len(entries), "key_ids": [e.key_id for e in entries]},
            )
            return True


# -- HTTP --------------------------------------------------------------------------------------------------


def denied_body(request_id: str) -> bytes:
    """The 403 body: the service's and the local gateway's JSON error."""
    error = {"code": DENIED_CODE, "message": DENIED_MESSAGE, "request_id": request_id}
    return json.dumps({"error": error}, separators=(",", ":")).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Envoy reuses its connections to the authorizer
    server_version = "ocr-authz"
    sys_version = ""
    # An idle keep-alive connection is closed after this long. Envoy keeps its connections to the authorizer
    # up to an hour idle and does not retry a check: were the authorizer to close first, a check sent on a
    # connection it is closing would fail, and the gateway would refuse a valid key with 403. So the
    # authorizer outlasts Envoy's idle timeout (1 h) rather than the other way round.
    timeout = IDLE_TIMEOUT_S
    # http.server's answer to a malformed request: JSON, and never the request line it could not parse.
    error_content_type = "application/json"
    error_message_format = '{"error":{"code":"malformed_request","message":"HTTP %(code)d"}}'

    def parse_request(self) -> bool:
        # A request line with no HTTP/1.x version (HTTP/0.9's "GET /") would have http.server read header lines
        # that never come, holding a thread until the idle timeout: it is refused at once, in HTTP/1.1 (0.9 has
        # no status line), and the connection closed.
        words = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n").split()
        if len(words) == 3 and words[2].startswith("HTTP/1."):
            return super().parse_request()
        self.command, self.requestline, self.request_version = "", "", "HTTP/1.1"
        self.close_connection = True
        self.send_error(400)
        return False

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler dispatches to do_<METHOD>: every method gets the same handler.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _dispatch(self) -> None:
        raise NotImplementedError

    def _discard_body(self) -> None:
        """Read and drop a request body (Envoy sends none); one too large or chunked closes the connection."""
        length = ascii_int(self.headers.get("content-length") or "0")
        if self.headers.get("transfer-encoding") or length is None or length > MAX_CHECK_BODY:
            self.close_connection = True  # the body is left unread: the connection cannot be reused
            return
        if length:
            self.rfile.read(length)

    def _reply(self, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # http.server's own lines (protocol errors) would go to stderr as text, and may quote the request line,
        # which may hold the key: only the template is kept.
        log.debug("http server", extra={"detail": format})


class CheckHandler(_Handler):
    """Every request is a check: the method and path are the client's."""

    server: CheckServer

    def _dispatch(self) -> None:
        self._discard_body()
        request_id = (self.headers.get(REQUEST_ID_HEADER) or "").strip() or uuid.uuid4().hex
        path = self.path.split("?", 1)[0]
        keys = self.headers.get_all(API_KEY_HEADER) or []
        entry = None
        reason = "missing"
        if len(keys) == 1 and keys[0].strip():
            key = keys[0].strip()
            entry = self.server.hashes.table.lookup(key) if len(key) <= MAX_KEY_LENGTH else None
            reason = "unknown"
        elif len(keys) > 1:
            reason = "several"
        fields = {"method": self.command, "path": path, "request_id": request_id}
        if entry is None:
            log.info("denied", extra={**fields, "reason": reason})
            self._reply(403, denied_body(request_id))
            return
        log.info("allowed", extra={**fields, "key_id": entry.key_id, "tenant": entry.tenant})
        headers = [(TENANT_HEADER, entry.tenant), (KEY_ID_HEADER, entry.key_id), (HEADERS_TO_REMOVE, API_KEY_HEADER)]
        self._reply(200, b"", headers)


class HealthHandler(_Handler):
    """``/healthz``: the process answers. ``/readyz``: a valid hashes file has been loaded."""

    server: CheckServer

    def _dispatch(self) -> None:
        self._discard_body()
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._reply(200, b'{"status":"ok"}')
        elif path == "/readyz":
            hashes = self.server.hashes
            ready = hashes.loaded
            body = json.dumps({"status": "ready" if ready else "no hashes loaded", "keys": len(hashes.table)})
            self._reply(200 if ready else 503, body.encode())
        else:
            self._reply(404, b'{"error":{"code":"not_found","message":"no such path"}}')


class CheckServer(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections do not hold up a shutdown
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], hashes: HashesFile) -> None:
        self.hashes = hashes
        super().__init__(address, handler)


# -- process -----------------------------------------------------------------------------------------------


def _watch(hashes: HashesFile, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            hashes.poll()
        except Exception:  # the watcher must outlive any one bad poll
            log.exception("hashes poll failed")


def serve(settings: AuthzSettings, stop: threading.Event) -> None:
    """Serve checks and health until ``stop`` is set."""
    hashes = HashesFile(settings.hashes_file)
    hashes.poll()
    check = CheckServer((settings.host, settings.port), CheckHandler, hashes)
    health = CheckServer((settings.host, settings.health_port), HealthHandler, hashes)
    threads = [
        threading.Thread(target=check.serve_forever, name="authz-check", daemon=True),
        threading.Thread(target=health.serve_forever, name="authz-health", daemon=True),
        threading.Thread(target=_watch, args=(hashes, settings.reload_s, stop), name="authz-reload", daemon=True),
    ]
    for thread in threads:
        thread.start()
    log.info(
        "authorizer listening",
        extra={"port": check.server_address[1], "health_port": health.server_address[1], "keys": len(hashes.table)},
    )
    while not stop.wait(0.5):
        pass
    for server in (check, health):
        server.shutdown()
        server.server_close()
    log.info("authorizer stopped")


def hash_lines(text: str) -> str:
    """The hashes file for ``key_id<TAB>tenant<TAB>key`` lines (``python -m service.authz hash``)."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not all(parts):
            raise InvalidHashes(f"input line {number}: expected key_id, tenant and key separated by tabs")
        out.append(hash_line(parts[0], parts[1], parts[2]))
    return "".join(f"{line}\n" for line in out)


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["hash"]:
        # The hashes file from keys on stdin, one `key_id<TAB>tenant<TAB>key` a line: how a platform
        # provisions keys without any other program knowing the format. Keys are read, never echoed.
        try:
            sys.stdout.write(hash_lines(sys.stdin.read()))
        except InvalidHashes as exc:
            print(f"authz hash: {exc}", file=sys.stderr)
            return 2
        return 0
    if args:
        print("usage: python -m service.authz [hash]", file=sys.stderr)
        return 2
    logs.configure("info")
    try:
        settings = load_authz_settings()
    except SettingsError as exc:
        log.error("refusing to start: %s", exc)
        return 2
    logs.configure(settings.log_level)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        serve(settings, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
