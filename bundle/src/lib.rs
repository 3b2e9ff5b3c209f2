//! The bundle format: the contract between the compiler's backends, which
//! write bundles, and the runtimes, which read them.
//!
//! A bundle is a directory holding `manifest.json` (versioned; see
//! [`manifest`]), the generated code (WGSL files, wasm modules, the JS
//! runtime) and the weight shards, each listed with its size and sha256.
//! This crate defines the manifest types, how tensors are laid out on the
//! device ([`device_data`]), and reads and writes bundles (atomically: a
//! temporary directory renamed into place, [`outdir`]). It runs nothing:
//! the native executors live in `wpc-runtime`, the browser runtime in
//! `runtime/js/`, and no code generator depends on either.

pub mod bundle;
pub mod device_data;
pub mod manifest;
pub mod outdir;

pub use bundle::Bundle;
pub use manifest::Manifest;

/// Why a bundle could not be read or written, or a tensor does not fit
/// its declaration.
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
    /// A tensor given for an input does not match the manifest.
    #[error("{0}")]
    Input(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
