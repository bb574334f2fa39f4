"""The launcher that runs a user function the way Lambda does."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

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
    done = subprocess.run(
        launch.argv, env=launch.env, cwd=launch.cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("profile", ["lambda", "lambda-strict"])
def test_the_profiles_refuse_what_lambda_refuses(profile: str) -> None:
    if lambda_profile.limitations(profile):
        pytest.fail("; ".join(lambda_profile.limitations(profile)))
    uid, dumpable, subreaper, pdeathsig, pidfd, setuid, code_writable = run_probe(profile)
    eperm = str(errno.EPERM)
    assert pdeathsig == eperm  # reported refused in Lambda
    assert setuid == eperm
    assert code_writable == "False"
    if os.geteuid() == 0:
        assert uid == str(lambda_profile.FUNCTION_UID)
    if profile == "lambda":
        assert (dumpable, subreaper, pidfd) == ("0", "0", "0")
    else:
        assert (dumpable, subreaper, pidfd) == (eperm, eperm, str(errno.ENOSYS))


def test_an_unknown_profile_is_refused() -> None:
    with pytest.raises(lambda_profile.LaunchError, match="unknown Lambda profile"):
        lambda_profile.command("lambda-lite", [sys.executable], {}, os.getcwd())
