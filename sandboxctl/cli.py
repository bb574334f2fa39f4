"""sandboxctl: the operator CLI of sandbox-fleet.

Works against real AWS (default credential chain, `--stack`, `--region`) and against a local
cloud (`--endpoint URL` or SANDBOXCTL_ENDPOINT). Exit status: 0 ok, 1 failure, 2 usage error;
an error is one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
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

    parser = _Parser(prog=PROG, description=__doc__, parents=[conn])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "signup",
        parents=[conn, as_json, waiting],
        help="sign a user up exactly as the Firebase function does",
    )
    p.add_argument("uid", type=_uid, metavar="UID")
    p.add_argument("--email", default=None)
    p.add_argument("--wait", action="store_true", help="return once the user is READY or FAILED")

    p = sub.add_parser(
        "delete-user", parents=[conn, as_json, waiting], help="report a Firebase user deletion"
    )
    p.add_argument("uid", type=_uid, metavar="UID")
    p.add_argument("--wait", action="store_true", help="return once the user is DELETED")

    p = sub.add_parser("users", parents=[conn, as_json], help="list users from the registry")
    p.add_argument("--status", choices=USER_STATUSES, default=None)

    p = sub.add_parser(
        "upload", parents=[conn, as_json], help="put a data file under the user's prefix"
    )
    p.add_argument("uid", type=_uid, metavar="UID")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--as", dest="name", default=None, metavar="NAME", help="dataset name")

    p = sub.add_parser(
        "run", parents=[conn, as_json], help="run code in the user's own sandbox function"
    )
    p.add_argument("uid", type=_uid, metavar="UID")
    p.add_argument("--dataset", required=True, metavar="NAME")
    code = p.add_mutually_exclusive_group(required=True)
    code.add_argument("--code-file", type=Path, metavar="FILE")
    code.add_argument("--code", metavar="STR")
    p.add_argument("--timeout-s", type=_positive(float), default=None, metavar="SECONDS")
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
    p.add_argument("tag", metavar="TAG")
    p.add_argument("--wait", action="store_true", help="wait for the rollout it starts")

    sub.add_parser("rollouts", parents=[conn, as_json], help="image rollouts and their results")

    p = sub.add_parser("executions", parents=[conn, as_json], help="recent workflow executions")
    p.add_argument(
        "--workflow",
        choices=("ProvisionUser", "DeprovisionUser", "RolloutImage", "Reconcile"),
        default=None,
    )
    p.add_argument(
        "--status",
        choices=("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"),
        default=None,
    )
    p.add_argument("--limit", type=_positive(int), default=20)

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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--lambda-profile",
        choices=("lambda", "lambda-strict", "none"),
        default="lambda",
        help="how user functions run: as Lambda does (default), with every hardening call "
        "refused, or unconfined",
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

    @contextmanager
    def progress(self, what: str) -> Iterator[Callable[[str, float], None]]:
        """A spinner on stderr while waiting; yields a tick(status, elapsed) callback."""
        with self.err.status(what) as spinner:

            def tick(status: str, elapsed: float) -> None:
                spinner.update(f"{what}: {status} ({elapsed:.0f}s)")

            yield tick


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
    info = app.cp.upload(a.uid, a.file, a.name)
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


def cmd_local(app: App) -> int:
    try:
        from sandboxctl.localcloud.server import serve
    except ImportError as exc:
        raise SandboxctlError(f"the local cloud is not available: {exc}") from exc
    a = app.args
    try:
        serve(port=a.port, faults=a.faults, seed=a.seed, lambda_profile=a.lambda_profile)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
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
    "local": cmd_local,
    "demo": cmd_demo,
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
