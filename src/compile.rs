//! `wpc compile`: a model and a target profile in, a bundle out.
//!
//! This is the library entry point build scripts call:
//!
//! ```no_run
//! let profile = wpc::targets::builtin("safari")?;
//! let options = wpc::compile::Options::new(profile);
//! let compiled = wpc::compile::compile_file("model.onnx".as_ref(), &options)?;
//! compiled.bundle.write("model.wpc".as_ref())?;
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use wpc_codegen_wasm::Isa;
use wpc_ir::{Dim, Error, Model};
use wpc_passes::backend::{Backend, Lowered, VariantPasses, for_variant};
use wpc_runtime::Bundle;
use wpc_runtime::bundle::sha256_hex;
use wpc_runtime::manifest::{
    self, CodeFile, DimInfo, Manifest, ModelInfo, Shard, ShardRange, TensorInfo, Variant,
};
use wpc_targets::Profile;

/// Weight shards are cut at this size so browsers can fetch, verify and
/// cache them piecewise.
pub const SHARD_BYTES: usize = 16 << 20;

/// How to compile.
#[derive(Clone, Debug)]
pub struct Options {
    pub profile: Profile,
    /// Sizes for symbolic dims (`batch` → 1), or the range a bundle
    /// runs them at (`seq` → 1..512).
    pub dims: HashMap<String, crate::binding::Sizes>,
    /// Compute float64 as float32 instead of refusing it.
    pub demote_f64: bool,
    /// Run the per-variant passes (default): recognize written-out ops
    /// (GELU, LayerNorm, ...) where the backend has kernels for them, and
    /// fuse pointwise chains into single kernels.
    pub fuse: bool,
    /// Model inputs fixed to a value at compile time (they leave the
    /// bundle's inputs). Needed for inputs that steer kernels, such as the
    /// `axes` of a reduction fed as a model input.
    pub frozen: HashMap<String, wpc_ir::Tensor>,
    /// Concrete shapes for model inputs, overriding what the model declares
    /// (for inputs with unnamed `?` dims).
    pub input_shapes: HashMap<String, Vec<usize>>,
    /// Whether to build the WebGPU variant.
    pub webgpu: Need,
    /// Which WebAssembly variants to build, and how badly.
    pub wasm: Need,
    /// Restrict the wasm variants to these (default: what the profile allows).
    pub wasm_isas: Option<Vec<Isa>>,
    /// Put a copy of the JS runtime into the bundle, under `runtime/`
    /// (default), so a page needs nothing else.
    pub js_runtime: bool,
    /// Quantize weights (`passes::quant`): which layers get how many
    /// bits. `None`: the target profile decides ([`effective_precision`]).
    pub precision: Option<wpc_passes::quant::Precision>,
    /// Sample inputs quantization calibrates on (each one run's feeds):
    /// linear layers are then quantized by GPTQ against their inputs on
    /// these samples.
    pub calibration: Vec<HashMap<String, wpc_ir::Tensor>>,
    /// Where calibration and quantization say how far they are.
    pub progress: Progress,
}

/// A callback for long compile work: `(stage, done, total)`, called as a
/// stage starts (`done` 0) and after each step (the CLI draws a bar).
#[derive(Clone, Default)]
pub struct Progress(Option<std::sync::Arc<ReportFn>>);

/// What a [`Progress`] calls: `(stage, done, total)`.
type ReportFn = dyn Fn(&str, usize, usize) + Send + Sync;

impl Progress {
    pub fn new(report: impl Fn(&str, usize, usize) + Send + Sync + 'static) -> Progress {
        Progress(Some(std::sync::Arc::new(report)))
    }

    /// Reports `done` of `total` steps of `stage`.
    pub fn report(&self, stage: &str, done: usize, total: usize) {
        if let Some(f) = &self.0 {
            f(stage, done, total);
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(reported)"
        } else {
            "Progress(silent)"
        })
    }
}

/// Whether a backend's variant is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Not built.
    No,
    /// Built; failing to build it fails the compilation.
    Required,
    /// Built when every node lowers; otherwise left out, with the reason
    /// reported in [`Compiled::skipped`].
    IfPossible,
}

