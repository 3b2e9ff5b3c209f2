#!/usr/bin/env bash
# The JS runtime's end-to-end tests in headless Chromium: compiles a few
# real models (three light CNNs and the BERT-style encoder) into bundles,
# the BERT export with a dynamic sequence into one bundle for 1..128
# tokens (run at the set's two lengths), and a detector's post-processing
# into one bundle for 1..200 boxes (sizes the data decides: run at the
# set's three box counts),
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
"$wpc" compile "$models/bert_dynamic_s128/model.onnx" --target chrome --dim batch=1 \
    --dim sequence=1..128 -o "$out/bert_dynamic.wpc" >/dev/null
"$wpc" compile "$models/detect_postprocess_n64/model.onnx" --target chrome --dim num_boxes=1..200 \
    -o "$out/detect_postprocess.wpc" >/dev/null
python3 - "$models/manifest.json" "$out" "${cases[@]}" <<'PY'
import json, os, sys
manifest, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
every = json.load(open(manifest))["cases"]
def listed(cases):
    return [{k: c[k] for k in ("name", "inputs", "outputs")} for c in cases]
json.dump(listed([c for c in every if c["name"] in names]), open(os.path.join(out, "cases.json"), "w"))
# Each bundle compiled for dynamic sizes, and the cases it runs.
dynamic = [
    {"bundle": bundle, "cases": listed([c for c in every if c["name"].startswith(bundle + "_")])}
    for bundle in ("bert_dynamic", "detect_postprocess")
]
json.dump(dynamic, open(os.path.join(out, "dynamic.json"), "w"))
PY
cd "$root/runtime/js/e2e"
WPC_E2E_BUNDLES="$out" WPC_MODELS_DIR="$models" node --test browser.test.mjs
