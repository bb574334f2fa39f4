"""Start a process the way Lambda runs a function: one non-root uid, read-only code, private /tmp.

AWS behaviour reproduced (see docs/security.md and the Lambda environment notes): every process
of a function shares one unprivileged uid (``sbx_user1051``, 993:990 for images) with no
capabilities; the code and the Python installation are read-only; only ``/tmp`` is writable,
private to the environment and ``EphemeralStorage`` in size; the function has its own PID
namespace; and a syscall filter refuses calls with an error (EPERM, or ENOSYS for calls the
kernel "does not have").

Two filter strengths:

- ``lambda``: what Lambda is documented or publicly reported to refuse: ptrace and
  process_vm_*, mounts and namespaces, uid/gid changes, kernel modules and the like, and the
  ``prctl`` options reported refused (``PR_SET_PDEATHSIG``, ``PR_SET_NO_NEW_PRIVS``,
  ``PR_SET_NAME``).
- ``lambda-strict``: additionally every hardening call the runtime makes: every ``prctl``
  option that changes state, ``pidfd_open`` (ENOSYS, as on Linux 4.14) and ``seccomp`` itself.
  The worst case the runtime has to survive.

Started as root (CI, containers), bubblewrap builds the namespaces and mounts, then this file,
run as a script inside them (``--stage2``), drops to the function uid, loads the filter and
execs the worker. Started as an ordinary user there is no uid to switch to and no mount
namespace to build: the worker runs as that user with the filter only; ``limitations`` names
what that leaves out.

Standalone on purpose (stdlib + pyseccomp): it runs inside the sandbox before the worker.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PROFILES = ("lambda", "lambda-strict", "none")
FUNCTION_GID = 990  # sbx_user1051 is 993:990 in container-image functions
# Lambda gives every environment uid 993 inside its own microVM, so each has its own kernel
# count of that uid's processes (RLIMIT_NPROC). Environments on one host would share that count
# and starve each other, so each gets a host uid of its own from this pool, leased for its life.
UID_POOL_BASE = 200_000
UID_POOL_SIZE = 4096
UID_LEASE_DIR = Path("/run/sandbox-fleet/function-uids")
DEFAULT_EPHEMERAL_MB = 512
TASK_ROOT = "/var/task"
# The variables Lambda sets for an image function that the worker does not set itself.
LAMBDA_ENV = {
    "LAMBDA_TASK_ROOT": TASK_ROOT,
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
    "AWS_EXECUTION_ENV": "AWS_Lambda_Image",
    "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    "LANG": "en_US.UTF-8",
    "TZ": ":UTC",
    "HOME": "/tmp",  # noqa: S108
}

# Syscalls Lambda refuses or is reported to refuse: no privilege, no namespaces, no tracing.
LAMBDA_REFUSED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "unshare",
    "setns",
    "pivot_root",
    "chroot",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setgroups",
    "setfsuid",
    "setfsgid",
    "capset",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "swapon",
    "swapoff",
    "reboot",
    "open_by_handle_at",
    "userfaultfd",
    "fsopen",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "quotactl",
    "acct",
    "settimeofday",
    "clock_settime",
)
PR_SET_PDEATHSIG, PR_SET_NAME, PR_SET_NO_NEW_PRIVS = 1, 15, 38
LAMBDA_REFUSED_PRCTL = (PR_SET_PDEATHSIG, PR_SET_NAME, PR_SET_NO_NEW_PRIVS)
# prctl options that only read state: lambda-strict still allows these.
PRCTL_READS = frozenset(
    {2, 3, 5, 7, 9, 11, 13, 16, 19, 21, 23, 25, 27, 30, 37, 39, 40, 42, 46, 52, 58, 66}
)
PRCTL_MAGIC_SETS = (0x59616D61, 0x53564D41)  # PR_SET_PTRACER, PR_SET_VMA
STRICT_ENOSYS = ("pidfd_open",)
STRICT_REFUSED = ("seccomp",)


class LaunchError(RuntimeError):
    """The requested Lambda profile cannot be built on this host."""


def build_filter(profile: str) -> object:
    """The profile's seccomp filter (a pyseccomp SyscallFilter, not yet loaded)."""
    import pyseccomp as seccomp

    refuse = seccomp.ERRNO(errno.EPERM)
    filt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in LAMBDA_REFUSED:
        _add(filt, refuse, name)
    options: list[int] = list(LAMBDA_REFUSED_PRCTL)
    if profile == "lambda-strict":
        options = [o for o in range(0, 80) if o not in PRCTL_READS] + list(PRCTL_MAGIC_SETS)
        for name in STRICT_REFUSED:
            _add(filt, refuse, name)
        for name in STRICT_ENOSYS:
            _add(filt, seccomp.ERRNO(errno.ENOSYS), name)
    for option in options:
        # prctl's option is an int: compare the low 32 bits so junk above cannot slip past.
        filt.add_rule(refuse, "prctl", seccomp.Arg(0, seccomp.MASKED_EQ, 0xFFFFFFFF, option))
    return filt


