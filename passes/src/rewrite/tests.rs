//! Every rule checked with the reference interpreter: each written form
//! of an op, as exporters write it, rewrites to that op and computes the
//! same outputs on random inputs; a backend without the op's kernel keeps
//! the written-out form; arithmetic the rules only reorder stays as the
//! model wrote it.

use std::collections::HashMap;

use proptest::prelude::*;
use wpc_ir::{Attr, Attrs, DType, Dim, Graph, Model, NodeId, Tensor, ValueId};

use super::{Limits, RewriteStats, rewrite};
use crate::fuse::FusionTarget;
use crate::test_util::GraphBuilder;

/// A backend with kernels for the ops listed.
struct Kernels(&'static [&'static str]);

impl FusionTarget for Kernels {
    fn fuses(&self, _: &Graph, _: NodeId) -> bool {
        true
    }
    fn max_inputs(&self) -> usize {
        8
    }
    fn has_kernel(&self, op: &str) -> bool {
        self.0.contains(&op)
    }
}

const ALL: Kernels = Kernels(&[
    "Gelu",
    "Swish",
    "SwiGLU",
    "HardSigmoid",
    "HardSwish",
    "LayerNormalization",
    "RMSNormalization",
    "Attention",
]);

/// Inputs of `shape` (or the shape `other` gives an input by name):
/// spread over [-6, 6].
fn feeds(
    model: &Model,
    shape: &[usize],
    other: &dyn Fn(&str) -> Option<Vec<usize>>,
    seed: u64,
) -> HashMap<String, Tensor> {
    let g = &model.graph;
    g.inputs
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            let shape = other(&g.value(v).name).unwrap_or_else(|| shape.to_vec());
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n as u64)
                .map(|i| {
                    let h = (i + 1)
                        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        .wrapping_add(seed.wrapping_mul(31) + k as u64 * 7919);
                    ((h >> 11) % 12_001) as f32 / 1000.0 - 6.0
                })
                .collect();
            (
                g.value(v).name.clone(),
                Tensor::from_vec(shape.to_vec(), data),
            )
        })
        .collect()
}

fn outputs(model: &Model, feeds: &HashMap<String, Tensor>) -> Vec<Vec<f64>> {
    wpc_ir::interp::run_model(model, feeds)
        .unwrap()
        .into_iter()
        .map(|(_, t)| t.to_f64s())
        .collect()
}

/// The ops of the graph's nodes, sorted.
fn ops(model: &Model) -> Vec<String> {
    let g = &model.graph;
    let mut ops: Vec<String> = g.node_ids().map(|n| g.node(n).op.clone()).collect();
    ops.sort();
    ops
}

/// Rewrites `model` for `target` and checks it computes what it did
/// (within `tolerance`, relative to 1 + |value|), returning the stats.
fn check(
    model: Model,
    shape: &[usize],
    target: &dyn FusionTarget,
    tolerance: f64,
) -> (Model, RewriteStats) {
    check_with(model, shape, target, tolerance, |_| None)
}

/// [`check`], with the inputs `other` names of their own shapes.
fn check_with(
    mut model: Model,
    shape: &[usize],
    target: &dyn FusionTarget,
    tolerance: f64,
    other: impl Fn(&str) -> Option<Vec<usize>>,
) -> (Model, RewriteStats) {
    crate::shape_inference::infer_shapes(&mut model).unwrap();
    let inputs = feeds(&model, shape, &other, 7);
    let before = outputs(&model, &inputs);
    let stats = rewrite(&mut model, target, Limits::default()).unwrap();
    let after = outputs(&model, &inputs);
    for (a, b) in after.iter().flatten().zip(before.iter().flatten()) {
        // Random arithmetic overflows: infinities and NaNs must match too.
        let same = a == b || a.is_nan() && b.is_nan();
        assert!(
            same || (a - b).abs() <= tolerance * (1.0 + b.abs()),
            "{a} vs {b}: {stats:?}"
        );
    }
    (model, stats)
}

fn scalar(b: &mut GraphBuilder, name: &str, v: f32) -> ValueId {
    b.constant(name, Tensor::scalar(v))
}

