"""IAM enforcement in the local cloud: on for every request, evaluated as AWS evaluates it.

What a tenant-isolation claim rests on: a role reaches only what its policy names (S3 prefix,
table, function, bus, secret), conditions such as ``s3:prefix`` hold, permissions boundaries cap
roles, trust policies decide who may assume a role, and denials surface with AWS's error codes.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.integration.localcloud_support import error_code, make_role, trust, unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bucket(local_cloud: Any) -> str:
    name = unique("lc-iam")
    s3 = local_cloud.client("s3")
    s3.create_bucket(Bucket=name)
    for user in ("alice", "bob"):
        s3.put_object(Bucket=name, Key=f"users/{user}/data.csv", Body=b"x,y\n1,2\n")
    return name


def s3_as(local_cloud: Any, role_arn: str) -> Any:
    return local_cloud.session_for_role(role_arn).client("s3", endpoint_url=local_cloud.endpoint)


def denied(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return error_code(caught.value)


def test_unsigned_and_unknown_callers_are_rejected(local_cloud: Any) -> None:
    stranger = boto3.session.Session(
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="not-a-real-secret",
        region_name=local_cloud.region,
    )
    s3 = stranger.client("s3", endpoint_url=local_cloud.endpoint)
    assert denied(s3.list_buckets) == "InvalidAccessKeyId"
    dynamodb = stranger.client("dynamodb", endpoint_url=local_cloud.endpoint)
    assert denied(dynamodb.list_tables) == "UnrecognizedClientException"


def test_role_for_alice_reads_alice_only(local_cloud: Any, bucket: str) -> None:
    role = make_role(
        local_cloud,
        [
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/users/alice/*",
            }
        ],
    )
    s3 = s3_as(local_cloud, role)
    assert s3.get_object(Bucket=bucket, Key="users/alice/data.csv")["Body"].read() == b"x,y\n1,2\n"
    assert denied(s3.get_object, Bucket=bucket, Key="users/bob/data.csv") == "AccessDenied"
    assert denied(s3.list_objects_v2, Bucket=bucket) == "AccessDenied"
    assert (
        denied(s3.put_object, Bucket=bucket, Key="users/bob/data.csv", Body=b"overwritten")
        == "AccessDenied"
    )
    body = local_cloud.client("s3").get_object(Bucket=bucket, Key="users/bob/data.csv")["Body"]
    assert body.read() == b"x,y\n1,2\n"


def test_list_bucket_is_limited_by_the_s3_prefix_condition(local_cloud: Any, bucket: str) -> None:
    role = make_role(
        local_cloud,
        [
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": ["users/alice/", "users/alice/*"]}},
            }
        ],
    )
    s3 = s3_as(local_cloud, role)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="users/alice/")["Contents"]
    assert [o["Key"] for o in listed] == ["users/alice/data.csv"]
    assert denied(s3.list_objects_v2, Bucket=bucket, Prefix="users/bob/") == "AccessDenied"
    assert denied(s3.list_objects_v2, Bucket=bucket, Prefix="users/") == "AccessDenied"
    assert denied(s3.list_objects_v2, Bucket=bucket) == "AccessDenied"


def test_permissions_boundary_caps_a_broader_role_policy(local_cloud: Any, bucket: str) -> None:
    boundary = local_cloud.client("iam").create_policy(
        PolicyName=unique("lc-boundary"),
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{bucket}/users/alice/*",
                    }
                ],
            }
        ),
    )["Policy"]["Arn"]
    role = make_role(
        local_cloud,
        [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}],
        boundary=boundary,
    )
    s3 = s3_as(local_cloud, role)
    s3.get_object(Bucket=bucket, Key="users/alice/data.csv")
    assert denied(s3.get_object, Bucket=bucket, Key="users/bob/data.csv") == "AccessDenied"


def test_resource_scoped_policies_work_beyond_s3(local_cloud: Any) -> None:
    dynamodb = local_cloud.client("dynamodb")
    tables = [unique("lc-table") for _ in range(2)]
    for table in tables:
        dynamodb.create_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    role = make_role(
        local_cloud,
        [
            {
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem", "dynamodb:PutItem"],
                "Resource": f"arn:aws:dynamodb:us-east-1:123456789012:table/{tables[0]}",
            }
        ],
    )
    as_role = local_cloud.session_for_role(role).client(
        "dynamodb", endpoint_url=local_cloud.endpoint
    )
    as_role.put_item(TableName=tables[0], Item={"pk": {"S": "USER#alice"}})
    assert as_role.get_item(TableName=tables[0], Key={"pk": {"S": "USER#alice"}})["Item"]
    # Another table: denied, and reported with the JSON protocol's own error code.
    code = denied(as_role.get_item, TableName=tables[1], Key={"pk": {"S": "USER#alice"}})
    assert code == "AccessDeniedException"
    assert denied(as_role.delete_item, TableName=tables[0], Key={"pk": {"S": "x"}}) == (
        "AccessDeniedException"
    )


def test_lambda_invoke_and_get_are_authorized_per_function(local_cloud: Any) -> None:
    webhook = local_cloud.outputs["SignupWebhookFunctionName"]
    run_code = local_cloud.outputs["RunCodeFunctionName"]
    role = make_role(
        local_cloud,
        [
            {
                "Effect": "Allow",
                "Action": ["lambda:GetFunction", "lambda:InvokeFunction"],
                "Resource": f"arn:aws:lambda:us-east-1:123456789012:function:{webhook}",
            }
        ],
    )
    lam = local_cloud.session_for_role(role).client("lambda", endpoint_url=local_cloud.endpoint)
    # GET requests verify against their (empty) signed payload.
    assert lam.get_function(FunctionName=webhook)["Configuration"]["FunctionName"] == webhook
    assert denied(lam.get_function, FunctionName=run_code) == "AccessDeniedException"
    assert denied(lam.invoke, FunctionName=run_code, Payload=b"{}") == "AccessDeniedException"
    assert lam.invoke(FunctionName=webhook, Payload=b"{}")["StatusCode"] == 200


def test_trust_policies_decide_who_may_assume_a_role(local_cloud: Any) -> None:
    iam = local_cloud.client("iam")
    lambda_only = make_role(local_cloud, [])
    account_trust = iam.create_role(
        RoleName=unique("lc-acct"),
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    sts = local_cloud.client("sts")
    # The operator may not become a role that only Lambda may assume...
    assert denied(sts.assume_role, RoleArn=lambda_only, RoleSessionName="op") == "AccessDenied"
    # ...but may assume one that trusts its account (its own policy allows sts:AssumeRole).
    credentials = sts.assume_role(RoleArn=account_trust, RoleSessionName="op")["Credentials"]
    assert credentials["AccessKeyId"] != local_cloud.admin_credentials[0]
    # The Lambda service may assume the first; only Step Functions may assume a states role.
    assert local_cloud.session_for_role(lambda_only).get_credentials() is not None
    states_role = iam.create_role(
        RoleName=unique("lc-sfn"), AssumeRolePolicyDocument=trust("states.amazonaws.com")
    )["Role"]["Arn"]
    identity = (
        local_cloud.session_for_role(states_role)
        .client("sts", endpoint_url=local_cloud.endpoint)
        .get_caller_identity()
    )
    assert identity["Arn"].startswith("arn:aws:sts::123456789012:assumed-role/lc-sfn-")
    with pytest.raises(Exception, match=r"does not trust lambda\.amazonaws\.com"):
        local_cloud.session_for_role(states_role, service="lambda.amazonaws.com")


@pytest.mark.parametrize("passed_to", [None, "lambda.amazonaws.com"])
def test_handing_a_role_to_a_service_needs_pass_role_for_that_service(
    local_cloud: Any, passed_to: str | None
) -> None:
    target = make_role(local_cloud, [], service="cloudformation.amazonaws.com")
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": "cloudformation:CreateStack", "Resource": "*"}
    ]
    if passed_to:
        statements.append(
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": target,
                "Condition": {"StringEquals": {"iam:PassedToService": passed_to}},
            }
        )
    caller = make_role(local_cloud, statements)
    cfn = local_cloud.session_for_role(caller).client(
        "cloudformation", endpoint_url=local_cloud.endpoint
    )
    template = json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})
    with pytest.raises(ClientError, match="iam:PassRole") as caught:
        cfn.create_stack(StackName=unique("lc-pass"), TemplateBody=template, RoleARN=target)
    assert error_code(caught.value) == "AccessDenied"
    # Without handing over a role, the same principal may create the stack.
    assert cfn.create_stack(StackName=unique("lc-pass"), TemplateBody=template)["StackId"]


def test_pass_role_for_the_right_service_is_allowed(local_cloud: Any) -> None:
    target = make_role(local_cloud, [], service="cloudformation.amazonaws.com")
    caller = make_role(
        local_cloud,
        [
            {"Effect": "Allow", "Action": "cloudformation:CreateStack", "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": target,
                "Condition": {
                    "StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}
                },
            },
        ],
    )
    cfn = local_cloud.session_for_role(caller).client(
        "cloudformation", endpoint_url=local_cloud.endpoint
    )
    template = json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})
    assert cfn.create_stack(StackName=unique("lc-pass"), TemplateBody=template, RoleARN=target)[
        "StackId"
    ]


def test_delete_objects_deletes_the_permitted_keys_and_lists_only_the_denied_ones(
    local_cloud: Any,
) -> None:
    name = unique("lc-multi")
    admin = local_cloud.client("s3")
    admin.create_bucket(Bucket=name)
    keys = ["users/alice/1.csv", "users/alice/2.csv", "users/bob/1.csv"]
    for key in keys:
        admin.put_object(Bucket=name, Key=key, Body=b"a\n1\n")
    role = make_role(
        local_cloud,
        [
            {
                "Effect": "Allow",
                "Action": "s3:DeleteObject",
                "Resource": f"arn:aws:s3:::{name}/users/alice/*",
            }
        ],
    )

    answer = s3_as(local_cloud, role).delete_objects(
        Bucket=name, Delete={"Objects": [{"Key": k} for k in keys]}
    )

    assert sorted(d["Key"] for d in answer.get("Deleted", [])) == keys[:2]
    assert [(e["Key"], e["Code"]) for e in answer.get("Errors", [])] == [
        ("users/bob/1.csv", "AccessDenied")
    ]
    left = [o["Key"] for o in admin.list_objects_v2(Bucket=name).get("Contents", [])]
    assert left == ["users/bob/1.csv"]
