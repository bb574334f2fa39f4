"""Policy statements are evaluated as IAM does: principals, conditions, NotResource, boundaries.

AWS behaviour restored:
- a statement applies only when its action, resource (or ``NotResource``), principal and every
  ``Condition`` match; a statement that does not apply is neutral, never an implicit deny;
- conditions are evaluated against the request context (``s3:prefix`` of a ListObjects call,
  ``aws:SourceVpce``, ``aws:PrincipalArn``, ``aws:RequestedRegion``, ``aws:SecureTransport`` …) with
  the IAM operators (``StringLike``, ``StringEquals``, ``ArnLike``, ``Bool``, ``Null``, numeric,
  ``…IfExists``, ``ForAnyValue:``/``ForAllValues:``); a key missing from the request fails a
  positive operator, so ``s3:ListBucket`` limited by ``s3:prefix`` lists only that prefix;
- trust policies match ``Service``/``AWS``/account principals (``arn:aws:iam::<acct>:root`` or
  the account id admits any principal of the account whose own policy allows the call);
- a role or user with a permissions boundary can do only what both its policies and the
  boundary allow.

moto 5.2.5 ignores condition operators other than ``StringEquals`` (so ``s3:prefix`` limits are
silently dropped: a role may list every user's prefix), turns a failed condition or a
non-matching principal into an explicit deny, crashes on ``Service`` principals
(``TypeError``), matches account principals literally, ignores ``NotResource`` and permissions
boundaries. Hooks: ``moto.iam.access_control.IAMPolicyStatement.is_action_permitted`` and
``IAMRequestBase.check_action_permitted`` (request context, boundary).
"""

from __future__ import annotations

import inspect
import ipaddress
import re
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlparse

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

_context = threading.local()


@lru_cache(maxsize=4096)
def _wildcard(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(f"^{regex}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _matches_any(patterns: Any, value: str, ignore_case: bool = False) -> bool:
    return any(_wildcard(str(p), ignore_case).match(value) for p in _as_list(patterns))


# ---------------------------------------------------------------------- conditions
def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _compare(base: str, expected: str, actual: str) -> bool:
    """One expected value against one actual value, for operator `base` (without Not/IfExists)."""
    if base == "StringEquals":
        return actual == expected
    if base == "StringEqualsIgnoreCase":
        return actual.lower() == expected.lower()
    if base in ("StringLike", "ArnLike", "ArnEquals"):
        return bool(_wildcard(expected).match(actual))
    if base == "Bool":
        return actual.lower() == expected.lower()
    if base.startswith("Numeric"):
        a, e = _number(actual), _number(expected)
        if a is None or e is None:
            return False
        return {
            "NumericEquals": a == e,
            "NumericLessThan": a < e,
            "NumericLessThanEquals": a <= e,
            "NumericGreaterThan": a > e,
            "NumericGreaterThanEquals": a >= e,
        }.get(base, False)
    if base == "IpAddress":
        try:
            return ipaddress.ip_address(actual) in ipaddress.ip_network(expected, strict=False)
        except ValueError:
            return False
    raise KeyError(base)


_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals",
    "NotIpAddress": "IpAddress",
}


def condition_holds(operator: str, key: str, expected: Any, context: dict[str, Any]) -> bool:
    """Evaluate one `operator: {key: expected}` entry against the request context."""
    qualifier = ""
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    present = key in context and context[key] is not None
    expected_values = [
        str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(expected)
    ]
    if base == "Null":
        wants_null = str(expected_values[0]).lower() == "true" if expected_values else True
        return wants_null != present
    if not present:
        if if_exists:
            return True
        # Negated operators hold when the key is absent (IAM docs, condition operators).
        return base in _NEGATED or qualifier == "ForAllValues"
    actual_values = [
        str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(context[key])
    ]
    negated = base in _NEGATED
    positive = _NEGATED.get(base, base)

    def one(actual: str) -> bool:
        try:
            hit = any(_compare(positive, e, actual) for e in expected_values)
        except KeyError:
            return False  # an operator IAM would have rejected when the policy was written
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(a) for a in actual_values)
    return any(one(a) for a in actual_values)


def conditions_hold(conditions: dict[str, Any] | None, context: dict[str, Any]) -> bool:
    for operator, entries in (conditions or {}).items():
        for key, expected in entries.items():
            normalised = {k.lower(): v for k, v in context.items()}
            if not condition_holds(operator, key.lower(), expected, normalised):
                return False
    return True


