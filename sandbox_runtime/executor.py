"""The executor: a long-lived process that never held credentials.

It is spawned by the handler with a scrubbed environment, imports pandas once, keeps parsed
frames keyed by ETag and forks one locked-down child per run (copy-on-write: the frame is not
copied, pandas is not re-imported). After each run it kills the child's whole process tree and
deletes the run's scratch directory, so nothing survives into the next run; then, idle, it
forks and isolates the next run's child ("spare"), which waits for its code on a pipe.

Run as ``python -m sandbox_runtime.executor``; it speaks length-prefixed JSON on stdin/stdout.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import json
import os
import selectors
import shutil
import signal
import stat
import sys
import tempfile
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sandbox_runtime import osutil
from sandbox_runtime.child import ChildPlan, run_child
from sandbox_runtime.envelope import OutputCapture, error_info, make_envelope
from sandbox_runtime.protocol import (
    ACK,
    HEADER,
    ChannelClosed,
    ChannelTimeout,
    recv_message,
    send_message,
)

CHILD_STATUSES = {"ok", "error", "memory", "limit"}
# Imported once here so every run gets them copy-on-write instead of paying the import. It
# also matters when running as root: the child drops to an unprivileged uid that may not be
# able to read the interpreter's own library directory (e.g. a pyenv under /root).
PRELOAD = [
    "array",
    "base64",
    "bisect",
    "bz2",
    "calendar",
    "collections",
    "collections.abc",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "encodings.idna",
    "enum",
    "fnmatch",
    "fractions",
    "functools",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "itertools",
    "json",
    "lzma",
    "math",
    "numbers",
    "operator",
    "pathlib",
    "pprint",
    "random",
    "re",
    "shutil",
    "socket",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "typing",
    "unicodedata",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "zipfile",
    "zlib",
    "zoneinfo",
    "numpy.linalg",
    "numpy.random",
    "pyarrow.compute",
    "pyarrow.csv",
    "pyarrow.parquet",
    "pyarrow.json",
    "matplotlib.dates",
    "matplotlib.ticker",
    "importlib.metadata",
    "pandas.plotting._matplotlib",
]
RESULT_TYPES = {"none", "json", "dataframe", "series", "repr"}


class DatasetParseError(ValueError):
    """The user's file could not be parsed as the format its extension names."""


def parse_frame(path: str, fmt: str) -> pd.DataFrame:
    """Read a dataset with pyarrow-backed readers (multi-threaded, no Python row loop)."""
    if fmt == "csv":
        return pd.read_csv(path, engine="pyarrow")
    if fmt == "tsv":
        return pd.read_csv(path, sep="\t", engine="pyarrow")
    if fmt == "parquet":
        return pd.read_parquet(path, engine="pyarrow")
    if fmt == "jsonl":
        return pd.read_json(path, lines=True, engine="pyarrow")
    raise DatasetParseError(f"unsupported format {fmt!r}")


