"""The rule registry and what every rule is given."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from harness.checks.manifests.overlays import Profile
from harness.provisioning.objects import Finding, Obj

# apiVersion, kind -> namespaced? (None: unknown kind, which schema validation reports)
ScopeLookup = Callable[[str, str], "bool | None"]


@dataclass(frozen=True)
class Context:
    """The rendered objects of one overlay, what the overlay promises, and how to tell a kind's scope."""

    objects: Sequence[Obj]
    profile: Profile
    is_namespaced: ScopeLookup


RuleFunction = Callable[[Context], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    name: str
    applies: Callable[[Profile], bool]
    run: RuleFunction
    doc: str


RULES: list[Rule] = []


def rule(
    name: str, *, when: Callable[[Profile], bool] = lambda _profile: True
) -> Callable[[RuleFunction], RuleFunction]:
    """Register a rule; ``when`` says for which overlay profiles it applies."""

    def register(function: RuleFunction) -> RuleFunction:
        if any(existing.name == name for existing in RULES):
            raise ValueError(f"rule {name!r} registered twice")
        RULES.append(Rule(name, when, function, (function.__doc__ or "").strip()))
        return function

    return register


def check(ctx: Context, only: Iterable[str] | None = None) -> list[Finding]:
    """Run every rule that applies to the context's profile (restricted to ``only`` when given)."""
    wanted = set(only) if only is not None else None
    if wanted is not None and (unknown := wanted - {r.name for r in RULES}):
        raise ValueError(f"unknown rules: {', '.join(sorted(unknown))}")
    findings: list[Finding] = []
    for entry in RULES:
        if entry.applies(ctx.profile) and (wanted is None or entry.name in wanted):
            findings.extend(entry.run(ctx))
    return findings
