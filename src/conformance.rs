//! The ONNX conformance runner: runs every case of a directory written by
//! `scripts/gen_conformance.py` on one backend and tallies pass / fail /
//! unsupported per op.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use wpc_ir::{ErrorKind, Model, Tensor};

use crate::compare::{Tolerance, compare};

/// What happened to one case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed(String),
    Unsupported(String),
}

/// One case's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseResult {
    pub name: String,
    pub op: String,
    pub outcome: Outcome,
}

/// Per-op counts.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub unsupported: usize,
}

/// The whole run, as written by `--json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub backend: String,
    pub passed: usize,
    pub failed: usize,
    pub unsupported: usize,
    pub total: usize,
    pub by_op: BTreeMap<String, Counts>,
    pub cases: Vec<CaseResult>,
}

/// A backend the runner can drive: loads inputs, returns outputs.
pub trait Backend: Sync {
    fn name(&self) -> &str;
    fn run(&self, model: &Model, inputs: Vec<Tensor>) -> wpc_ir::Result<Vec<Tensor>>;
    /// The tolerance this backend is held to for outputs of `dtype`.
    fn tolerance(&self, dtype: wpc_ir::DType) -> Tolerance {
        Tolerance::for_dtype(dtype)
    }
}

/// The reference interpreter as a conformance backend.
pub struct Reference;

impl Backend for Reference {
    fn name(&self) -> &str {
        "reference"
    }

    /// Runs the standard passes first, so every case also checks that they
    /// preserve the model's meaning.
    fn run(&self, model: &Model, inputs: Vec<Tensor>) -> wpc_ir::Result<Vec<Tensor>> {
        let mut model = model.clone();
        wpc_passes::optimize(&mut model)?;
        let g = &model.graph;
        let named = g
            .inputs
            .iter()
            .map(|&i| g.value(i).name.clone())
            .zip(inputs)
            .collect();
        Ok(wpc_ir::interp::run_model(&model, &named)?
            .into_iter()
            .map(|(_, t)| t)
            .collect())
    }
}

/// The WebGPU backend: each case is compiled for a target profile (its
/// input shapes bound to the test data's) and run through wgpu.
pub struct WebGpu {
    pub gpu: wpc_runtime::webgpu::Gpu,
    pub profile: wpc_targets::Profile,
}

/// Maps a runtime error onto the IR's error kinds: a value WebGPU cannot
/// hold is unsupported, anything the GPU rejects is a compiler bug.
pub fn runtime_error(e: wpc_runtime::Error) -> wpc_ir::Error {
    match e {
        wpc_runtime::Error::Bundle(wpc_runtime::BundleError::Input(msg))
            if msg.contains("does not fit") =>
        {
            wpc_ir::Error::unsupported(msg)
        }
        wpc_runtime::Error::Bundle(wpc_runtime::BundleError::Input(msg)) => {
            wpc_ir::Error::invalid(msg)
        }
        wpc_runtime::Error::Unsupported(msg) => wpc_ir::Error::unsupported(msg),
        other => wpc_ir::Error::new(ErrorKind::Internal, other.to_string()),
    }
}

/// Compiles a case for a kernel backend: inputs that steer kernels (axes,
/// pads, ...) frozen to the case's values, as `wpc compile --freeze`
/// would; every dim the model names (or leaves unnamed: the importer
/// names those) left to run time, bounded by the case's size
/// (`--dim NAME=1..SIZE`); the other dims and inputs without a declared
/// shape bound to the case's. Returns the bundle and the inputs still fed
/// at run time.
fn compile_case(
    model: &Model,
    inputs: Vec<Tensor>,
    mut options: crate::compile::Options,
) -> wpc_ir::Result<(wpc_runtime::Bundle, Vec<Tensor>)> {
    let mut model = model.clone();
    let g = &mut model.graph;
    for (&v, t) in g.inputs.clone().iter().zip(&inputs) {
        let declared = g.value(v).ty.shape.dims().map(<[wpc_ir::Dim]>::to_vec);
        let dims = match declared.filter(|d| d.len() == t.shape().len()) {
            Some(dims) => dims
                .into_iter()
                .zip(t.shape())
                .map(|(d, &size)| match d {
                    wpc_ir::Dim::Symbol(s) => {
                        options.dims.insert(
                            s.clone(),
                            crate::binding::Sizes {
                                lo: size.min(1),
                                hi: size,
                            },
                        );
                        wpc_ir::Dim::Symbol(s)
                    }
                    _ => wpc_ir::Dim::Known(size),
                })
                .collect(),
            None => t.shape().iter().map(|&s| wpc_ir::Dim::Known(s)).collect(),
        };
        g.value_mut(v).ty.shape = wpc_ir::Shape(Some(dims));
    }
    let steering = wpc_passes::bind::steering_inputs(&model);
    let g = &model.graph;
    let mut fed = Vec::new();
    for (&v, t) in g.inputs.iter().zip(inputs) {
        let name = &g.value(v).name;
        if steering.contains(name) {
            options.frozen.insert(name.clone(), t);
        } else {
            fed.push(t);
        }
    }
    let bundle = crate::compile::compile_model(&model, "model.onnx", &[], &options)?;
    Ok((bundle, fed))
}