impl Options {
    /// Options that build every variant the profile lists: WebGPU must
    /// compile, WebAssembly is built when every op has a wasm kernel.
    pub fn new(profile: Profile) -> Options {
        let wants = |b: wpc_targets::Backend| profile.backends.contains(&b);
        let webgpu = if wants(wpc_targets::Backend::WebGpu) {
            Need::Required
        } else {
            Need::No
        };
        let wasm = if wants(wpc_targets::Backend::Wasm) {
            Need::IfPossible
        } else {
            Need::No
        };
        Options {
            profile,
            dims: HashMap::new(),
            demote_f64: false,
            fuse: true,
            frozen: HashMap::new(),
            input_shapes: HashMap::new(),
            webgpu,
            wasm,
            wasm_isas: None,
            js_runtime: true,
            precision: None,
            calibration: Vec::new(),
            progress: Progress::default(),
        }
    }

    /// Fixes input `name` to the tensor in the .npy file at `path`.
    pub fn freeze_file(&mut self, name: &str, path: &Path) -> Result<()> {
        let value = crate::npy::read(path).with_context(|| format!("freezing input '{name}'"))?;
        self.frozen.insert(name.to_string(), value);
        Ok(())
    }

    /// Adds the tensor in the .npy file at `path` as input `name` of the
    /// first calibration run that has none yet (a new run if all have):
    /// the k-th file given for an input belongs to the k-th run.
    pub fn calibrate_file(&mut self, name: &str, path: &Path) -> Result<()> {
        let value = crate::npy::read(path)
            .with_context(|| format!("calibration sample for input '{name}'"))?;
        match self.calibration.iter_mut().find(|r| !r.contains_key(name)) {
            Some(run) => {
                run.insert(name.to_string(), value);
            }
            None => self
                .calibration
                .push(HashMap::from([(name.to_string(), value)])),
        }
        Ok(())
    }

    /// The wasm variants to build, in preference order.
    pub fn isas(&self) -> Vec<Isa> {
        if let Some(isas) = &self.wasm_isas {
            return isas.clone();
        }
        let w = &self.profile.wasm;
        let mut isas = Vec::new();
        if w.simd && w.relaxed_simd {
            isas.push(Isa::Relaxed);
        }
        if w.simd {
            isas.push(Isa::Simd);
        }
        isas.push(Isa::Scalar);
        isas
    }
}

/// A compiled bundle and the variants left out (variant name, reason).
pub struct Compiled {
    pub bundle: Bundle,
    /// Symbols left to run time that no flag bounded: their bound (in
    /// the manifest's `dims`) is the compiler's default.
    pub defaulted: Vec<String>,
    pub skipped: Vec<(String, String)>,
    /// What the per-variant passes did, per backend ("webgpu", "wasm").
    pub passes: Vec<VariantPasses>,
    /// The external data files the model's weights came from.
    pub external_data: Vec<std::path::PathBuf>,
    /// What weight quantization did, when asked for or by default.
    pub quant: Option<wpc_passes::quant::QuantReport>,
    /// Why the weights were quantized though the compile did not ask:
    /// the target profile's default (see [`effective_precision`]).
    pub default_precision: Option<String>,
}

/// Bytes (a blob or a shard) and the variants that read them.
type Readers = (Vec<u8>, Vec<String>);

/// The weight blobs of every variant, stored once each however many
/// variants read them, and laid out into shards grouped by the variants
/// that read them: a variant's loader then fetches its own shards and
/// the shared ones, never another layout's (the WebGPU variant's raw
/// matrices beside wasm's packed GEMM panels).
#[derive(Default)]
struct Shards {
    /// Each distinct blob and the variants that read it.
    blobs: Vec<Readers>,
    by_hash: HashMap<String, usize>,
}