def _add(filt: object, action: object, name: str, *args: object) -> None:
    import pyseccomp as seccomp

    try:
        seccomp.resolve_syscall(seccomp.system_arch(), name)
    except (ValueError, OSError):
        return  # not a syscall on this architecture
    filt.add_rule(action, name, *args)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Launch:
    """How a worker process is started under a profile, and what that leaves out."""

    argv: list[str]
    env: dict[str, str]
    cwd: str  # where to start the launcher (a host path)
    task_root: str  # where the code is, as the function sees it
    limitations: tuple[str, ...]
    # The host uid the environment runs as (root only); close it when the environment is gone.
    lease: UidLease | None = None


class UidLease:
    """One host uid held for one execution environment: an flock, freed on close or our exit."""

    def __init__(self, lease_dir: Path = UID_LEASE_DIR) -> None:
        lease_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for slot in range(UID_POOL_SIZE):
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(lease_dir / f"{slot}.lock", flags, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._fd: int | None = fd
            self.uid = UID_POOL_BASE + slot
            return
        raise LaunchError(f"all {UID_POOL_SIZE} function uids are in use on this host")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def limitations(profile: str) -> tuple[str, ...]:
    """The protections of `profile` this host cannot give (empty when it gives them all)."""
    if profile == "none":
        return ("the function runs as the local cloud's own user with no syscall filter",)
    missing = []
    if os.geteuid() != 0:
        missing += [
            "one separate non-root uid for the function (it runs as your own user)",
            "read-only code and Python installation",
            f"a private /tmp of the function's EphemeralStorage size (it shares {_tmp()})",
            "an own PID namespace",
        ]
    elif bwrap_path() is None:
        missing.append("everything: bubblewrap is missing (install the Debian package bubblewrap)")
    try:
        import pyseccomp  # noqa: F401
    except (ImportError, OSError):
        missing.append("the syscall filter: pyseccomp or libseccomp2 is missing")
    return tuple(missing)


def _tmp() -> str:
    import tempfile

    return tempfile.gettempdir()


def _python_paths() -> list[str]:
    """Directories the interpreter needs: its base installation and the venv (if any)."""
    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    return sorted(paths)


def command(
    profile: str,
    argv: Sequence[str],
    env: dict[str, str],
    code_dir: str,
    ephemeral_mb: int = DEFAULT_EPHEMERAL_MB,
    extra_ro: Sequence[str] = (),
) -> Launch:
    """The command line that runs `argv` (a Python command) under `profile`.

    `code_dir` (and `extra_ro`) are mounted read-only at their own paths, the code also at
    /var/task; `argv[0]` must be this interpreter. Inherited file descriptors stay open across
    bubblewrap (pass them with pass_fds).
    """
    if profile not in PROFILES:
        raise LaunchError(f"unknown Lambda profile {profile!r}: choose one of {PROFILES}")
    env = dict(env)
    if profile == "none":
        return Launch(list(argv), env, code_dir, code_dir, limitations(profile))
    env.update(LAMBDA_ENV)
    env["SANDBOX_PROFILE"] = profile
    stage2 = [sys.executable, str(Path(__file__).resolve()), "--stage2", profile]
    if os.geteuid() != 0:
        env["SANDBOX_DEDICATED_UID"] = "0"  # the uid is the operator's: never sweep it
        env["LAMBDA_TASK_ROOT"] = code_dir
        return Launch([*stage2, "--", *argv], env, code_dir, code_dir, limitations(profile))
    bwrap = bwrap_path()
    if bwrap is None:
        raise LaunchError(
            f"the {profile} profile needs bubblewrap when the local cloud runs as root: "
            "install the Debian package bubblewrap (apt-get install bubblewrap), "
            "or start the local cloud with --lambda-profile none"
        )
    env["SANDBOX_DEDICATED_UID"] = "1"  # every process of the uid belongs to this function
    # No --die-with-parent: its PDEATHSIG follows the *thread* that started bubblewrap, and the
    # local cloud starts environments from request threads that end at once. Worker.kill and
    # the local cloud's shutdown end the environment (its PID namespace dies with it).
    cmd = [bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    cmd += ["--hostname", "localhost"]
    for system in ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.lexists(system):
            if os.path.islink(system):
                cmd += ["--symlink", os.readlink(system), system]
            else:
                cmd += ["--ro-bind", system, system]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    size = max(ephemeral_mb, 1) * 1024 * 1024
    cmd += ["--size", str(size), "--perms", "0700", "--tmpfs", "/tmp"]  # noqa: S108
    cmd += ["--dir", "/var", "--dir", "/var/runtime", "--dir", "/var/lang"]
    real_code = os.path.realpath(code_dir)
    binds = [*_python_paths(), real_code, *(os.path.realpath(p) for p in extra_ro)]
    made = {"/", "/tmp", "/var", "/proc", "/dev"}  # noqa: S108
    for path in sorted(set(binds)):
        if path.startswith(("/usr/", "/etc/")):
            continue
        # Parents bubblewrap creates on its own are 0700: the function uid could not pass.
        for parent in reversed(Path(path).parents):
            if str(parent) not in made:
                made.add(str(parent))
                cmd += ["--perms", "0755", "--dir", str(parent)]
        cmd += ["--ro-bind", path, path]
    cmd += ["--ro-bind", real_code, TASK_ROOT]
    cmd += ["--chdir", TASK_ROOT]
    # The function's uid owns the private /tmp (Lambda: mode 0700, owner sbx_user1051).
    lease = UidLease()
    cmd += ["--", *stage2, "--uid", str(lease.uid), "--gid", str(FUNCTION_GID), "--", *argv]
    return Launch(cmd, env, real_code, TASK_ROOT, limitations(profile), lease)


def _stage2(args: list[str]) -> None:
    """Inside the namespaces: become the function uid, load the filter, exec the worker."""
    import ctypes

    profile = args[0]
    rest = args[1:]
    uid = gid = None
    while rest and rest[0] != "--":
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "--uid":
            uid = int(value)
        elif flag == "--gid":
            gid = int(value)
    argv = rest[1:]
    if uid is not None and gid is not None:
        os.chown("/tmp", uid, gid)  # noqa: S108  (the private tmpfs bubblewrap just mounted)
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # from root to a non-zero uid: every capability is gone
        if os.geteuid() == 0 or os.getegid() == 0:
            raise SystemExit("lambda_profile: could not leave root")
    libc = ctypes.CDLL(None, use_errno=True)
    # Loading a filter without CAP_SYS_ADMIN requires no_new_privs.
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SystemExit(f"lambda_profile: no_new_privs: {os.strerror(ctypes.get_errno())}")
    try:
        filt = build_filter(profile)
    except (ImportError, OSError) as exc:
        raise SystemExit(
            f"lambda_profile: cannot build the {profile} syscall filter ({exc}): "
            "install pyseccomp (pip) and libseccomp2 (Debian)"
        ) from exc
    filt.load()  # type: ignore[attr-defined]
    os.execve(argv[0], argv, os.environ)  # noqa: S606  (the worker, by absolute path)


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "--stage2":
    _stage2(sys.argv[2:])
