#!/usr/bin/env bash
# The main job on a small real model, from a fresh machine: set up, then
# inspect and run the Silero VAD model (shipped in the silero-vad PyPI
# package) on one seeded 32 ms chunk of audio, and compare with onnxruntime.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${WPC_CACHE:-$HOME/.cache}"
cd "$root"
bash scripts/setup.sh
model="$cache/wpc-models/silero_vad_16k_op15"
cargo run --quiet --bin wpc -- inspect "$model/model.onnx"
out="$(mktemp -d)/out"
cargo run --quiet --bin wpc -- run "$model/model.onnx" \
    --input "input=$model/input_0.npy" --input "state=$model/input_1.npy" --input "sr=$model/input_2.npy" \
    --output-dir "$out"
"$cache/wpc-venv/bin/python" - "$model" "$out" <<'PY'
import sys, numpy as np
model, out = sys.argv[1:]
for name, ref in (("output", "output_0.npy"), ("stateN", "output_1.npy")):
    got, want = np.load(f"{out}/{name}.npy"), np.load(f"{model}/{ref}")
    print(f"{name}: wpc {got.ravel()[:3]} vs onnxruntime {want.ravel()[:3]}; max abs error {np.abs(got - want).max():.2e}")
PY
