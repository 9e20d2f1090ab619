"""The offline base image: a minimal Debian bookworm with Python 3.11, made without any registry.

``debootstrap`` (variant minbase) installs python3, python3-venv and ca-certificates into a directory;
documentation, locales and apt's caches are pruned; the tree is tarred into the cache and
``docker import``-ed as ``ocr-base:bookworm``. Debian bookworm's python3 is CPython 3.11, the ABI of the
wheels the image installs. The tarball is keyed by everything that shapes it, so a second run imports it
again (or finds the image already there) instead of bootstrapping.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import commands
from harness.errors import HarnessError, TargetUnavailable
from harness.processes import require_binary
from harness.provisioning.image.docker import docker, import_argv

DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_TAG = "ocr-base:bookworm"
KEY_LABEL = "org.ocr-platform.base.key"
# Directories whose contents the service never reads; pruning them halves the base (about 275 -> 133 MB).
# /dev is emptied because the engine mounts its own.
PRUNE = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "dev",
)


@dataclass(frozen=True)
class BasePlan:
    """What the offline base is made of; its :meth:`key` names the cached tarball and labels the image."""

    suite: str = "bookworm"
    variant: str = "minbase"
    include: tuple[str, ...] = ("python3", "python3-venv", "ca-certificates")
    mirror: str = DEFAULT_MIRROR
    tag: str = BASE_TAG

    def key(self) -> str:
        """A digest of the inputs that shape the root filesystem (not the mirror: any mirror serves the same)."""
        text = "\n".join([self.suite, self.variant, ",".join(sorted(self.include)), *PRUNE])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def tarball(self, cache_dir: Path) -> Path:
        return cache_dir / "base" / f"debian-{self.suite}-{self.variant}-{self.key()}.tar"

    def debootstrap_argv(self, rootfs: Path) -> list[str]:
        return [
            "debootstrap",
            f"--variant={self.variant}",
            f"--include={','.join(self.include)}",
            self.suite,
            str(rootfs),
            self.mirror,
        ]

    def tar_argv(self, rootfs: Path, tarball: Path) -> list[str]:
        # Numeric owners: the host's names for uids mean nothing inside the image.
        return ["tar", "--numeric-owner", "--create", "--file", str(tarball), "--directory", str(rootfs), "."]

    def import_argv(self, tarball: Path) -> list[str]:
        changes = [
            f"LABEL {KEY_LABEL}={self.key()}",
            f"LABEL org.opencontainers.image.base.name=debian:{self.suite}-{self.variant}",
            "ENV LANG=C.UTF-8",
            'CMD ["/bin/bash"]',
        ]
        return import_argv(tarball, self.tag, changes=changes)


def prune(rootfs: Path) -> None:
    """Empty the :data:`PRUNE` directories of ``rootfs``, keeping the directories themselves."""
    for rel in PRUNE:
        directory = rootfs / rel
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def mounts_under(path: Path, mounts_table: str) -> list[Path]:
    """Mount points at or below ``path`` in a /proc/self/mounts text, deepest first."""
    root = path.resolve()
    found = []
    for line in mounts_table.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        # /proc/mounts escapes space, tab, newline and backslash as octal (\040).
        point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1]))
        if point == root or root in point.parents:
            found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _remove_rootfs(rootfs: Path) -> None:
    """Remove a bootstrapped tree, unmounting what debootstrap may have left mounted inside it first."""
    for point in mounts_under(rootfs, Path("/proc/self/mounts").read_text()):
        commands.run(["umount", "--lazy", str(point)], timeout=60)
    still = mounts_under(rootfs, Path("/proc/self/mounts").read_text())
    if still:
        raise HarnessError(f"not removing {rootfs}: still mounted at {', '.join(map(str, still))}")
    shutil.rmtree(rootfs, ignore_errors=True)


def make_tarball(plan: BasePlan, cache_dir: Path, *, log: Path) -> Path:
    """The cached root filesystem tarball for ``plan``; bootstrapped (about a minute) when not cached."""
    tarball = plan.tarball(cache_dir)
    if tarball.is_file():
        return tarball
    require_binary("debootstrap")
    if os.geteuid() != 0:
        raise TargetUnavailable(
            "debootstrap needs root to make the offline base; run as root, or build on the official base "
            "(without --offline-base) where a registry is reachable"
        )
    tarball.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bootstrap-", dir=tarball.parent))
    rootfs = workdir / "rootfs"
    partial = workdir / tarball.name
    try:
        commands.run_logged(plan.debootstrap_argv(rootfs), log=log, timeout=1200)
        prune(rootfs)
        commands.run_logged(plan.tar_argv(rootfs, partial), log=log, timeout=600)
        partial.replace(tarball)
    finally:
        _remove_rootfs(workdir)
    return tarball


def image_key(tag: str) -> str | None:
    """The base key label of the local image ``tag``, or None when there is no such image."""
    try:
        return docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{KEY_LABEL}"}}}}', tag) or None
    except HarnessError:
        return None


def ensure_base(plan: BasePlan, cache_dir: Path, *, log: Path) -> str:
    """Make sure the engine has ``plan.tag`` built from ``plan``; return the tag."""
    if image_key(plan.tag) == plan.key():
        return plan.tag
    tarball = make_tarball(plan, cache_dir, log=log)
    commands.run_logged(plan.import_argv(tarball), log=log, timeout=600)
    return plan.tag
