//! The `wpc` command-line tool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use wpc::conformance::{self, Baseline};
use wpc::inputs::{self, InputSource};
use wpc::runtime::manifest::Variant;

/// wpc compiles ONNX models into per-browser kernel bundles: WGSL compute
/// shaders tuned per browser (WebGPU), with weight shards and a manifest a
/// runtime reads. Bundles run natively through wgpu (`wpc run BUNDLE`);
/// the reference interpreter (`wpc run model.onnx`) is the oracle every
/// backend is tested against.
///
/// Exit codes: 0 success, 1 a problem with the model or the command line
/// (the message names the file, node, op and reason), 2 an internal error.
#[derive(Parser)]
#[command(name = "wpc", version, propagate_version = true)]
#[command(
    after_help = "Examples:\n  wpc targets\n  wpc compile model.onnx --target safari --dim batch=1\n  wpc run model.wpc --backend webgpu --input x=random --output-dir out/\n  wpc run model.onnx --input x=random --dim batch=1 --output-dir out/\n  wpc conformance ~/.cache/wpc-conformance --backend webgpu --json report.json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum BackendName {
    /// The reference interpreter (CPU, exact ONNX semantics).
    Reference,
    /// The bundle's WebGPU variant, through wgpu on Vulkan.
    Webgpu,
    /// The bundle's SIMD128 WebAssembly variant, through wasmtime.
    Wasm,
    /// The relaxed-SIMD WebAssembly variant, through wasmtime.
    WasmRelaxed,
    /// The scalar (no SIMD) WebAssembly variant, through wasmtime.
    WasmScalar,
}

impl BackendName {
    /// The WebAssembly variant this backend runs, if it is one.
    fn isa(self) -> Option<wpc::codegen_wasm::Isa> {
        use wpc::codegen_wasm::Isa;
        match self {
            BackendName::Wasm => Some(Isa::Simd),
            BackendName::WasmRelaxed => Some(Isa::Relaxed),
            BackendName::WasmScalar => Some(Isa::Scalar),
            BackendName::Reference | BackendName::Webgpu => None,
        }
    }

    /// Compile options that build just this backend's variant.
    fn options(self, profile: wpc::targets::Profile) -> wpc::compile::Options {
        use wpc::compile::Need;
        let mut o = wpc::compile::Options::new(profile);
        match self.isa() {
            Some(isa) => {
                o.webgpu = Need::No;
                o.wasm = Need::Required;
                o.wasm_isas = Some(vec![isa]);
            }
            None => o.wasm = Need::No,
        }
        o
    }
}

/// Which target profile to compile for.
#[derive(clap::Args, Clone)]
struct TargetArgs {
    /// A shipped profile (see `wpc targets`).
    #[arg(long, default_value = "webgpu-baseline")]
    target: String,
    /// A profile of your own (RON; see targets/profiles/ for the schema);
    /// overrides --target.
    #[arg(long, value_name = "FILE")]
    target_file: Option<PathBuf>,
}

