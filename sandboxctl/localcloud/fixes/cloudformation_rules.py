"""A template's ``Rules`` refuse a stack whose parameters break an assertion.

AWS behaviour restored: before CreateStack, UpdateStack or CreateChangeSet does anything,
CloudFormation evaluates each rule of the template's ``Rules`` section whose ``RuleCondition``
holds (no condition: always) and answers ``ValidationError`` with the failed assertion's
``AssertDescription`` when an ``Assert`` is false; nothing is created or changed.

moto 5.2.5 ignores ``Rules``: a stack the template forbids (prod without its Firebase service
account, here) is created. Hook: ``CloudFormationBackend.create_stack``, ``update_stack`` and
``create_change_set``. Rule functions evaluated: ``Ref`` (parameters), ``Fn::Equals``,
``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Fn::Contains``, ``Fn::EachMemberEquals``,
``Fn::EachMemberIn``; another function is refused loudly rather than guessed.
"""

from __future__ import annotations

from typing import Any

from moto.cloudformation.models import CloudFormationBackend, Stack

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

FIX = "cloudformation_rules"


class UnsupportedRuleFunction(NotImplementedError):
    """A rule function the local cloud does not evaluate (AWS would)."""


def _value(node: Any, parameters: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_value(item, parameters) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) != 1:
        return {k: _value(v, parameters) for k, v in node.items()}
    [(name, argument)] = node.items()
    if name == "Ref":
        return parameters.get(argument, "")
    args = _value(argument, parameters)
    if name == "Fn::Equals":
        return str(args[0]) == str(args[1])
    if name == "Fn::Not":
        return not args[0]
    if name == "Fn::And":
        return all(args)
    if name == "Fn::Or":
        return any(args)
    if name == "Fn::Contains":
        return str(args[1]) in [str(v) for v in args[0]]
    if name == "Fn::EachMemberEquals":
        return all(str(v) == str(args[1]) for v in args[0])
    if name == "Fn::EachMemberIn":
        return all(str(v) in [str(w) for w in args[1]] for v in args[0])
    if name.startswith("Fn::"):
        raise UnsupportedRuleFunction(f"{FIX}: rule function {name} is not evaluated locally")
    return {name: args}


def _as_list(value: Any) -> list[str]:
    return [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)


def failed_assertion(template: dict[str, Any], given: dict[str, Any]) -> str | None:
    """The description of the first failed assertion, or None when every rule holds."""
    declared = template.get("Parameters") or {}
    parameters: dict[str, Any] = {k: v.get("Default", "") for k, v in declared.items()}
    parameters.update({k: v for k, v in given.items() if v is not None})
    for key, spec in declared.items():
        if str(spec.get("Type", "")).startswith(("CommaDelimitedList", "List<")):
            parameters[key] = _as_list(parameters[key])
    for name, rule in (template.get("Rules") or {}).items():
        condition = rule.get("RuleCondition")
        if condition is not None and not _value(condition, parameters):
            continue
        for assertion in rule.get("Assertions") or []:
            if not _value(assertion["Assert"], parameters):
                return str(assertion.get("AssertDescription") or f"Rule {name} failed")
    return None


def _enforce(template: str | dict[str, Any], parameters: dict[str, Any]) -> None:
    from moto.cloudformation.exceptions import ValidationError

    body = template if isinstance(template, dict) else Stack.parse_template(template)
    if not isinstance(body, dict) or not body.get("Rules"):
        return
    description = failed_assertion(body, parameters)
    if description is not None:
        raise ValidationError(message=description)


def _create_stack(
    self: Any, name: str, template: str, parameters: dict[str, Any], **kw: Any
) -> Any:
    _enforce(template, parameters)
    return original(CloudFormationBackend, "create_stack")(self, name, template, parameters, **kw)


def _update_stack(
    self: Any,
    name: str,
    template: str,
    role_arn: str | None,
    parameters: list[dict[str, Any]],
    tags: dict[str, str] | None,
) -> Any:
    stack = self.get_stack(name)
    resolved = self._resolve_update_parameters(instance=stack, incoming_params=parameters)
    _enforce(template or stack.template, resolved)
    return original(CloudFormationBackend, "update_stack")(
        self, name, template, role_arn, parameters, tags
    )


def _create_change_set(
    self: Any,
    stack_name: str,
    change_set_name: str,
    template: str,
    parameters: Any,
    *a: Any,
    **kw: Any,
) -> Any:
    _enforce(template, dict(parameters or {}))
    return original(CloudFormationBackend, "create_change_set")(
        self, stack_name, change_set_name, template, parameters, *a, **kw
    )


def check() -> None:
    import inspect

    for name, first in (
        ("create_stack", ["self", "name", "template", "parameters"]),
        ("update_stack", ["self", "name", "template", "role_arn", "parameters", "tags"]),
        ("create_change_set", ["self", "stack_name", "change_set_name", "template", "parameters"]),
    ):
        method = original(CloudFormationBackend, name)
        if method is None:
            raise FidelityCheckError(f"{FIX}: CloudFormationBackend.{name} is gone")
        params = list(inspect.signature(method).parameters)
        if params[: len(first)] != first:
            raise FidelityCheckError(f"{FIX}: CloudFormationBackend.{name}{params} changed")
    if not callable(getattr(Stack, "parse_template", None)):
        raise FidelityCheckError(f"{FIX}: moto's Stack.parse_template is gone")


def apply() -> None:
    patch(CloudFormationBackend, "create_stack", _create_stack)
    patch(CloudFormationBackend, "update_stack", _update_stack)
    patch(CloudFormationBackend, "create_change_set", _create_change_set)
