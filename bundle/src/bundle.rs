//! Reading and writing bundle directories.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::manifest::{FORMAT, Manifest, VERSION, Variant};
use crate::outdir::DirKind;
use crate::{Error, Result};

/// A bundle in memory: the manifest and the contents of every file it names.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    pub manifest: Manifest,
    /// File name (relative to the bundle directory) → contents.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Whether a manifest file name is a plain relative path inside the
/// bundle: '/'-separated names, none empty or starting with '.', and no
/// '\\' or ':' (Windows separators and drive letters).
fn stays_inside(name: &str) -> bool {
    !name.contains(['\\', ':'])
        && name
            .split('/')
            .all(|part| !part.is_empty() && !part.starts_with('.'))
}

impl Bundle {
    /// The files the manifest refers to, each once.
    fn referenced_files(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .manifest
            .shards
            .iter()
            .map(|s| s.file.as_str())
            .collect();
        for v in &self.manifest.variants {
            match v {
                Variant::WebGpu(w) => names.extend(w.shaders.iter().map(String::as_str)),
                Variant::Wasm(w) => names.extend(
                    std::iter::once(&w.module)
                        .chain(&w.reference)
                        .map(String::as_str),
                ),
            }
        }
        names.extend(self.manifest.code.iter().map(|c| c.file.as_str()));
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(*n));
        names
    }

    /// Bytes of a file the manifest names.
    pub fn file(&self, name: &str) -> Result<&[u8]> {
        self.files
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| Error::Format {
                path: name.to_string(),
                reason: "file named in the manifest is missing".into(),
            })
    }

    /// Writes the bundle to `dir` under the output-directory policy of
    /// [`crate::outdir`]: atomically (readers see the old bundle or the
    /// new, never a mix), replacing only a bundle or an empty directory
    /// unless `force`.
    pub fn write(&self, dir: &Path, force: bool) -> Result<()> {
        crate::outdir::write(dir, DirKind::Bundle, force, |tmp| {
            let json = serde_json::to_vec_pretty(&self.manifest).expect("manifests serialize");
            let path = tmp.join("manifest.json");
            std::fs::write(&path, json).map_err(io(&path))?;
            for (name, bytes) in &self.files {
                let path = tmp.join(name);
                if let Some(sub) = path.parent().filter(|p| *p != tmp) {
                    std::fs::create_dir_all(sub).map_err(io(sub))?;
                }
                std::fs::write(&path, bytes).map_err(io(&path))?;
            }
            Ok(())
        })
    }

    /// Reads a bundle directory, checking the format version, that every
    /// named file exists, and every shard's size and sha256.
    pub fn read(dir: &Path) -> Result<Bundle> {
        let path = dir.join("manifest.json");
        let text = std::fs::read(&path).map_err(io(&path))?;
        let bad = |reason: String| Error::Format {
            path: path.display().to_string(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(bad(format!(
                "not a wpc bundle (format is not \"{FORMAT}\")"
            )));
        }
        let version = value.get("version").and_then(|v| v.as_u64());
        if version != Some(u64::from(VERSION)) {
            let found = match value.get("version") {
                Some(v) => format!("format version {v}"),
                None => "no format version".to_string(),
            };
            return Err(bad(format!(
                "{found}; this wpc reads version {VERSION} (recompile the model with this wpc)"
            )));
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        manifest.validate().map_err(bad)?;
        let mut bundle = Bundle {
            manifest,
            files: BTreeMap::new(),
        };
        let names: Vec<String> = bundle
            .referenced_files()
            .into_iter()
            .map(str::to_string)
            .collect();
        for name in names {
            if !stays_inside(&name) {
                return Err(bad(format!(
                    "file name '{name}' leaves the bundle directory"
                )));
            }
            let p = dir.join(&name);
            let bytes = std::fs::read(&p).map_err(io(&p))?;
            bundle.files.insert(name, bytes);
        }
        bundle.verify_shards().map_err(|e| match e {
            Error::Format { path: file, reason } => Error::Format {
                path: dir.join(file).display().to_string(),
                reason,
            },
            other => other,
        })?;
        Ok(bundle)
    }

    /// Checks every shard's and code file's size and sha256 against the
    /// manifest.
    pub fn verify_shards(&self) -> Result<()> {
        let m = &self.manifest;
        let listed = m
            .shards
            .iter()
            .map(|s| (&s.file, s.bytes, &s.sha256, "shard"));
        let code = m.code.iter().map(|c| (&c.file, c.bytes, &c.sha256, "file"));
        for (file, size, sha256, what) in listed.chain(code) {
            let bytes = self.file(file)?;
            let bad = |reason: String| Error::Format {
                path: file.clone(),
                reason,
            };
            if bytes.len() as u64 != size {
                return Err(bad(format!(
                    "{what} has {} bytes, manifest says {size}",
                    bytes.len()
                )));
            }
            if sha256_hex(bytes) != *sha256 {
                return Err(bad(format!(
                    "{what} sha256 does not match the manifest (corrupt or tampered)"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::stays_inside;

    #[test]
    fn file_names_stay_inside_the_bundle() {
        for ok in ["weights-000.bin", "runtime/index.js", "a/b/c.wgsl"] {
            assert!(stays_inside(ok), "{ok}");
        }
        for bad in [
            "../x",
            "/etc/passwd",
            "runtime/../../x",
            ".hidden",
            "a//b",
            "a\\b",
            "C:x",
            "",
        ] {
            assert!(!stays_inside(bad), "{bad}");
        }
    }
}