impl TargetArgs {
    fn profile(&self) -> Result<wpc::targets::Profile> {
        Ok(match &self.target_file {
            Some(path) => wpc::targets::Profile::from_file(path)?,
            None => wpc::targets::builtin(&self.target)?,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Summarise a model: opsets, inputs and outputs with symbolic shapes,
    /// op histogram, parameter count, and every node wpc cannot run.
    Inspect {
        /// The .onnx file (external data is read from beside it).
        model: PathBuf,
    },
    /// List the shipped target profiles.
    Targets,
    /// Time a model's WebGPU variant through wgpu (median per inference),
    /// and/or the GEMM kernel on N x N x N matrices in GFLOP/s.
    Bench {
        /// An .onnx file (compiled for --target first) or a bundle directory.
        model: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
        /// Also time MatMul at these sizes (e.g. --matmul 1024 --matmul 4096).
        #[arg(long = "matmul", value_name = "N")]
        matmul: Vec<usize>,
        /// The adapter's peak f32 GFLOP/s, to report GEMM efficiency.
        #[arg(long, value_name = "GFLOPS")]
        peak_gflops: Option<f64>,
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// SYMBOL=VALUE for symbolic input dims of an .onnx model.
        #[arg(long = "dim", value_name = "SYMBOL=VALUE")]
        dims: Vec<String>,
    },
    /// Compile a model into a bundle directory for one target.
    Compile {
        /// The .onnx file.
        model: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
        /// Output directory (default: MODEL with .wpc in place of .onnx).
        /// Replaced atomically if it exists.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// SYMBOL=VALUE: size of a symbolic input dim (e.g. batch=1);
        /// kernels are compiled for these sizes.
        #[arg(long = "dim", value_name = "SYMBOL=VALUE")]
        dims: Vec<String>,
        /// Compute float64 tensors in float32 (WGSL has no f64).
        #[arg(long)]
        demote_f64: bool,
        /// NAME=D0xD1x...: the concrete shape of a model input (for dims
        /// the model leaves unnamed), e.g. input=1x512.
        #[arg(long = "input-shape", value_name = "NAME=SHAPE")]
        input_shapes: Vec<String>,
        /// NAME=FILE.npy: fix a model input to a value at compile time
        /// (required for inputs that steer kernels, e.g. reduction axes).
        #[arg(long = "freeze", value_name = "NAME=FILE.npy")]
        freeze: Vec<String>,
        /// Leave out the copy of the JS runtime (DIR/runtime/index.js), for
        /// pages that take it from the npm package wpc-runtime instead.
        #[arg(long)]
        no_js_runtime: bool,
    },
    /// Run a model (.onnx, reference or compiled on the fly) or a bundle
    /// directory (webgpu) on inputs from .npy files or random data, writing
    /// one <output>.npy per model output.
    Run {
        /// The .onnx file, or a bundle directory with --backend webgpu.
        model: PathBuf,
        /// Which executor runs the model.
        #[arg(long, value_enum, default_value = "reference")]
        backend: BackendName,
        /// NAME=FILE.npy, or NAME=random for a seeded random tensor of the
        /// declared shape. Repeat for every model input.
        #[arg(long = "input", value_name = "NAME=SOURCE")]
        inputs: Vec<String>,
        /// SYMBOL=VALUE: size of a symbolic dim for random inputs (e.g. batch=1).
        #[arg(long = "dim", value_name = "SYMBOL=VALUE")]
        dims: Vec<String>,
        /// Seed for random inputs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Target to compile for when MODEL is an .onnx file and the
        /// backend is webgpu.
        #[command(flatten)]
        target: TargetArgs,
        /// Directory for the output .npy files (created if missing).
        #[arg(long, short = 'o')]
        output_dir: PathBuf,
    },
    /// List every op wpc can run, and whether it has shape inference.
    Ops,
    /// Run the ONNX node conformance cases in DIR (written by
    /// scripts/gen_conformance.py) and report pass counts per op.
    Conformance {
        /// Directory of cases (<case>/model.onnx + test_data_set_*/).
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "reference")]
        backend: BackendName,
        /// Target each case is compiled for (webgpu).
        #[command(flatten)]
        target: TargetArgs,
        /// Also write the report as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Only cases of this op (e.g. Conv) or whose name contains it.
        #[arg(long, value_name = "OP")]
        filter: Option<String>,
        /// Fail (exit 1) if a case passing in this baseline file no longer passes.
        #[arg(long, value_name = "FILE")]
        baseline: Option<PathBuf>,
        /// Write the passing cases as a new baseline file.
        #[arg(long, value_name = "FILE")]
        write_baseline: Option<PathBuf>,
        /// List every failed and unsupported case with its reason.
        #[arg(long, short)]
        verbose: bool,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
}

fn main() -> ExitCode {
    // Panics are reported below as internal errors; keep stderr to one message.
    std::panic::set_hook(Box::new(|_| {}));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match std::panic::catch_unwind(|| dispatch(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            // A kernel that panicked is wpc's bug, not the user's.
            let internal = e.chain().any(|c| {
                c.downcast_ref::<wpc_ir::Error>()
                    .is_some_and(|w| w.kind == wpc_ir::ErrorKind::Internal)
            });
            ExitCode::from(if internal { 2 } else { 1 })
        }
        Err(_) => {
            eprintln!(
                "error: internal error in wpc (a bug); please report it with the model that triggered it"
            );
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect { model } => {
            let m = wpc::load(&model)?;
            print!("{}", wpc::inspect::summary(&m));
            Ok(())
        }
        Command::Ops => {
            let ops = wpc_ir::ops::supported_ops();
            for name in &ops {
                let def = wpc_ir::ops::lookup("", name).expect("listed ops are registered");
                println!(
                    "{name:<28} {}",
                    if def.infer.is_some() {
                        "shape inference"
                    } else {
                        ""
                    }
                );
            }
            println!("{} ops", ops.len());
            Ok(())
        }
        Command::Bench {
            model,
            target,
            matmul,
            peak_gflops,
            iterations,
            warmup,
            dims,
        } => {
            let gpu = wpc::runtime::webgpu::Gpu::new()?;
            println!("adapter: {}", gpu.describe());
            let profile = target.profile()?;
            if let Some(path) = model {
                let bundle = if path.is_dir() {
                    wpc::runtime::Bundle::read(&path)?
                } else {
                    let mut options = BackendName::Webgpu.options(profile.clone());
                    options.dims = parse_dims(&dims)?;
                    wpc::compile::compile_file(&path, &options)?.bundle
                };
                let label = format!("{} ({})", path.display(), bundle.manifest.target);
                wpc::bench::report_model(&gpu, &bundle, &label, warmup, iterations)?;
            }
            for n in matmul {
                let m = wpc::bench::matmul_model(n);
                let bundle = wpc::compile::compile_model(
                    &m,
                    "matmul",
                    &[],
                    &BackendName::Webgpu.options(profile.clone()),
                )?;
                let t = wpc::bench::report_model(
                    &gpu,
                    &bundle,
                    &format!("matmul {n}x{n}x{n} ({})", profile.name),
                    warmup,
                    iterations,
                )?;
                let gflops = 2.0 * (n as f64).powi(3) / t.as_secs_f64() / 1e9;
                match peak_gflops {
                    Some(p) => println!(
                        "matmul {n}: {gflops:.1} GFLOP/s = {:.1}% of {p:.0} GFLOP/s peak",
                        100.0 * gflops / p
                    ),
                    None => println!("matmul {n}: {gflops:.1} GFLOP/s"),
                }
            }
            Ok(())
        }
        Command::Targets => {
            for p in wpc::targets::all_builtin()? {
                println!("{:<16} {}", p.name, p.description);
            }
            println!("\nUse one with --target NAME, or your own with --target-file FILE.ron.");
            Ok(())
        }
        Command::Compile {
            model,
            target,
            output,
            dims,
            demote_f64,
            input_shapes,
            freeze,
            no_js_runtime,
        } => {
            let out = output.unwrap_or_else(|| model.with_extension("wpc"));
            let mut build = wpc::build::Build::new(&model)
                .cargo_directives(false)
                .out_dir(&out)
                .demote_f64(demote_f64)
                .js_runtime(!no_js_runtime);
            build = match &target.target_file {
                Some(path) => build.target_file(path),
                None => build.target(&target.target),
            };
            for (symbol, size) in parse_dims(&dims)? {
                build = build.dim(&symbol, size);
            }
            for spec in &input_shapes {
                let (name, dims) = spec
                    .split_once('=')
                    .with_context(|| format!("--input-shape '{spec}': expected NAME=D0xD1..."))?;
                let dims = dims
                    .split('x')
                    .map(|d| d.trim().parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("--input-shape '{spec}': sizes must be integers"))?;
                build = build.input_shape(name, &dims);
            }
            for f in &freeze {
                let (name, path) = f
                    .split_once('=')
                    .with_context(|| format!("--freeze '{f}': expected NAME=FILE.npy"))?;
                build = build.freeze(name, path);
            }
            let built = build.compile()?;
            let manifest = &built.manifest;
            let weight_bytes: u64 = manifest.shards.iter().map(|s| s.bytes).sum();
            println!(
                "{} -> {} (target {}): {} weight bytes in {} shards",
                model.display(),
                out.display(),
                manifest.target,
                weight_bytes,
                manifest.shards.len(),
            );
            let file_bytes = |name: &str| {
                let listed = manifest.code.iter().find(|c| c.file == name);
                listed.map_or(0, |c| c.bytes)
            };
            for v in &manifest.variants {
                match v {
                    Variant::WebGpu(w) => println!(
                        "  webgpu: {} kernels, {} dispatches, peak device memory {} bytes",
                        w.shaders.len(),
                        w.dispatches.len(),
                        w.peak_bytes
                    ),
                    Variant::Wasm(w) => {
                        println!(
                            "  {}: {} ({} bytes), linear memory {} bytes",
                            w.name,
                            w.module,
                            file_bytes(&w.module),
                            w.memory_bytes
                        );
                        if !w.reference_nodes.is_empty() {
                            println!(
                                "    {} nodes without a generated kernel run the reference kernels ({}), e.g. {}",
                                w.reference_nodes.len(),
                                w.reference.as_deref().unwrap_or("?"),
                                w.reference_nodes[0]
                            );
                        }
                    }
                }
            }
            for (name, why) in &built.skipped {
                println!("  {name}: left out: {why}");
            }
            if !no_js_runtime {
                let runtime = wpc::runtime::js::DIR;
                let bytes: usize = wpc::runtime::js::FILES.iter().map(|(_, t)| t.len()).sum();
                println!(
                    "  JS runtime: {}/{runtime}/index.js ({bytes} bytes in {} modules)",
                    out.display(),
                    wpc::runtime::js::FILES.len()
                );
            }
            Ok(())
        }
        Command::Run {
            model,
            backend,
            inputs,
            dims,
            seed,
            target,
            output_dir,
        } => match backend {
            BackendName::Reference => run(&model, &inputs, &dims, seed, &output_dir),
            other => run_bundle(other, &model, &target, &inputs, &dims, seed, &output_dir),
        },
        Command::Conformance {
            dir,
            backend,
            target,
            json,
            filter,
            baseline,
            write_baseline,
            verbose,
            threads,
        } => {
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} cases {elapsed}")
                    .expect("valid template"),
            );
            let (webgpu, wasm);
            let runner: &dyn conformance::Backend = match backend {
                BackendName::Reference => &conformance::Reference,
                BackendName::Webgpu => {
                    webgpu = conformance::WebGpu {
                        gpu: wpc::runtime::webgpu::Gpu::new()?,
                        profile: target.profile()?,
                    };
                    eprintln!("WebGPU adapter: {}", webgpu.gpu.describe());
                    &webgpu
                }
                wasm_backend => {
                    wasm = conformance::Wasm {
                        options: wasm_backend.options(target.profile()?),
                        isa: wasm_backend.isa().expect("the other backends are wasm"),
                    };
                    &wasm
                }
            };
            let report =
                conformance::run_all(&dir, runner, filter.as_deref(), threads, &|done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                })?;
            bar.finish_and_clear();
            print!("{}", report.render(verbose));
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&report)?;
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if let Some(path) = write_baseline {
                std::fs::write(
                    &path,
                    serde_json::to_string_pretty(&report.baseline())? + "\n",
                )
                .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if let Some(path) = baseline {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read baseline {}", path.display()))?;
                let base: Baseline = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a baseline file", path.display()))?;
                let lost = report.regressions(&base);
                if !lost.is_empty() {
                    bail!(
                        "{} cases that pass in {} no longer pass: {}",
                        lost.len(),
                        path.display(),
                        lost.join(", ")
                    );
                }
                println!(
                    "baseline {}: no regressions ({} passed now, {} in baseline)",
                    path.display(),
                    report.passed,
                    base.passed
                );
            }
            Ok(())
        }
    }
}

