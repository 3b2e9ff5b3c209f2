//! Target profiles of wpc (not built yet).
//!
//! This crate will own the declarative per-browser profiles (`targets/*.ron`:
//! WebGPU limits and features, workgroup sizes and tiles per kernel class, wasm
//! features, WebNN support, default precision and memory budget) and the loader
//! that validates them with clear errors.
