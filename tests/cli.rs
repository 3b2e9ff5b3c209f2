//! End-to-end tests of the `wpc` binary: inspect, run, and the error paths
//! a user hits with bad files (clear message, exit code 1, no partial output).

#[path = "cli/hardening.rs"]
mod hardening;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prost::Message;
use wpc::ir::onnx::proto::{
    AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto,
    TypeProto, TypeValue, ValueInfoProto, attribute_type,
};

fn wpc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wpc"))
        .args(args)
        .output()
        .expect("wpc runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The manifest of the bundle directory `bundle`, as JSON.
fn manifest_json(bundle: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap()
}

fn value_info(name: &str, dims: &[DimensionValue]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(d.clone()),
        })
        .collect();
    let tensor = TensorTypeProto {
        elem_type: 1,
        shape: Some(TensorShapeProto { dim }),
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(tensor)),
        }),
    }
}

/// `y = Relu(x · w + b)` with x of shape [batch, 3], as a serialised model.
fn small_model(op: &str, weights: TensorProto) -> ModelProto {
    let node = |op: &str, inputs: &[&str], out: &str| NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        name: format!("{}_node", op.to_lowercase()),
        op_type: op.into(),
        ..Default::default()
    };
    let b = TensorProto {
        dims: vec![2],
        data_type: 1,
        float_data: vec![0.5, -10.0],
        name: "b".into(),
        ..Default::default()
    };
    let batch = DimensionValue::DimParam("batch".into());
    let graph = GraphProto {
        node: vec![
            node("MatMul", &["x", "w"], "xw"),
            node("Add", &["xw", "b"], "z"),
            node(op, &["z"], "y"),
        ],
        name: "small".into(),
        initializer: vec![weights, b],
        input: vec![value_info(
            "x",
            &[batch.clone(), DimensionValue::DimValue(3)],
        )],
        output: vec![value_info("y", &[batch, DimensionValue::DimValue(2)])],
        ..Default::default()
    };
    ModelProto {
        ir_version: 9,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "wpc-tests".into(),
        graph: Some(graph),
        ..Default::default()
    }
}

fn weights() -> TensorProto {
    TensorProto {
        dims: vec![3, 2],
        data_type: 1,
        float_data: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
        name: "w".into(),
        ..Default::default()
    }
}

/// `weights()` kept in an external data file, `weights.bin`.
fn external_weights() -> TensorProto {
    TensorProto {
        dims: vec![3, 2],
        data_type: 1,
        name: "w".into(),
        data_location: 1,
        external_data: vec![StringStringEntryProto {
            key: "location".into(),
            value: "weights.bin".into(),
        }],
        ..Default::default()
    }
}

/// Writes `weights.bin` for [`external_weights`] into `dir`.
fn write_external_weights(dir: &Path) {
    let bytes: Vec<u8> = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.join("weights.bin"), bytes).unwrap();
}

