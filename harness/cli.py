"""``harness`` (or ``python -m harness``): the harness's one command line.

Every sub-command and option is declared here, and each runs a function of the package that owns its work:

- provisioning: ``up``, ``plan``, ``down``, ``status``, ``logs``, ``preflight``, ``image``, ``samples``, ``lock``;
- checks: ``manifests``, ``monitoring``, ``ci``, ``mutate``, ``mutscore``, ``audit``;
- acceptance: ``local``, ``load``, ``rollout``, ``report``.

A :class:`~harness.errors.HarnessError` ends the command with its message on one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from harness.acceptance import rollout
from harness.acceptance.load import LocustRun
from harness.acceptance.report import cmd_report
from harness.acceptance.targets import TargetOptions, kept, target_class
from harness.acceptance.targets.local import LocalTarget
from harness.checks import audit, ci, monitoring, mutate, mutscore
from harness.checks.manifests import actions as manifest_actions
from harness.checks.manifests.crds import CRD_DIR_ENV
from harness.errors import HarnessError
from harness.provisioning import actions, env, lock, profiles
from harness.provisioning import image as image_actions
from harness.provisioning.env import WORK_DIR
from harness.provisioning.image import base
from harness.provisioning.image.build import DEFAULT_TAG
from harness.provisioning.paths import SECRETS_DIR
from harness.provisioning.plan import CLUSTER, GROUPS
from harness.provisioning.render import overlay_names
from harness.provisioning.samples import cmd_samples
from harness.provisioning.secrets import API_KEY_IDS

Sub = Any  # argparse's sub-parsers action (its class is private)


# -- provisioning -----------------------------------------------------------------------------------------


def _spec_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--profile", choices=list(profiles.PROFILES), default="full", help="the overlay to deploy")
    cmd.add_argument(
        "--cluster", default=CLUSTER, help=f"kind cluster name, without --kube-context (default {CLUSTER})"
    )
    cmd.add_argument(
        "--kube-context", default=None, help="install onto this existing cluster instead of creating a kind cluster"
    )
    cmd.add_argument(
        "--image-registry",
        default=None,
        help="with --kube-context: push the image to this registry (e.g. ghcr.io/you) and deploy it from there",
    )
    cmd.add_argument("--host-port", type=int, default=0, help="loopback port of the gateway on kind (0: a free one)")
    cmd.add_argument("--offline-base", action="store_true", help="build the image on the offline base")
    cmd.add_argument(
        "--work-dir",
        type=Path,
        default=WORK_DIR,
        help=f"generated inputs and the rendered overlay (default {WORK_DIR})",
    )


def _platform(sub: Sub) -> None:
    for name, help_text in (
        ("up", "provision the platform (idempotent: steps already done are skipped)"),
        ("plan", "print every provisioning command in order (dry run)"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        _spec_args(cmd)
        cmd.add_argument("--only", choices=GROUPS, default=None, help="run one group of steps")
        cmd.add_argument("--from-step", type=int, default=1, help="resume at this step number (see plan)")
        cmd.add_argument("--log-dir", type=Path, default=None, help="where the full log goes")
        cmd.set_defaults(func=actions.up, dry_run=name == "plan")
    down = sub.add_parser("down", help="export the cluster's logs, then delete the kind cluster")
    down.add_argument("--cluster", default=CLUSTER, help=f"the kind cluster to delete (default {CLUSTER})")
    down.add_argument("--logs", type=Path, default=None, help="where the logs go (default artifacts/platform-*)")
    down.set_defaults(func=actions.down)
    status = sub.add_parser("status", help="what is provisioned: cluster, releases, InferenceService")
    _spec_args(status)
    status.set_defaults(func=actions.status)
    logs = sub.add_parser("logs", help="export the cluster's logs, events and descriptions")
    _spec_args(logs)
    logs.add_argument("--dest", type=Path, default=None)
    logs.set_defaults(func=actions.logs)
    check = sub.add_parser("preflight", help="check Docker, kind, helm and kubectl before provisioning")
    _spec_args(check)
    check.add_argument("--install-tools", action="store_true", help="fetch missing tools at their pinned versions")
    check.set_defaults(func=actions.preflight_check)


def _image_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: ~/.cache/ocr-platform")
    parser.add_argument("--mirror", default=base.DEFAULT_MIRROR, help="Debian mirror for the offline base")
    parser.add_argument(
        "--artifacts", type=Path, default=Path("artifacts/image"), help="logs and report (default: %(default)s)"
    )


def _image_build_options(parser: argparse.ArgumentParser) -> None:
    _image_common(parser)
    parser.add_argument("--tag", default=DEFAULT_TAG, help="image tag (default: %(default)s)")
    parser.add_argument(
        "--offline-base",
        action="store_true",
        help=f"build on {base.BASE_TAG} made by debootstrap, instead of pulling the official Python image",
    )
    parser.add_argument(
        "--no-wheelhouse",
        dest="wheelhouse",
        action="store_false",
        help="let pip inside the build use the package index instead of a wheelhouse collected on the host",
    )


def _image(sub: Sub) -> None:
    image = sub.add_parser(
        "image",
        help="build and test the service image",
        description=image_actions.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = image.add_subparsers(dest="image_command", required=True)
    base_cmd = commands.add_parser("base", help=f"make the offline base image {base.BASE_TAG}")
    _image_common(base_cmd)
    base_cmd.set_defaults(func=image_actions.cmd_base)
    build_cmd = commands.add_parser("build", help="build the service image")
    _image_build_options(build_cmd)
    build_cmd.set_defaults(func=image_actions.cmd_build)
    test_cmd = commands.add_parser("test", help="the image tier: build, run hardened, predict, a job, SIGTERM")
    _image_build_options(test_cmd)
    test_cmd.add_argument("--no-build", dest="build", action="store_false", help="test the image --tag as it is")
    test_cmd.set_defaults(func=image_actions.cmd_test)
    save_cmd = commands.add_parser("save", help="write the image as an archive for `kind load image-archive`")
    save_cmd.add_argument("--tag", default=DEFAULT_TAG, help="image tag (default: %(default)s)")
    save_cmd.add_argument("--output", type=Path, default=None, help="archive path (default: artifacts/image/<tag>.tar)")
    save_cmd.set_defaults(func=image_actions.cmd_save)


def _samples(sub: Sub) -> None:
    cmd = sub.add_parser(
        "samples",
        help="write PNG images with known text (to send to the service), and expected.json",
        description="Write seeded PNG images with known text into a folder: one-line images and a document "
        "page, plus expected.json (file name -> text). Prints each file and the text the service should read.",
    )
    cmd.add_argument(
        "--out",
        type=Path,
        default=Path("artifacts") / "samples",
        help="folder to write into (default: artifacts/samples, ignored by git)",
    )
    cmd.add_argument("--seed", type=int, default=1, help="seed of the words drawn (default: 1)")
    cmd.set_defaults(func=cmd_samples)


def _lock(sub: Sub) -> None:
    cmd = sub.add_parser("lock", help="check uv.lock, or export the service's share of it (and the tools' venvs)")
    cmd.add_argument("action", choices=("check", "export"))
    cmd.add_argument("--upgrade", action="store_true", help="export: the newest versions the inputs allow")
    cmd.set_defaults(func=lock.main)


# -- checks -----------------------------------------------------------------------------------------------


def _manifests(sub: Sub) -> None:
    parser = sub.add_parser(
        "manifests", help="render and validate the Kustomize overlays", description=manifest_actions.__doc__
    )
    commands = parser.add_subparsers(dest="manifests_command", required=True)
    validate = commands.add_parser("validate", help="render every overlay and check schemas and platform rules")
    validate.add_argument(
        "--crd-dir",
        type=Path,
        default=None,
        help=f"directory of CRD YAML files (default: ${CRD_DIR_ENV}, else ../shared/crds, else the cache)",
    )
    validate.add_argument(
        "--overlay", action="append", dest="overlays", metavar="NAME", help="validate only this overlay (repeatable)"
    )
    validate.set_defaults(func=manifest_actions.run_validate)
    show = commands.add_parser("render", help="print the rendered objects of an overlay")
    show.add_argument("overlay", help=f"overlay name ({', '.join(overlay_names())}) or a kustomization directory")
    show.add_argument(
        "--with-keys", action="store_true", help="use this cluster's API keys and Redis password (manifests/secrets)"
    )
    show.set_defaults(func=manifest_actions.run_render)
    keys = commands.add_parser(
        "keys", help=f"generate per-cluster API keys and the job Redis password into {SECRETS_DIR} (git-ignored)"
    )
    replace = keys.add_mutually_exclusive_group()
    replace.add_argument("--force", action="store_true", help="replace existing secrets")
    replace.add_argument(
        "--rotate",
        metavar="KEY",
        choices=[key_id for key_id, _ in API_KEY_IDS.values()],
        help="replace one API key (primary or secondary) and its hash, keeping the other and the rest",
    )
    keys.set_defaults(func=manifest_actions.run_keys)
    fetch = commands.add_parser("fetch-crds", help="download the pinned versions' CRDs (network)")
    fetch.add_argument("--dest", type=Path, default=None, help="target directory (default: the cache)")
    fetch.set_defaults(func=manifest_actions.run_fetch_crds)


def _monitoring(sub: Sub) -> None:
    parser = sub.add_parser("monitoring", help="the alerting rules and the dashboard, checked offline")
    commands = parser.add_subparsers(dest="monitoring_command", required=True)
    write = commands.add_parser("rules", help="write the PrometheusRule's groups as a plain rule file")
    write.add_argument("dest", type=Path)
    commands.add_parser("promtool", help="promtool check rules and promtool test rules (rules.test.yaml)")
    commands.add_parser("expressions", help="every expression of the dashboard and the rules, as JSON")
    parser.set_defaults(func=monitoring.main)


def _gates(sub: Sub) -> None:
    ci_cmd = sub.add_parser("ci", help="the CI steps, as .ci/run and the GitHub workflow run them")
    ci_steps = ci_cmd.add_subparsers(dest="action", required=True)
    ci_steps.add_parser("list", help="print the steps in order")
    run = ci_steps.add_parser("run", help="run the steps (all, or those named)")
    run.add_argument("steps", nargs="*", metavar="STEP")
    run.add_argument("--skip", action="append", default=[], metavar="STEP")
    run.add_argument("--keep-going", action="store_true", help="run the steps after a failed one too")
    ci_cmd.set_defaults(func=ci.main)

    mutate_cmd = sub.add_parser("mutate", help="the mutation gate: each promise's proof fails when it is broken")
    mutations = mutate_cmd.add_subparsers(dest="action", required=True)
    mutations.add_parser("list", help="the catalogue: id, fast, catchers")
    run = mutations.add_parser("run", help="apply each mutation to a scratch copy and run its catchers")
    run.add_argument("ids", nargs="*", metavar="ID")
    run.add_argument("--fast", action="store_true", help="only the mutations marked fast")
    run.add_argument("--jobs", type=int, default=1, help="mutations run at once (default 1)")
    mutate_cmd.set_defaults(func=mutate.main)

    score = sub.add_parser("mutscore", help="mutmut over the pure modules, held to a committed floor")
    score.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants tested at once")
    score.add_argument(
        "--min-score", type=float, default=mutscore.MIN_SCORE, help=f"the floor (default {mutscore.MIN_SCORE})"
    )
    score.set_defaults(func=mutscore.main)

    audit_cmd = sub.add_parser("audit", help="known vulnerabilities of the locked set, against accepted exceptions")
    audit_cmd.set_defaults(func=lambda _args: audit.main())


# -- acceptance -------------------------------------------------------------------------------------------


def _local(sub: Sub) -> None:
    cmd = sub.add_parser(
        "local",
        help="start the local platform and leave it running, or stop the one --keep left running",
        description="The local target's processes outside a test run. `up` starts them as the features do and "
        "leaves them running (prints URLs, ports, pids); `down` stops every platform left running by `up` or "
        "by `pytest features --keep`, and removes its temporary folder (Redis' password, the API keys).",
    )
    commands = cmd.add_subparsers(dest="local_command", required=True, metavar="{up,down}")
    up = commands.add_parser("up", help="start the local platform and leave it running", description=local_up.__doc__)
    up.add_argument(
        "--artifacts",
        type=Path,
        default=Path("artifacts") / "local",
        help="folder for the processes' logs (default: artifacts/local)",
    )
    up.set_defaults(func=local_up)
    down = commands.add_parser("down", help="stop every kept local platform and remove its temporary folder")
    down.set_defaults(func=local_down)


def local_up(args: argparse.Namespace) -> int:
    """Start the local platform (service, gateway, 2 workers, Redis, Prometheus) and leave it running."""
    target = LocalTarget(TargetOptions(artifacts=args.artifacts.resolve(), keep=True))
    target.start()
    target.stop()  # kept: records the processes and prints where they are
    return 0


def local_down(args: argparse.Namespace) -> int:
    try:
        for line in kept.down():
            print(line)
    except (OSError, ValueError, TypeError) as exc:
        raise HarnessError(f"could not read a state file in {kept.state_dir()}: {exc}") from exc
    return 0


def _load(sub: Sub) -> None:
    load = sub.add_parser("load", help="locust load on the deployed service (loopback port-forward)")
    _spec_args(load)
    load.add_argument("--users", type=int, default=8)
    load.add_argument("--seconds", type=int, default=60)
    load.add_argument("--image", choices=("small", "page"), default="page")
    load.set_defaults(func=cluster_load)


def cluster_load(args: argparse.Namespace) -> int:
    options = TargetOptions(
        artifacts=env.default_log_dir(), kube_context=args.kube_context or f"kind-{args.cluster}", profile=args.profile
    )
    target = target_class("cluster")(options)
    try:
        target.start()
        run = LocustRun(
            target.service_url(), users=args.users, seconds=args.seconds, out_dir=options.artifacts / "load",
            env={"LOAD_IMAGE": args.image},
        )  # fmt: skip
        stats = run.finish()
    finally:
        target.stop()
    print(json.dumps(vars(stats), indent=2))
    return 0


def _rollout(sub: Sub) -> None:
    cmd = sub.add_parser(
        "rollout",
        help="roll the predictor to a new model version and wait until every replica runs it",
        description="Set the InferenceService's model version (its app.kubernetes.io/version label, the pod label "
        "and OCR_MODEL_VERSION) and wait, with a deadline, until the new revision is ready everywhere.",
    )
    cmd.add_argument("--version", required=True, help="the new model version (a label value)")
    cmd.add_argument("--kube-context", default=None, help="the cluster (default: the kind cluster of harness up)")
    cmd.add_argument("--namespace", default=None, help="the InferenceService's namespace (default: the platform's)")
    cmd.add_argument("--name", default=None, help="the InferenceService (default: the platform's OCR predictor)")
    cmd.add_argument("--timeout", type=float, default=rollout.DEFAULT_TIMEOUT_S, help="seconds to wait for the rollout")
    cmd.add_argument("--dry-run", action="store_true", help="print the patch and change nothing")
    cmd.set_defaults(func=rollout.cmd_rollout)


def _report(sub: Sub) -> None:
    cmd = sub.add_parser("report", help="rebuild a run's report.html from its evidence")
    cmd.add_argument("run_dir", type=Path, help="a run's evidence folder, e.g. artifacts/latest")
    cmd.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description="The OCR platform's harness: provision it (kind or a cluster you have), render and validate its "
        "manifests, build its image, run the CI gates, and report on acceptance runs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_platform, _image, _samples, _lock, _manifests, _monitoring, _gates, _local, _load, _rollout, _report):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
