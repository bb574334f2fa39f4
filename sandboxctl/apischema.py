"""Generate the HTTP API's JSON Schemas, examples and sample events from the pydantic models.

`python -m sandboxctl.apischema` (`make schemas`) rewrites docs/schemas/ and the API samples in
events/; `--check` exits 1 when a checked-in file differs (tests/unit/test_api_schemas.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fleet.api_models import ApiErrorBody, DatasetUpload, RunEnvelope
from fleet.models import DatasetUploadRequest, RunRequest
from pydantic import BaseModel

from sandbox_runtime.envelope import make_envelope

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = Path("docs/schemas")
PROJECT = "demo-sandbox-fleet"

SCHEMAS: dict[str, type[BaseModel]] = {
    "run-request": RunRequest,
    "run-response": RunEnvelope,
    "datasets-request": DatasetUploadRequest,
    "datasets-response": DatasetUpload,
    "error": ApiErrorBody,
}

_METRICS = {"wall_ms": 41.7, "cpu_ms": 38.2, "peak_rss_mb": 182.4, "load_ms": 6.1, "cache": "hit"}
# Every field present, as the runtime builds them (sandbox_runtime.envelope.make_envelope).
_BASE: dict[str, Any] = {
    **make_envelope("ok", request_id="Jx3kqhY9IAMEbXw="),
    "metrics": _METRICS,
}
# One envelope per status, as the sandbox runtime writes them (checked against RunEnvelope).
RUN_EXAMPLES: dict[str, dict[str, Any]] = {
    "ok": {
        **_BASE,
        "status": "ok",
        "result": {
            "columns": ["region", "revenue"],
            "index": [0, 1],
            "data": [["north", 1250.5], ["south", 980.0]],
            "dtypes": ["str", "float64"],
            "index_dtype": "int64",
            "index_names": [None],
        },
        "result_type": "dataframe",
        "stdout": "400 orders\n",
        "figures": [
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
        ],
    },
    "error": {
        **_BASE,
        "status": "error",
        "error": {
            "type": "KeyError",
            "message": "'revenue'",
            "traceback": 'Traceback (most recent call last):\n  File "<user code>", line 1, in '
            "<module>\nKeyError: 'revenue'\n",
        },
    },
    "timeout": {
        **_BASE,
        "status": "timeout",
        "stdout": "step 1\n",
        "error": {
            "type": "Timeout",
            "message": "the code ran longer than 20 s and was stopped",
            "traceback": None,
        },
    },
    "memory": {
        **_BASE,
        "status": "memory",
        "error": {
            "type": "MemoryError",
            "message": "Unable to allocate 7.45 GiB for an array with shape (1000000000,) and "
            "data type float64 (the sandbox memory limit of 1024 MB was reached)",
            "traceback": 'Traceback (most recent call last):\n  File "<user code>", line 1, in '
            "<module>\nnumpy._core._exceptions._ArrayMemoryError: Unable to allocate 7.45 GiB\n",
        },
    },
    "limit": {
        **_BASE,
        "status": "limit",
        "error": {
            "type": "OutputLimit",
            "message": "the code wrote more than 16777216 bytes of output and was stopped",
            "traceback": None,
        },
    },
    "rejected": {
        **_BASE,
        "status": "rejected",
        "error": {
            "type": "RequestRejected",
            "message": "dataset 'sales-2025.csv' does not exist",
            "traceback": None,
        },
    },
}
RUN_REQUEST = {
    "code": 'summary = df.groupby("region", as_index=False)["revenue"].sum()\nsummary',
    "dataset": "sales.csv",
    "timeout_s": 20,
}
DATASETS_REQUEST = {"name": "sales.csv", "content_type": "text/csv", "size": 18432}


def http_event(route: str, body: dict[str, Any], uid: str = "alice") -> dict[str, Any]:
    """A payload-2.0 event as API Gateway sends it after the JWT authorizer (claims as strings)."""
    method, path = route.split(" ", 1)
    return {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "authorization": "Bearer <Firebase ID token>",
            "host": "abc123defg.execute-api.us-east-1.amazonaws.com",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123defg",
            "authorizer": {
                "jwt": {
                    "claims": {
                        "iss": f"https://securetoken.google.com/{PROJECT}",
                        "aud": PROJECT,
                        "sub": uid,
                        "user_id": uid,
                        "auth_time": "1769860800",
                        "iat": "1769860800",
                        "exp": "1769864400",
                        "firebase": "map[identities:map[] sign_in_provider:custom]",
                    },
                    "scopes": None,
                }
            },
            "domainName": "abc123defg.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123defg",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": "analytics-app",
            },
            "requestId": "JKJaXmPLvHcESHB=",
            "routeKey": route,
            "stage": "$default",
            "time": "31/Jan/2026:12:05:00 +0000",
            "timeEpoch": 1769861100000,
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def generated() -> dict[Path, str]:
    """Every generated file (relative to the project root) and its content."""
    files: dict[Path, str] = {}
    for name, model in SCHEMAS.items():
        schema = model.model_json_schema(
            mode="serialization" if "response" in name else "validation"
        )
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
        files[SCHEMA_DIR / f"{name}.schema.json"] = _dump(schema)
    for status, example in RUN_EXAMPLES.items():
        RunEnvelope.model_validate(example)
        files[SCHEMA_DIR / "examples" / f"run-{status}.json"] = _dump(example)
    RunRequest.model_validate(RUN_REQUEST)
    DatasetUploadRequest.model_validate(DATASETS_REQUEST)
    files[SCHEMA_DIR / "examples" / "run-request.json"] = _dump(RUN_REQUEST)
    files[SCHEMA_DIR / "examples" / "datasets-request.json"] = _dump(DATASETS_REQUEST)
    files[Path("events/run_code.json")] = _dump(http_event("POST /run", RUN_REQUEST))
    files[Path("events/datasets.json")] = _dump(http_event("POST /datasets", DATASETS_REQUEST))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandboxctl.apischema", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if any file is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="project root (default: here)")
    args = parser.parse_args(argv)
    stale = []
    for relative, content in generated().items():
        path = args.root / relative
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        stale.append(str(relative))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    if args.check and stale:
        print("stale (run `make schemas`): " + ", ".join(stale), file=sys.stderr)
        return 1
    for name in stale:
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
