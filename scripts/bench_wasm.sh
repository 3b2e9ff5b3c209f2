#!/usr/bin/env bash
# The WebAssembly benchmark: wpc's wasm-simd variant against npm
# onnxruntime-web (wasm backend, 1 thread, SIMD), both in this machine's
# Node, and native onnxruntime (Python, 1 thread) as the ceiling, on the
# same inputs: the light ResNet50, a Silero VAD model and a BERT-style
# encoder. Prints medians and ratios. Run from anywhere:
#
#   bash scripts/bench_wasm.sh [RUNS]      (default 10 timed runs, 3 warm-up)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${1:-10}"
cache="${WPC_CACHE:-$HOME/.cache}"
work="$cache/wpc-bench"
bash "$root/scripts/setup.sh" >/dev/null
py="$cache/wpc-venv/bin/python"
if [ ! -d "$root/scripts/bench/node_modules/onnxruntime-web" ]; then
    (cd "$root/scripts/bench" && npm ci --no-audit --no-fund --loglevel=error)
fi
cargo build -q --manifest-path "$root/Cargo.toml" --release --bin wpc
wpc="${CARGO_TARGET_DIR:-$root/target}/release/wpc"
mkdir -p "$work"
models="$cache/wpc-models"

# label | model | input name=file ...
cases=(
    "resnet50|$models/light_resnet50/model.onnx|gpu_0/data_0=$models/light_resnet50/input_0.npy"
    "silero_vad_16k|$models/silero_vad_16k_op15/model.onnx|input=$models/silero_vad_16k_op15/input_0.npy|state=$models/silero_vad_16k_op15/input_1.npy|sr=$models/silero_vad_16k_op15/input_2.npy"
    "bert_encoder|$models/bert_encoder/model.onnx|input_ids=$models/bert_encoder/input_0.npy"
)
results="$work/results.jsonl"
: > "$results"
for c in "${cases[@]}"; do
    IFS='|' read -r label model rest <<<"$c"
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
    if "$wpc" compile "$model" --target chrome -o "$bundle" "${flags[@]}" >"$work/$label.compile.txt" 2>&1 \
        && grep -q "wasm-simd:.*wasm (" "$work/$label.compile.txt"; then
        node "$root/scripts/bench/bench.mjs" "$runs" "$label" "$model" "$bundle" "${inputs[@]}" 2>/dev/null >>"$results"
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
get = lambda m, e: next((r for r in rows if r["model"] == m and r["engine"].startswith(e)), None)
print(f"{'model':<16} {'wpc wasm-simd':>14} {'ort-web wasm':>13} {'ort native':>11} {'wpc/ort-web':>12} {'wpc/native':>11}")
for m in models:
    w, o, n = get(m, "wpc"), get(m, "onnxruntime-web"), get(m, "onnxruntime native")
    ms = lambda r: r.get("median_ms") if r else None
    fmt = lambda v: f"{v:.1f} ms" if v is not None else "-"
    ratio = lambda a, b: f"{a / b:.2f}" if a is not None and b else "-"
    print(f"{m:<16} {fmt(ms(w)):>14} {fmt(ms(o)):>13} {fmt(ms(n)):>11} {ratio(ms(w), ms(o)):>12} {ratio(ms(w), ms(n)):>11}")
    if w and "unsupported" in w:
        print(f"  wpc: {w['unsupported']}")
print("medians of timed runs after 3 warm-up runs; all engines single-threaded; ratio < 1 means wpc is faster")
PY
