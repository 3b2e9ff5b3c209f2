//! The `wpc` command-line tool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use wpc::binding::{GivenShape, Said};
use wpc::conformance::{self, Baseline};
use wpc::inputs::{self, InputSource};
use wpc::runtime::manifest::{DimInfo, Variant};
use wpc::runtime::outdir::{self, DirKind};
use wpc::{say, tell};
use wpc_ir::{Dim, Tensor, ValueType};

/// wpc compiles ONNX models into per-browser kernel bundles: WGSL compute
/// shaders tuned per browser (WebGPU) and SIMD WebAssembly modules, with
/// weight shards, a manifest and a JS runtime that picks the variant a
/// browser can run. Bundles run natively too: `wpc run BUNDLE` (wgpu,
/// wasmtime); the reference interpreter (`wpc run model.onnx`) is the
/// oracle every backend is tested against.
///
/// Shapes: a symbolic dim (an unnamed one is called INPUT.AXIS; `wpc
/// inspect` shows it) is fixed with --dim SYMBOL=N (kernels specialized
/// for it) or left to run time with --dim SYMBOL=MIN..MAX (one bundle runs
/// at every size in the range, on WebGPU and wasm); a dim no flag sizes is left to run
/// time up to what the target's memory budget holds. --input-shape
/// NAME=1x3x224x224 gives a whole shape; inputs that steer kernels (axes,
/// pads, an If's condition) are fixed with --freeze NAME=FILE.npy. The
/// same flags work on compile, run and bench, and every size is checked
/// against the model.
///
/// Output directories (compile -o, run -o) are written whole and swapped
/// in atomically; an existing one is replaced only if wpc wrote it (or it
/// is empty) unless --force, and never the current directory.
///
/// Exit codes: 0 success, 1 a problem with the model, the inputs or the
/// command line (the message names the file, node, op and reason, and
/// nothing is written), 2 an internal error (a bug in wpc; please report
/// it with the message, and RUST_BACKTRACE=1 for a backtrace).
#[derive(Parser)]
#[command(name = "wpc", version, propagate_version = true)]
#[command(
    after_help = "Examples:\n  wpc inspect model.onnx\n  wpc compile model.onnx --target safari --dim batch=1 -o model.wpc\n  wpc run model.wpc --backend webgpu --input x=random -o out/\n  wpc run model.onnx --input x=image.npy -o out/\n  wpc bench model.wpc --iterations 50\n  wpc conformance ~/.cache/wpc-conformance --backend webgpu --json report.json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum BackendName {
    /// The reference interpreter (CPU, exact ONNX semantics).
    Reference,
    /// The bundle's WebGPU variant, through wgpu on Vulkan.
    Webgpu,
    /// The bundle's SIMD128 WebAssembly variant, through wasmtime.
    #[value(alias = "wasm-simd")]
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

    /// The backend that runs a bundle's variant `v`.
    fn of_variant(v: &Variant) -> Option<BackendName> {
        use wpc::codegen_wasm::Isa;
        match v {
            Variant::WebGpu(_) => Some(BackendName::Webgpu),
            Variant::Wasm(w) => match Isa::parse(&w.name)? {
                Isa::Simd => Some(BackendName::Wasm),
                Isa::Relaxed => Some(BackendName::WasmRelaxed),
                Isa::Scalar => Some(BackendName::WasmScalar),
            },
        }
    }

    fn name(self) -> &'static str {
        match self.isa() {
            Some(isa) => isa.name(),
            None if self == BackendName::Webgpu => "webgpu",
            None => "reference",
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

/// How model inputs are bound and fixed: the same flags on `compile`,
/// `run` and `bench`.
#[derive(clap::Args, Clone)]
struct BindArgs {
    /// SYMBOL=N: the size of a symbolic input dim (e.g. --dim batch=1;
    /// kernels are specialized for it), or SYMBOL=MIN..MAX: the sizes it
    /// may take (e.g. --dim seq=1..512; the bundle runs at any of them).
    /// Checked against every input that uses the symbol.
    #[arg(long = "dim", value_name = "SYMBOL=N|MIN..MAX")]
    dims: Vec<String>,
    /// NAME=D0xD1x...: the whole shape of an input, for dims the model
    /// leaves unnamed (e.g. --input-shape input=1x512). Each size the
    /// model fixes must match.
    #[arg(long = "input-shape", value_name = "NAME=SHAPE")]
    input_shapes: Vec<String>,
    /// NAME=FILE.npy: fix an input to a value at compile time (required
    /// for inputs that steer kernels: reduction axes, pads, an If's
    /// condition such as Silero VAD's `sr`). The input leaves the bundle.
    #[arg(long = "freeze", value_name = "NAME=FILE.npy")]
    freeze: Vec<String>,
    /// Compute float64 tensors in float32 (WGSL has no f64).
    #[arg(long)]
    demote_f64: bool,
    /// Lower every node to kernels of its own: no recognized ops (GELU,
    /// LayerNorm, attention, ... put in for what the exporter wrote out)
    /// and no fusion of pointwise chains (to compare against the fused
    /// build, or to rule both out when a result looks wrong).
    #[arg(long)]
    no_fuse: bool,
    /// Quantize the weights of MatMul, Gemm, Conv and embedding lookups
    /// (weight-only: activations stay float32) to int8, int4, int3 or
    /// int2 codes with a float16 scale and a zero point per group; f32
    /// leaves them as they are (overriding a --precision map's default).
    #[arg(long, value_enum, value_name = "BITS")]
    weights: Option<WeightBits>,
    /// Values per scale along the reduction axis when quantizing: a power
    /// of two from 16 to 1024 (default 64; smaller is more accurate and
    /// larger).
    #[arg(long, value_name = "N")]
    group: Option<usize>,
    /// Rotate each quantized MatMul's and Gemm's reduction axis by a
    /// Hadamard matrix before quantizing its weight: large weights spread
    /// over their group, so fewer bits lose less (worth it at 3 bits and
    /// below). The input is rotated the same way at run time, by a small
    /// float MatMul per input. A reduction axis without a power-of-two
    /// factor of 16 or more is left as it is (--report says which). A
    /// --precision map can set `rotate: true` per layer instead.
    #[arg(long)]
    rotate: bool,
    /// A precision map (RON): bits, group and method per layer, by node
    /// name, weight name or op pattern, first match wins (examples in
    /// examples/precision/). --weights and --group replace its default.
    #[arg(long, value_name = "FILE.ron")]
    precision: Option<PathBuf>,
    /// NAME=FILE.npy: sample inputs to quantize against (a batch of
    /// samples in one file). Repeat the flag for more runs: the k-th file
    /// of each input is the k-th run, so runs may differ in shape (e.g.
    /// sentences bucketed by length, to keep padding out of the
    /// statistics). Linear layers are then quantized by GPTQ, which keeps
    /// their outputs on these samples closest, and --report measures
    /// errors on them.
    #[arg(long = "calibrate", value_name = "NAME=FILE.npy")]
    calibrate: Vec<String>,
    /// Fit the weights into SIZE (e.g. 12MB, 40MiB): quantize each layer
    /// at the bits (8, 4, 3, 2, or float32) that keep the model's output
    /// closest within the budget, from each layer's measured sensitivity
    /// (end to end on the --calibrate samples; from weight errors alone
    /// without them). Rules of a --precision map that set bits are kept.
    #[arg(long, value_name = "SIZE")]
    fit: Option<String>,
}

/// What `--weights` quantizes to.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum WeightBits {
    Int8,
    Int4,
    Int3,
    Int2,
    F32,
}

