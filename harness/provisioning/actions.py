"""What ``harness up|down|status|plan|logs|preflight`` do: the platform on kind, or on a cluster you have
(their options: :mod:`harness.cli`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from harness import commands
from harness.errors import HarnessError
from harness.ports import free_port
from harness.provisioning import env, preflight, profiles, tools
from harness.provisioning.env import WORK_DIR
from harness.provisioning.identity import IMAGE, gateway_host
from harness.provisioning.run import run_plan
from harness.provisioning.spec import Spec


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


def up(args: argparse.Namespace) -> int:
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


def down(args: argparse.Namespace) -> int:
    spec = Spec(profiles.profile("full"), WORK_DIR / args.cluster, cluster=args.cluster)
    env.teardown(spec, log_dir=args.logs or env.default_log_dir())
    return 0


def status(args: argparse.Namespace) -> int:
    print(json.dumps(env.status(spec_from(args)), indent=2))
    return 0


def logs(args: argparse.Namespace) -> int:
    dest = env.export_logs(spec_from(args), args.dest or env.default_log_dir())
    print(f"logs: {dest}")
    return 0


def preflight_check(args: argparse.Namespace) -> int:
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
