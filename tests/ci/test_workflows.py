"""The GitHub workflows: valid against GitHub's workflow schema, every action pinned by commit, the cluster
matrix running the milestone tox envs that exist, and evidence and teardown kept when a run fails.

Each rule is a function that returns what breaks it, so every rule is also shown failing on a broken
copy of a workflow: a check that cannot fail proves nothing.
"""

from __future__ import annotations

import configparser
import itertools
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.yml")) + sorted(WORKFLOWS_DIR.glob("*.yaml"))
CLUSTER = WORKFLOWS_DIR / "cluster.yml"
TOX_INI = ROOT / "tox.ini"
MILESTONES = (1, 2, 3)

COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*['\"]?(?P<ref>[^\s'\"#]+)['\"]?\s*(?:#\s*(?P<comment>.*))?$")
MATRIX_EXPR = re.compile(r"\$\{\{\s*matrix\.(\w+)\s*\}\}")
SHELL_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")
# The fallback of `cond && format(...) || '[1, 2, 3]'`: what the matrix is on a push.
PUSH_FALLBACK = re.compile(r"\|\|\s*'(\[[^']*\])'\s*\)\s*\}\}\s*$")


# -- reading workflows and tox.ini ---------------------------------------------------------------------


def load(text: str) -> dict[str, Any]:
    workflow = yaml.safe_load(text)
    assert isinstance(workflow, dict), "a workflow is a mapping"
    # YAML 1.1 reads the key `on` as the boolean true.
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


def uses_refs(workflow: dict[str, Any]) -> list[str]:
    """Every `uses:` of the workflow: reusable workflows called by a job and actions called by a step."""
    refs = []
    for job in workflow.get("jobs", {}).values():
        if "uses" in job:
            refs.append(job["uses"])
        refs.extend(step["uses"] for step in steps(job) if "uses" in step)
    return refs


def expand_braces(name: str) -> list[str]:
    """tox's factor expansion: ``milestone{1,2,3}`` is three envs."""
    parts = re.split(r"\{([^{}]*)\}", name)
    choices = [[part] if i % 2 == 0 else [c.strip() for c in part.split(",")] for i, part in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*choices)]


def tox_envs(ini_text: str) -> set[str]:
    """The env names tox.ini defines: its env_list and every ``[testenv:...]`` section, braces expanded."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(ini_text)
    names: set[str] = set()
    if parser.has_option("tox", "env_list"):
        for item in re.split(r"[,\s]+", parser.get("tox", "env_list")):
            if item:
                names.update(expand_braces(item))
    for section in parser.sections():
        if section.startswith("testenv:"):
            names.update(expand_braces(section.removeprefix("testenv:")))
    return names


def resolve(text: str, env: dict[str, str], matrix: dict[str, Any]) -> str:
    """``text`` as one matrix job's shell sees it: ``${{ matrix.x }}`` and then ``$VAR``/``${VAR}`` of the env."""

    def matrix_value(match: re.Match[str]) -> str:
        return str(matrix[match.group(1)])

    values = {name: MATRIX_EXPR.sub(matrix_value, str(value)) for name, value in env.items()}
    text = MATRIX_EXPR.sub(matrix_value, text)
    return SHELL_VAR.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def commands(script: str) -> list[list[str]]:
    return [argv for line in script.splitlines() if (argv := shlex.split(line, comments=True))]


def option_values(argv: list[str], *names: str) -> list[str]:
    """The values given to an option, as ``-e X``, ``-eX`` or ``--env=X``."""
    found = []
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                found.append(argv[i + 1])
            elif arg.startswith(name) and len(name) == 2 and len(arg) > 2:
                found.append(arg[2:])
            elif arg.startswith(name + "="):
                found.append(arg.split("=", 1)[1])
    return found


def tox_calls(argv: list[str]) -> list[str]:
    """The envs a ``tox`` (or ``python -m tox``) command line runs; [] for any other command."""
    if "tox" not in argv[:3]:
        return []
    before_posargs = argv[: argv.index("--")] if "--" in argv else argv
    return [env for value in option_values(before_posargs, "-e", "--env") for env in value.split(",")]


def is_teardown(step: dict[str, Any]) -> bool:
    return any(argv[:4] == ["python", "-m", "harness", "down"] for argv in commands(step.get("run", "")))


def is_upload(step: dict[str, Any]) -> bool:
    return str(step.get("uses", "")).startswith("actions/upload-artifact@")


def milestone_jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: job
        for name, job in workflow.get("jobs", {}).items()
        if "milestone" in ((job.get("strategy") or {}).get("matrix") or {})
    }