fn input(b: &mut GraphBuilder, name: &str, shape: &[usize]) -> ValueId {
    b.input(
        name,
        DType::F32,
        shape.iter().map(|&d| Dim::Known(d)).collect(),
    )
}

/// `(a, b)`, or `(b, a)` when `swap`.
fn order(a: ValueId, b: ValueId, swap: bool) -> [ValueId; 2] {
    if swap { [b, a] } else { [a, b] }
}

/// GELU as torch (`x·(erf(x/√2)+1)·½`), transformers
/// (`x·½·(1+erf(x/√2))`) and tf2onnx (`½·x·(1+erf(x·(1/√2)))`) write it.
fn erf_gelu(form: u8, swap: bool, shape: &[usize]) -> Model {
    let mut b = GraphBuilder::new();
    let x = input(&mut b, "x", shape);
    let one = scalar(&mut b, "one", 1.0);
    let half = scalar(&mut b, "half", 0.5);
    let scaled = if form == 2 {
        let r = scalar(&mut b, "r", std::f32::consts::FRAC_1_SQRT_2);
        b.node("Mul", &order(x, r, swap))
    } else {
        let sqrt2 = scalar(&mut b, "sqrt2", std::f32::consts::SQRT_2);
        b.node("Div", &[x, sqrt2])
    };
    let erf = b.node("Erf", &[scaled]);
    let plus = b.node("Add", &order(erf, one, swap));
    let y = match form {
        0 => {
            let t = b.node("Mul", &order(x, plus, swap));
            b.node("Mul", &order(t, half, swap))
        }
        1 => {
            let t = b.node("Mul", &order(x, half, swap));
            b.node("Mul", &order(t, plus, swap))
        }
        _ => {
            let t = b.node("Mul", &order(half, x, swap));
            b.node("Mul", &order(t, plus, swap))
        }
    };
    b.finish(&[y])
}

/// GPT-2's tanh GELU, the cube as `Pow(x, 3)` or `x·x·x`.
fn tanh_gelu(cube_as_pow: bool, swap: bool, shape: &[usize]) -> Model {
    let mut b = GraphBuilder::new();
    let x = input(&mut b, "x", shape);
    let cube = if cube_as_pow {
        let three = scalar(&mut b, "three", 3.0);
        b.node("Pow", &[x, three])
    } else {
        let sq = b.node("Mul", &[x, x]);
        b.node("Mul", &order(sq, x, swap))
    };
    let k = scalar(&mut b, "k", 0.044715);
    let s = scalar(&mut b, "s", 0.797_884_6);
    let one = scalar(&mut b, "one", 1.0);
    let half = scalar(&mut b, "half", 0.5);
    let kc = b.node("Mul", &order(k, cube, swap));
    let inner = b.node("Add", &order(x, kc, swap));
    let scaled = b.node("Mul", &order(s, inner, swap));
    let t = b.node("Tanh", &[scaled]);
    let plus = b.node("Add", &order(one, t, swap));
    let hx = b.node("Mul", &order(half, x, swap));
    let y = b.node("Mul", &order(hx, plus, swap));
    b.finish(&[y])
}

/// HardSwish as `x·clip(x+3, 0, 6)/6`, `x·(clip(x+3, 0, 6)/6)` or
/// `x·HardSigmoid(x)` (torch's squeeze-excite gate on its own input).
fn hard_swish(form: u8, swap: bool, shape: &[usize]) -> Model {
    let mut b = GraphBuilder::new();
    let x = input(&mut b, "x", shape);
    let gate = if form == 2 {
        let mut a = Attrs::default();
        a.insert("alpha", Attr::Float(1.0 / 6.0));
        a.insert("beta", Attr::Float(0.5));
        b.node_with("HardSigmoid", &[x], a)
    } else {
        let three = scalar(&mut b, "three", 3.0);
        let zero = scalar(&mut b, "zero", 0.0);
        let six = scalar(&mut b, "six", 6.0);
        let plus = b.node("Add", &order(x, three, swap));
        let clip = b.node("Clip", &[plus, zero, six]);
        if form == 0 {
            let xc = b.node("Mul", &order(x, clip, swap));
            let y = b.node("Div", &[xc, six]);
            return b.finish(&[y]);
        }
        b.node("Div", &[clip, six])
    };
    let y = b.node("Mul", &order(x, gate, swap));
    b.finish(&[y])
}

