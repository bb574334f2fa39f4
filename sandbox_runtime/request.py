"""The invocation contract: parse and validate an event before anything is fetched or run."""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sandbox_runtime.config import RuntimeConfig

# Extensions the executor can parse, and the reader each one uses.
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
MAX_KEY_BYTES = 1024  # S3's own key limit


class RequestRejected(ValueError):
    """The request is malformed or unsafe; nothing was fetched and nothing ran."""


class RunRequest(BaseModel):
    """One invocation: the code and which of the user's objects it runs against."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    dataset: str | None = None
    datasets: list[str] | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    max_output_bytes: int | None = Field(default=None, gt=0)
    request_id: str | None = Field(default=None, max_length=128)

    @field_validator("timeout_s")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        return value

    @field_validator("request_id")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must be printable text")
        return value


@dataclass(frozen=True)
class DatasetRef:
    """A validated dataset name and the format its extension selects."""

    name: str
    format: str


@dataclass(frozen=True)
class Limits:
    """The limits one run gets: the caller's wishes clamped to the server caps."""

    timeout_s: float
    memory_mb: int
    max_output_bytes: int
    flood_bytes: int
    max_procs: int
    max_open_files: int
    max_file_bytes: int
    max_disk_bytes: int
    max_result_bytes: int
    max_rows: int
    max_figure_bytes: int
    max_figures: int
    max_traceback_bytes: int
    network_guard: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ValidRequest:
    """A request that passed every check, ready for fetching and running."""

    code: str
    datasets: tuple[DatasetRef, ...]
    primary: str | None
    limits: Limits
    request_id: str | None


def validate_dataset_name(name: str) -> DatasetRef:
    """Accept only plain relative keys that cannot leave the user's prefix."""
    if not isinstance(name, str) or not name:
        raise RequestRejected("dataset name must be a non-empty string")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise RequestRejected("dataset name must not contain NUL or control characters")
    if len(name.encode("utf-8")) > MAX_KEY_BYTES:
        raise RequestRejected("dataset name is too long")
    if name.startswith("/") or "\\" in name:
        raise RequestRejected(
            f"dataset {name!r} must be a key relative to your data folder, not an absolute path"
        )
    parts = name.split("/")
    if any(part in {"", ".", ".."} for part in parts) or posixpath.normpath(name) != name:
        raise RequestRejected(
            f"dataset {name!r} is outside your data folder: '..', '.' and empty path "
            "segments are not allowed"
        )
    suffix = posixpath.splitext(name)[1].lower()
    if suffix not in FORMATS:
        raise RequestRejected(
            f"dataset {name!r} has an unsupported type; use one of {', '.join(sorted(FORMATS))}"
        )
    return DatasetRef(name=name, format=FORMATS[suffix])


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(loc) for loc in item["loc"]) or "event"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_request(event: object, config: RuntimeConfig) -> ValidRequest:
    """Validate an event against the contract and clamp its limits to the server caps."""
    if not isinstance(event, dict):
        raise RequestRejected("the event must be a JSON object")
    try:
        request = RunRequest.model_validate(event)
    except ValidationError as exc:
        raise RequestRejected(f"invalid request: {_describe(exc)}") from None
    if len(request.code.encode("utf-8", errors="surrogatepass")) > config.max_code_bytes:
        raise RequestRejected(f"code is larger than {config.max_code_bytes} bytes")
    if "\x00" in request.code:
        raise RequestRejected("code must not contain NUL bytes")

    names: list[str] = []
    if request.dataset is not None:
        names.append(request.dataset)
    for name in request.datasets or []:
        if name not in names:
            names.append(name)
    if len(names) > config.max_datasets:
        raise RequestRejected(f"at most {config.max_datasets} datasets per run")
    refs = tuple(validate_dataset_name(name) for name in names)

    timeout = request.timeout_s if request.timeout_s is not None else config.default_timeout_s
    output = request.max_output_bytes or config.default_output_bytes
    limits = Limits(
        timeout_s=min(timeout, config.max_timeout_s),
        memory_mb=config.memory_mb,
        max_output_bytes=min(output, config.max_output_bytes),
        flood_bytes=config.flood_bytes,
        max_procs=config.max_procs,
        max_open_files=config.max_open_files,
        max_file_bytes=config.max_file_bytes,
        max_disk_bytes=config.max_disk_bytes,
        max_result_bytes=config.max_result_bytes,
        max_rows=config.max_rows,
        max_figure_bytes=config.max_figure_bytes,
        max_figures=config.max_figures,
        max_traceback_bytes=config.max_traceback_bytes,
        network_guard=config.network_guard,
    )
    return ValidRequest(
        code=request.code,
        datasets=refs,
        primary=refs[0].name if refs else None,
        limits=limits,
        request_id=request.request_id,
    )
