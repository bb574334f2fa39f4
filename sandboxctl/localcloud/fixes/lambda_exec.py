"""Lambda runs the function's own code, in its own process, with its own role's credentials.

AWS behaviour restored: an invocation (the Invoke API, a Step Functions ``lambda:invoke`` task, an
EventBridge target) runs the function's code in an isolated execution environment that has the
function's configured environment variables and temporary credentials of the function's
execution role (the Lambda service assumes the role, which must trust ``lambda.amazonaws.com``).
Environments stay warm between invocations, one per concurrent request, and are recycled after
a crash, a timeout, a code/configuration change or when their credentials near expiry; a
function's reserved concurrency caps its simultaneous synchronous runs (the excess gets
``TooManyRequestsException``, HTTP 429). Handler
exceptions come back as ``FunctionError: Unhandled`` with an ``errorMessage``/``errorType``
payload; a timeout as ``Sandbox.Timedout``.

moto 5.2.5 instead runs the code in Docker (absent here), and image functions fail outright
(``'LambdaFunction' object has no attribute 'code_digest'``). Hook:
``moto.awslambda.models.LambdaFunction._invoke_lambda`` (every invocation path goes through it)
and ``LambdaFunction.invoke`` (invocation types, the ``Unhandled`` error header, log tail).

Zip functions whose package the local cloud built from a directory (``CodeUri: functions/``)
run from that directory; other zip packages run from their extracted bytes. Image functions
run ``sandbox_runtime.handler.lambda_handler`` (the image's CMD, or ``ImageConfig.Command``)
from the project root, where the sandbox runtime image's package lives.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import patch

IMAGE_HANDLER = "sandbox_runtime.handler.lambda_handler"
LAMBDA_PRINCIPAL = "lambda.amazonaws.com"
CREDENTIAL_SECONDS = 3600
# Recycle an environment whose credentials expire within this margin (Lambda refreshes them).
CREDENTIAL_MARGIN_SECONDS = 300
MAX_IDLE_WORKERS = 16
LOG_TAIL_BYTES = 4096
_WORKER = str(Path(__file__).resolve().parents[1] / "lambda_worker.py")
# Run the worker file as __main__ without putting its directory (sandboxctl/) on sys.path.
_BOOTSTRAP = "import sys; p = sys.argv[1]; exec(compile(open(p).read(), p, 'exec'))"


class InvocationError(RuntimeError):
    """The execution environment could not run the request (crash, timeout, bad role)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_at: float


@dataclass
class _Settings:
    endpoint: str = ""
    region: str = "us-east-1"
    project_root: Path = Path(__file__).resolve().parents[3]
    # How image functions (user sandboxes) run: see sandboxctl/localcloud/lambda_profile.py.
    lambda_profile: str = "lambda"


_settings = _Settings()
_code_dirs: dict[tuple[str, str], Path] = {}
_extracted_dir = Path(tempfile.gettempdir()) / f"sandbox-fleet-lambda-code-{os.getpid()}"


def configure(endpoint: str, region: str, project_root: Path) -> None:
    """Where functions' SDK calls go (AWS_ENDPOINT_URL) and where image code lives."""
    _settings.endpoint = endpoint
    _settings.region = region
    _settings.project_root = project_root


def set_lambda_profile(profile: str) -> None:
    """Run image functions under `profile` (lambda, lambda-strict, none)."""
    from sandboxctl.localcloud import lambda_profile

    if profile not in lambda_profile.PROFILES:
        raise ValueError(f"unknown Lambda profile {profile!r}: {lambda_profile.PROFILES}")
    _settings.lambda_profile = profile


def register_code_dir(bucket: str, key: str, directory: Path) -> None:
    """The code package s3://bucket/key was built from `directory`: run it from there."""
    _code_dirs[(bucket, key)] = directory


# ---------------------------------------------------------------------- credentials
def _trusts_service(policy_document: Any, service: str) -> bool:
    document = json.loads(policy_document) if isinstance(policy_document, str) else policy_document
    statements = document.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if not any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions):
            continue
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = [services] if isinstance(services, str) else services
        if service in services:
            return True
    return False