#[derive(Clone, Copy, Debug)]
struct NormForm {
    /// `Mul(d, d)` instead of `Pow(d, 2)`.
    mul_square: bool,
    /// Operands of the commutative ops swapped.
    swapped: bool,
    /// 0: no affine tail; 1: gamma; 2: gamma and beta.
    affine: u8,
    /// Axes as an input (opset 18) instead of an attribute.
    axes_input: bool,
    /// `d · 1/√v` (as `Reciprocal` or `Div(1, ·)`) instead of `d / √v`.
    reciprocal: u8,
}

/// LayerNorm (or, with `rms`, RMSNorm) written out as exporters do.
fn norm(shape: &[usize], eps: f32, form: NormForm, rms: bool) -> Model {
    let mut b = GraphBuilder::new();
    let x = input(&mut b, "x", shape);
    let c = *shape.last().unwrap();
    let axes = b.constant("axes", Tensor::from_vec(vec![1], vec![-1i64]));
    let mean = |b: &mut GraphBuilder, v: ValueId| {
        if form.axes_input {
            b.node("ReduceMean", &[v, axes])
        } else {
            let mut a = Attrs::default();
            a.insert("axes", Attr::Ints(vec![-1]));
            b.node_with("ReduceMean", &[v], a)
        }
    };
    let swap = form.swapped;
    let d = if rms {
        x
    } else {
        let m = mean(&mut b, x);
        b.node("Sub", &[x, m])
    };
    let sq = if form.mul_square {
        b.node("Mul", &[d, d])
    } else {
        let two = scalar(&mut b, "two", 2.0);
        b.node("Pow", &[d, two])
    };
    let var = mean(&mut b, sq);
    let e = scalar(&mut b, "eps", eps);
    let ve = b.node("Add", &order(var, e, swap));
    let s = b.node("Sqrt", &[ve]);
    let mut y = match form.reciprocal {
        0 => b.node("Div", &[d, s]),
        1 => {
            let r = b.node("Reciprocal", &[s]);
            b.node("Mul", &order(d, r, swap))
        }
        _ => {
            let one = scalar(&mut b, "one", 1.0);
            let r = b.node("Div", &[one, s]);
            b.node("Mul", &order(d, r, swap))
        }
    };
    if form.affine >= 1 {
        let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 / 7.0).collect();
        let gamma = b.constant("gamma", Tensor::from_vec(vec![c], gamma));
        y = b.node("Mul", &order(y, gamma, swap));
    }
    if form.affine >= 2 && !rms {
        let beta: Vec<f32> = (0..c).map(|i| (i as f32).cos()).collect();
        let beta = b.constant("beta", Tensor::from_vec(vec![c], beta));
        y = b.node("Add", &order(y, beta, swap));
    }
    let mut model = b.finish(&[y]);
    model
        .opsets
        .insert(String::new(), if form.axes_input { 18 } else { 13 });
    model
}

