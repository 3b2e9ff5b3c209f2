//! The wasm kernels, run through wasmtime:
//!
//! * proptest: on random shapes — including the awkward ones (1, primes,
//!   sizes not a multiple of 4) — every SIMD kernel (SIMD128 and relaxed
//!   SIMD) equals the scalar kernel, and all equal the reference
//!   interpreter, within float32 tolerance;
//! * insta snapshots pin the wasm text of representative kernels for each
//!   variant, so a codegen change shows up as a reviewable diff.

use std::collections::HashMap;

use proptest::prelude::*;
use wpc_codegen_wasm::{Compiled, Isa};
use wpc_ir::graph::Model;
use wpc_ir::testing::{Operand, ints, one_node};
use wpc_ir::{Attrs, Tensor};

fn prepared(mut m: Model) -> Model {
    wpc_passes::shape_inference::infer_shapes(&mut m).unwrap();
    m
}

/// Runs a compiled module on f32 inputs; returns its f32 outputs.
fn run(c: &Compiled, inputs: &[&[f32]]) -> Vec<Vec<f32>> {
    let inputs: Vec<Vec<u8>> = inputs
        .iter()
        .map(|data| data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    run_bytes(c, &inputs, 4)
        .iter()
        .map(|bytes| {
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect()
}

/// Runs a compiled module on inputs given as their bytes; returns its
/// outputs' bytes, `size` bytes an element.
fn run_bytes(c: &Compiled, inputs: &[Vec<u8>], size: usize) -> Vec<Vec<u8>> {
    let mut config = wasmtime::Config::new();
    config.wasm_simd(true).wasm_relaxed_simd(true);
    let engine = wasmtime::Engine::new(&config).unwrap();
    let module = wasmtime::Module::new(&engine, &c.wasm).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    // Activations start as NaNs, not zeros: a kernel must write every
    // element it outputs (memory is reused between nodes).
    memory
        .write(&mut store, 0, &vec![0xff; c.activation_bytes as usize])
        .unwrap();
    for (at, bytes) in &c.weights {
        memory.write(&mut store, *at as usize, bytes).unwrap();
    }
    for (slot, bytes) in c.inputs.iter().zip(inputs) {
        memory
            .write(&mut store, slot.offset as usize, bytes)
            .unwrap();
    }
    let run = instance
        .get_typed_func::<(), ()>(&mut store, "run")
        .unwrap();
    run.call(&mut store, ()).unwrap();
    c.outputs
        .iter()
        .map(|slot| {
            let mut bytes = vec![0u8; size * slot.elements as usize];
            memory
                .read(&store, slot.offset as usize, &mut bytes)
                .unwrap();
            bytes
        })
        .collect()
}

/// Every variant's output and the reference's agree within `tol`
/// (relative to the larger magnitude, with an absolute floor).
fn check_all_variants(m: &Model, inputs: &[Vec<f32>], tol: f32) -> Result<(), TestCaseError> {
    let feeds: HashMap<String, Tensor> = m
        .graph
        .inputs
        .iter()
        .zip(inputs)
        .map(|(&v, data)| {
            let shape = m.graph.value(v).ty.shape.concrete().unwrap();
            (
                m.graph.value(v).name.clone(),
                Tensor::from_vec(shape, data.clone()),
            )
        })
        .collect();
    let want: Vec<Vec<f32>> = wpc_ir::interp::run_model(m, &feeds)
        .unwrap()
        .into_iter()
        .map(|(_, t)| t.to_f32s())
        .collect();
    let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    for isa in Isa::ALL {
        let c = wpc_codegen_wasm::compile(m, isa).unwrap();
        // These tests are about the generated kernels, not the reference
        // kernels module.
        prop_assert!(c.fallback.is_empty(), "{:?}", c.fallback);
        let got = run(&c, &slices);
        prop_assert_eq!(got.len(), want.len());
        for (o, (got, want)) in got.iter().zip(&want).enumerate() {
            prop_assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                let bound = tol * g.abs().max(w.abs()).max(1.0);
                prop_assert!(
                    (g - w).abs() <= bound,
                    "{}: output {} element {} is {} but the reference gives {}",
                    isa.name(),
                    o,
                    i,
                    g,
                    w
                );
            }
        }
    }
    Ok(())
}

fn values(n: usize) -> impl Strategy<Value = Vec<f32>> {
    proptest::collection::vec(-2.0f32..2.0, n)
}

/// Sizes that stress the tails: 1, primes, and around the tile widths.
fn size() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![1usize, 2, 3, 4, 5, 7, 8, 9, 11, 13, 16, 17])
}

