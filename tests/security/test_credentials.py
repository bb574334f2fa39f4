"""The function's credentials are out of reach of the user's code.

The handler here is the real CLI process, started the way Lambda starts the runtime: with the
credentials in its exec-time environment. The code then hunts for them everywhere it can look.
It never contains a whole secret itself: it searches for the first half of each secret and
confirms a hit by hashing the bytes that follow, so the search cannot find its own source.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from sandbox_runtime import osutil
from tests.security.conftest import Sandbox

HUNT = """
import hashlib, json, os

NEEDLES = {needles!r}

def find(blob):
    hits = []
    for name, (head, digest, tail_len) in NEEDLES.items():
        start = 0
        prefix = head.encode()
        while (at := blob.find(prefix, start)) >= 0:
            tail = blob[at + len(prefix): at + len(prefix) + tail_len]
            if hashlib.sha256(tail).hexdigest() == digest:
                hits.append(name)
                break
            start = at + 1
    return hits

# A known value made at run time, to prove the memory scan finds what is really there.
control = {control_head!r} + {control_tail_reversed!r}[::-1]

report = {{"env_keys": sorted(os.environ), "environ": {{}}, "memory_hits": []}}
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open(f"/proc/{{entry}}/environ", "rb") as handle:
                report["environ"][entry] = find(handle.read())
        except OSError:
            report["environ"][entry] = "denied"

executor = os.getppid()
with open(f"/proc/{{executor}}/stat") as handle:
    handler = int(handle.read().rsplit(")", 1)[1].split()[1])
report["executor"], report["handler"] = executor, handler
try:
    with open(f"/proc/{{handler}}/mem", "rb") as handle:
        handle.read(1)
    report["handler_mem"] = "read"
except OSError:
    report["handler_mem"] = "denied"

regions = []
with open("/proc/self/maps") as maps:
    for line in maps:
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        name = fields[5] if len(fields) > 5 else ""
        if fields[1].startswith("r") and name not in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
            regions.append((start, end))
# /proc/self/mem is closed to a non-dumpable process; process_vm_readv on itself is not, and
# reports unmapped pages as an error instead of crashing.
import ctypes
class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
libc = ctypes.CDLL(None, use_errno=True)
libc.process_vm_readv.restype = ctypes.c_ssize_t
chunk, overlap, scanned = 4 << 20, 256, 0
buffer = ctypes.create_string_buffer(chunk + overlap)
pid = os.getpid()
for start, end in regions:
    position = start
    while position < end:
        size = min(chunk + overlap, end - position)
        local = IoVec(ctypes.addressof(buffer), size)
        remote = IoVec(position, size)
        got = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if got <= 0:
            position += chunk
            continue
        scanned += got
        for hit in find(buffer.raw[:got]):
            if hit not in report["memory_hits"]:
                report["memory_hits"].append(hit)
        position += chunk
report["scanned_mb"] = scanned >> 20
result = report
"""


def _needle(secret: str) -> tuple[str, str, int]:
    half = len(secret) // 2
    tail = secret[half:].encode()
    return secret[:half], hashlib.sha256(tail).hexdigest(), len(tail)


@pytest.fixture(scope="module")
def hunt_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    secret_key = "sk" + secrets.token_hex(20)
    session_token = "st" + secrets.token_hex(40)
    control = "ctl" + secrets.token_hex(16)
    half = len(control) // 2
    code = HUNT.format(
        needles={
            "secret_key": _needle(secret_key),
            "session_token": _needle(session_token),
            "control": _needle(control),
        },
        control_head=control[:half],
        control_tail_reversed=control[half:][::-1],
    )
    data = tmp_path_factory.mktemp("data")
    (data / "data.csv").write_text("a\n1\n")
    code_file = data / "hunt.py"
    code_file.write_text(code)
    work = Path(tempfile.mkdtemp(prefix="sandbox-cred-"))
    work.chmod(0o711)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLEEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_SESSION_TOKEN": session_token,
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "SANDBOX_WORK_DIR": str(work),
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox_runtime",
            "run",
            "--data-dir",
            str(data),
            "--dataset",
            "data.csv",
            "--code-file",
            str(code_file),
            "--timeout-s",
            "60",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    envelope = json.loads(completed.stdout.splitlines()[0])
    assert envelope["status"] == "ok", envelope["error"]
    report: dict[str, Any] = envelope["result"]
    return report


def test_child_environment_has_no_credentials(hunt_report: dict[str, Any]) -> None:
    forbidden = {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
    }
    assert forbidden.isdisjoint(hunt_report["env_keys"])


def test_no_readable_proc_environ_holds_credentials(hunt_report: dict[str, Any]) -> None:
    environs = hunt_report["environ"]
    # The credential-holding handler is not readable at all; the executor never had them.
    assert environs[str(hunt_report["handler"])] == "denied"
    assert environs[str(hunt_report["executor"])] in ("denied", [])
    leaks = {pid: hits for pid, hits in environs.items() if hits not in ("denied", [])}
    assert leaks == {}


def test_handler_memory_is_not_readable(hunt_report: dict[str, Any]) -> None:
    assert hunt_report["handler_mem"] == "denied"


def test_credentials_are_nowhere_in_the_child_memory(hunt_report: dict[str, Any]) -> None:
    # The executor the child was forked from was exec'd with a scrubbed environment.
    assert hunt_report["scanned_mb"] > 10
    assert hunt_report["memory_hits"] == ["control"]


def test_the_handler_process_is_non_dumpable(sandbox: Sandbox) -> None:
    # In Lambda the code runs under the handler's own uid; only this flag keeps
    # /proc/<handler>/environ and /proc/<handler>/mem closed to it.
    assert sandbox.run("1")["status"] == "ok"
    assert osutil.is_dumpable() is False