fn shape_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..6, 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn erf_gelu_in_every_written_form_is_one_gelu(
        form in 0u8..3, swap: bool, shape in shape_strategy(),
    ) {
        let (model, stats) = check(erf_gelu(form, swap, &shape), &shape, &ALL, 1e-5);
        prop_assert_eq!(ops(&model), ["Gelu"]);
        prop_assert_eq!(stats.introduced.get("Gelu"), Some(&1));
    }

    #[test]
    fn tanh_gelu_in_every_written_form_is_one_gelu(
        cube_as_pow: bool, swap: bool, shape in shape_strategy(),
    ) {
        let (model, _) = check(tanh_gelu(cube_as_pow, swap, &shape), &shape, &ALL, 1e-5);
        prop_assert_eq!(ops(&model), ["Gelu"]);
        let g = &model.graph;
        let node = g.node(g.node_ids().next().unwrap());
        prop_assert!(matches!(node.attrs.get("approximate"), Some(Attr::String(s)) if s == "tanh"));
    }

    #[test]
    fn hard_swish_in_every_written_form_is_one_hard_swish(
        form in 0u8..3, swap: bool, shape in shape_strategy(),
    ) {
        let mut model = hard_swish(form, swap, &shape);
        model.opsets.insert(String::new(), 13);
        let (model, _) = check(model, &shape, &ALL, 1e-5);
        prop_assert_eq!(ops(&model), ["HardSwish"]);
    }

    /// The 72 ways of writing a LayerNorm become one LayerNormalization
    /// computing the same (to float32 rounding of another summation order).
    #[test]
    fn every_written_layer_norm_is_one_node(
        shape in prop::collection::vec(1usize..5, 2..4),
        eps in prop_oneof![Just(1e-5f32), Just(1e-12f32), Just(0.1f32)],
        mul_square: bool, swapped: bool, affine in 0u8..3, axes_input: bool,
        reciprocal in 0u8..3,
    ) {
        let form = NormForm { mul_square, swapped, affine, axes_input, reciprocal };
        let (model, _) = check(norm(&shape, eps, form, false), &shape, &ALL, 1e-5);
        prop_assert_eq!(ops(&model), ["LayerNormalization"]);
    }

    #[test]
    fn every_written_rms_norm_is_one_node(
        shape in prop::collection::vec(1usize..5, 2..4),
        mul_square: bool, swapped: bool, affine in 0u8..2, axes_input: bool,
        reciprocal in 0u8..3,
    ) {
        let form = NormForm { mul_square, swapped, affine, axes_input, reciprocal };
        let (model, _) = check(norm(&shape, 1e-6, form, true), &shape, &ALL, 1e-5);
        prop_assert_eq!(ops(&model), ["RMSNormalization"]);
    }

    /// Random sums, differences and products (and Tanh, Erf) over two
    /// inputs and scalar constants, constants folded: the rules only
    /// reorder them, nothing is recognized and no kernel saved, so the
    /// graph keeps its own nodes and computes exactly what it did.
    /// (Quotients can simplify: `a_quotient_simplifies`.)
    #[test]
    fn arithmetic_the_rules_only_reorder_is_left_as_written(
        steps in prop::collection::vec((0usize..6, 0usize..64, 0usize..64), 1..24),
    ) {
        let shape = [2, 3];
        let mut b = GraphBuilder::new();
        let mut values = vec![input(&mut b, "x", &shape), input(&mut b, "y", &shape)];
        values.push(scalar(&mut b, "c", 0.5));
        values.push(scalar(&mut b, "d", 3.0));
        for &(op, i, j) in &steps {
            let (a, c) = (values[i % values.len()], values[j % values.len()]);
            let v = match op {
                0 | 2 => b.node("Add", &[a, c]),
                1 => b.node("Mul", &[a, c]),
                3 => b.node("Sub", &[a, c]),
                4 => b.node("Tanh", &[a]),
                _ => b.node("Erf", &[a]),
            };
            values.push(v);
        }
        let last = *values.last().unwrap();
        let mut model = b.finish(&[last]);
        // As compile runs it: after constant folding (arithmetic on the
        // scalars alone is the algebra's to simplify otherwise).
        crate::optimize(&mut model).unwrap();
        let node_names = |m: &Model| {
            let g = &m.graph;
            let mut names: Vec<String> = g.node_ids().map(|n| g.node(n).name.clone()).collect();
            names.sort();
            names
        };
        let mut live = model.clone();
        crate::dce::eliminate_dead_nodes(&mut live);
        let (after, stats) = check(model, &shape, &ALL, 0.0);
        prop_assert!(stats.introduced.is_empty(), "{:?}", stats);
        prop_assert_eq!(node_names(&after), node_names(&live));
    }
}

