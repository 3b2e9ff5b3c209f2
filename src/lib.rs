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

#[cfg(test)]
mod tests {
    /// Attribute reads by name, which belong in `wpc_ir::ops::params`.
    const READS: [&str; 9] = [
        ".int(\"",
        ".opt_int(\"",
        ".float(\"",
        ".opt_float(\"",
        ".ints(\"",
        ".opt_ints(\"",
        ".string(\"",
        ".opt_string(\"",
        ".opt_strings(\"",
    ];

    /// Every `.rs` file under `dir`, recursively.
    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Each op's attributes are parsed once, in `wpc_ir::ops::params`; the
    /// backends and the passes read the typed form, so a default or a
    /// validity rule cannot differ between them and the reference.
    #[test]
    fn backends_and_passes_read_no_attribute_by_name() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for crate_dir in ["codegen-wgsl/src", "codegen-wasm/src", "passes/src"] {
            sources(&root.join(crate_dir), &mut files);
        }
        assert!(files.len() > 20, "the sources were found: {files:?}");
        let mut found = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            for (n, line) in text.lines().enumerate() {
                if READS.iter().any(|r| line.contains(r)) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(
            found.is_empty(),
            "read through wpc_ir::ops::params instead:\n{}",
            found.join("\n")
        );
    }
}