/// Reduction depths: [`size`]s and 0, where the product is all zeros and
/// nothing of A or B may be read.
fn depth() -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(0usize), 6 => size()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn gemm_variants_agree((m, k, n, a, b, packed) in (size(), depth(), size()).prop_flat_map(|(m, k, n)| {
        (Just(m), Just(k), Just(n), values(m * k), values(k * n), any::<bool>())
    })) {
        // A constant B is packed into panels at compile time; a computed
        // one is read row-major.
        let (b_operand, feeds) = if packed {
            (Operand::Constant(Tensor::from_vec(vec![k, n], b)), vec![a])
        } else {
            (Operand::Input(&[k, n]), vec![a, b])
        };
        let model = prepared(one_node("MatMul", vec![Operand::Input(&[m, k]), b_operand], Attrs::default()));
        check_all_variants(&model, &feeds, 1e-5)?;
    }

    #[test]
    fn conv_variants_agree(
        (c, h, w, oc, kernel, stride, pad, x, wt) in (1usize..4, 1usize..9, 1usize..9, 1usize..6, 1usize..4, 1usize..3, 0usize..2)
            .prop_filter("kernel fits the padded input", |&(_, h, w, _, k, _, p)| h + 2 * p >= k && w + 2 * p >= k)
            .prop_flat_map(|(c, h, w, oc, k, s, p)| {
                (Just(c), Just(h), Just(w), Just(oc), Just(k), Just(s), Just(p), values(c * h * w), values(oc * c * k * k))
            })
    ) {
        let p = pad as i64;
        let model = prepared(one_node(
            "Conv",
            vec![
                Operand::Input(&[1, c, h, w]),
                Operand::Constant(Tensor::from_vec(vec![oc, c, kernel, kernel], wt)),
            ],
            ints(&[("pads", vec![p, p, p, p]), ("strides", vec![stride as i64, stride as i64])]),
        ));
        check_all_variants(&model, &[x], 1e-5)?;
    }

    #[test]
    fn broadcast_elementwise_variants_agree(
        (rows, cols, x, y) in (size(), size()).prop_flat_map(|(r, c)| (Just(r), Just(c), values(r * c), values(c)))
    ) {
        for op in ["Add", "Mul", "Max"] {
            let model = prepared(one_node(op, vec![Operand::Input(&[rows, cols]), Operand::Input(&[cols])], Attrs::default()));
            check_all_variants(&model, &[x.clone(), y.clone()], 1e-6)?;
        }
        for op in ["Relu", "Sigmoid", "Tanh", "Exp", "Erf", "HardSigmoid", "HardSwish"] {
            let model = prepared(one_node(op, vec![Operand::Input(&[rows, cols])], Attrs::default()));
            check_all_variants(&model, std::slice::from_ref(&x), 2e-6)?;
        }
    }

    /// A fused chain (erf-GELU, a broadcast Add, HardSwish written out)
    /// computes in one kernel what the chain computes node by node.
    #[test]
    fn fused_chain_variants_agree(
        (rows, cols, x, y) in (size(), size()).prop_flat_map(|(r, c)| (Just(r), Just(c), values(r * c), values(c)))
    ) {
        let mut model = prepared(wpc_ir::testing::exported_chain(rows, cols));
        let before = model.graph.node_count();
        let fusion = wpc_codegen_wasm::ops::Fusion { opset: model.opset() };
        let stats = wpc_passes::fuse::fuse(&mut model, &fusion).unwrap();
        prop_assert_eq!((stats.groups, stats.nodes), (1, before));
        check_all_variants(&model, &[x, y], 1e-5)?;
    }

    /// MatMul, Gemm and Conv with the tails exporters write after them
    /// (residual, per-channel, per-column operands; tails with and
    /// without a vector form, the latter kept out of the GEMM) compute
    /// what the nodes compute one by one.
    #[test]
    fn epilogue_variants_agree(
        ((c, h, w, rows, k, n), img, x) in (1usize..6, 1usize..7, size(), size(), size(), size())
            .prop_flat_map(|d| (Just(d), values(d.0 * d.1 * d.2), values(d.3 * d.4)))
    ) {
        let mut model = prepared(wpc_ir::testing::exported_epilogues(c, h, w, rows, k, n));
        let fusion = wpc_codegen_wasm::ops::Fusion { opset: model.opset() };
        let stats = wpc_passes::fuse::fuse(&mut model, &fusion).unwrap();
        // The two tails with vector forms run in the GEMM's store; the
        // erf-GELU and tanh tails (scalar steps) are fused kernels of
        // their own after their MatMul and Gemm.
        prop_assert_eq!(stats.epilogues, 2);
        prop_assert_eq!(model.graph.node_count(), 6);
        check_all_variants(&model, &[img, x], 1e-4)?;
    }

    #[test]
    fn pool_and_softmax_variants_agree(
        (c, h, w, x) in (size(), 2usize..9, 2usize..9).prop_flat_map(|(c, h, w)| (Just(c), Just(h), Just(w), values(c * h * w)))
    ) {
        for op in ["MaxPool", "AveragePool"] {
            let model = prepared(one_node(
                op,
                vec![Operand::Input(&[1, c, h, w])],
                ints(&[("kernel_shape", vec![2, 2]), ("pads", vec![1, 0, 0, 1])]),
            ));
            check_all_variants(&model, std::slice::from_ref(&x), 1e-6)?;
        }
        for op in ["GlobalAveragePool", "Softmax"] {
            let model = prepared(one_node(op, vec![Operand::Input(&[1, c, h, w])], Attrs::default()));
            check_all_variants(&model, std::slice::from_ref(&x), 1e-5)?;
        }
    }

    #[test]
    fn norms_variants_agree(
        (d, x, g) in (size(), size(), size()).prop_flat_map(|(a, b, c)| (Just([a, b, c]), values(a * b * c), values(c)))
    ) {
        let [_, b, c] = d;
        let per = |v: f32, n: usize| Operand::Constant(Tensor::from_vec(vec![n], vec![v; n]));
        let layer_norm = prepared(one_node(
            "LayerNormalization",
            vec![Operand::Input(&d), Operand::Constant(Tensor::from_vec(vec![c], g)), per(0.25, c)],
            Attrs::default(),
        ));
        check_all_variants(&layer_norm, std::slice::from_ref(&x), 1e-4)?;
        // Channels on axis 1.
        let batch_norm = prepared(one_node(
            "BatchNormalization",
            vec![Operand::Input(&d), per(1.5, b), per(-0.5, b), per(0.1, b), per(2.0, b)],
            Attrs::default(),
        ));
        check_all_variants(&batch_norm, std::slice::from_ref(&x), 1e-5)?;
    }

    /// Expand broadcasts a row, a column and a scalar; Transpose
    /// permutes all three axes (the strided copy behind both).
    #[test]
    fn expand_and_transpose_variants_agree(
        (a, b, x) in (size(), size()).prop_flat_map(|(a, b)| (Just(a), Just(b), values(a * b)))
    ) {
        let shape = |dims: &[usize]| Operand::Constant(Tensor::i64s(
            vec![dims.len()],
            dims.iter().map(|&d| d as i64).collect(),
        ));
        for (input, target) in [
            (vec![1, a * b], vec![3, a * b]),
            (vec![a * b, 1], vec![2, a * b, b]),
            (vec![a, b], vec![2, 1, a, b]),
            (vec![1, 1], vec![a, b]),
        ] {
            let n: usize = input.iter().product();
            let model = prepared(one_node(
                "Expand",
                vec![Operand::Input(&input), shape(&target)],
                Attrs::default(),
            ));
            let data = x.iter().copied().cycle().take(n).collect::<Vec<_>>();
            check_all_variants(&model, &[data], 0.0)?;
        }
        let model = prepared(one_node(
            "Transpose",
            vec![Operand::Input(&[a, 2, b])],
            ints(&[("perm", vec![2, 0, 1])]),
        ));
        let data = x.iter().copied().cycle().take(2 * a * b).collect::<Vec<_>>();
        check_all_variants(&model, &[data], 0.0)?;
    }

    /// Slice (positive and negative steps, negative and clamped bounds),
    /// Tile and Split: the strided copies that select, repeat and cut.
    #[test]
    fn slice_tile_and_split_variants_agree(
        (a, b, x) in (size(), size()).prop_flat_map(|(a, b)| (Just(a), Just(b), values(2 * a * b)))
    ) {
        let list = |v: &[i64]| Operand::Constant(Tensor::i64s(vec![v.len()], v.to_vec()));
        let (a, b) = (a as i64, b as i64);
        for (starts, ends, axes, steps) in [
            (vec![0, 0], vec![1, b], vec![0, 2], vec![1, 2]),
            (vec![-a, 1], vec![a + 5, b], vec![1, 2], vec![2, 1]),
            (vec![1], vec![i64::MAX], vec![-1], vec![3]),
            (vec![-1, i64::MAX], vec![i64::MIN, 0], vec![1, 2], vec![-1, -2]),
        ] {
            let model = prepared(one_node(
                "Slice",
                vec![
                    Operand::Input(&[2, a as usize, b as usize]),
                    list(&starts),
                    list(&ends),
                    list(&axes),
                    list(&steps),
                ],
                Attrs::default(),
            ));
            check_all_variants(&model, std::slice::from_ref(&x), 0.0)?;
        }
        let model = prepared(one_node(
            "Tile",
            vec![Operand::Input(&[2, a as usize, b as usize]), list(&[2, 1, 3])],
            Attrs::default(),
        ));
        check_all_variants(&model, std::slice::from_ref(&x), 0.0)?;
        let mut on_axis_1 = Attrs::default();
        on_axis_1.insert("axis", wpc_ir::Attr::Int(1));
        let mut split = one_node(
            "Split",
            vec![Operand::Input(&[2, a as usize, b as usize]), list(&[1, a - 1])],
            on_axis_1,
        );
        // A second output: the rest of the axis.
        let node = split.graph.node_ids().next().unwrap();
        let mut node = split.graph.remove_node(node);
        let rest = split.graph.add_fresh_value("rest", wpc_ir::ValueType::default());
        node.outputs.push(Some(rest));
        split.graph.add_node(node).unwrap();
        split.graph.outputs.push(rest);
        check_all_variants(&prepared(split), std::slice::from_ref(&x), 0.0)?;
    }

    /// Pad in every mode, padding and cropping, over the last axis only
    /// (whole-row copies above it) and over all three.
    #[test]
    fn pad_variants_agree(
        (a, b, x, pads) in (size(), size()).prop_flat_map(|(a, b)| (
            Just(a),
            Just(b),
            values(2 * a * b),
            proptest::collection::vec(0i64..3, 6),
        ))
    ) {
        let list = |v: &[i64]| Operand::Constant(Tensor::i64s(vec![v.len()], v.to_vec()));
        // Reflect needs pads below the axis size; crop one where it is 2+.
        let (a, b) = (a as i64, b as i64);
        let fit = |p: i64, d: i64| p.min(d - 1);
        let all = vec![
            fit(pads[0], 2), fit(pads[1], a), if b > 1 { -1 } else { 0 },
            fit(pads[3], 2), fit(pads[4], a), fit(pads[5], b),
        ];
        let shape = [2, a as usize, b as usize];
        for mode in ["constant", "reflect", "edge", "wrap"] {
            let mut attrs = Attrs::default();
            attrs.insert("mode", wpc_ir::Attr::String(mode.into()));
            for (pads, axes) in [(all.clone(), None), (vec![fit(pads[2], b), fit(pads[5], b)], Some(vec![-1]))] {
                let mut operands = vec![
                    Operand::Input(&shape),
                    list(&pads),
                    Operand::Constant(Tensor::scalar(1.5f32)),
                ];
                if let Some(axes) = &axes {
                    operands.push(list(axes));
                }
                let model = prepared(one_node("Pad", operands, attrs.clone()));
                check_all_variants(&model, std::slice::from_ref(&x), 0.0)?;
            }
        }
    }

    /// LSTM (with peepholes), GRU (both placements of the reset gate)
    /// and RNN, in every direction and layout, clipped or not: the input
    /// GEMM, the step GEMMs and the cell formulas.
    #[test]
    fn recurrent_variants_agree(
        op in prop::sample::select(vec!["LSTM", "GRU", "RNN"]),
        linear_before_reset in any::<bool>(),
        direction in prop::sample::select(vec!["forward", "reverse", "bidirectional"]),
        batch_first in any::<bool>(),
        clip in prop::option::of(0.5f32..3.0),
        (t, b, i, h) in (1usize..4, 1usize..4, 1usize..6, 1usize..10),
        short in any::<bool>(),
        custom in any::<bool>(),
        data in values(1500),
    ) {
        // With `short`, every other item stops a step early (maybe at 0).
        let lens: Vec<i32> = (0..b).map(|j| (t - usize::from(short && j % 2 == 1)) as i32).collect();
        let model = recurrent_model(op, (linear_before_reset, custom), direction, batch_first, clip, [t, b, i, h], &lens, &data);
        let dirs = if direction == "bidirectional" { 2 } else { 1 };
        let x = data[..t * b * i].to_vec();
        let state = data[100..100 + dirs * b * h].to_vec();
        let mut inputs = vec![x, state.clone()];
        if op == "LSTM" {
            inputs.push(state.iter().map(|v| -v).collect());
        }
        check_all_variants(&model, &inputs, 1e-4)?;
    }

    /// Resize: nearest (each rounding), linear and cubic, under each
    /// coordinate mode, by sizes or by scales, with antialias: passes
    /// along the last axis (scalar) and the one above it (vectors).
    #[test]
    fn resize_variants_agree(
        (c, h, w, oh, ow, x) in (size(), size(), size(), 1usize..12, 1usize..12)
            .prop_flat_map(|(c, h, w, oh, ow)| (Just(c), Just(h), Just(w), Just(oh), Just(ow), values(2 * c * h * w))),
        mode in prop::sample::select(vec!["nearest", "linear", "cubic"]),
        coords in prop::sample::select(vec!["half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel"]),
        nearest in prop::sample::select(vec!["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]),
        antialias in any::<bool>(),
        by_scales in any::<bool>(),
    ) {
        let mut attrs = Attrs::default();
        attrs.insert("mode", wpc_ir::Attr::String(mode.into()));
        attrs.insert("coordinate_transformation_mode", wpc_ir::Attr::String(coords.into()));
        attrs.insert("nearest_mode", wpc_ir::Attr::String(nearest.into()));
        attrs.insert("antialias", wpc_ir::Attr::Int(i64::from(antialias && mode != "nearest")));
        let shape = [2, c, h, w];
        let (scales, sizes) = if by_scales {
            let s = [1.0, 1.0, oh as f32 / h as f32, ow as f32 / w as f32];
            (Operand::Constant(Tensor::from_vec(vec![4], s.to_vec())), None)
        } else {
            let s = vec![2, c as i64, oh as i64, ow as i64];
            (Operand::Constant(Tensor::from_vec(vec![0], Vec::<f32>::new())), Some(Operand::Constant(Tensor::i64s(vec![4], s))))
        };
        let mut operands = vec![
            Operand::Input(&shape),
            Operand::Constant(Tensor::from_vec(vec![0], Vec::<f32>::new())),
            scales,
        ];
        operands.extend(sizes);
        let model = prepared(one_node("Resize", operands, attrs));
        check_all_variants(&model, std::slice::from_ref(&x), 1e-5)?;
    }

    /// ConvTranspose, 1-D and 2-D: strides, dilations, pads, output
    /// padding, groups, with and without a bias.
    #[test]
    fn conv_transpose_variants_agree(
        one_d in any::<bool>(),
        (groups, cg, mg, h, w) in (1usize..3, 1usize..4, 1usize..4, 1usize..6, 1usize..7),
        (k, stride, dilation) in ((1usize..4, 1usize..4), (1usize..4, 1usize..3), (1usize..3, 1usize..3)),
        pads in proptest::collection::vec(0usize..3, 4),
        extra in (0usize..2, 0usize..2),
        bias in any::<bool>(),
        data in values(600),
    ) {
        let spatial = if one_d { 1 } else { 2 };
        let (cin, cout) = (groups * cg, groups * mg);
        let kernel = [k.0, k.1];
        let mut attrs = Attrs::default();
        let pick = |v: [usize; 2]| -> Vec<i64> { v[2 - spatial..].iter().map(|&x| x as i64).collect() };
        attrs.insert("strides", wpc_ir::Attr::Ints(pick([stride.0, stride.1])));
        attrs.insert("dilations", wpc_ir::Attr::Ints(pick([dilation.0, dilation.1])));
        // Output padding must stay below the stride or the dilation.
        let op = |e: usize, s: usize, d: usize| e.min(s.max(d) - 1);
        attrs.insert("output_padding", wpc_ir::Attr::Ints(pick([op(extra.0, stride.0, dilation.0), op(extra.1, stride.1, dilation.1)])));
        // Pads below the kernel's reach keep the output non-empty.
        let mut p = pick([pads[0], pads[1]]);
        p.extend(pick([pads[2], pads[3]]));
        for (i, v) in p.iter_mut().enumerate() {
            let axis = 2 - spatial + i % spatial;
            *v = (*v).min(((kernel[axis] - 1) * [dilation.0, dilation.1][axis]) as i64 / 2);
        }
        attrs.insert("pads", wpc_ir::Attr::Ints(p));
        attrs.insert("group", wpc_ir::Attr::Int(groups as i64));
        let x_shape: Vec<usize> = [vec![1, cin], pick([h, w]).iter().map(|&v| v as usize).collect()].concat();
        let w_shape: Vec<usize> = [vec![cin, mg], pick(kernel).iter().map(|&v| v as usize).collect()].concat();
        let mut from = data.iter().copied().cycle().skip(7);
        let n: usize = w_shape.iter().product();
        let mut operands = vec![
            Operand::Input(&x_shape),
            Operand::Constant(Tensor::from_vec(w_shape.clone(), from.by_ref().take(n).collect::<Vec<f32>>())),
        ];
        if bias {
            operands.push(Operand::Constant(Tensor::from_vec(vec![cout], from.by_ref().take(cout).collect::<Vec<f32>>())));
        }
        let model = prepared(one_node("ConvTranspose", operands, attrs));
        let x = data[..x_shape.iter().product()].to_vec();
        check_all_variants(&model, &[x], 1e-5)?;
    }

    /// Attention, 3-D with the heads in the last dim and 4-D with grouped
    /// K/V heads, query lengths across the block size, with masks
    /// broadcast from any rank (some rows masked out entirely).
    #[test]
    fn attention_variants_agree(
        four_d in any::<bool>(),
        (batch, kv_heads, reps, sq, sk, d, dv) in (1usize..3, 1usize..3, 1usize..3, prop::sample::select(vec![1usize, 5, 32, 37]), 1usize..9, 1usize..6, 1usize..6),
        mask_rank in 0usize..5,
        scale in prop::option::of(0.1f32..1.0),
        data in values(4000),
    ) {
        let heads = kv_heads * reps;
        let (q_shape, k_shape, v_shape) = if four_d {
            (vec![batch, heads, sq, d], vec![batch, kv_heads, sk, d], vec![batch, kv_heads, sk, dv])
        } else {
            // 3-D takes one head count for K/V: no grouping.
            (vec![batch, sq, heads * d], vec![batch, sk, heads * d], vec![batch, sk, heads * dv])
        };
        let mut attrs = Attrs::default();
        if !four_d {
            attrs.insert("q_num_heads", wpc_ir::Attr::Int(heads as i64));
            attrs.insert("kv_num_heads", wpc_ir::Attr::Int(heads as i64));
        }
        if let Some(s) = scale {
            attrs.insert("scale", wpc_ir::Attr::Float(s));
        }
        let full = [batch, heads, sq, sk];
        let mut operands = vec![Operand::Input(&q_shape), Operand::Input(&k_shape), Operand::Input(&v_shape)];
        if mask_rank > 0 {
            let shape = full[4 - mask_rank..].to_vec();
            let n: usize = shape.iter().product();
            // Mostly 0, some -1, and -inf masking a key (or a whole row).
            let values: Vec<f32> = (0..n).map(|i| match (data[i] * 10.0) as i32 % 4 {
                0 => f32::NEG_INFINITY,
                1 => -1.0,
                _ => 0.0,
            }).collect();
            operands.push(Operand::Constant(Tensor::from_vec(shape, values)));
        }
        let mut model = one_node("Attention", operands, attrs);
        // Attention is an op of opset 23.
        model.opsets.insert(String::new(), 23);
        let model = prepared(model);
        let take = |shape: &[usize], skip: usize| data.iter().copied().cycle().skip(skip).take(shape.iter().product()).collect::<Vec<f32>>();
        check_all_variants(&model, &[take(&q_shape, 0), take(&k_shape, 1000), take(&v_shape, 2000)], 1e-4)?;
    }

    #[test]
    fn reductions_variants_agree(
        (d, x) in (size(), size(), size()).prop_flat_map(|(a, b, c)| (Just([a, b, c]), values(a * b * c)))
    ) {
        // The last axis folds contiguous rows; the middle one folds down
        // columns; two axes fold as one.
        for axes in [vec![2i64], vec![1], vec![0, 1], vec![-2, -1]] {
            for op in ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare"] {
                let model = prepared(one_node(
                    op,
                    vec![
                        Operand::Input(&d),
                        Operand::Constant(Tensor::i64s(vec![axes.len()], axes.clone())),
                    ],
                    Attrs::default(),
                ));
                // f32 accumulation of n terms (each at most 2 in size)
                // differs from the f64 reference by up to about n·ε·2 of
                // the result's scale; a fixed 1e-5 fails long sums.
                let n: usize = axes.iter().map(|&a| d[a.rem_euclid(3) as usize]).product();
                let tol = 1e-5f32.max(n as f32 * f32::EPSILON * 2.0);
                check_all_variants(&model, std::slice::from_ref(&x), tol)?;
            }
        }
    }

    #[test]
    fn packed_weights_variants_agree(
        (m, k, n, rows) in (1usize..5, 17usize..80, 1usize..20, 2usize..9),
        bits in prop::sample::select(vec![2u32, 3, 4, 8]),
        group in prop::sample::select(vec![16usize, 32]),
        symmetric in any::<bool>(),
        f16_table in any::<bool>(),
        rotate in any::<bool>(),
        x in values(4 * 80),
    ) {
        // A product by a quantized weight (MatMulNBits) and rows of a
        // quantized table (GatherBlockQuantized; with float16 scales its
        // rows come out float16 and are cast back), with K often not a
        // whole number of groups and indices that count from the end.
        // Rotated products (`--rotate`) take a K of whole Hadamard blocks
        // and gain the input's rotation: Reshape, MatMul, Reshape.
        let k = if rotate { k / 16 * 16 } else { k };
        let w: Vec<f32> = (0..k * n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        // Table rows are whole bytes of codes at any width.
        let width = k / 8 * 8;
        let table: Vec<f32> = (0..rows * width).map(|i| ((i * 53 % 97) as f32 - 48.0) / 24.0).collect();
        let ids = vec![0, rows as i64 - 1, -1, 1, -(rows as i64)];
        let setting = wpc_passes::quant::Setting {
            bits: Some(bits),
            group,
            symmetric,
            f16_scales: false,
            rotate,
            ..wpc_passes::quant::Setting::DEFAULT
        };
        let precision = wpc_passes::quant::Precision::uniform(setting);
        let table_precision = wpc_passes::quant::Precision::uniform(wpc_passes::quant::Setting {
            f16_scales: f16_table,
            ..setting
        });
        let product = one_node(
            "MatMul",
            vec![Operand::Input(&[m, k]), Operand::Constant(Tensor::from_vec(vec![k, n], w))],
            Attrs::default(),
        );
        let lookup = one_node(
            "Gather",
            vec![
                Operand::Constant(Tensor::from_vec(vec![rows, width], table)),
                Operand::Constant(Tensor::i64s(vec![ids.len()], ids)),
            ],
            Attrs::default(),
        );
        // A Conv's weight is a packed table read whole: its 8 input
        // channels of 3×3 make rows of 72, whole bytes at every width.
        let filters: Vec<f32> = (0..n * 72).map(|i| ((i * 29 % 89) as f32 - 44.0) / 44.0).collect();
        let convolution = one_node(
            "Conv",
            vec![
                Operand::Input(&[1, 8, 4, 5]),
                Operand::Constant(Tensor::from_vec(vec![n, 8, 3, 3], filters)),
            ],
            Attrs::default(),
        );
        let lookup_ops = if f16_table {
            vec!["Cast", "GatherBlockQuantized"]
        } else {
            vec!["GatherBlockQuantized"]
        };
        let convolution_ops = if f16_table {
            vec!["Cast", "Conv", "GatherBlockQuantized", "Reshape"]
        } else {
            vec!["Conv", "GatherBlockQuantized", "Reshape"]
        };
        let product_ops = if rotate {
            vec!["MatMul", "MatMulNBits", "Reshape", "Reshape"]
        } else {
            vec!["MatMulNBits"]
        };
        for (model, precision, want, inputs) in [
            (product, &precision, product_ops, vec![x[..m * k].to_vec()]),
            (lookup, &table_precision, lookup_ops, vec![]),
            (convolution, &table_precision, convolution_ops, vec![x[..160].to_vec()]),
        ] {
            let mut model = prepared(model);
            wpc_passes::quant::quantize_weights(&mut model, precision, &Default::default()).unwrap();
            let mut ops: Vec<&str> = model.graph.node_ids().map(|id| model.graph.node(id).op.as_str()).collect();
            ops.sort();
            prop_assert_eq!(ops, want);
            check_all_variants(&model, &inputs, 1e-5)?;
        }
    }

    #[test]
    fn integer_products_match_the_reference_exactly(
        (batch, m, k, n) in (1usize..3, 1usize..5, 1usize..300, 1usize..30),
        (a_signed, b_signed) in (any::<bool>(), any::<bool>()),
        zero_points in 0usize..4,
        seed in any::<u64>(),
    ) {
        // MatMulInteger as `quantize_dynamic` writes it: 8-bit codes of
        // A (an input) by a constant 8-bit B; zero points absent, A's
        // alone, or both (B's one value or one per column); N below and
        // past the vector kernel's blocks of 8, K odd and even and long
        // enough that sums pass float32's exact integers.
        use wpc_ir::DType;
        let mut state = seed | 1;
        let mut code = |signed: bool| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 256) as f64 - if signed { 128.0 } else { 0.0 }
        };
        let dtype = |signed: bool| if signed { DType::I8 } else { DType::U8 };
        let a: Vec<f64> = (0..batch * m * k).map(|_| code(a_signed)).collect();
        let b: Vec<f64> = (0..k * n).map(|_| code(b_signed)).collect();
        let a_shape = [batch, m, k];
        let mut operands = vec![
            Operand::Input(&a_shape),
            Operand::Constant(Tensor::from_f64s(dtype(b_signed), vec![k, n], b)),
        ];
        if zero_points > 0 {
            let za = code(a_signed);
            operands.push(Operand::Constant(Tensor::from_f64s(dtype(a_signed), vec![], [za])));
        }
        if zero_points > 1 {
            let shape = if zero_points == 2 { vec![] } else { vec![n] };
            let zb: Vec<f64> = (0..shape.iter().product()).map(|_| code(b_signed)).collect();
            operands.push(Operand::Constant(Tensor::from_f64s(dtype(b_signed), shape, zb)));
        }
        let mut model = one_node("MatMulInteger", operands, Attrs::default());
        let x = model.graph.inputs[0];
        model.graph.value_mut(x).ty.dtype = Some(dtype(a_signed));
        let model = prepared(model);
        let feeds = HashMap::from([(
            model.graph.value(x).name.clone(),
            Tensor::from_f64s(dtype(a_signed), a_shape.to_vec(), a.iter().copied()),
        )]);
        let want = wpc_ir::interp::run_model(&model, &feeds).unwrap().remove(0).1.to_i64s();
        let bytes: Vec<u8> = a.iter().map(|&v| v as i64 as u8).collect();
        for isa in Isa::ALL {
            let c = wpc_codegen_wasm::compile(&model, isa).unwrap();
            prop_assert!(c.fallback.is_empty(), "{:?}", c.fallback);
            // The vector kernel runs where there is a block of 8 columns:
            // `i32x4.dot_i16x8_s` is 0xfd 0xba 0x01.
            let dots = c.wasm.windows(3).any(|w| w == [0xfd, 0xba, 0x01]);
            prop_assert_eq!(dots, isa != Isa::Scalar && n >= 8, "{}", isa.name());
            let got: Vec<i64> = run_bytes(&c, std::slice::from_ref(&bytes), 4)
                .remove(0)
                .chunks_exact(4)
                .map(|b| i64::from(i32::from_le_bytes(b.try_into().unwrap())))
                .collect();
            prop_assert_eq!(&got, &want, "{}", isa.name());
        }
    }
}

