"""AWS behaviour restored: EventBridge rules deliver matching events to Step Functions state
machines (StartExecution signed with the target's ``RoleArn``, so the role's policy decides),
Lambda functions (asynchronous invoke, allowed by the function's resource policy) and SQS
queues, asynchronously after PutEvents returns, with the target's ``Input``, ``InputPath`` or
``InputTransformer`` applied to the event as AWS shapes it (ISO ``time``, ``version: "0"``),
retries per ``RetryPolicy`` for retriable failures, then the ``DeadLetterConfig`` queue with
AWS's DLQ message attributes. Disabled rules deliver nothing.

moto raises ``NotImplementedError: Expr not defined for Rule`` from PutEvents itself for Step
Functions and Lambda targets, ignores ``Input``/``InputPath`` for SQS, sends ``time`` as a
number, and delivers for disabled rules. Its pattern matcher is kept as is; other target types
(logs, archives, buses, API destinations) still go through moto's own code.
"""

from __future__ import annotations

import copy
import datetime
import functools
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from jsonpath_ng.ext import parse as parse_jsonpath
from moto.events.models import Rule

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._moto_refs import (
    is_marked,
    mark,
    require_attr,
    require_params,
)
from sandboxctl.localcloud.fixes._scheduler import Scheduler
from sandboxctl.localcloud.fixes._service_role import (
    RoleNotAssumableError,
    credentials_for,
    endpoint,
    iam_enforced,
    service_client,
)

FIX = "events_targets"
PRINCIPAL = "events.amazonaws.com"
LOG = logging.getLogger(__name__)

# AWS defaults when a target has no RetryPolicy.
DEFAULT_MAX_RETRIES = 185
DEFAULT_MAX_AGE_SECONDS = 86_400
# AWS backs off over hours; locally the schedule is compressed, the attempt count is not.
_BACKOFF_BASE = 0.2
_BACKOFF_CAP = 5.0
_RETRIABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalServerError",
    }
)
_CLIENT_CONFIG = Config(retries={"max_attempts": 0, "total_max_attempts": 1})
_scheduler = Scheduler("eventbridge-targets", workers=4)
_jitter = random.Random()  # noqa: S311 - backoff jitter, not security
_HANDLED_SERVICES = frozenset({"states", "lambda", "sqs"})


