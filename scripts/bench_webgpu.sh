#!/usr/bin/env bash
# The WebGPU side-by-side benchmark: each model compiled twice for one
# target (by default fused, and unfused with --no-fuse), then timed by
# `wpc bench` (wgpu, median per inference) in rounds that alternate the
# two builds and swap which goes first each round. Prints both medians per
# round and the median, min and max of the per-round ratios first /
# second: two separate medians would swing with the machine's noise.
#
#   WPC=path/to/wpc bash scripts/bench_webgpu.sh [ROUNDS] LABEL=MODEL.onnx ...
#
# Environment: TARGET (default chrome), ITERATIONS per timing (default
# 30), WORK (bundles; default a temporary directory), BUILDS (the two
# builds as NAME:FLAGS;NAME:FLAGS, default "fused:;unfused:--no-fuse"; e.g.
# "dynamic:--dim sequence=1..128;static:--dim sequence=128" measures what
# leaving a size to run time costs: a bundle with dynamic dims is timed
# at their largest sizes).
set -euo pipefail
rounds=5
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    rounds="$1"
    shift
fi
if [ $# -eq 0 ] || [ -z "${WPC:-}" ]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
target="${TARGET:-chrome}"
iterations="${ITERATIONS:-30}"
work="${WORK:-$(mktemp -d)}"
mkdir -p "$work"
IFS=';' read -r first second <<<"${BUILDS:-fused:;unfused:--no-fuse}"
names=("${first%%:*}" "${second%%:*}")
flag_sets=("${first#*:}" "${second#*:}")

# Prints the median milliseconds `wpc bench` reports for bundle $1.
time_bundle() {
    "$WPC" bench "$1" --iterations "$iterations" --warmup 3 2>&1 |
        sed -n 's/.*: \([0-9.]*\) ms per inference.*/\1/p'
}

for spec in "$@"; do
    label="${spec%%=*}"
    model="${spec#*=}"
    for i in 0 1; do
        build="${names[$i]}"
        read -r -a flags <<<"${flag_sets[$i]}"
        "$WPC" compile "$model" --target "$target" -o "$work/$label-$build.wpc" --force \
            "${flags[@]}" >"$work/$label-$build.log" 2>&1 || {
            cat "$work/$label-$build.log" >&2
            exit 1
        }
    done
    a="${names[0]}"
    b="${names[1]}"
    dispatches() { sed -n 's/.*webgpu: .*, \([0-9]*\) dispatches.*/\1/p' "$work/$label-$1.log"; }
    echo "$label ($target): $(dispatches "$a") dispatches $a, $(dispatches "$b") $b"
    pairs=()
    for ((r = 0; r < rounds; r++)); do
        if ((r % 2 == 0)); then
            x=$(time_bundle "$work/$label-$a.wpc")
            y=$(time_bundle "$work/$label-$b.wpc")
        else
            y=$(time_bundle "$work/$label-$b.wpc")
            x=$(time_bundle "$work/$label-$a.wpc")
        fi
        echo "  round $((r + 1)): $a $x ms, $b $y ms"
        pairs+=("$x:$y")
    done
    python3 - "$label" "$a" "$b" "${pairs[@]}" <<'EOF'
import statistics, sys
label, a, b, pairs = sys.argv[1], sys.argv[2], sys.argv[3], [p.split(":") for p in sys.argv[4:]]
xs = [float(x) for x, _ in pairs]
ys = [float(y) for _, y in pairs]
ratios = [x / y for x, y in zip(xs, ys)]
print(f"  {label}: {a} {statistics.median(xs):.3f} ms, {b} {statistics.median(ys):.3f} ms; "
      f"{a}/{b} median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} rounds)")
EOF
done
