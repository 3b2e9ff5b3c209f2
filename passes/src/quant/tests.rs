use std::collections::HashMap;

use proptest::prelude::*;
use wpc_ir::{Attr, Attrs, DType, Dim, Model, Tensor};

use super::*;
use crate::test_util::GraphBuilder;

fn seeded(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect()
}

/// `x[m, k] · W[k, n] + b` as torch writes a Linear (MatMul, then Add with
/// the bias first), beside a Gather from a `[rows, k]` table.
fn linear_and_table(m: usize, k: usize, n: usize, rows: usize) -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, vec![Dim::Known(m), Dim::Known(k)]);
    let ids = b.input("ids", DType::I64, vec![Dim::Known(3)]);
    let w = b.constant("w", Tensor::from_vec(vec![k, n], seeded(k * n, 1)));
    let bias = b.constant("bias", Tensor::from_vec(vec![n], seeded(n, 2)));
    let table = b.constant(
        "table",
        Tensor::from_vec(vec![rows, k], seeded(rows * k, 3)),
    );
    let y = b.node("MatMul", &[x, w]);
    let y = b.node("Add", &[bias, y]);
    let e = b.node("Gather", &[table, ids]);
    let mut model = b.finish(&[y, e]);
    crate::shape_inference::infer_shapes(&mut model).unwrap();
    model
}

fn feeds(m: usize, k: usize, rows: usize) -> HashMap<String, Tensor> {
    HashMap::from([
        (
            "x".to_string(),
            Tensor::from_vec(vec![m, k], seeded(m * k, 9)),
        ),
        (
            "ids".to_string(),
            Tensor::i64s(vec![3], vec![0, rows as i64 - 1, -1]),
        ),
    ])
}

fn run(model: &Model, feeds: &HashMap<String, Tensor>) -> Vec<Vec<f64>> {
    wpc_ir::interp::run_model(model, feeds)
        .unwrap()
        .into_iter()
        .map(|(_, t)| t.to_f64s())
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max)
}

fn at(bits: u32, group: usize) -> Precision {
    Precision::uniform(Setting {
        bits: Some(bits),
        group,
        ..Setting::DEFAULT
    })
}

#[test]
fn linear_layers_and_tables_become_packed_ops_with_their_bias() {
    let mut model = linear_and_table(4, 64, 24, 10);
    let f = feeds(4, 64, 10);
    let before = run(&model, &f);
    let report = quantize_weights(&mut model, &at(8, 32), &Calibration::default()).unwrap();
    let ops: Vec<String> = model
        .graph
        .node_ids()
        .map(|id| model.graph.node(id).op.clone())
        .collect();
    assert!(ops.contains(&"MatMulNBits".to_string()), "{ops:?}");
    assert!(ops.contains(&"GatherBlockQuantized".to_string()), "{ops:?}");
    // The bias Add joined the product; the f16 rows are cast back.
    assert!(
        !ops.contains(&"Add".to_string()) && ops.contains(&"Cast".to_string()),
        "{ops:?}"
    );
    assert_eq!(report.layers.len(), 2);
    let (float, stored) = report.bytes();
    assert_eq!(float, (64 * 24 + 10 * 64) * 4);
    assert!(stored * 3 < float, "{stored} of {float}");
    let after = run(&model, &f);
    assert!(
        max_diff(&before[0], &after[0]) < 0.02,
        "{}",
        max_diff(&before[0], &after[0])
    );
    assert!(
        max_diff(&before[1], &after[1]) < 0.004,
        "{}",
        max_diff(&before[1], &after[1])
    );
    // Everything quantizable is quantized: a second run finds nothing.
    assert!(
        quantize_weights(&mut model, &at(8, 32), &Calibration::default())
            .unwrap()
            .layers
            .is_empty()
    );
}

