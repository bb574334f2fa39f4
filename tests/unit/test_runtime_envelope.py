"""Envelope shaping: results keep their structure, output keeps head and tail, size stays < 6 MB."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from sandbox_runtime.envelope import (
    OutputCapture,
    encoded_size,
    error_info,
    fit_envelope,
    make_envelope,
)
from sandbox_runtime.results import encode_result


def test_output_capture_keeps_head_and_tail_and_counts_the_rest() -> None:
    capture = OutputCapture(limit=20)
    for chunk in (b"HEAD-", b"x" * 1000, b"-TAIL"):
        capture.feed(chunk)

    text = capture.text()
    assert capture.truncated is True
    assert capture.total == 1010
    assert text.startswith("HEAD-xxxxx")
    assert text.endswith("xxxxx-TAIL")
    assert "990 bytes truncated" in text


def test_output_under_the_cap_is_returned_unchanged() -> None:
    capture = OutputCapture(limit=100)
    capture.feed("héllo\n".encode())

    assert capture.truncated is False
    assert capture.text() == "héllo\n"


def test_dataframe_result_keeps_index_dtypes_and_total_rows() -> None:
    frame = pd.DataFrame(
        {"city": ["Oslo", "Lima", "Pune"], "sales": [1.5, 2.0, np.nan]},
        index=pd.Index([10, 20, 30], name="store"),
    )
    result, kind, truncated = encode_result(frame, max_rows=2, max_bytes=10_000)

    assert kind == "dataframe"
    assert truncated is True
    assert result["columns"] == ["city", "sales"]
    assert result["index"] == [10, 20]
    assert result["index_names"] == ["store"]
    assert result["data"] == [["Oslo", 1.5], ["Lima", 2.0]]
    assert result["dtypes"][1] == "float64"
    assert result["total_rows"] == 3
    assert result["returned_rows"] == 2


def test_series_result_keeps_its_name_and_dtype() -> None:
    series = pd.Series([3, 1], index=["a", "b"], name="count", dtype="int32")
    result, kind, truncated = encode_result(series, max_rows=10, max_bytes=10_000)

    assert kind == "series"
    assert truncated is False
    assert result["name"] == "count"
    assert result["dtype"] == "int32"
    assert result["index"] == ["a", "b"]
    assert result["data"] == [3, 1]


def test_wide_frames_shrink_rows_to_fit_the_byte_budget() -> None:
    frame = pd.DataFrame({"text": ["z" * 100] * 500})
    result, kind, truncated = encode_result(frame, max_rows=500, max_bytes=5_000)

    assert kind == "dataframe"
    assert truncated is True
    assert 0 < result["returned_rows"] < 50
    assert len(json.dumps(result)) <= 5_000


def test_scalars_and_json_values_are_returned_as_they_are() -> None:
    assert encode_result(np.int64(7), 10, 1000) == (7, "json", False)
    assert encode_result({"a": [1, 2.5, None]}, 10, 1000) == ({"a": [1, 2.5, None]}, "json", False)
    assert encode_result(None, 10, 1000) == (None, "none", False)


def test_other_values_are_returned_as_a_capped_repr() -> None:
    assert encode_result(float("nan"), 10, 1000) == ("nan", "repr", False)
    assert encode_result({1, 2}, 10, 1000) == ("{1, 2}", "repr", False)
    text, kind, truncated = encode_result(list(range(100_000)), 10, 1000)
    assert kind == "repr"
    assert truncated is True
    assert text.startswith("[0, 1, 2")
    assert len(text.encode()) < 1100


def test_a_hostile_repr_does_not_break_the_result() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    text, kind, _ = encode_result(Hostile(), 10, 1000)
    assert kind == "repr"
    assert text == "<unrepresentable Hostile: RuntimeError>"


def test_fit_envelope_brings_any_envelope_under_the_limit() -> None:
    envelope = make_envelope("error", error=error_info("E", "m" * 2_000_000, "t" * 2_000_000))
    envelope["stdout"] = "\x00" * 3_000_000  # escapes to six bytes each
    envelope["stderr"] = "é" * 2_000_000
    envelope["figures"] = ["A" * 3_000_000]
    envelope["result"] = {"big": "r" * 3_000_000}
    envelope["result_type"] = "json"

    fitted = fit_envelope(envelope, 5_500_000)

    assert encoded_size(fitted) <= 5_500_000
    assert fitted["status"] == "error"
    assert fitted["figures"] == []
    assert fitted["figures_truncated"] is True
    assert fitted["stdout_truncated"] is True
    assert fitted["result_truncated"] is True
    json.loads(json.dumps(fitted))


def test_fit_envelope_leaves_small_envelopes_alone() -> None:
    envelope = make_envelope("ok")
    envelope["stdout"] = "hello"

    assert fit_envelope(dict(envelope), 5_500_000) == envelope
