"""Attacks that work when the whole runtime shares one ordinary uid, as in Lambda.

Each test is an attack from the issue "The sandbox holds inside real Lambda"; each failed on
the runtime before it (run under the Lambda profile). They run in every profile: where Lambda
refuses a protection, another one must hold.
"""

from __future__ import annotations

import json
import socket
import textwrap

import pytest

from tests.security.conftest import Sandbox

PROCESS_STATE = textwrap.dedent(
    """
    import os
    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            return False
    """
)


def test_a_detached_process_that_kills_the_executor_does_not_outlive_the_run(
    sandbox: Sandbox,
) -> None:
    # New session, double fork, then it kills (or stops) its executor and waits for the next
    # one, to read the next run's code and forge its result.
    code = textwrap.dedent(
        """
        import os, signal, time
        executor = os.getppid()
        read_end, write_end = os.pipe()
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.write(write_end, str(os.getpid()).encode())
                for sig in (signal.SIGKILL, signal.SIGSTOP):
                    try:
                        os.kill(executor, sig)
                    except OSError:
                        pass
                while True:
                    with open("/tmp/daemon-was-here", "w") as note:
                        note.write(str(time.time()))
                    time.sleep(0.05)
            os._exit(0)
        os.wait()
        daemon = int(os.read(read_end, 32))
        time.sleep(0.5)
        result = daemon
        """
    )
    first = sandbox.run(code)
    # Where the kernel let the code hit its executor, the run is reported as stopped.
    assert first["status"] in ("ok", "error"), first["error"]
    if first["status"] == "error":
        assert first["error"]["type"] in ("ExecutorStopped", "ExecutorCrashed")
    second = sandbox.run(
        PROCESS_STATE + "import os\nresult = {'note': os.path.exists('/tmp/daemon-was-here'), "
        "'executor': os.getppid()}"
    )
    assert second["status"] == "ok", second["error"]
    assert second["result"]["note"] is False
    if first["status"] == "ok":
        third = sandbox.run(PROCESS_STATE + f"result = alive({first['result']})")
        assert third["result"] is False
    sandbox.assert_serves_normally()


def test_nothing_a_run_writes_anywhere_in_tmp_survives_it(sandbox: Sandbox) -> None:
    code = textwrap.dedent(
        """
        import os
        work = os.path.dirname(os.path.dirname(os.getcwd()))
        planted = []
        for directory in ("/tmp", work, os.path.dirname(os.getcwd())):
            path = os.path.join(directory, "left-behind")
            try:
                os.makedirs(path, exist_ok=True)
                for i in range(4):
                    with open(os.path.join(path, f"{i}.bin"), "wb") as out:
                        out.write(b"x" * (3 * 1024 * 1024))
                planted.append(path)
            except OSError:
                pass
        result = planted
        """
    )
    first = sandbox.run(code)
    assert first["status"] == "ok", first["error"]
    assert "/tmp/left-behind" in first["result"]  # /tmp itself is writable to the code

    second = sandbox.run(
        f"import os\nresult = [p for p in {first['result']!r} if os.path.exists(p)]"
    )
    assert second["status"] == "ok", second["error"]
    assert second["result"] == []
    sandbox.assert_serves_normally()


def test_disk_written_anywhere_counts_against_one_budget(sandbox: Sandbox) -> None:
    # 4 MiB per file (RLIMIT_FSIZE) but 48 MiB for the whole run: many files do not add up
    # to more than the budget.
    code = textwrap.dedent(
        """
        import os
        os.makedirs("/tmp/spread", exist_ok=True)
        for i in range(40):
            with open(f"/tmp/spread/{i}.bin", "wb") as out:
                out.write(os.urandom(3 * 1024 * 1024))
                out.flush()
                os.fsync(out.fileno())
        import time
        time.sleep(1)
        """
    )
    envelope = sandbox.run(code, timeout_s=20)

    assert envelope["status"] == "limit"
    assert envelope["error"]["type"] == "DiskLimit"
    after = sandbox.run("import os\nos.path.exists('/tmp/spread')")
    assert after["result"] is False
    sandbox.assert_serves_normally()


