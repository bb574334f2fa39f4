"""AWS behaviour restored: "for a function defined as a container image, Lambda resolves the image
tag to an image digest" when the function is created or its code updated, and keeps that digest:
"if you update the image tag to a new image, Lambda does not automatically update the function"
(API_UpdateFunctionCode). So moving a tag changes no function until UpdateFunctionCode is
called for it.

moto keeps only the URI, and ``lambda_image_digest`` resolves a tag at read time, so every
function on ``repo:live`` would seem to run whatever the tag points at now. Hook:
``LambdaFunction._set_function_code`` (the single path of CreateFunction, UpdateFunctionCode and
CloudFormation's function resource): resolve then, pin the result on the function, and let
``lambda_image_digest.resolved`` return the pin.
"""

from __future__ import annotations

from typing import Any

from moto.awslambda.models import LambdaFunction

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

FIX = "lambda_image_tag_pin"
PIN = "_sandbox_fleet_resolved_image"


def _set_function_code(self: Any, updated_spec: dict[str, Any]) -> None:
    from sandboxctl.localcloud.fixes import lambda_image_digest

    original(LambdaFunction, "_set_function_code")(self, updated_spec)
    self.__dict__.pop(PIN, None)
    found = lambda_image_digest.resolved(self)
    if found is not None:
        setattr(self, PIN, found)


def pinned(function: Any) -> tuple[str, str] | None:
    """(ResolvedImageUri, digest hex) as resolved at the function's last code change."""
    value = getattr(function, "__dict__", {}).get(PIN)
    return value if isinstance(value, tuple) else None


def check() -> None:
    if not callable(getattr(LambdaFunction, "_set_function_code", None)):
        raise FidelityCheckError(f"{FIX}: LambdaFunction._set_function_code is gone")


def apply() -> None:
    patch(LambdaFunction, "_set_function_code", _set_function_code)
