//! Pins the WGSL generated for representative kernels on three targets, so
//! every codegen change shows up as a reviewable diff (`cargo insta review`).
//! The targets differ in workgroup sizes and GEMM tiles, and so do the
//! snapshots.

use wpc_ir::graph::Model;
use wpc_ir::testing::{Operand, ints, one_node};
use wpc_ir::{Attr, Attrs, Tensor};

/// A one-node model over f32 inputs of the given shapes; constant inputs
/// hold 0.5. Shapes and types are inferred by the standard passes.
fn model(op: &str, inputs: &[(&[usize], bool)], attrs: Attrs) -> Model {
    let operands = inputs
        .iter()
        .map(|&(shape, constant)| {
            if constant {
                let n = shape.iter().product();
                Operand::Constant(Tensor::from_vec(shape.to_vec(), vec![0.5f32; n]))
            } else {
                Operand::Input(shape)
            }
        })
        .collect();
    let mut m = one_node(op, operands, attrs);
    wpc_passes::shape_inference::infer_shapes(&mut m).unwrap();
    m
}

/// `m` with its output's type given, for ops shape inference leaves open
/// (the rewrite pass that makes them keeps the type the model declared).
fn typed_output(mut m: Model, shape: &[usize]) -> Model {
    let out = m.graph.outputs[0];
    m.graph.value_mut(out).ty =
        wpc_ir::ValueType::new(wpc_ir::DType::F32, wpc_ir::Shape::known(shape));
    m
}

/// All distinct shaders of `m` compiled for `target`, concatenated.
fn wgsl(m: &Model, target: &str) -> String {
    let profile = wpc_targets::builtin(target).unwrap();
    let compiled = wpc_codegen_wgsl::compile(m, &profile, &Default::default()).unwrap();
    compiled
        .shaders
        .iter()
        .map(|(name, text)| format!("// ---- {name}\n{text}"))
        .collect()
}

/// [`wpc_ir::testing::exported_chain`] fused as the WebGPU variant fuses it.
fn fused_chain(target: &str) -> Model {
    let mut m = wpc_ir::testing::exported_chain(8, 12);
    wpc_passes::shape_inference::infer_shapes(&mut m).unwrap();
    let profile = wpc_targets::builtin(target).unwrap();
    let fusion = wpc_codegen_wgsl::ops::fused::Fusion::new(&m, &profile, false);
    let stats = wpc_passes::fuse::fuse(&mut m, &fusion).unwrap();
    assert_eq!((stats.groups, stats.nodes), (1, 10));
    m
}

/// [`wpc_ir::testing::exported_epilogues`] fused as the WebGPU variant
/// fuses it: four contractions, each with its tail as an epilogue.
fn fused_epilogues(target: &str) -> Model {
    let mut m = wpc_ir::testing::exported_epilogues(4, 6, 6, 8, 12, 16);
    wpc_passes::shape_inference::infer_shapes(&mut m).unwrap();
    let profile = wpc_targets::builtin(target).unwrap();
    let fusion = wpc_codegen_wgsl::ops::fused::Fusion::new(&m, &profile, false);
    let stats = wpc_passes::fuse::fuse(&mut m, &fusion).unwrap();
    assert_eq!((stats.groups, stats.epilogues), (4, 4));
    assert_eq!(m.graph.node_count(), 4);
    m
}

fn kernels() -> Vec<(&'static str, Model)> {
    let mut heads = Attrs::default();
    heads.insert("q_num_heads", Attr::Int(4));
    heads.insert("kv_num_heads", Attr::Int(4));
    let mut conv_attrs = ints(&[("pads", vec![1, 1, 1, 1]), ("strides", vec![2, 2])]);
    conv_attrs.insert("group", Attr::Int(1));
    vec![
        (
            "add_broadcast",
            model(
                "Add",
                &[(&[2, 3, 4], false), (&[4], false)],
                Attrs::default(),
            ),
        ),
        ("gelu", model("Gelu", &[(&[1000], false)], Attrs::default())),
        (
            "matmul",
            model(
                "MatMul",
                &[(&[64, 128], false), (&[128, 256], true)],
                Attrs::default(),
            ),
        ),
        (
            "conv3x3",
            model(
                "Conv",
                &[
                    (&[1, 8, 16, 16], false),
                    (&[16, 8, 3, 3], true),
                    (&[16], true),
                ],
                conv_attrs,
            ),
        ),
        (
            "maxpool",
            model(
                "MaxPool",
                &[(&[1, 8, 16, 16], false)],
                ints(&[("kernel_shape", vec![3, 3]), ("strides", vec![2, 2])]),
            ),
        ),
        (
            "softmax",
            model("Softmax", &[(&[4, 1000], false)], Attrs::default()),
        ),
        (
            // What the rewrite pass makes of exported self-attention: 3-D
            // Q, K, V and an additive mask over the keys.
            "attention",
            typed_output(
                model(
                    "Attention",
                    &[
                        (&[1, 8, 32], false),
                        (&[1, 8, 32], false),
                        (&[1, 8, 32], false),
                        (&[1, 1, 1, 8], false),
                    ],
                    heads,
                ),
                &[1, 8, 32],
            ),
        ),
        (
            "transpose",
            model(
                "Transpose",
                &[(&[2, 3, 4], false)],
                ints(&[("perm", vec![2, 0, 1])]),
            ),
        ),
    ]
}

#[test]
fn wgsl_per_target() {
    for target in ["chrome", "safari", "firefox"] {
        for (name, m) in kernels() {
            insta::assert_snapshot!(format!("{name}_{target}"), wgsl(&m, target));
        }
        let fused = fused_chain(target);
        insta::assert_snapshot!(format!("fused_chain_{target}"), wgsl(&fused, target));
        let epilogues = fused_epilogues(target);
        insta::assert_snapshot!(format!("epilogues_{target}"), wgsl(&epilogues, target));
    }
}

#[test]
fn chrome_and_safari_kernels_differ() {
    for (name, m) in kernels() {
        if name == "transpose" || name == "add_broadcast" || name == "gelu" {
            // One-thread-per-element kernels differ only in workgroup size.
            assert_ne!(wgsl(&m, "chrome"), wgsl(&m, "safari"), "{name}");
        }
    }
    let (_, mm) = kernels().into_iter().find(|(n, _)| *n == "matmul").unwrap();
    assert!(wgsl(&mm, "chrome").contains("@workgroup_size(16, 16, 1)"));
    assert!(wgsl(&mm, "safari").contains("@workgroup_size(8, 8, 1)"));
}
