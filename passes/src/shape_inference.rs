//! Shape and type inference over a whole graph, with symbolic dims.
//!
//! Walks nodes in topological order and asks each op's registered `infer`
//! for its output types, merging them with what the model already declared:
//! a known dim is never replaced by a symbol or an unknown.

use std::collections::HashMap;

use wpc_ir::graph::ValueType;
use wpc_ir::ops::symbolic::{self, Operand, SymValue};
use wpc_ir::ops::{self, InferCtx};
use wpc_ir::{Dim, Error, Model, Result, Shape, Tensor, ValueId};

/// Merges inferred type `new` into declared type `old`, keeping the more
/// precise information of each (a known size over a symbolic one, a
/// computed size over a declared name); contradictions between known
/// sizes are errors.
fn merge(old: &ValueType, new: &ValueType, counted: &dyn Fn(&str) -> bool) -> Result<ValueType> {
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
                    // A size only the data decides: whatever the model
                    // declares was true of some data, not of all.
                    (_, Dim::Symbol(s)) if counted(s) => Ok(y.clone()),
                    (Dim::Known(p), Dim::Known(q)) if p != q => Err(Error::invalid(format!(
                        "declared with shape {} but computes {}",
                        old.shape, new.shape
                    ))),
                    (Dim::Known(_), _) => Ok(x.clone()),
                    (_, Dim::Known(_)) => Ok(y.clone()),
                    // What inference computes says how a size relates to
                    // the inputs' symbols; a declared name does not.
                    (_, Dim::Unknown) => Ok(x.clone()),
                    _ => Ok(y.clone()),
                })
                .collect::<Result<_>>()?,
        )),
    };
    Ok(ValueType { dtype, shape })
}

/// Infers the type of every node output of the main graph. Returns how
/// many values gained information. A size only the data decides (see
/// [`InferCtx::counted`]) joins the model's `dim_ranges` (from 0 to the
/// most it can be) and `counted_dims` (with the value it is a dim of).
pub fn infer_shapes(model: &mut Model) -> Result<usize> {
    Ok(infer_symbolic(model)?.0)
}

/// [`infer_shapes`], also returning the values shape arithmetic computes
/// from symbolic sizes (see [`wpc_ir::ops::symbolic`]).
pub fn infer_symbolic(model: &mut Model) -> Result<(usize, HashMap<ValueId, SymValue>)> {
    let opset = model.opset();
    let mut ranges = model.dim_ranges.clone();
    let mut counted_dims = model.counted_dims.clone();
    let g = &mut model.graph;
    // Sizes an earlier pass took out of the graph are known as they were.
    let mut values: HashMap<ValueId, SymValue> =
        g.sizes.iter().map(|(v, s)| (*v, s.clone())).collect();
    let mut improved = 0;
    for id in g.topo_order()? {
        let node = g.node(id);
        let def = ops::lookup(&node.domain, &node.op);
        let inputs: Vec<Option<ValueType>> = node
            .inputs
            .iter()
            .map(|i| i.map(|v| g.value(v).ty.clone()))
            .collect();
        let consts: Vec<Option<&Tensor>> = node
            .inputs
            .iter()
            .map(|i| i.and_then(|v| g.constants.get(&v)))
            .collect();
        let sym: Vec<Option<&SymValue>> = node
            .inputs
            .iter()
            .map(|i| i.and_then(|v| values.get(&v)))
            .collect();
        let operands: Vec<Operand> = (0..node.inputs.len())
            .map(|i| Operand {
                ty: inputs[i].as_ref(),
                constant: consts[i],
                value: sym[i],
            })
            .collect();
        let range = |s: &str| wpc_ir::graph::dim_range(&ranges, s);
        let computed = symbolic::propagate(node, &operands, opset);
        let Some(infer) = def.and_then(|d| d.infer) else {
            record(&mut values, &node.outputs, computed, &range);
            continue;
        };
        let ctx = InferCtx {
            node,
            output_names: node
                .outputs
                .iter()
                .map(|o| o.map(|v| g.value(v).name.clone()).unwrap_or_default())
                .collect(),
            inputs,
            consts,
            values: sym,
            opset,
            counted: Default::default(),
        };
        let types = infer(&ctx).map_err(|e| e.within(node.context()))?;
        let types: Vec<ValueType> = types.into_iter().map(|t| simplified(t, &range)).collect();
        let outputs = node.outputs.clone();
        let context = node.context();
        let output_names = ctx.output_names.clone();
        // Each count's most, where the input dims' ranges bound it (else
        // any size, as for an unbounded input dim).
        let counted: Vec<(String, usize, Option<usize>)> = (ctx.counted.into_inner().into_iter())
            .map(|(name, output, most)| {
                let hi = (most.bounds(&range))
                    .and_then(|(_, hi)| usize::try_from(hi).ok())
                    .filter(|&hi| hi < i64::MAX as usize);
                (name, output, hi)
            })
            .collect();
        for (name, output, hi) in counted {
            if let Some(hi) = hi {
                ranges.insert(name.clone(), (0, hi));
            }
            counted_dims.insert(name, output_names[output].clone());
        }
        let is_counted = |s: &str| counted_dims.contains_key(s);
        for (slot, ty) in outputs.iter().zip(types) {
            let Some(v) = slot else { continue };
            let old = &g.value(*v).ty;
            let merged = merge(old, &ty, &is_counted).map_err(|e| {
                e.within(format!("output '{}'", g.value(*v).name))
                    .within(context.clone())
            })?;
            if merged != *old {
                improved += 1;
                g.value_mut(*v).ty = merged;
            }
        }
        let range = |s: &str| wpc_ir::graph::dim_range(&ranges, s);
        record(&mut values, &outputs, computed, &range);
    }
    model.dim_ranges = ranges;
    model.counted_dims = counted_dims;
    Ok((improved, values))
}

