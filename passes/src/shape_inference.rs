//! Shape and type inference over a whole graph, with symbolic dims.
//!
//! Walks nodes in topological order and asks each op's registered `infer`
//! for its output types, merging them with what the model already declared:
//! a known dim is never replaced by a symbol or an unknown.

use wpc_ir::graph::ValueType;
use wpc_ir::ops::{self, InferCtx};
use wpc_ir::{Dim, Error, Model, Result, Shape};

/// Merges inferred type `new` into declared type `old`, keeping the more
/// precise information of each; contradictions between known sizes are errors.
fn merge(old: &ValueType, new: &ValueType) -> Result<ValueType> {
    let dtype = match (old.dtype, new.dtype) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::invalid(format!("declared as {a} but computes {b}")));
        }
        (a, b) => a.or(b),
    };
    let shape = match (old.shape.dims(), new.shape.dims()) {
        (None, _) => new.shape.clone(),
        (Some(_), None) => old.shape.clone(),
        (Some(a), Some(b)) if a.len() != b.len() => {
            return Err(Error::invalid(format!(
                "declared with shape {} but computes {}",
                old.shape, new.shape
            )));
        }
        (Some(a), Some(b)) => Shape(Some(
            a.iter()
                .zip(b)
                .map(|(x, y)| match (x, y) {
                    (Dim::Known(p), Dim::Known(q)) if p != q => Err(Error::invalid(format!(
                        "declared with shape {} but computes {}",
                        old.shape, new.shape
                    ))),
                    (Dim::Known(_), _) => Ok(x.clone()),
                    (_, Dim::Known(_)) => Ok(y.clone()),
                    (Dim::Symbol(_), _) => Ok(x.clone()),
                    _ => Ok(y.clone()),
                })
                .collect::<Result<_>>()?,
        )),
    };
    Ok(ValueType { dtype, shape })
}

