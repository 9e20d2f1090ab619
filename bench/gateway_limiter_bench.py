"""Which reverse proxy's per-key limiter matches Envoy's global rate limit (10 requests per calendar second)?

The gateway in front of the OCR service requires ``x-api-key`` and limits each key to 10 requests per second,
answering the excess with 429. On Kubernetes, Envoy's global rate limit (envoyproxy/ratelimit) keeps that
promise with a fixed window per calendar second per key: at most 10 admitted in each wall-clock second, no
burst carried over. This script measures nginx and HAProxy configurations (templates in
``bench/gateway_limiter/``) against that, on loopback only:

* a tiny stdlib upstream answers 200 at once (in a thread);
* each candidate's config is rendered into a temp dir, checked with the proxy's own checker
  (``nginx -t``, ``haproxy -c``) and run as a child process on free loopback ports;
* an evenly paced client (threads; send time and status of every request) drives the scenarios
  (a) one key at 20 rps for 10 s, (b) key A at 20 rps and key B at 5 rps together,
  (c) a key at 20 rps for 3 s, a 2 s pause, then 20 rps for 2 s, (d) two keys at 20 rps each together,
  each repeated ``--repeats`` times with fresh keys; every scenario starts 0.275 s past a wall-clock
  second, so no 50 ms send falls within 25 ms of a second boundary;
* an ideal Envoy-style fixed-window counter is simulated on the exact same send times, and each
  candidate's outcome is compared with it request by request.

Run: ``python bench/gateway_limiter_bench.py [--repeats 3] [--candidates a,b] [--seconds 10]``;
writes bench/results/gateway_limiter.json. Needs ``nginx`` and ``haproxy`` on PATH (Debian packages).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import percentile, write_result
from harness.acceptance.load import Pacer
from harness.errors import ToolMissing
from harness.ports import LOOPBACK, free_port
from harness.processes import ManagedProcess, stop_all

TEMPLATES = Path(__file__).with_name("gateway_limiter")
LIMIT = 10  # requests per calendar second per key: the promise
PHASE = 0.275  # scenario start, seconds past a wall-clock second
REQUEST_TIMEOUT_S = 5.0

# ---------------------------------------------------------------------------------------------------------
# Candidates: the limiter part of each config. Everything else (key check -> 403, JSON 429, Retry-After) is
# in the templates and shared by all candidates of a proxy.

_HA_429 = (
    "deny deny_status 429 content-type application/json hdr Retry-After 1 "
    'string \'{"error":"rate_limited","detail":"more than 10 requests per second for this key",'
    '"retry_after_s":1}\''
)


@dataclass(frozen=True)
class Candidate:
    name: str
    proxy: str  # nginx | haproxy
    summary: str
    parts: dict[str, str]
    gate: bool = True  # False: without the 403 for a missing/unknown key (pitfall demonstration only)


CANDIDATES = [
    Candidate(
        "nginx-burst0",
        "nginx",
        "limit_req rate=10r/s, no burst: leaky bucket, one request per 100 ms",
        {
            "LIMIT_ZONE": "limit_req_zone $api_client zone=per_key:10m rate=10r/s;",
            "LIMIT_REQ": "limit_req zone=per_key;",
        },
    ),
    Candidate(
        "nginx-burst10-nodelay",
        "nginx",
        "limit_req rate=10r/s burst=10 nodelay: leaky bucket with 10 extra admitted at once",
        {
            "LIMIT_ZONE": "limit_req_zone $api_client zone=per_key:10m rate=10r/s;",
            "LIMIT_REQ": "limit_req zone=per_key burst=10 nodelay;",
        },
    ),
    Candidate(
        "nginx-burst10-delay",
        "nginx",
        "limit_req rate=10r/s burst=10 (no nodelay): excess up to 10 is queued and released every 100 ms",
        {
            "LIMIT_ZONE": "limit_req_zone $api_client zone=per_key:10m rate=10r/s;",
            "LIMIT_REQ": "limit_req zone=per_key burst=10;",
        },
    ),
    Candidate(
        "nginx-fixed-window",
        "nginx",
        "fixed window: key = client:$time_iso8601 (one bucket per key per second), rate=1r/m burst=9 nodelay",
        {
            "LIMIT_ZONE": "limit_req_zone $api_client:$time_iso8601 zone=per_key_second:10m rate=1r/m;",
            "LIMIT_REQ": "limit_req zone=per_key_second burst=9 nodelay;",
        },
    ),
    Candidate(
        "haproxy-req-rate",
        "haproxy",
        "stick-table http_req_rate(1s) on the key, deny if sc_http_req_rate(0) gt 10 (refused requests count too)",
        {
            "LIMIT_RULES": (
                "    http-request track-sc0 req.hdr(x-api-key) table rl_per_key\n"
                f"    http-request {_HA_429} if {{ sc_http_req_rate(0) gt {LIMIT} }}"
            ),
            "TABLE": (
                "backend rl_per_key\n    stick-table type string len 128 size 100k expire 10s store http_req_rate(1s)"
            ),
        },
    ),
    Candidate(
        "haproxy-admitted-rate",
        "haproxy",
        "stick-table gpc0_rate(1s), deny if sc_gpc0_rate(0) ge 10, sc-inc-gpc0 only on admitted requests",
        {
            "LIMIT_RULES": (
                "    http-request track-sc0 req.hdr(x-api-key) table rl_admitted\n"
                f"    http-request {_HA_429} if {{ sc_gpc0_rate(0) ge {LIMIT} }}\n"
                "    http-request sc-inc-gpc0(0)"
            ),
            "TABLE": (
                "backend rl_admitted\n    stick-table type string len 128 size 100k expire 10s store gpc0,gpc0_rate(1s)"
            ),
        },
    ),
    Candidate(
        "haproxy-fixed-window",
        "haproxy",
        "fixed window: track key:date (epoch second) in a table storing http_req_cnt, deny if gt 10",
        {
            "LIMIT_RULES": (
                "    http-request set-var(txn.rl_sec) date\n"
                "    http-request set-var(txn.rl_key) req.hdr(x-api-key),concat(:,txn.rl_sec)\n"
                "    http-request track-sc0 var(txn.rl_key) table rl_fixed\n"
                f"    http-request {_HA_429} if {{ sc_http_req_cnt(0) gt {LIMIT} }}"
            ),
            "TABLE": "backend rl_fixed\n    stick-table type string len 160 size 100k expire 3s store http_req_cnt",
        },
    ),
]

# Without the key check, a request with no x-api-key is not limited at all by either proxy: nginx does not
# account an empty limit_req key, and HAProxy's track-sc0 tracks nothing when the header is absent.
UNGATED = [
    Candidate(
        "nginx-raw-header-no-key-check",
        "nginx",
        "limit_req_zone $http_x_api_key rate=10r/s, no 403 for a missing key",
        {
            "LIMIT_ZONE": "limit_req_zone $http_x_api_key zone=per_key:10m rate=10r/s;",
            "LIMIT_REQ": "limit_req zone=per_key;",
        },
        gate=False,
    ),
    Candidate(
        "haproxy-req-rate-no-key-check",
        "haproxy",
        "track-sc0 req.hdr(x-api-key), no 403 for a missing key",
        CANDIDATES[4].parts,
        gate=False,
    ),
]

# ---------------------------------------------------------------------------------------------------------
# Scenarios: streams of evenly paced requests, each with its own key; offsets in seconds from the start.


@dataclass(frozen=True)
class Stream:
    label: str
    offsets: tuple[float, ...]


def paced_offsets(rate: float, seconds: float, start: float = 0.0) -> tuple[float, ...]:
    return tuple(round(start + i / rate, 6) for i in range(round(rate * seconds)))


def scenarios(seconds: float) -> dict[str, list[Stream]]:
    first = paced_offsets(20, 3)
    resume = first[-1] + 2.0  # a 2 s gap between the last send before the pause and the first after it
    return {
        "a_one_key_20rps": [Stream("A", paced_offsets(20, seconds))],
        "b_20rps_and_5rps": [Stream("A", paced_offsets(20, seconds)), Stream("B", paced_offsets(5, seconds))],
        "c_pause_2s": [Stream("A", first + paced_offsets(20, 2, start=resume))],
        "d_two_keys_20rps": [Stream("A", paced_offsets(20, seconds)), Stream("B", paced_offsets(20, seconds))],
    }


PAUSE_SPLIT = 3.0  # scenario c: offsets at or after this are "after the pause"

# ---------------------------------------------------------------------------------------------------------
# Upstream and proxies.


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b'{"ok":true}\n'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a proxy closing its idle upstream connections at stop is not an error here


def start_upstream() -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = _QuietServer((LOOPBACK, 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    return server, thread


def render(template: str, values: dict[str, str]) -> str:
    text = (TEMPLATES / template).read_text()
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    if "@@" in text:
        raise ValueError(f"{template}: unfilled placeholder in {text[text.index('@@') :][:40]!r}")
    return text


def nginx_user_line() -> str:
    """Workers of a root master drop to an unprivileged user; a non-root master ignores ``user``."""
    if os.geteuid() != 0:
        return ""
    import grp

    group = "nogroup"
    try:
        grp.getgrnam(group)
    except KeyError:
        group = "nobody"
    return f"user nobody {group};"


def prepare(candidate: Candidate, workdir: Path, port: int, upstream_port: int, keys: list[str]) -> list[str]:
    """Render the config and key list; validate with the proxy's checker; return the argv to run it."""
    workdir.mkdir(parents=True)
    workdir.chmod(0o755)  # nginx workers run as nobody
    common = {"DIR": str(workdir), "PORT": str(port), "UPSTREAM_PORT": str(upstream_port), **candidate.parts}
    if candidate.proxy == "nginx":
        (workdir / "api_keys.map").write_text("".join(f'"{k}" "{k}";\n' for k in keys))
        conf = workdir / "nginx.conf"
        text = render("nginx.conf.tmpl", {"USER": nginx_user_line(), **common})
        if not candidate.gate:
            text = re.sub(r'\n\s*if \(\$api_client = ""\) \{.*?\}\n', "\n", text, flags=re.DOTALL)
        conf.write_text(text)
        base = ["nginx", "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]
        check = [*base, "-g", "daemon off;", "-t", "-q"]
        run = [*base, "-g", "daemon off;"]
    else:
        (workdir / "api_keys.txt").write_text("".join(f"{k}\n" for k in keys))
        conf = workdir / "haproxy.cfg"
        text = render("haproxy.cfg.tmpl", common)
        if not candidate.gate:
            text = "\n".join(line for line in text.splitlines() if "unless known_key" not in line) + "\n"
        conf.write_text(text)
        check = ["haproxy", "-c", "-q", "-f", str(conf)]
        run = ["haproxy", "-db", "-f", str(conf)]
    done = subprocess.run(check, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{candidate.name}: config check failed:\n{done.stdout}{done.stderr}")
    return run


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------------
# The client.


@dataclass
class Outcome:
    stream: str
    key: str | None
    offset: float  # scheduled, seconds from the scenario start
    sent: float  # wall clock (epoch seconds) just before the request was written
    latency_s: float
    status: int  # 0 for a transport error
    content_type: str = ""
    retry_after: str = ""
    body: str = ""


def send(port: int, key: str | None) -> tuple[int, str, str, str]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=REQUEST_TIMEOUT_S)
    try:
        headers = {"Connection": "close"}
        if key is not None:
            headers["x-api-key"] = key
        conn.request("GET", "/ocr", headers=headers)
        resp = conn.getresponse()
        body = resp.read(400).decode(errors="replace")
        return resp.status, resp.getheader("Content-Type", ""), resp.getheader("Retry-After", ""), body
    finally:
        conn.close()


def drive(port: int, streams: list[tuple[Stream, str | None]]) -> list[Outcome]:
    """Send every stream's requests on schedule (a slow answer never delays the next send: the harness'
    one pacer, ``harness.acceptance.load.Pacer``), starting on a wall-clock second plus PHASE."""
    now = time.time()
    start_wall = math.floor(now) + 1 + PHASE
    start_mono = time.monotonic() + (start_wall - now)
    plan = sorted((off, stream.label, key) for stream, key in streams for off in stream.offsets)

    def one(index: int, _: float) -> Outcome:
        off, label, key = plan[index]
        sent = time.time()
        t0 = time.monotonic()
        try:
            status, ctype, retry, body = send(port, key)
        except OSError:
            status, ctype, retry, body = 0, "", "", ""
        return Outcome(
            label, key, off, sent, time.monotonic() - t0, status, ctype, retry, body if status != 200 else ""
        )

    horizon = max(off for off, _, _ in plan) + (start_wall - now) + REQUEST_TIMEOUT_S + 10
    pacer = Pacer(one, offsets=[off for off, _, _ in plan], max_in_flight=64).start(at=start_mono)
    out = pacer.wait(timeout=horizon)
    if len(out) < len(plan):
        raise TimeoutError(f"{len(plan) - len(out)} requests still running {horizon:.0f} s after the scenario began")
    out.sort(key=lambda r: (r.sent, r.stream))
    return out


# ---------------------------------------------------------------------------------------------------------
# Analysis.


def ideal_fixed_window(records: list[Outcome]) -> dict[int, bool]:
    """What Envoy's ratelimit would admit: the first LIMIT sends of each key in each calendar second."""
    counts: Counter[tuple[str | None, int]] = Counter()
    admit: dict[int, bool] = {}
    for i, r in sorted(enumerate(records), key=lambda p: p[1].sent):
        bucket = (r.key, math.floor(r.sent))
        counts[bucket] += 1
        admit[i] = counts[bucket] <= LIMIT
    return admit


def stream_stats(records: list[tuple[int, Outcome]], ideal: dict[int, bool], split: float | None) -> dict:
    statuses = Counter(r.status for _, r in records)
    per_sec: Counter[int] = Counter()
    seconds = sorted({math.floor(r.sent) for _, r in records})
    for _, r in records:
        if r.status == 200:
            per_sec[math.floor(r.sent)] += 1
    full = seconds[1:-1]  # calendar seconds the stream covered entirely
    false_refusals = sum(1 for _, r in records if r.status == 429 and per_sec[math.floor(r.sent)] < LIMIT)
    ideal_admitted = sum(1 for i, _ in records if ideal[i])
    admitted = statuses.get(200, 0)
    lat = [r.latency_s * 1000 for _, r in records if r.status == 200]
    stats = {
        "sent": len(records),
        "admitted": admitted,
        "refused_429": statuses.get(429, 0),
        "other_statuses": {str(k): v for k, v in sorted(statuses.items()) if k not in (200, 429)},
        "admitted_per_second_max": max(per_sec.values(), default=0),
        "admitted_per_full_second_min": min((per_sec[s] for s in full), default=None),
        "seconds_over_limit": sum(1 for v in per_sec.values() if v > LIMIT),
        "false_refusals": false_refusals,
        "ideal_admitted": ideal_admitted,
        "admitted_minus_ideal": admitted - ideal_admitted,
        "disagreements_with_ideal": sum(1 for i, r in records if (r.status == 200) != ideal[i]),
        "admitted_latency_ms": {
            "p50": round(percentile(lat, 50), 1) if lat else None,
            "p95": round(percentile(lat, 95), 1) if lat else None,
            "max": round(max(lat), 1) if lat else None,
        },
    }
    if split is not None:
        before = [(i, r) for i, r in records if r.offset < split]
        after = [(i, r) for i, r in records if r.offset >= split]
        first_ok = next((r.offset - after[0][1].offset for _, r in after if r.status == 200), None)
        stats["pause"] = {
            "refused_before_pause": sum(1 for _, r in before if r.status == 429),
            "first_after_pause_status": after[0][1].status if after else None,
            "s_from_resume_to_first_200": round(first_ok, 3) if first_ok is not None else None,
            "admitted_after_pause": sum(1 for _, r in after if r.status == 200),
            "ideal_admitted_after_pause": sum(1 for i, _ in after if ideal[i]),
        }
    return stats


def analyse(scenario: str, records: list[Outcome]) -> dict:
    ideal = ideal_fixed_window(records)
    by_stream: dict[str, list[tuple[int, Outcome]]] = defaultdict(list)
    for i, r in enumerate(records):
        by_stream[r.stream].append((i, r))
    split = PAUSE_SPLIT if scenario.startswith("c_") else None
    streams = {label: stream_stats(rs, ideal, split) for label, rs in sorted(by_stream.items())}
    return {"streams": streams, "acceptance": acceptance(scenario, streams)}


def acceptance(scenario: str, s: dict[str, dict]) -> dict:
    def band(st: dict) -> bool:  # scenario (a)'s rule, 10 s at 20 rps: 90..110 admitted, the rest 429
        lo, hi = 9 * st["sent"] // 20, 11 * st["sent"] // 20
        return lo <= st["admitted"] <= hi and st["admitted"] + st["refused_429"] == st["sent"]

    if scenario.startswith("a_"):
        return {"pass": band(s["A"]), "rule": "90..110 of 200 admitted, every other answer 429"}
    if scenario.startswith("b_"):
        ok = s["A"]["refused_429"] > 0 and s["B"]["refused_429"] == 0 and s["B"]["admitted"] == s["B"]["sent"]
        return {"pass": ok, "rule": "some 429 for A (20 rps), none for B (5 rps)"}
    if scenario.startswith("c_"):
        p = s["A"]["pause"]
        ok = p["refused_before_pause"] > 0 and p["first_after_pause_status"] == 200
        return {"pass": ok, "rule": "throttled before the pause, first request after a 2 s pause admitted"}
    ok = band(s["A"]) and band(s["B"])
    return {
        "pass": ok,
        "rule": "each key alone within 90..110 of 200, the rest 429",
        "admitted_a_minus_b": s["A"]["admitted"] - s["B"]["admitted"],
    }


def sample_responses(records: list[Outcome]) -> dict:
    """The first 429 answer as a client sees it."""
    r = next((r for r in records if r.status == 429), None)
    if r is None:
        return {}
    try:
        json.loads(r.body)
        is_json = True
    except ValueError:
        is_json = False
    return {"status": 429, "content_type": r.content_type, "retry_after": r.retry_after, "json_body": is_json,
            "body": r.body.strip()}  # fmt: skip


def key_checks(port: int, valid_key: str) -> dict:
    out = {}
    for label, key in (("missing_key", None), ("unknown_key", "not-a-key"), ("empty_key", ""), ("valid", valid_key)):
        status, ctype, _, body = send(port, key)
        try:
            json.loads(body)
            is_json = True
        except ValueError:
            is_json = False
        out[label] = {"status": status, "content_type": ctype, "json_body": is_json}
    return out


# ---------------------------------------------------------------------------------------------------------


def summarise(runs: list[dict]) -> dict:
    """Per candidate, per scenario: the numbers of each run side by side."""
    out: dict[str, dict] = {}
    for scen in runs[0]["scenarios"]:
        per_run = [r["scenarios"][scen] for r in runs]
        labels = list(per_run[0]["streams"])
        entry: dict = {"pass_runs": f"{sum(p['acceptance']['pass'] for p in per_run)}/{len(per_run)}"}
        for label in labels:
            sts = [p["streams"][label] for p in per_run]
            mins = [st["admitted_per_full_second_min"] for st in sts if st["admitted_per_full_second_min"] is not None]
            entry[label] = {
                "admitted": [st["admitted"] for st in sts],
                "refused_429": [st["refused_429"] for st in sts],
                "ideal_admitted": [st["ideal_admitted"] for st in sts],
                "admitted_minus_ideal": [st["admitted_minus_ideal"] for st in sts],
                "disagreements_with_ideal": [st["disagreements_with_ideal"] for st in sts],
                "per_second_max": max(st["admitted_per_second_max"] for st in sts),
                "per_full_second_min": min(mins) if mins else None,
                "seconds_over_limit": [st["seconds_over_limit"] for st in sts],
                "false_refusals": [st["false_refusals"] for st in sts],
                "admitted_p95_ms_max": max((st["admitted_latency_ms"]["p95"] or 0) for st in sts),
            }
            if "pause" in sts[0]:
                entry[label]["first_after_pause_status"] = [st["pause"]["first_after_pause_status"] for st in sts]
                entry[label]["admitted_after_pause"] = [st["pause"]["admitted_after_pause"] for st in sts]
                entry[label]["ideal_admitted_after_pause"] = [st["pause"]["ideal_admitted_after_pause"] for st in sts]
        out[scen] = entry
    return out


def versions() -> dict:
    def first_line(argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return (done.stdout + done.stderr).strip().splitlines()[0]

    return {"nginx": first_line(["nginx", "-v"]), "haproxy": first_line(["haproxy", "-v"])}


def run_candidate(candidate: Candidate, root: Path, upstream_port: int, repeats: int, seconds: float) -> dict:
    scen = scenarios(seconds)
    keys = {
        (name, rep, st.label): f"bench-{name[0]}-r{rep}-{st.label.lower()}"
        for name, streams in scen.items()
        for rep in range(1, repeats + 1)
        for st in streams
    }
    all_keys = sorted(keys.values())
    port = free_port()
    workdir = root / candidate.name
    argv = prepare(candidate, workdir, port, upstream_port, all_keys)
    proc = ManagedProcess(candidate.name, argv, workdir / "proxy.log").start()
    try:
        proc.wait_ready(lambda: port_open(port), timeout=15, interval=0.1)
        checks = key_checks(port, all_keys[0])
        print(f"  key checks: {checks}", flush=True)
        runs = []
        sample: dict = {}
        for rep in range(1, repeats + 1):
            run: dict = {"run": rep, "scenarios": {}}
            for name, streams in scen.items():
                records = drive(port, [(st, keys[(name, rep, st.label)]) for st in streams])
                if not proc.alive():
                    raise RuntimeError(f"{candidate.name} died:\n{proc.log_tail()}")
                run["scenarios"][name] = analyse(name, records)
                sample = sample or sample_responses(records)
                a = run["scenarios"][name]
                print(
                    f"  {candidate.name} run {rep} {name}: "
                    + ", ".join(
                        f"{lbl} {st['admitted']}/{st['sent']} (ideal {st['ideal_admitted']}, "
                        f"max/s {st['admitted_per_second_max']}, false 429 {st['false_refusals']})"
                        for lbl, st in a["streams"].items()
                    )
                    + f" -> {'pass' if a['acceptance']['pass'] else 'FAIL'}",
                    flush=True,
                )
            runs.append(run)
        print(f"  first 429: {sample}", flush=True)
        return {
            "proxy": candidate.proxy,
            "summary": candidate.summary,
            "config": candidate.parts,
            "key_checks": checks,
            "first_429": sample,
            "summary_by_scenario": summarise(runs),
            "runs": runs,
        }
    finally:
        stop_all([proc], grace=5)


def ungated_demo(candidate: Candidate, root: Path, upstream_port: int) -> dict:
    """20 rps for 2 s without an x-api-key header through a config that lacks the key check."""
    port = free_port()
    workdir = root / candidate.name
    argv = prepare(candidate, workdir, port, upstream_port, ["bench-demo"])
    proc = ManagedProcess(candidate.name, argv, workdir / "proxy.log").start()
    try:
        proc.wait_ready(lambda: port_open(port), timeout=15, interval=0.1)
        records = drive(port, [(Stream("none", paced_offsets(20, 2)), None)])
    finally:
        stop_all([proc], grace=5)
    statuses = Counter(r.status for r in records)
    out = {"summary": candidate.summary, "config": candidate.parts, "sent_without_key": len(records),
           "statuses": {str(k): v for k, v in sorted(statuses.items())}}  # fmt: skip
    print(f"{candidate.name}: {out['statuses']} of {len(records)} without a key", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="write to bench/results (committed), not artifacts/bench")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of scenarios a, b, d")
    parser.add_argument("--candidates", default="", help="comma-separated names (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write the result file")
    parser.add_argument("--keep", action="store_true", help="keep the rendered configs and logs")
    args = parser.parse_args()
    for tool in ("nginx", "haproxy"):
        if shutil.which(tool) is None:
            raise ToolMissing(tool, f"apt-get install {tool}")
    chosen = [c for c in CANDIDATES if not args.candidates or c.name in args.candidates.split(",")]
    if not chosen:
        parser.error(f"no candidate among {[c.name for c in CANDIDATES]}")
    root = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    server, thread = start_upstream()
    started = time.time()
    results = {}
    try:
        upstream_port = server.server_address[1]
        for c in chosen:
            print(f"{c.name}: {c.summary}", flush=True)
            results[c.name] = run_candidate(c, root, int(upstream_port), args.repeats, args.seconds)
        pitfalls = {c.name: ungated_demo(c, root, int(upstream_port)) for c in UNGATED}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"configs and logs kept in {root}")
    result = {
        "machine_detail": {"platform": platform.platform(), "processor": platform.machine()},
        "versions": versions(),
        "method": {
            "limit_per_key_per_s": LIMIT,
            "scenarios": {
                "a_one_key_20rps": f"one key, 20 rps evenly paced, {args.seconds:g} s",
                "b_20rps_and_5rps": f"key A 20 rps and key B 5 rps together, {args.seconds:g} s",
                "c_pause_2s": "one key 20 rps for 3 s, 2 s without a request, 20 rps for 2 s",
                "d_two_keys_20rps": f"keys A and B at 20 rps each together, {args.seconds:g} s",
            },
            "repeats": args.repeats,
            "start_phase_s": PHASE,
            "client": "one new loopback connection per request, threads, send time = wall clock before the write",
            "ideal": "fixed window per key per calendar second of the send time, first 10 admitted (Envoy ratelimit)",
            "false_refusal": "a 429 in a calendar second in which fewer than 10 requests of that key were admitted",
            "elapsed_s": round(time.time() - started, 1),
        },
        "candidates": results,
        "pitfall_no_key_check": pitfalls,
    }
    if not args.no_write:
        path = write_result("gateway_limiter", result, record=args.record)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
