"""Handing a role to a service needs ``iam:PassRole`` on that role, for that service.

AWS behaviour restored: a request that gives a service a role to act with — ``CreateStack``/
``UpdateStack``/``CreateChangeSet`` with ``RoleARN`` (CloudFormation), ``CreateFunction``/
``UpdateFunctionConfiguration`` with ``Role`` (Lambda), ``CreateStateMachine``/
``UpdateStateMachine`` with ``roleArn`` (Step Functions), ``PutTargets`` with ``RoleArn``
(EventBridge) — is denied unless the caller may ``iam:PassRole`` that role, evaluated with the
condition key ``iam:PassedToService`` set to the receiving service. This is what stops a
principal from borrowing a more powerful role through a service.

moto 5.2.5 never checks ``iam:PassRole``. Hook: an extra check run by
``iam_policy_evaluation`` after the request's own action is authorized.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original

# (signing name, action) -> (where the role ARN is, receiving service principal)
PASSES = {
    ("cloudformation", "CreateStack"): ("RoleARN", "cloudformation.amazonaws.com"),
    ("cloudformation", "UpdateStack"): ("RoleARN", "cloudformation.amazonaws.com"),
    ("cloudformation", "CreateChangeSet"): ("RoleARN", "cloudformation.amazonaws.com"),
    ("lambda", "CreateFunction"): ("Role", "lambda.amazonaws.com"),
    ("lambda", "UpdateFunctionConfiguration"): ("Role", "lambda.amazonaws.com"),
    ("states", "CreateStateMachine"): ("roleArn", "states.amazonaws.com"),
    ("states", "UpdateStateMachine"): ("roleArn", "states.amazonaws.com"),
    ("events", "PutTargets"): ("Targets[].RoleArn", "events.amazonaws.com"),
}


def _parameters(request: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    data = request._data if isinstance(request._data, dict) else {}
    for key, value in data.items():
        params[key] = value[0] if isinstance(value, list) and len(value) == 1 else value
    body = request._body
    if body:
        try:
            parsed = json.loads(body)
        except (TypeError, ValueError, UnicodeDecodeError):
            parsed = None
        if isinstance(parsed, dict):
            params.update(parsed)
    return params


def passed_roles(request: Any) -> list[tuple[str, str]]:
    """(role ARN, receiving service) for every role this request hands to a service."""
    service, _, action = request._action.partition(":")
    entry = PASSES.get((service, action))
    if entry is None:
        return []
    field, principal = entry
    params = _parameters(request)
    if field.endswith("[].RoleArn"):
        roles = [
            t.get("RoleArn") for t in params.get(field.split("[")[0]) or [] if isinstance(t, dict)
        ]
    else:
        roles = [params.get(field)]
    return [(str(role), principal) for role in roles if isinstance(role, str) and role]


def check_pass_role(request: Any) -> None:
    from moto.iam.access_control import IAMRequest

    from sandboxctl.localcloud.fixes.iam_policy_evaluation import request_allows

    for role_arn, service in passed_roles(request):
        context = {"iam:PassedToService": service}
        if not request_allows(request, "iam:PassRole", role_arn, context):
            if isinstance(request, IAMRequest):
                request._action = f"iam:PassRole on resource: {role_arn}"
            request._raise_access_denied()


def check() -> None:
    from moto.iam.access_control import IAMRequestBase

    from sandboxctl.localcloud.fixes import iam_policy_evaluation

    if not hasattr(iam_policy_evaluation, "EXTRA_CHECKS"):
        raise FidelityCheckError("iam_policy_evaluation no longer runs extra checks")
    source = inspect.getsource(original(IAMRequestBase, "__init__"))
    for attribute in ("_data", "_body", "_action"):
        if f"self.{attribute} = " not in source:
            raise FidelityCheckError(f"moto's IAMRequestBase no longer keeps {attribute}")


def apply() -> None:
    from sandboxctl.localcloud.fixes import iam_policy_evaluation

    if check_pass_role not in iam_policy_evaluation.EXTRA_CHECKS:
        iam_policy_evaluation.EXTRA_CHECKS.append(check_pass_role)
