"""Preflight: before step 1, everything the plan needs is checked, and each missing thing is named with
how to get it, in one message."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from harness import commands
from harness.errors import CommandFailed, CommandTimeout, HarnessError, ToolMissing
from harness.provisioning import tools
from harness.provisioning.profiles import PROFILES, Profile
from harness.provisioning.spec import Spec

GIB = 1024**3


class PreflightFailed(HarnessError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listed = "".join(f"\n  - {problem}" for problem in problems)
        super().__init__(f"cannot provision the platform here ({len(problems)} to fix):{listed}")


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)

    def require(self) -> None:
        if self.problems:
            raise PreflightFailed(self.problems)


def docker_info() -> dict[str, Any]:
    """What the Docker engine says of itself; HarnessError when it does not answer."""
    try:
        out = commands.run([tools.resolve("docker"), "info", "--format", "{{json .}}"], timeout=30)
    except CommandTimeout as exc:
        raise HarnessError("Docker does not answer (`docker info` hung for 30 s): is the engine running?") from exc
    except CommandFailed as exc:
        tail = exc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise HarnessError(f"Docker does not answer: {tail[0]} (start Docker, or check your user may use it)") from exc
    info = json.loads(out)
    if info.get("ServerErrors"):
        raise HarnessError(f"Docker does not answer: {'; '.join(map(str, info['ServerErrors']))}")
    return info


def kube_contexts() -> list[str]:
    out = commands.run([tools.resolve("kubectl"), "config", "get-contexts", "-o", "name"], timeout=30)
    return [line.strip() for line in out.splitlines() if line.strip()]


def check(spec: Spec, *, needs_docker: bool = True) -> Report:
    """Every problem at once: Docker, tools at suitable versions, the cluster's context, the machine's size."""
    report = Report()
    needed_tools = ["kubectl", "helm"] + (["kind"] if spec.owns_cluster or spec.image_loader == "kind" else [])
    for name in needed_tools:
        requirement = tools.check(name)
        report.facts[name] = requirement.problem or "ok"
        if requirement.problem:
            report.problems.append(f"{name} {requirement.pinned}: {requirement.problem}")
    if spec.image_loader == "minikube":
        try:
            tools.resolve("minikube")
        except ToolMissing as exc:
            report.problems.append(str(exc))
    if needs_docker:
        try:
            info = docker_info()
        except ToolMissing as exc:
            report.problems.append(str(exc))
        except HarnessError as exc:
            report.problems.append(str(exc))
        else:
            cpus, memory = int(info.get("NCPU") or 0), int(info.get("MemTotal") or 0)
            report.facts["docker"] = f"{cpus} CPUs, {memory / GIB:.1f} GiB"
            if spec.owns_cluster:
                problem = _too_small(spec.profile, cpus, memory, str(info.get("OperatingSystem") or ""))
                if problem:
                    report.problems.append(problem)
    if not spec.owns_cluster and not any("kubectl" in p for p in report.problems):
        try:
            contexts = kube_contexts()
        except HarnessError as exc:
            report.problems.append(f"cannot read the kubeconfig: {exc}")
        else:
            if spec.context not in contexts:
                report.problems.append(f"no kubeconfig context {spec.context!r}; have {', '.join(contexts) or 'none'}")
    return report


def _too_small(want: Profile, cpus: int, memory: int, system: str) -> str | None:
    """What to do when Docker has less than the profile needs: the kind node gets what Docker has."""
    if cpus >= want.cpus and memory >= (want.memory_gib - 0.5) * GIB:
        return None
    advice = ["raise Docker Desktop's CPU and memory limits" if "Docker Desktop" in system
              else "run on a Docker host with more CPUs and memory"]  # fmt: skip
    smaller = [p.name for p in PROFILES.values() if p.cpus <= cpus and p.memory_gib - 0.5 <= memory / GIB]
    if smaller:
        advice.append(f"choose a profile that fits ({', '.join(smaller)})")
    return (
        f"the {want.name} profile needs {want.cpus} CPUs and {want.memory_gib} GiB for Docker; it has {cpus} CPUs"
        f" and {memory / GIB:.1f} GiB ({' or '.join(advice)})"
    )