class DeliveryError(Exception):
    """One failed attempt to deliver to a target; ``code`` as in AWS DLQ attributes."""

    def __init__(self, code: str, message: str, retriable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retriable = retriable


@dataclass
class Delivery:
    rule_arn: str
    rule_name: str
    target: dict[str, Any]
    event: dict[str, Any]
    payload: str
    first_seen: float = field(default_factory=time.monotonic)
    attempts: int = 0


# ---------------------------------------------------------------- event shape and input


def _iso(value: Any) -> str:
    if isinstance(value, (int, float)):
        moment = datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
    elif isinstance(value, datetime.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    else:
        text = str(value)
        try:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def aws_event(message: dict[str, Any]) -> dict[str, Any]:
    """The event as EventBridge hands it to targets (field order and types as AWS)."""
    return {
        "version": "0",
        "id": message["id"],
        "detail-type": message["detail-type"],
        "source": message["source"],
        "account": message["account"],
        "time": _iso(message.get("time", time.time())),
        "region": message["region"],
        "resources": list(message.get("resources") or []),
        "detail": message.get("detail") if message.get("detail") is not None else {},
    }


_MISSING = object()


@functools.lru_cache(maxsize=1024)
def _compiled(path: str) -> Any:
    return parse_jsonpath(path)


def _lookup(path: str, event: dict[str, Any]) -> Any:
    matches = _compiled(path).find(event)
    if not matches:
        return _MISSING
    if len(matches) == 1 and "*" not in path:
        return matches[0].value
    return [m.value for m in matches]


def _render(value: Any, inside_string: bool, json_template: bool, raw_json: bool) -> str:
    if value is _MISSING:
        return "" if inside_string or not json_template else "null"
    if raw_json:
        # aws.events.event(.json): inserted unescaped, as AWS documents.
        return json.dumps(value)
    if inside_string:
        text = value if isinstance(value, str) else json.dumps(value)
        return json.dumps(text)[1:-1]
    if isinstance(value, str) and not json_template:
        return value
    return json.dumps(value)


def render_input_template(
    template: str, values: dict[str, Any], raw_json_names: frozenset[str] = frozenset()
) -> str:
    """Fill ``<name>`` placeholders the way EventBridge does.

    In a JSON template a placeholder inside a string is replaced by the escaped text of the
    value; outside a string by the value as JSON (strings quoted). A non-JSON template gets
    plain text.
    """
    stripped = template.lstrip()
    json_template = stripped[:1] in ("{", "[", '"')
    out: list[str] = []
    in_string = False
    i = 0
    while i < len(template):
        char = template[i]
        if char == "<":
            end = template.find(">", i + 1)
            name = template[i + 1 : end] if end > i else None
            if name is not None and name in values:
                out.append(_render(values[name], in_string, json_template, name in raw_json_names))
                i = end + 1
                continue
        if json_template and in_string and char == "\\":
            out.append(template[i : i + 2])
            i += 2
            continue
        if json_template and char == '"':
            in_string = not in_string
        out.append(char)
        i += 1
    return "".join(out)


def target_input(target: dict[str, Any], event: dict[str, Any], rule: Any) -> str:
    """What the target receives: Input, InputPath, InputTransformer, or the whole event."""
    if target.get("Input") is not None:
        return str(target["Input"])
    if target.get("InputPath"):
        value = _lookup(target["InputPath"], event)
        return "null" if value is _MISSING else json.dumps(value)
    transformer = target.get("InputTransformer")
    if transformer:
        values = {
            name: _lookup(path, event)
            for name, path in (transformer.get("InputPathsMap") or {}).items()
        }
        without_detail = {k: v for k, v in event.items() if k != "detail"}
        values.update(
            {
                "aws.events.rule-arn": rule.arn,
                "aws.events.rule-name": rule.name,
                "aws.events.event.ingestion-time": event["time"],
                "aws.events.event": without_detail,
                "aws.events.event.json": event,
            }
        )
        return render_input_template(
            transformer["InputTemplate"],
            values,
            frozenset({"aws.events.event", "aws.events.event.json"}),
        )
    return json.dumps(event)


# ---------------------------------------------------------------- delivery per target type


def _arn_parts(arn: str) -> tuple[str, str, str, str]:
    """(service, region, account, resource) of an ARN."""
    parts = arn.split(":", 5)
    if len(parts) < 6:
        raise DeliveryError("INVALID_PARAMETER", f"Invalid target ARN {arn!r}", False)
    return parts[2], parts[3], parts[4], parts[5]


def _classify(error: ClientError) -> DeliveryError:
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    message = str(error.response.get("Error", {}).get("Message", error))
    if code in _RETRIABLE_CODES or status == 429 or status >= 500:
        return DeliveryError("THROTTLING" if status in (400, 429) else code, message, True)
    if code.startswith("AccessDenied") or status == 403 or code in {"403", "UnauthorizedOperation"}:
        return DeliveryError("NO_PERMISSIONS", message, False)
    if "NotFound" in code or "DoesNotExist" in code or status == 404:
        return DeliveryError("RESOURCE_NOT_FOUND", message, False)
    return DeliveryError("SDK_CLIENT_ERROR", f"{code}: {message}", False)


def _send_states(delivery: Delivery) -> None:
    arn = delivery.target["Arn"]
    _, region, _, _ = _arn_parts(arn)
    try:
        creds = credentials_for(delivery.target.get("RoleArn"), PRINCIPAL, region)
    except RoleNotAssumableError as error:
        raise DeliveryError("NO_PERMISSIONS", str(error), False) from error
    client = service_client("stepfunctions", region, creds, _CLIENT_CONFIG, endpoint())
    try:
        client.start_execution(stateMachineArn=arn, input=delivery.payload)
    except ClientError as error:
        raise _classify(error) from error
    except BotoCoreError as error:
        raise DeliveryError("SDK_CLIENT_ERROR", str(error), True) from error


def _lambda_allows(fn: Any, rule_arn: str) -> bool:
    for statement in getattr(getattr(fn, "policy", None), "statements", None) or []:
        principal = statement.get("Principal") or {}
        services = principal.get("Service") if isinstance(principal, dict) else principal
        services = services if isinstance(services, list) else [services]
        actions = statement.get("Action")
        actions = actions if isinstance(actions, list) else [actions]
        if statement.get("Effect") != "Allow" or PRINCIPAL not in services:
            continue
        if not {"lambda:InvokeFunction", "lambda:*", "*"} & set(actions):
            continue
        conditions = statement.get("Condition") or {}
        source_arns = [
            arns.get("AWS:SourceArn") or arns.get("aws:SourceArn")
            for op, arns in conditions.items()
            if op in ("ArnLike", "ArnEquals", "StringEquals", "StringLike")
        ]
        if all(src is None or src == rule_arn for src in source_arns):
            return True
    return False


def _send_lambda(delivery: Delivery) -> None:
    from moto.awslambda.models import lambda_backends

    arn = delivery.target["Arn"]
    _, region, account, resource = _arn_parts(arn)
    name_and_qualifier = resource.split(":", 2)
    name = name_and_qualifier[1] if len(name_and_qualifier) > 1 else resource
    qualifier = name_and_qualifier[2] if len(name_and_qualifier) > 2 else None
    backend = lambda_backends[account][region]
    try:
        fn = backend.get_function(name, qualifier)
    except Exception as error:
        raise DeliveryError("RESOURCE_NOT_FOUND", f"Function not found: {arn}", False) from error
    if iam_enforced() and not _lambda_allows(fn, delivery.rule_arn):
        raise DeliveryError(
            "NO_PERMISSIONS",
            f"The resource policy of {arn} does not allow {PRINCIPAL} to invoke it "
            f"for {delivery.rule_arn}",
            False,
        )
    # Asynchronous invocation: the function's own errors are Lambda's to retry, not EventBridge's.
    backend.invoke(name, qualifier, delivery.payload, {"x-amz-invocation-type": "Event"}, {})


def _send_sqs(delivery: Delivery) -> None:
    from moto.sqs.models import sqs_backends

    arn = delivery.target["Arn"]
    _, region, account, queue_name = _arn_parts(arn)
    group_id = (delivery.target.get("SqsParameters") or {}).get("MessageGroupId")
    try:
        sqs_backends[account][region].send_message(
            queue_name,
            delivery.payload,
            group_id=group_id,
            deduplication_id=delivery.event["id"] if queue_name.endswith(".fifo") else None,
        )
    except Exception as error:
        raise DeliveryError(
            "SDK_CLIENT_ERROR", f"{type(error).__name__}: {error}", False
        ) from error


_SENDERS = {"states": _send_states, "lambda": _send_lambda, "sqs": _send_sqs}


def _dead_letter(delivery: Delivery, error: DeliveryError, exhausted: str | None) -> None:
    dlq_arn = (delivery.target.get("DeadLetterConfig") or {}).get("Arn")
    LOG.warning(
        "EventBridge delivery to %s failed (%s): %s",
        delivery.target.get("Arn"),
        error.code,
        error.message,
    )
    if not dlq_arn:
        return
    from moto.sqs.models import sqs_backends

    _, region, account, queue_name = _arn_parts(dlq_arn)
    attributes = {
        "RULE_ARN": delivery.rule_arn,
        "TARGET_ARN": delivery.target["Arn"],
        "ERROR_CODE": error.code,
        "ERROR_MESSAGE": error.message[:1000],
        "RETRY_ATTEMPTS": str(delivery.attempts - 1),
    }
    if exhausted:
        attributes["EXHAUSTED_RETRY_CONDITION"] = exhausted
    sqs_backends[account][region].send_message(
        queue_name,
        json.dumps(delivery.event),
        message_attributes={
            k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
        },
    )


def _attempt(delivery: Delivery) -> None:
    delivery.attempts += 1
    service = delivery.target["Arn"].split(":")[2]
    try:
        _SENDERS[service](delivery)
        return
    except DeliveryError as error:
        failure = error
    except Exception as error:  # a moto internal error must not kill the worker
        failure = DeliveryError("SDK_CLIENT_ERROR", f"{type(error).__name__}: {error}", False)
    policy = delivery.target.get("RetryPolicy") or {}
    max_retries = int(policy.get("MaximumRetryAttempts", DEFAULT_MAX_RETRIES))
    max_age = int(policy.get("MaximumEventAgeInSeconds", DEFAULT_MAX_AGE_SECONDS))
    if not failure.retriable:
        _dead_letter(delivery, failure, None)
        return
    if delivery.attempts > max_retries:
        _dead_letter(delivery, failure, "MaximumRetryAttempts")
        return
    if time.monotonic() - delivery.first_seen >= max_age:
        _dead_letter(delivery, failure, "MaximumEventAgeInSeconds")
        return
    delay = _jitter.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**delivery.attempts))
    _scheduler.submit(functools.partial(_attempt, delivery), delay)


