"""The API's JSON Schemas, examples and sample events: generated from the models, never stale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model
from fleet import models
from fleet.api_models import RunEnvelope

from sandboxctl import apischema
from sandboxctl.localcloud.httpapi import go_string

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"


def test_checked_in_schemas_examples_and_events_are_what_the_models_generate() -> None:
    assert apischema.main(["--check", "--root", str(ROOT)]) == 0


def test_a_changed_model_makes_the_check_fail(tmp_path: Path) -> None:
    for relative, content in apischema.generated().items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(content)
    schema = tmp_path / "docs/schemas/run-request.schema.json"
    schema.write_text(schema.read_text().replace('"code"', '"source"', 1))
    assert apischema.main(["--check", "--root", str(tmp_path)]) == 1


def test_there_is_an_example_for_every_status_and_each_is_a_valid_envelope() -> None:
    from sandbox_runtime.envelope import STATUSES, make_envelope

    assert set(apischema.RUN_EXAMPLES) == set(STATUSES)
    for status in STATUSES:
        example = json.loads((ROOT / f"docs/schemas/examples/run-{status}.json").read_text())
        assert RunEnvelope.model_validate(example).status == status
        # The runtime's own envelope has exactly the documented fields.
        assert set(make_envelope(status)) == set(example)


def _event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("run_code.json", models.RunRequest),
        ("datasets.json", models.DatasetUploadRequest),
        ("signup_webhook.json", models.UserCreatedNotice),
    ],
)
def test_every_http_sample_event_is_a_payload_2_event_with_a_valid_body(
    name: str, model: type
) -> None:
    event = parse(event=_event(name), model=APIGatewayProxyEventV2Model)
    model.model_validate(json.loads(event.body or ""))
    claims = _event(name)["requestContext"].get("authorizer", {}).get("jwt", {}).get("claims", {})
    # API Gateway passes every claim on as a string.
    assert all(isinstance(v, str) and go_string(v) == v for v in claims.values())


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("user_signed_up.json", models.UserSignedUpEvent),
        ("user_deleted.json", models.UserDeletedEvent),
    ],
)
def test_every_bus_sample_event_is_a_valid_event(name: str, model: type) -> None:
    model.model_validate(_event(name))


def test_every_file_in_events_is_exercised_here() -> None:
    covered = {"run_code.json", "datasets.json", "signup_webhook.json"}
    covered |= {"user_signed_up.json", "user_deleted.json"}
    assert {p.name for p in EVENTS.glob("*.json")} == covered