fn write(dir: &Path, name: &str, model: &ModelProto) -> String {
    let path = dir.join(name);
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn inspect_shows_inputs_ops_and_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "m.onnx", &small_model("Relu", weights()));
    let out = wpc(&["inspect", &path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "x                        float32  [batch, 3]",
        "MatMul",
        "parameters: 8 in 2 initializers",
        "unknown ops: none",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn ops_lists_the_registry() {
    let out = wpc(&["ops"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let count: usize = text
        .lines()
        .last()
        .and_then(|l| l.split_once(" ops: "))
        .and_then(|(n, _)| n.parse().ok())
        .expect("closing count line");
    assert_eq!(
        count,
        text.lines().count() - 2,
        "a header, a row per op, a total"
    );
    assert!(text.starts_with("op "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["Conv", "yes", "yes", "kernel", "kernel"]),
        "{text}"
    );
}

#[test]
fn run_writes_outputs_from_npy_and_random_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "m.onnx", &small_model("Relu", weights()));
    let x = wpc::ir::Tensor::from_vec(vec![1, 3], vec![1.0f32, 2.0, 3.0]);
    let xin = dir.path().join("x.npy");
    wpc::npy::write(&xin, &x).unwrap();
    let out_dir = dir.path().join("out");
    let out = wpc(&[
        "run",
        &path,
        "--input",
        &format!("x={}", xin.display()),
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // x·w = [4, 5]; + b = [4.5, -5]; Relu = [4.5, 0].
    let y = wpc::npy::read(&out_dir.join("y.npy")).unwrap();
    assert_eq!(y.to_f64s(), vec![4.5, 0.0]);

    let rand_dir = dir.path().join("rand");
    let run_random = || {
        wpc(&[
            "run",
            &path,
            "--input",
            "x=random",
            "--dim",
            "batch=4",
            "--seed",
            "7",
            "-o",
            rand_dir.to_str().unwrap(),
        ])
    };
    assert!(run_random().status.success());
    let first = wpc::npy::read(&rand_dir.join("y.npy")).unwrap();
    assert_eq!(first.shape(), &[4, 2]);
    assert!(run_random().status.success());
    assert_eq!(
        wpc::npy::read(&rand_dir.join("y.npy")).unwrap(),
        first,
        "random inputs are seeded"
    );

    let unbound = wpc(&[
        "run",
        &path,
        "--input",
        "x=random",
        "-o",
        rand_dir.to_str().unwrap(),
    ]);
    assert_eq!(unbound.status.code(), Some(1));
    assert!(
        stderr(&unbound).contains("--dim batch=N"),
        "{}",
        stderr(&unbound)
    );
}

/// Every bad-input case: exit code 1, a message naming the problem, and no output directory.
fn assert_user_error(args: &[&str], out_dir: &Path, needles: &[&str]) {
    let out = wpc(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "args {args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !out_dir.exists(),
        "a failed run must leave no output behind"
    );
}

#[test]
fn bad_models_give_clear_errors_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("never");
    let o = out_dir.to_str().unwrap();
    let good = small_model("Relu", weights()).encode_to_vec();

    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    assert_user_error(
        &[
            "run",
            truncated.to_str().unwrap(),
            "--input",
            "x=random",
            "--dim",
            "batch=1",
            "-o",
            o,
        ],
        &out_dir,
        &["truncated.onnx", "not an ONNX model"],
    );

    let magic = dir.path().join("magic.onnx");
    std::fs::write(&magic, b"\x89PNG\r\n\x1a\nnot a model at all").unwrap();
    assert_user_error(
        &["inspect", magic.to_str().unwrap()],
        &out_dir,
        &["magic.onnx", "not an ONNX model"],
    );

    let unknown = write(
        dir.path(),
        "unknown.onnx",
        &small_model("FancyActivation", weights()),
    );
    assert_user_error(
        &[
            "run", &unknown, "--input", "x=random", "--dim", "batch=1", "-o", o,
        ],
        &out_dir,
        &[
            "unknown.onnx",
            "fancyactivation_node",
            "FancyActivation",
            "not supported",
        ],
    );

    let external = external_weights();
    let ext = write(dir.path(), "external.onnx", &small_model("Relu", external));
    assert_user_error(
        &["inspect", &ext],
        &out_dir,
        &["external.onnx", "initializer 'w'", "weights.bin"],
    );
    // With the side file present the same model loads and runs.
    write_external_weights(dir.path());
    let ok_dir = dir.path().join("ok");
    let out = wpc(&[
        "run",
        &ext,
        "--input",
        "x=random",
        "--dim",
        "batch=2",
        "-o",
        ok_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let missing = dir.path().join("missing.onnx");
    assert_user_error(
        &["inspect", missing.to_str().unwrap()],
        &out_dir,
        &["missing.onnx", "cannot read"],
    );

    let mut bad_attr = small_model("Softmax", weights());
    bad_attr.graph.as_mut().unwrap().node[2]
        .attribute
        .push(AttributeProto {
            name: "axis".into(),
            r#type: attribute_type::STRING,
            s: b"last".to_vec(),
            ..Default::default()
        });
    let bad = write(dir.path(), "badattr.onnx", &bad_attr);
    assert_user_error(
        &[
            "run", &bad, "--input", "x=random", "--dim", "batch=1", "-o", o,
        ],
        &out_dir,
        &["softmax_node", "attribute 'axis' should be an int"],
    );

    let wrong_input = dir.path().join("wrong.npy");
    wpc::npy::write(
        &wrong_input,
        &wpc::ir::Tensor::from_vec(vec![1, 4], vec![1.0f32; 4]),
    )
    .unwrap();
    let relu = write(dir.path(), "relu.onnx", &small_model("Relu", weights()));
    assert_user_error(
        &[
            "run",
            &relu,
            "--input",
            &format!("x={}", wrong_input.display()),
            "-o",
            o,
        ],
        &out_dir,
        &["input 'x' is given as [1, 4]", "fixes dim 1 to 3"],
    );

    let usage = wpc(&["run"]);
    assert_eq!(usage.status.code(), Some(1), "usage errors are user errors");
}

/// Every file of a bundle directory, by path relative to it ('/'-separated).
fn bundle_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().to_string_lossy();
                files.push((name.replace('\\', "/"), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// `y = gelu(x·w + b)` with the GELU written out as torch exports it:
/// `z·(erf(z/√2) + 1)·½`.
fn gelu_model() -> ModelProto {
    let mut model = small_model("Identity", weights());
    let graph = model.graph.as_mut().unwrap();
    graph.node.pop();
    let node = |op: &str, inputs: &[&str], out: &str| NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        name: out.into(),
        op_type: op.into(),
        ..Default::default()
    };
    for (name, v) in [("sqrt2", 2f32.sqrt()), ("one", 1.0), ("half", 0.5)] {
        graph.initializer.push(TensorProto {
            data_type: 1,
            float_data: vec![v],
            name: name.into(),
            ..Default::default()
        });
    }
    graph.node.extend([
        node("Div", &["z", "sqrt2"], "d"),
        node("Erf", &["d"], "e"),
        node("Add", &["e", "one"], "p"),
        node("Mul", &["z", "p"], "m"),
        node("Mul", &["m", "half"], "y"),
    ]);
    model
}

#[test]
fn compile_explain_says_what_the_rewrites_and_fusion_did() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "gelu.onnx", &gelu_model());
    let out = dir.path().join("gelu.wpc");
    let compile = |extra: &[&str]| {
        let mut args = vec!["compile", &path, "--dim", "batch=4", "--force", "-o"];
        args.push(out.to_str().unwrap());
        args.extend_from_slice(extra);
        let o = wpc(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let said = compile(&["--explain"]);
    // WebGPU has a Gelu kernel: the five nodes become one, which then
    // runs in the MatMul's store with the bias.
    assert!(
        said.contains("webgpu: 7 nodes -> 1; recognized 1 Gelu; fused"),
        "{said}"
    );
    assert!(said.contains("stopped: saturated"), "{said}");
    assert!(said.contains("gelu-erf ×1"), "{said}");
    // wasm has none: the rule fired, extraction kept the written form,
    // which fuses into one kernel after the MatMul (its Erf has no vector
    // form, so wasm keeps it out of the GEMM's store).
    let wasm = said.lines().find(|l| l.starts_with("  wasm: ")).unwrap();
    assert!(
        wasm.starts_with("  wasm: 7 nodes -> 2; fused 6 nodes into 1"),
        "{said}"
    );
    assert!(
        said.contains("recognized ops kept (where the backend has their kernel): none"),
        "{said}"
    );
    // Without --explain, a line per backend; with --no-fuse, nothing fuses.
    let said = compile(&[]);
    assert!(!said.contains("rewrites fired"), "{said}");
    let said = compile(&["--no-fuse"]);
    assert!(said.contains("webgpu: 7 nodes -> 7\n"), "{said}");
}

#[test]
fn compile_writes_a_deterministic_bundle_that_runs_on_webgpu() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "m.onnx", &small_model("Relu", weights()));
    let a = dir.path().join("a.wpc");
    let b = dir.path().join("b.wpc");
    for out in [&a, &b] {
        let o = wpc(&[
            "compile",
            &path,
            "--target",
            "safari",
            "--dim",
            "batch=1",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let files = bundle_files(&a);
    assert_eq!(
        files,
        bundle_files(&b),
        "same model and flags give byte-identical bundles"
    );
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"manifest.json") && names.contains(&"weights-000.bin"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with(".wgsl")), "{names:?}");
    // The JS runtime is copied in, as written, and listed with its sha256.
    let runtime_js = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/js/src");
    for entry in std::fs::read_dir(&runtime_js).unwrap() {
        let entry = entry.unwrap();
        let name = format!("runtime/{}", entry.file_name().to_string_lossy());
        let copy = files.iter().find(|(n, _)| *n == name);
        assert_eq!(
            copy.map(|(_, bytes)| bytes),
            Some(&std::fs::read(entry.path()).unwrap()),
            "{name}"
        );
    }
    let manifest = std::fs::read_to_string(a.join("manifest.json")).unwrap();
    assert!(
        manifest.contains("\"file\": \"runtime/index.js\""),
        "{manifest}"
    );
    // The default output sits beside the model; --no-js-runtime leaves the
    // runtime out.
    let o = wpc(&["compile", &path, "--dim", "batch=1", "--no-js-runtime"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("m.wpc/manifest.json").is_file());
    assert!(!dir.path().join("m.wpc/runtime").exists());

    let x = wpc::ir::Tensor::from_vec(vec![1, 3], vec![1.0f32, 2.0, 3.0]);
    let xin = dir.path().join("x.npy");
    wpc::npy::write(&xin, &x).unwrap();
    let out_dir = dir.path().join("out");
    let o = wpc(&[
        "run",
        a.to_str().unwrap(),
        "--backend",
        "webgpu",
        "--input",
        &format!("x={}", xin.display()),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        wpc::npy::read(&out_dir.join("y.npy")).unwrap().to_f64s(),
        vec![4.5, 0.0]
    );

    // A bundle needing a feature the device lacks is refused, naming it.
    // (No kernel asks for an optional feature yet, so the requirement is
    // written into the manifest by hand.)
    let manifest_path = b.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    manifest["variants"][0]["requires"]["features"] = serde_json::json!(["subgroups"]);
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let o = wpc(&[
        "run",
        b.to_str().unwrap(),
        "--backend",
        "webgpu",
        "--input",
        "x=random",
        "-o",
        dir.path().join("f").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("feature 'subgroups' is not available"),
        "{}",
        stderr(&o)
    );

    // A tampered shard is refused, naming the file.
    std::fs::write(a.join("weights-000.bin"), [0u8; 4]).unwrap();
    let o = wpc(&[
        "run",
        a.to_str().unwrap(),
        "--backend",
        "webgpu",
        "--input",
        "x=random",
        "-o",
        dir.path().join("t").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("weights-000.bin"), "{}", stderr(&o));
}

#[test]
fn bad_targets_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "m.onnx", &small_model("Relu", weights()));
    let out = dir.path().join("out.wpc");
    let out_s = out.to_str().unwrap();
    assert_user_error(
        &["compile", &path, "--target", "netscape", "-o", out_s],
        &out,
        &["unknown target 'netscape'", "safari"],
    );
    // A dim bounded beyond what one storage binding holds.
    assert_user_error(
        &["compile", &path, "--dim", "batch=1..20000000", "-o", out_s],
        &out,
        &["m.onnx", "maxStorageBufferBindingSize"],
    );
    let bad = dir.path().join("bad.ron");
    std::fs::write(&bad, "(name: \"x\")").unwrap();
    assert_user_error(
        &[
            "compile",
            &path,
            "--target-file",
            bad.to_str().unwrap(),
            "-o",
            out_s,
        ],
        &out,
        &["bad.ron", "not a valid target profile"],
    );
    // A tensor over the target's storage binding limit (128 MiB).
    assert_user_error(
        &["compile", &path, "--dim", "batch=20000000", "-o", out_s],
        &out,
        &["m.onnx", "maxStorageBufferBindingSize"],
    );
    let listed = wpc(&["targets"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    for name in [
        "chrome",
        "edge",
        "firefox",
        "safari",
        "chrome-android",
        "safari-ios",
        "webgpu-baseline",
    ] {
        assert!(text.contains(name), "{text}");
    }
}

/// A backend is asked about every node before anything is lowered: a
/// variant it cannot build is refused with every node it cannot run, not
/// only the first.
#[test]
fn every_node_a_backend_cannot_run_is_named_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = |op: &str, input: &str, out: &str, name: &str| NodeProto {
        input: vec![input.into()],
        output: vec![out.into()],
        name: name.into(),
        op_type: op.into(),
        ..Default::default()
    };
    let square = [3, 3, 3].map(DimensionValue::DimValue);
    let graph = GraphProto {
        node: vec![
            node("Det", "x", "d1", "first_det"),
            node("Relu", "x", "r", "relu"),
            node("Det", "r", "d2", "second_det"),
        ],
        name: "dets".into(),
        input: vec![value_info("x", &square)],
        output: vec![
            value_info("d1", &[DimensionValue::DimValue(3)]),
            value_info("d2", &[DimensionValue::DimValue(3)]),
        ],
        ..Default::default()
    };
    let model = ModelProto {
        graph: Some(graph),
        ..small_model("Relu", weights())
    };
    let path = write(dir.path(), "dets.onnx", &model);
    let bundle = dir.path().join("dets.wpc");
    let out = bundle.to_str().unwrap();
    // chrome requires its WebGPU variant.
    assert_user_error(
        &["compile", &path, "--target", "chrome", "-o", out],
        &bundle,
        &[
            "dets.onnx",
            "webgpu cannot run 2 nodes",
            "node 'first_det' (op Det): op Det has no WebGPU kernel yet",
            "node 'second_det' (op Det): op Det has no WebGPU kernel yet",
        ],
    );
}

/// Ops without a hand-written WebAssembly kernel run in the bundle's
/// reference kernels module; a kernel failing there is reported with its
/// node, exit code 1 and no output.
#[test]
fn wasm_runs_ops_without_kernels_through_the_reference_module() {
    let dir = tempfile::tempdir().unwrap();
    // Round has no hand-written wasm kernel.
    let path = write(dir.path(), "m.onnx", &small_model("Round", weights()));
    let bundle = dir.path().join("m.wpc");
    let o = wpc(&[
        "compile",
        &path,
        "--target",
        "chrome",
        "--dim",
        "batch=1",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest = manifest_json(&bundle);
    let wasm: Vec<&serde_json::Value> = manifest["variants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["backend"] == "wasm")
        .collect();
    assert_eq!(wasm.len(), 3, "{manifest}");
    for v in &wasm {
        assert_eq!(v["reference"], "reference.wasm", "{v}");
        assert_eq!(
            v["fallback"],
            serde_json::json!([{
                "node": "round_node",
                "op": "Round",
                "reason": "no generated wasm kernel for op Round"
            }])
        );
    }
    assert!(bundle.join("reference.wasm").is_file());

    let x = wpc::ir::Tensor::from_vec(vec![1, 3], vec![1.0f32, 2.0, 3.0]);
    let xin = dir.path().join("x.npy");
    wpc::npy::write(&xin, &x).unwrap();
    for backend in ["wasm", "wasm-scalar"] {
        let out_dir = dir.path().join(backend);
        let o = wpc(&[
            "run",
            bundle.to_str().unwrap(),
            "--backend",
            backend,
            "--input",
            &format!("x={}", xin.display()),
            "-o",
            out_dir.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        // x·w + b = [4.5, -5]; Round halves to even.
        let y = wpc::npy::read(&out_dir.join("y.npy")).unwrap();
        assert_eq!(y.to_f64s(), vec![4.0, -5.0]);
    }

    // Code is verified like weights: a tampered module is refused.
    let mut module = std::fs::read(bundle.join("reference.wasm")).unwrap();
    module[100] ^= 1;
    std::fs::write(bundle.join("reference.wasm"), module).unwrap();
    let out_dir = dir.path().join("tampered");
    assert_user_error(
        &[
            "run",
            bundle.to_str().unwrap(),
            "--backend",
            "wasm",
            "--input",
            "x=random",
            "-o",
            out_dir.to_str().unwrap(),
        ],
        &out_dir,
        &["reference.wasm", "sha256 does not match"],
    );

    // GatherElements with an index past the data fails inside the kernel.
    let mut indices = value_info("i", &[DimensionValue::DimValue(1)]);
    if let Some(TypeValue::TensorType(t)) = indices.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        t.elem_type = 7;
    }
    let graph = GraphProto {
        node: vec![NodeProto {
            input: vec!["data".into(), "i".into()],
            output: vec!["y".into()],
            name: "pick".into(),
            op_type: "GatherElements".into(),
            ..Default::default()
        }],
        name: "gather".into(),
        initializer: vec![TensorProto {
            dims: vec![3],
            data_type: 1,
            float_data: vec![1.0, 2.0, 3.0],
            name: "data".into(),
            ..Default::default()
        }],
        input: vec![indices],
        output: vec![value_info("y", &[DimensionValue::DimValue(1)])],
        ..Default::default()
    };
    let model = ModelProto {
        graph: Some(graph),
        ..small_model("Relu", weights())
    };
    let path = write(dir.path(), "g.onnx", &model);
    let iin = dir.path().join("i.npy");
    wpc::npy::write(&iin, &wpc::ir::Tensor::i64s(vec![1], vec![5])).unwrap();
    let out_dir = dir.path().join("bad");
    assert_user_error(
        &[
            "run",
            &path,
            "--backend",
            "wasm",
            "--input",
            &format!("i={}", iin.display()),
            "-o",
            out_dir.to_str().unwrap(),
        ],
        &out_dir,
        &[
            "g.onnx",
            "node 'pick' (op GatherElements)",
            "index 5 is out of bounds",
        ],
    );
}

/// The build-script API: what `wpc compile` does, plus the list of files a
/// build script must watch (external data included); failures leave no
/// bundle behind.
#[test]
fn build_script_api_writes_the_bundle_and_names_what_it_depends_on() {
    let dir = tempfile::tempdir().unwrap();
    let external = external_weights();
    let model = write(dir.path(), "ext.onnx", &small_model("Relu", external));
    write_external_weights(dir.path());
    let out = dir.path().join("out/ext.wpc");
    let built = wpc::build::Build::new(&model)
        .target("chrome")
        .dim("batch", 2)
        .out_dir(&out)
        .cargo_directives(false)
        .compile()
        .unwrap();
    assert_eq!(built.dir, out);
    assert_eq!(
        built.inputs,
        vec![PathBuf::from(&model), dir.path().join("weights.bin")]
    );
    assert_eq!(built.manifest.target, "chrome");
    assert_eq!(built.manifest.inputs[0].bound, vec![2, 3]);
    // What was written is a bundle that reads back and verifies.
    let bundle = wpc::runtime::Bundle::read(&out).unwrap();
    assert_eq!(bundle.manifest, built.manifest);
    assert!(out.join("runtime/index.js").is_file());

    // A model that does not compile: an error naming it, and no bundle.
    let unknown = write(
        dir.path(),
        "unknown.onnx",
        &small_model("FancyActivation", weights()),
    );
    let failed = dir.path().join("out/unknown.wpc");
    let e = wpc::build::Build::new(&unknown)
        .dim("batch", 1)
        .out_dir(&failed)
        .cargo_directives(false)
        .compile()
        .unwrap_err();
    let message = format!("{e:#}");
    assert!(
        message.contains("unknown.onnx") && message.contains("FancyActivation"),
        "{message}"
    );
    assert!(!failed.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("ext.wpc")]);
}

/// `y = x · w` with x of shape [batch, 64] and a seeded `w` of [64, 24]:
/// big enough for quantization to take it.
fn linear_model() -> ModelProto {
    let mut model = small_model("Identity", weights());
    let graph = model.graph.as_mut().unwrap();
    graph.node.truncate(1);
    graph.node[0].output = vec!["y".into()];
    graph.initializer = vec![TensorProto {
        dims: vec![64, 24],
        data_type: 1,
        float_data: (0..64 * 24)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect(),
        name: "w".into(),
        ..Default::default()
    }];
    let batch = DimensionValue::DimParam("batch".into());
    graph.input = vec![value_info(
        "x",
        &[batch.clone(), DimensionValue::DimValue(64)],
    )];
    graph.output = vec![value_info("y", &[batch, DimensionValue::DimValue(24)])];
    model
}

/// `wpc run TARGET --input XIN EXTRA... -o DIR/OUT`, which must succeed:
/// its output `y`.
fn run_y(dir: &Path, target: &str, xin: &str, extra: &[&str], out: &str) -> Vec<f32> {
    let out = dir.join(out);
    let mut args = vec!["run", target, "--input", xin, "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = wpc(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    wpc::npy::read(&out.join("y.npy")).unwrap().to_f32s()
}

/// The largest difference between `a` and `b`, element by element.
fn diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0f32, f32::max)
}

/// `y = x + table[0..seq]` with x of shape [seq, 32], the positions
/// counted from x's shape as exporters write them (Shape, Gather, Range):
/// a position-embedding lookup, constant once seq is bound.
fn positions_model() -> ModelProto {
    let mut model = linear_model();
    let graph = model.graph.as_mut().unwrap();
    let node = |op: &str, inputs: &[&str], out: &str| NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        name: out.into(),
        op_type: op.into(),
        ..Default::default()
    };
    graph.node = vec![
        node("Shape", &["x"], "shape"),
        node("Gather", &["shape", "first"], "seq"),
        node("Range", &["zero", "seq", "one"], "positions"),
        node("Gather", &["table", "positions"], "rows"),
        node("Add", &["x", "rows"], "y"),
    ];
    let scalar = |name: &str, v: i64| TensorProto {
        data_type: 7,
        int64_data: vec![v],
        name: name.into(),
        ..Default::default()
    };
    graph.initializer = vec![
        TensorProto {
            dims: vec![16, 32],
            data_type: 1,
            float_data: (0..16 * 32)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect(),
            name: "table".into(),
            ..Default::default()
        },
        scalar("first", 0),
        scalar("zero", 0),
        scalar("one", 1),
    ];
    let seq = DimensionValue::DimParam("seq".into());
    graph.input = vec![value_info(
        "x",
        &[seq.clone(), DimensionValue::DimValue(32)],
    )];
    graph.output = vec![value_info("y", &[seq, DimensionValue::DimValue(32)])];
    model
}

/// With a --dim range, `wpc run` on the reference runs the graph a bundle
/// compiled with that range holds: here the position table, a lookup
/// there, is quantized, where binding the input's own size would fold
/// the lookup into a float constant.
#[test]
fn a_dim_range_makes_the_reference_run_the_bundles_graph() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "pos.onnx", &positions_model());
    let quantized = ["--weights", "int4", "--dim", "seq=1..16"];
    let x = dir.path().join("x.npy");
    let input: Vec<f32> = (0..5 * 32).map(|i| (i % 9) as f32 - 4.0).collect();
    wpc::npy::write(&x, &wpc::ir::Tensor::from_vec(vec![5, 32], input)).unwrap();
    let xin = format!("x={}", x.display());
    let run = |target: &str, extra: &[&str], out: &str| run_y(dir.path(), target, &xin, extra, out);
    let reference = run(&path, &quantized, "ref");
    // The model compiled for wasm with the range (WebGPU has no Range
    // kernel for sizes left to run time yet), run at 5 rows.
    let mut wasm_args = vec!["--backend", "wasm"];
    wasm_args.extend_from_slice(&quantized);
    let wasm = run(&path, &wasm_args, "wasm");
    let float = run(&path, &[], "float");
    let bound = run(&path, &["--weights", "int4"], "bound");
    assert!(
        diff(&reference, &wasm) < 1e-5,
        "{}",
        diff(&reference, &wasm)
    );
    assert!(
        diff(&reference, &float) > 1e-3,
        "the table was not quantized"
    );
    assert!(
        diff(&bound, &float) < 1e-6,
        "bound to 5 rows, the lookup folds"
    );
}

#[test]
fn quantized_bundles_report_their_layers_and_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "lin.onnx", &linear_model());
    let bundle = dir.path().join("lin.wpc");
    let o = wpc(&[
        "compile",
        &path,
        "--dim",
        "batch=3",
        "--weights",
        "int3",
        "--group",
        "32",
        "--rotate",
        "--report",
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = String::from_utf8(o.stdout).unwrap();
    assert!(
        said.contains("weights: 1 of 1 layers quantized, 6144 -> "),
        "{said}"
    );
    let layer = said
        .lines()
        .find(|l| l.trim_start().starts_with("matmul_node "))
        .expect("a line for the layer");
    assert!(
        layer.contains("24x64") && layer.contains("clip search") && layer.contains("rotated"),
        "{said}"
    );
    // The reference runs the same quantized model; the bundle matches it.
    let x = dir.path().join("x.npy");
    let input: Vec<f32> = (0..3 * 64).map(|i| (i % 7) as f32 - 3.0).collect();
    wpc::npy::write(&x, &wpc::ir::Tensor::from_vec(vec![3, 64], input)).unwrap();
    let xin = format!("x={}", x.display());
    let run = |target: &str, extra: &[&str], out: &str| run_y(dir.path(), target, &xin, extra, out);
    // The input's rotation runs on each backend as it does on the reference.
    let reference = run(
        &path,
        &["--weights", "int3", "--group", "32", "--rotate"],
        "ref",
    );
    let float = run(&path, &[], "float");
    let b = bundle.to_str().unwrap();
    for backend in ["webgpu", "wasm"] {
        let got = run(b, &["--backend", backend], backend);
        let diff = diff(&got, &reference);
        assert!(diff < 1e-4, "{backend}: {diff}");
    }
    // Quantization changed the result, but not by much: within 5% of
    // the largest output these inputs (|x| <= 3) and weights (|w| <= 1)
    // can give, 64 * 3.
    let drift = diff(&float, &reference);
    assert!(drift > 0.0 && drift < 0.05 * 64.0 * 3.0, "{drift}");
    // Calibration runs of different shapes (the k-th file of an input is
    // the k-th run) make the layer GPTQ's, its error measured on them.
    let x5 = dir.path().join("x5.npy");
    let input: Vec<f32> = (0..5 * 64).map(|i| ((i * 13) % 11) as f32 - 5.0).collect();
    wpc::npy::write(&x5, &wpc::ir::Tensor::from_vec(vec![5, 64], input)).unwrap();
    let x5in = format!("x={}", x5.display());
    let calibrated = dir.path().join("calibrated.wpc");
    let calibrated_int3 = [
        "--weights",
        "int3",
        "--calibrate",
        &xin,
        "--calibrate",
        &x5in,
    ];
    let mut args = vec![
        "compile",
        &path,
        "--report",
        "-o",
        calibrated.to_str().unwrap(),
    ];
    args.extend_from_slice(&calibrated_int3);
    let o = wpc(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = String::from_utf8(o.stdout).unwrap();
    assert!(said.contains("GPTQ (error feedback on samples)"), "{said}");
    // The report measures the whole model against float32 on the
    // largest run (x5): what `wpc run` of the same quantized model gives.
    let accuracy = said
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix(
                "accuracy: output 'y' against float32 on the largest --calibrate run: cosine ",
            )
        })
        .unwrap_or_else(|| panic!("an accuracy line: {said}"));
    let (cosine, error) = accuracy.split_once(", relative error ").unwrap();
    let (cosine, error): (f64, f64) = (cosine.parse().unwrap(), error.parse().unwrap());
    let run_x5 = |extra: &[&str], out: &str| {
        let out = dir.path().join(out);
        let mut args = vec!["run", &path, "--input", &x5in, "-o", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = wpc(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        wpc::npy::read(&out.join("y.npy")).unwrap().to_f32s()
    };
    let float5 = run_x5(&[], "float5");
    let quantized5 = run_x5(&calibrated_int3, "quantized5");
    let dot = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum::<f64>()
    };
    let want_cosine =
        dot(&float5, &quantized5) / (dot(&float5, &float5) * dot(&quantized5, &quantized5)).sqrt();
    let diff: Vec<f32> = float5.iter().zip(&quantized5).map(|(a, b)| a - b).collect();
    let want_error = (dot(&diff, &diff) / dot(&float5, &float5)).sqrt();
    assert!(want_error > 0.0, "int3 changed nothing");
    assert!(
        (cosine - want_cosine).abs() < 1e-4,
        "{cosine} vs {want_cosine}"
    );
    assert!(
        (error - want_error).abs() < 1e-2 * want_error,
        "{error} vs {want_error}"
    );
    // Every run is read: a second one of the wrong width is refused.
    let x63 = dir.path().join("x63.npy");
    wpc::npy::write(
        &x63,
        &wpc::ir::Tensor::from_vec(vec![5, 63], vec![0f32; 315]),
    )
    .unwrap();
    let refused = dir.path().join("refused.wpc");
    assert_user_error(
        &[
            "compile",
            &path,
            "--weights",
            "int3",
            "--calibrate",
            &xin,
            "--calibrate",
            &format!("x={}", x63.display()),
            "-o",
            refused.to_str().unwrap(),
        ],
        &refused,
        &["calibration run 2 of 2"],
    );
    // --fit picks the bits that fit, measured on the same samples.
    let o = wpc(&[
        "compile",
        &path,
        "--fit",
        "2KB",
        "--calibrate",
        &xin,
        "-o",
        calibrated.to_str().unwrap(),
        "--force",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = String::from_utf8(o.stdout).unwrap();
    assert!(
        said.contains("of a budget of 2.0 KB")
            && said.contains("measured end to end on the --calibrate samples"),
        "{said}"
    );
    // A bundle is quantized already.
    let out = dir.path().join("again");
    assert_user_error(
        &[
            "run",
            b,
            "--input",
            &xin,
            "--weights",
            "int4",
            "-o",
            out.to_str().unwrap(),
        ],
        &out,
        &["--weights applies when compiling"],
    );
}

/// The shipped baseline profile with `precision` and `memory_budget_mib`
/// replaced, written to `dir`.
fn profile_with(dir: &Path, name: &str, precision: &str, budget_mib: u64) -> String {
    let text = include_str!("../targets/profiles/webgpu-baseline.ron")
        .replace("precision: f32,", &format!("precision: {precision},"))
        .replace(
            "memory_budget_mib: 1024,",
            &format!("memory_budget_mib: {budget_mib},"),
        );
    assert!(text.contains(&format!("memory_budget_mib: {budget_mib},")));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn the_profiles_precision_and_memory_budget_are_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "lin.onnx", &linear_model());
    let compile = |extra: &[&str], out: &str| {
        let bundle = dir.path().join(out);
        let mut args = vec![
            "compile",
            &path,
            "--dim",
            "batch=2",
            "-o",
            bundle.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = wpc(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    // precision: int4 quantizes when the compile does not choose.
    let int4 = profile_with(dir.path(), "int4.ron", "int4", 1024);
    let said = compile(&["--target-file", &int4], "int4.wpc");
    assert!(
        said.contains("weights: quantized to 4 bits, the webgpu-baseline profile's precision")
            && said.contains("weights: 1 of 1 layers quantized"),
        "{said}"
    );
    let said = compile(&["--target-file", &int4, "--weights", "int8"], "int8.wpc");
    assert!(!said.contains("profile's precision"), "{said}");
    let said = compile(&["--target-file", &int4, "--weights", "f32"], "f32.wpc");
    assert!(said.contains("weights: 0 of 1 layers quantized"), "{said}");
    // Weights over the memory budget are fitted to it; under it they stay
    // float. The model's weights are 6144 bytes, so no budget in MiB is
    // under them: a bigger weight makes them 1.5 MiB.
    let mut big = linear_model();
    let graph = big.graph.as_mut().unwrap();
    graph.initializer[0].dims = vec![64, 6144];
    graph.initializer[0].float_data = (0..64 * 6144)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    graph.output = vec![value_info(
        "y",
        &[
            DimensionValue::DimParam("batch".into()),
            DimensionValue::DimValue(6144),
        ],
    )];
    let big_path = write(dir.path(), "big.onnx", &big);
    let tight = profile_with(dir.path(), "tight.ron", "f32", 1);
    let bundle = dir.path().join("big.wpc");
    let o = wpc(&[
        "compile",
        &big_path,
        "--dim",
        "batch=2",
        "--target-file",
        &tight,
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = String::from_utf8(o.stdout).unwrap();
    assert!(
        said.contains("weights: 1.57 MB in float, over the webgpu-baseline profile's memory budget of 1 MiB: fitted to it")
            && said.contains("fit: all weights"),
        "{said}"
    );
    // Weights quantization cannot shrink (here a Mul's) stay float.
    let graph = big.graph.as_mut().unwrap();
    graph.node[0].op_type = "Mul".into();
    graph.input[0] = value_info(
        "x",
        &[
            DimensionValue::DimParam("batch".into()),
            DimensionValue::DimValue(6144),
        ],
    );
    let mul_path = write(dir.path(), "mul.onnx", &big);
    let o = wpc(&[
        "compile",
        &mul_path,
        "--dim",
        "batch=64",
        "--target-file",
        &tight,
        "-o",
        dir.path().join("mul.wpc").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = String::from_utf8(o.stdout).unwrap();
    assert!(
        said.contains(
            "memory budget of 1 MiB, and 1.57 MB of them are weights quantization cannot shrink"
        ) && said.contains("kept float")
            && !said.contains("fit:"),
        "{said}"
    );
    let said = compile(&["--target-file", &tight], "small.wpc");
    assert!(!said.contains("weights:"), "{said}");
}

#[test]
fn bad_precision_maps_and_flags_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "lin.onnx", &linear_model());
    let out = dir.path().join("lin.wpc");
    let o = out.to_str().unwrap();
    let map = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cases = [
        (
            map("field.ron", "(\n  layers: [(\"w\", (bitz: 3))],\n)"),
            "field.ron:2:",
        ),
        (
            map("bits.ron", "(\n  default: (bits: 9),\n)"),
            "bits must be 2 to 8, or 32",
        ),
        (
            map(
                "unused.ron",
                "(\n  layers: [\n    (\"*nothing*\", (bits: 3)),\n  ],\n)",
            ),
            "unused.ron:3: pattern \"*nothing*\" matches no quantizable layer",
        ),
        (
            map("group.ron", "(default: (group: 48))"),
            "group must be a power of two",
        ),
    ];
    for (file, needle) in &cases {
        assert_user_error(
            &[
                "compile",
                &path,
                "--dim",
                "batch=1",
                "--precision",
                file,
                "-o",
                o,
            ],
            &out,
            &[needle],
        );
    }
    let missing = dir.path().join("missing.ron");
    assert_user_error(
        &[
            "compile",
            &path,
            "--precision",
            missing.to_str().unwrap(),
            "-o",
            o,
        ],
        &out,
        &["reading the precision map", "missing.ron"],
    );
    assert_user_error(
        &["compile", &path, "--group", "32", "-o", o],
        &out,
        &["--group sets the quantization group: give --weights"],
    );
    assert_user_error(
        &["compile", &path, "--rotate", "-o", o],
        &out,
        &["--rotate rotates weights before quantizing them: give --weights"],
    );
    assert_user_error(
        &[
            "compile",
            &path,
            "--weights",
            "int4",
            "--group",
            "48",
            "-o",
            o,
        ],
        &out,
        &["--group", "power of two"],
    );
    assert_user_error(
        &[
            "compile",
            &path,
            "--weights",
            "int4",
            "--calibrate",
            "x=a.npy",
            "--calibrate",
            "x=b.npy",
            "--calibrate",
            "mask=c.npy",
            "-o",
            o,
        ],
        &out,
        &["--calibrate gives x 2 time(s) but mask 1", "equally often"],
    );
    for (fit, needle) in [
        ("12parsecs", "'12parsecs' is not a size"),
        ("100", "the weights cannot be made that small"),
    ] {
        assert_user_error(
            &["compile", &path, "--fit", fit, "-o", o],
            &out,
            &["--fit", needle],
        );
    }
    assert_user_error(
        &[
            "compile",
            &path,
            "--fit",
            "2KB",
            "--weights",
            "int4",
            "-o",
            o,
        ],
        &out,
        &["--fit chooses each layer's bits and --weights sets them all"],
    );
    assert_user_error(
        &["compile", &path, "--weights", "int5", "-o", o],
        &out,
        &["int5", "int8, int4, int3, int2, f32"],
    );
}
