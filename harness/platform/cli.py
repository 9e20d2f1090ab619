"""``harness up|down|status|plan|logs|preflight|load``: the platform on kind, or on a cluster you have."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness import commands
from harness.errors import HarnessError
from harness.load import LocustRun
from harness.platform import env, preflight, profiles, tools
from harness.platform.env import WORK_DIR
from harness.platform.identity import gateway_host
from harness.platform.plan import CLUSTER, GROUPS, IMAGE, Spec
from harness.platform.run import run_plan
from harness.ports import free_port
from harness.targets import TargetOptions, target_class


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


def register(subparsers: Any) -> None:
    for name, help_text in (
        ("up", "provision the platform (idempotent: steps already done are skipped)"),
        ("plan", "print every provisioning command in order (dry run)"),
    ):
        cmd = subparsers.add_parser(name, help=help_text)
        _spec_args(cmd)
        cmd.add_argument("--only", choices=GROUPS, default=None, help="run one group of steps")
        cmd.add_argument("--from-step", type=int, default=1, help="resume at this step number (see plan)")
        cmd.add_argument("--log-dir", type=Path, default=None, help="where the full log goes")
        cmd.set_defaults(func=_up, dry_run=name == "plan")
    down = subparsers.add_parser("down", help="export the cluster's logs, then delete the kind cluster")
    down.add_argument("--cluster", default=CLUSTER, help=f"the kind cluster to delete (default {CLUSTER})")
    down.add_argument("--logs", type=Path, default=None, help="where the logs go (default artifacts/platform-*)")
    down.set_defaults(func=_down)
    status = subparsers.add_parser("status", help="what is provisioned: cluster, releases, InferenceService")
    _spec_args(status)
    status.set_defaults(func=_status)
    logs = subparsers.add_parser("logs", help="export the cluster's logs, events and descriptions")
    _spec_args(logs)
    logs.add_argument("--dest", type=Path, default=None)
    logs.set_defaults(func=_logs)
    check = subparsers.add_parser("preflight", help="check Docker, kind, helm and kubectl before provisioning")
    _spec_args(check)
    check.add_argument("--install-tools", action="store_true", help="fetch missing tools at their pinned versions")
    check.set_defaults(func=_preflight)
    load = subparsers.add_parser("load", help="locust load on the deployed service (loopback port-forward)")
    _spec_args(load)
    load.add_argument("--users", type=int, default=8)
    load.add_argument("--seconds", type=int, default=60)
    load.add_argument("--image", choices=("small", "page"), default="page")
    load.set_defaults(func=_load)


def spec_from(args: argparse.Namespace) -> Spec:
    profile = profiles.profile(args.profile)
    work = args.work_dir / (args.kube_context or args.cluster)
    if args.kube_context is None:
        port = args.host_port or env.gateway_host_port(args.cluster) or free_port()
        return Spec(profile, work, cluster=args.cluster, host_port=port, offline_base=args.offline_base)
    registry = getattr(args, "image_registry", None)
    if registry:
        image, loader = f"{registry.rstrip('/')}/ocr:dev", "registry"
    elif args.kube_context.startswith("kind-"):
        image, loader = IMAGE, "kind"
    elif _is_minikube(args.kube_context):
        image, loader = IMAGE, "minikube"
    else:
        image, loader = IMAGE, "none"
    return Spec(
        profile, work, cluster=args.kube_context.removeprefix("kind-"), kube_context=args.kube_context,
        image=image, image_loader=loader, offline_base=args.offline_base,
    )  # fmt: skip


def _is_minikube(context: str) -> bool:
    """minikube marks the contexts it writes with an extension whose provider is minikube.sigs.k8s.io."""

    try:
        out = commands.run([tools.resolve("kubectl"), "config", "view", "-o", "json"], timeout=30)
    except HarnessError:
        return False
    return context_provider(json.loads(out), context) == "minikube.sigs.k8s.io"


def context_provider(kubeconfig: dict[str, Any], context: str) -> str | None:
    """The provider a kubeconfig context's extensions name (minikube writes one), or None."""
    for entry in kubeconfig.get("contexts") or []:
        if entry.get("name") != context:
            continue
        for extension in (entry.get("context") or {}).get("extensions") or []:
            provider = (extension.get("extension") or {}).get("provider")
            if provider:
                return str(provider)
    return None


def _up(args: argparse.Namespace) -> int:
    spec = spec_from(args)
    if args.dry_run:
        run_plan(env.plan(spec, only=args.only), log_dir=args.work_dir, dry_run=True)
        return 0
    if spec.image_loader == "none" and args.only != "platform":
        print(
            f"harness: context {spec.context} is neither kind nor minikube: the image is not loaded; pass "
            "--image-registry REGISTRY to push it, or load "
            f"{spec.image} onto the nodes yourself"
        )
    env.provision(spec, log_dir=args.log_dir or env.default_log_dir(), only=args.only, from_step=args.from_step)
    if "istio" in spec.profile.addons and spec.owns_cluster:
        print(f"gateway: http://127.0.0.1:{spec.host_port} (Host: {gateway_host()})")
    return 0


def _down(args: argparse.Namespace) -> int:
    spec = Spec(profiles.profile("full"), WORK_DIR / args.cluster, cluster=args.cluster)
    env.teardown(spec, log_dir=args.logs or env.default_log_dir())
    return 0


def _status(args: argparse.Namespace) -> int:
    print(json.dumps(env.status(spec_from(args)), indent=2))
    return 0


def _logs(args: argparse.Namespace) -> int:
    dest = env.export_logs(spec_from(args), args.dest or env.default_log_dir())
    print(f"logs: {dest}")
    return 0


def _preflight(args: argparse.Namespace) -> int:
    spec = spec_from(args)
    if args.install_tools:
        for name in ("kind", "helm", "kubectl"):
            if tools.check(name).problem:
                path = tools.install(name)
                print(f"installed {name} {tools.check(name).pinned} at {path}")
    report = preflight.check(spec)
    for name, fact in report.facts.items():
        if fact == "ok" or name == "docker":  # what is wrong is listed once, below
            print(f"{name}: {fact}")
    report.require()
    print(f"ready to provision the {spec.profile.name} profile on {spec.context}")
    return 0


def _load(args: argparse.Namespace) -> int:

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
