"""Requests are authorized for the IAM action and the resource ARN AWS would evaluate.

AWS behaviour restored: IAM evaluates each request as an *action* (``lambda:InvokeFunction`` for
the ``Invoke`` operation, ``lambda:GetFunction`` …) on a *resource ARN* (the function, table,
event bus, secret, state machine, stack, log group, repository, topic the request names), so a
policy scoped to one resource allows that resource and nothing else.

moto 5.2.5 derives resource ARNs only for S3, SQS, IAM and STS; every other request is checked
against resource ``*``, which no resource-scoped statement matches, so least-privilege roles are
denied everything (and only ``Resource: "*"`` grants work). It also uses operation names as
action names (``lambda:Invoke``). Hooks: a ``_determine_resource`` method on the response classes
(moto's own extension point, used by ``BaseResponse.call_action``) and
``moto.iam.access_control.IAMRequestBase.__init__`` for the action name.
"""

from __future__ import annotations

import inspect
import json
from typing import Any
from urllib.parse import unquote

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

# Operations whose IAM action is named differently (AWS Service Authorization Reference).
ACTION_NAMES = {
    "lambda:Invoke": "lambda:InvokeFunction",
    "lambda:InvokeAsync": "lambda:InvokeAsync",
    "lambda:ListVersionsByFunction": "lambda:ListVersionsByFunction",
    "lambda:GetFunctionConfiguration": "lambda:GetFunctionConfiguration",
}


def _arn(self: Any, service: str, suffix: str) -> str:
    from moto.utilities.utils import get_partition

    return (
        f"arn:{get_partition(self.region)}:{service}:{self.region}:{self.current_account}:{suffix}"
    )