/// Representative kernels, small enough to read.
/// One recurrent node with every input given and every output wanted;
/// weights drawn from `data`. With `custom`, activations other than the
/// defaults (Relu, whose vector form RNN's cell then uses) and LSTM's
/// coupled input and forget gates.
#[allow(clippy::too_many_arguments)]
fn recurrent_model(
    op: &str,
    (linear_before_reset, custom): (bool, bool),
    direction: &str,
    batch_first: bool,
    clip: Option<f32>,
    [t, b, i, h]: [usize; 4],
    lens: &[i32],
    data: &[f32],
) -> Model {
    let gates = match op {
        "LSTM" => 4,
        "GRU" => 3,
        _ => 1,
    };
    let dirs = if direction == "bidirectional" { 2 } else { 1 };
    let mut from = data.iter().copied().cycle().skip(300);
    let mut take = |shape: Vec<usize>| {
        let n = shape.iter().product();
        Operand::Constant(Tensor::from_vec(
            shape,
            from.by_ref().take(n).collect::<Vec<f32>>(),
        ))
    };
    let x_shape = if batch_first { [b, t, i] } else { [t, b, i] };
    let s_shape = if batch_first {
        [b, dirs, h]
    } else {
        [dirs, b, h]
    };
    let mut attrs = Attrs::default();
    attrs.insert("hidden_size", wpc_ir::Attr::Int(h as i64));
    attrs.insert("direction", wpc_ir::Attr::String(direction.into()));
    attrs.insert("layout", wpc_ir::Attr::Int(i64::from(batch_first)));
    if let Some(c) = clip {
        attrs.insert("clip", wpc_ir::Attr::Float(c));
    }
    if op == "GRU" {
        attrs.insert(
            "linear_before_reset",
            wpc_ir::Attr::Int(i64::from(linear_before_reset)),
        );
    }
    if custom {
        let acts: &[&str] = match op {
            "LSTM" => &["Sigmoid", "Relu", "Tanh"],
            "GRU" => &["Sigmoid", "Relu"],
            _ => &["Relu"],
        };
        let acts = acts.iter().map(|s| s.to_string()).collect();
        attrs.insert("activations", wpc_ir::Attr::Strings(acts));
        if op == "LSTM" {
            attrs.insert("input_forget", wpc_ir::Attr::Int(1));
        }
    }
    let mut operands = vec![
        Operand::Input(&x_shape),
        take(vec![dirs, gates * h, i]),
        take(vec![dirs, gates * h, h]),
        take(vec![dirs, 2 * gates * h]),
        Operand::Constant(Tensor::from_vec(vec![b], lens.to_vec())),
        Operand::Input(&s_shape),
    ];
    if op == "LSTM" {
        operands.push(Operand::Input(&s_shape));
        operands.push(take(vec![dirs, 3 * h]));
    }
    let mut m = one_node(op, operands, attrs);
    // Every output: Y, Y_h and (LSTM) Y_c.
    let node = m.graph.node_ids().next().unwrap();
    let mut node = m.graph.remove_node(node);
    for name in if op == "LSTM" {
        &["y_h", "y_c"][..]
    } else {
        &["y_h"][..]
    } {
        let v = m.graph.add_fresh_value(name, wpc_ir::ValueType::default());
        node.outputs.push(Some(v));
        m.graph.outputs.push(v);
    }
    m.graph.add_node(node).unwrap();
    prepared(m)
}