# ---------------------------------------------------------------------- principals
def principal_matches(statement_principal: Any, caller_arn: str) -> bool:
    """Does the caller (an IAM user or assumed-role session ARN) match a statement's Principal?"""
    if statement_principal == "*":
        return True
    if not isinstance(statement_principal, dict):
        return False
    parts = caller_arn.split(":")
    account = parts[4] if len(parts) > 5 else ""
    identities = {caller_arn}
    if ":assumed-role/" in caller_arn:
        role_name = caller_arn.split(":assumed-role/", 1)[1].split("/")[0]
        identities.add(f"arn:{parts[1]}:iam::{account}:role/{role_name}")
    for expected in _as_list(statement_principal.get("AWS")):
        expected = str(expected)
        if expected == "*" or expected in identities:
            return True
        if expected in (
            account,
            f"arn:{parts[1] if len(parts) > 1 else 'aws'}:iam::{account}:root",
        ):
            return True
    # Service and Federated principals are AWS services / identity providers, never an API caller.
    return False


# ---------------------------------------------------------------------- statements
def _statement_is_action_permitted(
    self: Any,
    action: str,
    resource: str = "*",
    principal: str | None = None,
    incoming_condition_values: dict[str, str] | None = None,
) -> Any:
    from moto.iam.access_control import PermissionResult

    statement = self._statement
    if "NotAction" in statement:
        if _matches_any(statement["NotAction"], action, ignore_case=True):
            return PermissionResult.NEUTRAL
    elif not _matches_any(statement.get("Action"), action, ignore_case=True):
        return PermissionResult.NEUTRAL
    if principal is not None and ("Principal" in statement or "NotPrincipal" in statement):
        if "NotPrincipal" in statement:
            if principal_matches(statement["NotPrincipal"], principal):
                return PermissionResult.NEUTRAL
        elif not principal_matches(statement["Principal"], principal):
            return PermissionResult.NEUTRAL
    if "Resource" in statement and not _matches_any(statement["Resource"], resource):
        return PermissionResult.NEUTRAL
    if "NotResource" in statement and _matches_any(statement["NotResource"], resource):
        return PermissionResult.NEUTRAL
    context = dict(getattr(_context, "values", None) or {})
    context.update(incoming_condition_values or {})
    if not conditions_hold(statement.get("Condition"), context):
        return PermissionResult.NEUTRAL
    return (
        PermissionResult.PERMITTED
        if statement.get("Effect") == "Allow"
        else PermissionResult.DENIED
    )


# ---------------------------------------------------------------------- request context
def request_context(request: Any) -> dict[str, Any]:
    """The condition keys AWS would put in the request context for this request."""
    context: dict[str, Any] = {
        "aws:SecureTransport": "false",  # the local cloud speaks plain http
        "aws:RequestedRegion": getattr(request, "_region", None),
        "aws:CurrentTime": None,
    }
    access_key = getattr(request, "_access_key", None)
    arn = getattr(access_key, "arn", "") if access_key is not None else ""
    if ":assumed-role/" in arn:
        parts = arn.split(":")
        role = arn.split(":assumed-role/", 1)[1].split("/")[0]
        context["aws:PrincipalArn"] = f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"
    elif arn:
        context["aws:PrincipalArn"] = arn
    if arn:
        context["aws:PrincipalAccount"] = arn.split(":")[4]
    query = parse_qs(urlparse(getattr(request, "_path", "") or "").query, keep_blank_values=True)
    if getattr(request, "_service", "") == "s3":
        for key in ("prefix", "delimiter", "max-keys"):
            if key in query:
                context[f"s3:{key}"] = query[key][0]
    if getattr(request, "_service", "") == "cloudformation":
        context.update(_cloudformation_keys(getattr(request, "_data", None) or {}))
    return {k: v for k, v in context.items() if v is not None}


def _cloudformation_keys(data: dict[str, Any]) -> dict[str, Any]:
    """cloudformation:RoleArn, TemplateUrl and ResourceTypes of a Create/Update/DeleteStack call.

    AWS puts the request's RoleARN, TemplateURL and ResourceTypes list in the request context
    (Service Authorization Reference, AWS CloudFormation condition keys), so a policy can allow
    CreateStack only through one service role, from one template, for some resource types.
    """

    def first(name: str) -> Any:
        value = data.get(name)
        return value[0] if isinstance(value, list) and value else value

    keys: dict[str, Any] = {
        "cloudformation:RoleArn": first("RoleARN"),
        "cloudformation:TemplateUrl": first("TemplateURL"),
    }
    members = sorted(
        (k for k in data if k.startswith("ResourceTypes.member.")),
        key=lambda k: int(k.rsplit(".", 1)[1]),
    )
    if members:
        keys["cloudformation:ResourceTypes"] = [first(k) for k in members]
    return {k: v for k, v in keys.items() if v}


