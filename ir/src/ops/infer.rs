//! Shape and type inference context, and the rules many ops share.

use std::cell::RefCell;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::{Node, ValueType};
use crate::shape::{Dim, Shape};
use crate::sym::Expr;
use crate::tensor::Tensor;

use super::symbolic::SymValue;

/// What an op's `infer` sees: input types and, where an input is a
/// constant, its value (shape inputs of `Reshape`, axes, …); where shape
/// arithmetic computed an input from symbolic sizes, its elements as
/// expressions (`values`, see [`super::symbolic`]).
pub struct InferCtx<'a> {
    pub node: &'a Node,
    /// The names of the node's outputs (empty where one is left out).
    pub output_names: Vec<String>,
    pub inputs: Vec<Option<ValueType>>,
    pub consts: Vec<Option<&'a Tensor>>,
    pub values: Vec<Option<&'a SymValue>>,
    pub opset: u32,
    /// The sizes only the data decides that the op named with
    /// [`InferCtx::counted`]: each symbol, the output it is a dim of and
    /// the most it can be.
    pub counted: RefCell<Vec<(String, usize, Expr)>>,
}

impl InferCtx<'_> {
    /// The type of input `i`.
    pub fn input(&self, i: usize) -> Result<&ValueType> {
        self.inputs
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::invalid(format!("required input {i} is missing")))
    }

    /// The dims of input `i`, when its rank is known.
    pub fn dims(&self, i: usize) -> Option<&[Dim]> {
        self.inputs.get(i)?.as_ref()?.shape.dims()
    }

    /// The dtype of input `i`, when known.
    pub fn dtype(&self, i: usize) -> Option<DType> {
        self.inputs.get(i)?.as_ref()?.dtype
    }

    /// The value of input `i`, when it is a constant.
    pub fn constant(&self, i: usize) -> Option<&Tensor> {
        self.consts.get(i).copied().flatten()
    }

    /// The elements of integer input `i` as expressions: a constant's, or
    /// those shape arithmetic computed from symbolic sizes.
    pub fn ints(&self, i: usize) -> Option<Vec<Expr>> {
        if let Some(v) = self.values.get(i).copied().flatten() {
            return Some(v.elems.clone());
        }
        let t = self.constant(i)?;
        t.dtype()
            .is_int()
            .then(|| t.to_i64s().into_iter().map(Expr::constant).collect())
    }

    /// A size of output `output` that only the data decides (NonZero's
    /// count of non-zeros): a symbol of its own, named after the output
    /// and its axis (`indices.1`), that runs from 0 to `most`. Kernels
    /// write the output at `most` and the actual size where runtimes read
    /// it (see ARCHITECTURE.md, data-dependent shapes).
    pub fn counted(&self, output: usize, axis: usize, most: Expr) -> Dim {
        let name = match self.output_names.get(output).filter(|n| !n.is_empty()) {
            Some(n) => format!("{n}.{axis}"),
            None => format!("{}.{output}.{axis}", self.node.name),
        };
        self.counted.borrow_mut().push((name.clone(), output, most));
        Dim::Symbol(name)
    }

    /// Whether input `i` has symbolic elements (not a constant).
    pub fn is_symbolic(&self, i: usize) -> bool {
        self.values.get(i).copied().flatten().is_some()
    }
}

/// Output 0 has input 0's type (unary element-wise ops).
pub fn same_as_input(ctx: &InferCtx) -> Result<Vec<ValueType>> {
    Ok(vec![ctx.input(0)?.clone()])
}

/// Broadcast of two symbolic dims; `Unknown` when it cannot be decided statically.
pub fn broadcast_dim(a: &Dim, b: &Dim) -> Result<Dim> {
    Ok(match (a, b) {
        (Dim::Known(1), d) | (d, Dim::Known(1)) => d.clone(),
        (Dim::Known(x), Dim::Known(y)) if x != y => {
            return Err(Error::invalid(format!(
                "dimensions {x} and {y} cannot be broadcast"
            )));
        }
        (x, y) if x == y && *x != Dim::Unknown => x.clone(),
        (Dim::Known(x), _) | (_, Dim::Known(x)) => Dim::Known(*x),
        _ => Dim::Unknown,
    })
}

