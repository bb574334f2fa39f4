"""CloudFormation creates Secrets Manager secrets, generated values included.

AWS behaviour restored: ``AWS::SecretsManager::Secret`` creates the secret (``Ref`` is its ARN,
``GetAtt Id`` too), with ``SecretString``, or a value generated from ``GenerateSecretString``
(``SecretStringTemplate`` + ``GenerateStringKey`` puts the random password under that key of the
JSON template; otherwise the password is the whole string), honouring the length and exclusion
settings; deleting the stack deletes the secret.

moto 5.2.5 has the Secrets Manager backend but no CloudFormation model for it: the secret is
skipped and every ``Ref`` to it resolves to nothing. Hook: a new ``CloudFormationModel``
subclass, registered by clearing ``moto.cloudformation.parsing``'s model caches.
"""

from __future__ import annotations

import json
from typing import Any

from moto.core.common_models import CloudFormationModel

from sandboxctl.localcloud.fixes import FidelityCheckError


def _backend(account_id: str, region_name: str) -> Any:
    from moto.secretsmanager.models import secretsmanager_backends

    return secretsmanager_backends[account_id][region_name]


def generated_secret_string(backend: Any, spec: dict[str, Any]) -> str:
    """The value GenerateSecretString describes."""
    password = json.loads(
        backend.get_random_password(
            password_length=int(spec.get("PasswordLength", 32)),
            exclude_characters=spec.get("ExcludeCharacters", ""),
            exclude_numbers=bool(spec.get("ExcludeNumbers", False)),
            exclude_punctuation=bool(spec.get("ExcludePunctuation", False)),
            exclude_uppercase=bool(spec.get("ExcludeUppercase", False)),
            exclude_lowercase=bool(spec.get("ExcludeLowercase", False)),
            include_space=bool(spec.get("IncludeSpace", False)),
            require_each_included_type=bool(spec.get("RequireEachIncludedType", True)),
        )
    )["RandomPassword"]
    template, key = spec.get("SecretStringTemplate"), spec.get("GenerateStringKey")
    if template is None and key is None:
        return str(password)
    if template is None or key is None:
        raise ValueError(
            "GenerateSecretString needs both SecretStringTemplate and GenerateStringKey"
        )
    document = json.loads(template)
    document[key] = password
    return json.dumps(document)


class Secret(CloudFormationModel):
    """AWS::SecretsManager::Secret."""

    def __init__(self, arn: str, name: str) -> None:
        self.arn = arn
        self.name = name

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SecretsManager::Secret"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @property
    def physical_resource_id(self) -> str:
        return self.arn

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Id"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        if attribute_name == "Id":
            return self.arn
        raise UnformattedGetAttTemplateException()

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Secret:
        properties = cloudformation_json.get("Properties", {})
        backend = _backend(account_id, region_name)
        if "SecretString" in properties:
            value = properties["SecretString"]
        else:
            value = generated_secret_string(backend, properties.get("GenerateSecretString") or {})
        created = json.loads(
            backend.create_secret(
                name=resource_name,
                secret_string=value,
                secret_binary=None,
                description=properties.get("Description"),
                tags=properties.get("Tags") or [],
                kms_key_id=properties.get("KmsKeyId"),
                client_request_token=None,
                replica_regions=[],
                force_overwrite=False,
            )
        )
        return cls(created["ARN"], created["Name"])

    @classmethod
    def delete_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        _backend(account_id, region_name).delete_secret(
            secret_id=resource_name,
            recovery_window_in_days=None,
            force_delete_without_recovery=True,
        )


def check() -> None:
    import inspect

    from moto.secretsmanager.models import SecretsManagerBackend

    for method, params in (
        ("create_secret", {"name", "secret_string", "tags", "kms_key_id", "replica_regions"}),
        ("get_random_password", {"password_length", "exclude_punctuation"}),
        ("delete_secret", {"secret_id", "force_delete_without_recovery"}),
    ):
        found = set(inspect.signature(getattr(SecretsManagerBackend, method)).parameters)
        if not params <= found:
            raise FidelityCheckError(f"SecretsManagerBackend.{method} lost {params - found}")


def apply() -> None:
    from moto.cloudformation import parsing

    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()
