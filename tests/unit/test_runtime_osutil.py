"""Process-tree discovery, which the per-run cleanup relies on to kill every descendant."""

from __future__ import annotations

import os
import subprocess
import sys

from sandbox_runtime import osutil


def test_children_are_found_both_through_proc_children_and_by_scanning() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert sleeper.pid in osutil.child_pids(os.getpid())
        assert sleeper.pid in osutil._children_by_scan(os.getpid())
        assert sleeper.pid in set(osutil.descendants(os.getpid()))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sleeper.pid not in osutil.child_pids(os.getpid())


def test_task_count_includes_this_process_threads() -> None:
    assert osutil.count_tasks_of_uid(os.getuid()) >= 1
