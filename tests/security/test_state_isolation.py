"""Nothing one run does survives into the next run in the same warm runtime."""

from __future__ import annotations

import textwrap

from tests.security.conftest import ROWS, Sandbox

POLLUTE = textwrap.dedent(
    """
    import os, threading, time
    import pandas

    leaked_global = "from run one"
    pandas.DataFrame.__len__ = lambda self: 42
    pandas.read_csv = None
    df.drop(columns=["name"], inplace=True)
    with open("scratch-note.txt", "w") as note:
        note.write("left behind")
    threading.Thread(target=time.sleep, args=(3600,)).start()

    # A daemon in its own session, double-forked so its parent is gone.
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        os.setsid()
        daemon = os.fork()
        if daemon == 0:
            while True:
                time.sleep(1)
        os.write(write_end, str(daemon).encode())
        os._exit(0)
    os.wait()
    result = {
        "daemon": int(os.read(read_end, 32)),
        "note": os.path.abspath("scratch-note.txt"),
        "len_patched": len(df),
        "threads": threading.active_count(),
    }
    """
)

INSPECT = textwrap.dedent(
    """
    import threading
    result = {
        "leaked_global": "leaked_global" in globals(),
        "len": len(df),
        "columns": list(df.columns),
        "read_csv_ok": callable(pd.read_csv),
        "threads": threading.active_count(),
    }
    """
)


def test_globals_patches_files_processes_and_threads_do_not_survive(sandbox: Sandbox) -> None:
    first = sandbox.run(POLLUTE)
    assert first["status"] == "ok", first["error"]
    polluted = first["result"]
    assert polluted["len_patched"] == 42  # the patch really took effect inside run one
    assert polluted["threads"] == 2

    # Guards: process-tree kill (subreaper, or the sweep of the function's uid) and scratch
    # removal, both before the reply.
    check = sandbox.run(
        "import os\n"
        f"try:\n    state = open('/proc/{polluted['daemon']}/stat').read().rsplit(')', 1)[1]\n"
        "except OSError:\n    state = ' X'\n"
        f"(state.split()[0], os.path.exists({polluted['note']!r}))"
    )
    assert check["status"] == "ok", check["error"]
    assert check["result"][0] in ("Z", "X")  # dead (at most not yet reaped)
    assert check["result"][1] is False

    second = sandbox.run(INSPECT)
    assert second["status"] == "ok", second["error"]
    assert second["result"] == {
        "leaked_global": False,
        "len": ROWS,
        "columns": ["id", "value", "name"],
        "read_csv_ok": True,
        "threads": 1,
    }
    sandbox.assert_serves_normally()


def test_a_mutated_frame_is_not_seen_by_the_next_run(sandbox: Sandbox) -> None:
    first = sandbox.run("df.loc[:, 'value'] = -1\ndf['value'].sum()")
    assert first["result"] == -ROWS

    second = sandbox.run("float(df['value'].sum())")
    assert second["result"] == sum(i * 0.5 for i in range(ROWS))
