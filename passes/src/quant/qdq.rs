//! Weights that QDQ models dequantize (`DequantizeLinear` of a constant
//! 8-bit weight feeding `MatMul`, as onnxruntime's `quantize_static`
//! writes them) kept as 8-bit codes: the pair becomes `MatMulNBits` over
//! the same codes, so no backend holds a float32 copy of the weight.
//! Constant folding would otherwise widen each such weight to float32 at
//! compile time, four times its bytes.
//!
//! Exact: a value is `(q − z) · s` either way (the shift of int8 codes and
//! zero points by 128 to the unsigned codes `MatMulNBits` reads cancels).

use wpc_ir::ops::params::{MatMulNBits, Quantization};
use wpc_ir::ops::quant::MICROSOFT;
use wpc_ir::packed::{self, Layout};
use wpc_ir::{DType, Graph, Model, Node, NodeId, Result, Tensor};

/// Rewrites every `DequantizeLinear` of a constant `[K, N]` int8 or uint8
/// weight whose every reader is a `MatMul` taking it as its float32 `B`,
/// per tensor, per column (axis 1) or in blocks along K (a power of two
/// of 16 or more); returns how many weights it kept packed.
pub fn pack_dequantized_weights(model: &mut Model) -> Result<usize> {
    let g = &mut model.graph;
    let mut packed = 0;
    // Collected first: the rewrite removes and adds nodes.
    let dequantized: Vec<NodeId> = (g.node_ids())
        .filter(|&id| g.node(id).op == "DequantizeLinear" && g.node(id).domain.is_empty())
        .collect();
    for id in dequantized {
        let Some((weight, readers)) = packable(g, id)? else {
            continue;
        };
        let node = g.node(id);
        let name = node.name.clone();
        let out = node.outputs[0].expect("checked by packable");
        let add =
            |g: &mut Graph, what: &str, t: Tensor| g.add_constant(&format!("{name}_{what}"), t);
        let codes = add(g, "codes", weight.codes);
        let scales = add(g, "scales", weight.scales);
        let zeros = weight.zeros.map(|z| add(g, "zero_points", z));
        let params = MatMulNBits {
            k: weight.layout.k,
            n: weight.layout.rows,
            bits: 8,
            block_size: weight.layout.block,
        };
        for reader in readers {
            let matmul = g.remove_node(reader);
            g.add_node(Node {
                name: matmul.name,
                op: "MatMulNBits".into(),
                domain: MICROSOFT.into(),
                inputs: vec![matmul.inputs[0], Some(codes), Some(scales), zeros],
                outputs: matmul.outputs,
                attrs: params.attrs(),
            })?;
        }
        debug_assert!(g.consumers(out).is_empty());
        g.remove_node(id);
        packed += 1;
    }
    Ok(packed)
}

/// A dequantized weight as `MatMulNBits` inputs.
struct Packed {
    layout: Layout,
    codes: Tensor,
    scales: Tensor,
    /// `None` where every zero point is the default (128).
    zeros: Option<Tensor>,
}