def _boundary_document(request: Any) -> Any:
    """The permissions boundary policy of the caller's user or role, if it has one."""
    access_key = request._access_key
    backend = request.backend
    boundary_arn = None
    role_name = getattr(access_key, "_owner_role_name", None)
    user_name = getattr(access_key, "_owner_user_name", None)
    try:
        if role_name:
            boundary_arn = backend.get_role(role_name).permissions_boundary_arn
        elif user_name:
            boundary_arn = getattr(backend.get_user(user_name), "permissions_boundary_arn", None)
    except Exception:
        return None
    if not boundary_arn:
        return None
    return backend.managed_policies.get(boundary_arn)


# Further authorizations a request needs besides its own action (iam:PassRole, …): each check
# receives the IAM request and raises (``request._raise_access_denied()``) to deny.
EXTRA_CHECKS: list[Callable[[Any], None]] = []


def _check_action_permitted(self: Any, resource: str) -> None:
    from moto.iam.access_control import IAMPolicy, IAMRequestBase, PermissionResult

    _context.values = request_context(self)
    try:
        original(IAMRequestBase, "check_action_permitted")(self, resource)
        if self._action == "sts:GetCallerIdentity":
            return
        boundary = _boundary_document(self)
        if boundary is not None:
            result = IAMPolicy(boundary).is_action_permitted(self._action, resource)
            if result != PermissionResult.PERMITTED:
                self._raise_access_denied()
        for extra in EXTRA_CHECKS:
            extra(self)
    finally:
        _context.values = None


def evaluate(
    policies: list[Any],
    boundary: Any,
    action: str,
    resource: str,
    context: dict[str, Any],
) -> bool:
    """IAM's decision for one action: some policy allows, none denies, the boundary allows."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    saved = getattr(_context, "values", None)
    _context.values = context
    try:
        results = [IAMPolicy(p).is_action_permitted(action, resource) for p in policies]
        if PermissionResult.DENIED in results or PermissionResult.PERMITTED not in results:
            return False
        if boundary is None:
            return True
        return bool(
            IAMPolicy(boundary).is_action_permitted(action, resource) == PermissionResult.PERMITTED
        )
    finally:
        _context.values = saved


def request_allows(request: Any, action: str, resource: str, extra_context: dict[str, Any]) -> bool:
    """Would the caller of `request` be allowed `action` on `resource` (with more context keys)?"""
    context = {**request_context(request), **extra_context}
    return evaluate(
        request._access_key.collect_policies(),
        _boundary_document(request),
        action,
        resource,
        context,
    )


def role_allows(role_arn: str, action: str, resource: str, extra_context: dict[str, Any]) -> bool:
    """Would a session of `role_arn` (say, a service acting with it) be allowed `action`?"""
    from moto.iam.models import iam_backends
    from moto.utilities.utils import get_partition

    parts = role_arn.split(":")
    backend = iam_backends[parts[4]][get_partition(parts[3] or "us-east-1")]
    role = backend.get_role_by_arn(role_arn)
    policies: list[Any] = [role.policies[name] for name in role.policies]
    policies += list(role.managed_policies.values())
    boundary = backend.managed_policies.get(role.permissions_boundary_arn or "")
    context = {
        "aws:PrincipalArn": role_arn,
        "aws:PrincipalAccount": parts[4],
        "aws:SecureTransport": "true",
        **extra_context,
    }
    return evaluate(policies, boundary, action, resource, context)


def check() -> None:
    from moto.iam.access_control import IAMPolicy, IAMPolicyStatement, IAMRequestBase

    params = list(inspect.signature(original(IAMPolicyStatement, "is_action_permitted")).parameters)
    if params != ["self", "action", "resource", "principal", "incoming_condition_values"]:
        raise FidelityCheckError(f"IAMPolicyStatement.is_action_permitted changed: {params}")
    source = inspect.getsource(original(IAMRequestBase, "check_action_permitted"))
    if "collect_policies" not in source or "_raise_access_denied" not in source:
        raise FidelityCheckError("IAMRequestBase.check_action_permitted changed shape")
    if "IAMPolicyStatement(" not in inspect.getsource(IAMPolicy.is_action_permitted):
        raise FidelityCheckError("IAMPolicy no longer evaluates through IAMPolicyStatement")


def apply() -> None:
    from moto.iam.access_control import IAMPolicyStatement, IAMRequestBase

    patch(IAMPolicyStatement, "is_action_permitted", _statement_is_action_permitted)
    patch(IAMRequestBase, "check_action_permitted", _check_action_permitted)