/// Infers the type of every node output of the main graph. Returns how
/// many values gained information.
pub fn infer_shapes(model: &mut Model) -> Result<usize> {
    let opset = model.opset();
    let g = &mut model.graph;
    let mut improved = 0;
    for id in g.topo_order()? {
        let node = g.node(id);
        let Some(infer) = ops::lookup(&node.domain, &node.op).and_then(|d| d.infer) else {
            continue;
        };
        let inputs: Vec<Option<ValueType>> = node
            .inputs
            .iter()
            .map(|i| i.map(|v| g.value(v).ty.clone()))
            .collect();
        let consts = node
            .inputs
            .iter()
            .map(|i| i.and_then(|v| g.constants.get(&v)))
            .collect();
        let ctx = InferCtx {
            node,
            inputs,
            consts,
            opset,
        };
        let types = infer(&ctx).map_err(|e| e.within(node.context()))?;
        let outputs = node.outputs.clone();
        let context = node.context();
        for (slot, ty) in outputs.iter().zip(types) {
            let Some(v) = slot else { continue };
            let old = &g.value(*v).ty;
            let merged = merge(old, &ty).map_err(|e| {
                e.within(format!("output '{}'", g.value(*v).name))
                    .within(context.clone())
            })?;
            if merged != *old {
                improved += 1;
                g.value_mut(*v).ty = merged;
            }
        }
    }
    Ok(improved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::GraphBuilder;
    use wpc_ir::{DType, Tensor};

    #[test]
    fn propagates_symbolic_shapes_through_matmul_and_broadcast() {
        let mut b = GraphBuilder::new();
        let x = b.input(
            "x",
            DType::F32,
            vec![Dim::Symbol("batch".into()), Dim::Known(4)],
        );
        let w = b.constant("w", Tensor::from_vec(vec![4, 3], vec![0.5f32; 12]));
        let bias = b.constant("b", Tensor::from_vec(vec![3], vec![1.0f32; 3]));
        let y = b.node("MatMul", &[x, w]);
        let z = b.node("Add", &[y, bias]);
        let r = b.node("Relu", &[z]);
        let mut model = b.finish(&[r]);
        infer_shapes(&mut model).unwrap();
        let ty = &model.graph.value(r).ty;
        assert_eq!(ty.dtype, Some(DType::F32));
        assert_eq!(
            ty.shape,
            Shape(Some(vec![Dim::Symbol("batch".into()), Dim::Known(3)]))
        );
    }

    #[test]
    fn infers_conv_pool_and_gemm_with_a_symbolic_batch() {
        use wpc_ir::{Attr, Attrs};
        let mut b = GraphBuilder::new();
        let batch = Dim::Symbol("N".into());
        let x = b.input(
            "x",
            DType::F32,
            vec![batch.clone(), Dim::Known(3), Dim::Known(8), Dim::Known(8)],
        );
        let w = b.constant("w", Tensor::from_vec(vec![4, 3, 3, 3], vec![0.1f32; 108]));
        let conv_attrs = Attrs(vec![
            ("pads".into(), Attr::Ints(vec![1; 4])),
            ("strides".into(), Attr::Ints(vec![2, 2])),
        ]);
        let y = b.node_with("Conv", &[x, w], conv_attrs);
        let pool_attrs = Attrs(vec![("kernel_shape".into(), Attr::Ints(vec![2, 2]))]);
        let p = b.node_with("MaxPool", &[y], pool_attrs);
        let g = b.node("GlobalAveragePool", &[p]);
        let f = b.node("Flatten", &[g]);
        let wg = b.constant("wg", Tensor::from_vec(vec![5, 4], vec![0.1f32; 20]));
        let gemm_attrs = Attrs(vec![("transB".into(), Attr::Int(1))]);
        let out = b.node_with("Gemm", &[f, wg], gemm_attrs);
        let mut model = b.finish(&[out]);
        infer_shapes(&mut model).unwrap();
        let shape = |v| model.graph.value(v).ty.shape.clone();
        assert_eq!(
            shape(y),
            Shape(Some(vec![
                batch.clone(),
                Dim::Known(4),
                Dim::Known(4),
                Dim::Known(4)
            ]))
        );
        assert_eq!(
            shape(p),
            Shape(Some(vec![
                batch.clone(),
                Dim::Known(4),
                Dim::Known(3),
                Dim::Known(3)
            ]))
        );
        assert_eq!(shape(out), Shape(Some(vec![batch, Dim::Known(5)])));
    }

    #[test]
    fn infers_parameterised_ops_by_evaluating_them() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, vec![Dim::Known(2), Dim::Known(6)]);
        let starts = b.constant("starts", Tensor::i64s(vec![1], vec![1]));
        let ends = b.constant("ends", Tensor::i64s(vec![1], vec![5]));
        let axes = b.constant("axes", Tensor::i64s(vec![1], vec![1]));
        let sliced = b.node("Slice", &[x, starts, ends, axes]);
        let reps = b.constant("reps", Tensor::i64s(vec![2], vec![3, 1]));
        let tiled = b.node("Tile", &[sliced, reps]);
        // A symbolic input leaves the result unknown rather than guessed.
        let y = b.input(
            "y",
            DType::F32,
            vec![Dim::Symbol("n".into()), Dim::Known(6)],
        );
        let y_sliced = b.node("Slice", &[y, starts, ends, axes]);
        let mut model = b.finish(&[tiled, y_sliced]);
        infer_shapes(&mut model).unwrap();
        assert_eq!(model.graph.value(sliced).ty.shape, Shape::known(&[2, 4]));
        assert_eq!(model.graph.value(tiled).ty.shape, Shape::known(&[6, 4]));
        assert_eq!(model.graph.value(y_sliced).ty.shape, Shape::unknown());
    }

    #[test]
    fn uses_constant_inputs_for_reshape_and_reports_contradictions() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, vec![Dim::Known(2), Dim::Known(6)]);
        let s = b.constant("s", Tensor::i64s(vec![2], vec![3, -1]));
        let y = b.node("Reshape", &[x, s]);
        let mut model = b.finish(&[y]);
        infer_shapes(&mut model).unwrap();
        assert_eq!(model.graph.value(y).ty.shape, Shape::known(&[3, 4]));
        // A declaration that contradicts the computation is an error naming the node.
        model.graph.value_mut(y).ty.shape = Shape::known(&[4, 3]);
        let err = infer_shapes(&mut model).unwrap_err();
        assert!(err.to_string().contains("Reshape"), "{err}");
    }
}