/// Keeps the symbolic values computed for `outputs`, simplified by the
/// symbols' ranges.
fn record(
    values: &mut HashMap<ValueId, SymValue>,
    outputs: &[Option<ValueId>],
    computed: Vec<Option<SymValue>>,
    range: &dyn Fn(&str) -> Option<(i64, i64)>,
) {
    for (slot, v) in outputs.iter().zip(computed) {
        if let (Some(slot), Some(mut v)) = (slot, v) {
            v.elems = v.elems.iter().map(|e| e.simplify(range)).collect();
            values.insert(*slot, v);
        }
    }
}

/// `ty` with every computed dim simplified by the symbols' ranges.
fn simplified(ty: ValueType, range: &dyn Fn(&str) -> Option<(i64, i64)>) -> ValueType {
    let shape = Shape(ty.shape.0.map(|dims| {
        dims.into_iter()
            .map(|d| match d {
                Dim::Expr(e) => Dim::of(e.simplify(range)),
                d => d,
            })
            .collect()
    }));
    ValueType { shape, ..ty }
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
    fn integer_convolutions_give_int32_of_the_convolution_shape() {
        use wpc_ir::{Attr, Attrs};
        let mut b = GraphBuilder::new();
        let batch = Dim::Symbol("N".into());
        let x = b.input(
            "x",
            DType::U8,
            vec![batch.clone(), Dim::Known(2), Dim::Known(5), Dim::Known(5)],
        );
        let w = b.constant(
            "w",
            Tensor::from_f64s(DType::I8, vec![3, 2, 3, 3], [1.0; 54]),
        );
        let attrs = Attrs(vec![("pads".into(), Attr::Ints(vec![1; 4]))]);
        let y = b.node_with("ConvInteger", &[x, w], attrs);
        let mut model = b.finish(&[y]);
        infer_shapes(&mut model).unwrap();
        let ty = &model.graph.value(y).ty;
        assert_eq!(ty.dtype, Some(DType::I32));
        assert_eq!(
            ty.shape,
            Shape(Some(vec![
                batch,
                Dim::Known(3),
                Dim::Known(5),
                Dim::Known(5)
            ]))
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
        // A symbolic dim the slice does not touch stays.
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
        assert_eq!(
            model.graph.value(y_sliced).ty.shape,
            Shape(Some(vec![Dim::Symbol("n".into()), Dim::Known(4)]))
        );
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

    fn sym(s: &str) -> Dim {
        Dim::Symbol(s.into())
    }

    fn i64s(b: &mut GraphBuilder, name: &str, v: &[i64]) -> ValueId {
        b.constant(name, Tensor::i64s(vec![v.len()], v.to_vec()))
    }

    fn attrs(pairs: &[(&str, wpc_ir::Attr)]) -> wpc_ir::Attrs {
        let mut a = wpc_ir::Attrs::default();
        for (k, v) in pairs {
            a.insert(*k, v.clone());
        }
        a
    }

    /// `Gather(Shape(x), axis)` unsqueezed to a 1-element vector, as
    /// torch writes a size it concatenates into a shape.
    fn size_of(b: &mut GraphBuilder, x: ValueId, axis: i64) -> ValueId {
        let shape = b.node("Shape", &[x]);
        let i = b.constant(&format!("axis{axis}"), Tensor::scalar(axis));
        let d = b.node_with(
            "Gather",
            &[shape, i],
            attrs(&[("axis", wpc_ir::Attr::Int(0))]),
        );
        let zero = i64s(b, &format!("unsq{axis}"), &[0]);
        b.node("Unsqueeze", &[d, zero])
    }

    #[test]
    fn torch_style_shape_arithmetic_keeps_symbolic_sizes() {
        let mut b = GraphBuilder::new();
        let x = b.input(
            "x",
            DType::F32,
            vec![sym("batch"), sym("seq"), Dim::Known(64)],
        );
        let (bs, sq) = (size_of(&mut b, x, 0), size_of(&mut b, x, 1));
        let heads = i64s(&mut b, "heads", &[4, 16]);
        let split = b.node_with(
            "Concat",
            &[bs, sq, heads],
            attrs(&[("axis", wpc_ir::Attr::Int(0))]),
        );
        let h = b.node("Reshape", &[x, split]);
        let perm = attrs(&[("perm", wpc_ir::Attr::Ints(vec![0, 2, 1, 3]))]);
        let t = b.node_with("Transpose", &[h], perm.clone());
        let back = b.node_with("Transpose", &[t], perm);
        let minus_one = i64s(&mut b, "minus_one", &[-1]);
        let merge = b.node_with(
            "Concat",
            &[bs, sq, minus_one],
            attrs(&[("axis", wpc_ir::Attr::Int(0))]),
        );
        let merged = b.node("Reshape", &[back, merge]);
        // Position ids: a [1, 512] buffer sliced to the sequence.
        let pos = b.constant("pos", Tensor::i64s(vec![1, 512], (0..512).collect()));
        let (zero, one) = (i64s(&mut b, "zero", &[0]), i64s(&mut b, "one", &[1]));
        let ids = b.node("Slice", &[pos, zero, sq, one]);
        // A mask of ones of x's leading shape, and a range over the sequence.
        let shape = b.node("Shape", &[x]);
        let two = i64s(&mut b, "two", &[2]);
        let lead = b.node("Slice", &[shape, zero, two]);
        let ones = b.node("ConstantOfShape", &[lead]);
        let seq = b.node("Squeeze", &[sq, zero]);
        let (start, step) = (
            b.constant("start", Tensor::scalar(0i64)),
            b.constant("step", Tensor::scalar(1i64)),
        );
        let range = b.node("Range", &[start, seq, step]);
        let mut model = b.finish(&[merged, ids, ones, range]);
        infer_shapes(&mut model).unwrap();
        let shape_of = |m: &Model, v: ValueId| m.graph.value(v).ty.shape.to_string();
        assert_eq!(shape_of(&model, h), "[batch, seq, 4, 16]");
        assert_eq!(shape_of(&model, t), "[batch, 4, seq, 16]");
        assert_eq!(
            shape_of(&model, merged),
            "[batch, seq, 64]",
            "-1 is 64 exactly"
        );
        assert_eq!(
            shape_of(&model, ids),
            "[1, min(512, seq)]",
            "seq may exceed the buffer"
        );
        assert_eq!(shape_of(&model, ones), "[batch, seq]");
        assert_eq!(shape_of(&model, range), "[seq]");
        // Bounded to the buffer, the slice is the sequence.
        model.dim_ranges.insert("seq".into(), (1, 512));
        infer_shapes(&mut model).unwrap();
        assert_eq!(shape_of(&model, ids), "[1, seq]");
    }

    #[test]
    fn windows_over_symbolic_spatial_sizes() {
        let mut b = GraphBuilder::new();
        let x = b.input(
            "x",
            DType::F32,
            vec![sym("n"), Dim::Known(3), Dim::Known(32), sym("w")],
        );
        let w = b.constant("w", Tensor::from_vec(vec![8, 3, 3, 3], vec![0.1f32; 216]));
        let conv = b.node_with(
            "Conv",
            &[x, w],
            attrs(&[
                ("strides", wpc_ir::Attr::Ints(vec![2, 2])),
                ("pads", wpc_ir::Attr::Ints(vec![1, 1, 1, 1])),
            ]),
        );
        let same = b.node_with(
            "MaxPool",
            &[conv],
            attrs(&[
                ("kernel_shape", wpc_ir::Attr::Ints(vec![3, 3])),
                ("strides", wpc_ir::Attr::Ints(vec![2, 2])),
                ("auto_pad", wpc_ir::Attr::String("SAME_UPPER".into())),
            ]),
        );
        let pads = i64s(&mut b, "pads", &[0, 0, 0, 2, 0, 0, 0, 1]);
        let padded = b.node("Pad", &[same, pads]);
        let mut model = b.finish(&[padded]);
        infer_shapes(&mut model).unwrap();
        let shape = |v: ValueId| model.graph.value(v).ty.shape.to_string();
        assert_eq!(shape(conv), "[n, 8, 16, floor((w - 1) / 2) + 1]");
        assert_eq!(
            shape(same),
            "[n, 8, 8, floor((floor((w - 1) / 2) + 2) / 2)]"
        );
        assert_eq!(
            shape(padded),
            "[n, 8, 8, floor((floor((w - 1) / 2) + 2) / 2) + 3]"
        );
        // The expressions are the sizes the interpreter computes.
        let dims = model.graph.value(padded).ty.shape.exprs().unwrap();
        for width in [1usize, 2, 7, 64, 225] {
            let input = Tensor::from_vec(vec![1, 3, 32, width], vec![0.5f32; 96 * width]);
            let feeds = HashMap::from([("x".to_string(), input)]);
            let out = wpc_ir::interp::run_model(&model, &feeds).unwrap();
            let want: Vec<i64> = out[0].1.shape().iter().map(|&d| d as i64).collect();
            let got: Vec<i64> = dims
                .iter()
                .map(|e| {
                    e.eval(&|s| Some(if s == "w" { width as i64 } else { 1 }))
                        .unwrap()
                })
                .collect();
            assert_eq!(got, want, "width {width}");
        }
    }
}
