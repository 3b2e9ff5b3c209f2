//! The `wpc` command-line tool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use wpc::conformance::{self, Baseline};
use wpc::inputs::{self, InputSource};

/// wpc compiles ONNX models into per-browser kernel bundles (WebGPU,
/// WebAssembly, WebNN). Today it imports models, checks which ops it can
/// run, and runs them on its reference interpreter, which is the oracle
/// every backend is tested against.
///
/// Exit codes: 0 success, 1 a problem with the model or the command line
/// (the message names the file, node, op and reason), 2 an internal error.
#[derive(Parser)]
#[command(name = "wpc", version, propagate_version = true)]
#[command(
    after_help = "Examples:\n  wpc inspect model.onnx\n  wpc run model.onnx --input x=random --dim batch=1 --output-dir out/\n  wpc conformance ~/.cache/wpc-conformance --json report.json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendName {
    /// The reference interpreter (CPU, exact ONNX semantics).
    Reference,
}

#[derive(Subcommand)]
enum Command {
    /// Summarise a model: opsets, inputs and outputs with symbolic shapes,
    /// op histogram, parameter count, and every node wpc cannot run.
    Inspect {
        /// The .onnx file (external data is read from beside it).
        model: PathBuf,
    },
    /// Run a model on inputs from .npy files or random data, writing one
    /// <output>.npy per model output.
    Run {
        /// The .onnx file.
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
        Command::Run {
            model,
            backend: BackendName::Reference,
            inputs,
            dims,
            seed,
            output_dir,
        } => run(&model, &inputs, &dims, seed, &output_dir),
        Command::Conformance {
            dir,
            backend: BackendName::Reference,
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
            let report = conformance::run_all(
                &dir,
                &conformance::Reference,
                filter.as_deref(),
                threads,
                &|done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                },
            )?;
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
    let dims: HashMap<String, usize> = dims
        .iter()
        .map(|s| inputs::parse_dim(s))
        .collect::<Result<_>>()?;
    let feeds = inputs::gather_inputs(&model, &given, &dims, seed)?;
    let outputs = wpc_ir::interp::run_model(&model, &feeds)
        .with_context(|| model_path.display().to_string())?;
    // Write into a temporary directory first so a failure leaves no partial output.
    let parent = output_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = tempfile_dir(parent)?;
    for (name, t) in &outputs {
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