#[test]
fn gemm_keeps_its_alpha_beta_and_transposed_weight() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, vec![Dim::Known(3), Dim::Known(32)]);
    let w = b.constant("w", Tensor::from_vec(vec![5, 32], seeded(160, 4)));
    let c = b.constant("c", Tensor::from_vec(vec![1, 5], seeded(5, 5)));
    let mut attrs = Attrs::default();
    attrs.insert("transB", Attr::Int(1));
    attrs.insert("alpha", Attr::Float(0.5));
    attrs.insert("beta", Attr::Float(2.0));
    let y = b.node_with("Gemm", &[x, w, c], attrs);
    let mut model = b.finish(&[y]);
    crate::shape_inference::infer_shapes(&mut model).unwrap();
    let f = HashMap::from([(
        "x".to_string(),
        Tensor::from_vec(vec![3, 32], seeded(96, 6)),
    )]);
    let before = run(&model, &f);
    quantize_weights(&mut model, &at(8, 16), &Calibration::default()).unwrap();
    let after = run(&model, &f);
    assert!(
        max_diff(&before[0], &after[0]) < 0.01,
        "{:?} vs {:?}",
        before[0],
        after[0]
    );
}

#[test]
fn rules_choose_bits_per_layer_and_32_keeps_float() {
    let text = r#"(
    default: (bits: 4),
    layers: [
        ("Gather", (bits: 32)),
        ("w", (bits: 2, group: 16, symmetric: true, scales: f32)),
    ],
)"#;
    let mut model = linear_and_table(2, 32, 8, 4);
    let p = Precision::parse(text, "map.ron").unwrap();
    let report = quantize_weights(&mut model, &p, &Calibration::default()).unwrap();
    let by_op = |op: &str| report.layers.iter().find(|l| l.op == op).unwrap();
    assert_eq!(by_op("Gather").setting.bits, None);
    assert_eq!(by_op("Gather").bytes, by_op("Gather").float_bytes);
    let mm = by_op("MatMul");
    assert_eq!(
        (mm.setting.bits, mm.setting.group, mm.rule),
        (Some(2), 16, Some(1))
    );
    // 2-bit codes and one f32 scale per 16 values, no zero points.
    assert_eq!(mm.bytes, 8 * 32 / 4 + 8 * 2 * 4);
    // A rule that matches nothing is an error naming its line.
    let mut model = linear_and_table(2, 32, 8, 4);
    let p = Precision::parse("(layers: [\n (\"*nothing*\", (bits: 3)),\n])", "m.ron").unwrap();
    let err = quantize_weights(&mut model, &p, &Calibration::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("m.ron:2: pattern \"*nothing*\""), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The quantized graph computes exactly the product by the weight it
    /// stores: its output equals the original graph's with the weight
    /// replaced by the packed weight read back, at every width, group and
    /// shape (packing, transposes and bias are right), and its error
    /// against the float weight shrinks with more bits.
    #[test]
    fn the_packed_graph_is_the_graph_of_its_dequantized_weight(
        m in 1usize..4, k in 16usize..90, n in 1usize..12,
        bits in 2u32..=8, group in prop::sample::select(vec![16usize, 32, 64]),
        symmetric in any::<bool>(),
    ) {
        let mut model = linear_and_table(m, k, n, 3);
        let f = feeds(m, k, 3);
        let p = Precision::uniform(Setting { bits: Some(bits), group, symmetric, ..Setting::DEFAULT });
        let mut q = model.clone();
        quantize_weights(&mut q, &p, &Calibration::default()).unwrap();
        let mm = q.graph.node_ids().find(|&id| q.graph.node(id).op == "MatMulNBits").unwrap();
        let node = q.graph.node(mm);
        let c = |i: usize| node.inputs[i].and_then(|v| q.graph.constants.get(&v));
        let params = wpc_ir::ops::params::MatMulNBits::of(&node.attrs).unwrap();
        let z = c(3).map(|z| z.as_slice::<u8>().unwrap());
        let weight = wpc_ir::packed::Weight {
            layout: params.layout(),
            codes: c(1).unwrap().as_slice::<u8>().unwrap(),
            scales: c(2).unwrap().to_f32s(),
            zero_points: z.map_or(wpc_ir::packed::ZeroPoints::Default, wpc_ir::packed::ZeroPoints::Packed),
            groups: None,
        };
        let mut w = vec![0f32; k * n];
        let mut row = vec![0f32; k];
        for j in 0..n {
            weight.row_into(j, &mut row);
            for i in 0..k {
                w[i * n + j] = row[i];
            }
        }
        let wid = model.graph.find_value("w").unwrap();
        model.graph.constants.insert(wid, Tensor::from_vec(vec![k, n], w));
        let (expect, got) = (run(&model, &f), run(&q, &f));
        prop_assert!(max_diff(&expect[0], &got[0]) < 1e-5, "{:?} vs {:?}", expect[0], got[0]);
    }
}

