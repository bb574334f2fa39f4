"""What the HTTP API answers, as models: the source of docs/schemas/ and the client guide.

The request models (`RunRequest`, `DatasetUploadRequest`) live in fleet.models beside the rest of
the control plane's inputs; these are the responses. The run envelope is what the sandbox runtime
returns (sandbox_runtime/envelope.py) and RunCode passes through unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RunStatus = Literal["ok", "error", "timeout", "memory", "limit", "rejected"]


class _Open(BaseModel):
    # Clients must ignore fields they do not know: the runtime may add some.
    model_config = ConfigDict(extra="allow")


class RunError(_Open):
    """Why a run did not end `ok`: an exception name (or a runtime reason) and a message."""

    type: str = Field(description="e.g. ZeroDivisionError, Timeout, MemoryLimit, RequestRejected")
    message: str
    traceback: str | None = Field(
        default=None, description="the user code's traceback (error only)"
    )


class RunMetrics(_Open):
    wall_ms: float = Field(description="time the sandbox spent on the request, ms")
    cpu_ms: float
    peak_rss_mb: float
    load_ms: float = Field(description="time spent reading the dataset(s), ms")
    cache: str = Field(description="dataset cache: hit, miss, none, ...")


class SandboxProfile(_Open):
    """The protections in force for this run, and those the execution environment refused."""

    profile: str | None = Field(
        description="the Lambda profile the runtime was told it runs under, if any"
    )
    in_force: list[str]
    refused: list[str]


class RunEnvelope(_Open):
    """200 from POST /run: always this shape, whatever the user's code did."""

    status: RunStatus
    result: Any = Field(
        description="json: the value; dataframe: {columns, index, data, dtypes, ...}; "
        "series: {name, index, data, dtype, ...}; repr: a string; none: null"
    )
    result_type: Literal["none", "json", "dataframe", "series", "repr"]
    result_truncated: bool
    stdout: str
    stdout_truncated: bool
    stderr: str
    stderr_truncated: bool
    figures: list[str] = Field(description="matplotlib figures, base64 PNG, in creation order")
    figures_truncated: bool
    figure_errors: list[str] = Field(
        default_factory=list, description="figures that could not be rendered, and why"
    )
    error: RunError | None
    metrics: RunMetrics
    request_id: str | None
    sandbox: SandboxProfile | None = None


class UploadHeaders(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    content_type: str = Field(alias="content-type")
    content_length: str = Field(alias="content-length")


class DatasetUpload(BaseModel):
    """200 from POST /datasets: PUT the file to `url` with exactly these headers, within 5 min."""

    method: Literal["PUT"]
    url: str
    dataset: str = Field(description="the name to pass as `dataset` to POST /run")
    headers: UploadHeaders
    expires_in: Annotated[int, Field(gt=0)]


class FieldProblem(BaseModel):
    field: str
    problem: str


class ApiErrorBody(BaseModel):
    """Every 4xx/5xx body: from the functions (`message`, 422 adds `errors`) or API Gateway."""

    message: str
    errors: list[FieldProblem] | None = None
