//! WebAssembly backend of wpc (not built yet).
//!
//! This crate will own emitting self-contained wasm modules (scalar, SIMD128
//! and relaxed-SIMD variants) with walrus from a lowered graph: register-blocked
//! kernels, weights packed at compile time and one linear memory laid out by a
//! static memory plan.
//!
//! It never reads ONNX and never runs modules; the runtime does that.
