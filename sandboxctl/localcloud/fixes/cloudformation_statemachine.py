"""CloudFormation state machines get their real definition, in the backend that executes them.

AWS behaviour restored: ``AWS::StepFunctions::StateMachine`` takes its definition from
``DefinitionString``, ``Definition`` (an object) or ``DefinitionS3Location`` (what ``sam package``
produces from ``DefinitionUri``), replaces every ``${key}`` of ``DefinitionSubstitutions`` in it,
and
honours ``StateMachineType``, logging and tracing settings. The machine is then executable.

moto 5.2.5 reads only ``DefinitionString`` (the others yield an empty definition), ignores the
substitutions, and creates the machine in the non-executing backend, invisible once
``stepfunctions.execute_state_machine`` is on. Hook:
``moto.stepfunctions.models.StateMachine.{create,update,delete}_from_cloudformation_json``.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import patch


class DefinitionError(ValueError):
    """The state machine's definition cannot be resolved."""


def _backend(account_id: str, region_name: str) -> Any:
    # The same choice moto's API makes, so CloudFormation and the API see the same machines.
    from moto.stepfunctions.responses import get_backend

    return get_backend(account_id, region_name)


def _read_s3(location: dict[str, Any], account_id: str, region_name: str) -> str:
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    backend = s3_backends[account_id][get_partition(region_name)]
    try:
        key = backend.get_object(location["Bucket"], location["Key"])
    except Exception as exc:
        raise DefinitionError(f"DefinitionS3Location {location}: {exc}") from exc
    if key is None:
        raise DefinitionError(f"DefinitionS3Location {location}: no such object")
    return key.value.decode("utf-8")


def resolve_definition(properties: dict[str, Any], account_id: str, region_name: str) -> str:
    """The ASL text CloudFormation would send to CreateStateMachine."""
    if "DefinitionString" in properties:
        text = properties["DefinitionString"]
    elif "Definition" in properties:
        text = json.dumps(properties["Definition"])
    elif "DefinitionS3Location" in properties:
        text = _read_s3(properties["DefinitionS3Location"], account_id, region_name)
    else:
        raise DefinitionError(
            "one of DefinitionString, Definition, DefinitionS3Location is required"
        )
    for key, value in (properties.get("DefinitionSubstitutions") or {}).items():
        text = text.replace(
            "${" + key + "}", value if isinstance(value, str) else json.dumps(value)
        )
    return text


def _create(
    cls: Any,
    resource_name: str,
    cloudformation_json: Any,
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> Any:
    from moto.stepfunctions.utils import cfn_to_api_tags

    properties = cloudformation_json["Properties"]
    return _backend(account_id, region_name).create_state_machine(
        name=properties.get("StateMachineName", resource_name),
        definition=resolve_definition(properties, account_id, region_name),
        roleArn=properties.get("RoleArn", ""),
        tags=cfn_to_api_tags(properties.get("Tags", [])),
        loggingConfiguration=_lower_keys(properties.get("LoggingConfiguration")),
        tracingConfiguration=_lower_keys(properties.get("TracingConfiguration")),
        sm_type=properties.get("StateMachineType", "STANDARD"),
    )


def _lower_keys(value: Any) -> Any:
    """CloudFormation spells API fields in PascalCase; the Step Functions API in camelCase."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def _delete(
    cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
) -> None:
    _backend(account_id, region_name).delete_state_machine(resource_name)


def _update(
    cls: Any,
    original_resource: Any,
    new_resource_name: str,
    cloudformation_json: Any,
    account_id: str,
    region_name: str,
) -> Any:
    from moto.stepfunctions.utils import cfn_to_api_tags

    properties = cloudformation_json.get("Properties", {})
    name = properties.get("StateMachineName", original_resource.name)
    if name != original_resource.name:
        replacement = _create(cls, name, cloudformation_json, account_id, region_name)
        _delete(cls, original_resource.arn, cloudformation_json, account_id, region_name)
        return replacement
    backend = _backend(account_id, region_name)
    machine = backend.update_state_machine(
        original_resource.arn,
        definition=resolve_definition(properties, account_id, region_name),
        role_arn=properties.get("RoleArn"),
    )
    backend.tagger.tag_resource(machine.arn, cfn_to_api_tags(properties.get("Tags", [])))
    return machine


def check() -> None:
    from moto.stepfunctions import responses
    from moto.stepfunctions.models import StateMachine, StepFunctionBackend

    if not callable(getattr(responses, "get_backend", None)):
        raise FidelityCheckError("moto.stepfunctions.responses.get_backend is gone")
    params = inspect.signature(StepFunctionBackend.create_state_machine).parameters
    for name in ("name", "definition", "roleArn", "tags", "sm_type", "loggingConfiguration"):
        if name not in params:
            raise FidelityCheckError(f"create_state_machine lost its {name!r} parameter")
    for name in ("create_from_cloudformation_json", "update_from_cloudformation_json"):
        if not hasattr(StateMachine, name):
            raise FidelityCheckError(f"StateMachine.{name} is gone")


def apply() -> None:
    from moto.stepfunctions.models import StateMachine

    patch(StateMachine, "create_from_cloudformation_json", classmethod(_create))
    patch(StateMachine, "update_from_cloudformation_json", classmethod(_update))
    patch(StateMachine, "delete_from_cloudformation_json", classmethod(_delete))
