"""`sandboxctl local up` in one process and other commands in others, as an operator works."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE_S = 180.0


def sandboxctl(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOXCTL_")}
    return subprocess.run(
        [sys.executable, "-m", "sandboxctl.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """Start `sandboxctl local up --port 0`, wait for its `ready` line, yield the endpoint."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandboxctl.cli", "local", "up", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "ready" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(START_DEADLINE_S):
            pytest.fail("local up printed no ready line:\n" + "".join(lines[-40:]))
        endpoint = next(line.split()[-1] for line in lines if line.startswith("endpoint:"))
        yield endpoint
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    assert proc.returncode == 0, "".join(lines[-40:])
    assert any("stopped" in line for line in lines)


def test_status_is_0_once_the_control_plane_answers(served: str) -> None:
    res = sandboxctl("status", "--endpoint", served, "--json")
    checks = json.loads(res.stdout)
    failing = [c for c in checks if not c["ok"]]
    assert res.returncode == 0, failing
    assert {"stack", "outputs", "registry table", "event bus"} <= {c["check"] for c in checks}


def test_commands_find_the_local_cloud_through_the_environment(served: str) -> None:
    env_res = subprocess.run(
        [sys.executable, "-m", "sandboxctl.cli", "users", "--json"],
        cwd=ROOT,
        env={**os.environ, "SANDBOXCTL_ENDPOINT": served},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert env_res.returncode == 0, env_res.stderr
    assert json.loads(env_res.stdout) == []


def test_a_wrong_endpoint_is_one_clear_line() -> None:
    res = sandboxctl("users", "--endpoint", "http://127.0.0.1:9")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sandboxctl: error:"), res.stderr


def test_status_json_gives_the_http_api_url(served: str) -> None:
    checks = json.loads(sandboxctl("status", "--endpoint", served, "--json").stdout)
    [api] = [c for c in checks if c["check"] == "http api"]
    assert api["ok"] and api["api_url"].startswith(served + "/_aws/execute-api/")


def test_local_token_is_verified_by_the_local_http_api(served: str) -> None:
    checks = json.loads(sandboxctl("status", "--endpoint", served, "--json").stdout)
    url = next(c["api_url"] for c in checks if c["check"] == "http api")
    res = sandboxctl("local", "token", "never-signed-up", "--endpoint", served)
    assert res.returncode == 0, res.stderr
    token = res.stdout.strip()
    body = {"name": "a.csv", "content_type": "text/csv", "size": 3}

    accepted = requests.post(
        url + "/datasets", json=body, headers={"authorization": f"Bearer {token}"}, timeout=60
    )
    expired = sandboxctl("local", "token", "x", "--expires-in", "-60", "--endpoint", served)
    refused = requests.post(
        url + "/datasets",
        json=body,
        headers={"authorization": f"Bearer {expired.stdout.strip()}"},
        timeout=60,
    )
    # The function ran for the verified subject (who has no sandbox); the expired token did not.
    assert (accepted.status_code, accepted.json()["message"]) == (
        404,
        "you have no sandbox yet; sign up first",
    )
    assert (refused.status_code, refused.json()) == (401, {"message": "Unauthorized"})


def test_local_up_on_a_port_in_use_exits_with_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = sandboxctl("local", "up", "--port", str(port))
    assert res.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr
    assert "Address already in use" in res.stderr


def test_local_up_ends_like_a_finished_deploy_so_the_first_signup_works(served: str) -> None:
    res = sandboxctl("signup", "first-user", "--wait", "--endpoint", served, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["status"] == "READY"


def test_ctrl_c_during_start_up_stops_local_up() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandboxctl.cli", "local", "up"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("starting the local cloud")
        time.sleep(0.5)  # into the start-up (which takes seconds): not a timing assertion
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr


def test_logs_shows_the_user_functions_recent_log_events(served: str) -> None:
    assert sandboxctl("signup", "logs-user", "--wait", "--endpoint", served).returncode == 0
    before = json.loads(sandboxctl("logs", "logs-user", "--endpoint", served, "--json").stdout)
    run = sandboxctl(
        "run", "logs-user", "--dataset", "none.csv", "--code", "1", "--endpoint", served
    )
    assert run.returncode == 1  # rejected: no such dataset; the function still ran and logged

    res = sandboxctl("logs", "logs-user", "--endpoint", served, "--json")
    assert res.returncode == 0, res.stderr
    events = json.loads(res.stdout)
    new = [e for e in events if e not in before]
    assert any(e["message"].startswith("START RequestId") for e in new)
    assert any(e["message"].startswith("REPORT RequestId") for e in new)
    assert sandboxctl("logs", "nobody-here", "--endpoint", served).returncode == 1


def test_reconcile_starts_waits_and_reports(served: str) -> None:
    dry = sandboxctl("reconcile", "--dry-run", "--endpoint", served, "--json")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    done = json.loads(dry.stdout)
    assert done["status"] == "SUCCEEDED" and done["report"]["dry_run"] is True
    assert isinstance(done["report"]["planned"], dict)
    human = sandboxctl("reconcile", "--endpoint", served)
    assert human.returncode == 0, human.stdout + human.stderr
    assert "reconcile SUCCEEDED" in human.stdout
