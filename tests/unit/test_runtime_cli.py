"""`python -m sandbox_runtime run`: the real handler path with a directory standing in for S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sandbox-cli-"))
    path.chmod(0o711)  # the unprivileged run child must reach its scratch directory
    (path / "data").mkdir()
    (path / "data" / "sales.csv").write_text("region,amount\nnorth,10\nsouth,32\n")
    (path / "count.py").write_text("len(df)")
    (path / "fail.py").write_text("print('about to fail')\nraise ValueError('bad input')")
    (path / "state.py").write_text("counter = globals().get('counter', 0) + 1\ncounter")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def run_cli(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox_runtime",
            "run",
            "--data-dir",
            str(workspace / "data"),
            "--work-dir",
            str(workspace / "work"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_each_code_file_in_order_repeated_prints_one_envelope_per_line(workspace: Path) -> None:
    completed = run_cli(
        workspace,
        "--dataset",
        "sales.csv",
        "--code-file",
        str(workspace / "count.py"),
        "--code-file",
        str(workspace / "fail.py"),
        "--code-file",
        str(workspace / "state.py"),
        "--repeat",
        "2",
        "--timeout-s",
        "10",
        "--memory-mb",
        "512",
    )

    assert completed.returncode == 0, completed.stderr
    envelopes = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [e["status"] for e in envelopes] == ["ok", "error", "ok"] * 2
    assert [e["request_id"] for e in envelopes] == ["1.1", "1.2", "1.3", "2.1", "2.2", "2.3"]
    assert envelopes[0]["result"] == 2
    assert envelopes[1]["stdout"] == "about to fail\n"
    assert envelopes[1]["error"]["message"] == "bad input"
    # Warm runtime, fresh state: the counter never sees the previous run.
    assert envelopes[2]["result"] == envelopes[5]["result"] == 1
    assert envelopes[3]["metrics"]["cache"] == "hit"


def test_a_refused_dataset_still_prints_an_envelope_and_exits_zero(workspace: Path) -> None:
    completed = run_cli(
        workspace, "--dataset", "../data/sales.csv", "--code-file", str(workspace / "count.py")
    )

    assert completed.returncode == 0
    envelope = json.loads(completed.stdout)
    assert envelope["status"] == "rejected"
    assert "outside your data folder" in envelope["error"]["message"]


def test_bad_arguments_exit_with_usage_errors(workspace: Path) -> None:
    missing_dir = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox_runtime",
            "run",
            "--data-dir",
            str(workspace / "nope"),
            "--code-file",
            str(workspace / "count.py"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    missing_code = run_cli(workspace, "--code-file", str(workspace / "absent.py"))

    assert missing_dir.returncode == 2
    assert "does not exist" in missing_dir.stderr
    assert missing_code.returncode == 2
    assert "cannot read --code-file" in missing_code.stderr
    assert missing_dir.stdout == missing_code.stdout == ""
