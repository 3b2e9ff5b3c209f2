#!/usr/bin/env bash
# Idempotent setup for a fresh machine: the Python oracle environment
# (onnx, onnxruntime, numpy at pinned versions), the ONNX conformance cases
# and the real-model test set. Everything lands under ~/.cache (override
# with WPC_CACHE); a second run only checks that it is all there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${WPC_CACHE:-$HOME/.cache}"
venv="$cache/wpc-venv"

if ! command -v cargo >/dev/null; then
    echo "setup: cargo is missing; install Rust (https://rustup.rs) first" >&2
    exit 1
fi
# The WebAssembly backend's reference kernels are built for wasm32.
if command -v rustup >/dev/null && ! rustup target list --installed | grep -q wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
# WebGPU runs natively through wgpu on Vulkan; on machines without a GPU,
# Mesa's lavapipe is the Vulkan driver.
if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
    else
        echo "setup: no Vulkan driver; install mesa-vulkan-drivers (sudo apt-get install mesa-vulkan-drivers)" >&2
        exit 1
    fi
fi
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# pip is quick when everything is already at the pinned version.
"$venv/bin/pip" install -q --disable-pip-version-check -r "$root/scripts/requirements.txt"
"$venv/bin/python" "$root/scripts/gen_conformance.py" "$cache/wpc-conformance"
"$venv/bin/python" "$root/scripts/setup_models.py" "$cache/wpc-models" 2> >(grep -v 'W:onnxruntime' >&2)
