"""The mutation gate: every promise fails its proof when the thing it promises is broken.

The catalogue (``tests/mutations/catalogue.yaml``) names, for each promise, one small behaviour change (a
mutation: an exact piece of a file and what replaces it) and the tests or features that must then fail (its
catchers). ``python -m harness mutate run`` applies each mutation to a scratch copy of the repository (the
files git knows, as they are in the work tree), runs only its catchers there, and records whether they
failed: a mutation is **caught** when pytest reports failed tests (exit 1). A mutation whose text is not
found exactly once, or whose catchers cannot run (exit 2-5: an error, no tests), is **invalid**; one whose
catchers pass is a **survivor**. Either fails the gate.

A catch counts only if the catchers pass unmutated, run the same way: a feature run alone is not the feature
run after others (a Prometheus that has not scraped yet, say), and a failure that the mutation did not cause
proves nothing. So each distinct set of catchers that names a feature first runs once on an unmutated copy
(its baseline); when the baseline fails, every mutation it catches is invalid. Catchers that are unit tests
alone run unmutated in CI's test step, and get no baseline here.

``--fast`` runs the mutations marked ``fast`` (the CI step ``mutate``, two at a time: ``--jobs 2``);
``run ID...`` runs those named. The results go to ``artifacts/mutate/`` (``results.json``, and
``results.md``: the table); an acceptance run's report beside them shows the score.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.provisioning.paths import REPO_ROOT

REPO = REPO_ROOT
CATALOGUE = REPO / "tests" / "mutations" / "catalogue.yaml"
OUT = Path("artifacts/mutate")
CATCHER_TIMEOUT_S = 900
EXIT_GRACE_S = 15.0
CAUGHT, SURVIVED, INVALID = "caught", "SURVIVED", "INVALID"


@dataclass(frozen=True)
class Mutation:
    id: str
    promise: str
    file: str
    find: str
    replace: str
    catchers: tuple[str, ...]
    fast: bool = False

    def apply(self, root: Path) -> None:
        """Mutate ``root``'s copy of the file; the text must be there exactly once."""
        path = root / self.file
        text = path.read_text()
        found = text.count(self.find)
        if found != 1:
            raise ValueError(f"{self.id}: the text to mutate occurs {found} times in {self.file}, not once")
        path.write_text(text.replace(self.find, self.replace))


def load(path: Path = CATALOGUE) -> list[Mutation]:
    """The catalogue's mutations; a malformed entry or a repeated id is refused."""
    entries = yaml.safe_load(path.read_text())
    mutations: list[Mutation] = []
    for number, entry in enumerate(entries, start=1):
        missing = {"id", "promise", "file", "find", "replace", "catchers"} - set(entry)
        if missing:
            raise ValueError(f"{path}: entry {number} lacks {', '.join(sorted(missing))}")
        if entry["find"] == entry["replace"]:
            raise ValueError(f"{path}: {entry['id']} changes nothing")
        mutations.append(
            Mutation(
                id=str(entry["id"]), promise=str(entry["promise"]), file=str(entry["file"]), find=str(entry["find"]),
                replace=str(entry["replace"]), catchers=tuple(entry["catchers"]), fast=bool(entry.get("fast", False)),
            )
        )  # fmt: skip
    ids = [m.id for m in mutations]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"{path}: ids used twice: {', '.join(repeated)}")
    return mutations


@dataclass
class Result:
    id: str
    promise: str
    catchers: list[str]
    verdict: str
    seconds: float
    detail: str = ""
    failed_tests: list[str] = field(default_factory=list)


def scratch_copy(dest: Path, repo: Path = REPO) -> Path:
    """The files git knows (tracked, and untracked but not ignored), as in the work tree, under ``dest``."""
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True, timeout=60,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = repo / name
        if not source.is_file():  # deleted in the work tree
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


def catcher_argv(mutation: Mutation, report: Path, extra: Sequence[str] = ("--target", "local")) -> list[str]:
    return [
        sys.executable, "-m", "pytest", *mutation.catchers, *extra, "-x", "-q", "-p", "no:cacheprovider",
        "--junitxml", str(report), "-o", "junit_family=xunit2",
    ]  # fmt: skip


def failed_tests(report: Path) -> list[str]:
    """The tests a JUnit report says failed (or errored)."""
    import xml.etree.ElementTree as ET

    if not report.is_file():
        return []
    names = []
    for case in ET.parse(report).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            names.append(f"{case.get('classname')}::{case.get('name')}")
    return names


def needs_baseline(mutation: Mutation) -> bool:
    return any(c.split("::")[0].endswith(".feature") for c in mutation.catchers)


def baseline(
    mutation: Mutation, work: Path, repo: Path = REPO, extra: Sequence[str] = ("--target", "local")
) -> list[str]:
    """The catchers run on an unmutated copy: the tests that fail there (none, for a sound baseline)."""
    plain = Mutation(f"baseline-{abs(hash(mutation.catchers))}", "", mutation.file, "", "", mutation.catchers)
    root = scratch_copy(Path(tempfile.mkdtemp(prefix=f"{plain.id}-", dir=work)), repo)
    report, log = work / f"{plain.id}.xml", work / f"{plain.id}.log"
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    with log.open("w") as out:
        code = _run_catchers(catcher_argv(plain, report, extra), root, env, out, report)
    shutil.rmtree(root, ignore_errors=True)
    return [] if code == 0 else failed_tests(report) or [f"pytest exit {code}"]


