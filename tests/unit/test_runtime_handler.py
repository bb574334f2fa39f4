"""The Lambda handler end to end: moto S3 as the user's bucket, a fake context, a real executor."""

from __future__ import annotations

import base64
import io
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from moto import mock_aws

from sandbox_runtime import handler
from sandbox_runtime.envelope import encoded_size
from sandbox_runtime.osutil import can_run
from tests.conftest import FakeLambdaContext

BUCKET = "sandbox-fleet-test-data"
PREFIX = "users/a3k9digestalice0000000000/"
OTHER_PREFIX = "users/zz7otheruserdigest000000000/"
ROWS = 40


@pytest.fixture(scope="module")
def cloud() -> Iterator[Any]:
    work = Path(tempfile.mkdtemp(prefix="sandbox-unit-"))
    work.chmod(0o711)  # the unprivileged run child must reach its scratch directory
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        patch.setenv("DATA_BUCKET", BUCKET)
        patch.setenv("USER_PREFIX", PREFIX)
        patch.setenv("SANDBOX_WORK_DIR", str(work))
        patch.setenv("SANDBOX_MAX_TIMEOUT_S", "20")
        patch.setenv("SANDBOX_UID_REGISTRY", str(work / "uids.json"))
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        frame = pd.DataFrame({"id": range(ROWS), "amount": [i * 1.5 for i in range(ROWS)]})
        s3.put_object(Bucket=BUCKET, Key=PREFIX + "data.csv", Body=frame.to_csv(index=False))
        parquet = io.BytesIO()
        frame.head(5).to_parquet(parquet)
        s3.put_object(Bucket=BUCKET, Key=PREFIX + "part.parquet", Body=parquet.getvalue())
        s3.put_object(
            Bucket=BUCKET,
            Key=PREFIX + "events.jsonl",
            Body=b'{"e": "a", "n": 1}\n{"e": "b", "n": 2}\n',
        )
        s3.put_object(Bucket=BUCKET, Key=OTHER_PREFIX + "data.csv", Body=b"secret\nbob's data\n")
        yield s3
        handler.shutdown_runtime()
    shutil.rmtree(work, ignore_errors=True)


def invoke(event: dict[str, Any], **context: Any) -> dict[str, Any]:
    envelope = handler.lambda_handler(event, FakeLambdaContext(**context))
    assert set(envelope) >= {"status", "result", "stdout", "stderr", "figures", "error", "metrics"}
    return envelope


def fresh_runtime() -> None:
    """No executor and an empty data cache, whichever tests of this module ran before."""
    handler.shutdown_runtime()
    shutil.rmtree(Path(os.environ["SANDBOX_WORK_DIR"]) / "cache", ignore_errors=True)


def test_a_refused_dataset_fetches_nothing_and_runs_nothing(cloud: Any) -> None:
    fresh_runtime()
    envelope = invoke({"code": "df", "dataset": "../zz7otheruserdigest000000000/data.csv"})

    assert envelope["status"] == "rejected"
    assert envelope["error"]["type"] == "RequestRejected"
    assert "outside your data folder" in envelope["error"]["message"]
    runtime = handler.get_runtime()
    assert runtime.executor_pid is None
    assert not runtime.config.cache_dir.exists()


def test_first_run_loads_the_object_and_later_runs_hit_the_cache(cloud: Any) -> None:
    fresh_runtime()
    first = invoke({"code": "len(df)", "dataset": "data.csv", "request_id": "r-1"})
    second = invoke({"code": "df['amount'].sum()", "dataset": "data.csv"})

    assert first["status"] == "ok", first["error"]
    assert first["result"] == ROWS
    assert first["request_id"] == "r-1"
    assert first["metrics"]["cache"] == "miss"
    assert second["metrics"]["cache"] == "hit"
    assert second["result"] == sum(i * 1.5 for i in range(ROWS))
    for key in ("wall_ms", "cpu_ms", "peak_rss_mb", "load_ms"):
        assert second["metrics"][key] >= 0