impl Shards {
    /// Records that `variant` reads `bytes`. Until [`Shards::layout`], the
    /// returned range names the blob: its `shard` is the blob's index.
    fn add(&mut self, variant: &str, bytes: &[u8]) -> ShardRange {
        let next = self.blobs.len();
        let blob = *self.by_hash.entry(sha256_hex(bytes)).or_insert(next);
        if blob == next {
            self.blobs.push((bytes.to_vec(), Vec::new()));
        }
        let users = &mut self.blobs[blob].1;
        if !users.iter().any(|u| u == variant) {
            users.push(variant.to_string());
        }
        ShardRange {
            shard: blob,
            offset: 0,
            bytes: bytes.len() as u64,
        }
    }

    /// Cuts the blobs into shards of at most [`SHARD_BYTES`] (a larger
    /// blob gets a shard of its own), one run of shards per set of
    /// readers, in the order blobs were first read. Returns each shard's
    /// bytes and readers, and each blob's final range.
    fn layout(self) -> (Vec<Readers>, Vec<ShardRange>) {
        let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
        for (i, (_, users)) in self.blobs.iter().enumerate() {
            match groups.iter_mut().find(|(u, _)| u == users) {
                Some((_, members)) => members.push(i),
                None => groups.push((users.clone(), vec![i])),
            }
        }
        let mut files: Vec<Readers> = Vec::new();
        let mut ranges = vec![
            ShardRange {
                shard: 0,
                offset: 0,
                bytes: 0
            };
            self.blobs.len()
        ];
        for (users, members) in groups {
            let mut open = false;
            for i in members {
                let bytes = &self.blobs[i].0;
                let full = files
                    .last()
                    .is_none_or(|(s, _)| !s.is_empty() && s.len() + bytes.len() > SHARD_BYTES);
                if !open || full {
                    files.push((Vec::new(), users.clone()));
                    open = true;
                }
                let shard = files.len() - 1;
                let current = &mut files[shard].0;
                ranges[i] = ShardRange {
                    shard,
                    offset: current.len() as u64,
                    bytes: bytes.len() as u64,
                };
                current.extend_from_slice(bytes);
            }
        }
        (files, ranges)
    }
}

/// The sizes value `v` of the bound model has (at their largest, where
/// they are dynamic) and, where some are dynamic, its shape at run time;
/// no sizes where its shape is not known (no backend can then build it).
fn bound_shape(model: &Model, v: wpc_ir::ValueId) -> (Vec<u64>, Option<Vec<manifest::SizeExpr>>) {
    let Some(dims) = model.graph.value(v).ty.shape.exprs() else {
        return (Vec::new(), None);
    };
    let range = |s: &str| wpc_ir::graph::dim_range(&model.dim_ranges, s);
    let largest: Option<Vec<u64>> = dims
        .iter()
        .map(|d| d.bounds(&range).and_then(|(_, hi)| u64::try_from(hi).ok()))
        .collect();
    let dynamic = dims.iter().any(|d| d.as_const().is_none());
    match largest {
        Some(bound) => (
            bound,
            dynamic.then(|| dims.iter().map(manifest::SizeExpr::of).collect()),
        ),
        None => (Vec::new(), None),
    }
}

/// The declared shape of each model input and output, before binding.
fn tensor_infos(model: &Model, values: &[wpc_ir::ValueId]) -> Vec<TensorInfo> {
    let g = &model.graph;
    values
        .iter()
        .map(|&v| {
            let value = g.value(v);
            let (dtype, dims) = match g.constants.get(&v) {
                Some(t) => (
                    t.dtype(),
                    t.shape().iter().map(|&d| Dim::Known(d)).collect(),
                ),
                None => (
                    value.ty.dtype.unwrap_or(wpc_ir::DType::F32),
                    value
                        .ty
                        .shape
                        .dims()
                        .map(<[Dim]>::to_vec)
                        .unwrap_or_default(),
                ),
            };
            TensorInfo {
                name: value.name.clone(),
                dtype: dtype.name().to_string(),
                shape: dims
                    .iter()
                    .map(|d| match d {
                        Dim::Known(n) => DimInfo::Size(*n as u64),
                        Dim::Symbol(s) => DimInfo::Symbol(s.clone()),
                        Dim::Expr(e) => DimInfo::Symbol(e.to_string()),
                        Dim::Unknown => DimInfo::Symbol("?".into()),
                    })
                    .collect(),
                bound: Vec::new(),
                run_shape: None,
            }
        })
        .collect()
}

