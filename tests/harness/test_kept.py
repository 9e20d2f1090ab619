"""A kept local platform: recorded where ``harness local down`` finds it, stopped, its folder removed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness.acceptance.targets import kept

HARNESS = [sys.executable, "-m", "harness"]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv(kept.STATE_DIR_ENV, str(directory))
    return directory


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "300"], start_new_session=True)


def test_down_stops_recorded_processes_and_removes_the_work_folder(state: Path, tmp_path: Path) -> None:
    work = tmp_path / "ocr-local-x"
    (work / "redis").mkdir(parents=True)
    (work / "redis" / "redis.conf").write_text("requirepass secret\n")
    procs = [_sleeper(), _sleeper()]
    try:
        recorded = [kept.KeptProcess(f"p{i}", p.pid, kept.start_token(p.pid) or "") for i, p in enumerate(procs)]
        path = kept.KeptPlatform(str(work), str(tmp_path / "logs"), recorded).save()
        assert path.parent == state and oct(path.stat().st_mode & 0o777) == "0o600"
        lines = kept.down()
        assert [line.split(" in ")[0] for line in lines] == [
            f"p1 (pid {procs[1].pid}) stopped",
            f"p0 (pid {procs[0].pid}) stopped",
            f"removed {work}",
        ]
        assert [p.wait(timeout=5) for p in procs] == [-15, -15]
        assert not work.exists() and not path.exists()
        assert kept.down() == [f"no kept local platform (no state file in {state})"]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_reused_pid_is_left_alone(state: Path, tmp_path: Path) -> None:
    proc = _sleeper()
    try:
        stale = kept.KeptProcess("service", proc.pid, "started at another time")
        kept.KeptPlatform(str(tmp_path / "work"), str(tmp_path), [stale]).save()
        assert kept.down()[0] == f"service (pid {proc.pid}) was not running"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(
    not all(shutil.which(b) or shutil.which(b, path="/usr/sbin") for b in ("redis-server", "prometheus", "haproxy")),
    reason="needs redis-server, prometheus and haproxy (apt-get install redis-server prometheus haproxy)",
)
def test_local_up_then_down_with_real_processes(state: Path, tmp_path: Path) -> None:
    env = {**os.environ, kept.STATE_DIR_ENV: str(state)}
    up = subprocess.run(
        [*HARNESS, "local", "up", "--artifacts", str(tmp_path / "artifacts")],
        capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        listed = re.findall(r"^  (\S+) +(\S+) +pid (\d+)$", up.stdout, re.M)
        pids = {name: int(pid) for name, _, pid in listed}
        assert {"redis", "service", "gateway", "worker-1", "worker-2", "prometheus"} <= set(pids), up.stdout
        assert all(address != "-" for _, address, _ in listed), up.stdout  # every process says where it listens
        service = re.search(r"^  service +(http://127\.0\.0\.1:\d+) ", up.stdout, re.M)
        assert service and httpx.get(f"{service[1]}/healthz", timeout=5).status_code == 200
        work = Path(re.search(r"removes (\S+)\)", up.stdout)[1])  # type: ignore[index]
        assert (work / "redis" / "redis.conf").exists() and "local down" in up.stdout
    finally:
        down = subprocess.run([*HARNESS, "local", "down"], capture_output=True, text=True, timeout=120, env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert all(kept.start_token(pid) is None for pid in pids.values()), down.stdout
    assert not work.exists() and not list(state.glob("*.json"))


def test_a_platform_that_fails_to_start_is_not_kept(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.acceptance.components import Endpoint
    from harness.acceptance.targets import local
    from harness.acceptance.targets.base import TargetOptions
    from harness.errors import HarnessError
    from harness.processes import ManagedProcess

    redis = ManagedProcess("redis", ["sleep", "300"], tmp_path / "redis.log")

    def start_job_redis(*args: object, **kwargs: object) -> Endpoint:
        return Endpoint(redis.start(), port=1)

    def start_service(*args: object, **kwargs: object) -> Endpoint:
        raise HarnessError("service exited with 2 before it was ready")

    monkeypatch.setattr(local, "start_job_redis", start_job_redis)
    monkeypatch.setattr(local, "start_service", start_service)
    target = local.LocalTarget(TargetOptions(artifacts=tmp_path, keep=True))
    with pytest.raises(HarnessError, match="service exited"):
        target.start()
    target.stop()  # as the pytest plugin does after a failed start
    assert redis.poll() is not None and not target._work.exists()
    assert not state.exists() and target.kept_message == ""


def test_the_try_it_line_sends_a_page_with_the_first_clients_key(tmp_path: Path) -> None:
    """The line `harness local up` prints is pasted into a shell as it is: run it, against a real listener."""
    import http.server
    import subprocess
    import threading

    from harness.acceptance.targets.local import try_command, write_client_keys

    seen: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.update(path=self.path, key=self.headers["x-api-key"], type=self.headers["content-type"])
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        keys = write_client_keys(tmp_path / "keys dir" / "api-keys", {"team-a": "key-of-a", "team-b": "key-of-b"})
        (tmp_path / "page.png").write_bytes(b"\x89PNG not really")
        line = try_command(f"http://127.0.0.1:{server.server_port}", keys)
        assert "key-of-a" not in line  # read when it runs, never printed
        result = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert seen == {"path": "/predict", "key": "key-of-a", "type": seen["type"]}
    assert seen["type"].startswith("multipart/form-data")
