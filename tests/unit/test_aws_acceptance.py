"""What AWS itself would refuse on the first deploy: checks on the workflow, samconfig and template.

Each test names the AWS behaviour it guards against; they are static because the thing they
check (a GitHub runner, a CloudWatch alarm delivering to SNS) has no local equivalent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from samtranslator.yaml_helper import yaml_parse

from tests.unit.sfn_harness import ROOT

PUSH_IMAGE = ROOT / ".ci" / "push-image"
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def template() -> dict[str, Any]:
    return yaml_parse((ROOT / "template.yaml").read_text())


def deploy_workflow() -> dict[str, Any]:
    return yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())


def steps() -> list[dict[str, Any]]:
    job = deploy_workflow()["jobs"]["deploy"]
    return list(job["steps"])


# ---------------------------------------------------------------- 2: prod deploys from CI


def test_ci_deploy_does_not_wait_at_the_change_set_prompt() -> None:
    samconfig = tomllib.loads((ROOT / "samconfig.toml").read_text())
    # Humans deploying prod by hand keep the prompt ...
    assert samconfig["prod"]["deploy"]["parameters"]["confirm_changeset"] is True
    # ... CI passes --no-confirm-changeset through make deploy, which hands it to sam deploy.
    runs = [s["run"] for s in steps() if "make deploy" in s.get("run", "")]
    assert runs and all("SAM_DEPLOY_FLAGS=--no-confirm-changeset" in r for r in runs), runs
    makefile = (ROOT / "Makefile").read_text()
    assert "$(SAM) deploy --config-env $(ENV) $(SAM_DEPLOY_FLAGS)" in makefile


def test_deploy_job_is_gated_by_the_github_environment_of_the_stage() -> None:
    workflow = deploy_workflow()
    job = workflow["jobs"]["deploy"]
    assert job["environment"] == "${{ inputs.environment || 'dev' }}"
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean true.
    triggers: Any = workflow.get("on") or workflow.get(True)  # type: ignore[call-overload]
    assert "prod" in triggers["workflow_dispatch"]["inputs"]["environment"]["options"]
    # A push to main only ever deploys dev; prod is a manual dispatch, held for its reviewers.
    assert job["env"]["DEPLOY_ENV"] == "${{ inputs.environment || 'dev' }}"


def test_ci_has_the_functions_runtime_for_sam_build() -> None:
    runtime = template()["Globals"]["Function"]["Runtime"]
    setup = next(s for s in steps() if s.get("uses", "").startswith("actions/setup-python@"))
    versions = str(setup["with"]["python-version"]).split()
    assert runtime.removeprefix("python") in versions, (runtime, versions)


# ---------------------------------------------------------------- 1: the image Lambda accepts


def test_image_is_built_for_arm64_with_emulation_and_without_attestations() -> None:
    uses = [s.get("uses", "").split("@")[0] for s in steps()]
    runs_on = deploy_workflow()["jobs"]["deploy"]["runs-on"]
    assert "arm" in runs_on or {"docker/setup-qemu-action", "docker/setup-buildx-action"} <= set(
        uses
    ), (runs_on, uses)
    functions = template()["Globals"]["Function"]["Architectures"]
    assert functions == ["arm64"]
    script = PUSH_IMAGE.read_text()
    for flag in ('--platform "$platform"', "--provenance=false", "--sbom=false"):
        assert flag in script
    assert "platform=linux/arm64" in script
    image_step = next(s for s in steps() if s.get("id") == "image")
    assert ".ci/push-image" in image_step["run"]
    assert "docker push" not in image_step["run"] and "docker build " not in image_step["run"]


class FakeCloud:
    """`aws` and `docker` on PATH that record calls and answer like ECR does."""

    def __init__(self, tmp: Path, *, existing: str | None, pushed_media_type: str) -> None:
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.log = tmp / "calls.log"
        self.state = tmp / "ecr"
        if existing:
            self.state.write_text(existing)
        (self.bin / "aws").write_text(
            "#!/usr/bin/env bash\n"
            f'echo "aws $*" >> "{self.log}"\n'
            f'if [[ -s "{self.state}" ]]; then cat "{self.state}"; else echo None; fi\n'
        )
        (self.bin / "docker").write_text(
            "#!/usr/bin/env bash\n"
            f'echo "docker $*" >> "{self.log}"\n'
            f'echo "sha256:{"b" * 64} {pushed_media_type}" > "{self.state}"\n'
        )
        for tool in ("aws", "docker"):
            (self.bin / tool).chmod(0o755)

    def run(self) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}"}
        return subprocess.run(
            [str(PUSH_IMAGE), "123456789012.dkr.ecr.us-east-1.amazonaws.com/sbx", "abc123"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def test_push_builds_one_platform_and_prints_the_digest(tmp_path: Path) -> None:
    cloud = FakeCloud(tmp_path, existing=None, pushed_media_type=MANIFEST)
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sha256:" + "b" * 64
    builds = [c for c in cloud.calls() if c.startswith("docker buildx build")]
    assert len(builds) == 1
    assert "--platform linux/arm64" in builds[0] and "--push" in builds[0]
    assert "--provenance=false" in builds[0] and "--sbom=false" in builds[0]


def test_push_fails_when_ecr_holds_an_image_index(tmp_path: Path) -> None:
    """What Lambda rejects: "image manifest ... media type is not supported"."""
    cloud = FakeCloud(tmp_path, existing=None, pushed_media_type=INDEX)
    result = cloud.run()
    assert result.returncode == 1
    assert INDEX in result.stderr and "single-platform" in result.stderr
    assert result.stdout == ""


# ---------------------------------------------------------------- 5: re-running a deploy


def test_rerun_for_a_pushed_commit_reuses_the_image(tmp_path: Path) -> None:
    """Immutable tags: pushing the commit's tag again is ImageTagAlreadyExists on AWS."""
    cloud = FakeCloud(tmp_path, existing=f"sha256:{'a' * 64} {MANIFEST}", pushed_media_type=INDEX)
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sha256:" + "a" * 64
    assert not [c for c in cloud.calls() if c.startswith("docker")], cloud.calls()
    assert "already pushed" in result.stderr


