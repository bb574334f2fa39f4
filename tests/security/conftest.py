"""A warm sandbox runtime with small limits, shared by the attack tests of one module."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox_runtime.config import MIB, RuntimeConfig
from sandbox_runtime.osutil import can_run, child_pids
from sandbox_runtime.runtime import Runtime
from sandbox_runtime.sources import DirectorySource

ROWS = 50

SMALL_LIMITS = {
    "default_timeout_s": 5.0,
    "memory_mb": 256,
    "max_procs": 16,
    "max_file_bytes": 4 * MIB,
    "flood_bytes": 1 * MIB,
    "default_output_bytes": 8 * 1024,
}


class Sandbox:
    """Runs code through the real runtime and checks it still serves normal requests."""

    def __init__(self, runtime: Runtime, work_dir: Path) -> None:
        self.runtime = runtime
        self.work_dir = work_dir

    def run(self, code: str, **event: Any) -> dict[str, Any]:
        return self.runtime.invoke({"code": code, "dataset": "data.csv", **event})

    def assert_serves_normally(self) -> None:
        envelope = self.run("len(df)")
        assert envelope["status"] == "ok", envelope["error"]
        assert envelope["result"] == ROWS
        # Nothing of the previous run can run any more (it may still be being reaped), and
        # its files are gone. The executor may already hold the next run's child, forked after
        # the reply: at most one live process with no children, one empty directory.
        executor_pid = self.runtime.executor_pid
        assert executor_pid is not None
        live = [pid for pid in child_pids(executor_pid) if can_run(pid)]
        assert len(live) <= 1
        assert all(not any(can_run(p) for p in child_pids(pid)) for pid in live)
        scratch = list((self.work_dir / "runs").iterdir())
        assert len(scratch) <= 1
        assert all(list(directory.iterdir()) == [] for directory in scratch)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    data = tmp_path_factory.mktemp("data")
    rows = "\n".join(f"{i},{i * 0.5},name{i}" for i in range(ROWS))
    (data / "data.csv").write_text("id,value,name\n" + rows + "\n")
    # Directly under /tmp: the unprivileged child must be able to reach its scratch directory
    # by absolute path, and pytest's own temporary tree is private to root.
    work = Path(tempfile.mkdtemp(prefix="sandbox-sec-"))
    work.chmod(0o711)
    config = RuntimeConfig(work_dir=str(work), **SMALL_LIMITS)  # type: ignore[arg-type]
    runtime = Runtime(config, DirectorySource(data))
    box = Sandbox(runtime, work)
    box.assert_serves_normally()
    yield box
    runtime.close()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def run(sandbox: Sandbox) -> Callable[..., dict[str, Any]]:
    return sandbox.run