def push_matrix(job: dict[str, Any]) -> list[Any]:
    """The milestones a push runs: the matrix list, or the fallback of the expression that picks it."""
    value = job["strategy"]["matrix"]["milestone"]
    if isinstance(value, list):
        return value
    found = PUSH_FALLBACK.search(str(value))
    assert found, f"cannot tell which milestones a push runs from {value!r}"
    milestones = json.loads(found.group(1))
    assert isinstance(milestones, list)
    return milestones


# -- the rules -----------------------------------------------------------------------------------------


def schema_problems(path: Path) -> list[str]:
    """check-jsonschema against the GitHub workflow schema it vendors (offline)."""
    completed = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return [] if completed.returncode == 0 else [f"{path.name}: {completed.stdout}{completed.stderr}".strip()]


def unpinned(workflow: dict[str, Any]) -> list[str]:
    """Every `uses:` not pinned to a full commit SHA; local actions (``./``) and docker digests excepted."""
    problems = []
    for ref in uses_refs(workflow):
        if ref.startswith("./"):
            continue
        if ref.startswith("docker://"):
            if "@sha256:" not in ref:
                problems.append(f"{ref}: a docker action is not pinned by its sha256 digest")
            continue
        _, _, version = ref.partition("@")
        if not COMMIT_SHA.fullmatch(version):
            problems.append(f"{ref}: not pinned to a 40-hex commit SHA")
    return problems


