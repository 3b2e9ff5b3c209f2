#!/usr/bin/env bash
# The main job on a small real model, from a fresh machine: set up, compile
# the Silero VAD model (shipped in the silero-vad PyPI package) into a
# WebGPU bundle for Safari, run the bundle through wgpu (lavapipe without a
# GPU) on one seeded 32 ms chunk of audio, and compare with onnxruntime.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${WPC_CACHE:-$HOME/.cache}"
cd "$root"
bash scripts/setup.sh
model="$cache/wpc-models/silero_vad_16k_op15"
work="$(mktemp -d)"
cargo run --quiet --bin wpc -- inspect "$model/model.onnx"
# The sample rate steers the graph (an If on sr), so it is fixed at compile time.
cargo run --quiet --bin wpc -- compile "$model/model.onnx" --target safari \
    --input-shape input=1x512 --input-shape state=2x1x128 --freeze "sr=$model/input_2.npy" \
    -o "$work/silero.wpc"
ls "$work/silero.wpc"
cargo run --quiet --bin wpc -- run "$work/silero.wpc" --backend webgpu \
    --input "input=$model/input_0.npy" --input "state=$model/input_1.npy" \
    --output-dir "$work/out" 2> >(grep -v XDG_RUNTIME_DIR >&2)
"$cache/wpc-venv/bin/python" - "$model" "$work/out" <<'PY'
import sys, numpy as np
model, out = sys.argv[1:]
for name, ref in (("output", "output_0.npy"), ("stateN", "output_1.npy")):
    got, want = np.load(f"{out}/{name}.npy"), np.load(f"{model}/{ref}")
    print(f"{name}: wpc (WebGPU) {got.ravel()[:3]} vs onnxruntime {want.ravel()[:3]}; max abs error {np.abs(got - want).max():.2e}")
PY