/// A BERT self-attention block as transformers exports it, over
/// `x: [b, s, h·d]`: three linear layers split into heads (Reshape,
/// Transpose; K transposed once to `[b, h, d, s]`, or as torch writes
/// `k.transpose(-1, -2)`, twice), `softmax(Q·Kᵀ / √d + mask) · V`, the
/// heads merged back.
fn self_attention(b: usize, s: usize, h: usize, d: usize, form: AttentionForm) -> Model {
    let e = h * d;
    let mut g = GraphBuilder::new();
    let x = input(&mut g, "x", &[b, s, e]);
    let mask = form.masked.then(|| input(&mut g, "mask", &[b, 1, 1, s]));
    let ints = |v: &[usize]| {
        Tensor::from_vec(
            vec![v.len()],
            v.iter().map(|&d| d as i64).collect::<Vec<_>>(),
        )
    };
    let split = g.constant("split", ints(&[b, s, h, d]));
    let merged = g.constant("merged", ints(&[b, s, e]));
    let transpose = |g: &mut GraphBuilder, v: ValueId, perm: &[i64]| {
        let mut a = Attrs::default();
        a.insert("perm", Attr::Ints(perm.to_vec()));
        g.node_with("Transpose", &[v], a)
    };
    let linear = |g: &mut GraphBuilder, name: &str, k: usize| {
        let w: Vec<f32> = (0..e * e)
            .map(|i| (((i * 7 + k * 13) % 17) as f32 - 8.0) / 40.0)
            .collect();
        let w = g.constant(&format!("w{name}"), Tensor::from_vec(vec![e, e], w));
        let bias: Vec<f32> = (0..e)
            .map(|i| (i as f32 * 0.37 + k as f32).sin() / 4.0)
            .collect();
        let bias = g.constant(&format!("b{name}"), Tensor::from_vec(vec![e], bias));
        let xw = g.node("MatMul", &[x, w]);
        let y = g.node("Add", &[xw, bias]);
        g.node("Reshape", &[y, split])
    };
    let q = linear(&mut g, "q", 0);
    let k = linear(&mut g, "k", 1);
    let v = linear(&mut g, "v", 2);
    let q = transpose(&mut g, q, &[0, 2, 1, 3]);
    let kt = if form.k_twice {
        let k = transpose(&mut g, k, &[0, 2, 1, 3]);
        transpose(&mut g, k, &[0, 1, 3, 2])
    } else {
        transpose(&mut g, k, &[0, 2, 3, 1])
    };
    let v = transpose(&mut g, v, &[0, 2, 1, 3]);
    let mut scores = if form.torch_sdpa {
        // torch's scaled_dot_product_attention: both operands scaled by
        // the square root of the scale.
        let s = scalar(&mut g, "s", (1.0 / (d as f32).sqrt()).sqrt());
        let q = g.node("Mul", &[q, s]);
        let kt = g.node("Mul", &[kt, s]);
        g.node("MatMul", &[q, kt])
    } else {
        let scores = g.node("MatMul", &[q, kt]);
        let root = scalar(&mut g, "sqrt_d", (d as f32).sqrt());
        g.node("Div", &[scores, root])
    };
    if let Some(mask) = mask {
        scores = g.node("Add", &order(scores, mask, form.swapped));
    }
    let mut a = Attrs::default();
    a.insert("axis", Attr::Int(-1));
    let mut probs = g.node_with("Softmax", &[scores], a);
    if form.torch_sdpa {
        // ... and its guard for rows every key of which is masked.
        let nan = g.node("IsNaN", &[probs]);
        let zero = scalar(&mut g, "zero", 0.0);
        probs = g.node("Where", &[nan, zero, probs]);
    }
    let ctx = g.node("MatMul", &[probs, v]);
    let ctx = transpose(&mut g, ctx, &[0, 2, 1, 3]);
    let out = g.node("Reshape", &[ctx, merged]);
    g.finish(&[out])
}