fn kernels() -> Vec<(&'static str, Model)> {
    let w = |shape: Vec<usize>| {
        let n = shape.iter().product();
        Operand::Constant(Tensor::from_vec(shape, vec![0.5f32; n]))
    };
    vec![
        (
            "matmul",
            one_node(
                "MatMul",
                vec![Operand::Input(&[6, 5]), w(vec![5, 10])],
                Attrs::default(),
            ),
        ),
        (
            "conv3x3",
            one_node(
                "Conv",
                vec![
                    Operand::Input(&[1, 2, 5, 5]),
                    w(vec![3, 2, 3, 3]),
                    w(vec![3]),
                ],
                ints(&[("pads", vec![1, 1, 1, 1])]),
            ),
        ),
        (
            "add_broadcast",
            one_node(
                "Add",
                vec![Operand::Input(&[3, 6]), Operand::Input(&[6])],
                Attrs::default(),
            ),
        ),
        (
            "maxpool",
            one_node(
                "MaxPool",
                vec![Operand::Input(&[1, 2, 4, 4])],
                ints(&[("kernel_shape", vec![2, 2]), ("strides", vec![2, 2])]),
            ),
        ),
    ]
}

#[test]
fn wasm_text_per_variant() {
    for isa in Isa::ALL {
        for (name, m) in kernels() {
            let c = wpc_codegen_wasm::compile(&prepared(m), isa).unwrap();
            insta::assert_snapshot!(
                format!("{name}_{}", isa.name()),
                wpc_codegen_wasm::to_text(&c.wasm)
            );
        }
    }
}