def unlabelled_pins(text: str) -> list[str]:
    """Every SHA-pinned `uses:` line without the release it stands for in a trailing comment."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        match = USES_LINE.match(line)
        if not match or not COMMIT_SHA.fullmatch(match["ref"].partition("@")[2]):
            continue
        if not re.match(r"v\d+(\.\d+)*\b", (match["comment"] or "").strip()):
            problems.append(f"line {number}: {match['ref']} has no `# vX.Y.Z` comment naming its release")
    return problems


def matrix_problems(workflow: dict[str, Any], envs: set[str]) -> list[str]:
    """Milestones 1-3 in the matrix, each job running its own milestone's tox env (which tox.ini defines)
    and preflighting the same profile."""
    jobs = milestone_jobs(workflow)
    if not jobs:
        return ["no job has a `milestone` matrix"]
    problems = []
    dispatch = (workflow.get("on") or {}).get("workflow_dispatch") or {}
    options = ((dispatch.get("inputs") or {}).get("milestone") or {}).get("options")
    if dispatch and options is not None:
        missing = {"all", *map(str, MILESTONES)} - set(map(str, options))
        if missing:
            problems.append(f"workflow_dispatch cannot choose {sorted(missing)}")
    for name, job in jobs.items():
        strategy = job["strategy"]
        if strategy.get("fail-fast", True):
            problems.append(f"{name}: fail-fast stops the other milestones when one fails")
        milestones = push_matrix(job)
        missing_milestones = sorted(set(MILESTONES) - set(milestones))
        if missing_milestones:
            problems.append(f"{name}: a push does not run milestone(s) {missing_milestones}")
        for milestone in milestones:
            want = f"milestone{milestone}"
            called: list[str] = []
            for step in steps(job):
                env = {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})}
                for argv in commands(resolve(step.get("run", ""), env, {"milestone": milestone})):
                    called.extend(tox_calls(argv))
                    profiles = option_values(argv, "--profile") if argv[:3] == ["python", "-m", "harness"] else []
                    if profiles and profiles != [want]:
                        problems.append(f"{name}[{milestone}]: `{shlex.join(argv)}` is not profile {want}")
            if not called:
                problems.append(f"{name}[{milestone}]: runs no `tox -e` command")
            for env_name in called:
                if env_name not in envs:
                    problems.append(f"{name}[{milestone}]: tox env {env_name!r} is not in tox.ini")
                elif env_name != want:
                    problems.append(f"{name}[{milestone}]: runs tox env {env_name!r}, not {want!r}")
    return problems


def always_problems(workflow: dict[str, Any], *, teardown: bool) -> list[str]:
    """Evidence upload (and, for a cluster workflow, teardown) under ``if: always()``, so a failed or
    cancelled run keeps its evidence and deletes its cluster; teardown first, since it exports the logs."""
    problems = []
    jobs = milestone_jobs(workflow) if teardown else workflow.get("jobs", {})
    for name, job in jobs.items():
        uploads = [i for i, step in enumerate(steps(job)) if is_upload(step)]
        teardowns = [i for i, step in enumerate(steps(job)) if is_teardown(step)]
        if teardown and not uploads:
            problems.append(f"{name}: uploads no evidence")
        if teardown and not teardowns:
            problems.append(f"{name}: never runs `python -m harness down`")
        for i in uploads + teardowns:
            step = steps(job)[i]
            if "always()" not in str(step.get("if", "")):
                problems.append(f"{name}: step {step.get('name') or step.get('uses')!r} is not under `if: always()`")
        if uploads and teardowns and max(teardowns) > min(uploads):
            problems.append(f"{name}: the evidence is uploaded before teardown exports the cluster's logs")
    return problems


def artifacts_problems(workflow: dict[str, Any]) -> list[str]:
    """The evidence folder given to the features (``--artifacts DIR``) is one the upload takes."""
    problems = []
    for name, job in milestone_jobs(workflow).items():
        uploaded = {
            line.strip().rstrip("/")
            for step in steps(job)
            if is_upload(step)
            for line in str((step.get("with") or {}).get("path", "")).splitlines()
        }
        for step in steps(job):
            for argv in commands(step.get("run", "")):
                if tox_calls(argv) and "--" in argv:
                    for folder in option_values(argv[argv.index("--") :], "--artifacts"):
                        if folder.rstrip("/") not in uploaded:
                            problems.append(f"{name}: evidence goes to {folder!r}, the upload takes {sorted(uploaded)}")
    return problems


# -- the workflows as committed ------------------------------------------------------------------------


def test_the_workflows_are_there() -> None:
    assert {path.name for path in WORKFLOWS} >= {"ci.yml", "cluster.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_validates_against_the_github_schema(path: Path) -> None:
    assert schema_problems(path) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_sha(path: Path) -> None:
    text = path.read_text()
    assert uses_refs(load(text)), "a workflow with no action would make this test vacuous"
    assert unpinned(load(text)) == []
    assert unlabelled_pins(text) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_only_reads_the_repository(path: Path) -> None:
    assert load(path.read_text()).get("permissions") == {"contents": "read"}


def test_tox_ini_defines_the_milestone_envs() -> None:
    assert tox_envs(TOX_INI.read_text()) >= {"py", "lint", "manifests", "milestone1", "milestone2", "milestone3"}


def test_cluster_matrix_runs_each_milestone_tox_env() -> None:
    assert matrix_problems(load(CLUSTER.read_text()), tox_envs(TOX_INI.read_text())) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_evidence_upload_runs_always(path: Path) -> None:
    assert always_problems(load(path.read_text()), teardown=path == CLUSTER) == []


def test_cluster_evidence_folder_is_uploaded() -> None:
    assert artifacts_problems(load(CLUSTER.read_text())) == []


def test_cluster_runs_do_not_overlap_on_a_ref() -> None:
    concurrency = load(CLUSTER.read_text()).get("concurrency") or {}
    assert "github.ref" in str(concurrency.get("group", ""))


def test_cluster_jobs_have_timeouts() -> None:
    for job in load(CLUSTER.read_text())["jobs"].values():
        assert "timeout-minutes" in job


# -- broken copies: each rule fails where it should ---------------------------------------------------


def broken(old: str, new: str, *, count: int = 1) -> str:
    """The cluster workflow with ``old`` replaced; the test fails if ``old`` is not there to break."""
    text = CLUSTER.read_text()
    assert text.count(old) == count, f"{old!r} is not in {CLUSTER.name} {count} time(s)"
    return text.replace(old, new)


def test_schema_check_fails_on_an_invalid_workflow(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yml"
    path.write_text(broken("runs-on: ubuntu-24.04", "runs_on: ubuntu-24.04"))
    problems = schema_problems(path)
    assert problems and "runs_on" in problems[0]


def test_schema_check_fails_on_a_step_with_run_and_uses(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yml"
    path.write_text(
        broken("      - name: python environment\n", "      - name: python environment\n        uses: x/y@v1\n")
    )
    assert schema_problems(path)


@pytest.mark.parametrize(
    ("old", "new", "reported"),
    [
        ("actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1", "actions/checkout@v4", "actions/checkout@v4"),
        ("actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1", "actions/checkout@3d3c42e", "@3d3c42e"),
        ("actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1", "actions/checkout@main", "@main"),
    ],
    ids=["tag", "short-sha", "branch"],
)
def test_pin_check_reports_an_unpinned_action(old: str, new: str, reported: str) -> None:
    problems = unpinned(load(broken(old, new)))
    assert len(problems) == 1
    assert reported in problems[0]


def test_pin_check_reports_a_reusable_workflow_by_tag() -> None:
    workflow = load(CLUSTER.read_text())
    workflow["jobs"]["reuse"] = {"uses": "octo/repo/.github/workflows/x.yml@v1"}
    assert unpinned(workflow) == ["octo/repo/.github/workflows/x.yml@v1: not pinned to a 40-hex commit SHA"]


def test_pin_check_accepts_local_actions() -> None:
    workflow = load(CLUSTER.read_text())
    workflow["jobs"]["features"]["steps"].append({"uses": "./.github/actions/local"})
    assert unpinned(workflow) == []


def test_pin_check_reports_a_sha_without_its_release() -> None:
    problems = unlabelled_pins(broken("# v7.0.1", "# the latest"))
    assert len(problems) == 1
    assert "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 has no `# vX.Y.Z` comment" in problems[0]


def test_matrix_check_reports_a_missing_milestone() -> None:
    problems = matrix_problems(load(broken("'[1, 2, 3]'", "'[1, 2]'")), tox_envs(TOX_INI.read_text()))
    assert problems == ["features: a push does not run milestone(s) [3]"]


def test_matrix_check_reads_a_literal_matrix() -> None:
    workflow = load(CLUSTER.read_text())
    workflow["jobs"]["features"]["strategy"]["matrix"]["milestone"] = [1, 3]
    assert matrix_problems(workflow, tox_envs(TOX_INI.read_text())) == [
        "features: a push does not run milestone(s) [2]"
    ]


def test_matrix_check_reports_a_tox_env_not_in_tox_ini() -> None:
    problems = matrix_problems(
        load(broken('tox -e "$MILESTONE"', 'tox -e "${MILESTONE}x"')), tox_envs(TOX_INI.read_text())
    )
    assert problems == [f"features[{m}]: tox env 'milestone{m}x' is not in tox.ini" for m in MILESTONES]


def test_matrix_check_reports_a_milestone_tox_ini_lacks() -> None:
    envs = tox_envs(TOX_INI.read_text().replace("testenv:milestone{1,2,3}", "testenv:milestone{1,2}"))
    problems = matrix_problems(load(CLUSTER.read_text()), envs)
    assert problems == ["features[3]: tox env 'milestone3' is not in tox.ini"]


def test_matrix_check_reports_the_wrong_milestone_env_and_profile() -> None:
    problems = matrix_problems(
        load(broken("MILESTONE: milestone${{ matrix.milestone }}", "MILESTONE: milestone1")), {"milestone1"}
    )
    assert "features[2]: runs tox env 'milestone1', not 'milestone2'" in problems
    assert any(p.startswith("features[3]: `python -m harness preflight --profile milestone1") for p in problems)


def test_matrix_check_reports_fail_fast() -> None:
    problems = matrix_problems(load(broken("fail-fast: false", "fail-fast: true")), tox_envs(TOX_INI.read_text()))
    assert problems == ["features: fail-fast stops the other milestones when one fails"]


def test_matrix_check_reports_a_dispatch_that_cannot_choose_a_milestone() -> None:
    problems = matrix_problems(
        load(broken('options: [all, "1", "2", "3"]', 'options: [all, "1", "2"]')), tox_envs(TOX_INI.read_text())
    )
    assert problems == ["workflow_dispatch cannot choose ['3']"]


def test_always_check_reports_an_upload_skipped_on_failure() -> None:
    problems = always_problems(
        load(broken("- name: evidence\n        if: always()\n", "- name: evidence\n")), teardown=True
    )
    assert problems == ["features: step 'evidence' is not under `if: always()`"]


def test_always_check_reports_a_teardown_only_on_failure() -> None:
    problems = always_problems(
        load(broken("if: always()\n        timeout-minutes: 10", "if: failure()\n        timeout-minutes: 10")),
        teardown=True,
    )
    assert problems == ["features: step 'teardown' is not under `if: always()`"]


def test_always_check_reports_a_missing_teardown() -> None:
    problems = always_problems(load(broken("run: python -m harness down", "run: echo done")), teardown=True)
    assert problems == ["features: never runs `python -m harness down`"]


def test_always_check_reports_an_upload_before_teardown() -> None:
    workflow = load(CLUSTER.read_text())
    job_steps = workflow["jobs"]["features"]["steps"]
    job_steps.append(job_steps.pop(next(i for i, s in enumerate(job_steps) if is_teardown(s))))
    assert always_problems(workflow, teardown=True) == [
        "features: the evidence is uploaded before teardown exports the cluster's logs"
    ]


def test_artifacts_check_reports_evidence_outside_the_upload() -> None:
    problems = artifacts_problems(load(broken("-- --artifacts artifacts", "-- --artifacts evidence")))
    assert len(problems) == 1
    assert "evidence goes to 'evidence'" in problems[0]