def test_a_changed_object_is_reloaded(cloud: Any) -> None:
    cloud.put_object(Bucket=BUCKET, Key=PREFIX + "changing.csv", Body=b"x\n1\n2\n")
    before = invoke({"code": "len(df)", "dataset": "changing.csv"})
    cloud.put_object(Bucket=BUCKET, Key=PREFIX + "changing.csv", Body=b"x\n1\n2\n3\n")
    after = invoke({"code": "len(df)", "dataset": "changing.csv"})

    assert (before["result"], after["result"]) == (2, 3)
    assert after["metrics"]["cache"] == "miss"


def test_parquet_and_json_lines_load_into_dfs(cloud: Any) -> None:
    envelope = invoke(
        {
            "code": "{name: len(frame) for name, frame in dfs.items()} | {'df': list(df.columns)}",
            "dataset": "part.parquet",
            "datasets": ["events.jsonl"],
        }
    )

    assert envelope["status"] == "ok", envelope["error"]
    assert envelope["result"] == {"part.parquet": 5, "events.jsonl": 2, "df": ["id", "amount"]}


def test_a_missing_dataset_is_rejected(cloud: Any) -> None:
    envelope = invoke({"code": "len(df)", "dataset": "nope.csv"})

    assert envelope["status"] == "rejected"
    assert envelope["error"]["message"] == "dataset 'nope.csv' does not exist"


def test_a_file_that_does_not_parse_is_an_error_not_a_crash(cloud: Any) -> None:
    cloud.put_object(Bucket=BUCKET, Key=PREFIX + "broken.parquet", Body=b"not parquet at all")
    envelope = invoke({"code": "len(df)", "dataset": "broken.parquet"})

    assert envelope["status"] == "error"
    assert envelope["error"]["type"] == "DatasetError"
    assert "broken.parquet" in envelope["error"]["message"]


def test_last_expression_then_result_variable_is_the_result(cloud: Any) -> None:
    assert invoke({"code": "x = 2\nx * 21"})["result"] == 42
    assert invoke({"code": "result = {'total': 3}\nprint('done')"})["result"] == {"total": 3}
    assert invoke({"code": "y = 1"})["result_type"] == "none"


def test_a_dataframe_result_is_capped_in_rows_with_the_total(cloud: Any) -> None:
    envelope = invoke({"code": "df.set_index('id')", "dataset": "data.csv"})

    result = envelope["result"]
    assert envelope["result_type"] == "dataframe"
    assert result["index_names"] == ["id"]
    assert result["dtypes"] == ["float64"]
    assert result["total_rows"] == ROWS
    assert result["data"][1] == [1.5]


def test_traceback_shows_only_the_users_lines(cloud: Any) -> None:
    envelope = invoke({"code": "total = 0\ndf['missing'].sum()", "dataset": "data.csv"})

    error = envelope["error"]
    assert envelope["status"] == "error"
    assert error["type"] == "KeyError"
    assert 'File "<user-code>", line 2' in error["traceback"]
    assert "site-packages" not in error["traceback"]
    assert "sandbox_runtime" not in error["traceback"]


def test_figures_come_back_as_png(cloud: Any) -> None:
    envelope = invoke(
        {
            "code": "df.plot(x='id', y='amount')\nplt.figure()\nplt.bar([1], [2])",
            "dataset": "data.csv",
        }
    )

    assert envelope["status"] == "ok", envelope["error"]
    assert len(envelope["figures"]) == 2
    assert base64.b64decode(envelope["figures"][0]).startswith(b"\x89PNG\r\n\x1a\n")


def test_the_invocation_deadline_bounds_the_run(cloud: Any) -> None:
    # 2.5 s left in the invocation, 1.5 s kept back to answer: the loop gets about 1 s.
    envelope = invoke({"code": "while True:\n    pass", "timeout_s": 20}, remaining_ms=2500)

    assert envelope["status"] == "timeout"
    assert envelope["metrics"]["wall_ms"] < 2500


