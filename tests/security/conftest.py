"""The real sandbox runtime in a warm execution environment, shared by one module's attacks.

Each module runs once per profile:

- ``lambda``: the function as Lambda runs it (one non-root uid for every process, read-only
  code, private /tmp, PID namespace, Lambda's reported syscall refusals);
- ``lambda-strict``: the same, with every hardening call the runtime makes refused;
- ``root``: the runtime as root with each run's child dropped to another uid (containers and
  the old local cloud), only where the suite itself runs as root.

The runtime is started through the local cloud's own launcher (lambda_exec.Worker), so the
handler, the executor and the run child are the real processes, under the real profile.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox_runtime.config import MIB
from sandboxctl.localcloud import lambda_profile
from sandboxctl.localcloud.fixes.lambda_exec import Credentials, Worker, WorkerSpec

ROWS = 50
PROJECT_ROOT = Path(__file__).resolve().parents[2]

SMALL_LIMITS = {
    "default_timeout_s": 5.0,
    "memory_mb": 256,
    "max_procs": 16,
    "max_file_bytes": 4 * MIB,
    "max_disk_bytes": 48 * MIB,
    "flood_bytes": 1 * MIB,
    "default_output_bytes": 8 * 1024,
}
FAKE_ACCESS_KEY = "ASIAEXAMPLEEXAMPLE"

# What a run can see of the processes and files around it, from the inside.
LOOK_AROUND = textwrap.dedent(
    """
    import os
    me, uid = os.getpid(), os.getuid()
    executor = os.getppid()
    with open(f"/proc/{executor}/stat") as handle:
        handler = int(handle.read().rsplit(")", 1)[1].split()[1])
    others = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (me, executor, handler):
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{entry}/status") as handle:
                owner = [l for l in handle if l.startswith("Uid:")][0].split()[1:3]
        except OSError:
            continue
        if state not in ("Z", "X") and str(uid) in owner:
            others.append(int(entry))
    result = {"others": others, "scratch": sorted(os.listdir(".")), "rows": len(df)}
    """
)


def profiles() -> list[str]:
    found = ["lambda", "lambda-strict"]
    if os.geteuid() == 0:
        found.append("root")
    return found


class Sandbox:
    """Runs code through the real runtime and checks it still serves normal requests."""

    def __init__(self, profile: str, worker: Worker, secret_key: str, session_token: str) -> None:
        self.profile = profile
        self.worker = worker
        self.secret_key = secret_key
        self.session_token = session_token

    @property
    def lambda_like(self) -> bool:
        return self.profile != "root"

    def run(self, code: str, **event: Any) -> dict[str, Any]:
        response, _logs = self.worker.invoke(
            {"code": code, "dataset": "data.csv", **event}, str(uuid.uuid4())
        )
        assert response["ok"], response["payload"]
        envelope: dict[str, Any] = response["payload"]
        return envelope

    def timed_run(self, code: str, **event: Any) -> tuple[dict[str, Any], float]:
        started = time.monotonic()
        envelope = self.run(code, **event)
        return envelope, time.monotonic() - started

    def assert_serves_normally(self) -> None:
        envelope = self.run(LOOK_AROUND)
        assert envelope["status"] == "ok", envelope["error"]
        # Nothing of an earlier run is alive (whatever it detached into), nothing it wrote is
        # in the fresh scratch directory, and the frame is intact.
        assert envelope["result"] == {"others": [], "scratch": [], "rows": ROWS}


def start_sandbox(profile: str, data: Path, extra_env: dict[str, str] | None = None) -> Sandbox:
    secret_key = "sk" + secrets.token_hex(20)
    session_token = "st" + secrets.token_hex(40)
    work = Path(tempfile.gettempdir()) / f"sandbox-sec-{secrets.token_hex(6)}"
    environment = {
        "TEST_DATA_DIR": str(data),
        "SANDBOX_WORK_DIR": str(work),
        **{f"SANDBOX_{k.upper()}": str(v) for k, v in SMALL_LIMITS.items()},
        **(extra_env or {}),
    }
    if profile == "root":
        # A uid of this environment's own, as each user gets in root mode: no other process
        # on the host (another test run, another engineer's) shares it.
        uid = 2_000_000 + secrets.randbelow(900_000)
        environment.update({"SANDBOX_SANDBOX_UID": str(uid), "SANDBOX_SANDBOX_GID": str(uid)})
    spec = WorkerSpec(
        function_name=f"security-{profile}",
        function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:security-{profile}",
        version="$LATEST",
        role="arn:aws:iam::123456789012:role/security",
        handler="tests.security.dir_handler.handler",
        code_dir=str(PROJECT_ROOT),
        python_path=str(PROJECT_ROOT),
        environment=tuple(sorted(environment.items())),
        timeout=120.0,
        memory_size=2048,
        code_version="security",
        image=True,
    )
    credentials = Credentials(FAKE_ACCESS_KEY, secret_key, session_token, time.time() + 3600)
    launcher_profile = "none" if profile == "root" else profile
    worker = Worker(spec, credentials, profile=launcher_profile, extra_ro=(str(data),))
    return Sandbox(profile, worker, secret_key, session_token)


def make_data(root: Path) -> Path:
    # Outside pytest's private temporary tree: a dropped uid must be able to read it.
    data = Path(tempfile.mkdtemp(prefix="sandbox-sec-data-", dir="/var/tmp"))
    data.chmod(0o755)
    rows = "\n".join(f"{i},{i * 0.5},name{i}" for i in range(ROWS))
    (data / "data.csv").write_text("id,value,name\n" + rows + "\n")
    (data / "data.csv").chmod(0o644)
    del root
    return data


@pytest.fixture(scope="module", params=profiles())
def sandbox(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sandbox]:
    if request.param != "root" and lambda_profile.limitations(request.param):
        pytest.fail(
            f"this host cannot build the {request.param} profile: "
            + "; ".join(lambda_profile.limitations(request.param))
        )
    data = make_data(tmp_path_factory.mktemp("unused"))
    box = start_sandbox(request.param, data)
    try:
        box.assert_serves_normally()
        yield box
    finally:
        box.worker.kill()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    yield server
    server.close()


@pytest.fixture
def run(sandbox: Sandbox) -> Callable[..., dict[str, Any]]:
    return sandbox.run
