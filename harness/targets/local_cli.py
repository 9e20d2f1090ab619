"""``harness local up|down``: the local target's processes outside a test run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.targets import kept
from harness.targets.base import TargetOptions


def register(subparsers: Any) -> None:
    cmd = subparsers.add_parser(
        "local",
        help="start the local platform and leave it running, or stop the one --keep left running",
        description="The local target's processes outside a test run. `up` starts them as the features do and "
        "leaves them running (prints URLs, ports, pids); `down` stops every platform left running by `up` or "
        "by `pytest features --keep`, and removes its temporary folder (Redis' password, the API keys).",
    )
    sub = cmd.add_subparsers(dest="local_command", required=True, metavar="{up,down}")
    up_cmd = sub.add_parser("up", help="start the local platform and leave it running", description=up.__doc__)
    up_cmd.add_argument(
        "--artifacts",
        type=Path,
        default=Path("artifacts") / "local",
        help="folder for the processes' logs (default: artifacts/local)",
    )
    up_cmd.set_defaults(func=up)
    down_cmd = sub.add_parser("down", help="stop every kept local platform and remove its temporary folder")
    down_cmd.set_defaults(func=_down)


def up(args: argparse.Namespace) -> int:
    """Start the local platform (service, gateway, 2 workers, Redis, Prometheus) and leave it running."""
    from harness.targets.local import LocalTarget  # imports the platform's parts only when asked to run them

    target = LocalTarget(TargetOptions(artifacts=args.artifacts.resolve(), keep=True))
    target.start()
    target.stop()  # kept: records the processes and prints where they are
    return 0


def _down(args: argparse.Namespace) -> int:
    try:
        for line in kept.down():
            print(line)
    except (OSError, ValueError, TypeError) as exc:
        raise HarnessError(f"could not read a state file in {kept.state_dir()}: {exc}") from exc
    return 0
