//! Compiling bundles from a build script, so a crate's bundles are rebuilt
//! with it whenever a model, a target profile or a frozen input changes.
//!
//! ```no_run
//! // build.rs (with `wpc = { version = "0.1", default-features = false }`
//! // under [build-dependencies]: no wgpu or wasmtime in the build)
//! fn main() -> anyhow::Result<()> {
//!     let bundle = wpc::build::Build::new("models/vad.onnx")
//!         .target("chrome")
//!         .input_shape("input", &[1, 512])
//!         .compile()?;
//!     // OUT_DIR/vad.wpc/: serve it, or run it with wpc's native runtime.
//!     println!("cargo:rustc-env=VAD_BUNDLE={}", bundle.dir.display());
//!     Ok(())
//! }
//! ```
//!
//! `compile` prints `cargo:rerun-if-changed` for every file the bundle
//! depends on: the model, its external data files, a target profile file
//! and frozen inputs.

use crate::binding::Sizes;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::compile::{Options, compile_file};
use crate::runtime::Manifest;

/// Which target profile to compile for.
#[derive(Clone, Debug)]
enum Target {
    Builtin(String),
    File(PathBuf),
}

/// One model to compile into a bundle; see the module docs.
#[derive(Clone, Debug)]
#[must_use = "a Build does nothing until compile() is called"]
pub struct Build {
    model: PathBuf,
    target: Target,
    dims: HashMap<String, Sizes>,
    input_shapes: HashMap<String, Vec<usize>>,
    frozen: Vec<(String, PathBuf)>,
    demote_f64: bool,
    fuse: bool,
    js_runtime: bool,
    out: Option<PathBuf>,
    force: bool,
    cargo_directives: bool,
    precision: Option<wpc_passes::quant::Precision>,
    calibration: Vec<(String, PathBuf)>,
    progress: crate::compile::Progress,
}

/// A bundle written by [`Build::compile`].
#[derive(Debug)]
pub struct Built {
    /// The bundle directory.
    pub dir: PathBuf,
    /// The files it was built from (what `cargo:rerun-if-changed` names).
    pub inputs: Vec<PathBuf>,
    /// Its manifest: variants, inputs and outputs, files.
    pub manifest: Manifest,
    /// Variants left out, with why (e.g. a wasm variant an op has no
    /// kernel for); the others were written.
    pub skipped: Vec<(String, String)>,
    /// Symbols left to run time whose bound is the compiler's default
    /// ([`crate::compile::Compiled::defaulted`]).
    pub defaulted: Vec<String>,
    /// What the per-variant passes did for each backend
    /// ([`crate::compile::Compiled::passes`]).
    pub passes: Vec<wpc_passes::backend::VariantPasses>,
    /// What weight quantization did ([`Build::precision`]).
    pub quant: Option<wpc_passes::quant::QuantReport>,
    /// Why the weights were quantized by the target's default
    /// ([`crate::compile::Compiled::default_precision`]).
    pub default_precision: Option<String>,
}

impl Build {
    /// Compiles `model` for the `webgpu-baseline` target into
    /// `$OUT_DIR/<model stem>.wpc`, printing cargo directives.
    pub fn new(model: impl Into<PathBuf>) -> Build {
        Build {
            model: model.into(),
            target: Target::Builtin("webgpu-baseline".into()),
            dims: HashMap::new(),
            input_shapes: HashMap::new(),
            frozen: Vec::new(),
            demote_f64: false,
            fuse: true,
            js_runtime: true,
            out: None,
            force: false,
            cargo_directives: true,
            precision: None,
            calibration: Vec::new(),
            progress: crate::compile::Progress::default(),
        }
    }

    /// A sample input (`.npy`) quantization calibrates on: with one for
    /// every model input, linear layers are quantized by GPTQ against
    /// their inputs on it. Calling it again for an input adds a run: the
    /// k-th file of each input is the k-th run.
    pub fn calibrate(mut self, input: &str, npy: impl Into<PathBuf>) -> Build {
        self.calibration.push((input.to_string(), npy.into()));
        self
    }

    /// Quantizes weights: which layers get how many bits
    /// (`wpc_passes::quant::Precision`: uniform, or parsed from a RON
    /// precision map).
    pub fn precision(mut self, precision: wpc_passes::quant::Precision) -> Build {
        self.precision = Some(precision);
        self
    }

    /// Where calibration and quantization say how far they are
    /// (`(stage, done, total)`; they can take minutes).
    pub fn progress(mut self, progress: crate::compile::Progress) -> Build {
        self.progress = progress;
        self
    }

    /// A shipped target profile (`wpc targets` lists them).
    pub fn target(mut self, name: &str) -> Build {
        self.target = Target::Builtin(name.into());
        self
    }

    /// A profile of your own, from a RON file.
    pub fn target_file(mut self, path: impl Into<PathBuf>) -> Build {
        self.target = Target::File(path.into());
        self
    }

    /// The size of a symbolic dim (kernels are compiled for it).
    pub fn dim(mut self, symbol: &str, size: usize) -> Build {
        self.dims.insert(symbol.into(), Sizes::fixed(size));
        self
    }

