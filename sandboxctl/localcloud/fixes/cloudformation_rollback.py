"""A resource that fails to create or update rolls the stack back, with events that say why.

AWS behaviour restored: ``CreateStack``/``UpdateStack`` accept the request and return; resources
are then provisioned one by one, each with ``CREATE_IN_PROGRESS``/``CREATE_COMPLETE`` events. When
one fails, its event is ``CREATE_FAILED`` (or ``UPDATE_FAILED``) with the service's error as
``ResourceStatusReason``, the stack goes ``ROLLBACK_IN_PROGRESS`` -> ``ROLLBACK_COMPLETE`` (updates:
``UPDATE_ROLLBACK_IN_PROGRESS`` -> ``UPDATE_ROLLBACK_COMPLETE``, back on the previous template), and
the reason is readable with ``DescribeStackEvents``.

moto 5.2.5 records stack-level events only and lets a resource's exception escape from the
API call, so the caller gets an HTTP error (often unparseable) and no stack to inspect. Hooks:
``moto.cloudformation.parsing.parse_and_create_resource`` (resource events) and
``moto.cloudformation.models.Stack.{create_resources,update}`` (rollback).

Fault injection (the ``flaky`` profile) raises from a resource's creation and lets this fix do
the rest, exactly as a real provisioning failure would.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

FAILED_RESOURCE_ATTR = "_sandbox_fleet_failed_resource"
# Checks run before a resource is created or updated (operation "CREATE"/"UPDATE"), e.g. that
# the stack's service role may do it; they raise to fail the resource.
RESOURCE_CHECKS: list[Callable[[Any, str, dict[str, Any], Any, str], None]] = []


def _validation_errors() -> tuple[type[BaseException], ...]:
    # Template errors are rejected by the API call itself on AWS too; they never roll back.
    from moto.cloudformation.exceptions import (
        ExportNotFound,
        MissingParameterError,
        UnsupportedAttribute,
        ValidationError,
    )

    return (ValidationError, MissingParameterError, UnsupportedAttribute, ExportNotFound)


def _reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or getattr(exc, "description", None) or str(exc)
    code = getattr(exc, "error_type", None) or getattr(exc, "code", None)
    text = f"{message}"
    if isinstance(code, str) and code not in text:
        text = f"{text} (Service error code: {code})"
    return text[:1000] or type(exc).__name__


def _stack_of(resources_map: Any) -> Any:
    from moto.cloudformation.models import cloudformation_backends

    backend = cloudformation_backends[resources_map._account_id][resources_map._region_name]
    return backend.stacks.get(resources_map.stack_id)


def resource_event(
    stack: Any,
    logical_id: str,
    resource_type: str,
    status: str,
    physical_id: str = "",
    reason: str | None = None,
) -> None:
    """Append a resource-level stack event, as CloudFormation records one per transition."""
    from moto.cloudformation.models import Event

    stack.events.append(
        Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=logical_id,
            physical_resource_id=physical_id,
            resource_type=resource_type,
            resource_status=status,
            resource_status_reason=reason,
            resource_properties=None,
        )
    )


def _parse_and_create_resource(
    logical_id: str,
    resource_json: dict[str, Any],
    resources_map: Any,
    account_id: str,
    region_name: str,
) -> Any:
    from moto.cloudformation import parsing

    stack = _stack_of(resources_map)
    resource_type = resource_json.get("Type", "")
    if stack is not None:
        resource_event(stack, logical_id, resource_type, "CREATE_IN_PROGRESS")
    try:
        for resource_check in RESOURCE_CHECKS:
            if stack is not None:
                resource_check(stack, logical_id, resource_json, resources_map, "CREATE")
        resource = original(parsing, "parse_and_create_resource")(
            logical_id, resource_json, resources_map, account_id, region_name
        )
    except _validation_errors():
        raise
    except Exception as exc:
        if stack is not None and not hasattr(exc, FAILED_RESOURCE_ATTR):
            resource_event(stack, logical_id, resource_type, "CREATE_FAILED", reason=_reason(exc))
            setattr(exc, FAILED_RESOURCE_ATTR, logical_id)
        raise
    if stack is not None and resource is not None:
        physical = getattr(resource, "physical_resource_id", "")
        resource_event(stack, logical_id, resource_type, "CREATE_COMPLETE", str(physical or ""))
    return resource


def _parse_and_update_resource(
    logical_id: str,
    resource_json: dict[str, Any],
    resources_map: Any,
    account_id: str,
    region_name: str,
) -> Any:
    from moto.cloudformation import parsing

    stack = _stack_of(resources_map)
    try:
        for resource_check in RESOURCE_CHECKS:
            if stack is not None:
                resource_check(stack, logical_id, resource_json, resources_map, "UPDATE")
    except Exception as exc:
        setattr(exc, FAILED_RESOURCE_ATTR, logical_id)
        raise
    return original(parsing, "parse_and_update_resource")(
        logical_id, resource_json, resources_map, account_id, region_name
    )


def _create_resources(self: Any) -> None:
    from moto.cloudformation.models import Stack

    try:
        original(Stack, "create_resources")(self)
    except _validation_errors():
        raise
    except Exception as exc:
        failed = getattr(exc, FAILED_RESOURCE_ATTR, None) or "unknown"
        self.status = "ROLLBACK_IN_PROGRESS"
        self._add_stack_event(
            "ROLLBACK_IN_PROGRESS",
            resource_status_reason=(
                f"The following resource(s) failed to create: [{failed}]. "
                "Rollback requested by user."
            ),
        )
        try:
            self.resource_map.delete()
        except Exception as cleanup:
            self.status = "ROLLBACK_FAILED"
            self._add_stack_event("ROLLBACK_FAILED", resource_status_reason=_reason(cleanup))
        else:
            self.status = "ROLLBACK_COMPLETE"
            self._add_stack_event("ROLLBACK_COMPLETE")
        _forget_resources(self)


class _NoOutputs(dict[str, Any]):
    """A rolled-back stack has no outputs and exports nothing."""

    exports: tuple[Any, ...] = ()


def _forget_resources(stack: Any) -> None:
    # moto's resource map creates resources lazily on access: a rolled-back stack must not
    # resurrect them when its resources or outputs are listed.
    stack.resource_map._resource_json_map = {}
    stack.output_map = _NoOutputs()


def _update(
    self: Any,
    template: str,
    role_arn: str | None = None,
    parameters: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    from moto.cloudformation.models import Stack

    moto_update = original(Stack, "update")
    previous_template, previous_parameters = self.template, dict(self.parameters or {})
    try:
        moto_update(self, template, role_arn=role_arn, parameters=parameters, tags=tags)
    except _validation_errors():
        raise
    except Exception as exc:
        failed = getattr(exc, FAILED_RESOURCE_ATTR, None) or "unknown"
        reason = _reason(exc)
        resource_event(self, failed, "", "UPDATE_FAILED", reason=reason)
        self._add_stack_event(
            "UPDATE_ROLLBACK_IN_PROGRESS",
            resource_status_reason=(
                f"The following resource(s) failed to update: [{failed}]. {reason}"
            ),
        )
        try:
            moto_update(self, previous_template, role_arn=role_arn, parameters=previous_parameters)
        except Exception as cleanup:
            self.events.pop()  # moto's own (misleading) UPDATE_COMPLETE, if it got that far
            self.status = "UPDATE_ROLLBACK_FAILED"
            self._add_stack_event("UPDATE_ROLLBACK_FAILED", resource_status_reason=_reason(cleanup))
            return
        # moto appended UPDATE_IN_PROGRESS/UPDATE_COMPLETE for the restore: AWS says rollback.
        self.events = [e for e in self.events[:-2]] + []
        self.status = "UPDATE_ROLLBACK_COMPLETE"
        self._add_stack_event("UPDATE_ROLLBACK_COMPLETE")


def check() -> None:
    from moto.cloudformation import parsing
    from moto.cloudformation.models import Event, Stack

    params = list(inspect.signature(original(parsing, "parse_and_create_resource")).parameters)
    if params != ["logical_id", "resource_json", "resources_map", "account_id", "region_name"]:
        raise FidelityCheckError(f"parse_and_create_resource signature changed: {params}")
    update_params = list(inspect.signature(original(Stack, "update")).parameters)
    if update_params != ["self", "template", "role_arn", "parameters", "tags"]:
        raise FidelityCheckError(f"Stack.update signature changed: {update_params}")
    for name in ("create_resources", "_add_stack_event", "resource_map", "events"):
        if name not in inspect.getsource(Stack):
            raise FidelityCheckError(f"moto's Stack no longer has {name}")
    if "resource_status_reason" not in inspect.signature(Event).parameters:
        raise FidelityCheckError("moto's stack Event lost resource_status_reason")


def apply() -> None:
    from moto.cloudformation import parsing
    from moto.cloudformation.models import Stack

    patch(parsing, "parse_and_create_resource", _parse_and_create_resource)
    patch(parsing, "parse_and_update_resource", _parse_and_update_resource)
    patch(Stack, "create_resources", _create_resources)
    patch(Stack, "update", _update)