def test_the_envelope_stays_under_six_megabytes(cloud: Any) -> None:
    code = (
        "import sys\nprint('\\x00' * 3_000_000)\nsys.stderr.write('\\u00e9' * 3_000_000)\n"
        "for i in range(3):\n    plt.figure(figsize=(6, 6), dpi=100)\n"
        "    plt.figimage(np.random.rand(600, 600, 3))\n'r' * 5_000_000"
    )
    envelope = invoke({"code": code, "max_output_bytes": 10**9, "timeout_s": 20})

    assert envelope["status"] == "ok", envelope["error"]
    assert encoded_size(envelope) < 6_000_000
    assert envelope["stdout_truncated"] and envelope["stderr_truncated"]
    assert envelope["result_truncated"] is True


def test_the_executor_is_restarted_after_it_dies(cloud: Any) -> None:
    assert invoke({"code": "1"})["status"] == "ok"
    runtime = handler.get_runtime()
    old_pid = runtime.executor_pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)

    envelope = invoke({"code": "len(df)", "dataset": "data.csv"})

    assert envelope["status"] == "ok"
    assert envelope["result"] == ROWS
    assert runtime.executor_pid not in (None, old_pid)


def test_logs_carry_neither_user_output_nor_credentials(
    cloud: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    capsys.readouterr()
    with caplog.at_level("INFO"):
        invoke({"code": "print('PRIVATE-OUTPUT-7731')\n'PRIVATE-RESULT-7731'"})
    printed = capsys.readouterr()

    finished = [record for record in caplog.records if record.getMessage() == "run finished"]
    assert len(finished) == 1
    assert finished[0].__dict__["status"] == "ok"
    everything = (
        printed.out + printed.err + caplog.text + repr([r.__dict__ for r in caplog.records])
    )
    assert "PRIVATE-OUTPUT-7731" not in everything
    assert "PRIVATE-RESULT-7731" not in everything
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in everything


def test_each_user_gets_their_own_unprivileged_uid_when_started_as_root(cloud: Any) -> None:
    envelope = invoke({"code": "import os\n(os.getuid(), os.getgid(), os.getgroups())"})

    expected = handler.sandbox_uid_for(PREFIX) if os.geteuid() == 0 else os.getuid()
    assert envelope["result"][0] == expected
    assert handler.sandbox_uid_for(PREFIX) != handler.sandbox_uid_for(OTHER_PREFIX)
    if os.geteuid() == 0:
        assert envelope["result"] == [expected, expected, []]


def _poll(condition: Any, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_a_run_dies_with_its_executor(cloud: Any) -> None:
    # If the executor dies (or the handler kills a stuck one), its run must not live on.
    drop = Path(tempfile.mkdtemp(prefix="sandbox-pid-"))
    drop.chmod(0o777)  # the run child, under its own uid, reports its pid here
    code = f"import os, time\nopen('{drop}/pid', 'w').write(str(os.getpid()))\ntime.sleep(60)"
    outcome: dict[str, Any] = {}
    caller = threading.Thread(
        target=lambda: outcome.update(invoke({"code": code, "timeout_s": 20}))
    )
    caller.start()
    try:
        assert _poll(lambda: (drop / "pid").exists() and (drop / "pid").read_text() != "")
        run_pid = int((drop / "pid").read_text())
        executor_pid = handler.get_runtime().executor_pid
        assert executor_pid is not None

        os.kill(executor_pid, signal.SIGKILL)

        assert _poll(lambda: not can_run(run_pid))
    finally:
        caller.join(timeout=30)
        shutil.rmtree(drop, ignore_errors=True)
    assert outcome["status"] == "error"
    assert outcome["error"]["type"] == "ExecutorCrashed"
    assert invoke({"code": "2"})["result"] == 2


def test_the_run_memory_budget_leaves_room_in_the_function(
    cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler.shutdown_runtime()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
    try:
        assert handler.get_runtime().config.memory_mb == 1024 - handler.FUNCTION_MEMORY_RESERVE_MB
    finally:
        handler.shutdown_runtime()