def _role(role_arn: str) -> Any:
    from moto.iam.models import iam_backends
    from moto.utilities.utils import get_partition

    account_id = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
    try:
        return iam_backends[account_id][get_partition(_settings.region)].get_role_by_arn(role_arn)
    except Exception as exc:
        raise InvocationError(
            "InvalidParameterValueException", f"The role {role_arn} does not exist"
        ) from exc


def trusted_service(role_arn: str) -> str:
    """The service principal a role trusts (Lambda first), or Lambda when it trusts none."""
    document = _role(role_arn).assume_role_policy_document
    document = json.loads(document) if isinstance(document, str) else document
    statements = document.get("Statement", [])
    services: list[str] = []
    for statement in statements if isinstance(statements, list) else [statements]:
        principal = statement.get("Principal", {})
        found = principal.get("Service", []) if isinstance(principal, dict) else []
        services += [found] if isinstance(found, str) else list(found)
    return LAMBDA_PRINCIPAL if LAMBDA_PRINCIPAL in services or not services else services[0]


def assume_role_as_service(
    role_arn: str, session_name: str, service: str = LAMBDA_PRINCIPAL
) -> Credentials:
    """STS AssumeRole of `role_arn` by `service`, refused unless the role's trust policy allows it.

    The Lambda service is not an IAM principal of the account, so this goes to the STS backend
    directly, as AWS's own service does, after the trust-policy check AWS makes.
    """
    from moto.sts.models import sts_backends
    from moto.utilities.utils import get_partition

    account_id = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
    partition = get_partition(_settings.region)
    role = _role(role_arn)
    if not _trusts_service(role.assume_role_policy_document, service):
        raise InvocationError(
            "InvalidParameterValueException",
            f"The role defined for the function cannot be assumed by {service.split('.')[0]}: "
            f"{role_arn} does not trust {service}",
        )
    assumed = sts_backends[account_id][partition].assume_role(
        region_name=_settings.region,
        role_session_name=session_name[:64],
        role_arn=role_arn,
        policy="",
        duration=CREDENTIAL_SECONDS,
        external_id="",
    )
    return Credentials(
        access_key_id=assumed.access_key_id,
        secret_access_key=assumed.secret_access_key,
        session_token=assumed.session_token,
        expires_at=time.time() + CREDENTIAL_SECONDS,
    )


# ---------------------------------------------------------------------- execution environments
@dataclass(frozen=True)
class WorkerSpec:
    """Everything that makes two invocations share (or not share) an execution environment."""

    function_name: str
    function_arn: str
    version: str
    role: str
    handler: str
    code_dir: str
    python_path: str
    environment: tuple[tuple[str, str], ...]
    timeout: float
    memory_size: int
    code_version: str
    image: bool = False
    ephemeral_mb: int = 512

    @classmethod
    def from_function(cls, fn: Any) -> WorkerSpec:
        image = fn.package_type == "Image" or "ImageUri" in fn.code
        if image:
            command = (fn.image_config.cmd or []) if fn.image_config else []
            handler = command[0] if command else IMAGE_HANDLER
            code_dir = str(_settings.project_root)
            code_version = fn.code.get("ImageUri", "") + fn.code_sha_256
        else:
            handler = fn.handler or ""
            code_dir = str(_zip_code_dir(fn))
            code_version = fn.code_sha_256
        environment = tuple(sorted((str(k), str(v)) for k, v in fn.environment_vars.items()))
        return cls(
            function_name=fn.function_name,
            function_arn=fn.function_arn,
            version=str(fn.version),
            role=fn.role,
            handler=handler,
            code_dir=code_dir,
            python_path=code_dir,
            environment=environment,
            timeout=float(fn.timeout or 3),
            memory_size=int(fn.memory_size or 128),
            code_version=code_version,
            image=image,
            ephemeral_mb=_ephemeral_mb(fn),
        )


def _ephemeral_mb(fn: Any) -> int:
    storage = getattr(fn, "ephemeral_storage", None)
    if isinstance(storage, dict):
        storage = storage.get("Size")
    try:
        return max(512, int(storage or 512))
    except (TypeError, ValueError):
        return 512