/// Numpy broadcast of symbolic shapes.
pub fn broadcast_shape(shapes: &[&Shape]) -> Result<Shape> {
    let mut out: Vec<Dim> = Vec::new();
    for s in shapes {
        let Some(dims) = s.dims() else {
            return Ok(Shape::unknown());
        };
        if dims.len() > out.len() {
            let mut padded = vec![Dim::Known(1); dims.len() - out.len()];
            padded.append(&mut out);
            out = padded;
        }
        let off = out.len() - dims.len();
        for (i, d) in dims.iter().enumerate() {
            out[off + i] = broadcast_dim(&out[off + i], d)?;
        }
    }
    Ok(Shape(Some(out)))
}

fn broadcast_inputs(ctx: &InferCtx) -> Result<Shape> {
    let shapes: Vec<&Shape> = ctx.inputs.iter().flatten().map(|t| &t.shape).collect();
    broadcast_shape(&shapes)
}

/// Broadcasting op whose output has the first input's dtype.
pub fn broadcast(ctx: &InferCtx) -> Result<Vec<ValueType>> {
    Ok(vec![ValueType {
        dtype: ctx.dtype(0),
        shape: broadcast_inputs(ctx)?,
    }])
}

/// Broadcasting op producing bool (comparisons, logic).
pub fn broadcast_bool(ctx: &InferCtx) -> Result<Vec<ValueType>> {
    Ok(vec![ValueType::new(DType::Bool, broadcast_inputs(ctx)?)])
}

/// Output 0 is input 0's shape with dtype `dt` (IsNaN, Cast to a known type…).
pub fn shape_with_dtype(ctx: &InferCtx, dt: DType) -> Result<Vec<ValueType>> {
    Ok(vec![ValueType::new(dt, ctx.input(0)?.shape.clone())])
}

/// A fully known output shape.
pub fn known(dtype: Option<DType>, dims: &[usize]) -> ValueType {
    ValueType {
        dtype,
        shape: Shape::known(dims),
    }
}

/// Largest data input (in elements) [`by_evaluation`] will materialise.
const EVAL_LIMIT: usize = 1 << 22;

/// Inference for ops whose output shapes depend only on the shapes of their
/// data inputs and the values of their parameter inputs (`Slice` starts,
/// `Expand` shape, `Pad` pads, …): when every parameter input is a constant
/// and every data input (those in `data`) has a concrete shape, evaluate the
/// op itself on zeros of those shapes. This reuses the op's one definition
/// instead of restating its shape arithmetic. Otherwise outputs stay unknown
/// (an op with symbolic sizes needs a rule of its own, or [`by_probing`]).
/// (The interpreter's shape checks still reject invalid parameters at run time.)
pub fn by_evaluation(ctx: &InferCtx, data: &[usize]) -> Result<Vec<ValueType>> {
    Ok(evaluate_on_zeros(ctx, data, &[], &[]).unwrap_or_default())
}

