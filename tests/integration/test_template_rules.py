"""template.yaml's Rules refuse a prod deploy without the Firebase service account (item 10).

The rule is the real one from template.yaml; the local cloud evaluates Rules as CloudFormation
does (fix cloudformation_rules): a refused create or update writes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from samtranslator.yaml_helper import yaml_parse

from tests.integration.localcloud_support import deploy_stack, unique
from tests.unit.sfn_harness import ROOT

pytestmark = pytest.mark.integration
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:firebase-sa-AbCdEf"


def rules_template() -> dict[str, Any]:
    """The control plane's parameters and Rules, around one harmless resource."""
    source = yaml_parse((ROOT / "template.yaml").read_text())
    params = {k: source["Parameters"][k] for k in ("Stage", "FirebaseServiceAccountSecretArn")}
    return {
        "Parameters": params,
        "Rules": source["Rules"],
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
    }


def parameters(stage: str, secret: str | None) -> list[dict[str, str]]:
    given = [{"ParameterKey": "Stage", "ParameterValue": stage}]
    if secret is not None:
        given.append({"ParameterKey": "FirebaseServiceAccountSecretArn", "ParameterValue": secret})
    return given


@pytest.mark.parametrize("secret", [None, ""])
def test_prod_without_the_service_account_is_refused_and_nothing_is_created(
    local_cloud: Any, secret: str | None
) -> None:
    cfn = local_cloud.client("cloudformation")
    name = unique("lc-prod")
    with pytest.raises(ClientError) as refused:
        cfn.create_stack(
            StackName=name,
            TemplateBody=json.dumps(rules_template()),
            Parameters=parameters("prod", secret),
        )
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert (
        "prod needs FirebaseServiceAccountSecretArn" in refused.value.response["Error"]["Message"]
    )
    with pytest.raises(ClientError, match="does not exist"):
        cfn.describe_stacks(StackName=name)


@pytest.mark.parametrize(("stage", "secret"), [("prod", SECRET), ("dev", None)])
def test_prod_with_it_and_dev_without_it_deploy(
    local_cloud: Any, stage: str, secret: str | None
) -> None:
    stack = deploy_stack(local_cloud, rules_template(), Parameters=parameters(stage, secret))
    assert stack["StackStatus"] == "CREATE_COMPLETE"


def test_removing_the_service_account_from_prod_is_refused_and_changes_nothing(
    local_cloud: Any,
) -> None:
    cfn = local_cloud.client("cloudformation")
    stack = deploy_stack(local_cloud, rules_template(), Parameters=parameters("prod", SECRET))
    with pytest.raises(ClientError, match="prod needs FirebaseServiceAccountSecretArn"):
        cfn.update_stack(
            StackName=stack["StackName"],
            UsePreviousTemplate=True,
            Parameters=[
                {"ParameterKey": "Stage", "UsePreviousValue": True},
                {"ParameterKey": "FirebaseServiceAccountSecretArn", "ParameterValue": ""},
            ],
        )
    after = cfn.describe_stacks(StackName=stack["StackName"])["Stacks"][0]
    assert after["StackStatus"] == "CREATE_COMPLETE"
    values = {p["ParameterKey"]: p["ParameterValue"] for p in after["Parameters"]}
    assert values["FirebaseServiceAccountSecretArn"] == SECRET
