"""Offline packaging and SAM transform of the local cloud (no cloud needed)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from sandboxctl.localcloud import deploy

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def sam_template(tmp_path: Path, asl: str = '{"StartAt": "A", "States": {}}') -> Path:
    write(tmp_path / "code" / "handler.py", "def lambda_handler(event, context):\n    return 1\n")
    write(tmp_path / "code" / "__pycache__" / "handler.cpython-311.pyc", "junk")
    write(tmp_path / "machine.asl.json", asl)
    return write(
        tmp_path / "template.yaml",
        """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    CodeUri: code/
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: handler.lambda_handler
      Environment:
        Variables:
          NAME: !Ref AWS::StackName
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: machine.asl.json
      DefinitionSubstitutions:
        FunctionArn: !GetAtt Fn.Arn
""",
    )


def test_package_points_code_and_definitions_at_the_artifacts_bucket(tmp_path: Path) -> None:
    template = sam_template(tmp_path)
    packaged = deploy.package(deploy.load_template(template), tmp_path, "artifacts")
    code = packaged.template["Globals"]["Function"]["CodeUri"]
    assert code["Bucket"] == "artifacts" and code["Key"] in packaged.uploads
    assert packaged.code_dirs[code["Key"]] == (tmp_path / "code").resolve()
    names = zipfile.ZipFile(io.BytesIO(packaged.uploads[code["Key"]])).namelist()
    assert names == ["handler.py"]  # no bytecode caches in the package
    location = packaged.template["Resources"]["Machine"]["Properties"]["DefinitionUri"]
    assert json.loads(packaged.uploads[location["Key"]]) == {"StartAt": "A", "States": {}}
    # The files on disk are never rewritten.
    assert "CodeUri: code/" in template.read_text()


def test_zip_is_the_same_for_the_same_files(tmp_path: Path) -> None:
    sam_template(tmp_path)
    assert deploy.zip_directory(tmp_path / "code") == deploy.zip_directory(tmp_path / "code")


def test_transform_is_offline_and_produces_cloudformation(tmp_path: Path) -> None:
    packaged = deploy.package(deploy.load_template(sam_template(tmp_path)), tmp_path, "artifacts")
    transformed = deploy.transform(packaged.template, "us-east-1")
    types = {r["Type"] for r in transformed["Resources"].values()}
    assert "AWS::Lambda::Function" in types and "AWS::StepFunctions::StateMachine" in types
    machine = transformed["Resources"]["Machine"]["Properties"]
    assert machine["DefinitionS3Location"]["Bucket"] == "artifacts"
    assert "Transform" not in transformed


def test_the_real_template_packages_and_transforms(tmp_path: Path) -> None:
    template = deploy.load_template(ROOT / "template.yaml")
    packaged = deploy.package(template, ROOT, "artifacts")
    transformed = deploy.transform(packaged.template, "us-east-1")
    assert not any(
        r["Type"].startswith("AWS::Serverless::") for r in transformed["Resources"].values()
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("Resources: [", "not a valid template"),
        ("Outputs: {}\n", "needs a Resources section"),
    ],
)
def test_bad_templates_are_refused_clearly(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(deploy.TemplateError, match=message):
        deploy.load_template(write(tmp_path / "template.yaml", content))


def test_missing_code_directory_and_bad_asl_are_refused(tmp_path: Path) -> None:
    template = deploy.load_template(sam_template(tmp_path, asl="{not json"))
    with pytest.raises(deploy.TemplateError, match="is not valid JSON"):
        deploy.package(template, tmp_path, "artifacts")
    template["Globals"]["Function"]["CodeUri"] = "missing/"
    with pytest.raises(deploy.TemplateError, match="no such directory"):
        deploy.package(template, tmp_path, "artifacts")
