#!/usr/bin/env bash
# The project's test command (README.md and CI run exactly this):
# set up the oracle data, check formatting and lints, run every test
# (Rust, the JS runtime's unit tests, and its end-to-end tests in headless
# Chromium),
# and run the ONNX conformance suite on the reference, WebGPU (wgpu on
# Vulkan; lavapipe without a GPU) and the three WebAssembly variants
# (wasmtime) against the checked-in baselines.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${WPC_CACHE:-$HOME/.cache}"
cd "$root"
bash scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The library as build scripts use it: no wgpu, wasmtime or CLI.
cargo clippy -p wpc --lib --no-default-features --quiet -- -D warnings
# The JS runtime's unit tests (Node's built-in runner), and its JSDoc
# types checked by TypeScript (dev dependencies from npm; the runtime has
# none).
node --test runtime/js/test/
(cd runtime/js && npm ci --no-audit --no-fund --loglevel=error && npx --no-install tsc -p . && npm run --silent types:check)
WPC_MODELS_DIR="$cache/wpc-models" WPC_CONFORMANCE_DIR="$cache/wpc-conformance" cargo nextest run --workspace --no-fail-fast
# The JS runtime in headless Chromium (bundles compiled by the debug wpc).
bash scripts/browser_tests.sh
mkdir -p target
cargo run --quiet --bin wpc -- conformance "$cache/wpc-conformance" --backend reference \
    --json target/conformance-reference.json --baseline conformance/reference-baseline.json
cargo run --quiet --bin wpc -- conformance "$cache/wpc-conformance" --backend webgpu \
    --json target/conformance-webgpu.json --baseline conformance/webgpu-baseline.json
for variant in wasm wasm-relaxed wasm-scalar; do
    cargo run --quiet --bin wpc -- conformance "$cache/wpc-conformance" --backend "$variant" \
        --json "target/conformance-$variant.json" --baseline "conformance/$variant-baseline.json"
done