#[test]
fn simd_variants_use_vector_instructions_and_scalar_does_not() {
    let (_, m) = kernels().remove(0);
    let m = prepared(m);
    let text = |isa| wpc_codegen_wasm::to_text(&wpc_codegen_wasm::compile(&m, isa).unwrap().wasm);
    assert!(text(Isa::Simd).contains("f32x4.mul"));
    assert!(!text(Isa::Simd).contains("relaxed"));
    assert!(text(Isa::Relaxed).contains("f32x4.relaxed_madd"));
    assert!(!text(Isa::Scalar).contains("v128"));
}

/// `r = Exp(x); z = Sub(r, y); out = Mul(z, r)`: Mul's output is written
/// over z, which dies there, so the plan holds four tensors at its peak
/// (x, y, r, z) instead of five, and the results still equal the
/// reference on every variant.
#[test]
fn elementwise_outputs_take_over_an_input_that_dies() {
    let n = 64;
    let model = prepared(wpc_ir::testing::exp_sub_mul(n, true));
    for isa in Isa::ALL {
        let c = wpc_codegen_wasm::compile(&model, isa).unwrap();
        assert_eq!(c.activation_bytes, 4 * 4 * n as u64, "{}", isa.name());
    }
    let data: Vec<f32> = (0..n).map(|i| (i as f32 - 30.0) / 16.0).collect();
    check_all_variants(
        &model,
        &[data.clone(), data.iter().map(|v| v * 0.5).collect()],
        1e-5,
    )
    .unwrap();
}

