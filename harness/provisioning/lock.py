"""The locked dependency set: ``uv.lock``, and the service's share of it exported for the image.

``uv.lock`` locks every dependency of every extra with hashes, for every platform, and is the only record:
nothing derived from it is committed, so an update (``make lock``, or the update bot's) changes one file.
The image installs the ``service`` extra with pip, which reads requirement files, so that share is exported
from the lock (each pin with its hashes and environment markers) into the build context as
``service/requirements.txt`` when the harness builds the image; ``export`` writes it into the work tree
(git-ignored) for a ``docker build`` by hand. The image tier checks the image's packages against the same
export.

Two tools run in venvs of their own, as their pins need not agree with the project's: KServe's client
(``tests/oip``) and the benchmark's peer, KServe's ModelServer (``bench``). Each ``requirements.in`` is
compiled with hashes into the ``requirements.txt`` beside it, for CPython 3.11 on Linux x86_64.

``python -m harness lock export`` writes the export and the compiled files (``--upgrade``: to the newest
versions the inputs allow); ``check`` fails when ``uv.lock`` is out of date with ``pyproject.toml`` or a
compiled file with its input. ``make lock`` is the update: ``uv lock --upgrade``, then ``export --upgrade``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from harness import commands
from harness.errors import HarnessError, ToolMissing
from harness.provisioning.paths import REPO_ROOT

REPO = REPO_ROOT
SERVICE_REQUIREMENTS = Path("service/requirements.txt")
SERVICE_EXTRA = "service"
COMPILED = (
    (Path("tests/oip/requirements.in"), Path("tests/oip/requirements.txt")),
    (Path("bench/peer_requirements.in"), Path("bench/peer_requirements.txt")),
)
_HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")


def canonical(name: str) -> str:
    """A distribution name normalised as package indexes compare names (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    """One line of an exported requirements file: ``name==version ; marker`` and its hashes."""

    requirement: Requirement
    hashes: tuple[str, ...]

    @property
    def name(self) -> str:
        return canonical(self.requirement.name)

    @property
    def version(self) -> str:
        (spec,) = self.requirement.specifier
        return spec.version

    def applies(self, environment: Mapping[str, str]) -> bool:
        marker = self.requirement.marker
        return marker is None or marker.evaluate(dict(environment))

    def line(self) -> str:
        """The pin without its marker, with its hashes: a requirement line for ``pip --require-hashes``."""
        return " ".join([f"{self.requirement.name}=={self.version}", *(f"--hash={h}" for h in self.hashes)])


def parse_requirements(text: str) -> list[Pin]:
    """The pins of a ``uv export`` requirements file; anything but exact pins with hashes is refused."""
    pins: list[Pin] = []
    logical = re.sub(r"\\\n", " ", text)
    for number, raw in enumerate(logical.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        hashes = tuple(_HASH.findall(line))
        spec = _HASH.sub("", line).strip()
        requirement = Requirement(spec)
        exact = [s for s in requirement.specifier if s.operator == "=="]
        if not hashes or len(exact) != 1 or len(requirement.specifier) != 1:
            raise HarnessError(f"requirement {number} ({spec!r}) is not one exact pin with hashes")
        pins.append(Pin(requirement, hashes))
    return pins


def expected_set(pins: Iterable[Pin], environment: Mapping[str, str]) -> dict[str, str]:
    """What an install of ``pins`` puts in an interpreter with this marker ``environment``: name -> version."""
    return {pin.name: pin.version for pin in pins if pin.applies(environment)}


def set_difference(expected: Mapping[str, str], installed: Mapping[str, str]) -> list[str]:
    """Every way ``installed`` (name -> version) differs from ``expected``, one line each; empty when equal."""
    installed = {canonical(k): v for k, v in installed.items()}
    lines = []
    for name in sorted(expected.keys() | installed.keys()):
        want, have = expected.get(name), installed.get(name)
        if want is None:
            lines.append(f"{name} {have} is installed but not locked")
        elif have is None:
            lines.append(f"{name} {want} is locked but not installed")
        elif want != have:
            lines.append(f"{name} is {have}, the lock says {want}")
    return lines


def uv() -> str:
    """The environment's own uv (the dev extra pins it), else the one on PATH."""
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.is_file() else shutil.which("uv")
    if found is None:
        raise ToolMissing("uv", "install it with `python3 -m pip install uv` (the README's first set-up command)")
    return found


def export_argv(extra: str = SERVICE_EXTRA, *, header: bool = False) -> list[str]:
    argv = [uv(), "export", "--frozen", "--no-dev", "--extra", extra, "--no-emit-project"]
    argv += ["--format", "requirements.txt"]
    return argv if header else [*argv, "--no-header"]


def compile_argv(source: Path, output: Path, *, upgrade: bool = False) -> list[str]:
    """``uv pip compile`` of ``source`` into ``output``, whose pins it keeps unless ``upgrade``."""
    argv = [uv(), "pip", "compile", "--quiet", "--generate-hashes", "--python-version", "3.11"]
    argv += ["--python-platform", "x86_64-manylinux_2_28", str(source), "--output-file", str(output)]
    return [*argv, "--upgrade"] if upgrade else argv


def _body(text: str) -> str:
    """The requirements without the comment lines uv writes at the top."""
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "".join(lines)


def service_requirements(repo: Path = REPO) -> str:
    """The ``service`` extra's pins exported from ``uv.lock``, as a requirements file with hashes."""
    return commands.run(export_argv(), cwd=repo, timeout=120)


def export(repo: Path = REPO, *, upgrade: bool = False) -> list[Path]:
    """Write ``service/requirements.txt`` from ``uv.lock``, and compile each of :data:`COMPILED`."""
    commands.run([*export_argv(header=True), "--output-file", str(SERVICE_REQUIREMENTS)], cwd=repo, timeout=120)
    for source, output in COMPILED:
        commands.run(compile_argv(source, output, upgrade=upgrade), cwd=repo, timeout=300)
    return [repo / SERVICE_REQUIREMENTS, *(repo / output for _, output in COMPILED)]


def problems(repo: Path = REPO) -> list[str]:
    """Why the lock or its export is out of date; empty when both are current."""
    found = []
    try:
        commands.run([uv(), "lock", "--check"], cwd=repo, timeout=300)
    except HarnessError as exc:
        found.append(f"uv.lock is out of date with pyproject.toml: run `make lock` ({exc})")
    for source, output in COMPILED:
        committed = repo / output
        with tempfile.TemporaryDirectory() as scratch:
            fresh = Path(scratch) / output.name
            if committed.is_file():
                shutil.copy2(committed, fresh)  # its pins are kept: only a changed input changes the output
            commands.run(compile_argv(source, fresh), cwd=repo, timeout=300)
            if not committed.is_file() or _body(fresh.read_text()) != _body(committed.read_text()):
                found.append(f"{output} is not the compiled {source}: run `python -m harness lock export`")
    return found


def main(args: argparse.Namespace) -> int:
    if args.action == "export":
        for path in export(upgrade=args.upgrade):
            print(f"wrote {path}")
        return 0
    found = problems()
    for line in found:
        print(f"lock: {line}", file=sys.stderr)
    if not found:
        print("lock: uv.lock matches pyproject.toml; each compiled requirements file matches its input")
    return 1 if found else 0
