//! Folds shape computations out of the graph.
//!
//! `Shape` and `Size` of a fully known shape become constants: once
//! symbolic dims are bound (a bundle compiled for concrete sizes), shape
//! computations are constants, and folding them lets constant folding
//! erase whole shape subgraphs, which backends without 64-bit integers
//! (WGSL) could not run anyway.
//!
//! Where sizes stay symbolic, shape arithmetic computes expressions over
//! the symbols ([`wpc_ir::ops::symbolic`]). A value it computes that only
//! steers other ops (a `Reshape`'s shape, an `Expand`'s, a `Range`'s
//! limit: [`wpc_ir::ops::OpDef::steering`]) is moved into
//! [`wpc_ir::Graph::sizes`] and its producer removed, so no kernel
//! computes it and dead-code elimination erases the rest of its chain;
//! backends read it as they read a constant, with sizes the runtime knows.

use wpc_ir::ops::symbolic::SymValue;
use wpc_ir::{Model, Result, Tensor, ValueId};

use std::collections::HashMap;

use crate::shape_inference::infer_symbolic;

/// Returns how many nodes were folded.
pub fn fold_static_shapes(model: &mut Model) -> Result<usize> {
    // One inference serves both: folding a concrete `Shape` touches no
    // value the symbolic fold acts on (its producer is gone).
    let (_, values) = infer_symbolic(model)?;
    let folded = fold_concrete(model)?;
    Ok(folded + fold_symbolic(model, &values)?)
}

/// Makes the integers shape arithmetic computed (`values`) constants, and
/// moves symbolic values that only steer other ops into
/// [`wpc_ir::Graph::sizes`]; returns how many producers it removed.
fn fold_symbolic(model: &mut Model, values: &HashMap<ValueId, SymValue>) -> Result<usize> {
    let g = &mut model.graph;
    let steers_only = |g: &wpc_ir::Graph, v: ValueId| {
        !g.outputs.contains(&v)
            && g.consumers(v).iter().all(|&n| {
                let node = g.node(n);
                node.inputs.iter().enumerate().all(|(i, x)| {
                    *x != Some(v) || wpc_ir::ops::is_steering_input(&node.domain, &node.op, i)
                })
            })
    };
    let mut folded = 0;
    // Integers computed from a symbolic shape (its fixed dims) are
    // constants, whoever reads them.
    let mut constants: Vec<ValueId> = values
        .iter()
        .filter(|(v, s)| !s.is_symbolic() && g.producer(**v).is_some() && !g.outputs.contains(v))
        .map(|(v, _)| *v)
        .collect();
    constants.sort();
    for v in constants {
        let Some(n) = g.producer(v) else { continue };
        let node = g.node(n);
        if node.outputs.len() != 1 {
            continue;
        }
        let (Some(ints), Some(dtype)) = (values[&v].constants(), g.value(v).ty.dtype) else {
            continue;
        };
        let shape = values[&v].shape.clone();
        let t = Tensor::i64s(shape, ints).cast(dtype);
        g.remove_node(n);
        g.value_mut(v).ty = wpc_ir::ValueType::of(&t);
        g.constants.insert(v, t);
        folded += 1;
    }
    let mut chosen: Vec<ValueId> = values
        .iter()
        .filter(|(v, s)| s.is_symbolic() && g.producer(**v).is_some() && steers_only(g, **v))
        .map(|(v, _)| *v)
        .collect();
    chosen.sort();
    for v in chosen {
        let Some(n) = g.producer(v) else { continue };
        // Only a producer all of whose outputs go (a Split's parts).
        let symbolic = |o: &ValueId| values.get(o).is_some_and(SymValue::is_symbolic);
        if !g
            .node(n)
            .outputs
            .iter()
            .flatten()
            .all(|o| symbolic(o) && steers_only(g, *o))
        {
            continue;
        }
        for o in g.node(n).outputs.clone().into_iter().flatten() {
            g.sizes.insert(o, values[&o].clone());
        }
        g.remove_node(n);
        folded += 1;
    }
    Ok(folded)
}

/// Folds `Shape` and `Size` of fully known shapes into constants.
fn fold_concrete(model: &mut Model) -> Result<usize> {
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
