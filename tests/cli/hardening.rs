//! The CLI as a careless or unlucky user meets it: output paths that hold
//! someone's files, sizes that disagree with the model, closed pipes,
//! bugs, huge tensors, edited bundles. Each test names the promise it
//! checks: nothing of the user's is lost, nothing silently wrong is
//! returned, and every failure is exit 1 with a message (2 only for bugs).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use proptest::prelude::*;
use wpc::ir::Tensor;
use wpc::ir::onnx::proto::{
    AttributeProto, Dimension, DimensionValue, ModelProto, NodeProto, TensorProto,
    TensorShapeProto, TensorTypeProto, TypeProto, TypeValue, ValueInfoProto, attribute_type,
};

use super::{manifest_json, small_model, stderr, value_info, weights, write};

/// `wpc ARGS` run in `dir`, with extra environment variables.
fn wpc_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wpc"));
    cmd.current_dir(dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("wpc runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Exit 1, every needle in stderr, no panic.
fn assert_fails(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn npy(dir: &Path, name: &str, t: &Tensor) -> String {
    let path = dir.join(name);
    wpc::npy::write(&path, t).unwrap();
    path.to_string_lossy().into_owned()
}

/// `y = Relu(x · w + b)` for x of `[batch, 3]`, written as `m.onnx`.
fn relu_model(dir: &Path) -> String {
    write(dir, "m.onnx", &small_model("Relu", weights()))
}

/// What [`relu_model`] computes, for checking outputs.
fn relu_reference(x: &[f32]) -> Vec<f64> {
    x.chunks(3)
        .flat_map(|r| {
            let (a, b) = (r[0] + r[2] + 0.5, r[1] + r[2] - 10.0);
            [f64::from(a.max(0.0)), f64::from(b.max(0.0))]
        })
        .collect()
}

#[test]
fn output_paths_that_hold_other_files_are_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = relu_model(d);
    std::fs::write(d.join("notes.txt"), b"mine").unwrap();
    let compile = |o: &str, extra: &[&str]| {
        let mut args = vec!["compile", &model, "--dim", "batch=1", "-o", o];
        args.extend_from_slice(extra);
        wpc_in(d, &args, &[])
    };
    for o in [".", "./", "sub/..", d.to_str().unwrap()] {
        for force in [&[][..], &["--force"][..]] {
            assert_fails(&compile(o, force), &["current directory"]);
        }
    }
    assert_eq!(std::fs::read(d.join("notes.txt")).unwrap(), b"mine");

    std::fs::create_dir(d.join("theirs")).unwrap();
    std::fs::write(d.join("theirs/photo.jpg"), b"keep").unwrap();
    assert_fails(&compile("theirs", &[]), &["is not a wpc bundle", "--force"]);
    assert_eq!(std::fs::read(d.join("theirs/photo.jpg")).unwrap(), b"keep");
    let o = compile("notes.txt", &[]);
    assert_fails(&o, &["notes.txt: exists and is not a directory"]);
    assert_eq!(stderr(&o).matches("os error").count(), 0, "{}", stderr(&o));

    // A bundle is replaced by the next compile; --force takes any directory.
    assert!(compile("m.wpc", &[]).status.success());
    assert!(compile("m.wpc", &[]).status.success());
    assert!(compile("theirs", &["--force"]).status.success());
    assert!(d.join("theirs/manifest.json").exists());
    assert!(!d.join("theirs/photo.jpg").exists());

    // `run` follows the same policy, checked before any work.
    let run = |o: &str| {
        wpc_in(
            d,
            &[
                "run", &model, "--input", "x=random", "--dim", "batch=1", "-o", o,
            ],
            &[],
        )
    };
    let o = run("notes.txt");
    assert_fails(&o, &["notes.txt: exists and is not a directory"]);
    assert!(
        stdout(&o).is_empty(),
        "nothing claimed written: {}",
        stdout(&o)
    );
    assert_fails(&run("."), &["current directory"]);
    assert!(run("out").status.success());
    assert!(run("out").status.success(), "its own outputs are replaced");
    assert_fails(&run("m.wpc"), &["is not a wpc outputs directory"]);
    assert_eq!(
        listing(d),
        ["m.onnx", "m.wpc", "notes.txt", "out", "theirs"],
        "no staging directory is left behind"
    );
    // Without -o the outputs go beside the model.
    assert!(
        wpc_in(
            d,
            &["run", &model, "--input", "x=random", "--dim", "batch=1"],
            &[]
        )
        .status
        .success()
    );
    assert!(d.join("m.outputs/y.npy").exists());
    assert!(
        wpc_in(
            d,
            &["run", "m.wpc", "--input", "x=random", "--output-dir", "o2"],
            &[]
        )
        .status
        .success(),
        "--output-dir is -o's other name"
    );

    // A file of the user's added to a bundle makes it theirs.
    std::fs::write(d.join("m.wpc/notes.txt"), b"mine").unwrap();
    assert_fails(
        &compile("m.wpc", &[]),
        &["'notes.txt', which its manifest.json does not list"],
    );
    assert_eq!(std::fs::read(d.join("m.wpc/notes.txt")).unwrap(), b"mine");
    std::fs::remove_file(d.join("m.wpc/notes.txt")).unwrap();
    // What a command reads survives it, even with --force.
    std::fs::create_dir(d.join("models")).unwrap();
    std::fs::copy(&model, d.join("models/m.onnx")).unwrap();
    let o = wpc_in(
        d,
        &[
            "compile",
            "models/m.onnx",
            "--dim",
            "batch=1",
            "-o",
            "models",
            "--force",
        ],
        &[],
    );
    assert_fails(&o, &["which this command reads"]);
    assert!(d.join("models/m.onnx").exists());
    let o = wpc_in(
        d,
        &[
            "run", "m.wpc", "--input", "x=random", "-o", "m.wpc", "--force",
        ],
        &[],
    );
    assert_fails(&o, &["which this command reads"]);
    assert!(d.join("m.wpc/manifest.json").exists());
}

#[test]
fn inputs_and_outputs_with_no_declared_shape_compile_into_bundles_that_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut m = small_model("Relu", weights());
    let graph = m.graph.as_mut().unwrap();
    for info in graph.input.iter_mut().chain(graph.output.iter_mut()) {
        if let Some(TypeValue::TensorType(t)) = info.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.shape = None;
        }
    }
    let model = write(d, "m.onnx", &m);
    let o = wpc_in(
        d,
        &["compile", &model, "--input-shape", "x=2x3", "-o", "m.wpc"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest = manifest_json(&d.join("m.wpc"));
    assert_eq!(
        manifest["inputs"][0]["shape"],
        serde_json::json!(["?", "?"])
    );
    assert_eq!(manifest["inputs"][0]["bound"], serde_json::json!([2, 3]));
    let x = Tensor::from_vec(vec![2, 3], vec![1.0f32, 2.0, 3.0, -4.0, 5.0, -6.0]);
    let x = npy(d, "x.npy", &x);
    let input = format!("x={x}");
    for backend in ["wasm", "webgpu"] {
        let o = wpc_in(
            d,
            &[
                "run",
                "m.wpc",
                "--backend",
                backend,
                "--input",
                &input,
                "-o",
                backend,
            ],
            &[],
        );
        assert!(o.status.success(), "{backend}: {}", stderr(&o));
        let y = wpc::npy::read(&d.join(backend).join("y.npy")).unwrap();
        let want = relu_reference(&[1.0, 2.0, 3.0, -4.0, 5.0, -6.0]);
        let got: Vec<f64> = y.to_f64s();
        assert_eq!(got.len(), want.len(), "{backend}");
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{backend}: {got:?} vs {want:?}");
        }
    }
}

#[test]
fn every_size_is_checked_against_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = relu_model(d);
    let run = |args: &[&str]| {
        let mut all = vec!["run", model.as_str()];
        all.extend_from_slice(args);
        wpc_in(d, &all, &[])
    };
    let compile = |args: &[&str]| {
        let mut all = vec!["compile", model.as_str(), "-o", "c.wpc"];
        all.extend_from_slice(args);
        wpc_in(d, &all, &[])
    };
    for o in [
        run(&["--input", "x=random", "--input-shape", "x=1x4", "-o", "o"]),
        compile(&["--input-shape", "x=1x4"]),
    ] {
        assert_fails(&o, &["input 'x' is given as [1, 4]", "fixes dim 1 to 3"]);
    }
    for o in [
        run(&[
            "--input",
            "x=random",
            "--dim",
            "batch=2",
            "--input-shape",
            "x=1x3",
            "-o",
            "o",
        ]),
        compile(&["--dim", "batch=2", "--input-shape", "x=1x3"]),
    ] {
        assert_fails(&o, &["'batch', which is 2 by --dim batch=2"]);
    }
    let x = npy(
        d,
        "x.npy",
        &Tensor::from_vec(vec![2, 3], vec![1.0f32, 2., 3., -4., 5., -6.]),
    );
    assert_fails(
        &run(&[
            "--input",
            &format!("x={x}"),
            "--input",
            "x=random",
            "-o",
            "o",
        ]),
        &["--input x is given twice"],
    );
    assert_fails(
        &run(&["--input", &format!("x={x}"), "--dim", "batch=3", "-o", "o"]),
        &["x.npy", "'batch', which is 3 by --dim batch=3"],
    );
    assert_fails(
        &compile(&["--dim", "btach=2"]),
        &["no input of the model has a dim named 'btach'", "batch"],
    );
    assert_fails(
        &run(&[
            "--input", "x=random", "--dim", "batch=1", "--dim", "batch=2", "-o", "o",
        ]),
        &["--dim batch is given twice"],
    );
    // A file's shape binds the dims, on every backend.
    for backend in ["reference", "wasm", "wasm-scalar"] {
        let out = format!("out-{backend}");
        let o = run(&[
            "--backend",
            backend,
            "--input",
            &format!("x={x}"),
            "-o",
            &out,
        ]);
        assert!(o.status.success(), "{backend}: {}", stderr(&o));
        let y = wpc::npy::read(&d.join(&out).join("y.npy")).unwrap();
        assert_eq!(y.shape(), [2, 2]);
        let want = relu_reference(&[1.0, 2., 3., -4., 5., -6.]);
        for (got, want) in y.to_f64s().iter().zip(&want) {
            assert!((got - want).abs() < 1e-5, "{backend}: {got} vs {want}");
        }
    }
    // A bundle's sizes are fixed: a file or --dim that disagrees is refused.
    assert!(compile(&["--dim", "batch=1"]).status.success());
    let o = wpc_in(
        d,
        &["run", "c.wpc", "--input", &format!("x={x}"), "-o", "o"],
        &[],
    );
    assert_fails(&o, &["'batch', which is 1 by the bundle"]);
    let o = wpc_in(
        d,
        &[
            "run", "c.wpc", "--input", "x=random", "--dim", "batch=2", "-o", "o",
        ],
        &[],
    );
    assert_fails(&o, &["compiled for batch=1"]);
    let o = wpc_in(
        d,
        &["run", "c.wpc", "--input", "x=random", "--freeze", "x=x.npy"],
        &[],
    );
    assert_fails(&o, &["--freeze applies when compiling"]);
}