def deliveries_idle() -> bool:
    """True when no target delivery is queued, waiting to retry, or running."""
    return _scheduler.idle()


# ---------------------------------------------------------------- the hook


def check() -> None:
    send = require_attr(Rule, "send_to_targets", FIX)
    require_params(send, ["original_event", "transform_input"], FIX)
    names = set(Rule.__init__.__code__.co_names)
    for attr in ("targets", "event_pattern", "state", "name"):
        if attr not in names:
            raise FidelityCheckError(f"{FIX}: moto's Rule no longer sets {attr!r}")
    require_attr(Rule, "arn", FIX)


def apply() -> None:
    original = Rule.send_to_targets
    if is_marked(original, FIX):
        return

    @functools.wraps(original)
    def send_to_targets(
        self: Rule, original_event: dict[str, Any], transform_input: bool = True
    ) -> None:
        if getattr(self, "state", "ENABLED") != "ENABLED":
            return
        if not self.event_pattern.matches_event(original_event):  # type: ignore[arg-type]
            return
        event = aws_event(original_event)
        others = []
        for target in self.targets:
            service = str(target.get("Arn", "")).split(":")[2:3]
            if not service or service[0] not in _HANDLED_SERVICES:
                others.append(target)
                continue
            try:
                payload = target_input(target, event, self)
            except Exception as error:
                LOG.warning("EventBridge input for %s failed: %s", target.get("Arn"), error)
                _dead_letter(
                    Delivery(self.arn, self.name, target, event, ""),
                    DeliveryError("INVALID_PARAMETER", str(error), False),
                    None,
                )
                continue
            delivery = Delivery(self.arn, self.name, copy.deepcopy(target), event, payload)
            _scheduler.submit(functools.partial(_attempt, delivery))
        for target in others:
            clone = copy.copy(self)
            clone.targets = [target]
            try:
                original(clone, original_event, transform_input)  # type: ignore[arg-type]
            except NotImplementedError as error:
                # A target type neither moto nor this fix delivers: fail it like AWS would fail
                # an unreachable target, without failing PutEvents.
                _dead_letter(
                    Delivery(self.arn, self.name, target, event, ""),
                    DeliveryError("SDK_CLIENT_ERROR", f"not delivered locally: {error}", False),
                    None,
                )

    Rule.send_to_targets = mark(send_to_targets, FIX)  # type: ignore[method-assign]