def test_memory_budget_covers_the_whole_process_tree(sandbox: Sandbox) -> None:
    # 256 MB for the run; each of four processes stays under it alone (RLIMIT_AS is per
    # process), together they hold 600 MB.
    code = textwrap.dedent(
        """
        import os, time
        import numpy as np
        children = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                block = np.ones(150 * 1024 * 1024 // 8)
                time.sleep(5)
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        result = "all held"
        """
    )
    envelope = sandbox.run(code, timeout_s=20)

    assert envelope["status"] == "memory", envelope
    assert "together" in envelope["error"]["message"]
    sandbox.assert_serves_normally()


def test_library_config_written_by_a_run_never_reaches_a_later_executor(
    sandbox: Sandbox,
) -> None:
    # The attack of the issue: write into every config directory matplotlib could read at the
    # next executor start (here a visible setting; a broken file bricks every start).
    code = textwrap.dedent(
        """
        import os, glob
        work = os.path.dirname(os.path.dirname(os.getcwd()))
        candidates = {
            os.path.join(work, "matplotlib"),
            "/tmp/.config/matplotlib",
            os.path.expanduser("~/.config/matplotlib"),
            *glob.glob(os.path.join(work, "mplconfig-*")),
        }
        try:
            with open(f"/proc/{os.getppid()}/environ", "rb") as handle:
                for item in handle.read().split(b"\\0"):
                    if item.startswith(b"MPLCONFIGDIR="):
                        candidates.add(item.split(b"=", 1)[1].decode())
        except OSError:
            pass
        written = []
        for directory in candidates:
            try:
                os.makedirs(directory, exist_ok=True)
                with open(os.path.join(directory, "matplotlibrc"), "w") as rc:
                    rc.write("lines.linewidth: 7.5\\n")
                written.append(directory)
            except OSError:
                pass
        result = written
        """
    )
    first = sandbox.run(code)
    assert first["status"] == "ok", first["error"]
    assert first["result"], "the attack found no directory to write to"

    response, _ = sandbox.worker.invoke({"op": "replace_executor"}, "replace")
    assert response["payload"] == {"replaced": True}
    second = sandbox.run("import matplotlib\nmatplotlib.rcParams['lines.linewidth']")
    assert second["status"] == "ok", second["error"]
    assert second["result"] == 1.5
    sandbox.assert_serves_normally()