class FrameCache:
    """Parsed frames keyed by ETag and format; a changed object gets a new key, evicting the old."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._frames: OrderedDict[str, pd.DataFrame] = OrderedDict()
        self._by_name: dict[str, str] = {}

    def snapshot(self) -> dict[str, pd.DataFrame]:
        return dict(self._frames)

    def get(self, name: str, path: str, etag: str, fmt: str) -> tuple[str, bool]:
        """The key of the parsed frame for this object version, and whether it was cached."""
        key = f"{fmt}:{etag}"
        previous = self._by_name.get(name)
        if key in self._frames:
            self._frames.move_to_end(key)
            self._by_name[name] = key
            return key, True
        try:
            frame = parse_frame(path, fmt)
        except DatasetParseError:
            raise
        except Exception as exc:
            raise DatasetParseError(f"could not read {name!r} as {fmt}: {exc}") from exc
        self._by_name[name] = key
        if previous is not None and previous != key and previous not in self._by_name.values():
            self._frames.pop(previous, None)
        self._frames[key] = frame
        while len(self._frames) > self.max_entries:
            evicted, _ = self._frames.popitem(last=False)
            self._by_name = {n: k for n, k in self._by_name.items() if k != evicted}
        return key, False


@dataclass
class Spare:
    """A child forked ahead of time, isolated and waiting for its request on `control`."""

    pid: int
    control: int
    stdout: int
    stderr: int
    result: int
    scratch: str
    keys: frozenset[str]

    def close(self) -> None:
        for fd in (self.control, self.stdout, self.stderr, self.result):
            with contextlib.suppress(OSError):
                os.close(fd)


def _kill_tree(executor_pid: int, keep: int | None = None) -> None:
    """SIGKILL and reap every descendant but `keep` (a spare); orphans come back to us as we are
    a subreaper."""
    for _ in range(1000):
        victims = [pid for pid in osutil.descendants(executor_pid) if pid != keep]
        if not victims:
            return
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in osutil.child_pids(executor_pid):
            if pid != keep:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)


def _reap_finished() -> None:
    """Reap the children that have finished exiting, without waiting for the others."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _stop_tree(executor_pid: int, timeout_s: float = 5.0, spare: int | None = None) -> None:
    """SIGKILL every descendant and return once none of them can run code any more.

    Reaping (and the kernel's teardown of their memory) is left to `_kill_tree` after the
    reply. A process being killed cannot fork; one forked just before is found next pass.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        running = [
            pid for pid in osutil.descendants(executor_pid) if pid != spare and osutil.can_run(pid)
        ]
        if not running:
            return
        for pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            _kill_tree(executor_pid, keep=spare)  # stuck in the kernel: wait it out
            return
        os.sched_yield()


def _is_waiting(pid: int) -> bool:
    """True while a spare child is alive (not a zombie): it can still take a request."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return waited == 0


def _read_available(fd: int) -> bytes | None:
    """Bytes ready on fd; b'' when none are ready now; None at end of file."""
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return b""
    return data if data else None


def _result_complete(raw: bytes | bytearray) -> bool:
    if len(raw) < HEADER.size:
        return False
    (size,) = HEADER.unpack_from(raw)
    return len(raw) >= HEADER.size + size


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads_hostile(data: bytes) -> Any:
    """Parse what user code could have written: no NaN/Infinity, any nesting, any bytes.

    Every failure is a ValueError, so no message the child can craft escapes as another
    exception type (deep nesting raises RecursionError in the parser and in later dumps).
    """
    try:
        message = json.loads(data, parse_constant=_no_constants)
        json.dumps(message, allow_nan=False)  # nesting the encoder would choke on later
    except (ValueError, RecursionError, UnicodeDecodeError, MemoryError) as exc:
        raise ValueError(f"malformed message: {type(exc).__name__}") from None
    return message


PROTECTION_NAMES = frozenset({"uid_drop", "no_new_privs", "pdeathsig", "seccomp"})


def _parse_hello(raw: bytes) -> dict[str, bool] | None:
    """The child's first frame: which protections the kernel let it apply."""
    try:
        message = _loads_hostile(raw)
    except ValueError:
        return None
    found = message.get("protections") if isinstance(message, dict) else None
    if not isinstance(found, dict):
        return None
    return {k: v for k, v in found.items() if k in PROTECTION_NAMES and isinstance(v, bool)}


def _parse_child_result(raw: bytes) -> dict[str, Any] | None:
    (size,) = HEADER.unpack_from(raw)
    if len(raw) != HEADER.size + size:
        return None  # the code wrote to the result pipe itself
    try:
        message = _loads_hostile(raw[HEADER.size :])
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    if message.get("status") not in CHILD_STATUSES:
        return None
    if message.get("result_type") not in RESULT_TYPES:
        return None
    for flag in ("result_truncated", "figures_truncated"):
        if not isinstance(message.get(flag, False), bool):
            return None
    figures = message.get("figures")
    if not isinstance(figures, list) or not all(isinstance(f, str) for f in figures):
        return None
    figure_errors = message.get("figure_errors", [])
    if not isinstance(figure_errors, list) or not all(isinstance(f, str) for f in figure_errors):
        return None
    error = message.get("error")
    if error is not None and not (
        isinstance(error, dict)
        and isinstance(error.get("type"), str)
        and isinstance(error.get("message"), str)
        and isinstance(error.get("traceback"), str | None)
    ):
        return None
    return message


def _prepare_scratch(root: Path, drop_to: tuple[int, int] | None) -> str:
    root.mkdir(parents=True, exist_ok=True)
    # The unprivileged child may enter its own directory but list no others.
    os.chmod(root, 0o711)  # noqa: S103
    scratch = tempfile.mkdtemp(prefix="run-", dir=root)
    if drop_to is not None:
        os.chown(scratch, *drop_to)
    return scratch