/// Kernel backends compute floats in f32 with approximated transcendentals:
/// floats get an absolute floor of 1e-4 (relative 1e-3 as on the reference).
fn kernel_tolerance(dtype: wpc_ir::DType) -> Tolerance {
    let t = Tolerance::for_dtype(dtype);
    if dtype.is_float() {
        Tolerance {
            rtol: t.rtol,
            atol: t.atol.max(1e-4),
        }
    } else {
        t
    }
}

impl Backend for WebGpu {
    fn name(&self) -> &str {
        "webgpu"
    }

    fn run(&self, model: &Model, inputs: Vec<Tensor>) -> wpc_ir::Result<Vec<Tensor>> {
        let mut options = crate::compile::Options::new(self.profile.clone());
        options.wasm = crate::compile::Need::No;
        let (bundle, fed) = compile_case(model, inputs, options)?;
        let session =
            wpc_runtime::webgpu::Session::load(&self.gpu, &bundle).map_err(runtime_error)?;
        session.run(&fed).map_err(runtime_error)
    }

    fn tolerance(&self, dtype: wpc_ir::DType) -> Tolerance {
        kernel_tolerance(dtype)
    }
}

/// A WebAssembly backend: each case compiled to one wasm variant and run
/// through wasmtime.
pub struct Wasm {
    /// Options that build just this variant.
    pub options: crate::compile::Options,
    pub isa: wpc_codegen_wasm::Isa,
}

impl Backend for Wasm {
    fn name(&self) -> &str {
        self.isa.name()
    }

    fn run(&self, model: &Model, inputs: Vec<Tensor>) -> wpc_ir::Result<Vec<Tensor>> {
        let (bundle, fed) = compile_case(model, inputs, self.options.clone())?;
        let mut session =
            wpc_runtime::wasm::Session::load(&bundle, self.isa.name()).map_err(runtime_error)?;
        session.run(&fed).map_err(runtime_error)
    }

    fn tolerance(&self, dtype: wpc_ir::DType) -> Tolerance {
        kernel_tolerance(dtype)
    }
}

/// The case directories under `dir`, sorted by name.
pub fn list_cases(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list conformance cases in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    cases.sort();
    Ok(cases)
}

/// The op a case tests: the model's op whose squashed lower-case name is the
/// longest prefix of the squashed case name (`test_reduce_sum_keepdims` →
/// `ReduceSum`), else the model's first op.
pub fn case_op(case_name: &str, model: &Model) -> String {
    let squashed: String = case_name
        .trim_start_matches("test_")
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_lowercase();
    let g = &model.graph;
    let ops: Vec<String> = g
        .topo_order()
        .unwrap_or_default()
        .into_iter()
        .map(|n| g.node(n).op.clone())
        .collect();
    ops.iter()
        .filter(|op| squashed.starts_with(&op.to_lowercase()))
        .max_by_key(|op| op.len())
        .or(ops.first())
        .cloned()
        .unwrap_or_else(|| "(empty)".to_string())
}

fn classify(e: &wpc_ir::Error) -> Outcome {
    match e.kind {
        ErrorKind::Unsupported => Outcome::Unsupported(e.to_string()),
        _ => Outcome::Failed(e.to_string()),
    }
}