def test_the_guard_cannot_be_switched_off_in_pure_python(
    sandbox: Sandbox, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    code = textwrap.dedent(
        f"""
        import gc, socket, sys
        child = sys.modules["sandbox_runtime.child"]
        tried = []
        def noop(*args, **kwargs):
            return None
        hooks = [o for o in gc.get_objects() if callable(o)
                 and getattr(o, "__module__", "") == "sandbox_runtime.child"
                 and getattr(getattr(o, "__code__", None), "co_name", "") in ("_audit", "hook")]
        for hook in hooks:
            for attribute, value in (("__code__", noop.__code__), ("__defaults__", None)):
                try:
                    setattr(hook, attribute, value)
                    tried.append(attribute + " replaced")
                except BaseException as exc:
                    tried.append(type(exc).__name__)
        child.BLOCKED_EVENTS = frozenset()
        child.SandboxPolicyError = type("Harmless", (Exception,), {{}})
        try:
            child.SandboxPolicyError.__init__ = noop
        except BaseException:
            pass
        print(tried, flush=True)
        connection = socket.create_connection(("127.0.0.1", {port}), timeout=2)
        """
    )
    envelope = sandbox.run(code)

    assert envelope["status"] == "error"
    assert envelope["error"]["type"] in ("SandboxPolicyError", "PermissionError"), envelope
    assert "replaced" not in envelope["stdout"]
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody ever connected
    sandbox.assert_serves_normally()


@pytest.mark.parametrize(
    "payload",
    [
        """b'{"status": "ok", "result": NaN, "result_type": "json", "figures": [], '"""
        """b'"error": null}'""",
        """b"[" * 200_000 + b"]" * 200_000""",
        'b\'{"status": "ok", "result_type": "json", "figures": [], "error": null, '
        "\"result\": ' + b'[' * 900 + b']' * 900 + b'}'",
        """b'{"status": "ok", "result": 1, "result_type": "json", "figures": [1], "error": 7}'""",
        """b"\\xff\\xfe not json" """,
    ],
    ids=["nan", "deep", "deep-result", "wrong-types", "garbage"],
)
def test_a_malformed_result_message_does_not_crash_the_executor(
    sandbox: Sandbox, payload: str
) -> None:
    before = sandbox.run("import os\nos.getppid()")["result"]
    code = textwrap.dedent(
        f"""
        import os, struct
        payload = {payload}
        os.write(3, struct.pack(">I", len(payload)) + payload)
        os._exit(0)
        """
    )
    envelope = sandbox.run(code)

    assert envelope["status"] in ("error", "ok"), envelope
    if envelope["status"] == "error":
        assert envelope["error"]["type"] == "ProcessExit"
    json.dumps(envelope, allow_nan=False)  # what the handler returned is valid JSON
    after = sandbox.run("import os\nos.getppid()")["result"]
    assert after == before  # the same executor: it survived
    sandbox.assert_serves_normally()


def test_stopping_the_executor_does_not_stall_the_handler(sandbox: Sandbox) -> None:
    code = textwrap.dedent(
        """
        import os, signal, time
        try:
            os.kill(os.getppid(), signal.SIGSTOP)
        except OSError as exc:
            print("refused:", exc, flush=True)
            raise
        time.sleep(60)
        """
    )
    envelope = sandbox.run(code, timeout_s=60)

    # Without the watch, the handler waits for the invocation deadline and reports a timeout.
    assert envelope["status"] == "error", envelope
    if "refused" not in envelope["stdout"]:
        assert envelope["error"]["type"] == "ExecutorStopped"
    sandbox.assert_serves_normally()


def test_code_that_sleeps_past_the_timeout_is_stopped_near_the_limit(sandbox: Sandbox) -> None:
    envelope, wall_s = sandbox.timed_run("import time\ntime.sleep(60)", timeout_s=2)

    assert envelope["status"] == "timeout"
    assert envelope["error"]["type"] == "Timeout"
    assert 1.8 <= wall_s <= 12  # near the 2 s limit, generous for a loaded machine
    sandbox.assert_serves_normally()


def test_a_figure_that_fails_to_render_is_reported(sandbox: Sandbox) -> None:
    code = textwrap.dedent(
        """
        import matplotlib.figure
        def broken(self, *args, **kwargs):
            raise RuntimeError("cannot render this figure")
        matplotlib.figure.Figure.savefig = broken
        plt.plot([1, 2, 3])
        """
    )
    envelope = sandbox.run(code)

    assert envelope["figures"] == []
    assert envelope["figures_truncated"] is True
    assert any("cannot render this figure" in e for e in envelope["figure_errors"])


def test_the_envelope_lists_the_protections_in_force(sandbox: Sandbox) -> None:
    report = sandbox.run("1")["sandbox"]

    assert set(report) == {"profile", "in_force", "refused"}
    assert not set(report["in_force"]) & set(report["refused"])
    if sandbox.profile == "lambda":
        assert report["profile"] == "lambda"
        assert {"non_dumpable", "seccomp", "process_sweep"} <= set(report["in_force"])
        assert "pdeathsig" in report["refused"]  # reported refused in Lambda
    elif sandbox.profile == "lambda-strict":
        assert {"non_dumpable", "seccomp", "subreaper", "pidfd"} <= set(report["refused"])
        assert "process_sweep" in report["in_force"]
    else:
        assert {"uid_drop", "seccomp", "subreaper", "non_dumpable"} <= set(report["in_force"])
