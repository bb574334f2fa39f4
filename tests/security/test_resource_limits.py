"""Hostile code that exhausts a resource ends with the right status, and the runtime recovers.

Each attack would end differently (or take the host down) without the guard it names.
"""

from __future__ import annotations

import textwrap

from tests.security.conftest import Sandbox


def test_fork_bomb_is_stopped_by_the_process_limit(sandbox: Sandbox) -> None:
    # Guard: RLIMIT_NPROC in the child. Without it this runs until the timeout.
    envelope = sandbox.run("import os\nwhile True:\n    os.fork()\n", timeout_s=10)

    assert envelope["status"] == "limit"
    assert envelope["error"]["type"] == "BlockingIOError"
    assert "process count limit" in envelope["error"]["message"]
    sandbox.assert_serves_normally()


def test_memory_bomb_is_stopped_by_the_memory_limit(sandbox: Sandbox) -> None:
    # Guard: RLIMIT_AS. Without it the 2 GiB array is allocated and the run returns ok.
    envelope = sandbox.run("import numpy as np\nblock = np.ones(2**28)\nblock.sum()")

    assert envelope["status"] == "memory"
    assert "MemoryError" in envelope["error"]["type"]
    assert "memory limit of 256 MB" in envelope["error"]["message"]
    sandbox.assert_serves_normally()


def test_busy_loop_ignoring_sigterm_is_killed_at_the_timeout(sandbox: Sandbox) -> None:
    # Guard: SIGKILL to the child's process group at the wall-clock deadline.
    code = textwrap.dedent(
        """
        import os, signal, sys
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(os.getpid(), file=sys.stderr, flush=True)
        while True:
            pass
        """
    )
    envelope = sandbox.run(code, timeout_s=1)

    assert envelope["status"] == "timeout"
    assert envelope["error"]["type"] == "Timeout"
    # Killed before the reply: the next run sees no process of it (assert_serves_normally).
    assert envelope["stderr"].split()[0].isdigit()
    sandbox.assert_serves_normally()


def test_segfault_through_ctypes_is_reported_as_a_crash(sandbox: Sandbox) -> None:
    # Guard: the code runs in a child process; in-process this would kill the handler.
    envelope = sandbox.run("import ctypes\nctypes.string_at(0)")

    assert envelope["status"] == "error"
    assert envelope["error"] == {
        "type": "Crash",
        "message": "the process crashed with SIGSEGV",
        "traceback": None,
    }
    assert "Segmentation fault" in envelope["stderr"]
    sandbox.assert_serves_normally()


def test_os_exit_ends_only_the_child(sandbox: Sandbox) -> None:
    envelope = sandbox.run("import os\nprint('before exit')\nos._exit(7)")

    assert envelope["status"] == "error"
    assert envelope["error"]["type"] == "ProcessExit"
    assert "exit status 7" in envelope["error"]["message"]
    assert envelope["stdout"] == "before exit\n"
    sandbox.assert_serves_normally()


def test_stdout_flood_is_stopped_by_the_output_limit(sandbox: Sandbox) -> None:
    # Guard: the executor kills the child past flood_bytes. Without it: a timeout.
    envelope = sandbox.run("while True:\n    print('x' * 1000)", timeout_s=10)

    assert envelope["status"] == "limit"
    assert envelope["error"]["type"] == "OutputLimit"
    assert envelope["stdout_truncated"] is True
    assert envelope["stdout"].startswith("x" * 1000)
    assert len(envelope["stdout"]) < 10 * 1024
    sandbox.assert_serves_normally()


def test_stderr_flood_is_stopped_by_the_output_limit(sandbox: Sandbox) -> None:
    code = "import sys\nwhile True:\n    sys.stderr.write('e' * 4096)"
    envelope = sandbox.run(code, timeout_s=10)

    assert envelope["status"] == "limit"
    assert envelope["stderr_truncated"] is True
    sandbox.assert_serves_normally()


def test_filling_tmp_is_stopped_by_the_file_size_limit(sandbox: Sandbox) -> None:
    # Guard: RLIMIT_FSIZE (4 MiB here). Without it 64 MiB is written and the run returns ok.
    code = textwrap.dedent(
        """
        import os, tempfile
        path = os.path.join(tempfile.gettempdir(), "fill.bin")
        print(path, flush=True)
        with open(path, "wb") as out:
            for _ in range(64):
                out.write(b"x" * (1024 * 1024))
        """
    )
    envelope = sandbox.run(code)

    assert envelope["status"] == "limit"
    assert envelope["error"]["type"] == "OSError"
    assert "file size limit" in envelope["error"]["message"]
    written = envelope["stdout"].strip()
    assert "/runs/run-" in written  # the run's own scratch directory
    gone = sandbox.run(f"import os\nos.path.exists({written!r})")
    assert gone["result"] is False
    sandbox.assert_serves_normally()


def test_runaway_result_is_capped_not_returned_whole(sandbox: Sandbox) -> None:
    # Not a timing test: room for a loaded machine (building and capping 20 MB takes ~1 s).
    envelope = sandbox.run("'y' * (20 * 1024 * 1024)", timeout_s=30)

    assert envelope["status"] == "ok"
    assert envelope["result_type"] == "repr"
    assert envelope["result_truncated"] is True
    assert len(envelope["result"]) <= 1024 * 1024 + 100
    sandbox.assert_serves_normally()
