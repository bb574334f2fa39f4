"""Package and transform the SAM template offline, the way `sam package` + `sam deploy` would.

`sam package` zips every local `CodeUri` and uploads every local `DefinitionUri` to an artifacts
bucket, rewriting the template to point at S3; CloudFormation then runs the SAM transform. Here
the same happens against the local cloud: code and ASL go to a local artifacts bucket, and
aws-sam-translator transforms the template in-process (no AWS credentials, no network). The ASL
files and the template on disk are never modified.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SERVERLESS_STATE_MACHINE = "AWS::Serverless::StateMachine"
# Files that never belong in a Lambda deployment package.
_SKIPPED_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


class TemplateError(ValueError):
    """The SAM template cannot be packaged or transformed."""


@dataclass
class PackagedTemplate:
    """The transformed CloudFormation template and what was uploaded for it."""

    template: dict[str, Any]
    # S3 key of each uploaded code package -> the local directory it was built from.
    code_dirs: dict[str, Path] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)


def load_template(path: Path) -> dict[str, Any]:
    """Parse a SAM/CloudFormation YAML or JSON template, short-form intrinsics included."""
    try:
        parsed = yaml_parse(path.read_text(encoding="utf-8"))
    except Exception as exc:  # yaml and json raise unrelated types; both mean "bad file"
        raise TemplateError(f"{path}: not a valid template: {exc}") from exc
    if not isinstance(parsed, dict) or "Resources" not in parsed:
        raise TemplateError(f"{path}: a template needs a Resources section")
    return parsed


def zip_directory(directory: Path) -> bytes:
    """A deterministic zip of a code directory (same bytes for the same files)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            if path.is_dir() or _SKIPPED_PARTS.intersection(relative.parts):
                continue
            if path.suffix == ".pyc":
                continue
            info = zipfile.ZipInfo(str(relative), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _is_local(uri: Any) -> bool:
    return isinstance(uri, str) and not uri.startswith("s3://")


def package(template: dict[str, Any], template_dir: Path, bucket: str) -> PackagedTemplate:
    """Rewrite local CodeUri/DefinitionUri to S3 locations; return what must be uploaded."""
    packaged = PackagedTemplate(template=copy.deepcopy(template))
    tpl = packaged.template

    def code_location(uri: str) -> dict[str, str]:
        directory = (template_dir / uri).resolve()
        if not directory.is_dir():
            raise TemplateError(f"CodeUri {uri!r}: no such directory {directory}")
        body = zip_directory(directory)
        key = f"code/{hashlib.sha256(body).hexdigest()}.zip"
        packaged.uploads[key] = body
        packaged.code_dirs[key] = directory
        return {"Bucket": bucket, "Key": key}

    function_globals = tpl.get("Globals", {}).get("Function", {})
    if _is_local(function_globals.get("CodeUri")):
        function_globals["CodeUri"] = code_location(function_globals["CodeUri"])

    for logical_id, resource in tpl.get("Resources", {}).items():
        properties = resource.get("Properties") or {}
        if resource.get("Type") == SERVERLESS_FUNCTION and _is_local(properties.get("CodeUri")):
            properties["CodeUri"] = code_location(properties["CodeUri"])
        if resource.get("Type") == SERVERLESS_STATE_MACHINE and _is_local(
            properties.get("DefinitionUri")
        ):
            path = (template_dir / properties["DefinitionUri"]).resolve()
            if not path.is_file():
                raise TemplateError(f"{logical_id}: DefinitionUri {path} does not exist")
            body = path.read_bytes()
            try:
                json.loads(body)
            except ValueError as exc:
                raise TemplateError(f"{logical_id}: {path} is not valid JSON: {exc}") from exc
            key = f"statemachines/{hashlib.sha256(body).hexdigest()}/{path.name}"
            packaged.uploads[key] = body
            properties["DefinitionUri"] = {"Bucket": bucket, "Key": key}
    return packaged


def transform(
    template: dict[str, Any], region: str, parameters: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run the SAM transform offline; managed-policy names resolve to their well-known ARNs.

    As CloudFormation does, the transform sees the stack's parameter values (lists split), since
    SAM inlines parameter references in some properties (e.g. an HTTP API's CORS origins).
    """
    declared = template.get("Parameters", {})
    values: dict[str, Any] = {}
    for name, value in (parameters or {}).items():
        kind = str(declared.get(name, {}).get("Type", "String"))
        values[name] = (
            value.split(",") if kind == "CommaDelimitedList" or kind.startswith("List<") else value
        )
    if "Transform" not in template:
        return template
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    try:
        result: dict[str, Any] = translator.translate(
            copy.deepcopy(template), parameter_values=values, get_managed_policy_map=dict
        )
    except Exception as exc:  # samtranslator raises InvalidDocumentException & friends
        raise TemplateError(f"SAM transform failed: {exc}") from exc
    return result
