"""Errors raised by the harness.

The hierarchy::

    HarnessError
    ├── CommandFailed     an external tool exited non-zero (argv, returncode, stderr kept)
    ├── WaitTimeout       a condition did not hold before its deadline (last observation kept)
    │   └── CommandTimeout    an external tool ran past its deadline (the output's tail kept)
    ├── ToolMissing       a binary the harness needs is not installed (with an install hint)
    └── TargetUnavailable a target cannot provide what was asked of it

Third-party errors are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Sequence


class HarnessError(Exception):
    """Base class of every error the harness raises on purpose."""


class CommandFailed(HarnessError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr.strip()[-2000:]
        super().__init__(f"{' '.join(self.argv)} exited {returncode}" + (f": {tail}" if tail else ""))


class WaitTimeout(HarnessError):
    def __init__(self, what: str, timeout: float, last_seen: object) -> None:
        self.what = what
        self.timeout = timeout
        self.last_seen = last_seen
        super().__init__(f"timed out after {timeout:g}s waiting for {what}; last observed: {last_seen!r}")


class CommandTimeout(WaitTimeout):
    def __init__(self, argv: Sequence[str], timeout: float, output_tail: str = "") -> None:
        self.argv = list(argv)
        super().__init__(f"`{' '.join(self.argv)}` to finish", timeout, output_tail)


class ToolMissing(HarnessError):
    def __init__(self, name: str, hint: str) -> None:
        self.name = name
        self.hint = hint
        super().__init__(f"{name} is not installed: {hint}")


class TargetUnavailable(HarnessError):
    """The chosen target cannot be used (not provisioned, or lacks what was asked)."""