/// [`by_evaluation`] for ops each of whose output dims is a constant or
/// one of its data inputs' dims as it is (recurrent layers: the sequence
/// length and the batch pass through, the hidden size is a constant).
/// Each distinct symbolic size is probed at two values, from sets that
/// step by different amounts (so no size plus an offset passes for
/// another in both): an output dim that follows one of them in both
/// evaluations is that size, one that stays put is a constant. Any other
/// output dim, which no op this is used for computes, leaves every output
/// unknown.
pub fn by_probing(ctx: &InferCtx, data: &[usize]) -> Result<Vec<ValueType>> {
    // The distinct symbolic sizes of the data inputs.
    let mut sizes: Vec<Expr> = Vec::new();
    for &i in data {
        for d in ctx.dims(i).into_iter().flatten() {
            match d {
                Dim::Known(_) => {}
                Dim::Unknown => return Ok(Vec::new()),
                d => {
                    let e = d
                        .expr()
                        .ok_or_else(|| Error::invalid("a dim without a size"))?;
                    if !sizes.contains(&e) {
                        sizes.push(e);
                    }
                }
            }
        }
    }
    if sizes.is_empty() {
        return by_evaluation(ctx, data);
    }
    let probes: [Vec<usize>; 2] = [0, 1].map(|k| {
        (0..sizes.len())
            .map(|j| PROBES[k].0 + PROBES[k].1 * j)
            .collect()
    });
    let (Some(a), Some(b)) = (
        evaluate_on_zeros(ctx, data, &sizes, &probes[0]),
        evaluate_on_zeros(ctx, data, &sizes, &probes[1]),
    ) else {
        return Ok(Vec::new());
    };
    let types: Vec<ValueType> = a
        .into_iter()
        .zip(b)
        .map(|(x, y)| {
            let dims = match (x.shape.dims(), y.shape.dims()) {
                (Some(dx), Some(dy)) if dx.len() == dy.len() => Some(
                    dx.iter()
                        .zip(dy)
                        .map(|(p, q)| match (p.known(), q.known()) {
                            (Some(p), Some(q)) if p == q => Dim::Known(p),
                            (Some(p), Some(q)) => (0..sizes.len())
                                .find(|&j| probes[0][j] == p && probes[1][j] == q)
                                .map_or(Dim::Unknown, |j| Dim::of(sizes[j].clone())),
                            _ => Dim::Unknown,
                        })
                        .collect(),
                ),
                _ => None,
            };
            ValueType {
                dtype: x.dtype,
                shape: dims.map_or_else(Shape::unknown, |d| Shape(Some(d))),
            }
        })
        .collect();
    let resolved = types
        .iter()
        .all(|t| t.shape.dims().is_some_and(|d| !d.contains(&Dim::Unknown)));
    Ok(if resolved { types } else { Vec::new() })
}

/// The first probe value and the step between sizes of each of
/// [`by_probing`]'s two evaluations: unlikely to be a model's own sizes,
/// and stepping differently, so a size plus an offset cannot match
/// another size in both.
const PROBES: [(usize, usize); 2] = [(37, 10), (41, 14)];

/// The output types of the node evaluated on zeros of its data inputs'
/// shapes, each symbolic size of `sizes` taken as the matching `probes`
/// value; `None` where an input is missing or too large, or the op fails.
fn evaluate_on_zeros(
    ctx: &InferCtx,
    data: &[usize],
    sizes: &[Expr],
    probes: &[usize],
) -> Option<Vec<ValueType>> {
    let mut zeros: Vec<Option<Tensor>> = Vec::with_capacity(ctx.inputs.len());
    for (i, ty) in ctx.inputs.iter().enumerate() {
        let z = match (ty, data.contains(&i)) {
            (None, _) => None,
            (Some(_), false) => Some(ctx.constant(i)?.clone()),
            (Some(t), true) => {
                let dims = t
                    .shape
                    .dims()?
                    .iter()
                    .map(|d| match d.known() {
                        Some(n) => Some(n),
                        None => {
                            let e = d.expr()?;
                            Some(probes[sizes.iter().position(|s| *s == e)?])
                        }
                    })
                    .collect::<Option<Vec<usize>>>()?;
                if dims.iter().product::<usize>() > EVAL_LIMIT {
                    return None;
                }
                Some(Tensor::zeros(t.dtype?, dims))
            }
        };
        zeros.push(z);
    }
    // Zeros may be invalid where real data is not (an index, a divisor):
    // then the shapes stay unknown and running the model reports any error.
    let outputs = crate::interp::eval_node(
        ctx.node,
        zeros.iter().map(Option::as_ref).collect(),
        ctx.opset,
    )
    .ok()?;
    Some(outputs.iter().map(ValueType::of).collect())
}