def _zip_code_dir(fn: Any) -> Path:
    key = (fn.code.get("S3Bucket", ""), fn.code.get("S3Key", ""))
    if key in _code_dirs:
        return _code_dirs[key]
    code_bytes = getattr(fn, "code_bytes", b"")
    if not code_bytes:
        raise InvocationError("Runtime.InvalidEntrypoint", f"{fn.function_name} has no code")
    target = _extracted_dir / fn.code_sha_256.replace("/", "_").replace("+", "-")
    if not target.exists():
        staging = Path(tempfile.mkdtemp(dir=_extracted_dir.parent))
        with zipfile.ZipFile(io.BytesIO(code_bytes)) as archive:
            archive.extractall(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(target)
    return target


class Worker:
    """One warm execution environment (a child process) for one WorkerSpec."""

    def __init__(
        self,
        spec: WorkerSpec,
        credentials: Credentials,
        profile: str | None = None,
        extra_ro: tuple[str, ...] = (),
    ) -> None:
        self.spec = spec
        self.expires_at = credentials.expires_at
        self._lines: list[str] = []
        self._lines_changed = threading.Condition()
        request_read, request_write = os.pipe()
        response_read, response_write = os.pipe()
        log_stream = f"{time.strftime('%Y/%m/%d')}/[{spec.version}]{uuid.uuid4().hex}"
        self.log_stream = log_stream
        # Each environment has its own scratch space, as each Lambda environment has its /tmp.
        self.tmp_dir = tempfile.mkdtemp(prefix="lambda-env-")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "HOME": self.tmp_dir,
            "TMPDIR": self.tmp_dir,
            "PYTHONPATH": spec.python_path,
            "PYTHONDONTWRITEBYTECODE": "1",
            "LAMBDA_TASK_ROOT": spec.code_dir,
            "_HANDLER": spec.handler,
            "_LOCALCLOUD_FUNCTION_ARN": spec.function_arn,
            "_LOCALCLOUD_FDS": f"{request_read},{response_write}",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_REGION": _settings.region,
            "AWS_DEFAULT_REGION": _settings.region,
            "AWS_ENDPOINT_URL": _settings.endpoint,
            # No X-Ray daemon here: the SDK's own switch, so traced handlers run unchanged.
            "AWS_XRAY_SDK_ENABLED": "false",
            "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
            **dict(spec.environment),
            # Reserved variables: the function's configuration cannot override them.
            "AWS_ACCESS_KEY_ID": credentials.access_key_id,
            "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
            "AWS_SESSION_TOKEN": credentials.session_token,
        }
        # User sandboxes (image functions) run the way Lambda runs them; the control plane's
        # own zip functions run as the local cloud's user.
        from sandboxctl.localcloud import lambda_profile

        chosen = profile or (_settings.lambda_profile if spec.image else "none")
        if chosen != "none":
            env.pop("TMPDIR")  # the profile gives the environment its own private /tmp
        launch = lambda_profile.command(
            chosen,
            [sys.executable, "-c", _BOOTSTRAP, _WORKER],
            env,
            spec.code_dir,
            ephemeral_mb=spec.ephemeral_mb,
            extra_ro=[*(p for p in spec.python_path.split(os.pathsep) if p), *extra_ro],
        )
        self.profile = chosen
        self._uid_lease = launch.lease
        try:
            self.process = subprocess.Popen(
                launch.argv,
                cwd=launch.cwd,
                env=launch.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(request_read, response_write),
                start_new_session=True,
            )
        except BaseException:
            if self._uid_lease is not None:
                self._uid_lease.close()
            raise
        finally:
            os.close(request_read)
            os.close(response_write)
        self._requests = os.fdopen(request_write, "wb")
        self._responses = os.fdopen(response_read, "rb")
        self._reader = threading.Thread(target=self._read_logs, daemon=True)
        self._reader.start()

    def _read_logs(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._lines_changed:
                self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._lines_changed.notify_all()
        with self._lines_changed:
            self._lines.append("")  # EOF marker
            self._lines_changed.notify_all()

    def _collect_logs(self, request_id: str, deadline: float) -> str:
        """Lines from this request's START to its REPORT (or whatever arrived by `deadline`)."""
        with self._lines_changed:
            while not any(
                line.startswith(f"REPORT RequestId: {request_id}") for line in self._lines
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.alive:
                    break
                self._lines_changed.wait(min(remaining, 0.5))
            lines, self._lines = self._lines, []
        start = next(
            (i for i, ln in enumerate(lines) if request_id in ln and ln.startswith("START")), 0
        )
        return "\n".join(line for line in lines[start:] if line)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def invoke(self, event: Any, request_id: str) -> tuple[dict[str, Any], str]:
        """Run one request; returns (response, logs). Raises InvocationError on crash/timeout."""
        deadline_ms = int((time.time() + self.spec.timeout) * 1000)
        request = {
            "request_id": request_id,
            "event": event,
            "deadline_ms": deadline_ms,
            "version": self.spec.version,
        }
        started = time.monotonic()
        try:
            self._requests.write(json.dumps(request).encode("utf-8") + b"\n")
            self._requests.flush()
        except (BrokenPipeError, OSError) as exc:
            raise InvocationError("Runtime.ExitError", f"environment exited: {exc}") from exc
        ready, _, _ = select.select([self._responses], [], [], self.spec.timeout)
        if not ready:
            logs = self._collect_logs(request_id, time.monotonic())
            self.kill()
            message = (
                f"RequestId: {request_id} Error: Task timed out after "
                f"{self.spec.timeout:.2f} seconds"
            )
            raise InvocationError("Sandbox.Timedout", f"{message}\n{logs}")
        raw = self._responses.readline()
        if not raw:
            self.process.wait(timeout=5)
            logs = self._collect_logs(request_id, time.monotonic() + 1)
            raise InvocationError(
                "Runtime.ExitError",
                f"RequestId: {request_id} Error: Runtime exited with error: "
                f"exit status {self.process.returncode}\n{logs}",
            )
        logs = self._collect_logs(request_id, time.monotonic() + 2)
        response: dict[str, Any] = json.loads(raw)
        response["duration"] = time.monotonic() - started
        return response, logs

    def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        if self._uid_lease is not None:
            self._uid_lease.close()  # its PID namespace, and so every process of the uid, is gone
        for handle in (self._requests, self._responses):
            with contextlib.suppress(OSError):
                handle.close()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)


class WorkerPool:
    """Warm environments per WorkerSpec; idle ones beyond MAX_IDLE_WORKERS are retired (LRU)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: OrderedDict[int, Worker] = OrderedDict()
        self._busy: set[Worker] = set()

    def acquire(self, spec: WorkerSpec) -> Worker:
        retired: list[Worker] = []
        chosen: Worker | None = None
        with self._lock:
            for worker_id, worker in list(self._idle.items()):
                if worker.spec != spec:
                    continue
                del self._idle[worker_id]
                if worker.alive and worker.expires_at - time.time() > CREDENTIAL_MARGIN_SECONDS:
                    chosen = worker
                    break
                retired.append(worker)
            # Environments of older code/configuration of this function are never reused.
            for worker_id, worker in list(self._idle.items()):
                if worker.spec.function_name == spec.function_name and worker.spec != spec:
                    del self._idle[worker_id]
                    retired.append(worker)
        for worker in retired:
            worker.kill()
        if chosen is None:
            credentials = assume_role_as_service(spec.role, spec.function_name)
            chosen = Worker(spec, credentials)
        with self._lock:
            self._busy.add(chosen)
        return chosen

    def release(self, worker: Worker, healthy: bool) -> None:
        evicted: list[Worker] = []
        with self._lock:
            self._busy.discard(worker)
            if healthy and worker.alive:
                self._idle[id(worker)] = worker
                while len(self._idle) > MAX_IDLE_WORKERS:
                    evicted.append(self._idle.popitem(last=False)[1])
            else:
                evicted.append(worker)
        for old in evicted:
            old.kill()

    def count(self, function_name: str) -> int:
        with self._lock:
            workers = list(self._idle.values()) + list(self._busy)
        return sum(1 for w in workers if w.spec.function_name == function_name and w.alive)

    def shutdown(self) -> None:
        with self._lock:
            workers = list(self._idle.values()) + list(self._busy)
            self._idle.clear()
            self._busy.clear()
        for worker in workers:
            worker.kill()


_pool = WorkerPool()
_async_invocations = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lambda-async")


def environment_count(function_name: str) -> int:
    """Execution environments (idle or busy) the function has now."""
    return _pool.count(function_name)


def shutdown() -> None:
    """Stop every execution environment (the local cloud is stopping)."""
    _pool.shutdown()


atexit.register(shutdown)


# ---------------------------------------------------------------------- the moto hooks
def run_function(fn: Any, event: Any) -> tuple[str, bool, str]:
    """Invoke `fn` with `event`; returns (payload JSON, errored, logs) like `_invoke_lambda`."""
    if isinstance(event, (str, bytes)):
        event = json.loads(event or "{}")
    request_id = str(uuid.uuid4())
    spec: WorkerSpec | None = None
    worker: Worker | None = None
    try:
        spec = WorkerSpec.from_function(fn)
        worker = _pool.acquire(spec)
        response, logs = worker.invoke(event, request_id)
    except InvocationError as exc:
        if worker is not None:
            _pool.release(worker, healthy=False)
        message, _, logs = str(exc).partition("\n")
        payload = {"errorMessage": message, "errorType": exc.error_type}
        if logs:
            fn.save_logs(logs)
        return json.dumps(payload), True, logs
    _pool.release(worker, healthy=response["ok"] or worker.alive)
    if logs:
        fn.save_logs(logs)
    return json.dumps(response["payload"]), not response["ok"], logs


def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
    self.logs_backend.ensure_log_group(self.logs_group_name)
    return run_function(self, {} if event is None else event)


_inflight: dict[str, int] = {}
_inflight_lock = threading.Lock()


def _throttled() -> Exception:
    from moto.awslambda.exceptions import LambdaClientError

    error = LambdaClientError("TooManyRequestsException", "Rate Exceeded.")
    error.code = 429
    return error


def _reserve(fn: Any) -> None:
    """Count a synchronous invocation against the function's reserved concurrency."""
    reserved = fn.reserved_concurrency
    with _inflight_lock:
        running = _inflight.get(fn.function_name, 0)
        if reserved is not None and running >= int(reserved):
            raise _throttled()
        _inflight[fn.function_name] = running + 1


def _release(fn: Any) -> None:
    with _inflight_lock:
        _inflight[fn.function_name] = max(0, _inflight.get(fn.function_name, 1) - 1)


def _invoke(self: Any, body: Any, request_headers: Any, response_headers: Any) -> str | bytes:
    event = json.loads(body) if body else {}
    invocation_type = request_headers.get("x-amz-invocation-type", "RequestResponse")
    if invocation_type == "DryRun":
        return b""
    if invocation_type == "Event":
        # Asynchronous: accepted now (202), run later in the background, as Lambda does.
        _async_invocations.submit(self._invoke_lambda, event)
        return b""
    # Reserved concurrency caps simultaneous runs (0 = never runs): the excess is throttled.
    _reserve(self)
    try:
        payload, errored, logs = self._invoke_lambda(event=event)
    finally:
        _release(self)
    if errored:
        response_headers["x-amz-function-error"] = "Unhandled"
    tail = logs.encode("utf-8")[-LOG_TAIL_BYTES:]
    response_headers["x-amz-log-result"] = base64.b64encode(tail).decode("ascii")
    response_headers["x-amz-executed-version"] = str(self.version)
    return payload.encode("utf-8")


def check() -> None:
    from moto.awslambda.models import LambdaFunction

    for name in ("_invoke_lambda", "invoke", "save_logs"):
        if not callable(getattr(LambdaFunction, name, None)):
            raise FidelityCheckError(f"moto LambdaFunction.{name} is gone: lambda_exec needs it")
    import inspect

    params = list(inspect.signature(LambdaFunction.invoke).parameters)
    if params[:4] != ["self", "body", "request_headers", "response_headers"]:
        raise FidelityCheckError(f"LambdaFunction.invoke signature changed: {params}")
    source = inspect.getsource(LambdaFunction.__init__)
    for attribute in ("self.environment_vars", "self.package_type", "self.image_config"):
        if attribute not in source:
            raise FidelityCheckError(f"LambdaFunction no longer sets {attribute}")


def apply() -> None:
    from moto.awslambda.models import LambdaFunction

    patch(LambdaFunction, "_invoke_lambda", _invoke_lambda)
    patch(LambdaFunction, "invoke", _invoke)
