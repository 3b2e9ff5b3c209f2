#!/usr/bin/env bash
# The quantized-kernel benchmark on the real all-MiniLM-L6-v2 weights:
# wpc's wasm-simd variant with 4-bit weights (`--weights int4`, groups of
# 32) against npm onnxruntime-web's wasm backend (1 thread, SIMD) running
# the same model quantized by onnxruntime's own MatMulNBits quantizer
# (4 bits, blocks of 32, embedding tables too, as on ours), both in this
# machine's Node, interleaved run by
# run (scripts/bench/bench.mjs); the float32 model on both as the
# baseline. One sentence batch of 1 x SEQ tokens. Prints medians and the
# median of per-round ratios. Run from anywhere:
#
#   bash scripts/bench_quant.sh [RUNS] [SEQ]     (default 20 timed runs, 128 tokens)
#   WPC=target/debug/wpc bash scripts/bench_quant.sh   (skip the release build)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${1:-20}"
seq="${2:-128}"
source "$root/scripts/bench/prepare.sh"
work="$cache/wpc-bench/quant"
mkdir -p "$work"
[ -f "$work/minilm.onnx" ] || "$py" "$root/scripts/minilm.py" export "$work" >/dev/null
"$py" - "$root" "$work" "$seq" <<'PY'
import logging, os, sys
import numpy as np
logging.disable(logging.INFO)
root, work, seq = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, os.path.join(root, "scripts"))
from setup_models import ort_quantized

q4 = os.path.join(work, "minilm_ort_q4_tables.onnx")
if not os.path.exists(q4):
    ort_quantized(os.path.join(work, "minilm.onnx"), q4, bits=4, symmetric=False, gather=True)
# [CLS] tokens [SEP]: the values do not change the work done.
ids = np.random.default_rng(0).integers(1000, 30000, size=(1, seq), dtype=np.int64)
ids[0, 0], ids[0, -1] = 101, 102
np.save(os.path.join(work, "input_ids.npy"), ids)
np.save(os.path.join(work, "attention_mask.npy"), np.ones_like(ids))
np.save(os.path.join(work, "token_type_ids.npy"), np.zeros_like(ids))
PY
inputs=()
shapes=()
for name in input_ids attention_mask token_type_ids; do
    inputs+=("$name=$work/$name.npy")
    shapes+=(--input-shape "$name=1x$seq")
done
"$wpc" compile "$work/minilm.onnx" --target chrome -o "$work/fp32.wpc" --force "${shapes[@]}" >/dev/null
"$wpc" compile "$work/minilm.onnx" --target chrome -o "$work/int4.wpc" --force --weights int4 --group 32 "${shapes[@]}" >/dev/null
results="$work/results.jsonl"
node "$root/scripts/bench/bench.mjs" "$runs" "minilm fp32" "$work/minilm.onnx" "fp32:$work/fp32.wpc" "${inputs[@]}" \
    -- "minilm 4-bit" "$work/minilm_ort_q4_tables.onnx" "int4:$work/int4.wpc" "${inputs[@]}" 2>/dev/null >"$results"
"$py" - "$results" "$work" <<'PY'
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
work = sys.argv[2]
size = lambda p: os.path.getsize(p) if os.path.isfile(p) else sum(
    os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(p) for f in fs)
print(f"{'model':<14} {'wpc wasm-simd':>14} {'ort-web':>10} {'wpc/ort-web':>12} {'wpc min..max':>14}")
for m in dict.fromkeys(r["model"] for r in rows):
    ours = next(r for r in rows if r["model"] == m and r.get("engine", "").startswith("wpc"))
    peer = next(r for r in rows if r["model"] == m and r.get("engine", "").startswith("onnxruntime"))
    ratio = next(r for r in rows if r["model"] == m and "ratio" in r)
    print(f"{m:<14} {ours['median_ms']:>11.1f} ms {peer['median_ms']:>7.1f} ms {ratio['median']:>12.2f} "
          f"{ratio['min']:>6.2f}..{ratio['max']:.2f}")
print(f"weights: ort 4-bit model {size(os.path.join(work, 'minilm_ort_q4_tables.onnx')) / 1e6:.1f} MB, "
      f"wpc int4 bundle {size(os.path.join(work, 'int4.wpc')) / 1e6:.1f} MB (all variants)")
print("medians of timed runs after 3 warm-up runs, engines interleaved; ratio = median of per-round")
print("ratios (min..max over rounds); both engines single-threaded; a ratio < 1 means wpc is faster")
PY
