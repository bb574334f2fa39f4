"""The embedded local cloud: moto in server mode, corrected toward AWS, running the real template.

One `LocalCloud` per process: moto keeps its backends in module globals and the Step Functions
interpreter finds the server through `MOTO_PORT`, so a second cloud in the same process would
share (and corrupt) the first one's state. Tests that need another cloud (a fault profile) start
it in a child process with `SpawnedLocalCloud`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TextIO

import boto3
from botocore.config import Config
from moto.core import config as moto_config
from moto.moto_api._internal.models import moto_api_backend

from sandboxctl.localcloud import deploy, httpapi
from sandboxctl.localcloud import fixes as fixes_pkg


def _project_root() -> Path:
    """The source tree the local cloud deploys: $SANDBOXCTL_PROJECT_ROOT, this checkout, or cwd.

    An installed sandboxctl (not editable) has no template.yaml beside it; a checkout's working
    directory then stands in.
    """
    configured = os.environ.get("SANDBOXCTL_PROJECT_ROOT")
    if configured:
        return Path(configured).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "template.yaml").exists() or not (Path.cwd() / "template.yaml").exists():
        return checkout
    return Path.cwd().resolve()


PROJECT_ROOT = _project_root()


def require_project(project_root: Path = PROJECT_ROOT) -> None:
    """Fail clearly when the project's sources (what the local cloud deploys) are absent."""
    needed = ("template.yaml", "functions", "statemachines", "templates", "sandbox_runtime")
    missing = [name for name in needed if not (project_root / name).exists()]
    if missing:
        raise LocalCloudError(
            "the local cloud deploys the project's own sources (template.yaml, functions/, "
            "statemachines/, templates/, sandbox_runtime/) from a source checkout; "
            f"{', '.join(missing)} not found in {project_root}. Run it from a checkout of "
            "sandbox-fleet or set SANDBOXCTL_PROJECT_ROOT to one."
        )


DEFAULT_STACK_NAME = "sandbox-fleet-local"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"
ADMIN_USER = "sandbox-fleet-local-admin"
# Parameters the template needs that have no sensible default outside a real account.
DEFAULT_PARAMETERS = {
    "Stage": "local",
    "FirebaseProjectId": "sandbox-fleet-local",
    # The usual dev servers (Vite, Create React App / Next.js) may call the local HTTP API.
    "CorsAllowedOrigins": "http://localhost:5173,http://localhost:3000",
}
STACK_DEADLINE_SECONDS = 120.0
# pytest's own per-test variable: it changes while a cloud runs and is not ours to give back.
_NOT_OURS_ENVIRON = ("PYTEST_CURRENT_TEST",)
_TERMINAL_FAILURES = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED")

_active_lock = threading.Lock()
_active: LocalCloud | None = None


class LocalCloudError(RuntimeError):
    """The local cloud could not start or deploy the template."""