#[test]
fn sample_inputs_quantize_linear_layers_by_gptq_with_errors_on_them() {
    let mut model = linear_and_table(8, 64, 24, 10);
    let f = feeds(8, 64, 10);
    let before = run(&model, &f);
    let mut plain = model.clone();
    quantize_weights(&mut plain, &at(3, 32), &Calibration::default()).unwrap();
    let cal = Calibration::measure(&model, std::slice::from_ref(&f)).unwrap();
    let report = quantize_weights(&mut model, &at(3, 32), &cal).unwrap();
    let mm = report.layers.iter().find(|l| l.op == "MatMul").unwrap();
    assert_eq!(mm.setting.method, wpc_ir::quantize::Method::Gptq);
    assert!(mm.on_samples);
    assert!(mm.error.unwrap() < mm.rounding_error.unwrap(), "{mm:?}");
    // On the samples it was fit to, GPTQ's output is closer than search's.
    let (g, p) = (run(&model, &f), run(&plain, &f));
    let err = |a: &[f64]| {
        a.iter()
            .zip(&before[0])
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
    };
    assert!(err(&g[0]) < err(&p[0]), "{} vs {}", err(&g[0]), err(&p[0]));
}

/// `y_a = (x · Wa) · 100` and `y_b = (x · Wb) / 100`: two layers of the
/// same shape, one of which moves the outputs ten thousand times more.
fn loud_and_quiet(m: usize, k: usize, n: usize) -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, vec![Dim::Known(m), Dim::Known(k)]);
    let wa = b.constant("wa", Tensor::from_vec(vec![k, n], seeded(k * n, 11)));
    let wb = b.constant("wb", Tensor::from_vec(vec![k, n], seeded(k * n, 12)));
    let loud = b.constant("loud", Tensor::scalar(100f32));
    let quiet = b.constant("quiet", Tensor::scalar(0.01f32));
    let ya = b.node("MatMul", &[x, wa]);
    let ya = b.node("Mul", &[ya, loud]);
    let yb = b.node("MatMul", &[x, wb]);
    let yb = b.node("Mul", &[yb, quiet]);
    let mut model = b.finish(&[ya, yb]);
    crate::shape_inference::infer_shapes(&mut model).unwrap();
    model
}

