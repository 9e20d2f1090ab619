"""What to provision and where: the one value every provisioning step reads.

Standard library only, with :mod:`harness.provisioning.preflight`, so that the preflight can run before any
environment is built (``toxfile.py`` runs it ahead of ``tox -e milestone1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.provisioning.identity import CLUSTER, IMAGE
from harness.provisioning.profiles import Profile


@dataclass(frozen=True)
class Spec:
    """What to provision and where."""

    profile: Profile
    work_dir: Path
    cluster: str = CLUSTER
    kube_context: str | None = None  # None: a kind cluster the harness creates and owns
    host_port: int = 0  # loopback port kind publishes the gateway on (kind only)
    image: str = IMAGE
    image_loader: str = "kind"
    offline_base: bool = False

    @property
    def context(self) -> str:
        return self.kube_context or f"kind-{self.cluster}"

    @property
    def owns_cluster(self) -> bool:
        return self.kube_context is None
