//! Target profiles: what a browser (or device class) offers, and how wpc
//! tunes kernels for it.
//!
//! A profile is a RON file (`targets/profiles/*.ron`, compiled into wpc so
//! the shipped set always travels with the binary; a user's own file loads
//! with [`Profile::from_file`]). Loading validates it: unknown fields, limits
//! below what WebGPU guarantees, or kernel shapes the profile's own limits
//! forbid are errors that name the file and the field.
//!
//! The compiler reads profiles, it never guesses: every workgroup size and
//! tile in generated WGSL comes from [`KernelTuning`], and every buffer is
//! checked against [`Limits`].

mod profile;
mod validate;

pub use profile::{
    Backend, Browser, Feature, KernelTuning, Limits, MatmulTile, Precision, Profile, Wasm, WebGpu,
    WebNn,
};

use std::path::Path;

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot read target profile: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: not a valid target profile: {reason}")]
    Parse { origin: String, reason: String },
    #[error("{origin}: invalid target profile: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("unknown target '{name}'; known targets: {known}")]
    Unknown { name: String, known: String },
}

/// The profiles shipped with wpc, by name, in the order `wpc targets` lists them.
const BUILTIN: &[(&str, &str)] = &[
    ("chrome", include_str!("../profiles/chrome.ron")),
    ("edge", include_str!("../profiles/edge.ron")),
    ("firefox", include_str!("../profiles/firefox.ron")),
    ("safari", include_str!("../profiles/safari.ron")),
    (
        "chrome-android",
        include_str!("../profiles/chrome-android.ron"),
    ),
    ("safari-ios", include_str!("../profiles/safari-ios.ron")),
    (
        "webgpu-baseline",
        include_str!("../profiles/webgpu-baseline.ron"),
    ),
];

/// Names of the shipped profiles.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(name, _)| *name)
}

/// Loads a shipped profile by name.
pub fn builtin(name: &str) -> Result<Profile, Error> {
    let (_, text) = BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| Error::Unknown {
            name: name.to_string(),
            known: builtin_names().collect::<Vec<_>>().join(", "),
        })?;
    Profile::parse(text, &format!("built-in target '{name}'"))
}

/// Every shipped profile, parsed and validated.
pub fn all_builtin() -> Result<Vec<Profile>, Error> {
    builtin_names().map(builtin).collect()
}

impl Profile {
    /// Parses and validates a profile; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Profile, Error> {
        let profile: Profile = ron::from_str(text).map_err(|e| Error::Parse {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
        profile.validate().map_err(|reason| Error::Invalid {
            origin: origin.to_string(),
            reason,
        })?;
        Ok(profile)
    }

    /// Loads a user's profile from a RON file.
    pub fn from_file(path: &Path) -> Result<Profile, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Profile::parse(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests;