def _remove_scratch(path: str) -> None:
    def _retry(func: Any, target: str, _exc: BaseException) -> None:
        # The code may have removed permissions from its own files; we own or are root.
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
        with contextlib.suppress(OSError):
            func(target)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_retry)
    else:
        shutil.rmtree(path, onerror=lambda func, target, info: _retry(func, target, info[1]))


POLL_S = 0.1  # how often a run's whole process tree is measured against its limits


def _used_bytes(path: Path) -> int:
    """Bytes in use on the file system holding `path` (all of /tmp, whoever wrote them)."""
    try:
        info = os.statvfs(path)
    except OSError:
        return 0
    return (info.f_blocks - info.f_bfree) * info.f_frsize


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _tree_bytes(root: Path, max_entries: int = 20_000) -> int:
    """Disk blocks under `root`, without following symlinks (capped: a run that makes more
    entries than that is measured on the first ones)."""
    total = 0
    stack = [str(root)]
    seen = 0
    while stack and seen < max_entries:
        current = stack.pop()
        try:
            info = os.lstat(current)
        except OSError:
            continue
        seen += 1
        total += info.st_blocks * 512
        if stat.S_ISDIR(info.st_mode):
            stack.extend(os.path.join(current, name) for name in _listdir(Path(current)))
    return total


def _default_font() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def _readable_by_all(path: Path) -> bool:
    """Any uid may read `path`: every directory above it searchable by others, it readable."""
    try:
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
        return all(os.stat(parent).st_mode & stat.S_IXOTH for parent in path.resolve().parents)
    except OSError:
        return False


@dataclass
class _RunStreams:
    """What a run writes: stdout and stderr (capped) and its result message (bounded)."""

    out_r: int
    err_r: int
    res_r: int
    stdout: OutputCapture
    stderr: OutputCapture
    result_cap: int
    flood_bytes: int
    result: bytearray

    @classmethod
    def open(cls, limits: dict[str, Any], out_r: int, err_r: int, res_r: int) -> _RunStreams:
        return cls(
            out_r=out_r,
            err_r=err_r,
            res_r=res_r,
            stdout=OutputCapture(limits["max_output_bytes"]),
            stderr=OutputCapture(limits["max_output_bytes"]),
            result_cap=limits["max_result_bytes"]
            + limits["max_figure_bytes"]
            + 4 * limits["max_traceback_bytes"]
            + 65536,
            flood_bytes=limits["flood_bytes"],
            result=bytearray(),
        )

    @property
    def fds(self) -> tuple[int, int, int]:
        return (self.out_r, self.err_r, self.res_r)

    def feed(self, fd: int, data: bytes) -> str | None:
        """Take what `fd` gave; the limit this broke ("result" or "output"), else None."""
        if fd == self.res_r:
            self.result += data
            return "result" if len(self.result) > self.result_cap else None
        (self.stdout if fd == self.out_r else self.stderr).feed(data)
        return "output" if self.stdout.total + self.stderr.total > self.flood_bytes else None

    def complete(self) -> bool:
        return _result_complete(self.result)

    def drain(self) -> None:
        """Whatever is still in the pipes once the run is stopped (the result stays bounded)."""
        for fd in self.fds:
            while data := _read_available(fd):
                if fd != self.res_r:
                    (self.stdout if fd == self.out_r else self.stderr).feed(data)
                elif len(self.result) <= self.result_cap:
                    self.result += data

    def output_fields(self) -> dict[str, Any]:
        return {
            "stdout": self.stdout.text(),
            "stdout_truncated": self.stdout.truncated,
            "stderr": self.stderr.text(),
            "stderr_truncated": self.stderr.truncated,
        }


def _has_exited(pid: int) -> bool:
    """True once `pid` (our child) has exited; it stays unreaped for wait4."""
    try:
        found = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return found is not None


def _read_frame(fd: int, deadline: float) -> bytes:
    """One length-prefixed frame from a non-blocking-agnostic pipe, capped in size."""
    header = _read_exact_fd(fd, HEADER.size, deadline)
    (size,) = HEADER.unpack(header)
    if size > 65536:
        raise ValueError("oversized frame")
    return _read_exact_fd(fd, size, deadline)


