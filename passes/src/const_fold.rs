//! Constant folding: a node whose inputs are all constants is evaluated once
//! by the reference interpreter and replaced by its outputs. `CastLike`
//! reads only its second input's dtype, so a constant first input suffices.

use wpc_ir::{Model, Result, interp};

/// Ops never folded: their results are not determined by their inputs.
const NONDETERMINISTIC: &[&str] = &[
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Bernoulli",
    "Multinomial",
];

/// Folds every foldable node of the main graph; returns how many were folded.
pub fn fold_constants(model: &mut Model) -> Result<usize> {
    let opset = model.opset();
    let g = &mut model.graph;
    let mut folded = 0;
    for id in g.topo_order()? {
        let node = g.node(id);
        let like = dtype_only_input(g, node);
        let foldable = !NONDETERMINISTIC.contains(&node.op.as_str())
            && node.attrs.subgraphs().next().is_none()
            && wpc_ir::ops::lookup(&node.domain, &node.op).is_some()
            && node.inputs.iter().enumerate().all(|(i, v)| {
                v.is_none_or(|v| g.constants.contains_key(&v))
                    || like.as_ref().is_some_and(|(at, _)| *at == i)
            });
        if !foldable {
            continue;
        }
        let inputs = node
            .inputs
            .iter()
            .enumerate()
            .map(|(i, v)| match (&like, v) {
                (Some((at, stand_in)), _) if *at == i => Some(stand_in),
                (_, v) => v.map(|v| &g.constants[&v]),
            })
            .collect();
        // A node that fails here would fail at run time too; leave it for the
        // runtime to report with its inputs rather than failing compilation.
        let Ok(outputs) = interp::eval_node(node, inputs, opset) else {
            continue;
        };
        let slots = node.outputs.clone();
        g.remove_node(id);
        for (slot, t) in slots.iter().zip(outputs) {
            if let Some(v) = slot {
                g.value_mut(*v).ty = wpc_ir::ValueType::of(&t);
                g.constants.insert(*v, t);
            }
        }
        folded += 1;
    }
    Ok(folded)
}

/// For a node that reads only the dtype of one input (`CastLike`'s
/// target), that input's index and an empty stand-in of its dtype.
fn dtype_only_input(g: &wpc_ir::Graph, node: &wpc_ir::Node) -> Option<(usize, wpc_ir::Tensor)> {
    if node.op != "CastLike" {
        return None;
    }
    let v = (*node.inputs.get(1)?)?;
    let dtype = g.value(v).ty.dtype?;
    Some((1, wpc_ir::Tensor::zeros(dtype, vec![0])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::GraphBuilder;
    use wpc_ir::{DType, Dim, Tensor};

    #[test]
    fn folds_shape_arithmetic_but_not_data_paths() {
        let mut b = GraphBuilder::new();
        let x = b.input(
            "x",
            DType::F32,
            vec![Dim::Symbol("n".into()), Dim::Known(2)],
        );
        let a = b.constant("a", Tensor::from_vec(vec![2], vec![1.0f32, 2.0]));
        let c = b.constant("c", Tensor::from_vec(vec![2], vec![3.0f32, 4.0]));
        let ac = b.node("Mul", &[a, c]);
        let y = b.node("Add", &[x, ac]);
        let mut model = b.finish(&[y]);
        assert_eq!(fold_constants(&mut model).unwrap(), 1);
        assert_eq!(model.graph.node_count(), 1);
        assert_eq!(model.graph.constants[&ac].to_f64s(), vec![3.0, 8.0]);
        // Folding is idempotent.
        assert_eq!(fold_constants(&mut model).unwrap(), 0);
    }

    #[test]
    fn folds_cast_like_of_a_constant_to_a_data_input_dtype() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::I32, vec![Dim::Known(2)]);
        let c = b.constant("c", Tensor::from_vec(vec![1], vec![2.5f32]));
        let cast = b.node("CastLike", &[c, x]);
        let y = b.node("Add", &[x, cast]);
        let mut model = b.finish(&[y]);
        assert_eq!(fold_constants(&mut model).unwrap(), 1);
        let folded = &model.graph.constants[&cast];
        assert_eq!(folded.dtype(), DType::I32);
        assert_eq!(folded.to_f64s(), vec![2.0]);
    }
}
