"""Linux process controls the runtime depends on (prctl, process-tree discovery).

prctl has no wrapper in the standard library, so it is called through libc with ctypes.
Lambda's syscall filter may refuse any of these calls: `harden` records which protections
are in force and which were refused, and the runtime keeps serving either way.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Callable, Iterable, Iterator

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)


class ProcessControlError(OSError):
    """A prctl call the isolation depends on failed."""


def _prctl(option: int, arg: int) -> int:
    result = int(_libc.prctl(option, arg, 0, 0, 0))
    if result < 0:
        err = ctypes.get_errno()
        raise ProcessControlError(err, f"prctl({option}) failed: {os.strerror(err)}")
    return result


PROTECTIONS: dict[str, bool] = {}


def harden(name: str, call: Callable[[], object]) -> bool:
    """Apply one protection; record whether the kernel (or Lambda's filter) allowed it."""
    try:
        call()
    except OSError:
        PROTECTIONS[name] = False
        return False
    PROTECTIONS[name] = True
    return True


def protections() -> dict[str, bool]:
    return dict(PROTECTIONS)


def make_non_dumpable() -> None:
    """Hide this process from same-uid peers: /proc/<pid>/environ, mem and ptrace are denied."""
    _prctl(PR_SET_DUMPABLE, 0)


def make_dumpable() -> None:
    """Let the executor (same uid) read this run child's /proc/<pid>/smaps_rollup, so the
    run's memory can be measured; the child holds nothing the run may not see."""
    _prctl(PR_SET_DUMPABLE, 1)


def is_dumpable() -> bool:
    return _prctl(PR_GET_DUMPABLE, 0) != 0


def become_subreaper() -> None:
    """Adopt orphaned descendants, so a double-forked daemon cannot escape the run cleanup."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(expected_parent: int) -> None:
    """SIGKILL this process when its parent dies; exit now if that already happened.

    Set after any uid change, which clears it.
    """
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != expected_parent:
        os._exit(0)


def set_no_new_privs() -> None:
    """Forbid gaining privileges through set-uid binaries for this process and its children."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


_HAS_CHILDREN_FILE = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def _children_by_scan(pid: int) -> list[int]:
    """Fallback for kernels without CONFIG_PROC_CHILDREN: match the ppid of every process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                # The command name may contain spaces and parentheses: parse after the last ')'.
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return found


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (all threads), read from /proc; empty if it is gone."""
    if not _HAS_CHILDREN_FILE:
        return _children_by_scan(pid)
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as handle:
                found.extend(int(part) for part in handle.read().split())
        except OSError:
            continue
    return found


def descendants(pid: int) -> Iterator[int]:
    """Every live descendant of `pid`, parents before children."""
    stack = child_pids(pid)
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        yield current
        stack.extend(child_pids(current))


PF_EXITING = 0x4  # task->flags bit set as a task enters do_exit(): it never runs code again


def can_run(pid: int) -> bool:
    """True while any thread of `pid` may still execute code (not exiting, not a zombie)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] in ("Z", "X", "x") or int(fields[6]) & PF_EXITING:
            continue
        return True
    return False


def count_tasks_of_uid(uid: int) -> int:
    """Threads owned by `uid` (what RLIMIT_NPROC counts), from /proc/<pid>/status."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as handle:
                status = handle.read()
        except OSError:
            continue
        real_uid = threads = None
        for line in status.splitlines():
            if line.startswith("Uid:"):
                real_uid = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
        if real_uid == uid and threads is not None:
            total += threads
    return total


def vm_size_bytes() -> int:
    """This process's virtual size, the baseline RLIMIT_AS is added to."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise ProcessControlError("VmSize missing from /proc/self/status")


def release_free_memory() -> None:
    """Return freed heap pages to the OS (glibc malloc_trim); a no-op on other C libraries."""
    trim = getattr(_libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def pidfd_works() -> bool:
    """pidfd_open needs Linux 5.3 and may be filtered (ENOSYS, EPERM): probe it once."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (OSError, AttributeError):
        return False
    return True


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def state_of(pid: int) -> str | None:
    """The scheduler state letter of `pid` (R, S, T for stopped, Z ...), None when it is gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def ancestors(pid: int) -> list[int]:
    """`pid`'s parent, grandparent, ... up to (and including) pid 1."""
    found: list[int] = []
    current: int | None = pid
    while current not in (None, 0, 1):
        current = parent_of(current)
        if current is None or current == 0 or current in found:
            break
        found.append(current)
    return found


def pids_of_uid(uid: int) -> list[int]:
    """Every process whose real or effective uid is `uid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as handle:
                for line in handle:
                    if line.startswith("Uid:"):
                        real, effective = (int(v) for v in line.split()[1:3])
                        if uid in (real, effective):
                            found.append(int(entry))
                        break
        except (OSError, ValueError):
            continue
    return found


def sweep_uid(uid: int, keep: Iterable[int], timeout_s: float = 5.0, gone: bool = False) -> int:
    """SIGKILL every process of `uid` but `keep`, until none can run; returns how many.

    For an environment where the uid is the function's alone (Lambda, the local cloud's
    Lambda profile): whatever detached from the run's tree (new session, double fork, killed
    its parents) is still found. A stopped process dies on SIGKILL too. With `gone`, also wait
    until each has finished exiting (memory freed, at most a zombie): orphans are reaped by
    pid 1, not by us, so this is the only way to know the next run starts with them gone.
    """
    import time

    spared = set(keep) | {os.getpid()}
    deadline = time.monotonic() + timeout_s
    killed: set[int] = set()
    while True:
        left = [p for p in pids_of_uid(uid) if p not in spared]
        victims = [p for p in left if can_run(p)]
        exiting = gone and any(state_of(p) not in (None, "Z", "X") for p in left)
        if (not victims and not exiting) or time.monotonic() > deadline:
            return len(killed)
        if not victims:
            time.sleep(0.001)
            continue
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        os.sched_yield()


def tree_usage(pids: Iterable[int]) -> tuple[int, float]:
    """(proportional set size in bytes, CPU seconds) summed over `pids`.

    PSS splits each shared page between the processes that map it, so pages shared with the
    executor (the frames) are not counted in full, and the sum over a tree is what it really
    holds however it forks.
    """
    pss = 0
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            with contextlib.suppress(ValueError, IndexError):
                ticks += int(fields[11]) + int(fields[12])
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            continue
    return pss, ticks / CLOCK_TICKS


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