def _read_exact_fd(fd: int, size: int, deadline: float) -> bytes:
    import select

    data = bytearray()
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ChannelTimeout("no frame")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise ChannelClosed("closed")
        data += chunk
    return bytes(data)


class Executor:
    def __init__(
        self,
        sandbox_uid: int,
        sandbox_gid: int,
        frame_cache_entries: int,
        dedicated_uid: bool = False,
        network_guard: bool = True,
    ) -> None:
        self.pid = os.getpid()
        self.drop_to = (sandbox_uid, sandbox_gid) if os.geteuid() == 0 else None
        self.run_uid = self.drop_to[0] if self.drop_to else os.getuid()
        # The handler, whatever started it, and pid 1: never killed, never signalled by a run.
        self.keep = frozenset({self.pid, *osutil.ancestors(self.pid)})
        # The uid is this function's alone (Lambda): every other process of it is the run's,
        # however it detached. Not so for an operator's own uid, so that is never swept.
        self.dedicated_uid = dedicated_uid and self.drop_to is None
        self.network_guard = network_guard
        self.pidfd = osutil.pidfd_works()
        self.tmp_root = Path(tempfile.gettempdir())
        self.tmp_entries: frozenset[str] = frozenset()
        self.child_protections: dict[str, bool] = {}
        self.pss_baseline = 0
        self.fonts_private = self.drop_to is not None and not _readable_by_all(_default_font())
        self.frames = FrameCache(frame_cache_entries)
        self.task_baseline = osutil.count_tasks_of_uid(self.run_uid)
        self._baseline_at = time.monotonic()
        self._parsed = False
        self.scratch_root: Path | None = None
        self.spare: Spare | None = None

    def housekeeping(self) -> None:
        """Work kept off the request path: runs after a reply is sent, before the next request.

        The last run's processes were killed before the reply; the kernel may still be freeing
        their memory, so reap only those that are done (the rest are reaped before the next run
        starts). After a parse, hand freed parser memory back to the OS: a smaller resident set
        makes every later fork cheaper. Recount the tasks of the run uid that RLIMIT_NPROC is
        set on top of, since the parser's thread pool or the handler may have started threads.
        Then fork the next run's child.
        """
        recount = self._parsed or time.monotonic() - self._baseline_at > 5
        if self.dedicated_uid:
            keep = self.keep | ({self.spare.pid} if self.spare else set())
            osutil.sweep_uid(self.run_uid, keep)
        if self.spare is None:
            if recount:
                _kill_tree(self.pid)  # every dying process gone, so the count below is exact
            else:
                _reap_finished()
        if self._parsed:
            osutil.release_free_memory()
            self._parsed = False
        if recount:
            self._recount()
        if self.spare is None and self.scratch_root is not None:
            self.spare = self.fork_spare()
            # The executor's memory changes only when it parses: measure then (and every 5 s),
            # so a warm run never waits for a page-table walk of a large executor.
            if recount or not self.pss_baseline:
                self._measure_baseline(self.spare.pid)

    def _measure_baseline(self, spare_pid: int) -> None:
        """What the executor and an idle spare hold, so a run is charged only what it adds."""
        self.pss_baseline, _ = osutil.tree_usage([self.pid, spare_pid])

    def _recount(self) -> None:
        self.task_baseline = osutil.count_tasks_of_uid(self.run_uid)
        self._baseline_at = time.monotonic()

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "ping":
            return {"op": "pong", "pid": self.pid}
        if op != "run":
            return {"op": "error", "message": f"unknown op {op!r}"}
        started = time.monotonic()
        keys: dict[str, str] = {}
        hits: list[bool] = []
        try:
            for item in message["datasets"]:
                key, hit = self.frames.get(item["name"], item["path"], item["etag"], item["format"])
                keys[item["name"]] = key
                hits.append(hit)
                self._parsed = self._parsed or not hit
        except DatasetParseError as exc:
            envelope = make_envelope("error", error=error_info("DatasetError", str(exc)[:4000]))
            return {"op": "result", "envelope": envelope, "parse_ms": 0.0, "cache": "miss"}
        parse_ms = (time.monotonic() - started) * 1000
        cache = "none" if not hits else ("hit" if all(hits) else "miss")
        limits = dict(message["limits"])
        deadline = message.get("deadline")
        if deadline is not None:
            # CLOCK_MONOTONIC is system-wide, so the handler's deadline holds here too.
            limits["timeout_s"] = min(limits["timeout_s"], deadline - time.monotonic())
        self.scratch_root = Path(message["scratch_root"])
        if limits["timeout_s"] <= 0:
            envelope = make_envelope(
                "timeout",
                error=error_info("Timeout", "no time was left in this invocation to run the code"),
            )
        else:
            request = {
                "code": message["code"],
                "frames": keys,
                "primary": message.get("primary"),
                "limits": limits,
            }
            envelope = self.run(request)
        return {"op": "result", "envelope": envelope, "parse_ms": parse_ms, "cache": cache}

    def fork_spare(self) -> Spare:
        """Fork and isolate the next run's child now, off the request path."""
        assert self.scratch_root is not None
        scratch = _prepare_scratch(self.scratch_root, self.drop_to)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        res_r, res_w = os.pipe()
        ctl_r, ctl_w = os.pipe()
        frames = self.frames.snapshot()
        plan = ChildPlan(
            frames=frames,
            scratch=scratch,
            stdout_fd=out_w,
            stderr_fd=err_w,
            result_fd=res_w,
            control_fd=ctl_r,
            drop_to=self.drop_to,
            task_baseline=self.task_baseline,
            parent_pid=self.pid,
            guarded_pids=tuple(sorted(self.keep | {1})),
            network_guard=self.network_guard,
            open_fonts=self.fonts_private,
        )
        gc.freeze()  # the child's collector then leaves inherited objects (and their pages) alone
        pid = os.fork()
        if pid == 0:
            run_child(plan)
        for fd in (out_w, err_w, res_w, ctl_r):
            os.close(fd)
        return Spare(pid, ctl_w, out_r, err_r, res_r, scratch, frozenset(frames))

    def discard_spare(self) -> None:
        spare, self.spare = self.spare, None
        if spare is None:
            return
        if _is_waiting(spare.pid):  # not yet reaped: its pid cannot have been reused
            os.kill(spare.pid, signal.SIGKILL)
        _kill_tree(self.pid)
        spare.close()
        _remove_scratch(spare.scratch)

    def _take_spare(self, keys: set[str]) -> Spare:
        spare = self.spare
        if spare is not None and keys <= spare.keys and _is_waiting(spare.pid):
            self.spare = None
            return spare
        self.discard_spare()
        spare = self.fork_spare()
        self._measure_baseline(spare.pid)
        return spare

    def sweep(self, spare: int | None = None, gone: bool = False) -> None:
        """Kill whatever any run left behind, wherever it went, before the next one starts
        (`gone`: and wait until it has finished exiting)."""
        keep = self.keep | ({spare} if spare is not None else set())
        if self.dedicated_uid:
            osutil.sweep_uid(self.run_uid, keep, gone=gone)
        _stop_tree(self.pid, spare=spare)

    def remember_tmp(self) -> None:
        """The entries of /tmp the runtime itself made; a run may leave nothing else there."""
        with contextlib.suppress(OSError):
            self.tmp_entries = frozenset(os.listdir(self.tmp_root))

    def _clean_tmp(self) -> None:
        """Remove what the run created outside its scratch directory: the rest of /tmp and the
        runtime's own work dir (only where the run's uid is not shared with anything else)."""
        if not (self.dedicated_uid or self.drop_to is not None):
            return
        targets: list[tuple[Path, frozenset[str]]] = [(self.tmp_root, self.tmp_entries)]
        if self.scratch_root is not None:
            work = self.scratch_root.parent
            keep_work = frozenset({self.scratch_root.name, "cache"})
            targets.append((work, keep_work))
            spare = {Path(self.spare.scratch).name} if self.spare else set()
            targets.append((self.scratch_root, frozenset(spare)))
        for directory, keep in targets:
            try:
                entries = os.listdir(directory)
            except OSError:
                continue
            for name in entries:
                if name in keep:
                    continue
                path = directory / name
                try:
                    info = path.lstat()
                except OSError:
                    continue
                if info.st_uid != self.run_uid and not self.dedicated_uid:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    _remove_scratch(str(path))
                else:
                    with contextlib.suppress(OSError):
                        path.unlink()

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        spare = self._take_spare(set(request["frames"].values()))
        # Nothing of an earlier run may be alive while this run's input is here; the last
        # run's processes also still count against RLIMIT_NPROC until they are reaped.
        self.sweep(spare=spare.pid, gone=True)
        _kill_tree(self.pid, keep=spare.pid)
        limits = request["limits"]
        started = time.monotonic()
        try:
            hello = None
            with contextlib.suppress(ChannelClosed, ChannelTimeout, ValueError):
                hello = _parse_hello(_read_frame(spare.result, time.monotonic() + 10))
            if hello is not None:
                self.child_protections = hello
            # If the child died before its request, supervision reports how.
            with contextlib.suppress(ChannelClosed):
                send_message(spare.control, request)
            return self._supervise(
                spare.pid, started, limits, spare.stdout, spare.stderr, spare.result
            )
        finally:
            spare.close()
            _remove_scratch(spare.scratch)
            self._clean_tmp()

    def _supervise(
        self, pid: int, started: float, limits: dict[str, Any], out_r: int, err_r: int, res_r: int
    ) -> dict[str, Any]:
        """Watch the run until it ends or breaks a limit, stop what it started, answer."""
        streams = _RunStreams.open(limits, out_r, err_r, res_r)
        reason, exited, finished = self._watch(pid, started, limits, streams)
        if not exited and not finished and reason is None:
            exited = _has_exited(pid)
        self._stop_run(pid, exited)
        run_ms = (time.monotonic() - started) * 1000
        usage = None
        wait_status: int | None = None
        if exited:
            _, wait_status, usage = os.wait4(pid, 0)  # already a zombie: returns at once
        streams.drain()
        envelope, reported = self._classify(reason, wait_status, bytes(streams.result), limits)
        envelope.update(streams.output_fields())
        metrics: dict[str, Any] = {"run_ms": round(run_ms, 3)}
        if usage is not None:
            metrics["cpu_ms"] = round((usage.ru_utime + usage.ru_stime) * 1000, 3)
            metrics["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 3)
        elif reported is not None:
            metrics.update(reported)
        envelope["metrics"].update(metrics)
        return envelope

    def _watch(
        self, pid: int, started: float, limits: dict[str, Any], streams: _RunStreams
    ) -> tuple[str | None, bool, bool]:
        """Read the run's pipes until it exits, sends its result or breaks a limit.

        Returns (the limit it broke or None, whether it exited, whether its result is whole).
        """
        # Lambda may filter pidfd_open (and Linux < 5.3 lacks it): then poll for the exit.
        pidfd = os.pidfd_open(pid) if self.pidfd else None
        selector = selectors.DefaultSelector()
        for fd in streams.fds:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        if pidfd is not None:
            selector.register(pidfd, selectors.EVENT_READ)
        deadline = started + limits["timeout_s"]
        reason: str | None = None
        exited = finished = False
        disk_baseline = self._disk_bytes()
        next_poll = started + POLL_S
        try:
            while not (exited or finished) and reason is None:
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0:
                    return "timeout", exited, finished
                if now >= next_poll:
                    next_poll = now + POLL_S
                    reason = self._over_limit(pid, limits, disk_baseline)
                    if reason is None and pidfd is None:
                        exited = _has_exited(pid)
                    if reason is not None or exited:
                        break
                wait = min(remaining, max(next_poll - now, 0.0))
                for key, _ in selector.select(wait if pidfd is not None else min(wait, 0.02)):
                    if key.fd == pidfd:
                        exited = True
                        continue
                    data = _read_available(key.fd)
                    if data is None:
                        selector.unregister(key.fd)
                        continue
                    reason = streams.feed(key.fd, data) or reason
                    finished = finished or (key.fd == streams.res_r and streams.complete())
        finally:
            selector.close()
            if pidfd is not None:
                os.close(pidfd)
        return reason, exited, finished

    def _stop_run(self, pid: int, exited: bool) -> None:
        """Stop everything the run started, even when it ended on its own (threads, daemons).

        What has not exited yet is killed and reaped after the reply: none of it can run code
        any more, and waiting for the kernel to tear down its memory would only add latency.
        """
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        if not exited:
            os.kill(pid, signal.SIGKILL)  # not reaped yet, so the pid cannot have been reused
        self.sweep()

    def _run_pids(self, pid: int) -> list[int]:
        if self.dedicated_uid:
            return [p for p in osutil.pids_of_uid(self.run_uid) if p not in self.keep]
        return list(osutil.descendants(self.pid))

    def _over_limit(self, pid: int, limits: dict[str, Any], disk_baseline: int) -> str | None:
        """Measure the run's whole process tree: memory, CPU and /tmp, however it forked."""
        pids = self._run_pids(pid)
        pss, cpu_s = osutil.tree_usage(pids)
        own, _ = osutil.tree_usage([self.pid])
        if pss + own - self.pss_baseline > limits["memory_mb"] * 1024 * 1024:
            return "memory"
        if cpu_s > limits["timeout_s"] + 1:
            return "cpu"
        if self._disk_bytes() - disk_baseline > limits.get("max_disk_bytes", 1 << 62):
            return "disk"
        return None

    def _disk_bytes(self) -> int:
        """Bytes the run can have added to /tmp. Where /tmp is the function's own (Lambda,
        the Lambda profile), its file system's usage; where it is shared with the host, the
        size of what the run's uid created there (new entries and the scratch directories)."""
        if self.dedicated_uid:
            return _used_bytes(self.tmp_root)
        roots = [self.tmp_root / n for n in _listdir(self.tmp_root) if n not in self.tmp_entries]
        if self.scratch_root is not None:
            roots.append(self.scratch_root)
        return sum(_tree_bytes(root) for root in roots)

    def _classify(
        self, reason: str | None, wait_status: int | None, raw: bytes, limits: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The envelope for how the run ended, and the resource usage the child reported."""
        message = _parse_child_result(raw) if _result_complete(raw) else None
        reported = message.get("usage") if message is not None else None
        if not (
            isinstance(reported, dict)
            and all(isinstance(reported.get(k), int | float) for k in ("cpu_ms", "peak_rss_mb"))
        ):
            reported = None
        else:
            reported = {k: float(reported[k]) for k in ("cpu_ms", "peak_rss_mb")}
        return self._outcome(reason, wait_status, message, bool(raw), limits), reported

    def _outcome(
        self,
        reason: str | None,
        wait_status: int | None,
        message: dict[str, Any] | None,
        wrote: bool,
        limits: dict[str, Any],
    ) -> dict[str, Any]:
        if reason == "timeout":
            return make_envelope(
                "timeout",
                error=error_info(
                    "Timeout", f"the code ran longer than {limits['timeout_s']:g} s and was stopped"
                ),
            )
        if reason == "output":
            return make_envelope(
                "limit",
                error=error_info(
                    "OutputLimit",
                    f"the code wrote more than {limits['flood_bytes']} bytes of output "
                    "and was stopped",
                ),
            )
        if reason == "memory":
            return make_envelope(
                "memory",
                error=error_info(
                    "OutOfMemory",
                    f"the run's processes together used more than {limits['memory_mb']} MB "
                    "and were stopped",
                ),
            )
        if reason == "cpu":
            return make_envelope(
                "timeout",
                error=error_info(
                    "Timeout",
                    "the run's processes together used up the CPU time limit and were stopped",
                ),
            )
        if reason == "disk":
            return make_envelope(
                "limit",
                error=error_info(
                    "DiskLimit",
                    f"the code wrote more than {limits['max_disk_bytes']} bytes to /tmp "
                    "and was stopped",
                ),
            )
        if reason == "result":
            return make_envelope(
                "limit", error=error_info("OutputLimit", "the result was too large and was dropped")
            )
        if message is None and wait_status is not None and os.WIFSIGNALED(wait_status):
            signum = os.WTERMSIG(wait_status)
            try:
                name = signal.Signals(signum).name
            except ValueError:
                name = f"signal {signum}"
            if signum == signal.SIGXCPU:
                return make_envelope(
                    "timeout", error=error_info("Timeout", "the code used up its CPU time limit")
                )
            if signum == signal.SIGXFSZ:
                return make_envelope(
                    "limit",
                    error=error_info("FileSizeLimit", "the code wrote a file larger than allowed"),
                )
            if signum == signal.SIGKILL:
                return make_envelope(
                    "memory",
                    error=error_info(
                        "OutOfMemory",
                        "the process was killed by the system, most likely out of memory",
                    ),
                )
            return make_envelope(
                "error", error=error_info("Crash", f"the process crashed with {name}")
            )
        if message is None:
            code = (
                os.WEXITSTATUS(wait_status)
                if wait_status is not None and os.WIFEXITED(wait_status)
                else -1
            )
            text = (
                f"the code ended the process (exit status {code}) before returning a result"
                if not wrote
                else "the run returned a malformed result"
            )
            return make_envelope("error", error=error_info("ProcessExit", text))
        envelope = make_envelope(message["status"], error=message.get("error"))
        for field in (
            "result",
            "result_type",
            "result_truncated",
            "figures",
            "figures_truncated",
            "figure_errors",
        ):
            envelope[field] = message.get(field, envelope[field])
        envelope["result_truncated"] = bool(envelope["result_truncated"])
        envelope["figures_truncated"] = bool(envelope["figures_truncated"])
        return envelope


def _warm_up() -> None:
    """Touch the code paths of a first run so it is not paid for by the user."""
    for module in PRELOAD:
        importlib.import_module(module)
    frame = pd.read_csv(io.BytesIO(b"a,b\n1,x\n2,y\n"), engine="pyarrow")
    frame.head(1).to_json(orient="split")
    # Resolve the plotting backend and fonts once; the figure is closed before any fork.
    import matplotlib.pyplot as plt

    frame.plot(y="a").figure.savefig(io.BytesIO(), format="png")
    plt.close("all")


def main(argv: list[str] | None = None, non_dumpable: bool | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    ack_fd = int(args[args.index("--ack-fd") + 1]) if "--ack-fd" in args else None
    # Move the channel off fds 0/1 so a stray print can never corrupt it.
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    if non_dumpable is None:
        osutil.harden("non_dumpable", osutil.make_non_dumpable)
    else:
        osutil.PROTECTIONS["non_dumpable"] = non_dumpable
    osutil.harden("subreaper", osutil.become_subreaper)
    # Python 3.12 warns on every fork of a process with threads (here: pyarrow's idle pool,
    # which re-creates itself after fork). The child runs single-threaded until the code starts.
    warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    executor = Executor(
        sandbox_uid=int(os.environ.get("SANDBOX_SANDBOX_UID", "65534")),
        sandbox_gid=int(os.environ.get("SANDBOX_SANDBOX_GID", "65534")),
        frame_cache_entries=int(os.environ.get("SANDBOX_FRAME_CACHE_ENTRIES", "4")),
        dedicated_uid=os.environ.get("SANDBOX_DEDICATED_UID") == "1",
        network_guard=os.environ.get("SANDBOX_NETWORK_GUARD", "1") != "0",
    )
    osutil.PROTECTIONS["pidfd"] = executor.pidfd
    if executor.dedicated_uid:
        osutil.PROTECTIONS["process_sweep"] = True
    _warm_up()
    executor.remember_tmp()
    send_message(wfd, {"op": "ready", "pid": executor.pid})
    while True:
        try:
            message = recv_message(rfd)
        except ChannelClosed:
            executor.discard_spare()
            return 0
        if message.get("op") == "run" and ack_fd is not None:
            # Acknowledge on a side pipe the handler reads only if we die: it then knows
            # whether the request ever started, without an extra wake-up per run.
            os.write(ack_fd, ACK.pack(int(message.get("id") or 0)))
        try:
            reply = executor.handle(message)
        except Exception as exc:
            envelope = make_envelope(
                "error", error=error_info("ExecutorError", f"{type(exc).__name__}: {exc}")
            )
            reply = {"op": "result", "envelope": envelope, "parse_ms": 0.0, "cache": "none"}
        reply["id"] = message.get("id")
        reply["protections"] = {**osutil.protections(), **executor.child_protections}
        try:
            send_message(wfd, reply)
        except ChannelClosed:
            executor.discard_spare()
            return 0
        except (ValueError, RecursionError) as exc:
            # Whatever a run managed to put in its reply, the executor stays up.
            envelope = make_envelope(
                "error", error=error_info("ExecutorError", f"unsendable result: {exc}")
            )
            send_message(wfd, {**reply, "envelope": envelope})
        executor.housekeeping()


if __name__ == "__main__":
    sys.exit(main())
