"""CloudFormation Lambda functions keep their package type, image config, architecture and tags.

AWS behaviour restored: ``AWS::Lambda::Function`` with ``PackageType: Image`` is an image
function (``Code.ImageUri``, optional ``ImageConfig``), created for the given ``Architectures``,
with its ``Tags``, ``EphemeralStorage`` and ``TracingConfig``; a stack update changes them too.

moto 5.2.5 copies only a fixed list of properties, so image functions appear as Zip functions
with ``x86_64``, no image config and no tags. Hook:
``moto.awslambda.models.LambdaFunction.{create,update}_from_cloudformation_json``.
"""

from __future__ import annotations

from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

# Properties whose CloudFormation and API shapes are the same.
_PASSED_THROUGH = (
    "PackageType",
    "ImageConfig",
    "Architectures",
    "EphemeralStorage",
    "TracingConfig",
)


def _tags(properties: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in properties.get("Tags") or []}


def _create(
    cls: Any,
    resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> Any:
    from moto.awslambda.models import get_backend

    properties = cloudformation_json["Properties"]
    spec: dict[str, Any] = {
        "Code": dict(properties["Code"]),
        "FunctionName": properties.get("FunctionName", resource_name),
        "Handler": properties.get("Handler"),
        "Role": properties["Role"],
        "Runtime": properties.get("Runtime"),
        "Tags": _tags(properties),
    }
    for name in (
        "Description",
        "MemorySize",
        "Publish",
        "Timeout",
        "VpcConfig",
        "Environment",
        "ReservedConcurrentExecutions",
        "Layers",
        "KmsKeyArn",
        *_PASSED_THROUGH,
    ):
        if name in properties:
            spec["KMSKeyArn" if name == "KmsKeyArn" else name] = properties[name]
    if "ZipFile" in spec["Code"]:
        # moto's own conversion of inline code (plaintext -> zip) still applies.
        return original(cls, "create_from_cloudformation_json").__func__(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        )
    return get_backend(account_id, region_name).create_function(spec)


def _update(
    cls: Any,
    original_resource: Any,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> Any:
    from moto.awslambda.models import ImageConfig

    properties = cloudformation_json["Properties"]
    function = original(cls, "update_from_cloudformation_json").__func__(
        cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
    )
    if "Architectures" in properties:
        function.architectures = properties["Architectures"]
    if "ImageConfig" in properties:
        function.image_config = ImageConfig(properties["ImageConfig"])
    if "EphemeralStorage" in properties:
        function.ephemeral_storage = properties["EphemeralStorage"]["Size"]
    if "ReservedConcurrentExecutions" in properties:
        function.reserved_concurrency = properties["ReservedConcurrentExecutions"]
    function.tags = _tags(properties)
    return function


def check() -> None:
    from moto.awslambda.models import ImageConfig, LambdaFunction, get_backend

    create = original(LambdaFunction, "create_from_cloudformation_json")
    update = original(LambdaFunction, "update_from_cloudformation_json")
    if not isinstance(create, classmethod) or not isinstance(update, classmethod):
        raise FidelityCheckError("LambdaFunction CloudFormation hooks are no longer classmethods")
    if not callable(get_backend) or not callable(ImageConfig):
        raise FidelityCheckError("moto.awslambda.models lost get_backend/ImageConfig")


def apply() -> None:
    from moto.awslambda.models import LambdaFunction

    patch(LambdaFunction, "create_from_cloudformation_json", classmethod(_create))
    patch(LambdaFunction, "update_from_cloudformation_json", classmethod(_update))