#[derive(Clone, Copy, Debug)]
struct AttentionForm {
    masked: bool,
    k_twice: bool,
    swapped: bool,
    torch_sdpa: bool,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The block becomes the three projections and one Attention over
    /// their 3-D outputs, computing the same.
    #[test]
    fn exported_self_attention_is_one_attention(
        b in 1usize..3, s in 1usize..6, h in 1usize..4, d in 1usize..5,
        masked: bool, k_twice: bool, swapped: bool, torch_sdpa: bool,
    ) {
        let form = AttentionForm { masked, k_twice, swapped, torch_sdpa };
        let model = self_attention(b, s, h, d, form);
        let (model, stats) = check_with(model, &[b, s, h * d], &ALL, 1e-5, |name| {
            (name == "mask").then(|| vec![b, 1, 1, s])
        });
        prop_assert_eq!(ops(&model), ["Add", "Add", "Add", "Attention", "MatMul", "MatMul", "MatMul"]);
        prop_assert_eq!(stats.introduced.get("Attention"), Some(&1));
        let g = &model.graph;
        let node = g.node(g.node_ids().find(|&n| g.node(n).op == "Attention").unwrap());
        prop_assert_eq!(node.inputs.len(), if masked { 4 } else { 3 });
        prop_assert!(matches!(node.attrs.get("q_num_heads"), Some(Attr::Int(n)) if *n == h as i64));
    }
}

/// `(1 / v) · ½` is `½ / v`: one kernel fewer, the same to rounding.
#[test]
fn a_quotient_simplifies() {
    let shape = [2, 3];
    let mut b = GraphBuilder::new();
    let x = input(&mut b, "x", &shape);
    let one = scalar(&mut b, "one", 1.0);
    let half = scalar(&mut b, "half", 0.5);
    let r = b.node("Div", &[one, x]);
    let y = b.node("Mul", &[r, half]);
    let (model, stats) = check(b.finish(&[y]), &shape, &ALL, 1e-6);
    assert_eq!(ops(&model), ["Div"], "{stats:?}");
}

/// A mask that `Add` broadcasts along the keys (last dim 1) is not one
/// `Attention` reads the same way (it pads a short mask with -inf), so
/// the block stays as written.
#[test]
fn a_mask_broadcast_along_the_keys_stays_an_add() {
    let (b, s, h, d) = (1, 4, 2, 3);
    let form = AttentionForm {
        masked: true,
        k_twice: false,
        swapped: false,
        torch_sdpa: false,
    };
    let mut model = self_attention(b, s, h, d, form);
    let g = &mut model.graph;
    let mask = g.find_value("mask").unwrap();
    g.value_mut(mask).ty.shape = wpc_ir::Shape::known(&[b, 1, s, 1]);
    let (model, stats) = check_with(model, &[b, s, h * d], &ALL, 0.0, |name| {
        (name == "mask").then(|| vec![b, 1, s, 1])
    });
    assert!(!ops(&model).contains(&"Attention".to_string()), "{stats:?}");
}

#[test]
fn a_backend_without_the_kernel_keeps_the_written_form() {
    let shape = [2, 8];
    let (model, stats) = check(erf_gelu(0, false, &shape), &shape, &Kernels(&[]), 0.0);
    assert_eq!(ops(&model), ["Add", "Div", "Erf", "Mul", "Mul"]);
    assert!(stats.introduced.is_empty());
    // The rule fired; extraction turned it down.
    assert!(
        stats.fired.iter().any(|(rule, _)| rule == "gelu-erf"),
        "{stats:?}"
    );

    let form = NormForm {
        mul_square: false,
        swapped: false,
        affine: 1,
        axes_input: false,
        reciprocal: 0,
    };
    let only_layer_norm = Kernels(&["LayerNormalization"]);
    let (model, _) = check(
        norm(&shape, 1e-6, form, true),
        &shape,
        &only_layer_norm,
        0.0,
    );
    assert!(!ops(&model).contains(&"RMSNormalization".to_string()));
    let (model, _) = check(
        norm(&shape, 1e-6, form, false),
        &shape,
        &only_layer_norm,
        1e-5,
    );
    assert_eq!(ops(&model), ["LayerNormalization"]);
}

