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

/// The bundle format's error: reading or writing a bundle, or a tensor
/// that does not fit its declaration.
pub use wpc_bundle::Error as BundleError;

/// Why a bundle could not be read, written or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the bundle, or an input that does not fit it.
    #[error(transparent)]
    Bundle(#[from] BundleError),
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

impl Error {
    /// A bundle whose files contradict its manifest.
    pub fn format(path: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Bundle(BundleError::Format {
            path: path.into(),
            reason: reason.into(),
        })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
