"""The run child: forked from the executor per run, it locks itself down and runs the code.

Nothing here returns: every path ends in os._exit, so no executor cleanup code ever runs in
the child and no exception can carry the child back into the executor's loop.
"""

from __future__ import annotations

import ast
import base64
import builtins
import contextlib
import errno
import faulthandler
import fcntl
import io
import json
import linecache
import math
import os
import resource
import signal
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from sandbox_runtime import osutil
from sandbox_runtime.envelope import cap_text
from sandbox_runtime.protocol import HEADER, ChannelClosed, recv_message
from sandbox_runtime.results import encode_result

try:  # imported here, before any uid drop, so the child never needs to read its files
    import pyseccomp
except (ImportError, OSError):  # no libseccomp on this system: reported as refused
    pyseccomp = None

USER_FILENAME = "<user-code>"
RESULT_FD = 3
CONTROL_FD = 4
# Audit events that open network connections or start programs.
BLOCKED_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.startfile",
        "pty.spawn",
        "urllib.Request",
        "http.client.connect",
        "ftplib.connect",
        "smtplib.connect",
        "poplib.connect",
        "imaplib.open",
        "nntplib.connect",
        "telnetlib.Telnet.open",
        "webbrowser.open",
    }
)


class SandboxPolicyError(PermissionError):
    """The code tried something the sandbox forbids (network access, starting programs)."""


@dataclass
class ChildPlan:
    """What the child gets at fork time; the code and limits arrive later, on `control_fd`."""

    frames: dict[str, pd.DataFrame]
    scratch: str
    stdout_fd: int
    stderr_fd: int
    result_fd: int
    control_fd: int
    drop_to: tuple[int, int] | None
    # Tasks the run uid already has, measured by the executor before fork: RLIMIT_NPROC
    # counts them, so the budget goes on top.
    task_baseline: int
    parent_pid: int
    # Processes the run must never signal or trace: the executor, the handler and their
    # ancestors (pid 1 too, which also covers kill(-1)).
    guarded_pids: tuple[int, ...] = ()
    network_guard: bool = True
    # matplotlib's fonts are not readable by every uid (see _open_default_fonts).
    open_fonts: bool = False


_fork_attempted = [False]


def _make_audit_hook() -> Callable[[str, tuple[Any, ...]], None]:
    """The network/subprocess guard as an audit hook that Python code cannot switch off.

    It reads nothing at call time that the code could replace: its constants are default
    arguments (changing those, or its code, raises an audit event it refuses), the blocked
    events are a frozenset, and the error class may not be changed either. The kernel filter
    (seccomp) is the wall; this turns its refusals into a clear error, and is the only guard
    where Lambda refuses seccomp.
    """

    def hook(
        event: str,
        args: tuple[Any, ...],
        _blocked: frozenset[str] = BLOCKED_EVENTS,
        _changes: tuple[str, ...] = ("object.__setattr__", "object.__delattr__"),
        _error: type[Exception] = SandboxPolicyError,
        _forked: list[bool] = _fork_attempted,
        _protected: tuple[int, ...] = (),
        _id: Callable[[object], int] = id,
    ) -> None:
        if event.startswith("socket.") or event in _blocked:
            raise _error(
                f"{event} is blocked: the sandbox has no network access and cannot start programs"
            )
        if event in _changes and args and _id(args[0]) in _protected:
            raise _error("the sandbox guard cannot be changed")
        if event in ("os.fork", "os.forkpty"):
            _forked[0] = True

    defaults = hook.__defaults__
    assert defaults is not None
    hook.__defaults__ = (*defaults[:-2], (id(hook), id(SandboxPolicyError)), id)
    return hook


def _set_limit(kind: int, value: int) -> None:
    _soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, value))


