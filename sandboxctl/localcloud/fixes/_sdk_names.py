"""Service names as the AWS SDK integrations of Step Functions spell them.

Step Functions runs aws-sdk tasks on the AWS SDK for Java v2, whose client names come from each
service's ``serviceId`` split on word boundaries and PascalCased (``DynamoDB`` → ``DynamoDb``,
``ACM PCA`` → ``AcmPca``, ``SFN`` → ``Sfn``). The task resource uses that name in lower case
(``aws-sdk:acmpca:…``) and errors use it as prefix (``AcmPca.ResourceNotFoundException``).
botocore ships the same ``serviceId`` for every service, so the table is derived, not typed in.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from pathlib import Path

import botocore
import botocore.session


def sdk_words(text: str) -> list[str]:
    """Split like the Java SDK v2 code generator (``splitOnWordBoundaries``)."""
    result = re.sub(r"[^A-Za-z0-9]+", " ", text)
    result = re.sub(r"([^a-z]{2,})v([0-9]+)", r"\1 v\2 ", result)
    result = re.sub(r"([^A-Z]{2,})V([0-9]+)", r"\1 V\2 ", result)
    result = " ".join(re.split(r"(?<=[a-z])(?=[A-Z](?:[a-zA-Z]|[0-9]))", result))
    result = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", result)
    result = re.sub(r"([0-9])([a-zA-Z])", r"\1 \2", result)
    return result.split()


def sdk_client_name(service_id: str) -> str:
    """``DynamoDB`` → ``DynamoDb``: each word capitalised, the rest lower case."""
    return "".join(word[:1].upper() + word[1:].lower() for word in sdk_words(service_id))


@functools.lru_cache(maxsize=1)
def sdk_services() -> dict[str, tuple[str, str]]:
    """aws-sdk resource name (lower case) → (PascalCase SDK name, botocore service name)."""
    # Loading ~450 service models takes seconds: derive once per botocore version, on disk.
    cache = Path(tempfile.gettempdir()) / f"sandbox-fleet-sdk-names-{botocore.__version__}.json"
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        return {k: (v[0], v[1]) for k, v in cached.items()}
    except (OSError, ValueError, TypeError, IndexError, AttributeError):
        pass
    session = botocore.session.get_session()
    table: dict[str, tuple[str, str]] = {}
    for boto_name in session.get_available_services():
        service_id = session.get_service_model(boto_name).service_id
        pascal = sdk_client_name(str(service_id))
        table.setdefault(pascal.lower(), (pascal, boto_name))
    staging = cache.with_name(f"{cache.name}.{os.getpid()}")
    try:
        staging.write_text(json.dumps(table), encoding="utf-8")
        staging.replace(cache)
    except OSError:
        staging.unlink(missing_ok=True)
    return table
