"""The wheelhouse: every wheel the image installs, collected on the host so that the build needs no index.

The host's pip reaches the package index and trusts this machine's certificates; pip inside a build may do
neither. So the wheels of the project's ``service`` extra, and of the build backend that installs the
project from source, are fetched (or built, for the few sdists) here, by this interpreter, which must match
the image's: CPython 3.11 on x86_64. The directory is keyed by what it was made from, and reused.

pip evaluates environment markers for the interpreter it runs on, and the images' 3.11 is another patch
release (Debian bookworm's is 3.11.2): ``redis`` needs ``async-timeout`` below 3.11.3 only. So the
wheelhouse is completed for the whole 3.11 series: every requirement that a collected wheel declares for
3.11.0 or for the last 3.11 is collected too.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement

from harness import commands
from harness.errors import HarnessError, ToolMissing

PYTHON = (3, 11)
MACHINE = "x86_64"
COMPLETE = ".complete"
# The ends of the series: markers compare versions, so these two and the host's cover every 3.11.x.
TARGET_PYTHONS = ("3.11.0", "3.11.99")
MAX_COMPLETION_ROUNDS = 5
_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[([^\]]*)\])?")


def canonical(name: str) -> str:
    """A distribution name normalised as package indexes compare names (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def extra_requirements(pyproject: Mapping[str, Any], extra: str) -> list[str]:
    """The project's dependencies plus those of ``extra``, its references to its own extras expanded."""
    project = pyproject["project"]
    own = canonical(project["name"])
    optional: Mapping[str, list[str]] = project.get("optional-dependencies", {})
    if extra not in optional:
        raise HarnessError(f"pyproject.toml has no extra {extra!r} in [project.optional-dependencies]")
    expanded: set[str] = set()
    out: list[str] = []

    def add(requirements: Iterable[str]) -> None:
        for req in requirements:
            match = _NAME.match(req)
            if match and canonical(match.group(1)) == own:
                for name in (e.strip() for e in (match.group(2) or "").split(",")):
                    if name and name not in expanded:
                        if name not in optional:
                            raise HarnessError(f"pyproject.toml: {req!r} names an extra that does not exist")
                        expanded.add(name)
                        add(optional[name])
            elif req not in out:
                out.append(req)

    add(project.get("dependencies", []))
    expanded.add(extra)
    add(optional[extra])
    return out


def build_requirements(pyproject: Mapping[str, Any]) -> list[str]:
    """What pip needs to build the project from source, per [build-system] (PEP 517/518 defaults)."""
    system = pyproject.get("build-system", {})
    requires = list(system.get("requires", ["setuptools>=40.8.0"]))
    backend = system.get("build-backend", "setuptools.build_meta:__legacy__")
    # setuptools before 70.1 asks for `wheel` too when building one; cheap to carry either way.
    names = {canonical(m.group(1)) for r in requires if (m := _NAME.match(r))}
    if backend.startswith("setuptools") and "wheel" not in names:
        requires.append("wheel")
    return requires


@dataclass(frozen=True)
class WheelhousePlan:
    """The requirements to collect; :meth:`key` names the cached directory."""

    requirements: tuple[str, ...]
    build_requirements: tuple[str, ...]

    @classmethod
    def from_pyproject(cls, pyproject: Mapping[str, Any], extra: str = "service") -> WheelhousePlan:
        return cls(tuple(extra_requirements(pyproject, extra)), tuple(build_requirements(pyproject)))

    def key(self) -> str:
        text = json.dumps(
            {
                "req": self.requirements,
                "build": self.build_requirements,
                "python": PYTHON,
                "targets": TARGET_PYTHONS,
                "machine": MACHINE,
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def directory(self, cache_dir: Path) -> Path:
        return cache_dir / "wheelhouse" / f"cp{PYTHON[0]}{PYTHON[1]}-{MACHINE}-{self.key()}"

    def pip_argv(self, python: str, dest: Path) -> list[str]:
        # --prefer-binary: an sdist newer than the last wheel would need a compiler, and change nothing.
        return [
            python, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input", "--prefer-binary",
            "--wheel-dir", str(dest), *self.requirements, *self.build_requirements,
        ]  # fmt: skip


def check_interpreter(version: Sequence[int], machine: str, implementation: str) -> None:
    """Refuse to collect wheels with an interpreter whose wheels the image could not install."""
    if tuple(version[:2]) != PYTHON or machine != MACHINE or implementation != "cpython":
        found = f"{implementation} {'.'.join(map(str, version[:2]))} on {machine}"
        raise ToolMissing(
            f"CPython {PYTHON[0]}.{PYTHON[1]} on {MACHINE}",
            f"the wheelhouse is collected by the harness's own interpreter, which is {found}; run the harness "
            "from a Python 3.11 venv, or build with --no-wheelhouse where the build can reach an index",
        )


def _wheel_tags(filename: str) -> tuple[set[str], set[str], set[str]]:
    parts = filename.removesuffix(".whl").split("-")
    if len(parts) not in (5, 6):
        raise ValueError(f"not a wheel file name: {filename}")
    python, abi, plat = parts[-3:]
    return set(python.split(".")), set(abi.split(".")), set(plat.split("."))


def incompatible_wheels(filenames: Iterable[str]) -> list[str]:
    """The wheels among ``filenames`` that CPython 3.11 on manylinux x86_64 could not install."""
    cp = f"cp{PYTHON[0]}{PYTHON[1]}"
    bad = []
    for name in filenames:
        pythons, abis, plats = _wheel_tags(name)
        abi3 = "abi3" in abis and any(
            p.startswith("cp3") and p[2:].isdigit() and int(p[3:]) <= PYTHON[1] for p in pythons
        )
        python_ok = bool(pythons & {"py3", f"py{PYTHON[0]}{PYTHON[1]}", cp}) or abi3
        plat_ok = "any" in plats or any(
            p.endswith(f"_{MACHINE}") and (p.startswith("manylinux") or p.startswith("linux")) for p in plats
        )
        if not (python_ok and plat_ok):
            bad.append(name)
    return bad


def target_environments(host: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """Marker environments of the images' interpreters: the host's, at each of :data:`TARGET_PYTHONS`."""
    base = {k: str(v) for k, v in (host if host is not None else default_environment()).items()}
    return [
        {**base, "python_version": "3.11", "python_full_version": full, "implementation_version": full}
        for full in TARGET_PYTHONS
    ]


def wheel_metadata(wheel: Path) -> tuple[str, list[str]]:
    """The canonical distribution name and the Requires-Dist lines of ``wheel``."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(name).decode())
    return canonical(meta["Name"]), list(meta.get_all("Requires-Dist") or [])


def unmet_requirements(
    metadata: Mapping[str, Sequence[str]], top_level: Sequence[str], envs: Sequence[Mapping[str, str]]
) -> list[str]:
    """Requirements (markers dropped) that some of ``envs`` needs and no distribution in ``metadata`` meets.

    ``metadata`` maps each collected distribution to its Requires-Dist; a requirement conditioned on an
    extra counts when something asks for that extra of its distribution.
    """
    parsed: list[tuple[str, Requirement]] = []
    for owner, lines in [("", top_level), *metadata.items()]:
        for line in lines:
            try:
                parsed.append((owner, Requirement(line)))
            except InvalidRequirement as exc:
                raise HarnessError(f"{owner or 'pyproject.toml'}: bad requirement {line!r}: {exc}") from exc
    # Which extras are asked of which distribution depends on which requirements apply, and back.
    requested: dict[str, set[str]] = {}
    active: list[Requirement] = []
    pending = list(parsed)
    changed = True
    while changed:
        changed = False
        for owner, req in list(pending):
            asked = ["", *sorted(requested.get(owner, set()))]
            if req.marker is None or any(req.marker.evaluate({**env, "extra": x}) for env in envs for x in asked):
                pending.remove((owner, req))
                active.append(req)
                wanted = requested.setdefault(canonical(req.name), set())
                changed = changed or not req.extras <= wanted
                wanted.update(req.extras)
    unmet: list[str] = []
    for req in active:
        if canonical(req.name) not in metadata:
            text = f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}{req.specifier}"
            if text not in unmet:
                unmet.append(text)
    return unmet


def model_version(wheelhouse: Path) -> str | None:
    """The model version the service reports for the PP-OCR files of the rapidocr wheel in ``wheelhouse``.

    The service names its bundled model ``<rapidocr version>+<first 12 hex of sha256(det, rec, cls)>``;
    the image tier checks that the label written from this equals what the running service reports.
    """
    wheels = sorted(wheelhouse.glob("rapidocr-*.whl"))
    if not wheels:
        return None
    wheel = wheels[-1]
    version = wheel.name.split("-")[1]
    with zipfile.ZipFile(wheel) as zf:
        onnx = [n for n in zf.namelist() if n.startswith("rapidocr/models/") and n.endswith(".onnx")]
        by_role = {role: [n for n in onnx if f"_{role}" in Path(n).name] for role in ("det", "rec", "cls")}
        if any(len(names) != 1 for names in by_role.values()):
            raise HarnessError(f"{wheel.name}: expected one det, rec and cls model, found {sorted(onnx)}")
        digest = hashlib.sha256()
        for role in ("det", "rec", "cls"):
            digest.update(zf.read(by_role[role][0]))
    return f"{version}+{digest.hexdigest()[:12]}"


def ensure_wheelhouse(plan: WheelhousePlan, cache_dir: Path, *, log: Path, python: str | None = None) -> Path:
    """The directory of wheels for ``plan``, collected with pip when not cached."""
    directory = plan.directory(cache_dir)
    if (directory / COMPLETE).is_file():
        return directory
    check_interpreter(tuple(sys.version_info[:2]), platform.machine(), sys.implementation.name)
    directory.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{directory.name}.", dir=directory.parent))
    try:
        commands.run_logged(plan.pip_argv(python or sys.executable, partial), log=log, timeout=1800)
        _complete_for_targets(plan, partial, python or sys.executable, log=log)
        names = sorted(p.name for p in partial.glob("*.whl"))
        bad = incompatible_wheels(names)
        if bad:
            raise HarnessError(f"the wheelhouse has wheels the image cannot install: {', '.join(bad)}")
        (partial / COMPLETE).write_text("\n".join(names) + "\n")
        shutil.rmtree(directory, ignore_errors=True)
        partial.rename(directory)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return directory


def _complete_for_targets(plan: WheelhousePlan, directory: Path, python: str, *, log: Path) -> None:
    """Collect what the images' interpreters need beyond what the host's pip resolved."""
    envs = target_environments()
    for _ in range(MAX_COMPLETION_ROUNDS):
        metadata = dict(wheel_metadata(w) for w in directory.glob("*.whl"))
        unmet = unmet_requirements(metadata, plan.requirements, envs)
        if not unmet:
            return
        extra = WheelhousePlan(tuple(unmet), ())
        commands.run_logged(extra.pip_argv(python, directory), log=log, timeout=1800)
    raise HarnessError(f"the wheelhouse is still missing {unmet} after {MAX_COMPLETION_ROUNDS} rounds")
