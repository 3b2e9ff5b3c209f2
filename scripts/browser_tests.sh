#!/usr/bin/env bash
# The JS runtime's end-to-end tests in headless Chromium: compiles a few
# real models (three light CNNs and the BERT-style encoder) into bundles,
# and each dynamic group of the real-model set (the BERT export with a
# dynamic sequence, the CNN with a dynamic batch and image size, five
# Silero VAD forms, a detector's post-processing whose sizes the data
# decides) into one bundle with its dims left to run time, then runs
# runtime/js/e2e/browser.test.mjs, which loads them in the page through
# the runtime copy in each bundle and compares every output with
# onnxruntime's, each dynamic bundle at every size of its group. Needs /usr/bin/chromium (`.ci/run` installs it) and
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
python3 - "$models/manifest.json" "$out" "$wpc" "${cases[@]}" <<'PY'
import json, os, subprocess, sys
manifest, out, wpc, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
models = os.path.dirname(manifest)
listing = json.load(open(manifest))
every = {c["name"]: c for c in listing["cases"]}
def listed(cases):
    return [{k: c[k] for k in ("name", "inputs", "outputs")} for c in cases]
json.dump(listed([every[n] for n in names]), open(os.path.join(out, "cases.json"), "w"))
# Each dynamic group of the set as one bundle compiled with its dims
# left to run time (and its frozen inputs fixed), and the cases it runs.
dynamic = []
for group in listing["dynamic"]:
    first = every[group["cases"][0]]
    bundle = f"dynamic_{first['name']}"
    args = [wpc, "compile", os.path.join(models, first["model"]), "--target", "chrome",
            "-o", os.path.join(out, f"{bundle}.wpc")]
    for dim, size in group["dims"].items():
        args += ["--dim", f"{dim}={size}"]
    for name in group.get("freeze", []):
        args += ["--freeze", f"{name}={os.path.join(models, first['name'], first['inputs'][name])}"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    dynamic.append({"bundle": bundle, "cases": listed([every[n] for n in group["cases"]])})
json.dump(dynamic, open(os.path.join(out, "dynamic.json"), "w"))
PY
cd "$root/runtime/js/e2e"
WPC_E2E_BUNDLES="$out" WPC_MODELS_DIR="$models" node --test browser.test.mjs
