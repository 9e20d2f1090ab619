"""tox's hook for this project: a cluster run checks the machine before tox builds its environment.

``tox -e milestone1`` (2, 3, all) needs Docker, kind, helm and kubectl. Without this hook tox would spend a
minute and more than a gigabyte installing the locked environment before the harness found out; here the
harness's own preflight (standard library only) runs first, and a machine that cannot run the milestone
ends the run at once: one line that says it did not happen, then what to fix.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tox.plugin import impl

ROOT = Path(__file__).resolve().parent
# tox env -> the profile it deploys.
RUN_COMMANDS = ("legacy", "r", "run", "run-parallel", "p")  # `tox -e X` is "legacy"
# Legacy-mode flags that list, show or build an env without running it.
NOT_RUNNING = ("list_envs", "list_envs_all", "show_config", "no_test", "devenv_path")
EXIT_PREFLIGHT = 3  # as the harness's own run that could not start its target
CLUSTER_ENVS = {"milestone1": "milestone1", "milestone2": "milestone2", "milestone3": "milestone3", "all": "full"}


@impl
def tox_add_env_config(env_conf: Any, state: Any) -> None:
    profile_name = CLUSTER_ENVS.get(env_conf.name)
    options = state.conf.options
    selected = list(getattr(options, "env", None) or ())
    running = getattr(options, "command", "") in RUN_COMMANDS and not any(
        getattr(options, flag, False)
        for flag in ("list_envs", "list_envs_all", "show_config", "no_test", "devenv_path")
    )
    if profile_name is None or not running or env_conf.name not in selected:
        return  # listing or configuring envs, building one without running it, or running others
    sys.path.insert(0, str(ROOT))
    try:
        from harness.provisioning import preflight, profiles, spec  # the checkout's own harness, not an installed one

        report = preflight.check(spec.Spec(profiles.profile(profile_name), ROOT / ".harness"))
    finally:
        sys.path.remove(str(ROOT))
    if report.problems:
        listed = "".join(f"\n  - {problem}" for problem in report.problems)
        print(
            f"{env_conf.name}: the run did not happen: this machine cannot run the {profile_name} profile "
            f"({len(report.problems)} to fix; `python -m harness preflight --install-tools` fetches the tools):"
            f"{listed}",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_PREFLIGHT)