/// A model with outputs `a/b` = Relu(x) and `a_b` = Neg(x), whose file
/// names collide once `/` is replaced.
fn colliding_outputs_model() -> ModelProto {
    let mut m = small_model("Relu", weights());
    let g = m.graph.as_mut().unwrap();
    let node = |op: &str, out: &str| NodeProto {
        input: vec!["x".into()],
        output: vec![out.into()],
        op_type: op.into(),
        ..Default::default()
    };
    g.node = vec![node("Relu", "a/b"), node("Neg", "a_b")];
    g.initializer.clear();
    let batch = DimensionValue::DimParam("batch".into());
    let dims = [batch, DimensionValue::DimValue(3)];
    g.output = vec![value_info("a/b", &dims), value_info("a_b", &dims)];
    m
}

#[test]
fn outputs_whose_names_collide_are_all_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = write(d, "two.onnx", &colliding_outputs_model());
    let x = npy(
        d,
        "x.npy",
        &Tensor::from_vec(vec![1, 3], vec![1.0f32, -2., 3.]),
    );
    let o = wpc_in(
        d,
        &["run", &model, "--input", &format!("x={x}"), "-o", "out"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let relu = wpc::npy::read(&d.join("out/a_b.npy")).unwrap();
    let neg = wpc::npy::read(&d.join("out/a_b-2.npy")).unwrap();
    assert_eq!(relu.to_f64s(), [1.0, 0.0, 3.0]);
    assert_eq!(neg.to_f64s(), [-1.0, 2.0, -3.0]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out/outputs.json")).unwrap()).unwrap();
    assert_eq!(index["outputs"][0]["name"], "a/b");
    assert_eq!(index["outputs"][1]["file"], "a_b-2.npy");
    assert!(
        stdout(&o).contains("a_b: float32 [1, 3] ->"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn edited_bundles_are_refused_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = relu_model(d);
    let o = wpc_in(
        d,
        &["compile", &model, "--dim", "batch=1", "--target", "chrome"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest = d.join("m.wpc/manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["outputs"][0]["bound"] = serde_json::json!([4, 2]);
    std::fs::write(&manifest, serde_json::to_vec(&json).unwrap()).unwrap();
    for backend in ["wasm", "wasm-relaxed", "webgpu"] {
        let o = wpc_in(
            d,
            &["run", "m.wpc", "--backend", backend, "--input", "x=random"],
            &[],
        );
        assert_fails(&o, &["bad bundle", "output 'y'"]);
        assert!(!d.join("m.outputs").exists());
    }
    // Weights read from a shard that lists other readers.
    json["outputs"][0]["bound"] = serde_json::json!([1, 2]);
    let original = json.clone();
    for shard in json["shards"].as_array_mut().unwrap() {
        shard["variants"] = serde_json::json!(["wasm-scalar"]);
    }
    std::fs::write(&manifest, serde_json::to_vec(&json).unwrap()).unwrap();
    for backend in ["wasm", "webgpu"] {
        let o = wpc_in(
            d,
            &["run", "m.wpc", "--backend", backend, "--input", "x=random"],
            &[],
        );
        assert_fails(&o, &["bad bundle", "outside its shards"]);
    }
    json = original;
    json["version"] = serde_json::json!(1);
    std::fs::write(&manifest, serde_json::to_vec(&json).unwrap()).unwrap();
    let o = wpc_in(d, &["run", "m.wpc", "--input", "x=random"], &[]);
    assert_fails(&o, &["format version 1; this wpc reads version 3"]);
}

#[test]
fn closed_pipes_end_quietly_and_the_work_is_still_done() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = relu_model(d);
    let closed = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wpc"))
            .current_dir(d)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the pipe before wpc writes to it.
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (child.wait().unwrap(), err)
    };
    for args in [
        &["ops"][..],
        &["inspect", &model],
        &["compile", &model, "--dim", "batch=1", "-o", "p.wpc"],
        &[
            "run", &model, "--input", "x=random", "--dim", "batch=1", "-o", "piped",
        ],
    ] {
        let (status, err) = closed(args);
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    assert!(d.join("p.wpc/manifest.json").exists());
    assert!(d.join("piped/y.npy").exists(), "outputs are written");
    assert_eq!(
        listing(d),
        ["m.onnx", "p.wpc", "piped"],
        "no staging directory left"
    );
}

#[test]
fn internal_errors_say_what_panicked_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let o = wpc_in(
        dir.path(),
        &["targets"],
        &[("WPC_TEST_PANIC", "1"), ("RUST_BACKTRACE", "0")],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for needle in [
        "internal error",
        "panicked at src/main.rs",
        "WPC_TEST_PANIC is set",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert!(err.contains("RUST_BACKTRACE=1"), "{err}");
    let o = wpc_in(
        dir.path(),
        &["targets"],
        &[("WPC_TEST_PANIC", "1"), ("RUST_BACKTRACE", "1")],
    );
    assert!(stderr(&o).contains("backtrace:\n"), "{}", stderr(&o));
    assert!(stderr(&o).contains("dispatch"), "{}", stderr(&o));
}

#[test]
fn huge_tensors_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = relu_model(d);
    let o = wpc_in(
        d,
        &[
            "run",
            &model,
            "--input",
            "x=random",
            "--dim",
            "batch=1000000000000",
            "-o",
            "o",
        ],
        &[],
    );
    assert_fails(
        &o,
        &[
            "random input 'x'",
            // 3e12 float32s, and the f64 values they are made from.
            "needs 36000000000000 bytes",
            "available",
        ],
    );
    let o = wpc_in(
        d,
        &[
            "run",
            &model,
            "--input",
            "x=random",
            "--dim",
            "batch=18446744073709551615",
        ],
        &[],
    );
    assert_fails(&o, &["more than 2^64 bytes"]);
    assert_eq!(listing(d), ["m.onnx"]);
}

/// A tensor value of ONNX element type `elem_type` whose dims may be
/// unnamed (`None`).
fn typed_info(name: &str, elem_type: i32, dims: &[Option<DimensionValue>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension { value: d.clone() })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(TensorTypeProto {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
    }
}

/// `small_model` with its batch dim given as `batch` (None: unnamed).
fn batch_as(batch: Option<DimensionValue>) -> ModelProto {
    let mut m = small_model("Relu", weights());
    m.graph.as_mut().unwrap().input = vec![typed_info(
        "x",
        1,
        &[batch, Some(DimensionValue::DimValue(3))],
    )];
    m
}

/// `small_model` with its batch dim left unnamed (`[?, 3]`).
fn unnamed_dim_model() -> ModelProto {
    batch_as(None)
}

#[test]
fn messages_point_at_the_flag_that_fixes_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let unnamed = write(d, "u.onnx", &unnamed_dim_model());
    // An unnamed dim is named INPUT.AXIS: running needs its size, and
    // the message names the flag that gives it.
    let o = wpc_in(d, &["run", &unnamed, "--input", "x=random"], &[]);
    assert_fails(&o, &["input 'x' has symbolic dim 'x.0'", "--dim x.0=N"]);
    // Compiling leaves it to run time, bounded by the memory budget.
    let o = wpc_in(d, &["compile", &unnamed, "-o", "u.wpc"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("dim x.0 runs at 1..") && stdout(&o).contains("--dim x.0=MIN..MAX"),
        "{}",
        stdout(&o)
    );
    // --input-shape works on run too, and binds the unnamed dim.
    let o = wpc_in(
        d,
        &[
            "run",
            &unnamed,
            "--backend",
            "wasm",
            "--input",
            "x=random",
            "--input-shape",
            "x=2x3",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("y: float32 [2, 2]"), "{}", stdout(&o));

    // A bundle built without a variant says why, at compile and at run.
    let model = relu_model(d);
    let o = wpc_in(
        d,
        &[
            "compile",
            &model,
            "--dim",
            "batch=1",
            "--target",
            "safari-ios",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o)
            .contains("wasm-relaxed: left out: the target profile 'safari-ios' does not allow"),
        "{}",
        stdout(&o)
    );
    let o = wpc_in(
        d,
        &[
            "run",
            "m.wpc",
            "--backend",
            "wasm-relaxed",
            "--input",
            "x=random",
        ],
        &[],
    );
    assert_fails(&o, &["has no wasm-relaxed variant", "safari-ios"]);
    assert!(!stderr(&o).contains("WebGPU adapter"), "{}", stderr(&o));
    let o = wpc_in(
        d,
        &[
            "run",
            "m.wpc",
            "--backend",
            "reference",
            "--input",
            "x=random",
        ],
        &[],
    );
    assert_fails(&o, &["m.wpc is a bundle", "--backend"]);
    // Without --backend a bundle runs its first variant.
    let o = wpc_in(
        d,
        &["run", "m.wpc", "--input", "x=random", "-o", "first"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("first variant"), "{}", stderr(&o));

    // An If steered by a model input asks for --freeze.
    let o = wpc_in(d, &["compile", &if_model(d)], &[]);
    assert_fails(&o, &["'flag'", "If's condition", "--freeze"]);
    // `bench` with nothing to measure is a usage error.
    let o = wpc_in(d, &["bench"], &[]);
    assert_eq!(o.status.code(), Some(1));
}

/// `y = If(flag) { x } else { -x }` with `flag` a model input.
fn if_model(dir: &Path) -> String {
    let mut m = small_model("Relu", weights());
    let g = m.graph.as_mut().unwrap();
    let branch = |op: &str| wpc::ir::onnx::proto::GraphProto {
        node: vec![NodeProto {
            input: vec!["x".into()],
            output: vec![format!("{op}_out")],
            op_type: op.into(),
            ..Default::default()
        }],
        name: op.into(),
        output: vec![value_info(
            &format!("{op}_out"),
            &[DimensionValue::DimValue(3)],
        )],
        ..Default::default()
    };
    let graph_attr = |name: &str, op: &str| AttributeProto {
        name: name.into(),
        r#type: attribute_type::GRAPH,
        g: Some(branch(op)),
        ..Default::default()
    };
    g.node = vec![NodeProto {
        input: vec!["flag".into()],
        output: vec!["y".into()],
        op_type: "If".into(),
        name: "choose".into(),
        attribute: vec![
            graph_attr("then_branch", "Identity"),
            graph_attr("else_branch", "Neg"),
        ],
        ..Default::default()
    }];
    g.initializer.clear();
    let flag = typed_info("flag", 9, &[]);
    g.input = vec![value_info("x", &[DimensionValue::DimValue(3)]), flag];
    g.output = vec![value_info("y", &[DimensionValue::DimValue(3)])];
    write(dir, "if.onnx", &m)
}

/// `small_model` with `w` as a Constant node instead of an initializer,
/// and `q = Det(qa · qb)` of an input `qa` (neither backend has a kernel
/// for Det: WebGPU cannot run it, wasm runs the reference kernel).
fn constant_weights_model() -> ModelProto {
    let mut m = small_model("Relu", weights());
    let g = m.graph.as_mut().unwrap();
    let w = g.initializer.remove(0);
    g.node.insert(
        0,
        NodeProto {
            output: vec!["w".into()],
            op_type: "Constant".into(),
            attribute: vec![AttributeProto {
                name: "value".into(),
                r#type: attribute_type::TENSOR,
                t: Some(w),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    g.initializer.push(TensorProto {
        name: "qb".into(),
        dims: vec![2, 2],
        data_type: 1,
        float_data: vec![1.0, 2.0, 3.0, 4.0],
        ..Default::default()
    });
    let two = Some(DimensionValue::DimValue(2));
    g.input.push(typed_info("qa", 1, &[two.clone(), two]));
    for (op, inputs, out, name) in [
        ("Mul", ["qa", "qb"].as_slice(), "m", "scaled"),
        ("Det", ["m"].as_slice(), "q", "determinant"),
    ] {
        g.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.into()],
            op_type: op.into(),
            name: name.into(),
            ..Default::default()
        });
    }
    g.output.push(typed_info("q", 1, &[]));
    m
}

#[test]
fn inspect_and_ops_say_what_each_backend_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = write(d, "c.onnx", &constant_weights_model());
    let o = wpc_in(d, &["inspect", &model], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for needle in [
        "parameters: 12 in 2 initializers and 1 Constant nodes",
        "webgpu     1 nodes have no kernel (Det x1), e.g. 'determinant' (Det)",
        "wasm runs 1 nodes on the slower reference kernels (reference.wasm): Det x1",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let unnamed = write(d, "u.onnx", &unnamed_dim_model());
    let named = write(
        d,
        "q.onnx",
        &batch_as(Some(DimensionValue::DimParam("?".into()))),
    );
    let shape_of = |m: &str| {
        let text = stdout(&wpc_in(d, &["inspect", m], &[]));
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("x "))
            .unwrap()
            .to_string();
        line.split_whitespace()
            .skip(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        shape_of(&unnamed),
        "[x.0, 3]",
        "named, so --dim can size it"
    );
    assert_eq!(shape_of(&named), "['?', 3]");

    let o = wpc_in(d, &["ops"], &[]);
    let text = stdout(&o);
    let row = |op: &str| {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(op))
            .unwrap();
        line.split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row("Einsum"), "yes yes - reference kernel");
    assert_eq!(row("MatMul"), "yes yes kernel kernel");
    assert_eq!(row("If"), "- yes - -");
}

#[test]
fn the_wasm_reference_module_is_compiled_once_per_machine() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = write(d, "c.onnx", &constant_weights_model());
    let cache = d.join("cache");
    let env = [("WPC_CACHE_DIR", cache.to_str().unwrap())];
    let run = |o: &str| {
        let args = [
            "run",
            &model,
            "--backend",
            "wasm",
            "--input",
            "x=random",
            "--input",
            "qa=random",
            "--dim",
            "batch=1",
            "-o",
            o,
        ];
        wpc_in(d, &args, &env)
    };
    let first = run("a");
    assert!(first.status.success(), "{}", stderr(&first));
    let cached = listing(&cache);
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].ends_with(".cwasm"));
    let modified = std::fs::metadata(cache.join(&cached[0]))
        .unwrap()
        .modified()
        .unwrap();
    assert!(run("b").status.success());
    assert_eq!(listing(&cache), cached);
    assert_eq!(
        std::fs::metadata(cache.join(&cached[0]))
            .unwrap()
            .modified()
            .unwrap(),
        modified,
        "the second run reads the cache"
    );
    assert_eq!(
        std::fs::read(d.join("a/q.npy")).unwrap(),
        std::fs::read(d.join("b/q.npy")).unwrap()
    );
}

/// One random command line for [`relu_model`]: how x is given, which
/// flags say what about its size, and which backend runs it.
#[derive(Debug, Clone)]
struct Case {
    /// The file's shape, or None for `x=random`.
    file: Option<Vec<usize>>,
    dim: Option<usize>,
    input_shape: Option<Vec<usize>>,
    backend: &'static str,
}

fn case() -> impl Strategy<Value = Case> {
    // Half the shapes are of the model's form [batch, 3].
    let shape = prop_oneof![
        (0usize..4).prop_map(|b| vec![b, 3]),
        prop::collection::vec(0usize..4, 1..4),
    ];
    (
        prop::option::of(shape.clone()),
        prop::option::of(0usize..4),
        prop::option::of(shape),
        prop::sample::select(vec!["reference", "wasm", "wasm-scalar"]),
    )
        .prop_map(|(file, dim, input_shape, backend)| Case {
            file,
            dim,
            input_shape,
            backend,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Whatever the combination: exit 0 with outputs equal to the model's
    /// meaning, or exit 1 with a message and nothing written — never a
    /// crash, never a partial output.
    #[test]
    fn any_combination_of_sizes_runs_right_or_fails_cleanly(c in case()) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let model = relu_model(d);
        let mut args: Vec<String> = vec!["run".into(), model, "--backend".into(), c.backend.into()];
        let mut values = Vec::new();
        match &c.file {
            Some(shape) => {
                let n: usize = shape.iter().product();
                values = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
                let t = Tensor::from_vec(shape.clone(), values.clone());
                args.push("--input".into());
                args.push(format!("x={}", npy(d, "x.npy", &t)));
            }
            None => args.extend(["--input".into(), "x=random".into()]),
        }
        if let Some(n) = c.dim {
            args.extend(["--dim".into(), format!("batch={n}")]);
        }
        if let Some(s) = &c.input_shape {
            let dims: Vec<String> = s.iter().map(usize::to_string).collect();
            args.extend(["--input-shape".into(), format!("x={}", dims.join("x"))]);
        }
        args.extend(["-o".into(), "out".into()]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = wpc_in(d, &argv, &[]);
        let err = stderr(&o);
        match o.status.code() {
            Some(0) => {
                let y = wpc::npy::read(&d.join("out/y.npy")).unwrap();
                // The batch every fact agreed on.
                let batch = c.file.as_ref().or(c.input_shape.as_ref()).map_or_else(
                    || c.dim.expect("some fact bound batch"),
                    |s| s[0],
                );
                prop_assert_eq!(y.shape(), &[batch, 2][..]);
                if c.file.is_some() {
                    let want = relu_reference(&values);
                    for (got, want) in y.to_f64s().iter().zip(&want) {
                        prop_assert!((got - want).abs() < 1e-5, "{} vs {}", got, want);
                    }
                }
                // What succeeded was consistent with the model.
                for s in c.file.iter().chain(&c.input_shape) {
                    prop_assert_eq!(s.len(), 2);
                    prop_assert_eq!(s[1], 3);
                    prop_assert_eq!(s[0], batch);
                }
                if let Some(n) = c.dim {
                    prop_assert_eq!(n, batch);
                }
            }
            Some(1) => {
                prop_assert!(err.starts_with("error: "), "{}", err);
                prop_assert!(!err.contains("panicked"), "{}", err);
                prop_assert!(!d.join("out").exists(), "partial output: {}", err);
            }
            other => prop_assert!(false, "exit {:?}: {}", other, err),
        }
        let left = listing(d).into_iter().filter(|n| n.starts_with('.')).count();
        prop_assert_eq!(left, 0, "staging directories left behind");
    }
}

#[test]
fn variants_share_weights_and_read_only_their_own_shards() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // y = Relu(x · w + b) with w of [3, 12]: wider than one GEMM panel,
    // so wasm packs it (its own layout) while b stays shared.
    let mut wide = small_model(
        "Relu",
        TensorProto {
            dims: vec![3, 12],
            data_type: 1,
            float_data: (0..36).map(|i| i as f32).collect(),
            name: "w".into(),
            ..Default::default()
        },
    );
    let g = wide.graph.as_mut().unwrap();
    g.initializer[1].dims = vec![12];
    g.initializer[1].float_data = vec![0.5; 12];
    let batch = DimensionValue::DimParam("batch".into());
    g.output = vec![value_info("y", &[batch, DimensionValue::DimValue(12)])];
    let model = write(d, "m.onnx", &wide);
    let o = wpc_in(
        d,
        &["compile", &model, "--dim", "batch=4", "--target", "chrome"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let m = manifest_json(&d.join("m.wpc"));
    let shards = m["shards"].as_array().unwrap();
    let mut read_by = std::collections::BTreeMap::<String, Vec<u64>>::new();
    for v in m["variants"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap_or("webgpu").to_string();
        let ranges: Vec<&serde_json::Value> = match v["backend"].as_str().unwrap() {
            "webgpu" => v["buffers"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|b| b.get("init"))
                .collect(),
            _ => v["weights"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| &p["range"])
                .collect(),
        };
        let mut used: Vec<u64> = ranges
            .iter()
            .map(|r| r["shard"].as_u64().unwrap())
            .collect();
        used.sort_unstable();
        used.dedup();
        for &s in &used {
            let readers = shards[s as usize]["variants"].as_array().unwrap();
            assert!(
                readers.iter().any(|r| r == &name),
                "{name} reads shard {s} listed for {readers:?}"
            );
        }
        read_by.insert(name, used);
    }
    // Every shard is read by each variant it lists, so a loader that
    // fetches a variant's shards fetches nothing it does not use.
    for (i, s) in shards.iter().enumerate() {
        for r in s["variants"].as_array().unwrap() {
            assert!(
                read_by[r.as_str().unwrap()].contains(&(i as u64)),
                "shard {i}: {r}"
            );
        }
    }
    // The three wasm variants pack the weights alike: one copy serves all.
    let wasm: Vec<&Vec<u64>> = read_by
        .iter()
        .filter(|(n, _)| n.starts_with("wasm"))
        .map(|(_, u)| u)
        .collect();
    assert_eq!(wasm.len(), 3);
    assert!(wasm.windows(2).all(|w| w[0] == w[1]), "{read_by:?}");
    // b (48 bytes) is stored once; w (144) raw for WebGPU, packed for wasm.
    let total: u64 = shards.iter().map(|s| s["bytes"].as_u64().unwrap()).sum();
    assert_eq!(total, 48 + 144 + 144, "{shards:?}");
    assert_eq!(
        shards.len(),
        3,
        "shared, webgpu-only, wasm-only: {shards:?}"
    );
    // Whatever their layout, the variants agree.
    let x = npy(
        d,
        "x.npy",
        &Tensor::from_vec(vec![4, 3], (0..12).map(|i| i as f32 - 6.0).collect()),
    );
    let outs: Vec<Vec<f64>> = ["webgpu", "wasm", "wasm-scalar"]
        .iter()
        .map(|b| {
            let out = format!("o-{b}");
            let o = wpc_in(
                d,
                &[
                    "run",
                    "m.wpc",
                    "--backend",
                    b,
                    "--input",
                    &format!("x={x}"),
                    "-o",
                    &out,
                ],
                &[],
            );
            assert!(o.status.success(), "{b}: {}", stderr(&o));
            wpc::npy::read(&d.join(out).join("y.npy"))
                .unwrap()
                .to_f64s()
        })
        .collect();
    assert!(outs.windows(2).all(|w| w[0] == w[1]), "{outs:?}");
}
