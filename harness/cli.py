"""``harness``: the command line of the platform harness.

Each sub-command lives in the module that owns its concept; that module exposes
``register(subparsers)`` which adds its parser and sets ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from harness.errors import HarnessError

COMMAND_MODULES = (
    "harness.manifests.cli",
    "harness.image",
    "harness.platform.cli",
    "harness.report",
    "harness.rollout",
    "harness.samples",
    "harness.targets.local_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="The OCR platform's harness: provision it (kind or a cluster you have), render and validate its "
        "manifests, build its image, and report on acceptance runs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
