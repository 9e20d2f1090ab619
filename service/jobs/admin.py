"""``python -m service.jobs.admin``: facts about the job queue, and a way to put a raw job in it.

For operators and for the test harness, which runs it as a subprocess (locally) or through
``kubectl exec -i deploy/ocr-predictor -c kserve-container -- python -m service.jobs.admin ...`` (in a
cluster), so that nothing outside the service imports its queue code. It reads the same ``OCR_*``
settings as the API and the workers (``OCR_REDIS_URL``, ``OCR_JOBS_STREAM``, ``OCR_JOBS_GROUP``).

    stats [--limit N]       {"lag", "pending", "entries_added", "length", "queued_bytes", "dead_letters",
                             "dead_letter_ids"}
    inject [--tenant T]     enqueue stdin's bytes as a job, as the API would after validation: {"job_id"};
                            the job belongs to tenant T (default anonymous, a client sending no X-Tenant-ID):
                            only that tenant finds it with GET /jobs/{id}
    job ID                  the job as GET /jobs/{id} shows it, plus the worker that last ran it

stdout carries exactly one JSON object; every complaint goes to stderr as one line. Exit status: 0 done,
1 refused (unknown job, empty input, full queue), 2 Redis unreachable or refusing the password, or bad
settings or arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import urlsplit

import redis

from service.errors import Refused, SettingsError
from service.headers import DEFAULT_TENANT, TENANT_RE
from service.jobs.store import DEAD_LETTERS, DEAD_LETTERS_KEPT, JOB_ID_RE, JobStore, QueueFull
from service.settings import load_settings

PROG = "jobs_admin"
INJECT_REQUEST_ID = "admin-inject"


def stats(store: JobStore, limit: int) -> dict[str, Any]:
    """What KEDA, the metrics and the acceptance tests read about the queue. A stream or group that does
    not exist yet reads as empty, with ``lag`` null (as Redis answers when it cannot tell)."""
    lag, pending, entries_added, length = None, 0, 0, 0
    if store.redis.exists(store.stream):
        entries_added = store.entries_added()
        length = int(store.redis.xlen(store.stream))  # type: ignore[arg-type]
        lag = store.lag()
        if any(_name(g) == store.group for g in store.redis.xinfo_groups(store.stream)):  # type: ignore[union-attr]
            pending = store.pending()
    return {
        "lag": lag,
        "pending": pending,
        "entries_added": entries_added,
        "length": length,
        "queued_bytes": store.queued_bytes(),
        "dead_letters": int(store.redis.llen(DEAD_LETTERS)),  # type: ignore[arg-type]
        "dead_letter_ids": store.failed_ids(limit),
    }


def _name(group: dict[str, Any]) -> str:
    name = group["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def inject(store: JobStore, data: bytes, tenant: str) -> dict[str, Any]:
    """Enqueue ``data`` as the API does once an upload passed validation; the bytes are not checked, on
    purpose: this is how a damaged record gets into the queue."""
    if not data:
        raise Refused("no bytes on stdin (with kubectl exec, pass -i)")
    store.ensure_group()  # as the API does: KEDA reads the group's lag before any worker exists
    try:
        job_id, _ = store.enqueue(data, request_id=INJECT_REQUEST_ID, tenant_id=tenant)
    except QueueFull as exc:
        raise Refused(str(exc)) from exc
    return {"job_id": job_id}


def job(store: JobStore, job_id: str) -> dict[str, Any]:
    if not JOB_ID_RE.match(job_id):
        raise Refused(f"{job_id!r} is not a job id (32 lowercase hex digits)")
    found = store.get(job_id)
    if found is None:
        raise Refused(f"no job {job_id} (unknown or expired)")
    return {**found.view(), "worker": found.worker}


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= DEAD_LETTERS_KEPT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {DEAD_LETTERS_KEPT}")
    return value


def _tenant(text: str) -> str:
    if not TENANT_RE.match(text):
        raise argparse.ArgumentTypeError("must be 1-64 of A-Z a-z 0-9 . _ -, as X-Tenant-ID")
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m service.{PROG}", description=__doc__.splitlines()[0])
    commands = p.add_subparsers(dest="command", required=True)
    s = commands.add_parser("stats", help="queue lag, pending entries, stream length and dead letters")
    s.add_argument("--limit", type=_limit, default=100, help="dead-letter ids to list, newest first (default 100)")
    i = commands.add_parser("inject", help="enqueue stdin's bytes as a job, without image validation")
    i.add_argument(
        "--tenant",
        type=_tenant,
        default=DEFAULT_TENANT,
        help=f"the job's tenant, the only one GET /jobs/{{id}} shows it to (default {DEFAULT_TENANT})",
    )
    j = commands.add_parser("job", help="one job's stored view and worker")
    j.add_argument("job_id")
    return p


def _where(url: str) -> str:
    """The Redis address for a message: host, port and database, never the password."""
    parts = urlsplit(url)
    try:
        port = str(parts.port or 6379)
    except ValueError:
        port = "?"
    return f"{parts.hostname}:{port}{parts.path or '/0'}"


def run(args: argparse.Namespace, store: JobStore) -> dict[str, Any]:
    if args.command == "stats":
        return stats(store, args.limit)
    if args.command == "inject":
        return inject(store, sys.stdin.buffer.read(), args.tenant)
    return job(store, args.job_id)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
        store = JobStore(settings)
    except (SettingsError, ValueError) as exc:  # ValueError: an OCR_REDIS_URL redis-py cannot parse
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    where = _where(settings.redis_url)
    try:
        out = run(args, store)
    except Refused as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except redis.AuthenticationError as exc:  # a wrong password, or none where Redis requires one
        print(f"{PROG}: Redis at {where} refused the credentials: {exc}", file=sys.stderr)
        return 2
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        print(f"{PROG}: Redis at {where} is unreachable: {exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"{PROG}: Redis at {where} answered an error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