#[test]
fn fitting_gives_the_bits_to_the_layer_the_outputs_feel() {
    let (m, k, n) = (16, 64, 32);
    let model = loud_and_quiet(m, k, n);
    let f = HashMap::from([(
        "x".to_string(),
        Tensor::from_vec(vec![m, k], seeded(m * k, 13)),
    )]);
    // 8 bits for one layer and 2 for the other fit; 8 and 3 do not.
    let budget = 2900;
    let fit = Precision {
        fit: Some(budget),
        ..Precision::uniform(Setting::DEFAULT)
    };
    let bits = |report: &QuantReport| -> Vec<Option<u32>> {
        report.layers.iter().map(|l| l.setting.bits).collect()
    };
    // Without samples only the weights' errors speak: both alike.
    let mut blind = model.clone();
    let report = quantize_weights(&mut blind, &fit, &Calibration::default()).unwrap();
    let chosen = bits(&report);
    assert_eq!(chosen[0], chosen[1], "{report:?}");
    assert!(!report.fit.as_ref().unwrap().measured);
    // Measured end to end, the loud layer keeps 8 bits.
    let mut cal = Calibration::measure(&model, std::slice::from_ref(&f)).unwrap();
    cal.keep_sample_run(model.clone(), f.clone()).unwrap();
    let mut fitted = model.clone();
    let report = quantize_weights(&mut fitted, &fit, &cal).unwrap();
    assert_eq!(bits(&report), [Some(8), Some(2)], "{report:?}");
    let summary = report.fit.clone().unwrap();
    assert!(summary.measured && summary.bytes <= budget, "{summary:?}");
    let (_, stored) = report.bytes();
    assert_eq!(summary.bytes, summary.fixed + stored as u64);
    // A budget below the fewest bits says what the least is.
    let tight = Precision {
        fit: Some(1000),
        ..Precision::uniform(Setting::DEFAULT)
    };
    let err = quantize_weights(&mut model.clone(), &tight, &cal)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be made that small"), "{err}");
    // So is one that layers the map pins already overrun, with no layer
    // left to choose for.
    let pinned = Precision {
        fit: Some(1000),
        ..Precision::parse("(layers: [(\"*\", (bits: 8))])", "m.ron").unwrap()
    };
    let err = quantize_weights(&mut model.clone(), &pinned, &cal)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be made that small"), "{err}");
}

/// `x[2, 8, k]` read by two MatMuls (as attention's query and key read
/// one input) whose weights have a few input rows twenty times larger
/// than the rest: the outliers that set their groups' scales.
fn outlier_pair(k: usize, n: usize) -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input(
        "x",
        DType::F32,
        vec![Dim::Known(2), Dim::Known(8), Dim::Known(k)],
    );
    let loud = |mut w: Vec<f32>| {
        for i in [3, k / 2 + 1, k - 5] {
            w[i * n..(i + 1) * n].iter_mut().for_each(|v| *v *= 20.0);
        }
        Tensor::from_vec(vec![k, n], w)
    };
    let wq = b.constant("wq", loud(seeded(k * n, 21)));
    let wk = b.constant("wk", loud(seeded(k * n, 22)));
    let q = b.node("MatMul", &[x, wq]);
    let k_out = b.node("MatMul", &[x, wk]);
    let mut model = b.finish(&[q, k_out]);
    crate::shape_inference::infer_shapes(&mut model).unwrap();
    model
}

#[test]
fn rotation_spreads_outliers_over_groups_and_keeps_the_product() {
    let (k, n) = (128, 24);
    let model = outlier_pair(k, n);
    let f = HashMap::from([(
        "x".to_string(),
        Tensor::from_vec(vec![2, 8, k], seeded(2 * 8 * k, 23)),
    )]);
    let float = run(&model, &f);
    let mut cal = Calibration::measure(&model, std::slice::from_ref(&f)).unwrap();
    cal.keep_sample_run(model.clone(), f.clone()).unwrap();
    let error = |got: &[Vec<f64>]| -> f64 {
        let (mut d, mut t) = (0.0, 0.0);
        for (a, b) in got.iter().zip(&float) {
            for (x, y) in a.iter().zip(b) {
                d += (x - y).powi(2);
                t += y * y;
            }
        }
        (d / t).sqrt()
    };
    for (calibration, measured) in [(Calibration::default(), false), (cal, true)] {
        let mut plain = model.clone();
        quantize_weights(&mut plain, &at(3, 32), &calibration).unwrap();
        let mut turned = model.clone();
        let precision = at(3, 32).with_overrides(None, None, true);
        let report = quantize_weights(&mut turned, &precision, &calibration).unwrap();
        assert!(report.layers.iter().all(|l| l.setting.rotate), "{report:?}");
        // One rotation of the shared input, in front of both products.
        let ops: Vec<&str> = turned
            .graph
            .node_ids()
            .map(|id| turned.graph.node(id).op.as_str())
            .collect();
        let count = |op: &str| ops.iter().filter(|&&o| o == op).count();
        assert_eq!(
            (count("MatMul"), count("Reshape"), count("MatMulNBits")),
            (1, 2, 2),
            "{ops:?}"
        );
        let (e_plain, e_turned) = (error(&run(&plain, &f)), error(&run(&turned, &f)));
        assert!(e_turned < 0.8 * e_plain, "rotated {e_turned} vs {e_plain}");
        // The report's whole-model accuracy reads the codes back through
        // the rotation: it is what the quantized graph computes.
        assert_eq!(report.accuracy.is_empty(), !measured);
        if let [a, ..] = &report.accuracy[..] {
            let got = &run(&turned, &f)[0];
            let dot: f64 = got.iter().zip(&float[0]).map(|(x, y)| x * y).sum();
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let cosine = dot / (norm(got) * norm(&float[0]));
            assert!((a.cosine - cosine).abs() < 1e-6, "{} vs {cosine}", a.cosine);
        }
    }
}