#[test]
fn silu_and_swiglu() {
    let shape = [3, 4];
    let mut b = GraphBuilder::new();
    let x = input(&mut b, "x", &shape);
    let gate = input(&mut b, "y", &shape);
    let s = b.node("Sigmoid", &[x]);
    let silu = b.node("Mul", &[s, x]);
    let glu = b.node("Mul", &[silu, gate]);
    let (model, _) = check(b.finish(&[glu]), &shape, &ALL, 1e-6);
    assert_eq!(ops(&model), ["SwiGLU"]);

    // A gate of another shape (broadcast) leaves SiLU alone.
    let mut b = GraphBuilder::new();
    let x = input(&mut b, "x", &shape);
    let gate = b.constant("g", Tensor::from_vec(vec![4], vec![1.0f32, 2.0, 3.0, 4.0]));
    let s = b.node("Sigmoid", &[x]);
    let silu = b.node("Mul", &[x, s]);
    let glu = b.node("Mul", &[silu, gate]);
    let (model, _) = check(b.finish(&[glu]), &shape, &ALL, 1e-6);
    assert_eq!(ops(&model), ["Mul", "Swish"]);
}

/// An intermediate of the chain that something else reads still gets
/// computed (by the model's own nodes) beside the recognized op.
#[test]
fn a_chain_value_read_elsewhere_stays_computed() {
    let shape = [2, 8];
    let mut model = erf_gelu(0, false, &shape);
    let g = &mut model.graph;
    let erf = g
        .node_ids()
        .find(|&n| g.node(n).op == "Erf")
        .and_then(|n| g.node(n).outputs[0])
        .unwrap();
    g.outputs.push(erf);
    let (model, _) = check(model, &shape, &ALL, 1e-5);
    assert_eq!(ops(&model), ["Div", "Erf", "Gelu"]);
}

/// A constant that would broadcast the input up a rank is not a scalar
/// to the rules: `x` of rank 0 times a `[1]` half is not a GELU of `x`.
#[test]
fn a_constant_that_broadcasts_is_no_scalar() {
    let mut b = GraphBuilder::new();
    let x = input(&mut b, "x", &[]);
    let one = scalar(&mut b, "one", 1.0);
    let half = b.constant("half", Tensor::from_vec(vec![1], vec![0.5f32]));
    let sqrt2 = scalar(&mut b, "sqrt2", std::f32::consts::SQRT_2);
    let d = b.node("Div", &[x, sqrt2]);
    let e = b.node("Erf", &[d]);
    let p = b.node("Add", &[e, one]);
    let t = b.node("Mul", &[x, p]);
    let y = b.node("Mul", &[t, half]);
    let (model, _) = check(b.finish(&[y]), &[], &ALL, 0.0);
    assert!(!ops(&model).contains(&"Gelu".to_string()));
}

#[test]
fn the_runner_reports_why_it_stopped() {
    let shape = [2, 8];
    let mut model = erf_gelu(0, false, &shape);
    crate::shape_inference::infer_shapes(&mut model).unwrap();
    let stats = rewrite(&mut model, &ALL, Limits::default()).unwrap();
    assert_eq!(stats.stop.as_deref(), Some("saturated"));
    let mut model = erf_gelu(0, false, &shape);
    crate::shape_inference::infer_shapes(&mut model).unwrap();
    let tight = Limits {
        iterations: 1,
        ..Limits::default()
    };
    let stats = rewrite(&mut model, &ALL, tight).unwrap();
    assert_eq!(stats.stop.as_deref(), Some("iteration limit (1)"));
    // Stopped early, the graph is still right: just less rewritten.
    assert!(!ops(&model).contains(&"Gelu".to_string()));
}

#[test]
fn nodes_outside_the_algebra_are_leaves() {
    // A Softmax between two GELUs' halves: nothing crosses it.
    let shape = [2, 4];
    let mut b = GraphBuilder::new();
    let x = input(&mut b, "x", &shape);
    let s = b.node("Softmax", &[x]);
    let sig = b.node("Sigmoid", &[s]);
    let y = b.node("Mul", &[x, sig]);
    let (model, _) = check(b.finish(&[y]), &shape, &ALL, 0.0);
    assert_eq!(ops(&model), ["Mul", "Sigmoid", "Softmax"]);
}
