"""The mutation gate: its catalogue is current, and a mutation is caught only when its catchers fail."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.checks import mutate

ROOT = Path(__file__).resolve().parents[2]


def test_the_catalogue_is_current_and_covers_every_part() -> None:
    mutations = mutate.load()
    assert len(mutations) >= 25
    assert any(m.fast for m in mutations)
    for m in mutations:
        text = (ROOT / m.file).read_text()
        assert text.count(m.find) == 1, f"{m.id}: its text occurs {text.count(m.find)} times in {m.file}"
        for catcher in m.catchers:
            assert (ROOT / catcher.split("::")[0]).is_file(), f"{m.id}: no catcher file {catcher}"
    parts = {m.file.split("/")[0] for m in mutations}
    assert {"service", "harness", "manifests", "steps"} <= parts, parts


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "calc.py").write_text("def double(x):\n    return 2 * x\n")
    (repo / "test_calc.py").write_text(
        "from pkg.calc import double\n\n\ndef test_double():\n    assert double(3) == 6\n"
    )
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def _mutation(find: str, replace: str, catchers: tuple[str, ...] = ("test_calc.py",)) -> mutate.Mutation:
    return mutate.Mutation("m", "double doubles", "pkg/calc.py", find, replace, catchers)


@pytest.mark.parametrize(
    ("find", "replace", "verdict"),
    [
        ("return 2 * x", "return 3 * x", mutate.CAUGHT),
        ("return 2 * x", "return 2 * x  # same", mutate.SURVIVED),
        ("return 4 * x", "return 3 * x", mutate.INVALID),
    ],
    ids=["caught", "survived", "text-not-found"],
)
def test_a_mutation_is_caught_only_when_its_catchers_fail(
    tmp_path: Path, find: str, replace: str, verdict: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = mutate.run_one(_mutation(find, replace), work, _repo(tmp_path), extra=())
    assert result.verdict == verdict, result
    if verdict == mutate.CAUGHT:
        assert result.failed_tests == ["test_calc::test_double"]
    # The work tree itself is never mutated.
    assert "return 2 * x" in (tmp_path / "repo" / "pkg" / "calc.py").read_text()


def test_catchers_that_cannot_run_make_the_mutation_invalid(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = mutate.run_one(_mutation("return 2 * x", "return 3 * x", ("no_such_test.py",)), work, _repo(tmp_path), ())
    assert result.verdict == mutate.INVALID and "pytest exit 4" in result.detail


def test_the_table_shows_each_verdict_and_the_score() -> None:
    results = [
        mutate.Result("a", "p", ["t.py"], mutate.CAUGHT, 1.5, failed_tests=["t::x"]),
        mutate.Result("b", "q", ["u.py"], mutate.SURVIVED, 2.0, "every catcher passed"),
    ]
    text = mutate.table(results)
    assert "| `a` | p | t.py | yes: t::x | 1.5 |" in text
    assert "**SURVIVED**: every catcher passed" in text
    assert text.strip().endswith("mutation score: 1 of 2 caught")


def test_a_catch_counts_only_when_the_catchers_pass_unmutated(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    mutation = _mutation("return 2 * x", "return 3 * x")
    assert mutate.baseline(mutation, work, repo, extra=()) == []
    # Catchers that fail whatever the code does: the mutation's "catch" is refused.
    (repo / "test_calc.py").write_text("def test_always_fails():\n    assert False\n")
    failing = mutate.baseline(mutation, work, repo, extra=())
    assert failing == ["test_calc::test_always_fails"]
    result = mutate.run_one(mutation, work, repo, extra=(), unmutated_failures=failing)
    assert result.verdict == mutate.INVALID and "fail unmutated" in result.detail
    assert mutate.needs_baseline(mutate.Mutation("f", "p", "a.py", "x", "y", ("features/x.feature",)))
    assert not mutate.needs_baseline(mutation)
