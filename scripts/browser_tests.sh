#!/usr/bin/env bash
# The JS runtime's end-to-end tests in headless Chromium: compiles a few
# real models (three light CNNs and the BERT-style encoder) into bundles,
# then runs runtime/js/e2e/browser.test.mjs, which loads them in the page
# through the runtime copy in each bundle and compares every output with
# onnxruntime's. Needs /usr/bin/chromium (`.ci/run` installs it) and
# the models prepared by scripts/setup.sh.
#
#   bash scripts/browser_tests.sh [WPC_BINARY]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${WPC_CACHE:-$HOME/.cache}"
models="$cache/wpc-models"
wpc="${1:-}"
if [ -z "$wpc" ]; then
    cargo build -q --manifest-path "$root/Cargo.toml" --bin wpc
    wpc="${CARGO_TARGET_DIR:-$root/target}/debug/wpc"
fi
(cd "$root/runtime/js" && npm ci --no-audit --no-fund --loglevel=error)
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
cases=(light_squeezenet light_resnet50 light_inception_v1 bert_encoder)
for name in "${cases[@]}"; do
    "$wpc" compile "$models/$name/model.onnx" --target chrome -o "$out/$name.wpc" >/dev/null
done
python3 - "$models/manifest.json" "$out/cases.json" "${cases[@]}" <<'PY'
import json, sys
manifest, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
cases = [c for c in json.load(open(manifest))["cases"] if c["name"] in names]
json.dump([{k: c[k] for k in ("name", "inputs", "outputs")} for c in cases], open(out, "w"))
PY
cd "$root/runtime/js/e2e"
WPC_E2E_BUNDLES="$out" WPC_MODELS_DIR="$models" node --test browser.test.mjs