fn run(
    model_path: &Path,
    inputs: &[String],
    dims: &[String],
    seed: u64,
    output_dir: &Path,
) -> Result<()> {
    let mut model = wpc::load(model_path)?;
    wpc_ir::ops::check_model(&model).with_context(|| model_path.display().to_string())?;
    wpc::passes::optimize(&mut model).with_context(|| model_path.display().to_string())?;
    let given = inputs
        .iter()
        .map(|s| inputs::parse_input(s))
        .collect::<Result<Vec<(String, InputSource)>>>()?;
    let dims = parse_dims(dims)?;
    let feeds = inputs::gather_inputs(&inputs::declared_inputs(&model), &given, &dims, seed)?;
    let outputs = wpc_ir::interp::run_model(&model, &feeds)
        .with_context(|| model_path.display().to_string())?;
    write_outputs(&outputs, output_dir)
}

fn parse_dims(dims: &[String]) -> Result<HashMap<String, usize>> {
    dims.iter().map(|s| inputs::parse_dim(s)).collect()
}

/// Runs a bundle (or a model compiled on the fly) on one of its variants.
fn run_bundle(
    backend: BackendName,
    path: &Path,
    target: &TargetArgs,
    inputs: &[String],
    dims: &[String],
    seed: u64,
    output_dir: &Path,
) -> Result<()> {
    let dims = parse_dims(dims)?;
    let bundle = if path.is_dir() {
        wpc::runtime::Bundle::read(path)?
    } else {
        let mut options = backend.options(target.profile()?);
        options.dims = dims.clone();
        wpc::compile::compile_file(path, &options)?.bundle
    };
    let declared: Vec<(String, wpc_ir::ValueType)> = bundle
        .manifest
        .inputs
        .iter()
        .map(|t| {
            let dtype = wpc_ir::DType::ALL.into_iter().find(|d| d.name() == t.dtype);
            let shape: Vec<usize> = t.bound.iter().map(|&d| d as usize).collect();
            (
                t.name.clone(),
                wpc_ir::ValueType {
                    dtype,
                    shape: wpc_ir::Shape::known(&shape),
                },
            )
        })
        .collect();
    let given = inputs
        .iter()
        .map(|s| inputs::parse_input(s))
        .collect::<Result<Vec<(String, InputSource)>>>()?;
    let mut feeds = inputs::gather_inputs(&declared, &given, &dims, seed)?;
    let ordered: Vec<wpc_ir::Tensor> = declared
        .iter()
        .map(|(name, _)| feeds.remove(name).expect("gathered every input"))
        .collect();
    let results = match backend.isa() {
        Some(isa) => {
            wpc::runtime::wasm::Session::load(&bundle, isa.name()).and_then(|mut s| s.run(&ordered))
        }
        None => {
            let gpu = wpc::runtime::webgpu::Gpu::new()?;
            wpc::runtime::webgpu::Session::load(&gpu, &bundle).and_then(|s| s.run(&ordered))
        }
    }
    .with_context(|| path.display().to_string())?;
    let outputs: Vec<(String, wpc_ir::Tensor)> = bundle
        .manifest
        .outputs
        .iter()
        .map(|t| t.name.clone())
        .zip(results)
        .collect();
    write_outputs(&outputs, output_dir)
}

/// Writes one .npy per output into `output_dir`, staging them in a
/// temporary directory first so a failure leaves no partial output.
fn write_outputs(outputs: &[(String, wpc_ir::Tensor)], output_dir: &Path) -> Result<()> {
    let parent = output_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = tempfile_dir(parent)?;
    for (name, t) in outputs {
        let file = sanitize(name) + ".npy";
        wpc::npy::write(&tmp.join(&file), t)?;
        println!(
            "{name}: {} {:?} -> {}",
            t.dtype(),
            t.shape(),
            output_dir.join(&file).display()
        );
    }
    std::fs::create_dir_all(output_dir)
        .with_context(|| format!("cannot create {}", output_dir.display()))?;
    for entry in std::fs::read_dir(&tmp)? {
        let entry = entry?;
        std::fs::rename(entry.path(), output_dir.join(entry.file_name()))?;
    }
    std::fs::remove_dir(&tmp)?;
    Ok(())
}

/// A fresh hidden directory under `parent` for staging outputs.
fn tempfile_dir(parent: &Path) -> Result<PathBuf> {
    let dir = parent.join(format!(".wpc-tmp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// A file name for an output tensor name (ONNX names may contain `/` or `:`).
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
