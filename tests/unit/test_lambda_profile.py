"""The launcher that runs a user function the way Lambda does."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandboxctl.localcloud import lambda_profile

PROBE = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def prctl(option, arg):
    return 0 if libc.prctl(option, arg, 0, 0, 0) == 0 else ctypes.get_errno()
try:
    os.close(os.pidfd_open(os.getpid()))
    pidfd = 0
except OSError as exc:
    pidfd = exc.errno
try:
    os.setuid(os.getuid())
    setuid = 0
except OSError as exc:
    setuid = exc.errno
with open("/tmp/probe", "w") as out:
    out.write("x")
print(os.getuid(), prctl(4, 0), prctl(36, 1), prctl(1, 9), pidfd, setuid,
      os.access("/var/task", os.W_OK))
"""


def run_probe(profile: str) -> list[str]:
    launch = lambda_profile.command(
        profile, [sys.executable, "-c", PROBE], dict(os.environ), os.getcwd()
    )
    try:
        done = subprocess.run(
            launch.argv, env=launch.env, cwd=launch.cwd, capture_output=True, text=True, timeout=60
        )
    finally:
        if launch.lease is not None:
            launch.lease.close()
    assert done.returncode == 0, done.stderr
    return [*done.stdout.split(), str(launch.lease.uid if launch.lease else os.getuid())]


@pytest.mark.parametrize("profile", ["lambda", "lambda-strict"])
def test_the_profiles_refuse_what_lambda_refuses(profile: str) -> None:
    if lambda_profile.limitations(profile):
        pytest.fail("; ".join(lambda_profile.limitations(profile)))
    uid, dumpable, subreaper, pdeathsig, pidfd, setuid, code_writable, leased = run_probe(profile)
    eperm = str(errno.EPERM)
    assert pdeathsig == eperm  # reported refused in Lambda
    assert setuid == eperm
    assert code_writable == "False"
    if os.geteuid() == 0:
        # One non-root uid for the environment: the one leased for it, never root.
        assert uid == leased != "0"
    if profile == "lambda":
        assert (dumpable, subreaper, pidfd) == ("0", "0", "0")
    else:
        assert (dumpable, subreaper, pidfd) == (eperm, eperm, str(errno.ENOSYS))


def test_an_unknown_profile_is_refused() -> None:
    with pytest.raises(lambda_profile.LaunchError, match="unknown Lambda profile"):
        lambda_profile.command("lambda-lite", [sys.executable], {}, os.getcwd())


def test_each_environment_gets_its_own_host_uid_for_as_long_as_it_lives(tmp_path: Path) -> None:
    # On one host, environments sharing a uid would share RLIMIT_NPROC's count (issue 9).
    first = lambda_profile.UidLease(tmp_path)
    second = lambda_profile.UidLease(tmp_path)
    assert first.uid != second.uid
    assert min(first.uid, second.uid) >= lambda_profile.UID_POOL_BASE
    taken = first.uid
    first.close()
    third = lambda_profile.UidLease(tmp_path)
    assert third.uid == taken  # given back when the environment ends
    second.close()
    third.close()
