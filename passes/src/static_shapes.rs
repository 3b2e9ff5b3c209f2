//! Folds `Shape` and `Size` nodes whose input shape is fully known.
//!
//! Once symbolic dims are bound (a bundle is compiled for concrete sizes),
//! shape computations become constants; folding them lets constant folding
//! erase whole shape subgraphs, which backends without 64-bit integers
//! (WGSL) could not run anyway.

use wpc_ir::{Model, Result, Tensor};

use crate::shape_inference::infer_shapes;

/// Returns how many nodes were folded.
pub fn fold_static_shapes(model: &mut Model) -> Result<usize> {
    infer_shapes(model)?;
    let g = &mut model.graph;
    let mut folded = 0;
    for id in g.topo_order()? {
        let node = g.node(id);
        if !node.domain.is_empty() || !matches!(node.op.as_str(), "Shape" | "Size") {
            continue;
        }
        let (Some(Some(input)), Some(Some(output))) = (node.inputs.first(), node.outputs.first())
        else {
            continue;
        };
        let Some(dims) = g.value(*input).ty.shape.concrete() else {
            continue;
        };
        let value = if node.op == "Size" {
            Tensor::scalar(dims.iter().product::<usize>() as i64)
        } else {
            let (start, end) = wpc_ir::ops::params::shape_range(&node.attrs, dims.len())?;
            let v: Vec<i64> = dims[start..end].iter().map(|&d| d as i64).collect();
            Tensor::i64s(vec![v.len()], v)
        };
        let output = *output;
        g.remove_node(id);
        g.value_mut(output).ty = wpc_ir::ValueType::of(&value);
        g.constants.insert(output, value);
        folded += 1;
    }
    Ok(folded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::GraphBuilder;
    use wpc_ir::{Attr, Attrs, DType, Dim};

    #[test]
    fn shape_and_size_of_known_shapes_become_constants() {
        let mut b = GraphBuilder::new();
        let x = b.input(
            "x",
            DType::F32,
            vec![Dim::Known(2), Dim::Known(3), Dim::Known(4)],
        );
        let mut attrs = Attrs::default();
        attrs.insert("start", Attr::Int(-2));
        let s = b.node_with("Shape", &[x], attrs);
        let n = b.node("Size", &[x]);
        let mut m = b.finish(&[s, n]);
        assert_eq!(fold_static_shapes(&mut m).unwrap(), 2);
        assert_eq!(m.graph.constants[&s], Tensor::i64s(vec![2], vec![3, 4]));
        assert_eq!(m.graph.constants[&n], Tensor::scalar(24i64));
    }

    #[test]
    fn symbolic_shapes_stay() {
        let mut b = GraphBuilder::new();
        let x = b.input(
            "x",
            DType::F32,
            vec![Dim::Symbol("n".into()), Dim::Known(3)],
        );
        let s = b.node("Shape", &[x]);
        let mut m = b.finish(&[s]);
        assert_eq!(fold_static_shapes(&mut m).unwrap(), 0);
    }
}
