"""Query-protocol error responses carry a request id, as on AWS.

AWS behaviour restored: every AWS error answer has a request id; in the query protocol's XML
(CloudFormation, IAM, STS, SNS, …) it is ``<ErrorResponse>…<RequestId>…</RequestId>
</ErrorResponse>``, which SDKs put in ``ResponseMetadata.RequestId`` and Step Functions quotes
in a failed task's cause (``… (Service: CloudFormation, Status Code: 403, Request ID: …)``).

moto 5.2.5's generic XML errors (``moto.core.exceptions._RESTError``: every authorization
denial of IAM enforcement among them) have none, and moto's Step Functions interpreter reads
``ResponseMetadata['RequestId']`` while building a task failure: an aws-sdk task that is
refused (``AccessDenied`` on ``cloudformation:CreateStack``, say) crashes the whole execution
with ``KeyError('RequestId')`` instead of failing the task, so no ``Catch`` ever sees it.
Hook: ``_RESTError.__init__`` adds the element; moto's ``_enrich_response`` then fills in the
request id it also sends as ``x-amzn-RequestId`` (JSON errors get that header already).
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._moto_refs import is_marked, mark

FIX = "errors_request_id"
_CLOSE = "</ErrorResponse>"


def with_request_id(description: str) -> str:
    """The XML error with a ``<RequestId>`` as AWS sends it (JSON, or one that has it: as is)."""
    text = description.rstrip()
    if not text.endswith(_CLOSE) or "<RequestId>" in text:
        return description
    return f"{text[: -len(_CLOSE)]}<RequestId>{uuid.uuid4()}</RequestId>{_CLOSE}"


def check() -> None:
    from moto.core.exceptions import AccessDeniedError, _RESTError

    if "__init__" not in _RESTError.__dict__:
        raise FidelityCheckError(f"{FIX}: moto's _RESTError.__init__ is gone")
    if is_marked(_RESTError.__init__, FIX):
        return
    error = AccessDeniedError("arn:aws:iam::123456789012:user/x", "s3:GetObject")
    description = str(error.description or "")
    if not description.rstrip().endswith(_CLOSE):
        raise FidelityCheckError(f"{FIX}: moto's XML errors no longer end with {_CLOSE}")
    if "RequestId" in description:
        raise FidelityCheckError(f"{FIX}: moto's errors carry a request id now: drop this fix")


def apply() -> None:
    from moto.core.exceptions import _RESTError

    original = _RESTError.__init__
    if is_marked(original, FIX):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if isinstance(getattr(self, "description", None), str):
            self.description = with_request_id(self.description)

    _RESTError.__init__ = mark(__init__, FIX)  # type: ignore[method-assign]
