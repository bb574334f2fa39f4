"""Turn the value a run produced into JSON for the envelope (runs inside the run child)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from sandbox_runtime.envelope import cap_text


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=True, allow_nan=False))


def _frame_payload(frame: pd.DataFrame, rows: int) -> dict[str, Any]:
    head = frame.head(rows)
    split = json.loads(head.to_json(orient="split", date_format="iso", default_handler=str))
    return {
        "columns": split["columns"],
        "index": split["index"],
        "data": split["data"],
        "dtypes": [str(dtype) for dtype in frame.dtypes],
        "index_dtype": str(frame.index.dtype),
        "index_names": [None if name is None else str(name) for name in frame.index.names],
        "total_rows": len(frame),
        "returned_rows": len(head),
    }


def _series_payload(series: pd.Series, rows: int) -> dict[str, Any]:
    head = series.head(rows)
    split = json.loads(head.to_json(orient="split", date_format="iso", default_handler=str))
    return {
        "name": None if series.name is None else str(series.name),
        "index": split["index"],
        "data": split["data"],
        "dtype": str(series.dtype),
        "index_dtype": str(series.index.dtype),
        "index_names": [None if name is None else str(name) for name in series.index.names],
        "total_rows": len(series),
        "returned_rows": len(head),
    }


def _tabular(value: pd.DataFrame | pd.Series, max_rows: int, max_bytes: int) -> tuple[Any, bool]:
    """Cap rows first, then halve until the JSON fits the byte budget."""
    builder = _frame_payload if isinstance(value, pd.DataFrame) else _series_payload
    rows = min(max_rows, len(value))
    while True:
        payload = builder(value, rows)
        if _json_size(payload) <= max_bytes or rows == 0:
            break
        rows //= 2
    payload["truncated"] = payload["returned_rows"] < payload["total_rows"]
    if _json_size(payload) > max_bytes:
        raise ValueError("too wide to return")
    return payload, payload["truncated"]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _is_jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _repr(value: Any, max_bytes: int) -> tuple[str, bool]:
    try:
        text = repr(value)
    except Exception as exc:  # a hostile __repr__ must not lose the rest of the envelope
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return cap_text(text, max_bytes)


def encode_result(value: Any, max_rows: int, max_bytes: int) -> tuple[Any, str, bool]:
    """Return (json value, result_type, truncated).

    DataFrames and Series keep index and dtypes; scalars and JSON-able values go as they are;
    anything else as its capped repr.
    """
    if value is None:
        return None, "none", False
    if isinstance(value, pd.DataFrame | pd.Series):
        kind = "dataframe" if isinstance(value, pd.DataFrame) else "series"
        try:
            payload, truncated = _tabular(value, max_rows, max_bytes)
            return payload, kind, truncated
        except Exception:
            text, cut = _repr(value, max_bytes)
            return text, "repr", cut
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value), "repr", False
    if _is_jsonable(value) and _json_size(value) <= max_bytes:
        return value, "json", False
    text, cut = _repr(value, max_bytes)
    return text, "repr", cut