impl WeightBits {
    /// Bits per weight; `None` for float32.
    fn bits(self) -> Option<u32> {
        match self {
            WeightBits::Int8 => Some(8),
            WeightBits::Int4 => Some(4),
            WeightBits::Int3 => Some(3),
            WeightBits::Int2 => Some(2),
            WeightBits::F32 => None,
        }
    }
}

/// [`BindArgs`], parsed: each name given once.
struct Binding {
    dims: HashMap<String, wpc::binding::Sizes>,
    input_shapes: Vec<(String, Vec<usize>)>,
    frozen: Vec<(String, PathBuf)>,
    demote_f64: bool,
    fuse: bool,
    /// The precision map `--weights`, `--group` and `--precision` give,
    /// and the first of those flags given (for messages).
    precision: Option<wpc::passes::quant::Precision>,
    quant_flag: Option<&'static str>,
    /// `--calibrate` files, by input.
    calibration: Vec<(String, PathBuf)>,
}

/// One `NAME=FILE.npy` value of `flag`.
fn named_file(flag: &str, f: &str) -> Result<(String, PathBuf)> {
    let (name, path) = f
        .split_once('=')
        .with_context(|| format!("{flag} '{f}': expected NAME=FILE.npy"))?;
    Ok((name.to_string(), PathBuf::from(path)))
}

/// `NAME=FILE.npy` values of `flag`, each name once.
fn named_files(flag: &str, values: &[String]) -> Result<Vec<(String, PathBuf)>> {
    inputs::parse_unique(flag, values, |f| named_file(flag, f))
}

impl BindArgs {
    fn parse(&self) -> Result<Binding> {
        let frozen = named_files("--freeze", &self.freeze)?;
        Ok(Binding {
            dims: inputs::parse_dims(&self.dims)?,
            input_shapes: inputs::parse_unique(
                "--input-shape",
                &self.input_shapes,
                inputs::parse_shape,
            )?,
            frozen,
            demote_f64: self.demote_f64,
            fuse: !self.no_fuse,
            precision: self.precision()?,
            quant_flag: [
                (self.weights.is_some(), "--weights"),
                (self.precision.is_some(), "--precision"),
                (self.fit.is_some(), "--fit"),
                (self.group.is_some(), "--group"),
                (self.rotate, "--rotate"),
            ]
            .into_iter()
            .find_map(|(given, flag)| given.then_some(flag)),
            calibration: self.calibration()?,
        })
    }

    /// `--calibrate` files in order given: the k-th file of each input
    /// belongs to the k-th sample, so every input is given equally often.
    fn calibration(&self) -> Result<Vec<(String, PathBuf)>> {
        let files = self
            .calibrate
            .iter()
            .map(|f| named_file("--calibrate", f))
            .collect::<Result<Vec<_>>>()?;
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for (name, _) in &files {
            match counts.iter_mut().find(|(n, _)| n == name) {
                Some((_, c)) => *c += 1,
                None => counts.push((name, 1)),
            }
        }
        if let (Some(&(first, n)), Some(&(other, m))) = (
            counts.first(),
            counts.iter().find(|(_, c)| *c != counts[0].1),
        ) {
            bail!(
                "--calibrate gives {first} {n} time(s) but {other} {m}: each sample needs a file for every input, so give each input equally often"
            );
        }
        if !files.is_empty()
            && self.weights.is_none()
            && self.precision.is_none()
            && self.fit.is_none()
        {
            bail!(
                "--calibrate gives samples to quantize against: give --weights (e.g. --weights int4), --precision or --fit too"
            );
        }
        Ok(files)
    }

    fn precision(&self) -> Result<Option<wpc::passes::quant::Precision>> {
        use wpc::passes::quant::{Precision, Setting};
        if let Some(g) = self.group {
            wpc::passes::quant::precision::check_group(g).context("--group")?;
        }
        let fit = match &self.fit {
            Some(size) => {
                if self.weights.is_some() {
                    bail!(
                        "--fit chooses each layer's bits and --weights sets them all: give one of them"
                    );
                }
                Some(wpc::passes::quant::fit::parse_size(size).context("--fit")?)
            }
            None => None,
        };
        let map = match &self.precision {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the precision map {}", path.display()))?;
                Precision::parse(&text, &path.display().to_string())?
            }
            None if fit.is_some() => Precision::uniform(Setting::DEFAULT),
            None if self.weights.is_none() => {
                if self.group.is_some() {
                    bail!(
                        "--group sets the quantization group: give --weights (e.g. --weights int4) or --precision too"
                    );
                }
                if self.rotate {
                    bail!(
                        "--rotate rotates weights before quantizing them: give --weights (e.g. --weights int3), --precision or --fit too"
                    );
                }
                return Ok(None);
            }
            None => Precision::uniform(Setting::DEFAULT),
        };
        let mut map =
            map.with_overrides(self.weights.map(WeightBits::bits), self.group, self.rotate);
        map.fit = fit;
        Ok(Some(map))
    }
}

