"""AWS behaviour restored: an image function's ``Code.ResolvedImageUri`` is
``<repository-uri>@sha256:<image digest>`` and its ``CodeSha256`` is that digest's hex, so the
digest a function really runs can be read back (rollouts and the reconciler compare it).

moto builds ``ResolvedImageUri`` as ``ImageUri.split(":")[0] + "@sha256:" + CodeSha256``, which
for a digest URI (``repo@sha256:…``) yields ``repo@sha256@sha256:…``, and with its ECR stub on
``CodeSha256`` is the SHA-256 of the URI *string*, not of the image. Hook:
``LambdaFunction.get_code`` / ``get_configuration``: a digest URI resolves to itself; a tag URI
resolves through moto's ECR when the image is there.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from moto.awslambda.models import LambdaFunction

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

FIX = "lambda_image_digest"
_DIGEST_URI = re.compile(r"^(?P<repo>[^@]+)@(?P<digest>sha256:[0-9a-f]{64})$")


def _ecr_digest(function: Any, image_uri: str) -> str | None:
    """Digest of `repo:tag` in moto's ECR, or None."""
    if ":" not in image_uri.rsplit("/", 1)[-1]:
        return None
    uri, tag = image_uri.rsplit(":", 1)
    try:
        from moto.ecr.models import ecr_backends

        backend = ecr_backends[function.account_id][function.region]
        images = backend.batch_get_image(
            repository_name=uri.split("/")[-1], image_ids=[{"imageTag": tag}]
        )["images"]
    except Exception:
        return None
    return str(images[0].image_id["imageDigest"]) if images else None


def resolved(function: Any) -> tuple[str, str] | None:
    """(ResolvedImageUri, digest hex) for an image function, as AWS reports them.

    A tag resolved when the code was last set (``lambda_image_tag_pin``) wins over the tag now.
    """
    from sandboxctl.localcloud.fixes.lambda_image_tag_pin import pinned

    pin = pinned(function)
    if pin is not None:
        return pin
    image_uri = (getattr(function, "code", None) or {}).get("ImageUri")
    if not isinstance(image_uri, str):
        return None
    match = _DIGEST_URI.match(image_uri)
    if match:
        return image_uri, match["digest"].removeprefix("sha256:")
    digest = _ecr_digest(function, image_uri)
    if digest is None:
        return None
    return f"{image_uri.rsplit(':', 1)[0]}@{digest}", digest.removeprefix("sha256:")


def _get_code(self: Any) -> dict[str, Any]:
    response = original(LambdaFunction, "get_code")(self)
    found = resolved(self)
    if found and isinstance(response.get("Code"), dict):
        response["Code"]["ResolvedImageUri"] = found[0]
        response["Configuration"]["CodeSha256"] = found[1]
    return response


def _get_configuration(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    config = original(LambdaFunction, "get_configuration")(self, *args, **kwargs)
    found = resolved(self)
    if found:
        config["CodeSha256"] = found[1]
    return config


def check() -> None:
    for name in ("get_code", "get_configuration"):
        if not callable(getattr(LambdaFunction, name, None)):
            raise FidelityCheckError(f"{FIX}: LambdaFunction.{name} is gone")
    get_code = original(LambdaFunction, "get_code")
    if "ResolvedImageUri" not in inspect.getsource(get_code):
        raise FidelityCheckError(f"{FIX}: moto's get_code no longer builds ResolvedImageUri")


def apply() -> None:
    patch(LambdaFunction, "get_code", _get_code)
    patch(LambdaFunction, "get_configuration", _get_configuration)