/// Gives every model input the concrete shape that `dims` (symbol sizes)
/// and `input_shapes` (whole shapes, for unnamed dims) bind it to, after
/// checking each against the model and each other
/// ([`crate::binding::resolve`]).
pub fn bind_inputs(
    model: &mut Model,
    dims: &HashMap<String, crate::binding::Sizes>,
    input_shapes: &HashMap<String, Vec<usize>>,
) -> wpc_ir::Result<()> {
    bind_inputs_within(model, dims, input_shapes, None).map(|_| ())
}

/// [`bind_inputs`] for compiling: with `budget` (the memory budget and
/// the largest storage binding, in bytes), a symbol nothing sizes is left
/// to run time, bounded by the largest size at which the model fits them
/// ([`default_bound`]). Returns those symbols.
fn bind_inputs_within(
    model: &mut Model,
    dims: &HashMap<String, crate::binding::Sizes>,
    input_shapes: &HashMap<String, Vec<usize>>,
    budget: Option<(u64, u64)>,
) -> wpc_ir::Result<Vec<String>> {
    let declared = crate::binding::declared_inputs(model);
    let symbols = crate::binding::said_by_dim_flags(dims);
    let given = crate::binding::given_by_shape_flags(input_shapes);
    let resolved = crate::binding::resolve_with(&declared, &symbols, &given, budget.is_some())?;
    wpc_passes::bind::bind_input_shapes(model, &resolved.shapes);
    model.dim_ranges = resolved
        .ranges
        .iter()
        .map(|(s, r)| (s.clone(), (r.lo, r.hi)))
        .collect();
    if let (Some((budget, binding)), false) = (budget, resolved.open.is_empty()) {
        let max = default_bound(model, &resolved.open, budget, binding)?;
        for s in &resolved.open {
            model.dim_ranges.insert(s.clone(), (1, max));
        }
    }
    Ok(resolved.open)
}

/// The largest size up to which every one of `open` may grow (the other
/// symbols at their largest) with every shape the model computes still
/// known (a model may only take sizes up to some bound: a table of
/// position embeddings sliced to the sequence), each tensor within one
/// storage binding of `limits`, and all the tensors the model computes
/// fitting in `budget` bytes at once (a bound on what any plan needs, as
/// plans reuse memory). Refused where even size 1 does not fit.
fn default_bound(
    model: &Model,
    open: &[String],
    budget: u64,
    binding_limit: u64,
) -> wpc_ir::Result<usize> {
    let fits = |max: i64| -> bool {
        let mut shaped = model.clone();
        for s in open {
            shaped.dim_ranges.insert(s.clone(), (1, max as usize));
        }
        if wpc_passes::optimize(&mut shaped).is_err() {
            return false;
        }
        let g = &shaped.graph;
        let value = |s: &str| shaped.dim_ranges.get(s).map(|&(_, hi)| hi as i64);
        let mut total = 0u64;
        let values = g
            .node_ids()
            .flat_map(|n| g.node(n).outputs.clone())
            .flatten()
            .chain(g.inputs.iter().copied());
        for v in values {
            let ty = &g.value(v).ty;
            let bytes = ty
                .shape
                .numel_expr()
                .and_then(|e| u64::try_from(e.eval(&value)?).ok())
                .zip(ty.dtype)
                .and_then(|(n, dt)| n.checked_mul(dt.size() as u64));
            match bytes {
                Some(b) if b <= binding_limit => total = total.saturating_add(b),
                _ => return false,
            }
        }
        total <= budget
    };
    if !fits(1) {
        return Err(Error::unsupported(format!(
            "the model does not fit the target at {} = 1 (every shape known, each tensor within \
             one storage binding, all within the memory budget of {} MiB): give its sizes with --dim",
            open.join(", "),
            budget >> 20
        )));
    }
    // The largest fitting size, by doubling then bisecting.
    let (mut lo, mut hi) = (1i64, 2i64);
    while hi <= MAX_DEFAULT_BOUND && fits(hi) {
        (lo, hi) = (hi, hi * 2);
    }
    let mut hi = hi.min(MAX_DEFAULT_BOUND + 1);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo as usize)
}

