"""The wheelhouse: every wheel the image installs, collected on the host so that the build needs no index.

The host's pip reaches the package index and trusts this machine's certificates; pip inside a build may do
neither. So the wheels the image installs are downloaded here, exactly the pins of ``service/requirements.txt``
(the ``service`` extra exported from ``uv.lock``, see :mod:`harness.provisioning.lock`) with their hashes checked, for
CPython 3.11 on manylinux x86_64 whatever the host runs. The directory is keyed by the pins, and reused.

Markers are evaluated for the images' interpreters, not the host's: the images' 3.11 is another patch
release (Debian bookworm's is 3.11.2), and ``redis`` needs ``async-timeout`` below 3.11.3 only. So a pin is
collected when it applies to any 3.11 on Linux x86_64; pip in the image then installs those that apply to
its own interpreter.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness import commands
from harness.errors import HarnessError
from harness.provisioning.lock import Pin, canonical, parse_requirements

PYTHON = (3, 11)
MACHINE = "x86_64"
# Debian bookworm's glibc is 2.36: every manylinux tag up to it, newest first (pip matches each tag exactly).
PLATFORMS = (
    *(f"manylinux_2_{minor}_{MACHINE}" for minor in range(36, 4, -1)),
    f"manylinux2014_{MACHINE}",
    f"manylinux2010_{MACHINE}",
    f"manylinux1_{MACHINE}",
)
COMPLETE = ".complete"
# The ends of the series: markers compare versions, so these two cover every 3.11.x.
TARGET_PYTHONS = ("3.11.0", "3.11.99")


@dataclass(frozen=True)
class WheelhousePlan:
    """The pins to collect; :meth:`key` names the cached directory."""

    pins: tuple[Pin, ...]

    @classmethod
    def from_requirements(cls, text: str) -> WheelhousePlan:
        return cls(tuple(parse_requirements(text)))

    def wanted(self, envs: Iterable[Mapping[str, str]] | None = None) -> list[Pin]:
        """The pins that apply to some interpreter the image may have."""
        envs = list(envs if envs is not None else target_environments())
        return [pin for pin in self.pins if any(pin.applies(env) for env in envs)]

    def requirements_text(self) -> str:
        return "".join(f"{pin.line()}\n" for pin in self.wanted())

    def key(self) -> str:
        text = json.dumps({"req": self.requirements_text(), "platforms": PLATFORMS, "python": PYTHON}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def directory(self, cache_dir: Path) -> Path:
        return cache_dir / "wheelhouse" / f"cp{PYTHON[0]}{PYTHON[1]}-{MACHINE}-{self.key()}"

    def pip_argv(self, python: str, dest: Path, requirements: Path) -> list[str]:
        # --no-deps: the lock is complete, and pip must not resolve anything of its own.
        return [
            python, "-m", "pip", "download", "--disable-pip-version-check", "--no-input", "--no-deps",
            "--only-binary=:all:", "--require-hashes", *(x for p in PLATFORMS for x in ("--platform", p)),
            "--python-version", f"{PYTHON[0]}.{PYTHON[1]}", "--implementation", "cp",
            "--abi", f"cp{PYTHON[0]}{PYTHON[1]}", "--dest", str(dest), "-r", str(requirements),
        ]  # fmt: skip


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


# CPython on Linux x86_64, as packaging.markers.default_environment() gives it there.
LINUX_X86_64 = {
    "implementation_name": "cpython",
    "os_name": "posix",
    "platform_machine": MACHINE,
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "sys_platform": "linux",
}


def target_environments() -> list[dict[str, str]]:
    """Marker environments of the images' interpreters: CPython on Linux x86_64 at each of :data:`TARGET_PYTHONS`."""
    base = dict(LINUX_X86_64)
    return [
        {**base, "python_version": "3.11", "python_full_version": full, "implementation_version": full}
        for full in TARGET_PYTHONS
    ]


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


def missing_wheels(pins: Iterable[Pin], filenames: Iterable[str]) -> list[str]:
    """The pins that no wheel among ``filenames`` provides, as ``name==version``."""
    have = {(canonical(name.split("-")[0]), name.split("-")[1]) for name in filenames}
    return [f"{pin.name}=={pin.version}" for pin in pins if (pin.name, pin.version) not in have]


def ensure_wheelhouse(plan: WheelhousePlan, cache_dir: Path, *, log: Path, python: str | None = None) -> Path:
    """The directory of wheels for ``plan``, downloaded with pip (hashes checked) when not cached."""
    directory = plan.directory(cache_dir)
    if (directory / COMPLETE).is_file():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{directory.name}.", dir=directory.parent))
    try:
        requirements = partial / "requirements.txt"
        requirements.write_text(plan.requirements_text())
        commands.run_logged(plan.pip_argv(python or sys.executable, partial, requirements), log=log, timeout=1800)
        requirements.unlink()
        names = sorted(p.name for p in partial.glob("*.whl"))
        bad = incompatible_wheels(names)
        if bad:
            raise HarnessError(f"the wheelhouse has wheels the image cannot install: {', '.join(bad)}")
        missing = missing_wheels(plan.wanted(), names)
        if missing:
            raise HarnessError(f"pip downloaded no wheel for {', '.join(missing)} (log {log})")
        (partial / COMPLETE).write_text("\n".join(names) + "\n")
        shutil.rmtree(directory, ignore_errors=True)
        partial.rename(directory)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return directory
