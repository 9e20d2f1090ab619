"""Building the service image: the build context, the build arguments (which become labels) and the build.

The context is staged in a scratch directory with only what the Dockerfile copies (service/, whose
requirements.txt is the locked dependency set, and, for an offline build, wheelhouse/ hard-linked from the
cache), so the repository's
work tree never holds a wheelhouse and the engine receives a few hundred kilobytes plus the wheels.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import commands
from harness.errors import CommandFailed, HarnessError
from harness.provisioning import lock, versions
from harness.provisioning.image import base, wheelhouse
from harness.provisioning.image.docker import attestation_flags, build_argv, docker
from harness.provisioning.paths import REPO_ROOT

REPO = REPO_ROOT
DOCKERFILE = Path("service/Dockerfile")
DEFAULT_TAG = "ocr:dev"
CONTEXT_FILES = (".dockerignore",)
CONTEXT_DIRS = ("service",)
BUILD_TIMEOUT_S = 3600


def default_cache_dir() -> Path:
    """``$OCR_PLATFORM_CACHE``, else ``$XDG_CACHE_HOME/ocr-platform``, else ``~/.cache/ocr-platform``."""
    if os.environ.get("OCR_PLATFORM_CACHE"):
        return Path(os.environ["OCR_PLATFORM_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ocr-platform"


def load_pyproject(repo: Path) -> dict[str, Any]:
    try:
        with (repo / "pyproject.toml").open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as exc:
        raise HarnessError(f"{repo / 'pyproject.toml'} is missing: it names the image's version") from exc


def https_source(remote: str) -> str | None:
    """The web address of a git remote (scp-like, ssh:// or https://), without credentials; None if local."""
    remote = remote.strip()
    scp = re.fullmatch(r"(?:[\w.-]+@)?([\w.-]+):(?!//)(.+)", remote)
    if scp:
        host, path = scp.groups()
    else:
        url = re.fullmatch(r"(?:ssh|git|https?)://(?:[^@/]+@)?([^/:]+)(?::\d+)?/(.+)", remote)
        if not url:
            return None
        host, path = url.groups()
    return f"https://{host}/{path.removesuffix('.git').strip('/')}"


def _git(repo: Path, *args: str) -> str | None:
    try:
        return commands.run(["git", "-C", str(repo), *args], timeout=30).strip() or None
    except HarnessError:
        return None


@dataclass(frozen=True)
class BuildRequest:
    """One image to build; :func:`build_args` turns it into ``--build-arg`` values."""

    tag: str = DEFAULT_TAG
    base_image: str = versions.PYTHON_BASE_IMAGE
    version: str = "0.0.0"
    revision: str = "unknown"
    source: str | None = None
    model_version: str | None = None
    wheelhouse: bool = True


def build_args(req: BuildRequest) -> dict[str, str]:
    """The Dockerfile's build arguments for ``req``; unknown facts keep the Dockerfile's defaults."""
    args = {
        "BASE_IMAGE": req.base_image,
        "IMAGE_VERSION": req.version,
        "IMAGE_REVISION": req.revision,
        "WHEELHOUSE": "1" if req.wheelhouse else "0",
    }
    if req.source:
        args["IMAGE_SOURCE"] = req.source
    if req.model_version:
        args["MODEL_VERSION"] = req.model_version
    return args


def stage_context(repo: Path, dest: Path, wheels: Path | None, requirements: str) -> None:
    """Lay out in ``dest`` exactly what the Dockerfile copies: service/ with ``requirements`` (the lock's
    export) as service/requirements.txt, and ``wheels`` as ``wheelhouse/``."""
    for name in CONTEXT_FILES:
        src = repo / name
        if src.is_file():
            shutil.copy2(src, dest / name)
    for name in CONTEXT_DIRS:
        shutil.copytree(repo / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))
    (dest / lock.SERVICE_REQUIREMENTS).write_text(requirements)
    if wheels is not None:
        (dest / "wheelhouse").mkdir()
        for wheel in wheels.glob("*.whl"):
            try:
                os.link(wheel, dest / "wheelhouse" / wheel.name)
            except OSError:
                shutil.copy2(wheel, dest / "wheelhouse" / wheel.name)


