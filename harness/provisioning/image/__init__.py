"""``harness image``: build the service image, make its offline base, and run the image tier.

- ``harness image base``: only the offline base, ``ocr-base:bookworm``, from debootstrap (see ``base``).
- ``harness image build [--offline-base] [--tag ocr:dev]``: the image, from a wheelhouse collected on the
  host (``wheelhouse``), so that the build itself needs neither registry nor index with ``--offline-base``.
- ``harness image test [--offline-base] [--tag ocr:dev] [--no-build]``: build, then the checks of ``tier``.
- ``harness image save [--tag ocr:dev] [--output PATH]``: an archive of the image (``docker save``) for
  ``kind load image-archive``, which works where ``kind load docker-image`` does not (Docker 29's containerd
  image store; see ``docker``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.provisioning.image import base
from harness.provisioning.image.build import REPO, build_image, default_cache_dir, load_pyproject
from harness.provisioning.image.docker import engine_version, save_image
from harness.provisioning.image.tier import ImageTier, TierReport, write_report


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_base(args: argparse.Namespace) -> int:
    engine_version()
    cache = args.cache_dir or default_cache_dir()
    tag = base.ensure_base(base.BasePlan(mirror=args.mirror), cache, log=args.artifacts / "base.log")
    _say(f"{tag}: ready (cache {cache / 'base'})")
    return 0


def _build(args: argparse.Namespace) -> Any:
    result = build_image(
        tag=args.tag,
        offline_base=args.offline_base,
        use_wheelhouse=args.wheelhouse,
        cache_dir=args.cache_dir,
        log_dir=args.artifacts,
        mirror=args.mirror,
        say=_say,
    )
    _print_build(result)
    return result


def cmd_build(args: argparse.Namespace) -> int:
    _say(f"docker engine {engine_version()}")
    _build(args)
    return 0


def _print_build(result: Any) -> None:
    steps = ", ".join(f"{step} {s:.1f}s" for step, s in result.seconds.items())
    _say(f"image {result.tag}: {result.size_bytes / 1e6:.1f} MB on {result.base_image}")
    _say(f"build time: {result.total_seconds:.1f}s ({steps})")


def cmd_test(args: argparse.Namespace) -> int:

    _say(f"docker engine {engine_version()}")
    report = TierReport(image=args.tag)
    if args.build:
        report.build = _build(args)
    version = str(load_pyproject(REPO)["project"].get("version", "0.0.0"))
    tier = ImageTier(args.tag, args.artifacts, version=version, wheelhouse=args.wheelhouse, say=_say)
    tier.run(report)
    _say(f"report: {write_report(report, args.artifacts)}")
    _say(report.closing_line())
    return 0 if report.failed == 0 and report.checks else 1


def archive_path(tag: str) -> Path:
    """Where ``harness image save`` writes ``tag`` by default: ``artifacts/image/<tag, / and : as _>.tar``."""
    return Path("artifacts/image") / (tag.replace("/", "_").replace(":", "_") + ".tar")


def cmd_save(args: argparse.Namespace) -> int:
    engine_version()
    path = save_image(args.tag, args.output or archive_path(args.tag))
    _say(f"{args.tag}: {path} ({path.stat().st_size / 1e6:.1f} MB); load it with `kind load image-archive {path}`")
    return 0
