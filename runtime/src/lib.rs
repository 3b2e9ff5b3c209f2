//! The native executors that run bundles, and the browser runtime's files.
//!
//! The bundle format itself (manifest, device data layout, reading and
//! writing) is the `wpc-bundle` crate, re-exported here so a runtime user
//! needs one dependency. This crate runs the WebGPU variant natively
//! through wgpu ([`webgpu`]) and the WebAssembly variants through wasmtime
//! ([`wasm`]). The browser runtime in `runtime/js/` reads the same
//! manifest, and a copy of it goes into every bundle ([`js`]).

pub mod js;
pub use wpc_bundle::{bundle, device_data, manifest, outdir};
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

impl From<wpc_bundle::Error> for Error {
    fn from(e: wpc_bundle::Error) -> Error {
        match e {
            wpc_bundle::Error::Io { path, source } => Error::Io { path, source },
            wpc_bundle::Error::Refused { path, reason } => Error::Refused { path, reason },
            wpc_bundle::Error::Format { path, reason } => Error::Format { path, reason },
            wpc_bundle::Error::Input(m) => Error::Input(m),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
