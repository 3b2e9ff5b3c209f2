# Sourced by the wasm benchmarks (scripts/bench_*.sh) after they set
# `root`: the Python environment and models (`scripts/setup.sh`), the
# peers' npm packages, and wpc. Sets `cache`, `py` and `wpc`. WPC=path/to/wpc
# uses a wpc already built (bundles do not depend on the build profile);
# otherwise a release build.
cache="${WPC_CACHE:-$HOME/.cache}"
bash "$root/scripts/setup.sh" >/dev/null
py="$cache/wpc-venv/bin/python"
if [ ! -d "$root/scripts/bench/node_modules/onnxruntime-web" ]; then
    (cd "$root/scripts/bench" && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ -z "${WPC:-}" ]; then
    cargo build -q --manifest-path "$root/Cargo.toml" --release --bin wpc
    wpc="${CARGO_TARGET_DIR:-$root/target}/release/wpc"
else
    wpc="$WPC"
fi
