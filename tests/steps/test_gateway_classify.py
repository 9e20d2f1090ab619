"""The gateway steps tell who answered: the gateway's refusals, the service's answers (marked with its
X-Request-ID), and failures, which fail every gateway scenario."""

from __future__ import annotations

import httpx
import pytest

from harness.acceptance.load import Answer, PacedResult
from steps import gateway as steps

SERVICE = {"x-request-id": "rid-1", "content-type": "application/json"}


@pytest.mark.parametrize(
    ("status", "headers", "kind"),
    [
        (200, SERVICE, steps.SERVED),
        (413, SERVICE, steps.SERVICE_4XX),
        (503, SERVICE, steps.SERVICE_5XX),
        (500, SERVICE, steps.SERVICE_5XX),
        (429, {}, steps.LIMITED),
        (403, {}, steps.NO_KEY),
        (503, {}, steps.GATEWAY_5XX),
        (504, {}, steps.GATEWAY_5XX),
        (404, {}, steps.GATEWAY_OTHER),
        (200, {}, steps.GATEWAY_OTHER),
    ],
)
def test_classify_tells_the_gateways_answers_from_the_services(status: int, headers: dict, kind: str) -> None:
    assert steps.classify(httpx.Response(status, headers=headers)) == kind


def _result(*kinds: str) -> PacedResult:
    return PacedResult([Answer(i / 10, 200, kind) for i, kind in enumerate(kinds)])


def test_no_failures_names_the_failed_answers() -> None:
    steps.no_failures({"team-a": _result(steps.SERVED, steps.LIMITED), "team-b": _result(steps.SERVED)})
    for failure in steps.FAILURES:
        with pytest.raises(AssertionError, match=failure):
            steps.no_failures({"team-a": _result(steps.SERVED, failure)})


def test_admitted_counts_only_the_services_answers_and_fails_on_a_5xx() -> None:
    assert steps._admitted(_result(steps.SERVED, steps.SERVICE_4XX, steps.LIMITED, steps.NO_KEY)) == 2
    with pytest.raises(AssertionError, match="gateway 5xx"):
        steps._admitted(_result(steps.SERVED, steps.GATEWAY_5XX))
