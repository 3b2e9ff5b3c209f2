//! The browser runtime (`runtime/js/src`), embedded in the compiler so that
//! `wpc compile` can put a copy into every bundle: a page then needs
//! nothing but the bundle directory —
//! `import { load } from './model.wpc/runtime/index.js'`.
//!
//! The files are copied as written (plain ES modules, no build step); the
//! copy is listed in the manifest's `code` with sizes and sha256 like every
//! other file.

/// The bundle subdirectory the runtime goes into.
pub const DIR: &str = "runtime";

/// `(file name, source)` of every module of `runtime/js/src`; `index.js`
/// is the entry point. A unit test keeps this in step with the directory.
pub const FILES: &[(&str, &str)] = &[
    ("detect.js", include_str!("../js/src/detect.js")),
    ("errors.js", include_str!("../js/src/errors.js")),
    ("index.js", include_str!("../js/src/index.js")),
    ("loader.js", include_str!("../js/src/loader.js")),
    ("manifest.js", include_str!("../js/src/manifest.js")),
    ("wasm.js", include_str!("../js/src/wasm.js")),
    ("webgpu.js", include_str!("../js/src/webgpu.js")),
];

/// The runtime's files as bundle paths (`runtime/index.js`, …).
pub fn bundle_files() -> impl Iterator<Item = (String, &'static [u8])> {
    FILES
        .iter()
        .map(|(name, text)| (format!("{DIR}/{name}"), text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_every_module_of_runtime_js_src() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("runtime/js/src")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".js"))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            embedded, on_disk,
            "update runtime/src/js.rs to match runtime/js/src"
        );
        for (name, text) in FILES {
            for line in text.lines().filter(|l| l.contains(" from '")) {
                let target = line
                    .rsplit(" from '")
                    .next()
                    .unwrap()
                    .trim_end_matches("';");
                let target = target.strip_prefix("./").unwrap_or_else(|| {
                    panic!(
                        "{name}: '{line}' imports outside the runtime; the bundle copy would break"
                    )
                });
                assert!(
                    embedded.contains(&target),
                    "{name} imports {target}, which is not embedded"
                );
            }
        }
    }
}
