//! Bundles and the native executors that run them.
//!
//! A bundle is the contract between the compiler and every runtime: a
//! directory holding `manifest.json` (versioned; see [`manifest`]), the
//! generated kernels (WGSL files today) and the weight shards, each listed
//! with its size and sha256. This crate defines that format, reads and
//! writes it (atomically: a temporary directory renamed into place), and runs
//! the WebGPU variant natively through wgpu ([`webgpu`]) and the WebAssembly
//! variants through wasmtime ([`wasm`]). The browser
//! runtime in `runtime/js/` reads the same manifest, and a copy of it goes
//! into every bundle ([`js`]).

pub mod bundle;
pub mod device_data;
pub mod js;
pub mod manifest;
pub mod outdir;
#[cfg(feature = "wasm")]
pub mod wasm;
#[cfg(feature = "webgpu")]
pub mod webgpu;

pub use bundle::Bundle;
pub use manifest::Manifest;

/// Why a bundle could not be read, written or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// An output path wpc will not write (see [`outdir`]).
    #[error("{path}: {reason}")]
    Refused { path: String, reason: String },
    #[error("{path}: bad bundle: {reason}")]
    Format { path: String, reason: String },
    #[error("{0}")]
    Input(String),
    #[error("no usable WebGPU adapter: {0}")]
    NoAdapter(String),
    #[error("the WebGPU adapter cannot run this bundle: {0}")]
    Unsatisfied(String),
    #[error("WebGPU error: {0}")]
    Gpu(String),
    #[error("WebAssembly error: {0}")]
    Wasm(String),
    /// A kernel met something it does not support (at run time).
    #[error("not supported: {0}")]
    Unsupported(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