/// The largest default bound [`default_bound`] gives a symbol: sizes past
/// it are not what a dim left open is for.
const MAX_DEFAULT_BOUND: i64 = 1 << 16;

/// The model as a backend or the reference interpreter runs it: frozen
/// inputs made constants, every input bound to a concrete shape, and the
/// graph passes run, weights quantized as [`effective_precision`] says.
pub fn prepare(model: &Model, options: &Options) -> wpc_ir::Result<Model> {
    let mut bound = model.clone();
    wpc_passes::bind::freeze_inputs(&mut bound, &options.frozen)?;
    bind_inputs(&mut bound, &options.dims, &options.input_shapes)?;
    wpc_passes::optimize(&mut bound)?;
    quantize(model, &mut bound, options)?;
    Ok(bound)
}

/// Quantizes `bound` (`model` bound and optimized) as
/// [`effective_precision`] says; returns what it did and, where the
/// target profile decided, why.
fn quantize(
    model: &Model,
    bound: &mut Model,
    options: &Options,
) -> wpc_ir::Result<(Option<wpc_passes::quant::QuantReport>, Option<String>)> {
    let (precision, why) = effective_precision(bound, options)?;
    let Some(p) = precision else {
        return Ok((None, why));
    };
    let calibration = calibrate(model, bound, options)?;
    let report = wpc_passes::quant::quantize_weights_reporting(bound, &p, &calibration, &|s, d, t| {
        options.progress.report(s, d, t)
    })
    .map_err(|e| match &why {
        Some(_) => e.within(format!(
            "fitting the weights to the {} profile's memory budget (--weights f32 keeps them float)",
            options.profile.name
        )),
        None => e,
    })?;
    Ok((Some(report), why))
}

/// The precision `bound` (a model bound and optimized) is quantized
/// with, and why when it is the target profile's default rather than
/// `options.precision`: the profile's `precision` where that is an
/// integer width; else, where the float weights exceed the profile's
/// `memory_budget_mib`, a fit to that budget, unless the weights
/// quantization cannot shrink exceed it alone (then they stay float, and
/// the reason says so). `None`: the weights stay float32.
pub fn effective_precision(
    bound: &Model,
    options: &Options,
) -> wpc_ir::Result<(Option<wpc_passes::quant::Precision>, Option<String>)> {
    use wpc_passes::quant::{Precision, Setting, fit::human};
    if options.precision.is_some() {
        return Ok((options.precision.clone(), None));
    }
    let profile = &options.profile;
    if let Some(bits) = profile.precision.bits() {
        let setting = Setting {
            bits: Some(bits),
            ..Setting::DEFAULT
        };
        let why = format!(
            "quantized to {bits} bits, the {} profile's precision (--weights f32 keeps them float)",
            profile.name
        );
        return Ok((Some(Precision::uniform(setting)), Some(why)));
    }
    let float_bytes: u64 = bound
        .graph
        .constants
        .values()
        .filter(|t| t.dtype().is_float())
        .map(|t| (t.len() * t.dtype().size()) as u64)
        .sum();
    let budget = profile.memory_budget_mib << 20;
    if float_bytes <= budget {
        return Ok((None, None));
    }
    let over = format!(
        "{} in float, over the {} profile's memory budget of {} MiB",
        human(float_bytes),
        profile.name,
        profile.memory_budget_mib
    );
    let fixed = float_bytes.saturating_sub(wpc_passes::quant::quantizable_bytes(bound)?);
    if fixed > budget {
        let why = format!(
            "{over}, and {} of them are weights quantization cannot shrink (norms, biases, depthwise and transposed convolutions): kept float",
            human(fixed)
        );
        return Ok((None, Some(why)));
    }
    let mut fit = Precision::uniform(Setting::DEFAULT);
    fit.fit = Some(budget);
    let why = format!(
        "{over}: fitted to it (--fit SIZE or --weights choose otherwise; --weights f32 keeps them float)"
    );
    Ok((Some(fit), Some(why)))
}

