"""``harness manifests``: render the overlays and validate them (schemas and the platform's promises).

    harness manifests validate [--crd-dir DIR] [--overlay NAME ...]
    harness manifests render OVERLAY [--with-keys]
    harness manifests keys [--force | --rotate primary|secondary]
    harness manifests fetch-crds [--dest DIR]

``python -m harness.manifests ...`` is the same command. ``validate`` prints one line per overlay (objects,
errors), then each error indented, and exits 1 when any overlay has an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError
from harness.manifests.crds import CRD_DIR_ENV, default_crd_dir, download_crds
from harness.manifests.paths import SECRETS_DIR
from harness.manifests.render import overlay_names, render
from harness.manifests.schemas import SchemaCatalog
from harness.manifests.secrets import (
    API_KEY_IDS,
    HASHES_FILE,
    KEYS_FILE,
    generate_api_keys,
    generate_secrets,
    render_with_keys,
)
from harness.manifests.validate import validate_overlays


def register(subparsers: Any) -> None:
    """Add the ``manifests`` command to the harness command line."""
    parser = subparsers.add_parser(
        "manifests", help="render and validate the Kustomize overlays", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="manifests_command", required=True)

    validate = sub.add_parser("validate", help="render every overlay and check schemas and platform rules")
    validate.add_argument(
        "--crd-dir",
        type=Path,
        default=None,
        help=f"directory of CRD YAML files (default: ${CRD_DIR_ENV}, else ../shared/crds, else the cache)",
    )
    validate.add_argument(
        "--overlay", action="append", dest="overlays", metavar="NAME", help="validate only this overlay (repeatable)"
    )
    validate.set_defaults(func=run_validate)

    show = sub.add_parser("render", help="print the rendered objects of an overlay")
    show.add_argument("overlay", help=f"overlay name ({', '.join(overlay_names())}) or a kustomization directory")
    show.add_argument(
        "--with-keys", action="store_true", help="use this cluster's API keys and Redis password (manifests/secrets)"
    )
    show.set_defaults(func=run_render)

    keys = sub.add_parser(
        "keys", help=f"generate per-cluster API keys and the job Redis password into {SECRETS_DIR} (git-ignored)"
    )
    replace = keys.add_mutually_exclusive_group()
    replace.add_argument("--force", action="store_true", help="replace existing secrets")
    replace.add_argument(
        "--rotate",
        metavar="KEY",
        choices=[key_id for key_id, _ in API_KEY_IDS.values()],
        help="replace one API key (primary or secondary) and its hash, keeping the other and the rest",
    )
    keys.set_defaults(func=run_keys)

    fetch = sub.add_parser("fetch-crds", help="download the pinned versions' CRDs (network)")
    fetch.add_argument("--dest", type=Path, default=None, help="target directory (default: the cache)")
    fetch.set_defaults(func=run_fetch_crds)


def run_validate(args: argparse.Namespace) -> int:
    catalog = SchemaCatalog(args.crd_dir or default_crd_dir())
    reports = validate_overlays(catalog, args.overlays)
    for report in reports:
        print(report.summary())
        for found in report.findings:
            print(f"  {found}")
    return 0 if all(report.ok for report in reports) else 1


def run_render(args: argparse.Namespace) -> int:
    target: str | Path = Path(args.overlay) if Path(args.overlay).is_dir() else args.overlay
    objects = render_with_keys(args.overlay) if args.with_keys else render(target)
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0


def run_keys(args: argparse.Namespace) -> int:
    if args.rotate:
        generate_api_keys(SECRETS_DIR, rotate=args.rotate)
        hashes = SECRETS_DIR / HASHES_FILE
        print(f"API key {args.rotate} replaced in {SECRETS_DIR / KEYS_FILE}; its hash in {hashes}")
        print(f"put it in force: kubectl apply -f {hashes} (the authorizer reloads it, no restart)")
        return 0
    for path in generate_secrets(force=args.force):
        print(f"secrets in {path}")
    return 0


def run_fetch_crds(args: argparse.Namespace) -> int:
    for path in download_crds(args.dest):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.manifests``."""
    parser = argparse.ArgumentParser(prog="python -m harness.manifests", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except HarnessError as exc:
        print(f"harness manifests: {exc}", file=sys.stderr)
        return 2
