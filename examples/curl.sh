#!/usr/bin/env bash
# The client sequence with curl and jq (docs/client.md). Needs API_URL and ID_TOKEN set, and a
# CSV file as the first argument. Against the local cloud:
#   export API_URL=$(sandboxctl status --json | jq -r '.[] | select(.check=="http api") | .api_url')
#   export ID_TOKEN=$(sandboxctl local token alice)
#   examples/curl.sh sales.csv
set -euo pipefail
file=${1:?usage: examples/curl.sh FILE.csv}
name=$(basename "$file")
size=$(wc -c <"$file" | tr -d ' ')

# 1. Ask for an upload URL for this exact name, type and size.
upload=$(curl -sS --fail-with-body -X POST "$API_URL/datasets" \
  -H "Authorization: Bearer $ID_TOKEN" -H "Content-Type: application/json" \
  -d "{\"name\": \"$name\", \"content_type\": \"text/csv\", \"size\": $size}")

# 2. PUT the bytes straight to S3 with the headers it was signed for.
curl -sS --fail-with-body -X PUT "$(jq -r .url <<<"$upload")" \
  -H "Content-Type: $(jq -r '.headers["content-type"]' <<<"$upload")" \
  --data-binary "@$file" >/dev/null

# 3. Run code on it; the answer is the envelope (status, result, stdout, figures, error).
curl -sS --fail-with-body -X POST "$API_URL/run" \
  -H "Authorization: Bearer $ID_TOKEN" -H "Content-Type: application/json" \
  -d "$(jq -n --arg d "$name" --arg c 'df.describe()' '{dataset: $d, code: $c}')" |
  jq '{status, result_type, result, stdout, error, figures: (.figures | length)}'
