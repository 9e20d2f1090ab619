"""Running the external tools of the image tier: argv lists in, text out, CommandFailed on failure.

Long commands (debootstrap, pip, docker build) write to a log file so that the console stays readable;
their failure carries the log's tail, as a short command's failure carries its stderr.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.errors import CommandFailed, ToolMissing, WaitTimeout

TAIL_CHARS = 4000


def _tail(text: str) -> str:
    return text[-TAIL_CHARS:]


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    merge_stderr: bool = False,
) -> str:
    """Run ``argv`` to completion and return its stdout (and stderr, merged, if asked)."""
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.run(
            argv,
            input=input,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            timeout=timeout,
            env=None if env is None else dict(env),
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        seen = (exc.stderr or b"").decode(errors="replace") or (exc.stdout or b"").decode(errors="replace")
        raise WaitTimeout(f"`{' '.join(argv)}` to finish", timeout, _tail(seen)) from exc
    except FileNotFoundError as exc:
        raise ToolMissing(argv[0], f"{argv[0]} is needed on PATH") from exc
    stdout = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        stderr = (proc.stderr or b"").decode(errors="replace") or stdout
        raise CommandFailed(argv, proc.returncode, _tail(stderr))
    return stdout


def run_logged(
    argv: Sequence[str],
    *,
    log: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Run ``argv`` with stdout and stderr appended to ``log``; a failure carries the log's tail."""
    argv = [str(a) for a in argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env=None if env is None else dict(env),
                cwd=cwd,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise WaitTimeout(f"`{' '.join(argv)}` to finish (log: {log})", timeout, read_tail(log)) from exc
        except FileNotFoundError as exc:
            raise ToolMissing(argv[0], f"{argv[0]} is needed on PATH") from exc
    if proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, f"(log: {log})\n{read_tail(log)}")


def read_tail(path: Path, chars: int = TAIL_CHARS) -> str:
    """The last ``chars`` characters of a text file, or "" when there is none."""
    try:
        return _tail(path.read_text(errors="replace"))[-chars:]
    except FileNotFoundError:
        return ""
