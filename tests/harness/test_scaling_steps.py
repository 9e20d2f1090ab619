"""What the replica steps count as "N replicas": 0 means no pod at all, and an unknown count is no count."""

from __future__ import annotations

from typing import Any

import pytest

from steps.scaling import _at


@pytest.mark.parametrize(
    ("seen", "n", "expected"),
    [
        ({"ready": 0, "desired": 0, "current": 0}, 0, True),
        ({"ready": 0}, 0, True),  # a target that reports ready processes only (local)
        ({"ready": 0, "desired": 2, "current": 2}, 0, False),  # scaled out, pods still starting
        ({"ready": 0, "desired": 0, "current": 1}, 0, False),  # scaled in, a pod still terminating
        ({"ready": -1, "desired": 0, "current": 2}, 0, False),  # a status older than the spec
        ({"ready": -1, "desired": 1, "current": 1}, 1, False),
        ({"ready": 3, "desired": 3, "current": 3}, 3, True),
        ({"ready": 2, "desired": 3, "current": 3}, 3, False),
    ],
)
def test_a_count_is_exact_and_zero_means_no_pod(seen: dict[str, Any], n: int, expected: bool) -> None:
    assert _at(seen, n) is expected
