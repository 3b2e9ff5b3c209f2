#!/usr/bin/env bash
# The WebAssembly benchmark: wpc's wasm-simd variant, fused (the default)
# and unfused (--no-fuse), against npm onnxruntime-web (wasm backend,
# 1 thread, SIMD), all in this machine's Node and run interleaved, and
# native onnxruntime (Python, 1 thread) as the ceiling, on the same
# inputs: the light ResNet50, a Silero VAD model, the BERT-style encoder
# in both its forms, the MobileNetV3-style CNN, and the exported BERT
# quantized by onnxruntime (4-bit MatMulNBits; quantize_dynamic). Prints
# medians and the median of per-round ratios. Run from anywhere:
#
#   bash scripts/bench_wasm.sh [RUNS]      (default 10 timed runs, 3 warm-up)
#   WPC=target/debug/wpc bash scripts/bench_wasm.sh   (skip the release build)
#   CASES="bert_ort_q4 bert_ort_dynamic_u8" bash scripts/bench_wasm.sh   (only these)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${1:-10}"
source "$root/scripts/bench/prepare.sh"
work="$cache/wpc-bench"
mkdir -p "$work"
models="$cache/wpc-models"

# label | model | input name=file ...
cases=(
    "resnet50|$models/light_resnet50/model.onnx|gpu_0/data_0=$models/light_resnet50/input_0.npy"
    "silero_vad_16k|$models/silero_vad_16k_op15/model.onnx|input=$models/silero_vad_16k_op15/input_0.npy|state=$models/silero_vad_16k_op15/input_1.npy|sr=$models/silero_vad_16k_op15/input_2.npy"
    "bert_encoder|$models/bert_encoder/model.onnx|input_ids=$models/bert_encoder/input_0.npy"
    "bert_exported|$models/bert_exported/model.onnx|input_ids=$models/bert_exported/input_0.npy|attention_mask=$models/bert_exported/input_1.npy"
    "mobilenet_v3|$models/mobilenet_v3/model.onnx|input=$models/mobilenet_v3/input_0.npy"
    # The exported BERT quantized by onnxruntime's tools: 4-bit MatMulNBits
    # weights, and quantize_dynamic's uint8 MatMulInteger.
    "bert_ort_q4|$models/bert_ort_q4/model.onnx|input_ids=$models/bert_ort_q4/input_0.npy|attention_mask=$models/bert_ort_q4/input_1.npy"
    "bert_ort_dynamic_u8|$models/bert_ort_dynamic_u8/model.onnx|input_ids=$models/bert_ort_dynamic_u8/input_0.npy|attention_mask=$models/bert_ort_dynamic_u8/input_1.npy"
)
for label in ${CASES:-}; do
    printf '%s\n' "${cases[@]}" | grep -q "^$label|" || { echo "CASES: no case '$label'" >&2; exit 2; }
done
results="$work/results.jsonl"
: > "$results"
for c in "${cases[@]}"; do
    IFS='|' read -r label model rest <<<"$c"
    [[ -n "${CASES:-}" && " $CASES " != *" $label "* ]] && continue
    IFS='|' read -r -a inputs <<<"$rest"
    bundle="$work/$label.wpc"
    flags=()
    for spec in "${inputs[@]}"; do
        # Silero's sample rate steers an If: it is compiled in.
        [[ "$spec" == sr=* ]] && flags+=(--freeze "$spec")
    done
    # Everything else is compiled for the shapes of the benchmark's inputs.
    # (Every input goes to the peers; ours takes those its manifest lists.)
    for spec in "${inputs[@]}"; do
        [[ "$spec" == sr=* ]] && continue
        shape="$("$py" -c 'import numpy,sys; print("x".join(map(str, numpy.load(sys.argv[1]).shape)))' "${spec#*=}")"
        flags+=(--input-shape "${spec%%=*}=$shape")
    done
    if "$wpc" compile "$model" --target chrome -o "$bundle" --force "${flags[@]}" >"$work/$label.compile.txt" 2>&1 \
        && grep -q "wasm-simd:.*wasm (" "$work/$label.compile.txt" \
        && "$wpc" compile "$model" --target chrome -o "$work/$label-unfused.wpc" --force --no-fuse "${flags[@]}" >/dev/null 2>&1; then
        node "$root/scripts/bench/bench.mjs" "$runs" "$label" "$model" "fused:$bundle,unfused:$work/$label-unfused.wpc" "${inputs[@]}" 2>/dev/null >>"$results"
    else
        why="$(grep -m1 'wasm-simd' "$work/$label.compile.txt" | sed 's/^ *//' || tail -1 "$work/$label.compile.txt")"
        echo "{\"model\": \"$label\", \"engine\": \"wpc wasm-simd (Node)\", \"unsupported\": $(printf '%s' "$why" | "$py" -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))')}" >>"$results"
        node "$root/scripts/bench/bench.mjs" "$runs" "$label" "$model" "" "${inputs[@]}" 2>/dev/null >>"$results" || true
    fi
    "$py" "$root/scripts/bench/ort_native.py" "$runs" "$label" "$model" "${inputs[@]}" >>"$results"
done
"$py" - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
models = list(dict.fromkeys(r["model"] for r in rows))
get = lambda m, e: next((r for r in rows if r["model"] == m and r.get("engine", "").startswith(e)), None)
ratio = lambda m, r: next((x["median"] for x in rows if x["model"] == m and x.get("ratio", "").startswith(r)), None)
print(f"{'model':<16} {'wpc fused':>10} {'unfused':>10} {'ort-web':>10} {'ort native':>11} {'fused/ort-web':>14} {'fused/unfused':>14}")
for m in models:
    f, u = get(m, "wpc wasm-simd fused"), get(m, "wpc wasm-simd unfused")
    o, n = get(m, "onnxruntime-web"), get(m, "onnxruntime native")
    ms = lambda r: r.get("median_ms") if r else None
    fmt = lambda v: f"{v:.1f} ms" if v is not None else "-"
    fr = lambda v: f"{v:.2f}" if v is not None else "-"
    print(f"{m:<16} {fmt(ms(f)):>10} {fmt(ms(u)):>10} {fmt(ms(o)):>10} {fmt(ms(n)):>11} "
          f"{fr(ratio(m, 'wpc wasm-simd fused (Node) / onnxruntime')):>14} {fr(ratio(m, 'wpc wasm-simd fused (Node) / wpc wasm-simd unfused')):>14}")
    w = get(m, "wpc wasm-simd (Node)")
    if w and "unsupported" in w:
        print(f"  wpc: {w['unsupported']}")
print("medians of timed runs after 3 warm-up runs, engines interleaved; ratios are medians of per-round ratios;")
print("all engines single-threaded; a ratio < 1 means the first is faster")
PY