impl Binding {
    /// `options` with these bindings (frozen inputs read from their files).
    fn apply(&self, mut options: wpc::compile::Options) -> Result<wpc::compile::Options> {
        options.dims = self.dims.clone();
        options.input_shapes = self.input_shapes.iter().cloned().collect();
        options.demote_f64 = self.demote_f64;
        options.fuse = self.fuse;
        options.precision = self.precision.clone();
        for (name, path) in &self.calibration {
            options.calibrate_file(name, path)?;
        }
        for (name, path) in &self.frozen {
            options.freeze_file(name, path)?;
        }
        Ok(options)
    }

    /// Whether a flag that sets sizes was given (`--dim`, `--input-shape`).
    fn size_flag(&self) -> Option<&'static str> {
        if !self.dims.is_empty() {
            Some("--dim")
        } else if !self.input_shapes.is_empty() {
            Some("--input-shape")
        } else {
            None
        }
    }

    /// Whether any flag only compiling can honour was given.
    fn compile_only_flag(&self) -> Option<&'static str> {
        if !self.frozen.is_empty() {
            Some("--freeze")
        } else if self.demote_f64 {
            Some("--demote-f64")
        } else if !self.fuse {
            Some("--no-fuse")
        } else if self.quant_flag.is_some() {
            self.quant_flag
        } else {
            None
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Summarise a model: opsets, inputs and outputs with symbolic shapes,
    /// op histogram, parameter count (initializers and Constant nodes), and
    /// which nodes each backend cannot run.
    Inspect {
        /// The .onnx file (external data is read from beside it).
        model: PathBuf,
    },
    /// List the shipped target profiles.
    Targets,
    /// Time a model's WebGPU variant through wgpu (median per inference),
    /// the GEMM kernel on N x N x N matrices in GFLOP/s, and/or the 4-bit
    /// matvec kernel in GB/s against a device-to-device copy. Give a
    /// model, --matmul, --matvec, or several.
    #[command(arg_required_else_help = true)]
    Bench {
        /// An .onnx file (compiled for --target first) or a bundle directory.
        #[arg(required_unless_present_any = ["matmul", "matvec"])]
        model: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
        /// Also time MatMul at these sizes (e.g. --matmul 1024 --matmul 4096).
        #[arg(long = "matmul", value_name = "N")]
        matmul: Vec<usize>,
        /// Also time a decoder's token step at these widths: a [1, N]
        /// vector through N x N 4-bit MatMulNBits layers (block 32, as
        /// onnxruntime exports them), 512 MiB of weights in all, reported
        /// as GB/s of weights read beside the GB/s of a device-to-device
        /// copy of as many bytes, timed in the same run.
        #[arg(long = "matvec", value_name = "N")]
        matvec: Vec<usize>,
        /// The adapter's peak f32 GFLOP/s, to report GEMM efficiency.
        #[arg(long, value_name = "GFLOPS")]
        peak_gflops: Option<f64>,
        /// Timed runs; the median is reported.
        #[arg(long, default_value_t = 20, value_name = "N")]
        iterations: usize,
        /// Untimed runs first (pipelines, caches and clocks warm up).
        #[arg(long, default_value_t = 3, value_name = "N")]
        warmup: usize,
        #[command(flatten)]
        bind: BindArgs,
    },
    /// Compile a model into a bundle directory for one target.
    Compile {
        /// The .onnx file.
        model: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
        /// Output directory (default: MODEL with .wpc in place of .onnx).
        /// Written atomically; an existing directory is replaced only if it
        /// is a wpc bundle or empty (see --force).
        #[arg(long, short = 'o', value_name = "DIR")]
        output: Option<PathBuf>,
        /// Replace the output path even if it is not a wpc bundle (never
        /// the current directory or one containing it).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        bind: BindArgs,
        /// Leave out the copy of the JS runtime (DIR/runtime/index.js), for
        /// pages that take it from the npm package wpc-runtime instead.
        #[arg(long)]
        no_js_runtime: bool,
        /// Say what the per-variant passes did for each backend: the
        /// e-graph's size and why it stopped, how often each rewrite rule
        /// fired, the ops it put in, what fused, nodes before and after.
        #[arg(long)]
        explain: bool,
        /// With --weights or --precision: list every quantizable layer
        /// with its bits, group, how its scales were chosen, its bytes
        /// and its weight error (relative, against rounding's).
        #[arg(long)]
        report: bool,
    },
    /// Run a model (.onnx: on the reference interpreter, or compiled on the
    /// fly for --backend) or a bundle directory (its first variant, or
    /// --backend) on inputs from .npy files or random data, writing one
    /// <output>.npy per model output and outputs.json (names, files,
    /// shapes).
    Run {
        /// The .onnx file, or a bundle directory.
        model: PathBuf,
        /// Which executor runs the model (default: reference for an .onnx
        /// file, the bundle's first variant for a bundle).
        #[arg(long, value_enum)]
        backend: Option<BackendName>,
        /// NAME=FILE.npy, or NAME=random for a seeded random tensor of the
        /// input's shape. Give every model input once. A file's shape
        /// binds the input's symbolic and unnamed dims.
        #[arg(long = "input", value_name = "NAME=SOURCE")]
        inputs: Vec<String>,
        #[command(flatten)]
        bind: BindArgs,
        /// Seed for random inputs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Target to compile for when MODEL is an .onnx file and the
        /// backend is not the reference.
        #[command(flatten)]
        target: TargetArgs,
        /// Directory for the outputs (default: MODEL with .outputs in
        /// place of its extension). Written atomically; an existing one is
        /// replaced only if wpc wrote it or it is empty (see --force).
        #[arg(long, short = 'o', visible_alias = "output-dir", value_name = "DIR")]
        output: Option<PathBuf>,
        /// Replace the output path even if wpc did not write it (never the
        /// current directory or one containing it).
        #[arg(long)]
        force: bool,
    },
    /// List every op wpc knows, with its shape inference and what each
    /// backend runs it with.
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

/// The last panic's message, location and (with `RUST_BACKTRACE=1`)
/// backtrace, kept by the panic hook for the internal-error report.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn main() -> ExitCode {
    // Panics are reported once, below, as internal errors; the hook keeps
    // what a bug report needs. (Panics caught inside wpc, such as a kernel
    // failing in the interpreter, become errors naming the node.)
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::capture();
        let mut report = info.to_string();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            report.push_str(&format!("\nbacktrace:\n{backtrace}"));
        } else {
            report.push_str("\n(run with RUST_BACKTRACE=1 for a backtrace)");
        }
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
    }));
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
            tell!("error: {e:#}");
            // A kernel that panicked is wpc's bug, not the user's.
            let internal = e.chain().any(|c| {
                c.downcast_ref::<wpc_ir::Error>()
                    .is_some_and(|w| w.kind == wpc_ir::ErrorKind::Internal)
            });
            if internal {
                tell!("this is a bug in wpc; please report it with the model that triggered it");
            }
            ExitCode::from(if internal { 2 } else { 1 })
        }
        Err(_) => {
            let report = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take();
            tell!(
                "error: internal error in wpc (a bug); please report it with the model that triggered it and this message:\n{}",
                report.as_deref().unwrap_or("(no panic message)")
            );
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    // A way for the CLI tests to reach the internal-error report (no
    // input reaches a panic on purpose); debug builds only.
    if cfg!(debug_assertions) && std::env::var_os("WPC_TEST_PANIC").is_some() {
        panic!("WPC_TEST_PANIC is set");
    }
    match cli.command {
        Command::Inspect { model } => {
            let m = wpc::load(&model)?;
            wpc::stdout::print(format_args!("{}", wpc::inspect::summary(&m)));
            Ok(())
        }
        Command::Ops => {
            print_ops();
            Ok(())
        }
        Command::Bench {
            model,
            target,
            matmul,
            matvec,
            peak_gflops,
            iterations,
            warmup,
            bind,
        } => {
            if iterations == 0 {
                bail!("--iterations must be at least 1");
            }
            if matvec.contains(&0) {
                bail!("--matvec needs a width of at least 1");
            }
            let binding = bind.parse()?;
            let profile = target.profile()?;
            // The model is read (and compiled) before the GPU is opened,
            // so a bad path or model is reported first.
            let model = match model {
                Some(path) if path.is_dir() => {
                    let flag = binding.compile_only_flag().or_else(|| binding.size_flag());
                    if let Some(flag) = flag {
                        bail!(
                            "{flag} applies when compiling; {} is a bundle, benchmarked at the                              sizes it was compiled for (recompile the model with {flag})",
                            path.display()
                        );
                    }
                    Some((wpc::runtime::Bundle::read(&path)?, path))
                }
                Some(path) => {
                    let options = binding.apply(BackendName::Webgpu.options(profile.clone()))?;
                    Some((wpc::compile::compile_file(&path, &options)?.bundle, path))
                }
                None => None,
            };
            let gpu = wpc::runtime::webgpu::Gpu::new()?;
            say!("adapter: {}", gpu.describe());
            if let Some((bundle, path)) = model {
                let label = format!("{} ({})", path.display(), bundle.manifest.target);
                wpc::bench::report_model(&gpu, &bundle, &label, warmup, iterations)?;
            }
            // A model of bench's own, compiled for the profile and timed.
            let time_model = |m: &wpc::ir::Model, name: &str, label: String| {
                let options = BackendName::Webgpu.options(profile.clone());
                let bundle = wpc::compile::compile_model(m, name, &[], &options)?;
                wpc::bench::report_model(&gpu, &bundle, &label, warmup, iterations)
            };
            for n in matmul {
                let m = wpc::bench::matmul_model(n);
                let t = time_model(
                    &m,
                    "matmul",
                    format!("matmul {n}x{n}x{n} ({})", profile.name),
                )?;
                let gflops = 2.0 * (n as f64).powi(3) / t.as_secs_f64() / 1e9;
                match peak_gflops {
                    Some(p) => say!(
                        "matmul {n}: {gflops:.1} GFLOP/s = {:.1}% of {p:.0} GFLOP/s peak",
                        100.0 * gflops / p
                    ),
                    None => say!("matmul {n}: {gflops:.1} GFLOP/s"),
                }
            }
            for n in matvec {
                let (m, bytes) = wpc::bench::matvec_model(n);
                let layers = m.graph.node_ids().count();
                let label = format!("matvec 4-bit {n}x{n}, {layers} layers ({})", profile.name);
                let t = time_model(&m, "matvec", label)?;
                let copy = gpu.time_copy(bytes as u64, warmup, iterations)?;
                // A copy reads and writes every byte.
                let copy_rate = 2.0 * bytes as f64 / copy.as_secs_f64() / 1e9;
                let rate = bytes as f64 / t.as_secs_f64() / 1e9;
                say!(
                    "matvec {n}: {rate:.1} GB/s of weights read ({:.1} MB); copy {copy_rate:.1} GB/s (read + write, {:.3} ms); {:.1}% of copy",
                    bytes as f64 / 1e6,
                    copy.as_secs_f64() * 1e3,
                    100.0 * rate / copy_rate
                );
            }
            Ok(())
        }
        Command::Targets => {
            for p in wpc::targets::all_builtin()? {
                say!("{:<16} {}", p.name, p.description);
            }
            say!("\nUse one with --target NAME, or your own with --target-file FILE.ron.");
            Ok(())
        }
        Command::Compile {
            model,
            target,
            output,
            force,
            bind,
            no_js_runtime,
            explain,
            report,
        } => compile(
            &model,
            &target,
            output,
            force,
            &bind,
            Reports {
                js_runtime: !no_js_runtime,
                explain,
                quant: report,
            },
        ),
        Command::Run {
            model,
            backend,
            inputs,
            bind,
            seed,
            target,
            output,
            force,
        } => {
            let out = output.unwrap_or_else(|| model.with_extension("outputs"));
            let binding = bind.parse()?;
            let given = inputs::parse_unique("--input", &inputs, inputs::parse_input)?;
            // Refuse an output path we may not replace before any work.
            let mut read: Vec<&Path> = vec![&model];
            read.extend(given.iter().filter_map(|(_, source)| match source {
                inputs::InputSource::File(path) => Some(path.as_path()),
                _ => None,
            }));
            outdir::check(&out, DirKind::Outputs, force)?;
            outdir::refuse_inputs(&out, &read)?;
            let outputs = if model.is_dir() {
                run_bundle(&model, backend, &given, &binding, seed)?
            } else {
                let backend = backend.unwrap_or(BackendName::Reference);
                run_model(&model, backend, &target, &given, &binding, seed)?
            };
            write_outputs(&outputs, &out, force)
        }
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
                    tell!("WebGPU adapter: {}", webgpu.gpu.describe());
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
            wpc::stdout::print(format_args!("{}", report.render(verbose)));
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
                say!(
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

/// `wpc ops`: every registered op, whether it has shape inference, and how
/// each backend runs it (by op; a kernel may still refuse a dtype or an
/// attribute, which `wpc compile` reports by node).
fn print_ops() {
    use wpc::codegen_wasm::Support;
    let ops = wpc_ir::ops::supported_ops();
    say!(
        "{:<28} {:<10} {:<10} {:<9} wasm",
        "op",
        "inference",
        "reference",
        "webgpu"
    );
    let (mut webgpu, mut wasm) = (0, 0);
    for name in &ops {
        let def = wpc_ir::ops::lookup("", name).expect("listed ops are registered");
        let gpu = wpc::codegen_wgsl::ops::lowering("", name).is_some();
        let cpu = wpc::codegen_wasm::support("", name);
        webgpu += usize::from(gpu);
        wasm += usize::from(cpu != Support::None);
        say!(
            "{name:<28} {:<10} {:<10} {:<9} {}",
            if def.infer.is_some() { "yes" } else { "-" },
            "yes",
            if gpu { "kernel" } else { "-" },
            match cpu {
                Support::Kernel => "kernel",
                Support::View => "view (no kernel)",
                Support::Reference => "reference kernel",
                Support::None => "-",
            }
        );
    }
    say!(
        "{} ops: all run on the reference backend, {webgpu} on webgpu, {wasm} on wasm \
         ('reference kernel': the interpreter's kernel compiled to wasm)",
        ops.len()
    );
}

/// What the per-variant passes did for one backend: a line, or with
/// `explain` the details.
fn report_passes(p: &wpc::passes::backend::VariantPasses, explain: bool) {
    let counts = |items: &mut dyn Iterator<Item = (&str, usize)>| {
        items
            .map(|(name, n)| format!("{n} {name}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let introduced = counts(&mut p.rewrite.introduced.iter().map(|(op, &n)| (op.as_str(), n)));
    let f = &p.fusion;
    let mut line = format!(
        "  {}: {} nodes -> {}",
        p.backend, p.nodes_before, p.nodes_after
    );
    if !introduced.is_empty() {
        line += &format!("; recognized {introduced}");
    }
    if f.groups > 0 {
        line += &format!(
            "; fused {} nodes into {} kernels ({} of them a MatMul, Gemm or Conv with its epilogue)",
            f.nodes, f.groups, f.epilogues
        );
    }
    // A runner that stopped early left rewrites undone: say so always.
    if let Some(stop) = p.rewrite.stop.as_deref()
        && !matches!(stop, "saturated" | "nothing to read")
    {
        line += &format!("; e-graph stopped: {stop}");
    }
    say!("{line}");
    if !explain {
        return;
    }
    let r = &p.rewrite;
    match &r.stop {
        Some(stop) => say!(
            "    e-graph: {} nodes read; {} iterations, {} e-nodes in {} classes; stopped: {stop}",
            r.nodes_read,
            r.iterations,
            r.egraph_nodes,
            r.egraph_classes
        ),
        None => say!("    e-graph: not run (--no-fuse)"),
    }
    if !r.fired.is_empty() {
        let fired: Vec<String> = r
            .fired
            .iter()
            .map(|(rule, n)| format!("{rule} ×{n}"))
            .collect();
        say!("    rewrites fired: {}", fired.join(", "));
    }
    say!(
        "    recognized ops kept (where the backend has their kernel): {}",
        if introduced.is_empty() {
            "none"
        } else {
            &introduced
        }
    );
}

fn compile(
    model: &Path,
    target: &TargetArgs,
    output: Option<PathBuf>,
    force: bool,
    bind: &BindArgs,
    reports: Reports,
) -> Result<()> {
    let Reports {
        js_runtime,
        explain,
        quant: report,
    } = reports;
    let out = output.unwrap_or_else(|| model.with_extension("wpc"));
    let binding = bind.parse()?;
    let mut build = wpc::build::Build::new(model)
        .cargo_directives(false)
        .out_dir(&out)
        .force(force)
        .demote_f64(binding.demote_f64)
        .fuse(binding.fuse)
        .js_runtime(js_runtime);
    if let Some(p) = &binding.precision {
        build = build.precision(p.clone());
    }
    for (name, path) in &binding.calibration {
        build = build.calibrate(name, path);
    }
    build = match &target.target_file {
        Some(path) => build.target_file(path),
        None => build.target(&target.target),
    };
    for (symbol, &sizes) in &binding.dims {
        build = build.dim_range(symbol, sizes.lo, sizes.hi);
    }
    for (name, dims) in &binding.input_shapes {
        build = build.input_shape(name, dims);
    }
    for (name, path) in &binding.frozen {
        build = build.freeze(name, path);
    }
    let bar = indicatif::ProgressBar::hidden();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg}: {bar:40} {pos}/{len} {elapsed}")
            .expect("valid template"),
    );
    let shown = bar.clone();
    build = build.progress(wpc::compile::Progress::new(move |stage, done, total| {
        // Drawn on stderr only when it is a terminal.
        if shown.is_hidden() && total > 0 {
            shown.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        shown.set_length(total as u64);
        shown.set_position(done as u64);
        shown.set_message(stage.to_string());
    }));
    let built = build.compile();
    bar.finish_and_clear();
    let built = built?;
    let manifest = &built.manifest;
    let weight_bytes: u64 = manifest.shards.iter().map(|s| s.bytes).sum();
    say!(
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
            Variant::WebGpu(w) => say!(
                "  webgpu: {} kernels, {} dispatches, peak device memory {} bytes",
                w.shaders.len(),
                w.dispatches.len(),
                w.peak_bytes
            ),
            Variant::Wasm(w) => {
                say!(
                    "  {}: {} ({} bytes), linear memory {} bytes",
                    w.name,
                    w.module,
                    file_bytes(&w.module),
                    w.memory_bytes
                );
                if let Some(first) = w.fallback.first() {
                    say!(
                        "    {} nodes without a generated kernel run the reference kernels ({}), e.g. '{}' (op {}): {}",
                        w.fallback.len(),
                        w.reference.as_deref().unwrap_or("?"),
                        first.node,
                        first.op,
                        first.reason
                    );
                }
            }
        }
    }
    for d in &manifest.dims {
        let how = if built.defaulted.contains(&d.name) {
            format!(
                "no bound given: the largest size at which the model's tensors fit the target's memory budget; choose with --dim {}=MIN..MAX",
                d.name
            )
        } else if let Some(tensor) = &d.counted_in {
            format!("counted as the model runs: the size of '{tensor}' depends on the data")
        } else {
            "as given".to_string()
        };
        say!("  dim {} runs at {}..{} ({how})", d.name, d.min, d.max);
    }
    if let Some(why) = &built.default_precision {
        say!("  weights: {why}");
    }
    if let Some(q) = &built.quant {
        report_quant(q, report);
    }
    for passes in &built.passes {
        report_passes(passes, explain);
    }
    for (name, why) in &built.skipped {
        say!("  {name}: left out: {why}");
    }
    if js_runtime {
        let runtime = wpc::runtime::js::DIR;
        let bytes: usize = wpc::runtime::js::FILES.iter().map(|(_, t)| t.len()).sum();
        say!(
            "  JS runtime: {}/{runtime}/index.js ({bytes} bytes in {} modules)",
            out.display(),
            wpc::runtime::js::FILES.len()
        );
    }
    Ok(())
}

/// What `wpc compile` writes and says besides the bundle.
struct Reports {
    /// Copy the JS runtime into the bundle.
    js_runtime: bool,
    /// `--explain`: the per-variant passes in detail.
    explain: bool,
    /// `--report`: every quantized layer.
    quant: bool,
}

/// Says what weight quantization did: a summary, and with `--report`
/// every layer.
fn report_quant(q: &wpc::passes::quant::QuantReport, every_layer: bool) {
    let (float, stored) = q.bytes();
    let quantized = q.layers.iter().filter(|l| l.setting.bits.is_some()).count();
    say!(
        "  weights: {quantized} of {} layers quantized, {} -> {} bytes ({:.3} of float16)",
        q.layers.len(),
        float,
        stored,
        stored as f64 / (float as f64 / 2.0).max(1.0)
    );
    if let Some(fit) = &q.fit {
        use wpc::passes::quant::fit::human;
        let mut widths: Vec<(String, usize)> = Vec::new();
        for l in &q.layers {
            let w = l
                .setting
                .bits
                .map_or("f32".to_string(), |b| format!("{b}-bit"));
            match widths.iter_mut().find(|(n, _)| *n == w) {
                Some((_, c)) => *c += 1,
                None => widths.push((w, 1)),
            }
        }
        let widths: Vec<String> = widths.iter().map(|(w, c)| format!("{c} at {w}")).collect();
        say!(
            "  fit: all weights {} of a budget of {} ({} fixed); layers: {}; predicted output error {:.2e} (relative, squared; sensitivity {})",
            human(fit.bytes),
            human(fit.budget),
            human(fit.fixed),
            widths.join(", "),
            fit.loss,
            if fit.measured {
                "measured end to end on the --calibrate samples"
            } else {
                "from weight errors alone: give --calibrate samples to measure it"
            }
        );
    }
    for a in &q.accuracy {
        say!(
            "  accuracy: output '{}' against float32 on the largest --calibrate run: cosine {:.5}, relative error {:.2e}",
            a.output,
            a.cosine,
            a.relative_error
        );
    }
    if !every_layer {
        return;
    }
    say!(
        "    {:<48} {:<20} {:>11} {:>4} {:>5} {:>9} {:>9} {:>9}  method",
        "layer",
        "op",
        "shape",
        "bits",
        "group",
        "bytes",
        "error",
        "rounding"
    );
    for l in &q.layers {
        let s = &l.setting;
        let (bits, group, method) = match s.bits {
            Some(b) => (b.to_string(), s.group.to_string(), s.method.name()),
            None => ("f32".into(), "-".into(), "kept"),
        };
        let method = if s.rotate {
            format!("{method}, rotated")
        } else {
            method.to_string()
        };
        let err = |e: Option<f64>| e.map_or("-".into(), |e| format!("{e:.4}"));
        say!(
            "    {:<48} {:<20} {:>11} {:>4} {:>5} {:>9} {:>9} {:>9}  {method}",
            l.node,
            l.op,
            format!("{}x{}", l.shape[0], l.shape[1]),
            bits,
            group,
            l.bytes,
            err(l.error),
            err(l.rounding_error)
        );
    }
}

/// The `--input` tensors read from files, and what their shapes say.
fn read_input_files(
    given: &[(String, InputSource)],
) -> Result<(HashMap<String, Tensor>, Vec<GivenShape>)> {
    let mut tensors = HashMap::new();
    let mut shapes = Vec::new();
    for (name, src) in given {
        if let InputSource::File(path) = src {
            let t = wpc::npy::read(path).with_context(|| format!("input '{name}'"))?;
            shapes.push(GivenShape {
                input: name.clone(),
                shape: t.shape().to_vec(),
                by: path.display().to_string(),
            });
            tensors.insert(name.clone(), t);
        }
    }
    Ok((tensors, shapes))
}

/// The feeds for `declared` (name, dtype, bound shape, in order): files
/// as read, `random` ones made at the bound shape. Every input needs one
/// source, of the input's dtype.
fn feeds(
    declared: &[(String, Option<wpc_ir::DType>, Vec<usize>)],
    given: &[(String, InputSource)],
    mut files: HashMap<String, Tensor>,
    seed: u64,
) -> Result<Feeds> {
    use rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    if let Some((name, _)) = given
        .iter()
        .find(|(n, _)| !declared.iter().any(|(d, _, _)| d == n))
    {
        let names: Vec<_> = declared.iter().map(|(n, _, _)| n.as_str()).collect();
        bail!(
            "the model has no input '{name}' to give with --input (its inputs: {})",
            names.join(", ")
        );
    }
    let mut out = Vec::new();
    for (name, dtype, shape) in declared {
        let t = match given.iter().find(|(n, _)| n == name).map(|(_, s)| s) {
            Some(InputSource::Random) => {
                let dtype = dtype.with_context(|| {
                    format!("input '{name}' has no declared element type; pass a .npy file")
                })?;
                inputs::random_tensor(name, dtype, shape.clone(), &mut rng)?
            }
            Some(InputSource::File(path)) => {
                let t = files.remove(name).expect("every file was read");
                if let Some(d) = dtype
                    && t.dtype() != *d
                {
                    bail!(
                        "input '{name}' is {} ({}), but the model takes {}",
                        t.dtype(),
                        path.display(),
                        d
                    );
                }
                t
            }
            None => bail!(
                "input '{name}' ({}) was not given: pass --input {name}=FILE.npy or --input {name}=random",
                wpc_ir::Shape::known(shape)
            ),
        };
        out.push((name.clone(), t));
    }
    Ok(out)
}

/// Named input tensors, in the model's order.
type Feeds = Vec<(String, Tensor)>;

/// Binds `declared` inputs (in order) to shapes — from the files given,
/// `--input-shape` and `symbols`, all checked by
/// [`wpc::binding::resolve`] — and builds their feeds.
fn bind_feeds(
    declared: Vec<(String, ValueType)>,
    symbols: &HashMap<String, Said>,
    binding: &Binding,
    given: &[(String, InputSource)],
    seed: u64,
) -> Result<(HashMap<String, Vec<usize>>, Feeds)> {
    let (files, mut shapes) = read_input_files(given)?;
    shapes.extend(wpc::binding::given_by_shape_flags(
        binding.input_shapes.iter().map(|(n, s)| (n, s)),
    ));
    let bound = wpc::binding::resolve(&declared, symbols, &shapes)?.concrete()?;
    let declared: Vec<_> = declared
        .into_iter()
        .map(|(n, ty)| {
            let shape = bound[&n].clone();
            (n, ty.dtype, shape)
        })
        .collect();
    let feeds = feeds(&declared, given, files, seed)?;
    Ok((bound, feeds))
}

/// Runs an .onnx model on `backend`: the reference interpreter, or a
/// variant compiled on the fly. Input shapes are bound from the files,
/// `--dim` and `--input-shape` together, checked against the model.
fn run_model(
    path: &Path,
    backend: BackendName,
    target: &TargetArgs,
    given: &[(String, InputSource)],
    binding: &Binding,
    seed: u64,
) -> Result<Vec<(String, Tensor)>> {
    let model = wpc::load(path)?;
    let within = |e: wpc_ir::Error| anyhow::Error::new(e.within(path.display().to_string()));
    wpc_ir::ops::check_model(&model).map_err(within)?;
    let profile = match backend {
        // The reference interpreter needs no target (the default one is
        // only a carrier for the bindings).
        BackendName::Reference => wpc::targets::builtin("webgpu-baseline")?,
        _ => target.profile()?,
    };
    let mut options = binding.apply(backend.options(profile))?;
    if let Some((name, _)) = given.iter().find(|(n, _)| options.frozen.contains_key(n)) {
        bail!("input '{name}' is frozen with --freeze; do not also give it with --input");
    }
    let mut declared = wpc::binding::declared_inputs(&model);
    declared.retain(|(n, _)| !options.frozen.contains_key(n));
    // A --dim range leaves sizes to run time, as `wpc compile` with it
    // does, so every backend runs the graph that bundle holds (binding
    // the feeds' own sizes can fold more, e.g. a lookup whose indices
    // then are constant, and quantize differently). Only where --dim
    // sizes every symbol: others take the feeds' sizes.
    let open = binding.dims.values().any(|s| s.lo != s.hi)
        && declared.iter().all(|(_, ty)| {
            ty.shape.dims().is_some_and(|dims| {
                dims.iter().all(|d| match d {
                    Dim::Known(_) => true,
                    Dim::Symbol(s) => binding.dims.contains_key(s),
                    _ => false,
                })
            })
        });
    let (bound, feeds) = bind_feeds(
        declared,
        &wpc::binding::said_by_dim_flags(&binding.dims),
        binding,
        given,
        seed,
    )
    .with_context(|| path.display().to_string())?;
    if !open {
        options.input_shapes = bound;
    }
    if backend == BackendName::Reference {
        let prepared = wpc::compile::prepare(&model, &options).map_err(within)?;
        let feeds = feeds.into_iter().collect();
        return wpc_ir::interp::run_model(&prepared, &feeds).map_err(within);
    }
    let source = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let bundle = wpc::compile::compile_model(&model, &name, &source, &options).map_err(within)?;
    let tensors: Vec<Tensor> = feeds.into_iter().map(|(_, t)| t).collect();
    run_variant(&bundle, backend, &tensors).with_context(|| path.display().to_string())
}

/// Runs a bundle directory on `backend` (default: its first variant). The
/// bundle was compiled for fixed sizes: inputs, `--dim` and
/// `--input-shape` are checked against them.
fn run_bundle(
    path: &Path,
    backend: Option<BackendName>,
    given: &[(String, InputSource)],
    binding: &Binding,
    seed: u64,
) -> Result<Vec<(String, Tensor)>> {
    if let Some(flag) = binding.compile_only_flag() {
        bail!(
            "{flag} applies when compiling; {} is a compiled bundle (recompile the model with {flag})",
            path.display()
        );
    }
    let bundle = wpc::runtime::Bundle::read(path)?;
    let m = &bundle.manifest;
    let backend = match backend {
        Some(BackendName::Reference) => bail!(
            "{} is a bundle; the reference backend runs .onnx models (give the model file, or \
             --backend {})",
            path.display(),
            available_backends(m)
        ),
        Some(b) => b,
        None => {
            let first = m.variants.iter().find_map(BackendName::of_variant);
            let b =
                first.with_context(|| format!("{}: the bundle has no variants", path.display()))?;
            tell!(
                "running the bundle's first variant, {} (choose one with --backend)",
                b.name()
            );
            b
        }
    };
    // What the bundle was compiled for says the size of each symbol; the
    // user's facts must agree with it.
    let mut symbols: HashMap<String, Said> = HashMap::new();
    let mut declared = Vec::new();
    let dynamic = |s: &str| m.dims.iter().find(|d| d.name == s);
    for t in &m.inputs {
        let mut dims = Vec::new();
        for (d, &size) in t.shape.iter().zip(&t.bound) {
            dims.push(match d {
                DimInfo::Symbol(s) if s != "?" => {
                    let said = match dynamic(s) {
                        Some(r) => Said {
                            sizes: wpc::binding::Sizes {
                                lo: r.min as usize,
                                hi: r.max as usize,
                            },
                            by: format!("the bundle (compiled to run at {s}={}..{})", r.min, r.max),
                        },
                        None => Said {
                            sizes: wpc::binding::Sizes::fixed(size as usize),
                            by: format!(
                                "the bundle (compiled for {s}={size}; recompile to change it)"
                            ),
                        },
                    };
                    symbols.insert(s.clone(), said);
                    Dim::Symbol(s.clone())
                }
                _ => Dim::Known(size as usize),
            });
        }
        let ty = ValueType {
            dtype: t.dtype().ok(),
            shape: wpc_ir::Shape(Some(dims)),
        };
        declared.push((t.name.clone(), ty));
    }
    for (s, said) in wpc::binding::said_by_dim_flags(&binding.dims) {
        match symbols.get(&s) {
            // A size within the range the bundle runs at.
            Some(b)
                if said.sizes.one().is_some_and(|n| b.sizes.contains(n))
                    && b.sizes.one().is_none() =>
            {
                symbols.insert(s, said);
            }
            Some(b) if b.sizes.one().is_none() => bail!(
                "{}: this bundle runs at {s}={}; give a size within it, or recompile the model with {}",
                said.by,
                b.sizes,
                said.by
            ),
            Some(b) if b.sizes != said.sizes => bail!(
                "{}: this bundle was compiled for {s}={}; recompile the model with {} to run it at that size",
                said.by,
                b.sizes,
                said.by
            ),
            Some(_) => {}
            None => {
                symbols.insert(s, said);
            }
        }
    }
    let (_, feeds) = bind_feeds(declared, &symbols, binding, given, seed)
        .with_context(|| path.display().to_string())?;
    let tensors: Vec<Tensor> = feeds.into_iter().map(|(_, t)| t).collect();
    run_variant(&bundle, backend, &tensors).with_context(|| path.display().to_string())
}

/// The bundle's variants as `--backend` names.
fn available_backends(m: &wpc::runtime::Manifest) -> String {
    let names: Vec<&str> = m
        .variants
        .iter()
        .filter_map(BackendName::of_variant)
        .map(BackendName::name)
        .collect();
    names.join("|")
}

/// Runs one of the bundle's variants natively on `inputs` (in the
/// manifest's order); outputs are named.
fn run_variant(
    bundle: &wpc::runtime::Bundle,
    backend: BackendName,
    inputs: &[Tensor],
) -> Result<Vec<(String, Tensor)>> {
    let m = &bundle.manifest;
    if !m
        .variants
        .iter()
        .any(|v| BackendName::of_variant(v) == Some(backend))
    {
        bail!(
            "the bundle has no {} variant (it has: {}); the target profile '{}' it was compiled \
             for leaves it out, or its ops have no kernels there (wpc compile says which)",
            backend.name(),
            available_backends(m).replace('|', ", "),
            m.target
        );
    }
    let results = match backend.isa() {
        Some(isa) => {
            wpc::runtime::wasm::Session::load(bundle, isa.name()).and_then(|mut s| s.run(inputs))
        }
        None => {
            let gpu = wpc::runtime::webgpu::Gpu::new()?;
            wpc::runtime::webgpu::Session::load(&gpu, bundle).and_then(|s| s.run(inputs))
        }
    }?;
    Ok(m.outputs
        .iter()
        .map(|t| t.name.clone())
        .zip(results)
        .collect())
}

/// File names for output tensors: ONNX names may hold `/` or `:`, which
/// become `_`; names that then collide (`a/b`, `a_b`) get `-2`, `-3`, ….
fn output_files(names: &[&str]) -> Vec<String> {
    let mut taken = std::collections::HashSet::new();
    names
        .iter()
        .map(|name| {
            let base: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let base = if base.is_empty() || base.starts_with('.') {
                format!("output{base}")
            } else {
                base
            };
            let mut file = format!("{base}.npy");
            let mut n = 1;
            while !taken.insert(file.to_lowercase()) {
                n += 1;
                file = format!("{base}-{n}.npy");
            }
            file
        })
        .collect()
}

/// Writes one .npy per output and `outputs.json` (each output's name,
/// file, dtype and shape) as the directory `out`, under the output
/// directory policy ([`outdir`]): all or nothing.
fn write_outputs(outputs: &[(String, Tensor)], out: &Path, force: bool) -> Result<()> {
    let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
    let files = output_files(&names);
    let listing: Vec<serde_json::Value> = outputs
        .iter()
        .zip(&files)
        .map(|((name, t), file)| {
            serde_json::json!({
                "name": name,
                "file": file,
                "dtype": t.dtype().name(),
                "shape": t.shape(),
            })
        })
        .collect();
    let (marker, format) = DirKind::Outputs.marker();
    let index = serde_json::json!({ "format": format, "version": 1, "outputs": listing });
    outdir::write(out, DirKind::Outputs, force, |tmp| -> Result<()> {
        for ((_, t), file) in outputs.iter().zip(&files) {
            // Errors name the file where it will be, not the staging copy.
            wpc::npy::write(&tmp.join(file), t).map_err(|e| {
                anyhow::anyhow!(
                    "cannot write {}: {}",
                    out.join(file).display(),
                    e.root_cause()
                )
            })?;
        }
        let text = serde_json::to_string_pretty(&index)? + "\n";
        std::fs::write(tmp.join(marker), text)
            .with_context(|| format!("cannot write {}", out.join(marker).display()))?;
        Ok(())
    })?;
    for ((name, t), file) in outputs.iter().zip(&files) {
        say!(
            "{name}: {} {:?} -> {}",
            t.dtype(),
            t.shape(),
            out.join(file).display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::output_files;

    #[test]
    fn output_file_names_never_collide() {
        assert_eq!(
            output_files(&["a/b", "a_b", "A_B", "y", ".", ""]),
            [
                "a_b.npy",
                "a_b-2.npy",
                "A_B-3.npy",
                "y.npy",
                "output..npy",
                "output.npy"
            ]
        );
    }
}