/// float16 conversions against `half`, the reference's: every float16 to
/// float32 exactly, and float32 values at and around every rounding
/// boundary to float16 (ties to even, subnormals, overflow, NaN).
#[test]
fn float16_casts_match_the_reference_bit_for_bit() {
    use half::f16;
    // A Cast from `from` to `to` of `n` values.
    let cast = |from: wpc_ir::DType, to: wpc_ir::DType, n: usize| {
        let attrs = Attrs(vec![(
            "to".into(),
            wpc_ir::Attr::Int(to.onnx_code().into()),
        )]);
        let mut m = one_node("Cast", vec![Operand::Input(&[n])], attrs);
        let x = m.graph.inputs[0];
        m.graph.value_mut(x).ty.dtype = Some(from);
        prepared(m)
    };
    let every_half: Vec<u16> = (0..=u16::MAX).collect();
    let widen = cast(wpc_ir::DType::F16, wpc_ir::DType::F32, every_half.len());
    let bytes: Vec<u8> = every_half.iter().flat_map(|h| h.to_le_bytes()).collect();
    // Every finite float16 and its neighbours half an ulp away (the ties)
    // and a float32 ulp either side of those.
    let mut singles: Vec<f32> = Vec::new();
    for h in 0..0x7c00u16 {
        let (lo, hi) = (f16::from_bits(h).to_f32(), f16::from_bits(h + 1).to_f32());
        let mid = (lo + hi) / 2.0;
        for v in [
            lo,
            mid,
            f32::from_bits(mid.to_bits() - 1),
            f32::from_bits(mid.to_bits() + 1),
        ] {
            singles.extend([v, -v]);
        }
    }
    singles.extend([
        65520.0,
        65519.99,
        1e6,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1e-10,
    ]);
    let narrow = cast(wpc_ir::DType::F32, wpc_ir::DType::F16, singles.len());
    let single_bytes: Vec<u8> = singles.iter().flat_map(|v| v.to_le_bytes()).collect();
    for isa in Isa::ALL {
        let c = wpc_codegen_wasm::compile(&widen, isa).unwrap();
        assert!(c.fallback.is_empty(), "{:?}", c.fallback);
        let got = run_bytes(&c, std::slice::from_ref(&bytes), 4).remove(0);
        for (h, b) in every_half.iter().zip(got.chunks_exact(4)) {
            let (got, want) = (
                f32::from_le_bytes(b.try_into().unwrap()),
                f16::from_bits(*h).to_f32(),
            );
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{}: {h:#06x} widened to {got}, not {want}",
                isa.name()
            );
        }
        let c = wpc_codegen_wasm::compile(&narrow, isa).unwrap();
        assert!(c.fallback.is_empty(), "{:?}", c.fallback);
        let got = run_bytes(&c, std::slice::from_ref(&single_bytes), 2).remove(0);
        for (v, b) in singles.iter().zip(got.chunks_exact(2)) {
            let (got, want) = (
                f16::from_bits(u16::from_le_bytes([b[0], b[1]])),
                f16::from_f32(*v),
            );
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{}: {v:e} narrowed to {got:?}, not {want:?}",
                isa.name()
            );
        }
    }
}
