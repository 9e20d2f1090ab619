"""``harness manifests``: render the overlays and validate them (schemas and the platform's promises).

    harness manifests validate [--crd-dir DIR] [--overlay NAME ...]
    harness manifests render OVERLAY [--with-keys]
    harness manifests keys [--force | --rotate primary|secondary]
    harness manifests fetch-crds [--dest DIR]

``validate`` prints one line per overlay (objects,
errors), then each error indented, and exits 1 when any overlay has an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from harness.checks.manifests.crds import default_crd_dir, download_crds
from harness.checks.manifests.schemas import SchemaCatalog
from harness.checks.manifests.validate import validate_overlays
from harness.provisioning.paths import SECRETS_DIR
from harness.provisioning.render import render
from harness.provisioning.secrets import (
    HASHES_FILE,
    KEYS_FILE,
    generate_api_keys,
    generate_secrets,
    render_with_keys,
)


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