class LocalCloud:
    """moto server + fidelity fixes + the deployed template, with IAM enforcement on."""

    def __init__(
        self,
        port: int = 0,
        faults: str | None = None,
        seed: int = 0,
        project_root: Path = PROJECT_ROOT,
        *,
        template: Path | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
        parameters: dict[str, str] | None = None,
        region: str = DEFAULT_REGION,
        lambda_profile: str = "lambda",
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0 (any free port) or 1-65535, not {port}")
        self.port = port
        self.faults = faults
        self.seed = seed
        self.project_root = Path(project_root).resolve()
        self.template_path = (template or self.project_root / "template.yaml").resolve()
        self.stack_name = stack_name
        self.parameters = {**DEFAULT_PARAMETERS, **(parameters or {})}
        self.region = region
        # How user sandbox functions run: sandboxctl/localcloud/lambda_profile.py.
        self.lambda_profile = lambda_profile
        self.account_id = DEFAULT_ACCOUNT
        self.endpoint = ""
        self.outputs: dict[str, str] = {}
        self.resources: list[tuple[str, str, str]] = []
        self.fixes_applied: list[str] = []
        self.startup_seconds = 0.0
        self._server: Any = None
        self._admin_keys: tuple[str, str] | None = None
        self._session: boto3.session.Session | None = None
        self._session_lock = threading.Lock()
        self._started = False
        self._saved_environ: dict[str, str] | None = None
        self._saved_moto_config: moto_config.DefaultConfig | None = None
        self._saved_log_level: int | None = None
        # The Firebase token issuer for local use: a fresh key per cloud.
        self.token_issuer = httpapi.TokenIssuer.generate(self.parameters["FirebaseProjectId"])

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalCloud:
        """Start moto, apply every fix, enforce IAM, deploy the template. Fails loudly."""
        global _active
        began = time.monotonic()
        with _active_lock:
            if _active is not None:
                raise LocalCloudError(
                    "a LocalCloud is already running in this process (moto state is global); "
                    "start another one with SpawnedLocalCloud"
                )
            _active = self
        try:
            self._start_server()
            self._configure_moto()
            self._create_admin()
            self._enforce_iam()
            if self.template_path.exists():
                self._deploy()
            self._started = True
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _start_server(self) -> None:
        self._save_process_state()
        # werkzeug logs every request; moto warns once per resource type it cannot create.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", message="Tried to parse AWS::", category=UserWarning)
        # Fixes patch moto's classes, so they go in before the server handles a request.
        self.fixes_applied = fixes_pkg.apply_all()
        try:
            self._server = httpapi.moto_server("127.0.0.1", self.port)
        except OSError as exc:
            raise LocalCloudError(
                f"cannot listen on 127.0.0.1:{self.port}: {exc.strerror}"
            ) from exc
        self._server.start()
        _host, port = self._server.get_host_and_port()
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        # The Step Functions interpreter calls http://localhost:$MOTO_PORT for service tasks.
        os.environ["MOTO_PORT"] = str(port)
        # As on AWS, an image function needs its image in ECR; CodeSha256 is the image digest.
        os.environ["MOTO_LAMBDA_STUB_ECR"] = "false"
        from sandboxctl.localcloud.fixes import lambda_exec

        lambda_exec.configure(
            endpoint=self.endpoint, region=self.region, project_root=self.project_root
        )
        httpapi.configure(self.endpoint, self.account_id, self.region, self.token_issuer)
        lambda_exec.set_lambda_profile(self.lambda_profile)
        faults_module = _faults_module()
        if faults_module is not None:
            faults_module.configure(self.faults, self.seed)
        elif self.faults:
            raise LocalCloudError(f"fault profile {self.faults!r} requested but none are installed")

    def _moto_api(self, path: str, body: bytes, content_type: str) -> None:
        request = urllib.request.Request(  # noqa: S310 - our own http://127.0.0.1 server
            f"{self.endpoint}{path}",
            data=body,
            headers={"Content-Type": content_type},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            if response.status >= 300:
                raise LocalCloudError(f"{path}: HTTP {response.status}")

    def _configure_moto(self) -> None:
        # moto's state outlives a stopped cloud in this process: start from an empty account,
        # with enforcement off until the operator user exists.
        self._moto_api("/moto-api/reset-auth", b"inf", "text/plain")
        self._moto_api("/moto-api/reset", b"", "application/json")
        config = {"stepfunctions": {"execute_state_machine": True}}
        self._moto_api("/moto-api/config", json.dumps(config).encode(), "application/json")

    def _create_admin(self) -> None:
        """The operator's own IAM user: what `sam deploy` and sandboxctl act as."""
        iam = self._raw_client("iam", "bootstrap", "bootstrap")
        iam.create_user(UserName=ADMIN_USER)
        iam.put_user_policy(
            UserName=ADMIN_USER,
            PolicyName="local-cloud-operator",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    # The account operator: like the deploying principal of a real account.
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
        self._admin_keys = (key["AccessKeyId"], key["SecretAccessKey"])

    def _enforce_iam(self) -> None:
        # From the next request on, every call is authenticated and authorized.
        self._moto_api("/moto-api/reset-auth", b"0", "text/plain")

    def _deploy(self) -> None:
        template = deploy.load_template(self.template_path)
        artifacts = f"{self.stack_name}-artifacts-{self.account_id}"
        s3 = self.client("s3")
        s3.create_bucket(Bucket=artifacts)
        packaged = deploy.package(template, self.template_path.parent, artifacts)
        for key, body in packaged.uploads.items():
            s3.put_object(Bucket=artifacts, Key=key, Body=body)
        from sandboxctl.localcloud.fixes import lambda_exec

        for key, directory in packaged.code_dirs.items():
            lambda_exec.register_code_dir(artifacts, key, directory)
        transformed = deploy.transform(packaged.template, self.region, self.parameters)
        template_key = f"templates/{self.stack_name}.json"
        s3.put_object(Bucket=artifacts, Key=template_key, Body=json.dumps(transformed).encode())
        # moto creates the whole stack inside the CreateStack call: on a loaded machine that
        # outlasts botocore's 60 s read timeout, and a retried CreateStack finds its own stack.
        once = Config(read_timeout=STACK_DEADLINE_SECONDS, retries={"total_max_attempts": 1})
        cfn = self.client("cloudformation")
        declared = transformed.get("Parameters", {})
        self.client("cloudformation", config=once).create_stack(
            StackName=self.stack_name,
            TemplateURL=f"https://{artifacts}.s3.amazonaws.com/{template_key}",
            Parameters=[
                {"ParameterKey": k, "ParameterValue": v}
                for k, v in self.parameters.items()
                if k in declared
            ],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        stack = self._wait_for_stack(cfn)
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        self.resources = [
            (r["LogicalResourceId"], r["ResourceType"], r.get("PhysicalResourceId", ""))
            for page in cfn.get_paginator("list_stack_resources").paginate(
                StackName=self.stack_name
            )
            for r in page["StackResourceSummaries"]
            # moto lists resources it did not create (false conditions, unsupported types)
            # with empty fields; AWS lists only what the stack holds.
            if r.get("LogicalResourceId")
        ]
        self._upload_user_template(s3)

    def _wait_for_stack(self, cfn: Any) -> dict[str, Any]:
        deadline = time.monotonic() + STACK_DEADLINE_SECONDS
        while True:
            stack: dict[str, Any] = cfn.describe_stacks(StackName=self.stack_name)["Stacks"][0]
            status = stack["StackStatus"]
            if status == "CREATE_COMPLETE":
                return stack
            if status in _TERMINAL_FAILURES or status.endswith("_FAILED"):
                events = cfn.describe_stack_events(StackName=self.stack_name)["StackEvents"]
                reasons = [
                    f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                    for e in events
                    if e.get("ResourceStatusReason") and "FAILED" in e["ResourceStatus"]
                ]
                raise LocalCloudError(f"stack {self.stack_name} {status}: {reasons}")
            if time.monotonic() > deadline:
                raise LocalCloudError(f"stack {self.stack_name} still {status} after deadline")
            time.sleep(0.05)

    def _upload_user_template(self, s3: Any) -> None:
        user_template = self.project_root / "templates" / "user-sandbox.yaml"
        bucket = self.outputs.get("TemplatesBucketName")
        key = self.outputs.get("UserTemplateKey")
        if bucket and key and user_template.exists():
            s3.put_object(Bucket=bucket, Key=key, Body=user_template.read_bytes())

    def _save_process_state(self) -> None:
        if self._saved_environ is not None:
            return
        self._saved_environ = dict(os.environ)
        self._saved_moto_config = copy.deepcopy(moto_config.default_user_config)
        self._saved_log_level = logging.getLogger("werkzeug").level

    def _restore_process_state(self) -> None:
        """Undo what start() changed in this process beyond the server itself.

        moto keeps its patches, IAM enforcement, backends and config in process globals, and
        the interpreter reads MOTO_PORT: left behind, they make every later in-process moto user
        (``mock_aws`` unit tests) run against a patched, enforcing moto that is not as shipped.
        """
        if self._saved_environ is None:
            return
        faults_module = _faults_module()
        if faults_module is not None:
            faults_module.configure(None, 0)
        moto_api_backend.reset()
        # Every fix, fault hook and moto setting (IAM enforcement) back as before start().
        fixes_pkg.unapply_all()
        if self._saved_moto_config is not None:
            # moto's own /moto-api/config only replaces whole sections, never adds keys.
            moto_config.default_user_config.update(self._saved_moto_config)
        logging.getLogger("werkzeug").setLevel(self._saved_log_level or logging.NOTSET)
        saved = self._saved_environ
        for key in os.environ.keys() - saved.keys():
            if key not in _NOT_OURS_ENVIRON:
                del os.environ[key]
        for key, value in saved.items():
            if key not in _NOT_OURS_ENVIRON and os.environ.get(key) != value:
                os.environ[key] = value
        self._saved_environ = self._saved_moto_config = self._saved_log_level = None

    def stop(self) -> None:
        """Stop worker processes and the server; safe to call twice."""
        global _active
        from sandboxctl.localcloud.fixes import lambda_exec

        lambda_exec.shutdown()
        if self._server is not None:
            self._server.stop()
            self._server = None
        self._restore_process_state()
        with _active_lock:
            if _active is self:
                _active = None
        self._started = False
        self._session = None

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ clients
    @property
    def admin_credentials(self) -> tuple[str, str]:
        """(access key id, secret) of the operator user; only meaningful while running."""
        if self._admin_keys is None:
            raise LocalCloudError("the local cloud is not started")
        return self._admin_keys

    def _raw_client(self, service: str, key: str, secret: str, token: str | None = None) -> Any:
        return boto3.session.Session(
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=token,
            region_name=self.region,
        ).client(
            service,
            endpoint_url=self.endpoint,
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    def session(self) -> boto3.session.Session:
        """A boto3 session with the operator's credentials (set endpoint_url on clients)."""
        key, secret = self.admin_credentials
        return boto3.session.Session(
            aws_access_key_id=key, aws_secret_access_key=secret, region_name=self.region
        )

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for `service` against the local cloud, as the operator."""
        kwargs.setdefault("endpoint_url", self.endpoint)
        kwargs.setdefault("region_name", self.region)
        # Creating a session costs tens of milliseconds; clients themselves are thread-safe,
        # session.client() is not, hence one shared session behind a lock.
        with self._session_lock:
            if self._session is None:
                self._session = self.session()
            return self._session.client(service, **kwargs)

    def session_for_role(
        self, role_arn: str, session_name: str = "local", service: str | None = None
    ) -> boto3.session.Session:
        """Temporary credentials of `role_arn` exactly as its trusted service would receive them.

        This is what a function's code holds at run time (and what an attacker who stole them
        would hold): STS AssumeRole credentials of the role, checked against its trust policy.
        `service` defaults to the role's trusted service (Lambda when it trusts several).
        """
        from sandboxctl.localcloud.fixes import lambda_exec

        service = service or lambda_exec.trusted_service(role_arn)
        creds = lambda_exec.assume_role_as_service(role_arn, session_name, service)
        return boto3.session.Session(
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            aws_session_token=creds.session_token,
            region_name=self.region,
        )

    @property
    def api_url(self) -> str:
        """Where the local cloud serves the stack's HTTP API (its $default stage)."""
        api = self.outputs.get("HttpApiUrl", "")
        api_id = api.split("//", 1)[-1].split(".", 1)[0]
        return httpapi.api_url(self.endpoint, api_id) if api_id else ""

    def id_token(self, uid: str, expires_in: int = httpapi.ID_TOKEN_SECONDS) -> str:
        """A Firebase ID token for `uid`, signed by the local cloud's issuer."""
        return self.token_issuer.token(uid, expires_in=expires_in)

    def connection(self) -> dict[str, Any]:
        """What a client in another process needs: endpoint, region, operator keys, stack."""
        key, secret = self.admin_credentials
        return {
            "api_url": self.api_url,
            "token_issuer": self.token_issuer.to_dict(),
            "endpoint": self.endpoint,
            "region": self.region,
            "account_id": self.account_id,
            "stack_name": self.stack_name,
            "aws_access_key_id": key,
            "aws_secret_access_key": secret,
        }


def _faults_module() -> Any:
    """The fault-profile module (owned by the local cloud's fault work), if installed."""
    try:
        from sandboxctl.localcloud import faults
    except ImportError:
        return None
    return faults


# ---------------------------------------------------------------------- connection files
def state_dir(project_root: Path = PROJECT_ROOT) -> Path:
    return project_root / ".sandboxctl"


def connection_file(port: int, project_root: Path = PROJECT_ROOT) -> Path:
    """Where `sandboxctl local up` leaves the connection details for other processes."""
    return state_dir(project_root) / f"local-cloud-{port}.json"


def write_connection(cloud: LocalCloud) -> Path:
    path = connection_file(cloud.port, cloud.project_root)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({**cloud.connection(), "outputs": cloud.outputs}, handle)
    return path


def running_connections(project_root: Path = PROJECT_ROOT) -> list[dict[str, Any]]:
    """Connection details of every `sandboxctl local up` still serving (stale files skipped)."""
    found = []
    for path in sorted(state_dir(project_root).glob("local-cloud-*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            with urllib.request.urlopen(  # noqa: S310 - our own http://127.0.0.1 server
                f"{data['endpoint']}/_localcloud/securetoken/jwk", timeout=2
            ):
                pass
        except (OSError, ValueError, KeyError):
            continue
        found.append(data)
    return found


def load_connection(endpoint: str, project_root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Connection details of a running `sandboxctl local up` at `endpoint` (raises if none)."""
    port = endpoint.rstrip("/").rsplit(":", 1)[-1]
    if not port.isdigit():
        raise LocalCloudError(f"{endpoint!r} is not a local cloud endpoint (http://127.0.0.1:PORT)")
    path = connection_file(int(port), project_root)
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise LocalCloudError(f"no local cloud is serving at {endpoint} ({path} missing)") from exc
    return data


# ---------------------------------------------------------------------- `sandboxctl local up`
def print_resources(cloud: LocalCloud, out: TextIO) -> None:
    width = max((len(r[0]) for r in cloud.resources), default=10)
    type_width = max((len(r[1]) for r in cloud.resources), default=10)
    out.write(f"{'LOGICAL ID':<{width}}  {'TYPE':<{type_width}}  PHYSICAL ID\n")
    for logical_id, resource_type, physical_id in sorted(cloud.resources):
        out.write(f"{logical_id:<{width}}  {resource_type:<{type_width}}  {physical_id}\n")


@contextmanager
def _signals_stop(stop: threading.Event, serving: threading.Event) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        if not serving.is_set():
            raise KeyboardInterrupt  # still starting: abandon the start-up (cleaned up on exit)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


FIRST_IMAGE_TAG = "v1"
FIRST_ROLLOUT_DEADLINE_S = 180.0


def push_first_image(cloud: LocalCloud, out: TextIO) -> None:
    """What CI does after a deploy: push the first sandbox image, so signups can provision."""
    from sandboxctl.controlplane import ControlPlane

    cp = ControlPlane.from_local_cloud(cloud)
    if cp.desired_image():
        return
    pushed = cp.push_image(FIRST_IMAGE_TAG)
    rollout = cp.wait_for_rollout(pushed["image_digest"], FIRST_ROLLOUT_DEADLINE_S)
    if rollout.get("status") != "COMPLETED":
        raise LocalCloudError(f"the first image's rollout ended {rollout.get('status')}")
    out.write(f"first image: {pushed['image_uri']} (desired; signups provision on it)\n")


def _throttle_rates() -> str:
    """The `throttle` profile's rate per bucket, when it is on (issue 11)."""
    faults_module = _faults_module()
    profile = faults_module.active_profile() if faults_module is not None else None
    if profile is None or not profile.throttle:
        return ""
    rates = ", ".join(f"{name} {rate:g}/s" for name, rate in profile.rates().items())
    return f"throttle rates (quota scale {profile.quota_scale:g}): {rates}\n"


def serve(
    port: int = 0,
    faults: str | None = None,
    seed: int = 0,
    out: TextIO | None = None,
    first_image: bool = True,
    lambda_profile: str = "lambda",
) -> int:
    """`sandboxctl local up`: start, print endpoint + resources + `ready`, serve until signalled."""
    out = out or sys.stdout
    require_project()
    stop, serving = threading.Event(), threading.Event()
    with _signals_stop(stop, serving):
        out.write("starting the local cloud and deploying template.yaml (Ctrl-C to abandon)\n")
        out.flush()
        return _serve(
            LocalCloud(port=port, faults=faults, seed=seed, lambda_profile=lambda_profile),
            stop,
            serving,
            out,
            first_image,
        )


def _serve(
    cloud_to_start: LocalCloud,
    stop: threading.Event,
    serving: threading.Event,
    out: TextIO,
    first_image: bool,
) -> int:
    from sandboxctl.localcloud import lambda_profile as profiles

    with cloud_to_start as cloud:
        if first_image:
            push_first_image(cloud, out)
        path = write_connection(cloud)
        out.write(f"endpoint: {cloud.endpoint}\n")
        out.write(f"http api: {cloud.api_url}  (tokens: sandboxctl local token UID)\n")
        out.write(
            f"region: {cloud.region}  account: {cloud.account_id}  stack: {cloud.stack_name}\n"
        )
        out.write(f"faults: {cloud.faults or 'none'}  seed: {cloud.seed}  IAM enforcement: on\n")
        out.write(f"user functions run under the {cloud.lambda_profile} profile\n")
        for missing in profiles.limitations(cloud.lambda_profile):
            out.write(f"  left out here: {missing}\n")
        out.write(_throttle_rates())
        out.write(f"operator credentials: {path}\n\n")
        print_resources(cloud, out)
        out.write(f"\nlocal cloud ready in {cloud.startup_seconds:.1f}s (Ctrl-C to stop)\n")
        out.flush()
        serving.set()
        try:
            while not stop.wait(0.5):
                pass
        finally:
            path.unlink(missing_ok=True)
            out.write("local cloud stopped\n")
            out.flush()
    return 0
