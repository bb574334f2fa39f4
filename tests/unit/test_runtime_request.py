"""The invocation contract: bad requests are refused with a clear message before anything runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sandbox_runtime.config import ConfigError, RuntimeConfig
from sandbox_runtime.request import RequestRejected, parse_request, validate_dataset_name
from sandbox_runtime.runtime import MatplotlibConfig, executor_environment

CONFIG = RuntimeConfig(max_timeout_s=60, max_output_bytes=1000, default_output_bytes=100)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../b4xq/data.csv", "outside your data folder"),
        ("reports/../../other/data.csv", "outside your data folder"),
        ("/users/other/data.csv", "relative"),
        ("./data.csv", "outside your data folder"),
        ("a//data.csv", "outside your data folder"),
        ("..\\other\\data.csv", "relative"),
        ("data.csv\x00.txt", "NUL"),
        ("data\n.csv", "control characters"),
        ("", "non-empty"),
        ("data.exe", "unsupported type"),
        ("x" * 1100 + ".csv", "too long"),
    ],
)
def test_unsafe_dataset_names_are_rejected(name: str, reason: str) -> None:
    with pytest.raises(RequestRejected, match=reason):
        validate_dataset_name(name)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("data.csv", "csv"),
        ("2024/q1/sales.CSV", "csv"),
        ("events.jsonl", "jsonl"),
        ("events.ndjson", "jsonl"),
        ("table.parquet", "parquet"),
        ("table.pq", "parquet"),
        ("tabs.tsv", "tsv"),
        ("..hidden.csv", "csv"),
    ],
)
def test_plain_relative_keys_are_accepted(name: str, fmt: str) -> None:
    assert validate_dataset_name(name).format == fmt


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ("len(df)", "JSON object"),
        ({}, "code: Field required"),
        ({"code": 1}, "code: Input should be a valid string"),
        ({"code": "1", "timeout_s": -1}, "timeout_s"),
        ({"code": "1", "timeout_s": math.nan}, "timeout_s"),
        ({"code": "1", "timeout_s": math.inf}, "timeout_s"),
        ({"code": "1", "max_output_bytes": 0}, "max_output_bytes"),
        ({"code": "1", "memory_mb": 10}, "memory_mb: Extra inputs are not permitted"),
        ({"code": "1\x00"}, "NUL"),
        ({"code": "x" * (300 * 1024)}, "larger than"),
        ({"code": "1", "datasets": [f"d{i}.csv" for i in range(9)]}, "at most 8"),
        ({"code": "1", "dataset": "../x.csv"}, "outside your data folder"),
        ({"code": "1", "datasets": ["ok.csv", "/abs.csv"]}, "relative"),
    ],
)
def test_malformed_events_are_rejected(event: object, reason: str) -> None:
    with pytest.raises(RequestRejected, match=reason):
        parse_request(event, CONFIG)


def test_caller_limits_are_clamped_to_the_server_caps() -> None:
    request = parse_request({"code": "1", "timeout_s": 10_000, "max_output_bytes": 10**9}, CONFIG)

    assert request.limits.timeout_s == 60
    assert request.limits.max_output_bytes == 1000


def test_defaults_apply_when_the_caller_sets_no_limits() -> None:
    request = parse_request({"code": "1"}, CONFIG)

    assert request.limits.timeout_s == CONFIG.default_timeout_s
    assert request.limits.max_output_bytes == 100
    assert request.datasets == ()
    assert request.primary is None


def test_dataset_and_datasets_merge_in_order_without_duplicates() -> None:
    request = parse_request(
        {"code": "1", "dataset": "a.csv", "datasets": ["b.parquet", "a.csv", "c.jsonl"]}, CONFIG
    )

    assert [ref.name for ref in request.datasets] == ["a.csv", "b.parquet", "c.jsonl"]
    assert request.primary == "a.csv"


def test_server_caps_come_from_the_environment() -> None:
    config = RuntimeConfig.from_env(
        {"SANDBOX_MAX_TIMEOUT_S": "5", "SANDBOX_NETWORK_GUARD": "false"}
    )

    assert config.max_timeout_s == 5
    assert config.network_guard is False
    with pytest.raises(ConfigError, match="SANDBOX_MEMORY_MB"):
        RuntimeConfig.from_env({"SANDBOX_MEMORY_MB": "lots"})
    with pytest.raises(ConfigError, match="6 MB"):
        RuntimeConfig(max_envelope_bytes=7_000_000)


def test_the_executor_environment_is_an_allow_list(tmp_path: Path) -> None:
    seed = tmp_path / "mpl-seed"
    seed.mkdir()
    (seed / "fontlist.json").write_text("{}")
    handler_env = {
        "PATH": "/usr/bin",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.2/creds",
        "_X_AMZN_TRACE_ID": "Root=1-abc",
        "DATA_BUCKET": "bucket",
        "MPLCONFIGDIR": str(seed),
    }
    env = executor_environment(RuntimeConfig(work_dir=str(tmp_path / "work")), handler_env)

    assert not {name for name in env if name.startswith(("AWS", "_X_AMZN", "DATA_"))}
    assert "secret" not in env.values() and "token" not in env.values()
    assert env["PATH"] == "/usr/bin"
    # Matplotlib's config dir is given per executor start (MatplotlibConfig), never reused.
    assert "MPLCONFIGDIR" not in env
    config = MatplotlibConfig(str(seed))
    work = tmp_path / "work"
    work.mkdir()
    first, second = config.make(work), config.make(work)
    assert first != second
    assert (first / "fontlist.json").read_text() == "{}"
    (first / "matplotlibrc").write_text("lines.linewidth: 7.5\n")  # what a run could plant
    config.done(first)
    assert not first.exists()
    assert not (config.make(work) / "matplotlibrc").exists()