def run_one(
    mutation: Mutation,
    work: Path,
    repo: Path = REPO,
    extra: Sequence[str] = ("--target", "local"),
    unmutated_failures: Sequence[str] = (),
) -> Result:
    """Apply ``mutation`` to a fresh scratch copy of ``repo`` and run its catchers there."""
    start = time.monotonic()
    if unmutated_failures:
        why = f"its catchers fail unmutated ({', '.join(unmutated_failures[:3])}): a catch would prove nothing"
        return Result(mutation.id, mutation.promise, list(mutation.catchers), INVALID, 0.0, why)
    root = scratch_copy(Path(tempfile.mkdtemp(prefix=f"{mutation.id}-", dir=work)), repo)
    try:
        mutation.apply(root)
    except ValueError as exc:
        return Result(mutation.id, mutation.promise, list(mutation.catchers), INVALID, 0.0, str(exc))
    report = work / f"{mutation.id}.xml"
    log = work / f"{mutation.id}.log"
    # The scratch copy's packages come first: the catchers and every process they start (python -m service,
    # python -m service.authz) run the mutated code.
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    with log.open("w") as out:
        code = _run_catchers(catcher_argv(mutation, report, extra), root, env, out, report)
    seconds = round(time.monotonic() - start, 1)
    failed = failed_tests(report)
    shutil.rmtree(root, ignore_errors=True)
    if code == 1 and failed:
        return Result(mutation.id, mutation.promise, list(mutation.catchers), CAUGHT, seconds, failed_tests=failed)
    if code == 0:
        return Result(mutation.id, mutation.promise, list(mutation.catchers), SURVIVED, seconds, "every catcher passed")
    tail = " | ".join(log.read_text().strip().splitlines()[-3:])
    why = "timed out" if code == -1 else f"pytest exit {code}"
    return Result(mutation.id, mutation.promise, list(mutation.catchers), INVALID, seconds, f"{why}: {tail}")


def _run_catchers(argv: list[str], cwd: Path, env: dict[str, str], out: Any, report: Path) -> int:
    """pytest's exit code; -1 when it ran past the deadline. A mutated program can leave a thread that keeps
    pytest's process alive after its session ended: once the JUnit report is written and the process has not
    exited within a grace period, it is stopped and the report's outcome stands (1 if anything failed)."""
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + CATCHER_TIMEOUT_S
    reported_at: float | None = None
    while True:
        try:
            return process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if reported_at is None and report.is_file():
            reported_at = now
        if now > deadline or (reported_at is not None and now - reported_at > EXIT_GRACE_S):
            process.kill()
            process.wait()
            if now > deadline:
                return -1
            print(f"[mutate] pytest outlived its report by {EXIT_GRACE_S:g} s: stopped", file=out, flush=True)
            return 1 if failed_tests(report) else 0


def table(results: Sequence[Result]) -> str:
    """The results as a Markdown table: mutation, catcher, caught, seconds."""
    lines = ["| mutation | promise broken | catchers | caught | seconds |", "|---|---|---|---|---|"]
    for r in results:
        verdict = f"yes: {r.failed_tests[0]}" if r.verdict == CAUGHT else f"**{r.verdict}**: {r.detail}"
        lines.append(f"| `{r.id}` | {r.promise} | {'<br>'.join(r.catchers)} | {verdict} | {r.seconds:g} |")
    caught = sum(r.verdict == CAUGHT for r in results)
    lines.append("")
    lines.append(f"mutation score: {caught} of {len(results)} caught")
    return "\n".join(lines) + "\n"


def write(results: Sequence[Result], out: Path = OUT) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "caught": sum(r.verdict == CAUGHT for r in results),
        "total": len(results),
        "results": [asdict(r) for r in results],
    }
    (out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "results.md").write_text(table(results))
    return record


def main(args: argparse.Namespace) -> int:
    mutations = load()
    if args.action == "list":
        for m in mutations:
            print(f"{m.id:<34} {'fast' if m.fast else 'slow'}  {' '.join(m.catchers)}")
        print(f"{len(mutations)} mutations, {sum(m.fast for m in mutations)} fast")
        return 0
    unknown = sorted(set(args.ids) - {m.id for m in mutations})
    if unknown:
        print(f"mutate: no mutation {', '.join(unknown)}", file=sys.stderr)
        return 2
    chosen = [m for m in mutations if (not args.ids or m.id in args.ids) and (m.fast or not args.fast or args.ids)]
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ocr-mutate-"))

    # Baselines first, once per set of feature catchers (see the module's docstring).
    baselines: dict[tuple[str, ...], list[str]] = {}
    for mutation in chosen:
        if needs_baseline(mutation) and mutation.catchers not in baselines:
            baselines[mutation.catchers] = baseline(mutation, work)
            state = f"fails: {baselines[mutation.catchers][:3]}" if baselines[mutation.catchers] else "passes"
            print(f"baseline {' '.join(mutation.catchers)}: {state}", flush=True)

    def one(numbered: tuple[int, Mutation]) -> Result:
        number, mutation = numbered
        result = run_one(mutation, work, unmutated_failures=baselines.get(mutation.catchers, ()))
        verdict = result.failed_tests[:1] or result.detail
        print(f"[{number}/{len(chosen)}] {mutation.id}: {result.verdict} in {result.seconds:g} s {verdict}", flush=True)
        if (work / f"{mutation.id}.log").exists():
            shutil.copy2(work / f"{mutation.id}.log", OUT / f"{mutation.id}.log")
        return result

    # Each mutation has its own scratch copy and free ports: --jobs 2 runs two at once (one a core here).
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one, enumerate(chosen, start=1)))
    record = write(results)
    shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    bad = [r.id for r in results if r.verdict != CAUGHT]
    print(f"mutate: {record['caught']} passed, {len(bad)} failed" + (f" ({', '.join(bad)})" if bad else ""))
    return 1 if bad else 0