def _isolate(plan: ChildPlan) -> dict[str, bool]:
    """Before any request: own session, own descriptors, no privileges, no environment."""
    os.setsid()
    # Move the pipes above the target numbers first, so no dup2 clobbers another pipe.
    moved = [
        fcntl.fcntl(fd, fcntl.F_DUPFD, 64)
        for fd in (plan.stdout_fd, plan.stderr_fd, plan.result_fd, plan.control_fd)
    ]
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    for target, fd in zip((1, 2, RESULT_FD, CONTROL_FD), moved, strict=True):
        os.dup2(fd, target)
    # Drop every other descriptor: the executor channel, pipes of other runs, cache files.
    os.closerange(CONTROL_FD + 1, 1 << 20)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    _set_limit(resource.RLIMIT_CORE, 0)

    os.chdir(plan.scratch)
    protections: dict[str, bool] = {}
    if plan.drop_to is not None:
        if plan.open_fonts:
            # matplotlib empties its font cache in every forked child and reopens fonts by
            # path; the dropped uid cannot (a checkout only its owner can read), so open the
            # default fonts now, as root. Ahead of the request: this child is a spare.
            with contextlib.suppress(Exception):
                _open_default_fonts()
        uid, gid = plan.drop_to
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        protections["uid_drop"] = True
    # Lambda may refuse each of these (its filter answers EPERM): the run goes on without
    # them and the envelope says so. no_new_privs may already be set by whoever started us.
    protections["no_new_privs"] = _no_new_privs_set() or _try(osutil.set_no_new_privs)
    # If the executor is killed (the handler gave up on it), the run goes with it.
    protections["pdeathsig"] = _try(lambda: osutil.die_with_parent(plan.parent_pid))
    protections["seccomp"] = _try(lambda: _load_filter(plan))
    if plan.drop_to is None:
        # Forked from a non-dumpable executor: its /proc files would be root's, unreadable to
        # the executor's own uid, and the run's memory could not be measured.
        _try(osutil.make_dumpable)

    os.environ.clear()
    os.environ.update(
        {
            "HOME": plan.scratch,
            "TMPDIR": plan.scratch,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
            # Library config and caches live in the run's own scratch, deleted after it.
            "MPLCONFIGDIR": os.path.join(plan.scratch, ".matplotlib"),
            "XDG_CACHE_HOME": os.path.join(plan.scratch, ".cache"),
            "XDG_CONFIG_HOME": os.path.join(plan.scratch, ".config"),
        }
    )
    tempfile.tempdir = plan.scratch
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115  (lives as long as the child)
    sys.stdout = io.TextIOWrapper(
        open(1, "wb", closefd=False),  # noqa: SIM115
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    sys.stderr = io.TextIOWrapper(
        open(2, "wb", closefd=False),  # noqa: SIM115
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    faulthandler.enable(file=sys.stderr)
    return protections


def _open_default_fonts() -> None:
    """Fill matplotlib's font cache with the fonts Agg asks for by default (the same key)."""
    from matplotlib import font_manager

    font_manager.get_font(
        font_manager.fontManager._find_fonts_by_props(font_manager.FontProperties())
    )


def _no_new_privs_set() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            return any(line.split() == ["NoNewPrivs:", "1"] for line in handle)
    except OSError:
        return False


def _try(call: Callable[[], object]) -> bool:
    try:
        call()
    except OSError:
        return False
    return True


def _load_filter(plan: ChildPlan) -> None:
    """The kernel half of the guard: no sockets but AF_UNIX, no exec, no tracing, and no
    signals to the processes that run the sandbox. Inherited by everything the code forks."""
    if pyseccomp is None:
        raise OSError(errno.ENOSYS, "libseccomp is not available")
    sc = pyseccomp
    refuse = sc.ERRNO(errno.EPERM)
    filt = sc.SyscallFilter(defaction=sc.ALLOW)
    if _no_new_privs_set():
        # Already set (inherited): libseccomp would set it again, and Lambda refuses that.
        filt.set_attr(sc.Attr.CTL_NNP, 0)
    names = ["ptrace", "process_vm_readv", "process_vm_writev", "pidfd_send_signal"]
    if plan.network_guard:
        # io_uring could open sockets without the socket() syscall.
        names += ["execve", "execveat", "io_uring_setup", "io_uring_enter", "io_uring_register"]
        filt.add_rule(refuse, "socket", sc.Arg(0, sc.NE, socket.AF_UNIX))
    for name in names:
        with contextlib.suppress(ValueError, OSError):
            filt.add_rule(refuse, name)
    values = sorted({v & 0xFFFFFFFF for pid in plan.guarded_pids for v in (pid, -pid)})
    for name in ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open"):
        for value in values:
            # pid_t is 32 bits: compare only those, so junk in the upper half cannot slip by.
            filt.add_rule(refuse, name, sc.Arg(0, sc.MASKED_EQ, 0xFFFFFFFF, value))
    filt.load()


def _apply_limits(limits: dict[str, Any], vm_size: int, task_baseline: int) -> None:
    """Resource limits for this run; unprivileged by now, so they can only go down."""
    # Soft limit: SIGXCPU (reported as a timeout); the hard limit a second later kills.
    cpu = math.ceil(limits["timeout_s"]) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    _set_limit(resource.RLIMIT_FSIZE, limits["max_file_bytes"])
    _set_limit(resource.RLIMIT_NOFILE, limits["max_open_files"])
    # The fork shares the executor's address space; the budget comes on top of it.
    _set_limit(resource.RLIMIT_AS, vm_size + limits["memory_mb"] * 1024 * 1024)
    _set_limit(resource.RLIMIT_NPROC, task_baseline + limits["max_procs"])
    if limits["network_guard"]:
        sys.addaudithook(_make_audit_hook())


def _filter_traceback(te: traceback.TracebackException, seen: set[int]) -> None:
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list(
        [frame for frame in te.stack if frame.filename == USER_FILENAME]
    )
    for linked in (te.__cause__, te.__context__):
        if linked is not None:
            _filter_traceback(linked, seen)


def _limit_hit(exc: BaseException) -> str | None:
    """Name the sandbox limit behind an exception, if one was."""
    current: BaseException | None = exc
    depth = 0
    while current is not None and depth < 20:
        if isinstance(current, MemoryError):
            return "memory"
        if isinstance(current, OSError):
            if current.errno == errno.EFBIG:
                return "file size"
            if current.errno in {errno.EMFILE, errno.ENFILE}:
                return "open files"
            if current.errno == errno.EAGAIN and _fork_attempted[0]:
                return "process count"
        if isinstance(current, RuntimeError) and "new thread" in str(current):
            return "process count"
        current = current.__cause__ or current.__context__
        depth += 1
    return None


def _error(exc: BaseException, limits: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    te = traceback.TracebackException.from_exception(exc)
    _filter_traceback(te, set())
    text, _ = cap_text("".join(te.format()), limits["max_traceback_bytes"])
    try:
        message = str(exc)
    except Exception:
        message = ""
    message, _ = cap_text(message, limits["max_traceback_bytes"])
    hit = _limit_hit(exc)
    if hit == "memory":
        status = "memory"
        message = f"{message} (the sandbox memory limit of {limits['memory_mb']} MB was reached)"
    elif hit is not None:
        status = "limit"
        message = f"{message} (the sandbox {hit} limit was reached)"
    else:
        status = "error"
    return status, {"type": type(exc).__name__, "message": message, "traceback": text}


def _figures(limits: dict[str, Any]) -> tuple[list[str], bool, list[str]]:
    figures: list[str] = []
    errors: list[str] = []
    used = 0
    truncated = False
    for number in plt.get_fignums():
        if len(figures) >= limits["max_figures"]:
            truncated = True
            break
        buffer = io.BytesIO()
        try:
            plt.figure(number).savefig(buffer, format="png", dpi=100)
        except Exception as exc:
            truncated = True
            errors.append(cap_text(f"figure {number}: {type(exc).__name__}: {exc}", 2000)[0])
            continue
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        if used + len(encoded) > limits["max_figure_bytes"]:
            truncated = True
            continue
        figures.append(encoded)
        used += len(encoded)
    plt.close("all")
    return figures, truncated, errors


def _execute(code: str, namespace: dict[str, Any]) -> Any:
    """Run like a notebook cell: the last expression's value is the result."""
    linecache.cache[USER_FILENAME] = (len(code), None, code.splitlines(True), USER_FILENAME)
    tree = ast.parse(code, filename=USER_FILENAME, mode="exec")
    last: ast.expr | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body.pop().value  # type: ignore[attr-defined]
    exec(compile(tree, USER_FILENAME, "exec"), namespace)  # noqa: S102  (this is the product)
    value = None
    if last is not None:
        expression = ast.Expression(body=last)
        value = eval(compile(expression, USER_FILENAME, "eval"), namespace)  # noqa: S307
    if value is None:
        value = namespace.get("result")
    return value


def _write_result(message: dict[str, Any]) -> None:
    """Length-prefixed, so the executor knows the run is over without waiting for our exit."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    message["usage"] = {
        "cpu_ms": round((usage.ru_utime + usage.ru_stime) * 1000, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 3),
    }
    _write_frame(message)


def _write_frame(message: dict[str, Any]) -> None:
    data = json.dumps(message, ensure_ascii=True, allow_nan=False).encode("ascii")
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(RESULT_FD, view) :]


def run_child(plan: ChildPlan) -> None:
    """Entry point right after fork; never returns.

    The child isolates itself first, then waits for its request, so the executor can fork it
    ahead of time and a warm run does not pay for fork and set-up.
    """
    runner = os.getpid()
    exit_code = 70
    try:
        protections = _isolate(plan)
        # The first message on the result pipe says what the kernel let this child apply.
        _write_frame({"protections": protections})
        vm_size = osutil.vm_size_bytes()
        try:
            request = recv_message(CONTROL_FD)
        except ChannelClosed:
            os._exit(0)  # discarded unused, or the executor is gone
        os.close(CONTROL_FD)
        limits = request["limits"]
        _apply_limits(limits, vm_size, plan.task_baseline)
        frames = {name: plan.frames[key] for name, key in request["frames"].items()}
        primary = request.get("primary")
        namespace: dict[str, Any] = {
            "__name__": "__main__",
            "__builtins__": builtins,
            "pd": pd,
            "np": np,
            "plt": plt,
            "df": frames.get(primary) if primary else None,
            "dfs": frames,
        }
        status = "ok"
        error = None
        value = None
        try:
            value = _execute(request["code"], namespace)
        except SystemExit as exc:
            if os.getpid() != runner:
                os._exit(0)
            if exc.code not in (None, 0):
                status, error = (
                    "error",
                    {
                        "type": "SystemExit",
                        "message": f"the code called exit({exc.code!r})",
                        "traceback": None,
                    },
                )
            else:
                value = namespace.get("result")
        except BaseException as exc:
            if os.getpid() != runner:
                os._exit(1)  # a process the code forked: it must not report
            status, error = _error(exc, limits)
        if os.getpid() != runner:
            os._exit(0)
        try:
            result, result_type, result_cut = encode_result(
                value, limits["max_rows"], limits["max_result_bytes"]
            )
        except BaseException as exc:
            result, result_type, result_cut = None, "none", False
            if error is None:
                status, error = _error(exc, limits)
        try:
            figures, figures_cut, figure_errors = _figures(limits)
        except Exception as exc:
            figures, figures_cut = [], True
            figure_errors = [cap_text(f"{type(exc).__name__}: {exc}", 2000)[0]]
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        _write_result(
            {
                "status": status,
                "result": result,
                "result_type": result_type,
                "result_truncated": result_cut,
                "figures": figures,
                "figures_truncated": figures_cut,
                "figure_errors": figure_errors[:20],
                "error": error,
            }
        )
        exit_code = 0
    except BaseException:
        exit_code = 71
        with contextlib.suppress(Exception):
            os.write(2, traceback.format_exc().encode("utf-8", "replace")[-4000:])
    finally:
        os._exit(exit_code)
