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
import shutil
import subprocess
import sys
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
    seed = base.get("MPLCONFIGDIR")
    if seed and Path(seed).is_dir():
        # The image ships a read-only font cache; matplotlib wants a writable copy.
        target = Path(config.work_dir) / "matplotlib"
        if not target.exists():
            shutil.copytree(seed, target)
        env["MPLCONFIGDIR"] = str(target)
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


class ExecutorHandle:
    """One running executor process and its channel."""

    def __init__(self, config: RuntimeConfig) -> None:
        self._ack_r, ack_w = os.pipe()
        os.set_blocking(self._ack_r, False)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sandbox_runtime.executor", "--ack-fd", str(ack_w)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=executor_environment(config),
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
            self.close()
            raise ExecutorStartError(f"the sandbox executor did not start: {exc}") from exc
        if ready.get("op") != "ready":
            self.close()
            raise ExecutorStartError("the sandbox executor sent an unexpected greeting")
        self.pid = int(ready["pid"])

    def alive(self) -> bool:
        return self.process.poll() is None

    def request(self, message: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send one run; ExecutorGone means it never started, so it is safe to retry."""
        self._next_id += 1
        message = dict(message, id=self._next_id)
        self._drain_acks()
        try:
            send_message(self._wfd, message)
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

    @property
    def executor_pid(self) -> int | None:
        return self._executor.pid if self._executor is not None else None

    def _ensure_executor(self) -> ExecutorHandle:
        if self._executor is not None and not self._executor.alive():
            self.log.warning("sandbox executor exited; restarting it")
            self._executor.close()
            self._executor = None
        if self._executor is None:
            self._executor = ExecutorHandle(self.config)
        return self._executor

    def _discard_executor(self) -> None:
        if self._executor is not None:
            self._executor.kill()
            self._executor = None

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.close()
                self._executor = None

    def invoke(self, event: object, context: LambdaContextLike | None = None) -> dict[str, Any]:
        """Run one request; always returns an envelope for anything the user controls."""
        started = time.monotonic()
        with self._lock:
            if not self._hardened:
                # Same-uid processes (the user's code) can no longer read our environ or memory.
                osutil.make_non_dumpable()
                self._hardened = True
            envelope = self._invoke(event, context, started)
        envelope["metrics"]["wall_ms"] = round((time.monotonic() - started) * 1000, 3)
        return fit_envelope(envelope, self.config.max_envelope_bytes)

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