@dataclass
class BuildResult:
    tag: str
    base_image: str
    size_bytes: int
    seconds: dict[str, float] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def image_size(tag: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag))


def image_id(tag: str) -> str | None:
    try:
        return docker("image", "inspect", "--format", "{{.Id}}", tag)
    except HarnessError:
        return None


def _drop_replaced(old_id: str | None, tag: str, say: Callable[[str], None]) -> None:
    """Remove the image that ``tag`` named before this build: each one holds a copy of the venv."""
    if old_id is None or old_id == image_id(tag):
        return
    try:
        docker("image", "rm", old_id)
    except HarnessError as exc:  # still used by a container or another tag: leave it
        say(f"kept the previous {tag} ({old_id[:19]}): {exc}")


def build_image(
    *,
    tag: str = DEFAULT_TAG,
    offline_base: bool = False,
    use_wheelhouse: bool = True,
    cache_dir: Path | None = None,
    log_dir: Path,
    repo: Path = REPO,
    mirror: str = base.DEFAULT_MIRROR,
    say: Callable[[str], None] = print,
) -> BuildResult:
    """Make the base (offline) and the wheelhouse when asked, then ``docker build``; time each step."""
    cache = cache_dir or default_cache_dir()
    seconds: dict[str, float] = {}
    log_dir.mkdir(parents=True, exist_ok=True)
    for name in ("base.log", "wheelhouse.log", "build.log"):
        (log_dir / name).unlink(missing_ok=True)

    base_image = versions.PYTHON_BASE_IMAGE
    if offline_base:
        start = time.monotonic()
        say(f"base: {base.BASE_TAG} from debootstrap (cache {cache / 'base'}; log {log_dir / 'base.log'})")
        base_image = base.ensure_base(base.BasePlan(mirror=mirror), cache, log=log_dir / "base.log")
        seconds["base"] = time.monotonic() - start

    pyproject = load_pyproject(repo)
    requirements = lock.service_requirements(repo)
    wheels = None
    if use_wheelhouse:
        start = time.monotonic()
        plan = wheelhouse.WheelhousePlan.from_requirements(requirements)
        say(f"wheelhouse: {plan.directory(cache)} (log {log_dir / 'wheelhouse.log'})")
        wheels = wheelhouse.ensure_wheelhouse(plan, cache, log=log_dir / "wheelhouse.log")
        seconds["wheelhouse"] = time.monotonic() - start

    req = BuildRequest(
        tag=tag,
        base_image=base_image,
        version=str(pyproject["project"].get("version", "0.0.0")),
        revision=_git(repo, "rev-parse", "HEAD") or "unknown",
        source=https_source(_git(repo, "remote", "get-url", "origin") or ""),
        model_version=wheelhouse.model_version(wheels) if wheels else None,
        wheelhouse=wheels is not None,
    )
    args = build_args(req)
    start = time.monotonic()
    previous = image_id(tag)
    cache.mkdir(parents=True, exist_ok=True)
    context = Path(tempfile.mkdtemp(prefix="context-", dir=cache))
    try:
        stage_context(repo, context, wheels, requirements)
        say(f"build: {tag} on {base_image} (log {log_dir / 'build.log'})")
        argv = build_argv(
            context=context,
            dockerfile=context / DOCKERFILE,
            tag=tag,
            build_args=args,
            extra_flags=attestation_flags(),
        )
        try:
            commands.run_logged(argv, log=log_dir / "build.log", timeout=BUILD_TIMEOUT_S)
        except CommandFailed as exc:
            if offline_base:
                raise
            hint = f"\nhint: where no registry answers, build on the offline base: --offline-base ({base.BASE_TAG})"
            raise CommandFailed(exc.argv, exc.returncode, exc.stderr + hint) from exc
    finally:
        shutil.rmtree(context, ignore_errors=True)
    seconds["build"] = time.monotonic() - start
    _drop_replaced(previous, tag, say)
    return BuildResult(tag=tag, base_image=base_image, size_bytes=image_size(tag), seconds=seconds, build_args=args)
