//! WebAssembly backend of wpc: an optimized graph with static shapes
//! becomes one self-contained wasm module per variant ([`Isa`]: SIMD128,
//! relaxed SIMD, or scalar for engines without SIMD), emitted with walrus.
//!
//! The module exports `memory` and `run`. All tensors live in that one
//! linear memory at offsets fixed at compile time by a static plan
//! ([`plan`]), so peak memory is known before anything runs; the host
//! writes inputs and weights at their offsets, calls `run`, and reads the
//! outputs. Every node is one function with its shapes baked in; MatMul,
//! Gemm and Conv share one register-blocked GEMM micro-kernel
//! ([`ops::gemm`]) whose weights are packed at compile time.
//!
//! Ops without a generated kernel run the reference interpreter's
//! kernel compiled to wasm32 ([`reference`]): the variant then imports
//! memory and `wpc_eval` from that shared module instead of owning its
//! memory, and lists those nodes with the reason in its `fallback`.
//! [`backend`] puts the crate behind the middle end's contract
//! ([`wpc_passes::backend::Backend`]).
//!
//! It never reads ONNX and never runs modules; the runtime does that.

pub mod backend;
pub mod emit;
mod lower;
mod math;
pub mod ops;
pub mod plan;
pub mod reference;
pub mod sizes;

pub use backend::Wasm;
pub use emit::Isa;
pub use lower::{Compiled, Ctx, LowerFn, Slot, Tt, compile, runs};

/// How the WebAssembly backend runs an op, by op name (a kernel may still
/// refuse a dtype or attribute, and then the node runs the reference
/// kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// A generated kernel ([`ops::lowering`]).
    Kernel,
    /// No kernel: a view ([`wpc_ir::ops::OpClass::View`]), whose output
    /// shares its input's bytes.
    View,
    /// The reference kernel compiled to wasm32 ([`reference`]).
    Reference,
    /// Not at all: the op carries subgraphs, which the reference module's
    /// calls cannot encode.
    None,
}

/// How the WebAssembly backend runs `op` of `domain` (a registered op).
pub fn support(domain: &str, op: &str) -> Support {
    if ops::lowering(domain, op).is_some() {
        Support::Kernel
    } else if wpc_ir::ops::class_of(domain, op) == wpc_ir::ops::OpClass::View {
        Support::View
    } else if matches!(op, "If" | "Loop" | "Scan") && (domain.is_empty() || domain == "ai.onnx") {
        Support::None
    } else {
        Support::Reference
    }
}

/// The module as WebAssembly text, for snapshots and reading.
pub fn to_text(wasm: &[u8]) -> String {
    wasmprinter::print_bytes(wasm).unwrap_or_else(|e| format!("(invalid module: {e})"))
}
