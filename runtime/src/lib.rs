//! Bundle format and native executors of wpc (not built yet).
//!
//! This crate will own the bundle (the versioned JSON manifest, weight shards
//! and their hashes: the contract between compiler and runtime) and the native
//! executors that run a bundle's variants: wgpu for WGSL, wasmtime for wasm.
//! The browser runtime lives beside it in `runtime/js/`.
//!
//! Today models run natively through the reference interpreter in `wpc-ir`.
