"""How many CPUs this process may use: the container's CPU limit, not the host's core count."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _v2_limit(root: Path) -> float | None:
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def _v1_limit(root: Path) -> float | None:
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota in cores (cgroup v2 ``cpu.max``, else v1 ``cfs_quota_us``), or None when unlimited."""
    return _v2_limit(root) if (root / "cpu.max").exists() else _v1_limit(root)


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs to use: the quota rounded up, never more than the cores the scheduler gives us."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    limit = cpu_limit(root)
    if limit is None:
        return max(cores, 1)
    return max(1, min(cores, math.ceil(limit)))
