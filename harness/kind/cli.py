"""``harness kind plan|up|down``: provision the platform on a local kind cluster, or show how."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.kind.plan import CLUSTER, PROFILES, install_plan, teardown_plan
from harness.kind.run import run_plan, write_rendered
from harness.ports import free_port

WORK_DIR = Path(".cache/kind")


def register(subparsers: Any) -> None:
    kind = subparsers.add_parser("kind", help="provision the platform on a local kind cluster")
    sub = kind.add_subparsers(dest="kind_command", required=True)
    for name, help_text in (("plan", "print every provisioning command (dry run)"), ("up", "provision the platform")):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--profile", choices=PROFILES, default="full", help="the overlay to deploy")
        cmd.add_argument("--cluster", default=CLUSTER)
        cmd.add_argument("--host-port", type=int, default=0, help="loopback port of the gateway (0: a free one)")
        cmd.add_argument("--offline-base", action="store_true", help="build the image on the offline base")
        cmd.add_argument("--work-dir", type=Path, default=WORK_DIR)
        cmd.set_defaults(func=_up, dry_run=name == "plan")
    down = sub.add_parser("down", help="export the cluster's logs, then delete it")
    down.add_argument("--cluster", default=CLUSTER)
    down.add_argument("--logs", type=Path, default=Path("artifacts/kind-logs"))
    down.set_defaults(func=_down)


def _up(args: argparse.Namespace) -> int:
    host_port = args.host_port or free_port()
    steps = install_plan(
        args.profile,
        args.work_dir,
        host_port=host_port,
        cluster=args.cluster,
        offline_base=args.offline_base,
        render=write_rendered(args.profile),
    )
    run_plan(steps, log_dir=args.work_dir, dry_run=args.dry_run)
    if not args.dry_run:
        print(f"gateway: http://127.0.0.1:{host_port} (Host: ocr-ocr-dev.example.com)")
    return 0


def _down(args: argparse.Namespace) -> int:
    run_plan(teardown_plan(args.cluster, logs_dir=args.logs), log_dir=args.logs)
    return 0
