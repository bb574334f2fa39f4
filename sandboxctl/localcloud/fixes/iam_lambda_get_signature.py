"""Signed GET (and other body-less) requests verify against the empty payload they were signed with.

AWS behaviour restored: SigV4 signs the SHA-256 of the request body; a GET has none, so the
server verifies against the hash of the empty string. Lambda's GetFunction, ListFunctions,
ListTags, GetFunctionConfiguration … then work for any principal allowed to call them.

moto 5.2.5 rebuilds the request for verification with ``data=self._body or self._data``; for
Lambda's body-less requests ``self._data`` holds the request headers, so the payload hash
differs and every such call fails with ``SignatureDoesNotMatch``, even for allow-all policies.
Hook: ``moto.iam.access_control.IAMRequestBase._create_aws_request``.
"""

from __future__ import annotations

import inspect
from typing import Any

from botocore.awsrequest import AWSRequest

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch


def _create_aws_request(self: Any) -> AWSRequest:
    from moto.iam.access_control import IAMRequestBase

    request: AWSRequest = original(IAMRequestBase, "_create_aws_request")(self)
    if not self._body and self._method in ("GET", "HEAD", "DELETE"):
        request.data = b""
    return request


def check() -> None:
    from moto.iam.access_control import IAMRequestBase

    source = inspect.getsource(original(IAMRequestBase, "_create_aws_request"))
    if "data=self._body or self._data" not in source:
        raise FidelityCheckError(
            "IAMRequestBase._create_aws_request no longer signs `self._body or self._data`: "
            "check whether iam_lambda_get_signature is still needed"
        )


def apply() -> None:
    from moto.iam.access_control import IAMRequestBase

    patch(IAMRequestBase, "_create_aws_request", _create_aws_request)