/// Runs one case: every data set must match every stored output.
fn run_case(dir: &Path, backend: &dyn Backend) -> (String, Outcome) {
    let model = match wpc_ir::onnx::load_model(&dir.join("model.onnx")) {
        Ok(m) => m,
        Err(e) => return ("(unloadable)".into(), classify(&e)),
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let op = case_op(&name, &model);
    if let Err(e) = wpc_ir::ops::check_model(&model) {
        return (op, classify(&e));
    }
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    sets.sort();
    if sets.is_empty() {
        return (
            op,
            Outcome::Unsupported("case has no tensor test data (non-tensor inputs)".into()),
        );
    }
    for set in sets {
        let load = |prefix: &str, n: usize| -> Result<Vec<Tensor>, Outcome> {
            (0..n)
                .map(|i| {
                    let p = set.join(format!("{prefix}_{i}.pb"));
                    if !p.exists() {
                        return Err(Outcome::Unsupported(format!(
                            "{prefix} {i} is not a tensor"
                        )));
                    }
                    wpc_ir::onnx::load_tensor_file(&p).map_err(|e| classify(&e))
                })
                .collect()
        };
        let g = &model.graph;
        let inputs = match load("input", g.inputs.len()) {
            Ok(v) => v,
            Err(o) => return (op, o),
        };
        let expected = match load("output", g.outputs.len()) {
            Ok(v) => v,
            Err(o) => return (op, o),
        };
        let got = match backend.run(&model, inputs) {
            Ok(v) => v,
            Err(e) => return (op, classify(&e)),
        };
        for (k, (g_t, w_t)) in got.iter().zip(&expected).enumerate() {
            if let Err(why) = compare(g_t, w_t, backend.tolerance(w_t.dtype())) {
                return (op, Outcome::Failed(format!("output {k}: {why}")));
            }
        }
    }
    (op, Outcome::Passed)
}

/// Runs every case in `dir` (optionally only those of op `filter`) on
/// `threads` worker threads; `progress` is called after each case.
pub fn run_all(
    dir: &Path,
    backend: &dyn Backend,
    filter: Option<&str>,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Report> {
    let cases = list_cases(dir)?;
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(cases.len()));
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(dir) = cases.get(i) else { break };
                    let name = dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    // A panic is a bug in wpc, but one case must not stop the run.
                    let (op, outcome) = catch_unwind(AssertUnwindSafe(|| run_case(dir, backend)))
                        .unwrap_or_else(|p| {
                            let msg = p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            (
                                "(panicked)".into(),
                                Outcome::Failed(format!("internal error (panic): {msg}")),
                            )
                        });
                    let keep =
                        filter.is_none_or(|f| op.eq_ignore_ascii_case(f) || name.contains(f));
                    if keep {
                        results.lock().expect("no poisoning").push(CaseResult {
                            name,
                            op,
                            outcome,
                        });
                    }
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, cases.len());
                }
            });
        }
    });
    let mut cases = results.into_inner().expect("no poisoning");
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    let mut by_op: BTreeMap<String, Counts> = BTreeMap::new();
    for c in &cases {
        let e = by_op.entry(c.op.clone()).or_default();
        match c.outcome {
            Outcome::Passed => e.passed += 1,
            Outcome::Failed(_) => e.failed += 1,
            Outcome::Unsupported(_) => e.unsupported += 1,
        }
    }
    let count = |f: fn(&Outcome) -> bool| cases.iter().filter(|c| f(&c.outcome)).count();
    Ok(Report {
        backend: backend.name().to_string(),
        passed: count(|o| matches!(o, Outcome::Passed)),
        failed: count(|o| matches!(o, Outcome::Failed(_))),
        unsupported: count(|o| matches!(o, Outcome::Unsupported(_))),
        total: cases.len(),
        by_op,
        cases,
    })
}

impl Report {
    /// The per-op table and the closing summary line.
    pub fn render(&self, verbose: bool) -> String {
        let mut s = format!(
            "{:<36} {:>7} {:>7} {:>12}\n",
            "op", "passed", "failed", "unsupported"
        );
        for (op, c) in &self.by_op {
            s += &format!(
                "{op:<36} {:>7} {:>7} {:>12}\n",
                c.passed, c.failed, c.unsupported
            );
        }
        if verbose {
            for c in &self.cases {
                match &c.outcome {
                    Outcome::Passed => {}
                    Outcome::Failed(r) => s += &format!("FAILED      {}: {r}\n", c.name),
                    Outcome::Unsupported(r) => s += &format!("UNSUPPORTED {}: {r}\n", c.name),
                }
            }
        }
        s += &format!(
            "conformance {}: {} passed, {} failed, {} unsupported, {} total\n",
            self.backend, self.passed, self.failed, self.unsupported, self.total
        );
        s
    }

    /// Cases that pass in `baseline` but not here.
    pub fn regressions(&self, baseline: &Baseline) -> Vec<String> {
        let passing: std::collections::HashSet<&str> = self
            .cases
            .iter()
            .filter(|c| c.outcome == Outcome::Passed)
            .map(|c| c.name.as_str())
            .collect();
        baseline
            .passing
            .iter()
            .filter(|n| !passing.contains(n.as_str()))
            .cloned()
            .collect()
    }

    pub fn baseline(&self) -> Baseline {
        Baseline {
            backend: self.backend.clone(),
            passed: self.passed,
            passing: self
                .cases
                .iter()
                .filter(|c| c.outcome == Outcome::Passed)
                .map(|c| c.name.clone())
                .collect(),
        }
    }
}

/// The checked-in record of which cases pass: CI fails if one stops passing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Baseline {
    pub backend: String,
    pub passed: usize,
    pub passing: Vec<String>,
}