/// The packed weight of `DequantizeLinear` node `id` and the `MatMul`s
/// reading it, if the pair can be rewritten.
fn packable(g: &Graph, id: NodeId) -> Result<Option<(Packed, Vec<NodeId>)>> {
    let node = g.node(id);
    let input = |i: usize| node.inputs.get(i).copied().flatten();
    let constant = |i: usize| input(i).and_then(|v| g.constants.get(&v));
    let (Some(w), Some(s), Some(&Some(out))) = (constant(0), constant(1), node.outputs.first())
    else {
        return Ok(None);
    };
    // A zero point, where there is one, must be a constant too.
    let z = constant(2);
    if input(2).is_some() && z.is_none() {
        return Ok(None);
    }
    let shift = match w.dtype() {
        DType::I8 => 128,
        DType::U8 => 0,
        _ => return Ok(None),
    };
    let (&[k, n], DType::F32) = (w.shape(), s.dtype()) else {
        return Ok(None);
    };
    let q = Quantization::of(&node.attrs)?;
    if g.outputs.contains(&out) || q.output_dtype != 0 {
        return Ok(None);
    }
    let readers = g.consumers(out);
    let reads_as_b = |&r: &NodeId| {
        let m = g.node(r);
        m.op == "MatMul"
            && m.domain.is_empty()
            && m.inputs.get(1) == Some(&Some(out))
            && m.inputs.first() != Some(&Some(out))
    };
    if readers.is_empty() || !readers.iter().all(reads_as_b) {
        return Ok(None);
    }
    let axis = if q.axis < 0 { q.axis + 2 } else { q.axis };
    // Where each column's scale (and zero point) per block of K is.
    enum Spread {
        Tensor,
        Column,
        Blocks,
    }
    let (spread, block, blocks) = match (s.shape(), q.block_size) {
        (shape, 0) if shape.iter().product::<usize>() == 1 => (Spread::Tensor, whole_column(k), 1),
        (&[len], 0) if axis == 1 && len == n => (Spread::Column, whole_column(k), 1),
        (&[b, len], block)
            if axis == 0
                && len == n
                && block >= 16
                && block.is_power_of_two()
                && b == k.div_ceil(block) =>
        {
            (Spread::Blocks, block, b)
        }
        _ => return Ok(None),
    };
    let param_at = |c: usize, blk: usize| match spread {
        Spread::Tensor => 0,
        Spread::Column => c,
        Spread::Blocks => blk * n + c,
    };
    if z.is_some_and(|z| z.shape() != s.shape() || z.dtype() != w.dtype()) {
        return Ok(None);
    }
    let layout = Layout::blocked(n, k, 8, block);
    let values = w.to_f64s();
    let codes: Vec<u8> = (0..n * k)
        .map(|i| (values[(i % k) * n + i / k] as i64 + shift) as u8)
        .collect();
    let scale = s.to_f64s();
    let zero = z.map_or_else(|| vec![0.0; scale.len()], Tensor::to_f64s);
    let mut scales = Vec::with_capacity(n * blocks);
    let mut zeros = Vec::with_capacity(n * blocks);
    for c in 0..n {
        for blk in 0..blocks {
            let at = param_at(c, blk);
            scales.push(scale[at] as f32);
            zeros.push((zero[at] as i64 + shift) as u8);
        }
    }
    let zeros = (!zeros.iter().all(|&z| z == layout.default_zero_point())).then(|| {
        Tensor::from_vec(
            vec![n, layout.zero_point_row_bytes()],
            packed::pack_zero_points(&layout, &zeros),
        )
    });
    let row_bytes = layout.row_bytes;
    let weight = Packed {
        layout,
        codes: Tensor::from_vec(
            vec![n, blocks, row_bytes / blocks],
            packed::pack_codes(&layout, &codes),
        ),
        scales: Tensor::from_vec(vec![n, blocks], scales),
        zeros,
    };
    Ok(Some((weight, readers)))
}

