"""The handler side of the runtime: validate, fetch, hand the run to the executor, cap the reply.

This process holds the function's credentials. It never runs user code, makes itself
non-dumpable, and starts the executor through exec with an allow-listed environment, so the
executor (and every child forked from it) never had the credentials in memory or in
/proc/<pid>/environ.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import sandbox_runtime
from sandbox_runtime import osutil
from sandbox_runtime.config import RuntimeConfig
from sandbox_runtime.envelope import error_info, fit_envelope, make_envelope
from sandbox_runtime.protocol import ACK, ChannelClosed, ChannelTimeout, recv_message, send_message
from sandbox_runtime.request import RequestRejected, parse_request
from sandbox_runtime.sources import LocalObject, ObjectSource

# Variables the executor may inherit. Everything else (AWS_* credentials, AWS_LAMBDA_RUNTIME_API,
# _X_AMZN_TRACE_ID, ...) is dropped: an allow-list cannot miss a new secret.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "LD_LIBRARY_PATH", "PYTHONPATH")


class ExecutorStartError(RuntimeError):
    """The executor process could not be started or did not report ready."""


class ExecutorGone(ChannelClosed):
    """The executor was already dead when a request was sent; the request never ran."""


class ExecutorStalled(ChannelClosed):
    """The executor was stopped (SIGSTOP) or died while a run was in progress."""


class WorkDirUnsafe(RuntimeError):
    """The work dir exists but is a symlink, or belongs to someone else, or others can write it."""


# How often the handler checks, while waiting, that the executor is still running.
WATCH_S = 0.25
# Handler-side protections, named as in the envelope's `sandbox` field.
PROFILE_ENV = "SANDBOX_PROFILE"


def ensure_private_dir(path: Path, mode: int = 0o711) -> None:
    """Create `path` (and parents) without following a symlink planted by another local user.

    Each component is opened relative to its parent with O_NOFOLLOW; an existing final
    directory must be ours and writable by nobody else, or the runtime refuses to use it.
    """
    parts = path.resolve(strict=False).parts if not path.is_absolute() else path.parts
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for index, part in enumerate(parts[1:], start=1):
            last = index == len(parts) - 1
            try:
                os.mkdir(part, mode if last else 0o755, dir_fd=fd)
                created = True
            except FileExistsError:
                created = False
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise WorkDirUnsafe(
                    f"the sandbox work dir {path} is unsafe: {os.path.join(*parts[: index + 1])} "
                    f"is not a plain directory ({exc.strerror}); remove it or choose another "
                    "SANDBOX_WORK_DIR"
                ) from exc
            os.close(fd)
            fd = child
            if last:
                info = os.fstat(fd)
                if created:
                    os.fchmod(fd, mode)
                elif info.st_uid != os.geteuid() or info.st_mode & 0o022:
                    raise WorkDirUnsafe(
                        f"the sandbox work dir {path} already exists and is owned by uid "
                        f"{info.st_uid} with mode {oct(info.st_mode & 0o777)}: it must belong to "
                        f"uid {os.geteuid()} and be writable by nobody else; remove it"
                    )
    finally:
        os.close(fd)


class LambdaContextLike(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


def executor_environment(
    config: RuntimeConfig, source: dict[str, str] | None = None
) -> dict[str, str]:
    """The complete environment of the executor: allow-listed, never credentials."""
    base = os.environ if source is None else source
    env = {name: base[name] for name in PASSED_ENV if name in base}
    package_root = str(Path(sandbox_runtime.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    for name in ("SANDBOX_DEDICATED_UID",):
        if name in base:
            env[name] = base[name]
    env["SANDBOX_NETWORK_GUARD"] = "1" if config.network_guard else "0"
    env.update(
        {
            "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1",
            # Reserve address space predictably, so RLIMIT_AS in the child means what it says.
            "ARROW_DEFAULT_MEMORY_POOL": "system",
            "MALLOC_ARENA_MAX": "2",
            "SANDBOX_SANDBOX_UID": str(config.sandbox_uid),
            "SANDBOX_SANDBOX_GID": str(config.sandbox_gid),
            "SANDBOX_FRAME_CACHE_ENTRIES": str(config.frame_cache_entries),
        }
    )
    return env


class MatplotlibConfig:
    """Matplotlib's config and font cache, given to each executor start in a fresh directory.

    Runs share the runtime's uid in Lambda, so any directory the runtime keeps under /tmp can
    be written by user code; a reused config dir would let one run break (or steer) every later
    executor start. The files are held in the handler's memory instead: from the image's
    read-only seed, or as the first executor start (before any run) built them.
    """

    MAX_BYTES = 8 * 1024 * 1024

    def __init__(self, seed: str | None) -> None:
        self.files: dict[str, bytes] | None = None
        if seed and Path(seed).is_dir():
            self.files = self._read(Path(seed))

    def _read(self, directory: Path) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        total = 0
        for entry in sorted(directory.iterdir()):
            if entry.is_file() and not entry.is_symlink():
                data = entry.read_bytes()
                total += len(data)
                if total > self.MAX_BYTES:
                    break
                files[entry.name] = data
        return files

    def make(self, work_dir: Path) -> Path:
        directory = Path(tempfile.mkdtemp(prefix="mplconfig-", dir=work_dir))
        for name, data in (self.files or {}).items():
            (directory / name).write_bytes(data)
        return directory

    def done(self, directory: Path) -> None:
        """The executor has read its config: keep what it built, drop the directory."""
        if self.files is None:
            self.files = self._read(directory)
        shutil.rmtree(directory, ignore_errors=True)


class ExecutorHandle:
    """One running executor process and its channel."""

    def __init__(self, config: RuntimeConfig, mpl: MatplotlibConfig | None = None) -> None:
        self._ack_r, ack_w = os.pipe()
        os.set_blocking(self._ack_r, False)
        env = executor_environment(config)
        mpl_dir = mpl.make(Path(config.work_dir)) if mpl is not None else None
        if mpl_dir is not None:
            env["MPLCONFIGDIR"] = str(mpl_dir)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sandbox_runtime.executor_start", "--ack-fd", str(ack_w)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                close_fds=True,
                pass_fds=(ack_w,),
                cwd="/",
            )
        finally:
            os.close(ack_w)
        assert self.process.stdin is not None and self.process.stdout is not None
        self._wfd = self.process.stdin.fileno()
        self._rfd = self.process.stdout.fileno()
        self._next_id = 0
        try:
            ready = recv_message(self._rfd, time.monotonic() + config.executor_start_timeout_s)
        except (ChannelClosed, ChannelTimeout) as exc:
            if mpl is not None and mpl_dir is not None:
                shutil.rmtree(mpl_dir, ignore_errors=True)
            self.close()
            raise ExecutorStartError(f"the sandbox executor did not start: {exc}") from exc
        finally:
            if mpl is not None and mpl_dir is not None:
                mpl.done(mpl_dir)
        if ready.get("op") != "ready":
            self.close()
            raise ExecutorStartError("the sandbox executor sent an unexpected greeting")
        self.pid = int(ready["pid"])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stalled(self) -> bool:
        """Stopped (SIGSTOP/SIGTSTP), dead or a zombie: it will never answer."""
        if not self.alive():
            return True
        return osutil.state_of(self.process.pid) in (None, "T", "t", "Z", "X")

    def _wait_readable(self, deadline: float) -> None:
        """Wait for the reply, checking the executor every WATCH_S: never wait out the whole
        deadline for an executor that user code stopped or killed."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChannelTimeout("timed out waiting for the executor")
            ready, _, _ = select.select([self._rfd], [], [], min(remaining, WATCH_S))
            if ready:
                return
            if self.stalled():
                raise ExecutorStalled("the executor was stopped or died during the run")

    def request(self, message: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send one run; ExecutorGone means it never started, so it is safe to retry."""
        self._next_id += 1
        message = dict(message, id=self._next_id)
        self._drain_acks()
        try:
            send_message(self._wfd, message)
            self._wait_readable(deadline)
            reply = recv_message(self._rfd, deadline)
        except ChannelClosed as exc:
            if self._next_id not in self._drain_acks():
                raise ExecutorGone(str(exc)) from exc
            raise
        if reply.get("id") != self._next_id:
            raise ChannelClosed("the executor answered a different request")
        return reply

    def _drain_acks(self) -> list[int]:
        data = b""
        while True:
            try:
                chunk = os.read(self._ack_r, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        usable = len(data) - len(data) % ACK.size
        return [ACK.unpack_from(data, at)[0] for at in range(0, usable, ACK.size)]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        with contextlib.suppress(OSError):
            os.close(self._ack_r)

    def kill(self) -> None:
        """Kill the executor and every descendant first (runs, and what they forked)."""
        for _ in range(100):
            victims = [self.process.pid, *osutil.descendants(self.process.pid)]
            victims = [pid for pid in victims if osutil.can_run(pid)]
            if not victims:
                break
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.001)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.close()


class Runtime:
    """Serves invocations in one long-lived process; the executor starts on first use."""

    def __init__(
        self,
        config: RuntimeConfig,
        source: ObjectSource,
        log: logging.Logger | Any | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.log = log or logging.getLogger(__name__)
        self._executor: ExecutorHandle | None = None
        self._lock = threading.Lock()
        self._hardened = False
        self.profile = os.environ.get(PROFILE_ENV) or None
        self.dedicated_uid = os.environ.get("SANDBOX_DEDICATED_UID") == "1" and os.geteuid() != 0
        self._mpl = MatplotlibConfig(os.environ.get("MPLCONFIGDIR"))
        self._last_protections: dict[str, bool] = {}
        # What /tmp held before any run: after a run that took its executor down, everything
        # else there is that run's (the executor, which cleans up after each run, is gone).
        self._tmp_root = Path(tempfile.gettempdir())
        self._tmp_entries = frozenset(os.listdir(self._tmp_root)) if self.dedicated_uid else None
        self._harden()

    def _harden(self) -> None:
        if not self._hardened:
            # Same-uid processes (the user's code) can no longer read our environ or memory.
            osutil.harden("non_dumpable", osutil.make_non_dumpable)
            self._hardened = True

    def sweep(self) -> None:
        """Kill every process of the function's uid that is not the handler or its ancestors:
        whatever a run left behind, however it detached, stopped or killed the executor."""
        if self.dedicated_uid:
            osutil.sweep_uid(os.getuid(), {os.getpid(), *osutil.ancestors(os.getpid())})
            self._clean_tmp()

    def _clean_tmp(self) -> None:
        if self._tmp_entries is None:
            return
        work = Path(self.config.work_dir)
        keep = {work.name} if work.parent == self._tmp_root else set()
        for name in set(os.listdir(self._tmp_root)) - self._tmp_entries - keep:
            path = self._tmp_root / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
        if work.is_dir() and not work.is_symlink():
            for entry in work.iterdir():
                if entry.name in ("runs", "cache"):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        entry.unlink()
            runs = work / "runs"
            if runs.is_dir() and not runs.is_symlink():
                shutil.rmtree(runs, ignore_errors=True)

    @property
    def executor_pid(self) -> int | None:
        return self._executor.pid if self._executor is not None else None

    def _ensure_executor(self) -> ExecutorHandle:
        if self._executor is not None and self._executor.stalled():
            self.log.warning("sandbox executor exited or was stopped; restarting it")
            self._discard_executor()
        if self._executor is None:
            # Nothing a run left may be alive while a new executor starts (before it is
            # non-dumpable, or where Lambda refuses that).
            self.sweep()
            ensure_private_dir(Path(self.config.work_dir))
            self._executor = ExecutorHandle(self.config, self._mpl)
        return self._executor

    def _discard_executor(self) -> None:
        if self._executor is not None:
            self._executor.kill()
            self._executor = None
        self.sweep()

    def sandbox_report(self, executor: dict[str, bool] | None = None) -> dict[str, Any]:
        """The envelope's `sandbox` field: which protections held for this run."""
        found = {**osutil.protections()}
        for name, value in (executor or self._last_protections).items():
            # non_dumpable holds only if both the handler and the executor have it.
            found[name] = found.get(name, True) and value if name == "non_dumpable" else value
        if self.dedicated_uid:
            found["process_sweep"] = True
        return {
            "profile": self.profile,
            "in_force": sorted(k for k, v in found.items() if v),
            "refused": sorted(k for k, v in found.items() if not v),
        }

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.close()
                self._executor = None

    def invoke(self, event: object, context: LambdaContextLike | None = None) -> dict[str, Any]:
        """Run one request; always returns an envelope for anything the user controls."""
        started = time.monotonic()
        with self._lock:
            self._harden()
            envelope = self._invoke(event, context, started)
            report = self.sandbox_report()
        envelope["metrics"]["wall_ms"] = round((time.monotonic() - started) * 1000, 3)
        envelope = fit_envelope(envelope, self.config.max_envelope_bytes)
        # After fitting, so even a replaced envelope says what held (a few hundred bytes,
        # within the margin between max_envelope_bytes and Lambda's 6 MB).
        envelope["sandbox"] = report
        return envelope

    def _invoke(
        self, event: object, context: LambdaContextLike | None, started: float
    ) -> dict[str, Any]:
        request_id = None
        if isinstance(event, dict) and isinstance(event.get("request_id"), str):
            request_id = event["request_id"][:128]
        try:
            request = parse_request(event, self.config)
            objects: list[LocalObject] = [
                self.source.fetch(ref.name, self.config.max_dataset_bytes)
                for ref in request.datasets
            ]
        except RequestRejected as exc:
            self.log.info("request rejected", extra={"reason": str(exc)[:500]})
            return make_envelope(
                "rejected", error=error_info("RequestRejected", str(exc)), request_id=request_id
            )
        fetch_ms = (time.monotonic() - started) * 1000

        deadline = None
        if context is not None:
            deadline = started + context.get_remaining_time_in_millis() / 1000
            deadline -= self.config.deadline_margin_s
        limits = request.limits.as_dict()
        message = {
            "op": "run",
            "code": request.code,
            "datasets": [
                {"name": o.name, "path": o.path, "etag": o.etag, "format": ref.format}
                for o, ref in zip(objects, request.datasets, strict=True)
            ],
            "primary": request.primary,
            "limits": limits,
            "deadline": deadline,
            "scratch_root": str(self.config.scratch_root),
        }
        reply_deadline = (
            deadline + self.config.deadline_margin_s / 2
            if deadline is not None
            else time.monotonic() + request.limits.timeout_s + self.config.executor_start_timeout_s
        )
        try:
            try:
                reply = self._ensure_executor().request(message, reply_deadline)
            except ExecutorGone:
                self.log.warning("sandbox executor was gone before the run; restarting it")
                self._discard_executor()
                reply = self._ensure_executor().request(message, reply_deadline)
        except ChannelTimeout:
            self.log.warning("sandbox executor did not answer in time; restarting it")
            self._discard_executor()
            return make_envelope(
                "timeout",
                error=error_info(
                    "Timeout", "the run did not finish before the invocation deadline"
                ),
                request_id=request_id,
            )
        except ExecutorStalled:
            self.log.warning("sandbox executor was stopped or died during a run; replaced")
            self._discard_executor()
            return make_envelope(
                "error",
                error=error_info(
                    "ExecutorStopped",
                    "the code stopped or killed the sandbox; it has been replaced and every "
                    "process of this run killed",
                ),
                request_id=request_id,
            )
        except ChannelClosed:
            self.log.warning("sandbox executor died during a run; it will be restarted")
            self._discard_executor()
            return make_envelope(
                "error",
                error=error_info(
                    "ExecutorCrashed", "the sandbox stopped during this run; it has been restarted"
                ),
                request_id=request_id,
            )
        protections = reply.get("protections")
        if isinstance(protections, dict):
            self._last_protections = {
                str(k): bool(v) for k, v in protections.items() if isinstance(v, bool)
            }
        envelope: dict[str, Any] = reply["envelope"]
        envelope["request_id"] = request_id
        envelope["metrics"]["load_ms"] = round(fetch_ms + float(reply.get("parse_ms", 0.0)), 3)
        envelope["metrics"]["cache"] = reply.get("cache", "none")
        self.log.info(
            "run finished",
            extra={
                "status": envelope["status"],
                "request_id": request_id,
                "code_sha256": hashlib.sha256(request.code.encode("utf-8", "replace")).hexdigest(),
                "datasets": [ref.name for ref in request.datasets],
                "metrics": envelope["metrics"],
            },
        )
        return envelope
