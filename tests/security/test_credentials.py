"""The function's credentials are out of reach of the user's code, where the kernel allows.

The handler is the real runtime in a local-cloud execution environment, started the way Lambda
starts it: with the credentials in its exec-time environment. The code then hunts for them
everywhere it can look. It never contains a whole secret itself: it searches for the first half
of each secret and confirms a hit by hashing the bytes that follow, so the search cannot find
its own source.

In ``lambda-strict`` Lambda refuses PR_SET_DUMPABLE, and with one shared uid nothing else can
close the handler's /proc entries: there the credentials are readable, as docs/security.md
says, and the IAM wall is what holds (tests/integration/test_control_plane.py::
test_a_users_own_credentials_cannot_reach_another_users_data_or_function uses exactly such
stolen credentials against another user's data and functions).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import pytest

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
    # Opening is the access check; offset 0 is unmapped, so there is nothing to read there.
    with open(f"/proc/{{handler}}/mem", "rb") as handle:
        report["handler_mem"] = "read"
except OSError:
    report["handler_mem"] = "denied"

regions = []
anonymous = {{}}
with open("/proc/self/maps") as maps:
    for line in maps:
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        name = fields[5] if len(fields) > 5 else ""
        if fields[1].startswith("r") and name not in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
            regions.append((start, end))
            anonymous[start] = name in ("", "[heap]", "[stack]")
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
probe = IoVec(ctypes.addressof(buffer), 1)
vm_readv = libc.process_vm_readv(pid, ctypes.byref(probe), 1, ctypes.byref(probe), 1, 0) == 1
for start, end in regions:
    position = start
    while position < end:
        size = min(chunk + overlap, end - position)
        local = IoVec(ctypes.addressof(buffer), size)
        remote = IoVec(position, size)
        got = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if got <= 0 and not vm_readv and anonymous.get(start):
            # process_vm_readv is filtered in the Lambda profiles: copy anonymous memory
            # (heap, stack, malloc arenas) directly, where no page can fault.
            data = ctypes.string_at(position, size)
            buffer.raw = data + bytes(len(buffer) - len(data))
            got = len(data)
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
def hunt_report(sandbox: Sandbox) -> dict[str, Any]:
    control = "ctl" + secrets.token_hex(16)
    half = len(control) // 2
    code = HUNT.format(
        needles={
            "secret_key": _needle(sandbox.secret_key),
            "session_token": _needle(sandbox.session_token),
            "control": _needle(control),
        },
        control_head=control[:half],
        control_tail_reversed=control[half:][::-1],
    )
    envelope = sandbox.run(code, timeout_s=60)
    assert envelope["status"] == "ok", envelope["error"]
    report: dict[str, Any] = envelope["result"]
    report["sandbox"] = envelope["sandbox"]
    return report


def handler_exposed(report: dict[str, Any]) -> bool:
    """Lambda refused PR_SET_DUMPABLE and the code runs under the handler's own uid."""
    return "non_dumpable" in report["sandbox"]["refused"]


def test_child_environment_has_no_credentials(hunt_report: dict[str, Any]) -> None:
    forbidden = {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
    }
    assert forbidden.isdisjoint(hunt_report["env_keys"])


def test_no_readable_proc_environ_holds_credentials(
    sandbox: Sandbox, hunt_report: dict[str, Any]
) -> None:
    environs = hunt_report["environ"]
    handler = str(hunt_report["handler"])
    # The executor never had them, and no other process of the environment holds them.
    assert environs[str(hunt_report["executor"])] in ("denied", [])
    leaks = {pid: hits for pid, hits in environs.items() if hits not in ("denied", [])}
    if handler_exposed(hunt_report):
        # Documented (docs/security.md, lambda-strict): only the handler, only its own keys.
        assert sandbox.profile == "lambda-strict"
        assert leaks == {handler: ["secret_key", "session_token"]}
    else:
        assert environs[handler] == "denied"
        assert leaks == {}


def test_handler_memory_is_not_readable(hunt_report: dict[str, Any]) -> None:
    expected = "read" if handler_exposed(hunt_report) else "denied"
    assert hunt_report["handler_mem"] == expected


def test_credentials_are_nowhere_in_the_child_memory(hunt_report: dict[str, Any]) -> None:
    # The executor the child was forked from was exec'd with a scrubbed environment.
    assert hunt_report["scanned_mb"] > 10
    assert hunt_report["memory_hits"] == ["control"]


def test_the_handler_and_executor_are_non_dumpable_where_lambda_allows(
    sandbox: Sandbox, hunt_report: dict[str, Any]
) -> None:
    # In Lambda the code runs under the handler's own uid; only this flag keeps
    # /proc/<handler>/environ and /proc/<handler>/mem closed to it.
    protections = hunt_report["sandbox"]
    if sandbox.profile == "lambda-strict":
        assert "non_dumpable" in protections["refused"]
    else:
        assert "non_dumpable" in protections["in_force"]