    /// The sizes a symbolic dim may take, `min` to `max` inclusive: the
    /// bundle runs at any of them.
    pub fn dim_range(mut self, symbol: &str, min: usize, max: usize) -> Build {
        self.dims.insert(symbol.into(), Sizes { lo: min, hi: max });
        self
    }

    /// The concrete shape of an input whose dims the model leaves unnamed.
    pub fn input_shape(mut self, input: &str, shape: &[usize]) -> Build {
        self.input_shapes.insert(input.into(), shape.to_vec());
        self
    }

    /// Fixes an input to the value in an .npy file at compile time.
    pub fn freeze(mut self, input: &str, npy: impl Into<PathBuf>) -> Build {
        self.frozen.push((input.into(), npy.into()));
        self
    }

    /// Computes float64 tensors in float32.
    pub fn demote_f64(mut self, on: bool) -> Build {
        self.demote_f64 = on;
        self
    }

    /// Whether pointwise chains are fused into single kernels (default:
    /// yes).
    pub fn fuse(mut self, on: bool) -> Build {
        self.fuse = on;
        self
    }

    /// Whether the bundle carries the JS runtime (default: yes).
    pub fn js_runtime(mut self, on: bool) -> Build {
        self.js_runtime = on;
        self
    }

    /// Where to write the bundle instead of `$OUT_DIR/<model stem>.wpc`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Build {
        self.out = Some(dir.into());
        self
    }

    /// Whether an existing directory that is not a wpc bundle may be
    /// replaced (default: no; see [`crate::runtime::outdir`]).
    pub fn force(mut self, on: bool) -> Build {
        self.force = on;
        self
    }

    /// Whether to print `cargo:rerun-if-changed` lines (default: yes).
    pub fn cargo_directives(mut self, on: bool) -> Build {
        self.cargo_directives = on;
        self
    }

    /// Compiles the model and writes the bundle (atomically, as
    /// `wpc compile` does; an existing directory is replaced only if it is
    /// a bundle or empty, unless [`Build::force`]). Errors name the model, and the node and op
    /// at fault.
    pub fn compile(self) -> Result<Built> {
        let dir = match &self.out {
            Some(dir) => dir.clone(),
            None => default_dir(&self.model, std::env::var_os("OUT_DIR").map(PathBuf::from))?,
        };
        // Refuse a directory we may not replace before compiling, not
        // after; one holding what the compile reads, even when forced.
        let mut read: Vec<&Path> = vec![&self.model];
        if let Target::File(path) = &self.target {
            read.push(path);
        }
        read.extend(self.frozen.iter().map(|(_, p)| p.as_path()));
        read.extend(self.calibration.iter().map(|(_, p)| p.as_path()));
        crate::runtime::outdir::check(&dir, crate::runtime::outdir::DirKind::Bundle, self.force)?;
        crate::runtime::outdir::refuse_inputs(&dir, &read)?;
        let mut inputs = vec![self.model.clone()];
        let profile = match &self.target {
            Target::Builtin(name) => crate::targets::builtin(name)?,
            Target::File(path) => {
                inputs.push(path.clone());
                crate::targets::Profile::from_file(path)?
            }
        };
        let mut options = Options::new(profile);
        options.dims = self.dims;
        options.input_shapes = self.input_shapes;
        options.demote_f64 = self.demote_f64;
        options.fuse = self.fuse;
        options.js_runtime = self.js_runtime;
        options.precision = self.precision;
        options.progress = self.progress;
        for (name, path) in &self.calibration {
            options.calibrate_file(name, path)?;
            inputs.push(path.clone());
        }
        for (name, path) in &self.frozen {
            options.freeze_file(name, path)?;
            inputs.push(path.clone());
        }
        let compiled = compile_file(&self.model, &options)?;
        compiled.bundle.write(&dir, self.force)?;
        // (A failed build script is rerun anyway: no directives then.)
        inputs.extend(compiled.external_data);
        if self.cargo_directives {
            for path in &inputs {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
        Ok(Built {
            dir,
            inputs,
            manifest: compiled.bundle.manifest,
            skipped: compiled.skipped,
            defaulted: compiled.defaulted,
            passes: compiled.passes,
            quant: compiled.quant,
            default_precision: compiled.default_precision,
        })
    }
}

/// `OUT_DIR/<model stem>.wpc`.
fn default_dir(model: &Path, out_dir: Option<PathBuf>) -> Result<PathBuf> {
    let out_dir = out_dir.context(
        "OUT_DIR is not set: Build::compile() writes there when run from build.rs; \
         elsewhere, give Build::out_dir()",
    )?;
    let stem = model
        .file_stem()
        .with_context(|| format!("{}: not a model file name", model.display()))?;
    let mut name = stem.to_os_string();
    name.push(".wpc");
    Ok(out_dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_bundle_goes_into_out_dir_named_after_the_model() {
        let dir = default_dir(Path::new("models/vad.v2.onnx"), Some("/o".into())).unwrap();
        assert_eq!(dir, Path::new("/o/vad.v2.wpc"));
        let e = default_dir(Path::new("m.onnx"), None).unwrap_err();
        assert!(e.to_string().contains("OUT_DIR is not set"), "{e}");
    }
}
