#!/usr/bin/env bash
# The WebGPU fusion benchmark: each model compiled twice for one target,
# fused (the default) and unfused (--no-fuse), then timed by `wpc bench`
# (wgpu, median per inference) in rounds that alternate the two builds
# and swap which goes first each round. Prints both medians per round and
# the median, min and max of the per-round ratios fused / unfused: two
# separate medians would swing with the machine's noise.
#
#   WPC=path/to/wpc bash scripts/bench_webgpu.sh [ROUNDS] LABEL=MODEL.onnx ...
#
# Environment: TARGET (default chrome), ITERATIONS per timing (default
# 30), WORK (bundles; default a temporary directory). Compiles with each
# model's defaults, so models need static shapes.
set -euo pipefail
rounds=5
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    rounds="$1"
    shift
fi
if [ $# -eq 0 ] || [ -z "${WPC:-}" ]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
target="${TARGET:-chrome}"
iterations="${ITERATIONS:-30}"
work="${WORK:-$(mktemp -d)}"
mkdir -p "$work"

# Prints the median milliseconds `wpc bench` reports for bundle $1.
time_bundle() {
    "$WPC" bench "$1" --iterations "$iterations" --warmup 3 2>&1 |
        sed -n 's/.*: \([0-9.]*\) ms per inference.*/\1/p'
}

for spec in "$@"; do
    label="${spec%%=*}"
    model="${spec#*=}"
    for build in fused unfused; do
        flags=()
        [ "$build" = unfused ] && flags+=(--no-fuse)
        "$WPC" compile "$model" --target "$target" -o "$work/$label-$build.wpc" --force \
            "${flags[@]}" >"$work/$label-$build.log" 2>&1 || {
            cat "$work/$label-$build.log" >&2
            exit 1
        }
    done
    dispatches() { sed -n 's/.*webgpu: .*, \([0-9]*\) dispatches.*/\1/p' "$work/$label-$1.log"; }
    echo "$label ($target): $(dispatches unfused) dispatches unfused, $(dispatches fused) fused"
    pairs=()
    for ((r = 0; r < rounds; r++)); do
        if ((r % 2 == 0)); then
            f=$(time_bundle "$work/$label-fused.wpc")
            u=$(time_bundle "$work/$label-unfused.wpc")
        else
            u=$(time_bundle "$work/$label-unfused.wpc")
            f=$(time_bundle "$work/$label-fused.wpc")
        fi
        echo "  round $((r + 1)): fused $f ms, unfused $u ms"
        pairs+=("$f:$u")
    done
    python3 - "$label" "${pairs[@]}" <<'EOF'
import statistics, sys
label, pairs = sys.argv[1], [p.split(":") for p in sys.argv[2:]]
fused = [float(f) for f, _ in pairs]
unfused = [float(u) for _, u in pairs]
ratios = [f / u for f, u in zip(fused, unfused)]
print(f"  {label}: fused {statistics.median(fused):.3f} ms, unfused {statistics.median(unfused):.3f} ms; "
      f"fused/unfused median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} rounds)")
EOF
done
