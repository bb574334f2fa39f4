"""sandboxctl: the operator CLI of sandbox-fleet.

Works against real AWS (default credential chain, `--stack`, `--region`) and against a local
cloud (`--endpoint URL` or SANDBOXCTL_ENDPOINT). Exit status: 0 ok, 1 failure, 2 usage error;
an error is one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from fleet.models import DATASET_SUFFIXES
from rich.console import Console

from sandboxctl import render
from sandboxctl.controlplane import (
    USER_STATUSES,
    ControlPlane,
    SandboxctlError,
    UsageError,
    console_url,
    describe_client_error,
    resolve_target,
    save_figures,
    validate_uid,
)

PROG = "sandboxctl"
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
ENVIRONMENT_HELP = """\
environment variables:
  SANDBOXCTL_ENDPOINT   local cloud URL, as --endpoint (omit for real AWS)
  SANDBOXCTL_STACK      control-plane stack name, as --stack (default sandbox-fleet-dev)
  AWS_REGION, AWS_DEFAULT_REGION
                        region when --region is not given (default us-east-1)
  AWS_PROFILE and the rest of the AWS credential chain
                        credentials for real AWS (the local cloud's come from its file)
  COLUMNS               table width (piped output defaults to 160)
  SANDBOXCTL_DEBUG=1    full tracebacks and moto's logs
"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sandbox-fleet")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _positive(kind: type[float] | type[int]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 0 (any free port) to 65535")
    return value


def _uid(text: str) -> str:
    try:
        return validate_uid(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    # Connection options are accepted before or after the command; SUPPRESS keeps the one given.
    conn = _Parser(add_help=False)
    conn.add_argument(
        "--endpoint",
        default=argparse.SUPPRESS,
        help="local cloud URL (env SANDBOXCTL_ENDPOINT); omit for real AWS",
    )
    conn.add_argument(
        "--stack",
        default=argparse.SUPPRESS,
        help="control-plane stack name (env SANDBOXCTL_STACK; default sandbox-fleet-dev)",
    )
    conn.add_argument("--region", default=argparse.SUPPRESS, help="AWS region")
    as_json = _Parser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON for scripts")
    waiting = _Parser(add_help=False)
    waiting.add_argument(
        "--timeout",
        type=_positive(float),
        default=600.0,
        metavar="SECONDS",
        help="give up waiting after this long (default 600)",
    )

    parser = _Parser(
        prog=PROG,
        description=__doc__,
        parents=[conn],
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "signup",
        parents=[conn, as_json, waiting],
        help="sign a user up exactly as the Firebase function does",
    )
    p.add_argument("uid", type=_uid, metavar="UID", help="the Firebase UID to sign up")
    p.add_argument("--email", default=None, help="the user's email, as Firebase reports it")
    p.add_argument("--wait", action="store_true", help="return once the user is READY or FAILED")

    sub.add_parser(
        "doctor",
        parents=[conn, as_json, waiting],
        help="check what must work before users sign up (exit 0 ok, 1 a check failed)",
    )

    p = sub.add_parser(
        "delete-user", parents=[conn, as_json, waiting], help="report a Firebase user deletion"
    )
    p.add_argument("uid", type=_uid, metavar="UID", help="the Firebase UID that was deleted")
    p.add_argument("--wait", action="store_true", help="return once the user is DELETED")

    p = sub.add_parser("users", parents=[conn, as_json], help="list users from the registry")
    p.add_argument(
        "--status", choices=USER_STATUSES, default=None, help="only users in this status"
    )

    p = sub.add_parser(
        "upload", parents=[conn, as_json], help="put a data file under the user's prefix"
    )
    p.add_argument("uid", type=_uid, metavar="UID", help="whose prefix the file goes to")
    p.add_argument(
        "file", type=Path, metavar="FILE", help=f"a data file ({', '.join(DATASET_SUFFIXES)})"
    )
    p.add_argument("--as", dest="name", default=None, metavar="NAME", help="dataset name")

    p = sub.add_parser(
        "run", parents=[conn, as_json], help="run code in the user's own sandbox function"
    )
    p.add_argument("uid", type=_uid, metavar="UID", help="whose sandbox runs the code")
    p.add_argument(
        "--dataset", required=True, metavar="NAME", help="the uploaded file `df` is read from"
    )
    code = p.add_mutually_exclusive_group(required=True)
    code.add_argument("--code-file", type=Path, metavar="FILE", help="read the code from FILE")
    code.add_argument("--code", metavar="STR", help="the code itself")
    p.add_argument(
        "--timeout-s",
        type=_positive(float),
        default=None,
        metavar="SECONDS",
        help="the run's own time limit inside the sandbox (not how long to wait; capped by it)",
    )
    p.add_argument(
        "--figures-dir",
        type=Path,
        default=Path("sandboxctl-figures"),
        help="where figures are saved as PNG (default ./sandboxctl-figures)",
    )

    p = sub.add_parser(
        "push-image",
        parents=[conn, as_json, waiting],
        help="local cloud: push a new sandbox image manifest (emits the ECR push event)",
    )
    p.add_argument("tag", metavar="TAG", help="image tag (a new manifest is made for it)")
    p.add_argument("--wait", action="store_true", help="wait for the rollout it starts")

    sub.add_parser("rollouts", parents=[conn, as_json], help="image rollouts and their results")

    p = sub.add_parser(
        "reconcile",
        parents=[conn, as_json, waiting],
        help="run the Reconcile workflow now, wait for it and report what it did",
    )
    p.add_argument("--dry-run", action="store_true", help="only plan: report what it would change")
    p.add_argument(
        "--no-wait", action="store_true", help="start it and print the execution ARN only"
    )

    p = sub.add_parser(
        "logs", parents=[conn, as_json], help="the user function's recent log events"
    )
    p.add_argument("uid", type=_uid, metavar="UID", help="whose sandbox function's logs")
    p.add_argument("--limit", type=_positive(int), default=50, help="newest N events (default 50)")

    p = sub.add_parser("executions", parents=[conn, as_json], help="recent workflow executions")
    p.add_argument(
        "--workflow",
        choices=("ProvisionUser", "DeprovisionUser", "RolloutImage", "Reconcile"),
        default=None,
        help="only this workflow",
    )
    p.add_argument(
        "--status",
        choices=("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"),
        default=None,
        help="only executions in this status",
    )
    p.add_argument(
        "--limit", type=_positive(int), default=20, help="newest N executions (default 20)"
    )

    p = sub.add_parser(
        "status",
        parents=[conn, as_json, waiting],
        help="exit 0 once the control plane is deployed and answering",
    )
    p.add_argument("--wait", action="store_true", help="poll until every check passes")

    local = sub.add_parser("local", help="the embedded local cloud")
    local_sub = local.add_subparsers(dest="local_command", metavar="COMMAND", parser_class=_Parser)
    local_sub.required = True
    p = local_sub.add_parser("up", help="serve a local cloud until Ctrl-C")
    p.add_argument("--port", type=_port, default=0, help="0 (default) picks a free port")
    p.add_argument("--faults", default=None, metavar="PROFILE", help="slow, throttle or flaky")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault profile's randomness")
    p.add_argument(
        "--no-image",
        action="store_true",
        help="do not push the first sandbox image (signups then fail with NoDesiredImage "
        "until `sandboxctl push-image`), as right after `sam deploy` before CI's first push",
    )
    p.add_argument(
        "--lambda-profile",
        choices=("lambda", "lambda-strict", "none"),
        default="lambda",
        help="how user functions run: as Lambda does (default), with every hardening call "
        "refused, or unconfined",
    )
    p = local_sub.add_parser(
        "token",
        parents=[conn, as_json],
        help="print a Firebase ID token for UID, signed by the local cloud's issuer",
        description=(
            "Print a Firebase ID token for UID from a running `sandboxctl local up` "
            "(found with --endpoint, SANDBOXCTL_ENDPOINT, or the only one running). Send it as "
            "`Authorization: Bearer <token>` to the local HTTP API (see docs/client.md)."
        ),
    )
    p.add_argument("uid", type=_uid, metavar="UID", help="the Firebase UID the token is for")
    p.add_argument(
        "--expires-in",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="lifetime in seconds (default 3600, as Firebase; negative gives an expired token)",
    )

    p = sub.add_parser("demo", help="run the whole story on an embedded local cloud")
    p.add_argument(
        "--output-dir",
        type=Path,
        default=Path("demo-output"),
        help="where charts are saved (default ./demo-output)",
    )
    return parser


class App:
    """One CLI invocation: parsed arguments, consoles, and a ControlPlane made on first use."""

    def __init__(self, args: argparse.Namespace, out: Console, err: Console) -> None:
        self.args = args
        self.out = out
        self.err = err
        self._cp: ControlPlane | None = None

    @property
    def cp(self) -> ControlPlane:
        if self._cp is None:
            target = resolve_target(
                getattr(self.args, "endpoint", None),
                getattr(self.args, "stack", None),
                getattr(self.args, "region", None),
            )
            self._cp = ControlPlane(target)
        return self._cp

    def emit(self, data: Any, renderable: Any) -> None:
        if getattr(self.args, "json", False):
            self.out.print(render.dumps(data), markup=False, highlight=False, soft_wrap=True)
        else:
            self.out.print(renderable)

    def progress(self, what: str) -> AbstractContextManager[Callable[[str, float], None]]:
        """A spinner on stderr while waiting; yields a tick(status, elapsed) callback."""
        return render.spinner(self.err, what)


def cmd_signup(app: App) -> int:
    a = app.args
    before = app.cp.get_user(a.uid) if a.wait else None
    sent = app.cp.signup(a.uid, email=a.email)
    if not a.wait:
        app.emit(sent, f"signup of {a.uid!r} accepted (HTTP {sent['status_code']})")
        return EXIT_OK
    if before is not None and before.get("status") == "READY":
        user: dict[str, Any] | None = before  # a duplicate signup changes nothing
    else:
        with app.progress(f"waiting for {a.uid}") as tick:
            user = app.cp.wait_for_user(
                a.uid, {"READY", "FAILED"}, a.timeout, tick, baseline=before
            )
    assert user is not None
    app.emit(user, render.users_table([user]))
    return EXIT_OK if user.get("status") == "READY" else EXIT_FAIL


def cmd_delete_user(app: App) -> int:
    a = app.args
    before = app.cp.get_user(a.uid) if a.wait else None
    sent = app.cp.delete_user(a.uid)
    if not a.wait:
        app.emit(sent, f"deletion of {a.uid!r} accepted (HTTP {sent['status_code']})")
        return EXIT_OK
    if before is not None and before.get("status") == "DELETED":
        user: dict[str, Any] | None = before
    else:
        with app.progress(f"waiting for {a.uid} to be deleted") as tick:
            user = app.cp.wait_for_user(
                a.uid, {"DELETED"}, a.timeout, tick, gone_is_final=True, baseline=before
            )
    result = user or {"uid": a.uid, "status": "DELETED"}
    app.emit(result, render.users_table([result]))
    return EXIT_OK


def cmd_users(app: App) -> int:
    users = app.cp.list_users(app.args.status)
    app.emit(users, render.users_table(users))
    return EXIT_OK


def cmd_upload(app: App) -> int:
    a = app.args
    if not app.err.is_terminal:
        info = app.cp.upload(a.uid, a.file, a.name)
    else:
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        size = a.file.stat().st_size if a.file.is_file() else 0
        columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=app.err, transient=True) as bar:
            task = bar.add_task(f"uploading {a.file.name}", total=size)
            info = app.cp.upload(a.uid, a.file, a.name, progress=lambda n: bar.advance(task, n))
    app.emit(info, f"uploaded {info['bytes']} bytes to s3://{info['bucket']}/{info['key']}")
    return EXIT_OK


def cmd_run(app: App) -> int:
    a = app.args
    if a.code_file is not None:
        try:
            code = a.code_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read --code-file {a.code_file}: {exc}") from exc
    else:
        code = a.code
    with app.progress(f"running in {a.uid}'s sandbox"):
        envelope = app.cp.run(a.uid, a.dataset, code, timeout_s=a.timeout_s)
    stem = str(envelope.get("request_id") or "figure")
    paths = save_figures(envelope, a.figures_dir, stem)
    data = {**envelope, "figure_paths": [str(p) for p in paths]}
    app.emit(data, render.envelope_renderable(envelope, paths))
    return EXIT_OK if envelope.get("status") == "ok" else EXIT_FAIL


def cmd_push_image(app: App) -> int:
    a = app.args
    pushed = app.cp.push_image(a.tag)
    if not a.wait:
        app.emit(pushed, f"pushed {pushed['image_uri']}")
        return EXIT_OK
    with app.progress(f"rollout of {render.short_digest(pushed['image_digest'])}") as tick:
        rollout = app.cp.wait_for_rollout(pushed["image_digest"], a.timeout, tick)
    app.emit({**pushed, "rollout": rollout}, render.rollouts_table([rollout]))
    return EXIT_OK if rollout.get("status") == "COMPLETED" else EXIT_FAIL


def cmd_rollouts(app: App) -> int:
    rollouts = app.cp.list_rollouts()
    if app.args.json:
        app.emit(rollouts, None)
        return EXIT_OK
    app.out.print(render.rollouts_table(rollouts))
    desired = app.cp.desired_image()
    if desired:
        app.out.print(f"desired image: {desired.get('image_uri') or desired.get('image_digest')}")
    for line in render.rollout_failures(rollouts):
        app.out.print(f"failure {line}", markup=False)
    if app.cp.target.on_aws:
        for r in rollouts:
            if r.get("execution_arn"):
                url = console_url(app.cp.target.region, str(r["execution_arn"]))
                app.out.print(f"{r['rollout_id']}: {url}", markup=False, soft_wrap=True)
    return EXIT_OK


def cmd_executions(app: App) -> int:
    a = app.args
    rows = app.cp.executions(a.workflow, a.limit, a.status)
    app.emit(rows, render.executions_table(rows, app.cp.target.on_aws))
    if not a.json and app.cp.target.on_aws:
        for r in rows:
            app.out.print(f"{r['name']}: {r['console_url']}", markup=False, soft_wrap=True)
    return EXIT_OK


def cmd_reconcile(app: App) -> int:
    a = app.args
    arn = app.cp.start_reconcile(dry_run=a.dry_run)
    if a.no_wait:
        app.emit({"execution_arn": arn}, f"started {arn}")
        return EXIT_OK
    with app.progress("reconciling" + (" (dry run)" if a.dry_run else "")) as tick:
        done = app.cp.wait_for_execution(arn, a.timeout, tick)
    if a.json:
        app.emit(done, None)
    else:
        report = done.get("report")
        counts: dict[str, Any] = {}
        if isinstance(report, dict):
            counts = report.get("planned" if a.dry_run else "results") or {}
        rows = [(k, v) for k, v in sorted(counts.items())] or [("(nothing to do)", "")]
        title = f"reconcile {done['status']}" + (" (dry run: planned)" if a.dry_run else "")
        app.out.print(render.table(title, ["action", "users"], rows))
        if done.get("cause"):
            app.out.print(f"cause: {done.get('error')}: {done['cause']}", markup=False)
    return EXIT_OK if done["status"] == "SUCCEEDED" else EXIT_FAIL


def cmd_logs(app: App) -> int:
    events = app.cp.logs(app.args.uid, app.args.limit)
    if app.args.json:
        app.emit(events, None)
        return EXIT_OK
    if not events:
        app.out.print(f"no log events for {app.args.uid!r} yet", markup=False)
    for e in events:
        app.out.print(f"{e['time']}  {e['message']}", markup=False, highlight=False)
    return EXIT_OK


def cmd_status(app: App) -> int:
    a = app.args
    checks = app.cp.status()
    if a.wait and not all(c["ok"] for c in checks):
        from sandboxctl.controlplane import Poller

        with app.progress("waiting for the control plane") as tick:
            for elapsed in Poller(a.timeout, cap=2.0):
                checks = app.cp.status()
                failing = [c["check"] for c in checks if not c["ok"]]
                if not failing:
                    break
                tick("waiting on " + ", ".join(failing), elapsed)
    app.emit(checks, render.status_table(checks))
    return EXIT_OK if all(c["ok"] for c in checks) else EXIT_FAIL


LOCAL_CLOUD_HINT = "install it with: pip install 'sandbox-fleet[localcloud]'"


def _local_cloud() -> Any:
    """The local cloud's server module, or one line saying what to install."""
    try:
        server = importlib.import_module("sandboxctl.localcloud.server")
    except ImportError as exc:
        raise SandboxctlError(
            f"the local cloud is not installed ({exc}); {LOCAL_CLOUD_HINT}"
        ) from exc
    return server


def cmd_local_token(app: App) -> int:
    running_connections = _local_cloud().running_connections
    from sandboxctl.localcloud.httpapi import TokenIssuer

    a = app.args
    endpoint = getattr(a, "endpoint", None) or os.environ.get("SANDBOXCTL_ENDPOINT")
    if endpoint:
        from sandboxctl.controlplane import local_connection

        info = local_connection(endpoint.rstrip("/"))
        if info is None:
            raise SandboxctlError(f"no `sandboxctl local up` is serving at {endpoint}")
    else:
        found = running_connections()
        if len(found) != 1:
            raise UsageError(
                "no local cloud is running (start `sandboxctl local up`)"
                if not found
                else "several local clouds are running; pick one with --endpoint"
            )
        info = found[0]
    if "token_issuer" not in info:
        raise SandboxctlError(
            "that local cloud has no token issuer (started by an older sandboxctl)"
        )
    issuer = TokenIssuer.from_dict(info["token_issuer"])
    token = issuer.token(a.uid, expires_in=a.expires_in)
    if a.json:
        data = {"uid": a.uid, "id_token": token, "expires_in": a.expires_in}
        app.emit({**data, "api_url": info.get("api_url")}, None)
    else:
        app.out.print(token, markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


def cmd_local(app: App) -> int:
    if app.args.local_command == "token":
        return cmd_local_token(app)
    server = _local_cloud()
    a = app.args
    try:
        server.serve(
            port=a.port,
            faults=a.faults,
            seed=a.seed,
            first_image=not a.no_image,
            lambda_profile=a.lambda_profile,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    except server.LocalCloudError as exc:
        raise SandboxctlError(str(exc)) from exc
    return EXIT_OK


def cmd_demo(app: App) -> int:
    from sandboxctl.demo import run_demo

    if not app.out.is_terminal:
        app.out.width = max(app.out.width, 120)  # CI logs: keep tables readable
    # moto logs every skipped resource type and every failed state at length; the demo's own
    # checks report what matters. SANDBOXCTL_DEBUG=1 keeps moto's logs.
    if not os.environ.get("SANDBOXCTL_DEBUG"):
        logging.getLogger("moto").setLevel(logging.CRITICAL)
    return run_demo(app.out, output_dir=app.args.output_dir)


def cmd_doctor(app: App) -> int:
    from sandboxctl import doctor

    checks = doctor.Doctor(app.cp, app.args.timeout).run()
    app.emit(doctor.as_rows(checks), doctor.table(checks))
    return doctor.exit_code(checks)


COMMANDS: dict[str, Callable[[App], int]] = {
    "signup": cmd_signup,
    "delete-user": cmd_delete_user,
    "users": cmd_users,
    "upload": cmd_upload,
    "run": cmd_run,
    "push-image": cmd_push_image,
    "rollouts": cmd_rollouts,
    "executions": cmd_executions,
    "status": cmd_status,
    "logs": cmd_logs,
    "reconcile": cmd_reconcile,
    "local": cmd_local,
    "demo": cmd_demo,
    "doctor": cmd_doctor,
}


def main(
    argv: Sequence[str] | None = None, out: Console | None = None, err: Console | None = None
) -> int:
    args = build_parser().parse_args(argv)
    out = out or render.make_console()
    err = err or render.make_console(stderr=True)
    app = App(args, out, err)

    def fail(code: int, message: str) -> int:
        print(f"{PROG}: error: {message}", file=err.file)
        return code

    try:
        return COMMANDS[args.command](app)
    except UsageError as exc:
        return fail(EXIT_USAGE, str(exc))
    except SandboxctlError as exc:
        return fail(EXIT_FAIL, str(exc))
    except NoCredentialsError:
        endpoint = getattr(args, "endpoint", None) or os.environ.get("SANDBOXCTL_ENDPOINT")
        if endpoint:
            return fail(
                EXIT_FAIL,
                f"no operator credentials for {endpoint}: is `sandboxctl local up` serving there?",
            )
        return fail(EXIT_FAIL, "no AWS credentials found (configure a profile or use --endpoint)")
    except (ClientError, BotoCoreError) as exc:
        return fail(EXIT_FAIL, describe_client_error(exc))
    except KeyboardInterrupt:
        return fail(130, "interrupted")
    except Exception as exc:  # an operator gets one line; SANDBOXCTL_DEBUG=1 shows the traceback
        if os.environ.get("SANDBOXCTL_DEBUG"):
            raise
        text = " ".join(str(exc).split())[:500]
        return fail(EXIT_FAIL, f"{type(exc).__name__}: {text} (SANDBOXCTL_DEBUG=1 for details)")


if __name__ == "__main__":
    sys.exit(main())
