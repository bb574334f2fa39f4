"""A LocalCloud in a child process, for when this process already runs one.

moto's state is process-global, so a second, independent cloud (say, with a fault profile for
one test) has to live in another process. `SpawnedLocalCloud` starts `LocalCloud` there and
offers the same API: `endpoint`, `outputs`, `region`, `account_id`, `stack_name`, `resources`,
`client()`, `session_for_role()`, `stop()` and the context manager. Role sessions are obtained
in the child (where moto's STS lives) and sent back over a pipe.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config

from sandboxctl.localcloud.server import PROJECT_ROOT, LocalCloudError

START_DEADLINE_SECONDS = 300.0
CALL_DEADLINE_SECONDS = 60.0


def _child(conn: Connection, options: dict[str, Any]) -> None:
    from sandboxctl.localcloud.fixes import lambda_exec
    from sandboxctl.localcloud.server import LocalCloud

    cloud = LocalCloud(**options)
    try:
        cloud.start()
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    key, secret = cloud.admin_credentials
    conn.send(
        (
            "ready",
            {
                "endpoint": cloud.endpoint,
                "port": cloud.port,
                "outputs": cloud.outputs,
                "region": cloud.region,
                "account_id": cloud.account_id,
                "stack_name": cloud.stack_name,
                "resources": cloud.resources,
                "startup_seconds": cloud.startup_seconds,
                "admin": (key, secret),
            },
        )
    )
    try:
        while True:
            try:
                request = conn.recv()
            except EOFError:
                break
            if request[0] == "stop":
                break
            try:
                if request[0] == "assume":
                    role_arn, session_name, service = request[1:4]
                    service = service or lambda_exec.trusted_service(role_arn)
                    creds = lambda_exec.assume_role_as_service(role_arn, session_name, service)
                    reply: Any = (creds.access_key_id, creds.secret_access_key, creds.session_token)
                else:
                    raise LocalCloudError(f"unknown request {request[0]!r}")
                conn.send(("ok", reply))
            except Exception as exc:
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        cloud.stop()
        conn.close()


class SpawnedLocalCloud:
    """LocalCloud's API, served by a LocalCloud running in a child process."""

    def __init__(
        self,
        port: int = 0,
        faults: str | None = None,
        seed: int = 0,
        project_root: Path = PROJECT_ROOT,
        **options: Any,
    ) -> None:
        self._options = {
            "port": port,
            "faults": faults,
            "seed": seed,
            "project_root": project_root,
            **options,
        }
        self.faults, self.seed = faults, seed
        self.endpoint = ""
        self.outputs: dict[str, str] = {}
        self.resources: list[tuple[str, str, str]] = []
        self.region = ""
        self.account_id = ""
        self.stack_name = ""
        self.port = 0
        self.startup_seconds = 0.0
        self._admin: tuple[str, str] | None = None
        self._conn: Connection | None = None
        self._process: Any = None

    def start(self) -> SpawnedLocalCloud:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(
            target=_child, args=(child, self._options), name="local-cloud", daemon=True
        )
        self._process.start()
        child.close()
        self._conn = parent
        kind, payload = self._receive(START_DEADLINE_SECONDS)
        if kind != "ready":
            self.stop()
            raise LocalCloudError(f"the spawned local cloud failed to start:\n{payload}")
        for name in ("endpoint", "outputs", "region", "account_id", "stack_name", "port"):
            setattr(self, name, payload[name])
        self.resources = [tuple(r) for r in payload["resources"]]
        self.startup_seconds = payload["startup_seconds"]
        self._admin = tuple(payload["admin"])
        return self

    def _receive(self, timeout: float) -> tuple[str, Any]:
        assert self._conn is not None
        if not self._conn.poll(timeout):
            raise LocalCloudError(f"the spawned local cloud did not answer within {timeout:.0f}s")
        try:
            message: tuple[str, Any] = self._conn.recv()
        except EOFError as exc:
            raise LocalCloudError("the spawned local cloud exited") from exc
        return message

    def _call(self, *request: Any) -> Any:
        if self._conn is None:
            raise LocalCloudError("the spawned local cloud is not running")
        self._conn.send(request)
        kind, payload = self._receive(CALL_DEADLINE_SECONDS)
        if kind != "ok":
            raise LocalCloudError(str(payload))
        return payload

    @property
    def admin_credentials(self) -> tuple[str, str]:
        if self._admin is None:
            raise LocalCloudError("the local cloud is not started")
        return self._admin

    def session(self) -> boto3.session.Session:
        key, secret = self.admin_credentials
        return boto3.session.Session(
            aws_access_key_id=key, aws_secret_access_key=secret, region_name=self.region
        )

    def client(self, service: str, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint)
        kwargs.setdefault("region_name", self.region)
        kwargs.setdefault("config", Config(retries={"mode": "standard", "max_attempts": 3}))
        return self.session().client(service, **kwargs)

    def session_for_role(
        self, role_arn: str, session_name: str = "local", service: str | None = None
    ) -> boto3.session.Session:
        key, secret, token = self._call("assume", role_arn, session_name, service)
        return boto3.session.Session(
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=token,
            region_name=self.region,
        )

    def stop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send(("stop",))
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout=10)
            self._process = None

    def __enter__(self) -> SpawnedLocalCloud:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
