//! wpc: compiles ONNX models into per-browser kernel bundles.
//!
//! This crate is the `wpc` command-line tool and the library facade that
//! build scripts call. Today it imports models, runs the graph passes and
//! executes models on the reference interpreter; the WebGPU, WebAssembly and
//! WebNN backends plug in behind the same facade.
//!
//! ```no_run
//! let model = wpc::load("model.onnx".as_ref())?;
//! println!("{} nodes", model.graph.node_count());
//! # Ok::<(), anyhow::Error>(())
//! ```

#[cfg(feature = "native")]
pub mod bench;
pub mod binding;
pub mod build;
pub mod compare;
pub mod compile;
#[cfg(feature = "native")]
pub mod conformance;
pub mod inputs;
pub mod inspect;
pub mod memory;
pub mod npy;
pub mod stdout;

pub use wpc_codegen_wasm as codegen_wasm;
pub use wpc_codegen_wgsl as codegen_wgsl;
pub use wpc_ir as ir;
pub use wpc_passes as passes;
pub use wpc_runtime as runtime;
pub use wpc_targets as targets;

/// Loads an ONNX model (with its external data) into the IR.
pub fn load(path: &std::path::Path) -> anyhow::Result<wpc_ir::Model> {
    Ok(wpc_ir::onnx::load_model(path)?)
}
