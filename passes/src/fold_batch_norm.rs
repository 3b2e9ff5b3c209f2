//! Folds an inference `BatchNormalization` into the `Conv` that feeds it:
//! y = (conv(x, W) + b − mean) · s + beta with s = gamma / √(var + ε) is
//! conv(x, W·s) + (b − mean)·s + beta, so the normalization costs nothing
//! at run time. Applies when the Conv's weights and all four statistics
//! are float32 constants and the BN is the Conv output's only reader.

use wpc_ir::{DType, Model, Result, Tensor};

/// Folds every foldable Conv → BatchNormalization pair; returns how many.
pub fn fold_conv_batch_norm(model: &mut Model) -> Result<usize> {
    let g = &mut model.graph;
    let mut folded = 0;
    for bn_id in g.topo_order()? {
        let bn = g.node(bn_id);
        if bn.op != "BatchNormalization"
            || !bn.domain.is_empty() && bn.domain != "ai.onnx"
            || wpc_ir::ops::params::BatchNorm::of(&bn.attrs)?.training
            || bn.outputs.iter().skip(1).any(Option::is_some)
        {
            continue;
        }
        let (Some(Some(x)), Some(Some(y))) = (bn.inputs.first(), bn.outputs.first()) else {
            continue;
        };
        let (x, y) = (*x, *y);
        let stats: Option<Vec<Vec<f32>>> = (1..5)
            .map(|i| {
                let t = g.constants.get(&bn.inputs.get(i).copied().flatten()?)?;
                (t.dtype() == DType::F32).then(|| t.to_f32s())
            })
            .collect();
        let Some(stats) = stats else { continue };
        let eps = wpc_ir::ops::params::BatchNorm::of(&bn.attrs)?.epsilon;
        let Some(conv_id) = g.producer(x) else {
            continue;
        };
        let conv = g.node(conv_id);
        let weight = conv
            .inputs
            .get(1)
            .copied()
            .flatten()
            .and_then(|w| g.constants.get(&w));
        let bias = match conv.inputs.get(2).copied().flatten() {
            None => Some(None),
            Some(b) => g.constants.get(&b).map(Some),
        };
        let (Some(weight), Some(bias)) = (weight, bias) else {
            continue;
        };
        let channels = weight.shape().first().copied().unwrap_or(0);
        if conv.op != "Conv"
            || weight.dtype() != DType::F32
            || stats.iter().any(|s| s.len() != channels)
            || g.consumers(x) != [bn_id]
            || g.outputs.contains(&x)
        {
            continue;
        }
        let [gamma, beta, mean, var] = [&stats[0], &stats[1], &stats[2], &stats[3]];
        let scale: Vec<f32> = gamma
            .iter()
            .zip(var)
            .map(|(g, v)| g / (v + eps).sqrt())
            .collect();
        let per_channel = weight.len() / channels.max(1);
        let w: Vec<f32> = weight
            .to_f32s()
            .iter()
            .enumerate()
            .map(|(i, v)| v * scale[i / per_channel])
            .collect();
        let old_bias = bias.map_or_else(|| vec![0.0; channels], Tensor::to_f32s);
        let b: Vec<f32> = (0..channels)
            .map(|c| (old_bias[c] - mean[c]) * scale[c] + beta[c])
            .collect();
        let w = Tensor::from_vec(weight.shape().to_vec(), w);
        let b = Tensor::from_vec(vec![channels], b);
        let name = g.value(y).name.clone();
        let w_id = g.add_constant(&format!("{name}_folded_w"), w);
        let b_id = g.add_constant(&format!("{name}_folded_b"), b);
        let mut node = g.remove_node(conv_id);
        g.remove_node(bn_id);
        node.inputs.truncate(1);
        node.inputs.extend([Some(w_id), Some(b_id)]);
        node.outputs = vec![Some(y)];
        g.add_node(node)?;
        folded += 1;
    }
    Ok(folded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::GraphBuilder;
    use wpc_ir::{Attrs, Dim};

    #[test]
    fn conv_then_batch_norm_becomes_one_conv_with_the_same_output() {
        let mut b = GraphBuilder::new();
        let x = b.input(
            "x",
            DType::F32,
            vec![Dim::Known(1), Dim::Known(1), Dim::Known(2), Dim::Known(2)],
        );
        let w = b.constant("w", Tensor::from_vec(vec![2, 1, 1, 1], vec![1.0f32, 2.0]));
        let conv = b.node("Conv", &[x, w]);
        let c = |b: &mut GraphBuilder, n: &str, v: [f32; 2]| {
            b.constant(n, Tensor::from_vec(vec![2], v.to_vec()))
        };
        let (gamma, beta) = (c(&mut b, "g", [2.0, 1.0]), c(&mut b, "b", [0.5, -1.0]));
        let (mean, var) = (c(&mut b, "m", [1.0, 0.0]), c(&mut b, "v", [3.0, 0.0]));
        let y = b.node_with(
            "BatchNormalization",
            &[conv, gamma, beta, mean, var],
            Attrs::default(),
        );
        let mut model = b.finish(&[y]);
        crate::shape_inference::infer_shapes(&mut model).unwrap();
        let input = Tensor::from_vec(vec![1, 1, 2, 2], vec![1.0f32, -2.0, 3.0, 0.5]);
        let feeds = std::collections::HashMap::from([("x".to_string(), input)]);
        let before = wpc_ir::interp::run_model(&model, &feeds).unwrap();
        assert_eq!(fold_conv_batch_norm(&mut model).unwrap(), 1);
        assert_eq!(model.graph.node_count(), 1);
        let after = wpc_ir::interp::run_model(&model, &feeds).unwrap();
        let (a, b) = (before[0].1.to_f64s(), after[0].1.to_f64s());
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-5 * p.abs().max(1.0), "{a:?} vs {b:?}");
        }
        // Nothing left to fold.
        assert_eq!(fold_conv_batch_norm(&mut model).unwrap(), 0);
    }
}
