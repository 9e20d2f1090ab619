from pathlib import Path

import pytest

from service.cgroup import available_cpus, cpu_limit


def test_v2_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_limit(tmp_path) == 1.5


def test_v2_unlimited(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_limit(tmp_path) is None


def test_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cpu_limit(tmp_path) == 0.5


def test_v1_unlimited(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cpu_limit(tmp_path) is None


@pytest.mark.parametrize(("quota", "expected"), [("50000 100000", 1), ("100000 100000", 1), ("120000 100000", 2)])
def test_available_cpus_rounds_quota_up_within_cores(tmp_path: Path, quota: str, expected: int) -> None:
    (tmp_path / "cpu.max").write_text(quota)
    import os

    assert available_cpus(tmp_path) == min(expected, len(os.sched_getaffinity(0)))


def test_no_cgroup_means_all_cores(tmp_path: Path) -> None:
    import os

    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))