/// The block that holds a whole column of `k` values (a power of two of
/// 16 or more): one scale and zero point per column.
fn whole_column(k: usize) -> usize {
    k.next_power_of_two().max(16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::GraphBuilder;
    use std::collections::HashMap;
    use wpc_ir::Dim;
    use wpc_ir::{Attr, Attrs};

    /// `y = x · DequantizeLinear(w, scale, zero)` over a `[k, n]` weight
    /// of `dtype`, with `attrs`; `also` adds a second reader of the
    /// dequantized weight (`Neg`), which must keep it float.
    fn dequantized_product(
        (k, n): (usize, usize),
        dtype: DType,
        (scale, zero): (Tensor, Option<Tensor>),
        attrs: Attrs,
        also: bool,
    ) -> Model {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, vec![Dim::Known(3), Dim::Known(k)]);
        let codes = (0..k * n)
            .map(|i| ((i * 37) % 256) as f64 - if dtype == DType::I8 { 128.0 } else { 0.0 });
        let w = b.constant("w", Tensor::from_f64s(dtype, vec![k, n], codes));
        let s = b.constant("scale", scale);
        let mut inputs = vec![w, s];
        inputs.extend(zero.map(|z| b.constant("zero", z)));
        let dq = b.node_with("DequantizeLinear", &inputs, attrs);
        let y = b.node("MatMul", &[x, dq]);
        let mut outputs = vec![y];
        if also {
            outputs.push(b.node("Neg", &[dq]));
        }
        b.finish(&outputs)
    }

    fn run(m: &Model) -> Vec<Tensor> {
        let mut m = m.clone();
        crate::shape_inference::infer_shapes(&mut m).unwrap();
        let k = m
            .graph
            .value(m.graph.inputs[0])
            .ty
            .shape
            .concrete()
            .unwrap()[1];
        let x = (0..3 * k)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0)
            .collect();
        let feeds = HashMap::from([("x".to_string(), Tensor::from_vec(vec![3, k], x))]);
        wpc_ir::interp::run_model(&m, &feeds)
            .unwrap()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    fn ops(m: &Model) -> Vec<&str> {
        m.graph
            .node_ids()
            .map(|id| m.graph.node(id).op.as_str())
            .collect()
    }

    #[test]
    fn dequantized_weights_stay_8_bit_codes_with_the_same_products() {
        let (k, n) = (40, 6);
        let attrs = |pairs: &[(&str, i64)]| {
            let mut a = Attrs::default();
            for &(name, v) in pairs {
                a.insert(name, Attr::Int(v));
            }
            a
        };
        let blocked = attrs(&[("axis", 0), ("block_size", 16)]);
        let per_column = attrs(&[("axis", 1)]);
        let scales = |len: usize| {
            Tensor::from_vec(
                vec![len],
                (0..len)
                    .map(|i| 0.01 + i as f32 * 0.003)
                    .collect::<Vec<_>>(),
            )
        };
        let cases = [
            (
                "per tensor, uint8, no zero point",
                DType::U8,
                (Tensor::scalar(0.02f32), None),
                Attrs::default(),
            ),
            (
                "per column, int8",
                DType::I8,
                (
                    scales(n),
                    Some(Tensor::from_f64s(
                        DType::I8,
                        vec![n],
                        (0..n).map(|i| i as f64 - 3.0),
                    )),
                ),
                per_column,
            ),
            (
                "blocked, uint8",
                DType::U8,
                (
                    Tensor::from_vec(
                        vec![3, n],
                        (0..3 * n)
                            .map(|i| 0.01 + i as f32 * 0.002)
                            .collect::<Vec<_>>(),
                    ),
                    Some(Tensor::from_f64s(
                        DType::U8,
                        vec![3, n],
                        (0..3 * n).map(|i| (i * 11 % 256) as f64),
                    )),
                ),
                blocked,
            ),
        ];
        for (what, dtype, params, attrs) in cases {
            let model = dequantized_product((k, n), dtype, params, attrs, false);
            let mut packed = model.clone();
            assert_eq!(pack_dequantized_weights(&mut packed).unwrap(), 1, "{what}");
            assert_eq!(ops(&packed), ["MatMulNBits"], "{what}");
            let (want, got) = (run(&model), run(&packed));
            let (want, got) = (want[0].to_f32s(), got[0].to_f32s());
            for (w, g) in want.iter().zip(&got) {
                assert!(
                    (w - g).abs() <= 1e-5 * w.abs().max(1.0),
                    "{what}: {w} vs {g}"
                );
            }
        }
    }

    #[test]
    fn a_weight_read_by_more_than_matmul_stays_as_it_is() {
        let model = dequantized_product(
            (32, 4),
            DType::I8,
            (Tensor::scalar(0.1f32), None),
            Attrs::default(),
            true,
        );
        let mut packed = model.clone();
        assert_eq!(pack_dequantized_weights(&mut packed).unwrap(), 0);
        assert_eq!(ops(&packed), ops(&model));
    }
}
