//! The browser runtime (`runtime/js/src`), embedded in the compiler so that
//! `wpc compile` can put a copy into every bundle: a page then needs
//! nothing but the bundle directory —
//! `import { load } from './model.wpc/runtime/index.js'`.
//!
//! The files are copied as written (plain ES modules, no build step, with
//! the TypeScript declarations `runtime/js/types.mjs` generates beside
//! them, so `index.js` comes with its `index.d.ts`); the copy is listed in
//! the manifest's `code` with sizes and sha256 like every other file.

/// The bundle subdirectory the runtime goes into.
pub const DIR: &str = "runtime";

/// `(file name, source)` of every file of `runtime/js/src`: the modules
/// and their `.d.ts` declarations; `index.js` is the entry point. A unit
/// test keeps this in step with the directory.
pub const FILES: &[(&str, &str)] = &[
    ("detect.d.ts", include_str!("../js/src/detect.d.ts")),
    ("detect.js", include_str!("../js/src/detect.js")),
    ("errors.d.ts", include_str!("../js/src/errors.d.ts")),
    ("errors.js", include_str!("../js/src/errors.js")),
    ("index.d.ts", include_str!("../js/src/index.d.ts")),
    ("index.js", include_str!("../js/src/index.js")),
    ("loader.d.ts", include_str!("../js/src/loader.d.ts")),
    ("loader.js", include_str!("../js/src/loader.js")),
    ("manifest.d.ts", include_str!("../js/src/manifest.d.ts")),
    ("manifest.js", include_str!("../js/src/manifest.js")),
    ("wasm.d.ts", include_str!("../js/src/wasm.d.ts")),
    ("wasm.js", include_str!("../js/src/wasm.js")),
    ("webgpu.d.ts", include_str!("../js/src/webgpu.d.ts")),
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
    fn embeds_every_file_of_runtime_js_src() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js/src");
        // Modules and declarations alike: a bundle ships the whole folder.
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("runtime/js/src")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            embedded, on_disk,
            "update runtime/src/js.rs to match runtime/js/src"
        );
        // Every import stays inside the runtime (in declarations, `tsc`
        // writes some with double quotes).
        for (name, text) in FILES {
            for line in text
                .lines()
                .filter(|l| l.contains(" from '") || l.contains(" from \""))
            {
                let target = line
                    .rsplit(" from ")
                    .next()
                    .unwrap()
                    .trim_end_matches(';')
                    .trim_matches(['\'', '"']);
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
