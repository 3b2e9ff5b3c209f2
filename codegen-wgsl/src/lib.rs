//! WebGPU backend of wpc (not built yet).
//!
//! This crate will own the lowering of a validated, shape-inferred graph plus a
//! target profile into WGSL compute shaders: one kernel per op (or fused op
//! group), workgroup sizes and tile shapes taken from the profile, every
//! shader validated with naga before it is written into a bundle.
//!
//! It never reads ONNX and never runs shaders; the runtime does that.