/// What the calibration samples say about `model`'s layers: measured
/// on the model prepared for the samples' own shapes (they need not be
/// the sizes it is compiled or run at). The largest run is kept to
/// measure sensitivity and accuracy on `target` (`model` bound and
/// optimized for the sizes it is compiled at) where that takes the run's
/// sizes ([`takes`]): every layer quantized is then in the model measured
/// (preparing for the run's own sizes can fold some away, such as a
/// position-embedding lookup whose indices are then constant).
fn calibrate(
    model: &Model,
    target: &Model,
    options: &Options,
) -> wpc_ir::Result<wpc_passes::quant::Calibration> {
    let mut calibration = wpc_passes::quant::Calibration::default();
    let runs = &options.calibration;
    let shapes_of = |feeds: &HashMap<String, wpc_ir::Tensor>| -> HashMap<String, Vec<usize>> {
        feeds
            .iter()
            .map(|(name, t)| (name.clone(), t.shape().to_vec()))
            .collect()
    };
    let prepare_for = |i: usize| -> wpc_ir::Result<Model> {
        let mut probe = model.clone();
        wpc_passes::bind::freeze_inputs(&mut probe, &options.frozen)?;
        bind_inputs(&mut probe, &HashMap::new(), &shapes_of(&runs[i])).map_err(|e| {
            e.within(format!(
                "binding calibration run {} of {}",
                i + 1,
                runs.len()
            ))
        })?;
        wpc_passes::optimize(&mut probe)?;
        Ok(probe)
    };
    // One prepared model at a time, for all the runs of its shapes. The
    // largest run is kept with its model: `--fit` measures each layer's
    // sensitivity on it, and the report the whole model's accuracy.
    let largest = (0..runs.len()).max_by_key(|&i| runs[i].values().map(|t| t.len()).sum::<usize>());
    let mut done = vec![false; runs.len()];
    let stage = "running calibration samples";
    let mut finished = 0;
    for i in 0..runs.len() {
        if done[i] {
            continue;
        }
        let probe = prepare_for(i)?;
        let shapes = shapes_of(&runs[i]);
        for j in i..runs.len() {
            if !done[j] && shapes_of(&runs[j]) == shapes {
                options.progress.report(stage, finished, runs.len());
                calibration.add_run(&probe, &runs[j])?;
                done[j] = true;
                finished += 1;
            }
        }
        if let Some(l) = largest.filter(|&l| shapes_of(&runs[l]) == shapes) {
            let model = if takes(target, &runs[l]) {
                target.clone()
            } else {
                probe
            };
            calibration.keep_sample_run(model, runs[l].clone())?;
        }
    }
    options.progress.report(stage, finished, runs.len());
    Ok(calibration)
}

/// Whether `model` runs on `feeds` as prepared: every input fed, each
/// known dim the feed's and each symbol's size within its range.
fn takes(model: &Model, feeds: &HashMap<String, wpc_ir::Tensor>) -> bool {
    let g = &model.graph;
    g.inputs
        .iter()
        .filter(|v| !g.constants.contains_key(v))
        .all(|&v| {
            let (Some(t), Some(dims)) = (feeds.get(&g.value(v).name), g.value(v).ty.shape.dims())
            else {
                return false;
            };
            dims.len() == t.rank()
                && dims.iter().zip(t.shape()).all(|(d, &n)| match d {
                    Dim::Known(k) => *k == n,
                    Dim::Symbol(s) => model
                        .dim_ranges
                        .get(s)
                        .is_none_or(|&(lo, hi)| (lo..=hi).contains(&n)),
                    _ => false,
                })
        })
}