#[test]
fn an_axis_without_a_hadamard_block_is_quantized_unrotated() {
    let mut model = linear_and_table(2, 40, 8, 4);
    let precision = at(4, 16).with_overrides(None, None, true);
    let report = quantize_weights(&mut model, &precision, &Calibration::default()).unwrap();
    // 40 has no power-of-two factor of 16 or more; tables never rotate.
    assert!(
        report.layers.iter().all(|l| !l.setting.rotate),
        "{report:?}"
    );
    assert!(
        report.layers.iter().all(|l| l.setting.bits == Some(4)),
        "{report:?}"
    );
    assert!(
        model
            .graph
            .node_ids()
            .all(|id| model.graph.node(id).op != "Reshape")
    );
}

/// A 3×3 Conv over `[1, c, 6, 6]` with `m` output channels (and a bias),
/// then a depthwise one, whose 9 values per channel are too few to group.
fn convolutions(c: usize, m: usize) -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input(
        "x",
        DType::F32,
        vec![Dim::Known(1), Dim::Known(c), Dim::Known(6), Dim::Known(6)],
    );
    let w = b.constant(
        "w",
        Tensor::from_vec(vec![m, c, 3, 3], seeded(m * c * 9, 31)),
    );
    let bias = b.constant("bias", Tensor::from_vec(vec![m], seeded(m, 32)));
    let dw = b.constant("dw", Tensor::from_vec(vec![m, 1, 3, 3], seeded(m * 9, 33)));
    let y = b.node("Conv", &[x, w, bias]);
    let mut attrs = Attrs::default();
    attrs.insert("group", Attr::Int(m as i64));
    let y = b.node_with("Conv", &[y, dw], attrs);
    let mut model = b.finish(&[y]);
    crate::shape_inference::infer_shapes(&mut model).unwrap();
    model
}

#[test]
fn convolution_weights_become_a_packed_table_read_whole() {
    let (c, m) = (8, 6);
    let model = convolutions(c, m);
    let f = HashMap::from([(
        "x".to_string(),
        Tensor::from_vec(vec![1, c, 6, 6], seeded(c * 36, 34)),
    )]);
    let float = run(&model, &f);
    let mut errors = Vec::new();
    for bits in [8, 4, 3] {
        let mut q = model.clone();
        let report = quantize_weights(&mut q, &at(bits, 16), &Calibration::default()).unwrap();
        // The depthwise Conv (9 values a row) is no layer to quantize.
        let [conv] = &report.layers[..] else {
            panic!("{report:?}");
        };
        assert_eq!((conv.op.as_str(), conv.shape), ("Conv", [m, c * 9]));
        assert_eq!(conv.setting.bits, Some(bits));
        let mut ops: Vec<&str> = q
            .graph
            .node_ids()
            .map(|id| q.graph.node(id).op.as_str())
            .collect();
        ops.sort();
        assert_eq!(
            ops,
            ["Cast", "Conv", "Conv", "GatherBlockQuantized", "Reshape"],
            "float16 scales give float16 rows, cast back"
        );
        errors.push(max_diff(&float[0], &run(&q, &f)[0]));
    }
    assert!(
        errors[0] < 0.01 && errors[0] < errors[1] && errors[1] < errors[2],
        "{errors:?}"
    );
}
