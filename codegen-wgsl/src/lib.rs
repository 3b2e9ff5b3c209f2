//! The WebGPU backend: lowers a shape-inferred graph with static shapes,
//! plus a target profile, into WGSL kernels and a static execution plan.
//!
//! * [`lower`] walks the graph in topological order and asks each op's
//!   lowering ([`ops`]) for kernels; every shape is a compile-time constant
//!   baked into the WGSL, so kernels do no shape arithmetic at run time.
//! * [`plan`] assigns values to device buffers, reusing scratch buffers
//!   whose tensors are dead, and checks every buffer against the profile's
//!   limits.
//! * [`validate`] runs naga over every shader: a shader naga rejects is a
//!   bug in this crate and fails compilation loudly.
//!
//! * [`backend`] puts it behind the middle end's contract
//!   ([`wpc_passes::backend::Backend`]).
//!
//! The crate never reads ONNX and never runs shaders.

// Kernel generators walk tensor axes by number, indexing several per-axis
// tables at once; explicit axis loops read better than zipped iterators.
#![allow(clippy::needless_range_loop)]

pub mod backend;
pub mod helpers;
pub mod kernel;
pub mod lower;
pub mod ops;
pub mod plan;
pub mod validate;

pub use backend::WebGpu;
pub use lower::{Compiled, Options, compile};
