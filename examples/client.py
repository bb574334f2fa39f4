"""A minimal sandbox-fleet client: upload a file, run pandas code on it, show the table and charts.

Only `requests` is needed. The steps are the ones docs/client.md describes:

    python examples/client.py --api-url "$API_URL" --token "$ID_TOKEN" \
        --file sales.csv --code 'df.groupby("region")["units"].sum()'

`--token` is the user's Firebase ID token (in an app: `await user.getIdToken()`; against the local
cloud: `sandboxctl local token UID`). Figures are written as PNG files to `--figures-dir`.
Exit status: 0 when the run's status is `ok`, 1 otherwise (the error is printed), 2 on bad use.
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
import os
import sys
import time
from pathlib import Path
from typing import Any

import requests

TYPES = {
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".parquet": "application/octet-stream",
}


class ApiError(Exception):
    pass


def call(api_url: str, token: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a JSON body with the token; retry 429/409 after Retry-After (at most 5 times)."""
    for _attempt in range(5):
        reply = requests.post(
            api_url.rstrip("/") + path,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=35,  # API Gateway gives up on the function after 30 s
        )
        if reply.status_code in (409, 429) and "retry-after" in reply.headers:
            time.sleep(float(reply.headers["retry-after"]))
            continue
        data: dict[str, Any] = reply.json()
        if reply.status_code != 200:
            problems = "; ".join(f"{e['field']}: {e['problem']}" for e in data.get("errors") or [])
            raise ApiError(f"HTTP {reply.status_code}: {data.get('message')} {problems}".strip())
        return data
    raise ApiError(f"{path}: still busy after 5 attempts")


def upload(api_url: str, token: str, path: Path, name: str) -> str:
    """Ask for a presigned PUT, then send the file's bytes to S3 directly."""
    data = path.read_bytes()
    content_type = TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    signed = call(
        api_url,
        token,
        "/datasets",
        {
            "name": name,
            "size": len(data),
            "content_type": content_type or "application/octet-stream",
        },
    )
    put = requests.put(signed["url"], data=data, headers=signed["headers"], timeout=300)
    if put.status_code != 200:
        raise ApiError(f"upload refused: HTTP {put.status_code} {put.text[:200]}")
    return str(signed["dataset"])


def table(result: Any, result_type: str) -> str:
    """The result as plain text: a DataFrame/Series as aligned columns, anything else as is."""
    if result_type == "dataframe":
        header = [""] + [str(c) for c in result["columns"]]
        rows = [
            [str(i)] + [str(v) for v in row]
            for i, row in zip(result["index"], result["data"], strict=True)
        ]
    elif result_type == "series":
        header = ["", str(result.get("name") or "")]
        rows = [[str(i), str(v)] for i, v in zip(result["index"], result["data"], strict=True)]
    else:
        return str(result)
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in [header, *rows]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--api-url", default=os.environ.get("API_URL"), help="HTTP API base URL (env API_URL)"
    )
    parser.add_argument(
        "--token", default=os.environ.get("ID_TOKEN"), help="Firebase ID token (env ID_TOKEN)"
    )
    parser.add_argument(
        "--file", type=Path, required=True, help="a .csv, .tsv, .parquet or .jsonl file"
    )
    parser.add_argument(
        "--code", required=True, help="pandas code; `df` is the file, last expression is the result"
    )
    parser.add_argument(
        "--figures-dir",
        type=Path,
        default=Path("figures"),
        help="where PNGs go (default ./figures)",
    )
    args = parser.parse_args(argv)
    if not args.api_url or not args.token:
        parser.error("--api-url and --token (or API_URL and ID_TOKEN) are required")

    try:
        dataset = upload(args.api_url, args.token, args.file, args.file.name)
        envelope = call(args.api_url, args.token, "/run", {"code": args.code, "dataset": dataset})
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if envelope["stdout"]:
        print(envelope["stdout"], end="" if envelope["stdout"].endswith("\n") else "\n")
    if envelope["status"] != "ok":
        error = envelope["error"] or {}
        print(
            f"run ended {envelope['status']}: {error.get('type')}: {error.get('message')}",
            file=sys.stderr,
        )
        return 1
    print(table(envelope["result"], envelope["result_type"]))
    args.figures_dir.mkdir(parents=True, exist_ok=True)
    for number, png in enumerate(envelope["figures"], start=1):
        target = args.figures_dir / f"figure-{number}.png"
        target.write_bytes(base64.b64decode(png))
        print(f"figure {number}: {target}")
    print(f"ran in {envelope['metrics']['wall_ms']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