def test_rerun_still_refuses_an_index_pushed_earlier(tmp_path: Path) -> None:
    cloud = FakeCloud(tmp_path, existing=f"sha256:{'a' * 64} {INDEX}", pushed_media_type=MANIFEST)
    result = cloud.run()
    assert result.returncode == 1 and INDEX in result.stderr


def test_build_tags_stay_immutable_and_only_the_live_tag_moves() -> None:
    # A re-run must find its commit tag where it left it; the rollout moves `live` (issue 11).
    repository = template()["Resources"]["SandboxRepository"]["Properties"]
    assert repository["ImageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert repository["ImageTagMutabilityExclusionFilters"] == [
        {
            "ImageTagMutabilityExclusionFilterType": "WILDCARD",
            "ImageTagMutabilityExclusionFilterValue": "live",
        }
    ]


# ---------------------------------------------------------------- 3: alarms reach the topic


def test_alarm_topic_key_lets_cloudwatch_publish() -> None:
    resources = template()["Resources"]
    key_id = resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"]
    # alias/aws/sns: an AWS-managed key whose policy CloudWatch is not in; alarms never arrive.
    assert not (isinstance(key_id, str) and key_id.startswith("alias/aws/")), key_id
    assert isinstance(key_id, dict) and "Fn::GetAtt" in key_id, key_id
    key = resources[key_id["Fn::GetAtt"][0]]
    assert key["Type"] == "AWS::KMS::Key"
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [
        s
        for s in statements
        if s["Effect"] == "Allow" and s["Principal"].get("Service") == "cloudwatch.amazonaws.com"
    ]
    assert cloudwatch, statements
    actions = {a for s in cloudwatch for a in s["Action"]}
    assert {"kms:Decrypt", "kms:GenerateDataKey"} <= actions
    # The account keeps control of its key (no lockout), without a kms:* wildcard.
    admin = [s for s in statements if "AWS" in s["Principal"]]
    assert admin and "kms:PutKeyPolicy" in admin[0]["Action"]
    assert all("*" not in a for s in statements for a in s["Action"])
    assert key["Properties"]["EnableKeyRotation"] is True


@pytest.mark.parametrize(
    "alarm",
    sorted(k for k, v in template()["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"),
)
def test_every_alarm_notifies_the_encrypted_topic(alarm: str) -> None:
    properties = template()["Resources"][alarm]["Properties"]
    assert {"Ref": "AlarmTopic"} in properties["AlarmActions"]


# ---------------------------------------------------------------- README: make build's runtime


def test_make_build_without_python312_says_what_to_install(tmp_path: Path) -> None:
    """Instead of SAM's "Binary validation failed for python"."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "make", "env", "sh"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run(
        ["make", "-s", "-o", ".tools/sam/.installed", "build"],
        cwd=ROOT,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "needs python3.12" in result.stderr
    assert "SAM_BUILD_FLAGS=--use-container" in result.stderr