def _json_body(self: Any) -> dict[str, Any]:
    if isinstance(self.body, dict):  # DynamoDB's handler swaps in the parsed parameters
        return self.body
    try:
        body = json.loads(self.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _lambda_resource(self: Any) -> str:
    self._get_action()  # resolves the REST route into self.uri_match
    params = {**_json_body(self), **(self.uri_match or {})}
    name = params.get("FunctionName") or params.get("Resource")
    if not name:
        return "*"
    name = unquote(str(name))
    if name.startswith("arn:"):
        return name
    return _arn(self, "lambda", f"function:{name}")


def _dynamodb_resource(self: Any) -> str:
    body = _json_body(self)
    table = body.get("TableName")
    if table is None:
        items = body.get("RequestItems") or {}
        transact = body.get("TransactItems") or []
        table = next(iter(items), None)
        for item in transact:
            for operation in item.values():
                table = table or operation.get("TableName")
    if not table:
        return "*"
    if str(table).startswith("arn:"):
        return str(table)
    suffix = f"table/{table}"
    if body.get("IndexName"):
        suffix += f"/index/{body['IndexName']}"
    return _arn(self, "dynamodb", suffix)


def _events_resource(self: Any) -> str:
    body = _json_body(self)
    if self._get_action() == "PutEvents":
        buses = {entry.get("EventBusName") or "default" for entry in body.get("Entries", [])}
        bus = sorted(buses)[0] if buses else "default"
    elif "Rule" in body or ("Name" in body and "Rule" in self._get_action()):
        rule = body.get("Rule") or body.get("Name")
        bus = body.get("EventBusName") or "default"
        bus_part = "" if bus == "default" else f"{bus.rsplit('/', 1)[-1]}/"
        return _arn(self, "events", f"rule/{bus_part}{rule}")
    else:
        bus = body.get("EventBusName") or body.get("Name") or "*"
    return bus if bus.startswith("arn:") else _arn(self, "events", f"event-bus/{bus}")


def _states_resource(self: Any) -> str:
    body = _json_body(self)
    for key in ("stateMachineArn", "executionArn", "mapRunArn", "activityArn"):
        if body.get(key):
            return str(body[key])
    if self._get_action() == "CreateStateMachine" and body.get("name"):
        return _arn(self, "states", f"stateMachine:{body['name']}")
    return "*"


def _secretsmanager_resource(self: Any) -> str:
    from moto.secretsmanager.models import secretsmanager_backends

    body = _json_body(self)
    secret_id = body.get("SecretId") or body.get("Name")
    if not secret_id:
        return "*"
    if str(secret_id).startswith("arn:"):
        return str(secret_id)
    secrets = secretsmanager_backends[self.current_account][self.region].secrets
    secret = secrets.get(secret_id) if secret_id in secrets else None
    return (
        str(secret.arn)
        if secret is not None
        else _arn(self, "secretsmanager", f"secret:{secret_id}")
    )


def _cloudformation_resource(self: Any) -> str:
    from moto.cloudformation.models import cloudformation_backends

    name = self._get_param("StackName")
    if not name:
        return "*"
    if name.startswith("arn:"):
        return str(name)
    backend = cloudformation_backends[self.current_account][self.region]
    for stack in backend.stacks.values():
        if stack.name == name and not stack.status.startswith("DELETE_COMPLETE"):
            return str(stack.stack_id)
    # A stack yet to be created: AWS evaluates stack/<name>/<id to be assigned>.
    return _arn(self, "cloudformation", f"stack/{name}/*")


def _logs_resource(self: Any) -> str:
    body = _json_body(self)
    group = body.get("logGroupName")
    if not group:
        return "*"
    stream = body.get("logStreamName")
    suffix = f"log-group:{group}:log-stream:{stream}" if stream else f"log-group:{group}"
    return _arn(self, "logs", suffix)


def _ecr_resource(self: Any) -> str:
    body = _json_body(self)
    name = body.get("repositoryName")
    return _arn(self, "ecr", f"repository/{name}") if name else "*"


def _sns_resource(self: Any) -> str:
    return str(self._get_param("TopicArn") or "*")


RESOLVERS = {
    ("moto.awslambda.responses", "LambdaResponse"): _lambda_resource,
    ("moto.dynamodb.responses", "DynamoHandler"): _dynamodb_resource,
    ("moto.events.responses", "EventsHandler"): _events_resource,
    ("moto.stepfunctions.responses", "StepFunctionResponse"): _states_resource,
    ("moto.secretsmanager.responses", "SecretsManagerResponse"): _secretsmanager_resource,
    ("moto.cloudformation.responses", "CloudFormationResponse"): _cloudformation_resource,
    ("moto.logs.responses", "LogsResponse"): _logs_resource,
    ("moto.ecr.responses", "ECRResponse"): _ecr_resource,
    ("moto.sns.responses", "SNSResponse"): _sns_resource,
}


def _response_classes() -> list[tuple[type, Any]]:
    import importlib

    return [
        (getattr(importlib.import_module(module), name), resolver)
        for (module, name), resolver in RESOLVERS.items()
    ]


def _guarded(resolver: Any) -> Any:
    def _determine_resource(self: Any) -> str:
        try:
            return str(resolver(self))
        except Exception:
            return "*"  # a malformed request is rejected by the service itself, after auth

    return _determine_resource


def _iam_request_init(self: Any, *args: Any, **kwargs: Any) -> None:
    from moto.iam.access_control import IAMRequestBase

    original(IAMRequestBase, "__init__")(self, *args, **kwargs)
    self._action = ACTION_NAMES.get(self._action, self._action)


def check() -> None:
    from moto.core.responses import BaseResponse
    from moto.iam.access_control import IAMRequestBase

    if "_determine_resource" not in inspect.getsource(BaseResponse.call_action):
        raise FidelityCheckError("BaseResponse.call_action no longer asks _determine_resource")
    for cls, _ in _response_classes():
        if "_determine_resource" in cls.__dict__ and not getattr(
            cls.__dict__["_determine_resource"], "__sandbox_fleet_hook__", False
        ):
            raise FidelityCheckError(f"moto's {cls.__name__} now resolves resources itself")
    if "self._action = " not in inspect.getsource(original(IAMRequestBase, "__init__")):
        raise FidelityCheckError("IAMRequestBase.__init__ no longer sets self._action")


def apply() -> None:
    from moto.iam.access_control import IAMRequestBase

    for cls, resolver in _response_classes():
        patch(cls, "_determine_resource", _guarded(resolver))
    patch(IAMRequestBase, "__init__", _iam_request_init)