fn check_steering_inputs(model: &Model) -> wpc_ir::Result<()> {
    let names = wpc_passes::bind::steering_inputs(model);
    if names.is_empty() {
        return Ok(());
    }
    Err(Error::unsupported(format!(
        "model input(s) {} steer kernels (axes, pads, slice bounds or an If's condition) and must be fixed at compile time: freeze them with --freeze NAME=FILE.npy",
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Compiles an in-memory model. `source` is the model file's bytes (for
/// the manifest's hash) and `name` its file name.
pub fn compile_model(
    model: &Model,
    name: &str,
    source: &[u8],
    options: &Options,
) -> wpc_ir::Result<Bundle> {
    compile_model_report(model, name, source, options).map(|c| c.bundle)
}

/// [`compile_model`], also reporting the variants left out and why.
pub fn compile_model_report(
    model: &Model,
    name: &str,
    source: &[u8],
    options: &Options,
) -> wpc_ir::Result<Compiled> {
    wpc_ir::ops::check_model(model)?;
    let mut bound = model.clone();
    wpc_passes::bind::freeze_inputs(&mut bound, &options.frozen)?;
    check_steering_inputs(&bound)?;
    let mut inputs = tensor_infos(&bound, &bound.graph.inputs);
    let mut outputs = tensor_infos(&bound, &bound.graph.outputs);
    let limits = &options.profile.webgpu.limits;
    let budget = (
        options.profile.memory_budget_mib << 20,
        limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size),
    );
    let defaulted = bind_inputs_within(
        &mut bound,
        &options.dims,
        &options.input_shapes,
        Some(budget),
    )?;
    wpc_passes::optimize(&mut bound)?;
    let (quant, default_precision) = quantize(model, &mut bound, options)?;
    let g = &bound.graph;
    for (info, &v) in inputs
        .iter_mut()
        .zip(&g.inputs)
        .chain(outputs.iter_mut().zip(&g.outputs))
    {
        (info.bound, info.run_shape) = match g.constants.get(&v) {
            Some(t) => (t.shape().iter().map(|&d| d as u64).collect(), None),
            None => bound_shape(&bound, v),
        };
        // A tensor the model declares no shape for takes its rank from
        // the binding: each axis is open in the declaration.
        if info.shape.is_empty() && !info.bound.is_empty() {
            info.shape = vec![DimInfo::Symbol("?".into()); info.bound.len()];
        }
        // A size only the data decides is open whatever the model says.
        for (declared, run) in info.shape.iter_mut().zip(info.run_shape.iter().flatten()) {
            if let wpc_ir::sym::Term::Sym(s) = &run.0
                && bound.counted_dims.contains_key(s)
            {
                *declared = DimInfo::Symbol(s.clone());
            }
        }
    }
    let mut files = std::collections::BTreeMap::new();
    let mut shards = Shards::default();
    let mut variants = Vec::new();
    let mut skipped = Vec::new();
    let mut passes = Vec::new();
    let mut backends: Vec<(Box<dyn Backend>, Need)> = Vec::new();
    if options.webgpu != Need::No {
        let wgsl = wpc_codegen_wgsl::Options {
            demote_f64: options.demote_f64,
        };
        let backend = wpc_codegen_wgsl::WebGpu::new(&bound, &options.profile, wgsl);
        backends.push((Box::new(backend), options.webgpu));
    }
    if options.wasm != Need::No {
        if options.wasm_isas.is_none() {
            for isa in Isa::ALL.into_iter().filter(|i| !options.isas().contains(i)) {
                skipped.push((
                    isa.name().to_string(),
                    format!(
                        "the target profile '{}' does not allow {} (its wasm settings: simd {}, relaxed_simd {})",
                        options.profile.name,
                        isa.features().join(" and "),
                        options.profile.wasm.simd,
                        options.profile.wasm.relaxed_simd
                    ),
                ));
            }
        }
        let backend = wpc_codegen_wasm::Wasm::new(&bound, options.isas());
        backends.push((Box::new(backend), options.wasm));
    }
    for (backend, need) in &backends {
        let (model, stats) = match for_variant(&bound, backend.as_ref(), options.fuse) {
            Ok(prepared) => prepared,
            // The backend cannot run a node: every variant it builds is out.
            Err(e) if *need == Need::IfPossible && e.kind == wpc_ir::ErrorKind::Unsupported => {
                for name in backend.variants() {
                    skipped.push((name, e.to_string()));
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        passes.push(stats);
        for name in backend.variants() {
            match backend.lower(&model, &name) {
                Ok(lowered) => variants.push(store(lowered, &mut shards, &mut files)),
                Err(e) if *need == Need::IfPossible => skipped.push((name, e.to_string())),
                Err(e) => return Err(e),
            }
        }
    }
    if variants.is_empty() {
        return Err(Error::unsupported(match skipped.first() {
            Some((name, why)) => format!("no variant could be built ({name}: {why})"),
            None => "no backend selected".to_string(),
        }));
    }
    if options.js_runtime {
        for (file, bytes) in wpc_runtime::js::bundle_files() {
            files.insert(file, bytes.to_vec());
        }
    }
    // Everything written so far is code (shaders, modules, the runtime);
    // shards follow.
    let code = files
        .iter()
        .map(|(file, bytes)| CodeFile {
            file: file.clone(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        })
        .collect();
    let (shard_files, ranges) = shards.layout();
    for v in &mut variants {
        for r in v.shard_ranges_mut() {
            *r = ranges[r.shard].clone();
        }
    }
    let shards = shard_files
        .into_iter()
        .enumerate()
        .map(|(i, (bytes, variants))| {
            let file = format!("weights-{i:03}.bin");
            let shard = Shard {
                file: file.clone(),
                bytes: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
                priority: i as u32,
                variants,
            };
            files.insert(file, bytes);
            shard
        })
        .collect();
    Ok(Compiled {
        defaulted,
        bundle: Bundle {
            manifest: Manifest {
                format: manifest::FORMAT.into(),
                version: manifest::VERSION,
                model: ModelInfo {
                    name: name.to_string(),
                    producer: model.producer.clone(),
                    sha256: sha256_hex(source),
                },
                target: options.profile.name.clone(),
                dims: bound
                    .dim_ranges
                    .iter()
                    .map(|(name, &(min, max))| manifest::DimRange {
                        name: name.clone(),
                        min: min as u64,
                        max: max as u64,
                        counted_in: bound.counted_dims.get(name).cloned(),
                    })
                    .collect(),
                inputs,
                outputs,
                shards,
                code,
                variants,
            },
            files,
        },
        skipped,
        passes,
        external_data: model.external_data.clone(),
        quant,
        default_precision,
    })
    .and_then(|c| {
        // What wpc writes, wpc must read back: the same checks as
        // `Bundle::read`, so a compiler bug is caught here, not by a user.
        c.bundle.manifest.validate().map_err(|reason| {
            Error::new(
                wpc_ir::ErrorKind::Internal,
                format!("the bundle's manifest is inconsistent: {reason}"),
            )
        })?;
        Ok(c)
    })
}

/// Puts a lowered variant's code into `files` and its weights into
/// `shards` (in the order its kernels first read them), and returns its
/// manifest entry, its ranges still naming blobs until the shards are
/// laid out.
fn store(
    lowered: Lowered,
    shards: &mut Shards,
    files: &mut std::collections::BTreeMap<String, Vec<u8>>,
) -> Variant {
    let Lowered {
        mut variant,
        files: code,
        weights,
    } = lowered;
    // Files of the same name are the same bytes (the reference kernels
    // every wasm variant imports).
    files.extend(code);
    let name = variant.name().to_string();
    let mut ranges = variant.shard_ranges_mut();
    for (range, bytes) in weights {
        *ranges[range] = shards.add(&name, &bytes);
    }
    variant
}

/// Reads, checks and compiles a model file; errors name the file.
pub fn compile_file(path: &Path, options: &Options) -> Result<Compiled> {
    let model = crate::load(path)?;
    let source = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    compile_model_report(&model, &name, &source, options)
        .map_err(|e| anyhow::Error::new(e.within(path.display().to_string())))
}
