//! Data-movement ops: every one computes an index map and copies with
//! [`Tensor::take`], so all dtypes share one implementation.

use super::infer::{self, InferCtx};
use super::util::{
    broadcast_shapes, norm_axes, norm_axis, split_at_axis, strided_offsets, to_dims, unravel,
};
use super::{EvalCtx, OpDef, op};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::ValueType;
use crate::shape::{Dim, Shape};
use crate::sym::Expr;
use crate::tensor::{Elem, Tensor, strides};

pub(super) fn ops() -> Vec<OpDef> {
    vec![
        op!(
            "Identity",
            |c| Ok(vec![c.input(0)?.clone()]),
            infer::same_as_input
        )
        .view(),
        op!("Reshape", eval_reshape, infer_reshape)
            .steered_by(&[1])
            .view(),
        op!("Flatten", eval_flatten, infer_flatten).view(),
        op!("Squeeze", eval_squeeze, infer_squeeze).view(),
        op!("Unsqueeze", eval_unsqueeze, infer_unsqueeze).view(),
        op!("Transpose", eval_transpose, infer_transpose),
        op!("Concat", eval_concat, infer_concat),
        op!("Split", eval_split, infer_split),
        op!("Slice", eval_slice, infer_slice).steered_by(&[1, 2, 3, 4]),
        op!("Gather", eval_gather, infer_gather),
        op!("GatherElements", eval_gather_elements, |c| {
            super::infer::by_evaluation(c, &[0, 1])
        }),
        op!("GatherND", eval_gather_nd, infer_gather_nd),
        op!(
            "ScatterElements",
            eval_scatter_elements,
            infer::same_as_input
        ),
        op!("Scatter", eval_scatter_elements, infer::same_as_input),
        op!("ScatterND", eval_scatter_nd, infer::same_as_input),
        op!("Expand", eval_expand, infer_expand).steered_by(&[1]),
        op!("Tile", eval_tile, infer_tile).steered_by(&[1]),
        op!("Pad", eval_pad, infer_pad).steered_by(&[1, 3]),
        op!("Shape", eval_shape, infer_shape),
        op!(
            "Size",
            |c| Ok(vec![Tensor::scalar(c.input(0)?.len() as i64)]),
            |_| Ok(vec![infer::known(Some(DType::I64), &[])])
        ),
        op!("DepthToSpace", eval_depth_to_space, |c| {
            super::infer::by_evaluation(c, &[0])
        }),
        op!("SpaceToDepth", eval_space_to_depth, |c| {
            super::infer::by_evaluation(c, &[0])
        }),
        op!("Compress", eval_compress),
        op!("NonZero", eval_nonzero, infer_nonzero),
        op!(
            "ReverseSequence",
            eval_reverse_sequence,
            infer::same_as_input
        ),
        op!("Trilu", eval_trilu, infer::same_as_input).steered_by(&[1]),
        op!("CenterCropPad", eval_center_crop_pad, |c| {
            super::infer::by_evaluation(c, &[0])
        })
        .steered_by(&[1]),
    ]
}

/// The output shape of `Reshape` (0 copies the input dim unless `allowzero`, -1 infers).
pub fn reshape_dims(input: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(spec.len());
    let mut infer_at = None;
    for (i, &s) in spec.iter().enumerate() {
        match s {
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                out.push(1);
            }
            -1 => bail!("Reshape shape {spec:?} has more than one -1"),
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| {
                Error::invalid(format!(
                    "Reshape shape {spec:?} copies dim {i} of a rank-{} input",
                    input.len()
                ))
            })?),
            s if s < 0 => bail!("Reshape shape {spec:?} has a negative dimension"),
            s => out.push(s as usize),
        }
    }
    let total: usize = input.iter().product();
    if let Some(i) = infer_at {
        let rest: usize = out.iter().product();
        if rest == 0 || !total.is_multiple_of(rest) {
            bail!("cannot reshape {input:?} into {spec:?}");
        }
        out[i] = total / rest;
    }
    if out.iter().product::<usize>() != total {
        bail!("cannot reshape {input:?} ({total} elements) into {spec:?}");
    }
    Ok(out)
}

fn eval_reshape(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let spec = c
        .ints_input(1)?
        .ok_or_else(|| Error::invalid("Reshape needs a shape"))?;
    let dims = reshape_dims(x.shape(), &spec, c.attrs().int("allowzero", 0)? != 0)?;
    Ok(vec![x.clone().reshaped(dims)])
}

fn infer_reshape(c: &InferCtx) -> Result<Vec<ValueType>> {
    let x = c.input(0)?;
    let allowzero = c.node.attrs.int("allowzero", 0)? != 0;
    let Some(spec) = c.ints(1) else {
        return Ok(vec![ValueType {
            dtype: x.dtype,
            shape: Shape::unknown(),
        }]);
    };
    let constant: Option<Vec<i64>> = spec.iter().map(Expr::as_const).collect();
    if let (Some(dims), Some(spec)) = (x.shape.concrete(), &constant) {
        let d = reshape_dims(&dims, spec, allowzero)?;
        return Ok(vec![infer::known(x.dtype, &d)]);
    }
    Ok(vec![ValueType {
        dtype: x.dtype,
        shape: Shape(Some(reshape_symbolic(x.shape.dims(), &spec, allowzero)?)),
    }])
}

/// [`reshape_dims`] where sizes are symbolic: 0 copies the input's dim,
/// and -1 is the input's element count over the others' product (an
/// exact quotient where the sizes are polynomials of each other).
fn reshape_symbolic(input: Option<&[Dim]>, spec: &[Expr], allowzero: bool) -> Result<Vec<Dim>> {
    let mut out: Vec<Option<Expr>> = Vec::with_capacity(spec.len());
    let mut infer_at = None;
    for (i, e) in spec.iter().enumerate() {
        out.push(match e.as_const() {
            Some(-1) if infer_at.is_none() => {
                infer_at = Some(i);
                Some(Expr::constant(1))
            }
            Some(-1) => bail!("Reshape shape has more than one -1"),
            Some(0) if !allowzero => input.and_then(|d| d.get(i)).and_then(Dim::expr),
            Some(s) if s < 0 => bail!("Reshape shape has a negative dimension {s}"),
            _ => Some(e.clone()),
        });
    }
    if let Some(i) = infer_at {
        let total = input.and_then(|d| Shape(Some(d.to_vec())).numel_expr());
        let rest: Option<Expr> = out
            .iter()
            .map(Option::as_ref)
            .collect::<Option<Vec<&Expr>>>()
            .map(Expr::product);
        out[i] = match (total, rest) {
            (Some(t), Some(r)) if r.as_const() != Some(0) => Some(t.floor_div(&r)),
            _ => None,
        };
    }
    Ok(out
        .into_iter()
        .map(|d| d.map_or(Dim::Unknown, Dim::of))
        .collect())
}

/// Inference by the op's own evaluation ([`infer::by_evaluation`] over
/// the `data` inputs) where sizes are known, else `symbolic`'s output
/// dims for output 0 with input 0's dtype (an op whose sizes are
/// symbolic, or whose shape input shape arithmetic computed).
fn evaluated_or_symbolic(
    c: &InferCtx,
    data: &[usize],
    symbolic: impl Fn(&InferCtx) -> Result<Option<Vec<Dim>>>,
) -> Result<Vec<ValueType>> {
    let evaluated = infer::by_evaluation(c, data)?;
    if !evaluated.is_empty() {
        return Ok(evaluated);
    }
    Ok(match symbolic(c)? {
        Some(dims) => vec![ValueType {
            dtype: c.dtype(0),
            shape: Shape(Some(dims)),
        }],
        None => Vec::new(),
    })
}

/// The integer elements of input `i` when they are all constants.
fn constant_ints(c: &InferCtx, i: usize) -> Option<Vec<i64>> {
    c.ints(i)?.iter().map(Expr::as_const).collect()
}

/// Whether optional input `i` is given.
fn given(c: &InferCtx, i: usize) -> bool {
    c.inputs.get(i).is_some_and(Option::is_some)
}

fn infer_slice(c: &InferCtx) -> Result<Vec<ValueType>> {
    evaluated_or_symbolic(c, &[0], |c| {
        let (Some(dims), Some(starts), Some(ends)) = (c.dims(0), c.ints(1), c.ints(2)) else {
            return Ok(None);
        };
        let axes = match constant_ints(c, 3) {
            Some(a) => norm_axes(&a, dims.len())?,
            None if given(c, 3) => return Ok(None),
            None => (0..starts.len()).collect(),
        };
        let steps = match constant_ints(c, 4) {
            Some(s) => s,
            None if given(c, 4) => return Ok(None),
            None => vec![1; starts.len()],
        };
        if [ends.len(), axes.len(), steps.len()] != [starts.len(); 3] {
            bail!("Slice starts, ends, axes and steps differ in length");
        }
        let mut out = dims.to_vec();
        for (k, &ax) in axes.iter().enumerate() {
            out[ax] = dims[ax]
                .expr()
                .and_then(|d| super::params::slice_len_symbolic(&starts[k], &ends[k], steps[k], &d))
                .map_or(Dim::Unknown, Dim::of);
        }
        Ok(Some(out))
    })
}

fn infer_expand(c: &InferCtx) -> Result<Vec<ValueType>> {
    evaluated_or_symbolic(c, &[0], |c| {
        let (Some(x), Some(target)) = (c.input(0)?.shape.dims(), c.ints(1)) else {
            return Ok(None);
        };
        let target = Shape(Some(target.into_iter().map(Dim::of).collect()));
        let dims = infer::broadcast_shape(&[&Shape(Some(x.to_vec())), &target])?;
        Ok(dims.0)
    })
}

fn infer_tile(c: &InferCtx) -> Result<Vec<ValueType>> {
    evaluated_or_symbolic(c, &[0], |c| {
        let (Some(x), Some(reps)) = (c.dims(0), c.ints(1)) else {
            return Ok(None);
        };
        if reps.len() != x.len() {
            bail!("Tile repeats do not match rank {}", x.len());
        }
        Ok(Some(
            x.iter()
                .zip(&reps)
                .map(|(d, r)| d.expr().map_or(Dim::Unknown, |d| Dim::of(d.mul(r))))
                .collect(),
        ))
    })
}

/// A size standing in for a symbolic dim where only parameters are read.
const PROBE: usize = 1 << 20;

fn infer_pad(c: &InferCtx) -> Result<Vec<ValueType>> {
    evaluated_or_symbolic(c, &[0, 2], |c| {
        let Some(x) = c.dims(0) else { return Ok(None) };
        if !given(c, 1) && !c.node.attrs.has("pads") {
            return Ok(None);
        }
        let probe: Vec<usize> = x.iter().map(|d| d.known().unwrap_or(PROBE)).collect();
        let ints = |i: usize| -> Result<Option<Vec<i64>>> {
            Ok(match i {
                1 if !given(c, 1) => c.node.attrs.opt_ints("pads")?.map(<[i64]>::to_vec),
                _ => constant_ints(c, i),
            })
        };
        if given(c, 1) && constant_ints(c, 1).is_none() {
            return Ok(None);
        }
        let view = super::params::PadView::of_node(&c.node.attrs, &probe, ints)?;
        Ok(Some(
            x.iter()
                .enumerate()
                .map(|(i, d)| {
                    d.expr().map_or(Dim::Unknown, |d| {
                        Dim::of(d.add(&Expr::constant(view.before[i] + view.after[i])))
                    })
                })
                .collect(),
        ))
    })
}

/// Split by constant sizes along an axis (the other dims may be
/// symbolic), or into equal parts of a symbolic axis that the parts
/// divide.
fn infer_split(c: &InferCtx) -> Result<Vec<ValueType>> {
    let evaluated = infer::by_evaluation(c, &[0])?;
    if !evaluated.is_empty() {
        return Ok(evaluated);
    }
    let Some(x) = c.dims(0) else {
        return Ok(Vec::new());
    };
    let axis = super::params::axis("Split", &c.node.attrs, x.len())?;
    let outs = c.node.outputs.len();
    let given_sizes = if given(c, 1) {
        match constant_ints(c, 1) {
            Some(s) => Some(s),
            None => return Ok(Vec::new()),
        }
    } else {
        c.node.attrs.opt_ints("split")?.map(<[i64]>::to_vec)
    };
    let sizes: Vec<Dim> = match given_sizes {
        Some(s) => s
            .iter()
            .map(|&v| usize::try_from(v).map_or(Dim::Unknown, Dim::Known))
            .collect(),
        None => {
            let parts = c
                .node
                .attrs
                .opt_int("num_outputs")?
                .map_or(outs, |k| k as usize);
            let whole = x[axis].expr();
            let part = whole
                .as_ref()
                .map(|d| d.floor_div(&Expr::constant(parts.max(1) as i64)))
                .filter(|q| Some(q.scale(parts as i64)) == whole);
            vec![part.map_or(Dim::Unknown, Dim::of); parts]
        }
    };
    Ok(sizes
        .into_iter()
        .map(|d| {
            let mut dims = x.to_vec();
            dims[axis] = d;
            ValueType {
                dtype: c.dtype(0),
                shape: Shape(Some(dims)),
            }
        })
        .collect())
}

fn flatten_axis(c_axis: i64, rank: usize) -> Result<usize> {
    if c_axis == rank as i64 {
        Ok(rank)
    } else {
        norm_axis(c_axis, rank)
    }
}

fn eval_flatten(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let axis = flatten_axis(c.attrs().int("axis", 1)?, x.rank())?;
    let outer: usize = x.shape()[..axis].iter().product();
    let inner: usize = x.shape()[axis..].iter().product();
    Ok(vec![x.clone().reshaped(vec![outer, inner])])
}

fn product_dim(dims: &[Dim]) -> Dim {
    Shape(Some(dims.to_vec()))
        .numel_expr()
        .map_or(Dim::Unknown, Dim::of)
}

fn infer_flatten(c: &InferCtx) -> Result<Vec<ValueType>> {
    let x = c.input(0)?;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![ValueType {
            dtype: x.dtype,
            shape: Shape(Some(vec![Dim::Unknown; 2])),
        }]);
    };
    let axis = flatten_axis(c.node.attrs.int("axis", 1)?, dims.len())?;
    Ok(vec![ValueType {
        dtype: x.dtype,
        shape: Shape(Some(vec![
            product_dim(&dims[..axis]),
            product_dim(&dims[axis..]),
        ])),
    }])
}

fn squeeze_axes(shape: &[usize], axes: Option<Vec<i64>>) -> Result<Vec<usize>> {
    match axes {
        Some(a) => {
            let a = norm_axes(&a, shape.len())?;
            if let Some(&bad) = a.iter().find(|&&i| shape[i] != 1) {
                bail!("cannot squeeze axis {bad} of size {}", shape[bad]);
            }
            Ok(a)
        }
        None => Ok((0..shape.len()).filter(|&i| shape[i] == 1).collect()),
    }
}

fn eval_squeeze(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let axes = squeeze_axes(x.shape(), c.ints_input(1)?)?;
    let dims = x
        .shape()
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .collect();
    Ok(vec![x.clone().reshaped(dims)])
}

fn infer_squeeze(c: &InferCtx) -> Result<Vec<ValueType>> {
    let x = c.input(0)?;
    let axes = match (c.inputs.get(1).and_then(Option::as_ref), c.constant(1)) {
        (Some(_), Some(t)) => Some(t.to_i64s()),
        (Some(_), None) => {
            return Ok(vec![ValueType {
                dtype: x.dtype,
                shape: Shape::unknown(),
            }]);
        }
        (None, _) => c.node.attrs.opt_ints("axes")?.map(<[i64]>::to_vec),
    };
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![ValueType {
            dtype: x.dtype,
            shape: Shape::unknown(),
        }]);
    };
    let drop: Vec<usize> = match axes {
        Some(a) => norm_axes(&a, dims.len())?,
        None if dims.iter().all(|d| d.known().is_some()) => (0..dims.len())
            .filter(|&i| dims[i] == Dim::Known(1))
            .collect(),
        None => {
            return Ok(vec![ValueType {
                dtype: x.dtype,
                shape: Shape::unknown(),
            }]);
        }
    };
    let out = dims
        .iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, d)| d.clone())
        .collect();
    Ok(vec![ValueType {
        dtype: x.dtype,
        shape: Shape(Some(out)),
    }])
}

fn unsqueeze_dims<D: Clone>(dims: &[D], axes: &[i64], one: D) -> Result<Vec<D>> {
    let rank = dims.len() + axes.len();
    let axes = norm_axes(axes, rank)?;
    let mut src = dims.iter();
    Ok((0..rank)
        .map(|i| {
            if axes.contains(&i) {
                one.clone()
            } else {
                src.next().expect("rank adds up").clone()
            }
        })
        .collect())
}

fn eval_unsqueeze(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let axes = c
        .ints_input(1)?
        .ok_or_else(|| Error::invalid("Unsqueeze needs axes"))?;
    Ok(vec![x.clone().reshaped(unsqueeze_dims(
        x.shape(),
        &axes,
        1,
    )?)])
}

fn infer_unsqueeze(c: &InferCtx) -> Result<Vec<ValueType>> {
    let x = c.input(0)?;
    let axes = match c.constant(1) {
        Some(t) => Some(t.to_i64s()),
        None => c.node.attrs.opt_ints("axes")?.map(<[i64]>::to_vec),
    };
    match (axes, x.shape.dims()) {
        (Some(a), Some(d)) => Ok(vec![ValueType {
            dtype: x.dtype,
            shape: Shape(Some(unsqueeze_dims(d, &a, Dim::Known(1))?)),
        }]),
        _ => Ok(vec![ValueType {
            dtype: x.dtype,
            shape: Shape::unknown(),
        }]),
    }
}

/// Transposes `x` by `perm`.
pub fn transpose(x: &Tensor, perm: &[usize]) -> Tensor {
    let st = strides(x.shape());
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let pst: Vec<isize> = perm.iter().map(|&p| st[p] as isize).collect();
    x.take(shape.clone(), &strided_offsets(&shape, &pst, 0))
}

fn eval_transpose(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let perm = super::params::transpose_perm(c.attrs(), x.rank())?;
    Ok(vec![transpose(x, &perm)])
}

fn infer_transpose(c: &InferCtx) -> Result<Vec<ValueType>> {
    let x = c.input(0)?;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![ValueType {
            dtype: x.dtype,
            shape: Shape::unknown(),
        }]);
    };
    let perm = super::params::transpose_perm(&c.node.attrs, dims.len())?;
    Ok(vec![ValueType {
        dtype: x.dtype,
        shape: Shape(Some(perm.iter().map(|&p| dims[p].clone()).collect())),
    }])
}

/// Concatenates tensors of one dtype along `axis`.
pub fn concat(parts: &[&Tensor], axis: usize) -> Result<Tensor> {
    let first = parts[0];
    let mut shape = first.shape().to_vec();
    shape[axis] = 0;
    for p in parts {
        if p.dtype() != first.dtype() || p.rank() != first.rank() {
            bail!(
                "Concat inputs differ in dtype or rank: {:?} {} vs {:?} {}",
                first.shape(),
                first.dtype(),
                p.shape(),
                p.dtype()
            );
        }
        for (i, (&a, &b)) in p.shape().iter().zip(first.shape()).enumerate() {
            if i != axis && a != b {
                bail!(
                    "Concat inputs {:?} and {:?} differ outside axis {axis}",
                    first.shape(),
                    p.shape()
                );
            }
        }
        shape[axis] += p.shape()[axis];
    }
    let outer: usize = shape[..axis].iter().product();
    let data = crate::map_data!(first.data(), _v => {
        let mut out = Vec::with_capacity(shape.iter().product());
        for o in 0..outer {
            for p in parts {
                let src = Elem::slice(p.data()).expect("dtype checked");
                let block: usize = p.shape()[axis..].iter().product();
                out.extend_from_slice(&src[o * block..(o + 1) * block]);
            }
        }
        out
    });
    Ok(Tensor::new(shape, data))
}

fn eval_concat(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let parts: Vec<&Tensor> = (0..c.num_inputs())
        .map(|i| c.input(i))
        .collect::<Result<_>>()?;
    let rank = parts
        .first()
        .ok_or_else(|| Error::invalid("Concat needs inputs"))?
        .rank();
    let axis = super::params::axis("Concat", c.attrs(), rank)?;
    Ok(vec![concat(&parts, axis)?])
}

fn infer_concat(c: &InferCtx) -> Result<Vec<ValueType>> {
    let first = c.input(0)?;
    let Some(rank) = first.shape.rank() else {
        return Ok(vec![ValueType {
            dtype: first.dtype,
            shape: Shape::unknown(),
        }]);
    };
    let axis = super::params::axis("Concat", &c.node.attrs, rank)?;
    let mut dims = vec![Dim::Unknown; rank];
    let mut total = Some(Expr::constant(0));
    for t in c.inputs.iter().flatten() {
        let Some(d) = t.shape.dims() else {
            return Ok(vec![ValueType {
                dtype: first.dtype,
                shape: Shape(Some(dims)),
            }]);
        };
        for i in 0..rank {
            if i == axis {
                total = total.zip(d[i].expr()).map(|(a, b)| a.add(&b));
            } else if dims[i] == Dim::Unknown
                || (dims[i].known().is_none() && d[i].known().is_some())
            {
                dims[i] = d[i].clone();
            }
        }
    }
    dims[axis] = total.map_or(Dim::Unknown, Dim::of);
    Ok(vec![ValueType {
        dtype: first.dtype,
        shape: Shape(Some(dims)),
    }])
}

/// Copies the sub-range `[start, start+len)` of `axis`.
pub fn narrow(x: &Tensor, axis: usize, start: usize, len: usize) -> Tensor {
    let mut shape = x.shape().to_vec();
    shape[axis] = len;
    let st: Vec<isize> = strides(x.shape()).into_iter().map(|s| s as isize).collect();
    x.take(
        shape.clone(),
        &strided_offsets(&shape, &st, start as isize * st[axis]),
    )
}

fn eval_split(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let axis = super::params::axis("Split", c.attrs(), x.rank())?;
    let n = x.shape()[axis];
    let outs = c.num_outputs();
    let sizes: Vec<usize> = match c.ints_input(1)? {
        Some(s) => s
            .iter()
            .map(|&v| {
                usize::try_from(v).map_err(|_| Error::invalid(format!("negative split size {v}")))
            })
            .collect::<Result<_>>()?,
        None => {
            let parts = c
                .attrs()
                .opt_int("num_outputs")?
                .map_or(outs, |k| k as usize);
            let chunk = n.div_ceil(parts.max(1));
            (0..parts)
                .map(|i| chunk.min(n.saturating_sub(i * chunk)))
                .collect()
        }
    };
    if sizes.iter().sum::<usize>() != n {
        bail!("split sizes {sizes:?} do not add up to the axis length {n}");
    }
    let mut start = 0;
    Ok(sizes
        .iter()
        .map(|&len| {
            let t = narrow(x, axis, start, len);
            start += len;
            t
        })
        .collect())
}

fn eval_slice(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let v = super::params::SliceView::of_node(x.shape(), |i| c.ints_input(i))?;
    Ok(vec![x.take(
        v.shape.clone(),
        &strided_offsets(&v.shape, &v.strides, v.base),
    )])
}

fn gather_indices(idx: &Tensor, n: usize) -> Result<Vec<usize>> {
    idx.to_i64s()
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + n as i64 } else { i };
            if j < 0 || j >= n as i64 {
                bail!("index {i} is out of bounds for an axis of size {n}");
            }
            Ok(j as usize)
        })
        .collect()
}

fn eval_gather(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, idx) = (c.input(0)?, c.input(1)?);
    let axis = super::params::axis("Gather", c.attrs(), x.rank())?;
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    let ids = gather_indices(idx, n)?;
    let mut offs = Vec::with_capacity(outer * ids.len() * inner);
    for o in 0..outer {
        for &i in &ids {
            offs.extend((0..inner).map(|k| (o * n + i) * inner + k));
        }
    }
    let mut shape = x.shape()[..axis].to_vec();
    shape.extend_from_slice(idx.shape());
    shape.extend_from_slice(&x.shape()[axis + 1..]);
    Ok(vec![x.take(shape, &offs)])
}

fn infer_gather(c: &InferCtx) -> Result<Vec<ValueType>> {
    let x = c.input(0)?;
    match (x.shape.dims(), c.dims(1)) {
        (Some(d), Some(i)) => {
            let axis = super::params::axis("Gather", &c.node.attrs, d.len())?;
            let mut out = d[..axis].to_vec();
            out.extend_from_slice(i);
            out.extend_from_slice(&d[axis + 1..]);
            Ok(vec![ValueType {
                dtype: x.dtype,
                shape: Shape(Some(out)),
            }])
        }
        _ => Ok(vec![ValueType {
            dtype: x.dtype,
            shape: Shape::unknown(),
        }]),
    }
}

fn eval_gather_elements(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, idx) = (c.input(0)?, c.input(1)?);
    let axis = super::params::axis("GatherElements", c.attrs(), x.rank())?;
    if idx.rank() != x.rank() {
        bail!(
            "GatherElements indices rank {} differs from data rank {}",
            idx.rank(),
            x.rank()
        );
    }
    let ids = gather_indices(idx, x.shape()[axis])?;
    let xs = strides(x.shape());
    let mut pos = vec![0; idx.rank()];
    let offs = (0..ids.len())
        .map(|k| {
            unravel(k, idx.shape(), &mut pos);
            pos[axis] = ids[k];
            pos.iter().zip(&xs).map(|(p, s)| p * s).sum()
        })
        .collect::<Vec<usize>>();
    Ok(vec![x.take(idx.shape().to_vec(), &offs)])
}

/// Resolves the `k`-th index tuple of a GatherND/ScatterND index tensor into
/// an element offset of `data` (before the trailing slice).
fn nd_offset(data: &[usize], tuple: &[i64], first_axis: usize) -> Result<usize> {
    let st = strides(data);
    let mut off = 0;
    for (j, &i) in tuple.iter().enumerate() {
        let n = data[first_axis + j] as i64;
        let v = if i < 0 { i + n } else { i };
        if v < 0 || v >= n {
            bail!("index {i} is out of bounds for an axis of size {n}");
        }
        off += v as usize * st[first_axis + j];
    }
    Ok(off)
}

/// `GatherND`: the index tuples' shape (all but the last index dim, whose
/// size, the tuple length `k`, must be known), then the data dims after
/// the batch dims and the `k` indexed ones.
fn infer_gather_nd(c: &InferCtx) -> Result<Vec<ValueType>> {
    let b = super::params::gather_nd_batch_dims(&c.node.attrs)?;
    let shape = match (c.dims(0), c.dims(1)) {
        (Some(data), Some([tuples @ .., Dim::Known(k)])) if b + k <= data.len() => {
            let mut dims = tuples.to_vec();
            dims.extend_from_slice(&data[b + k..]);
            Shape(Some(dims))
        }
        (Some(data), Some([.., Dim::Known(k)])) => bail!(
            "GatherND index depth {k} with {b} batch dims exceeds data rank {}",
            data.len()
        ),
        _ => Shape::unknown(),
    };
    Ok(vec![ValueType {
        dtype: c.dtype(0),
        shape,
    }])
}

fn eval_gather_nd(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, idx) = (c.input(0)?, c.input(1)?);
    let b = super::params::gather_nd_batch_dims(c.attrs())?;
    let ir = idx.rank();
    let k = *idx
        .shape()
        .last()
        .ok_or_else(|| Error::invalid("GatherND indices must have rank >= 1"))?;
    if b + k > x.rank() {
        bail!(
            "GatherND index depth {k} with {b} batch dims exceeds data rank {}",
            x.rank()
        );
    }
    let batch: usize = x.shape()[..b].iter().product();
    let slice: usize = x.shape()[b + k..].iter().product();
    let per_batch_data: usize = x.shape()[b..].iter().product();
    let tuples = idx.to_i64s();
    let n_tuples = tuples.len() / k.max(1);
    let per_batch_tuples = n_tuples.checked_div(batch).unwrap_or(0);
    let mut offs = Vec::with_capacity(n_tuples * slice);
    for t in 0..n_tuples {
        let bi = t / per_batch_tuples.max(1);
        let base =
            bi * per_batch_data + nd_offset(&x.shape()[b..], &tuples[t * k..(t + 1) * k], 0)?;
        offs.extend(base..base + slice);
    }
    let mut shape = idx.shape()[..ir - 1].to_vec();
    shape.extend_from_slice(&x.shape()[b + k..]);
    Ok(vec![x.take(shape, &offs)])
}

/// How a scatter combines an update with the existing value.
fn scatter_reduce(c: &EvalCtx) -> Result<fn(f64, f64) -> f64> {
    use super::params::ScatterReduction as R;
    Ok(match R::of(c.attrs())? {
        R::None => |_, u| u,
        R::Add => |a, u| a + u,
        R::Mul => |a, u| a * u,
        R::Max => f64::max,
        R::Min => f64::min,
    })
}

fn scatter_into(x: &Tensor, targets: &[usize], updates: &Tensor, f: fn(f64, f64) -> f64) -> Tensor {
    let mut out = x.to_f64s();
    let u = updates.to_f64s();
    for (i, &t) in targets.iter().enumerate() {
        out[t] = f(out[t], u[i]);
    }
    if x.dtype().is_float() || x.dtype() == DType::Bool {
        Tensor::from_f64s(x.dtype(), x.shape().to_vec(), out)
    } else {
        Tensor::from_i128s(
            x.dtype(),
            x.shape().to_vec(),
            out.into_iter().map(|v| v as i128),
        )
    }
}

fn eval_scatter_elements(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, idx, upd) = (c.input(0)?, c.input(1)?, c.input(2)?);
    let axis = super::params::axis("ScatterElements", c.attrs(), x.rank())?;
    let ids = gather_indices(idx, x.shape()[axis])?;
    let xs = strides(x.shape());
    let mut pos = vec![0; idx.rank()];
    let targets: Vec<usize> = (0..ids.len())
        .map(|k| {
            unravel(k, idx.shape(), &mut pos);
            pos[axis] = ids[k];
            pos.iter().zip(&xs).map(|(p, s)| p * s).sum()
        })
        .collect();
    Ok(vec![scatter_into(x, &targets, upd, scatter_reduce(c)?)])
}

fn eval_scatter_nd(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, idx, upd) = (c.input(0)?, c.input(1)?, c.input(2)?);
    let k = *idx
        .shape()
        .last()
        .ok_or_else(|| Error::invalid("ScatterND indices must have rank >= 1"))?;
    let slice: usize = x.shape()[k..].iter().product();
    let tuples = idx.to_i64s();
    let mut targets = Vec::new();
    for t in 0..tuples.len() / k.max(1) {
        let base = nd_offset(x.shape(), &tuples[t * k..(t + 1) * k], 0)?;
        targets.extend(base..base + slice);
    }
    if targets.len() != upd.len() {
        bail!(
            "ScatterND updates hold {} elements, the indices address {}",
            upd.len(),
            targets.len()
        );
    }
    Ok(vec![scatter_into(x, &targets, upd, scatter_reduce(c)?)])
}

/// Copies by index like [`Tensor::take`], with `None` positions set to `fill`.
pub fn take_or_fill(
    x: &Tensor,
    shape: Vec<usize>,
    offs: &[Option<usize>],
    fill: f64,
) -> Result<Tensor> {
    // Index x.len() points at the fill value appended after the data.
    let fill = Tensor::from_f64s(x.dtype(), vec![1], [fill]);
    let ext = concat(&[&x.clone().reshaped(vec![x.len()]), &fill], 0)?;
    let idx: Vec<usize> = offs.iter().map(|o| o.unwrap_or(x.len())).collect();
    Ok(ext.take(shape, &idx))
}

/// Broadcasts `x` to `shape` (bidirectionally, as `Expand` does).
pub fn expand_to(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let out = broadcast_shapes(&[x.shape(), shape])?;
    Ok(x.take(
        out.clone(),
        &super::util::broadcast_offsets(x.shape(), &out),
    ))
}

fn eval_expand(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let shape = to_dims(c.input(1)?, "Expand shape")?;
    Ok(vec![expand_to(c.input(0)?, &shape)?])
}

fn eval_tile(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let reps = to_dims(c.input(1)?, "Tile repeats")?;
    if reps.len() != x.rank() {
        bail!("Tile repeats {reps:?} do not match rank {}", x.rank());
    }
    let shape: Vec<usize> = x.shape().iter().zip(&reps).map(|(d, r)| d * r).collect();
    let xs = strides(x.shape());
    let mut pos = vec![0; shape.len()];
    let n: usize = shape.iter().product();
    let offs = (0..n)
        .map(|k| {
            unravel(k, &shape, &mut pos);
            pos.iter()
                .zip(x.shape())
                .zip(&xs)
                .map(|((p, d), s)| (p % d) * s)
                .sum()
        })
        .collect::<Vec<usize>>();
    Ok(vec![x.take(shape, &offs)])
}

fn eval_pad(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let params = super::params::Pad::of(c.attrs())?;
    let view = super::params::PadView::of_node(c.attrs(), x.shape(), |i| c.ints_input(i))?;
    let value = params.fill(c.opt_input(2).map(Some))?;
    let xs = strides(x.shape());
    let n: usize = view.shape.iter().product();
    let mut pos = vec![0; view.shape.len()];
    // Offsets into x, or None for a padded (constant) element.
    let mut offs = Vec::with_capacity(n);
    for k in 0..n {
        unravel(k, &view.shape, &mut pos);
        let off = pos
            .iter()
            .enumerate()
            .map(|(i, &o)| view.source(i, o).map(|q| q * xs[i]))
            .sum::<Option<usize>>();
        offs.push(off);
    }
    Ok(vec![take_or_fill(x, view.shape, &offs, value)?])
}

fn eval_shape(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let (s, e) = super::params::shape_range(c.attrs(), x.rank())?;
    let dims: Vec<i64> = x.shape()[s..e].iter().map(|&d| d as i64).collect();
    Ok(vec![Tensor::i64s(vec![dims.len()], dims)])
}

fn infer_shape(c: &InferCtx) -> Result<Vec<ValueType>> {
    let rank = c.input(0)?.shape.rank();
    let len = match rank {
        Some(r) => {
            let (s, e) = super::params::shape_range(&c.node.attrs, r)?;
            Dim::Known(e - s)
        }
        None => Dim::Unknown,
    };
    Ok(vec![ValueType::new(DType::I64, Shape(Some(vec![len])))])
}

fn eval_depth_to_space(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let blocks = super::params::Blocks::of(c.attrs())?;
    let b = blocks.blocksize;
    let [n, ch, h, w] = x.shape() else {
        bail!("DepthToSpace expects a 4-D input")
    };
    if ch % (b * b) != 0 {
        bail!("DepthToSpace channels {ch} are not divisible by blocksize² ({b}²)");
    }
    let oc = ch / (b * b);
    let (tmp, perm) = if !blocks.crd {
        (vec![*n, b, b, oc, *h, *w], [0, 3, 4, 1, 5, 2])
    } else {
        (vec![*n, oc, b, b, *h, *w], [0, 1, 4, 2, 5, 3])
    };
    let t = super::movement::transpose(&x.clone().reshaped(tmp), &perm);
    Ok(vec![t.reshaped(vec![*n, oc, h * b, w * b])])
}

fn eval_space_to_depth(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let blocks = super::params::Blocks::of(c.attrs())?;
    let b = blocks.blocksize;
    let [n, ch, h, w] = x.shape() else {
        bail!("SpaceToDepth expects a 4-D input")
    };
    if h % b != 0 || w % b != 0 {
        bail!("SpaceToDepth spatial dims {h}x{w} are not divisible by blocksize {b}");
    }
    let perm = if !blocks.crd {
        [0, 3, 5, 1, 2, 4]
    } else {
        [0, 1, 3, 5, 2, 4]
    };
    let t = transpose(
        &x.clone().reshaped(vec![*n, *ch, h / b, b, w / b, b]),
        &perm,
    );
    Ok(vec![t.reshaped(vec![*n, ch * b * b, h / b, w / b])])
}

fn eval_compress(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, cond) = (c.input(0)?, c.input(1)?.to_bools());
    match c.attrs().opt_int("axis")? {
        None => {
            let offs: Vec<usize> = (0..x.len())
                .filter(|&i| cond.get(i).copied().unwrap_or(false))
                .collect();
            Ok(vec![x.take(vec![offs.len()], &offs)])
        }
        Some(a) => {
            let axis = norm_axis(a, x.rank())?;
            let (outer, n, inner) = split_at_axis(x.shape(), axis);
            let keep: Vec<usize> = (0..n)
                .filter(|&i| cond.get(i).copied().unwrap_or(false))
                .collect();
            let mut offs = Vec::new();
            for o in 0..outer {
                for &k in &keep {
                    offs.extend((0..inner).map(|i| (o * n + k) * inner + i));
                }
            }
            let mut shape = x.shape().to_vec();
            shape[axis] = keep.len();
            Ok(vec![x.take(shape, &offs)])
        }
    }
}

/// `NonZero`: `[rank, n]` int64, where `n`, the count of non-zeros, is
/// up to the input's element count.
fn infer_nonzero(c: &InferCtx) -> Result<Vec<ValueType>> {
    let x = c.input(0)?;
    let shape = match x.shape.dims() {
        Some(dims) => {
            let most = x.shape.numel_expr();
            Shape(Some(vec![
                Dim::Known(dims.len()),
                most.map_or(Dim::Unknown, |m| c.counted(0, 1, m)),
            ]))
        }
        None => Shape::unknown(),
    };
    Ok(vec![ValueType {
        dtype: Some(DType::I64),
        shape,
    }])
}

fn eval_nonzero(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let nz: Vec<usize> = x
        .to_bools()
        .iter()
        .enumerate()
        .filter(|(_, b)| **b)
        .map(|(i, _)| i)
        .collect();
    let r = x.rank();
    let mut out = vec![0i64; r * nz.len()];
    let mut pos = vec![0; r];
    for (j, &i) in nz.iter().enumerate() {
        unravel(i, x.shape(), &mut pos);
        for d in 0..r {
            out[d * nz.len() + j] = pos[d] as i64;
        }
    }
    Ok(vec![Tensor::i64s(vec![r, nz.len()], out)])
}

fn eval_reverse_sequence(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, lens) = (c.input(0)?, c.input(1)?.to_i64s());
    let batch_axis = norm_axis(c.attrs().int("batch_axis", 1)?, x.rank())?;
    let time_axis = norm_axis(c.attrs().int("time_axis", 0)?, x.rank())?;
    let xs = strides(x.shape());
    let mut pos = vec![0; x.rank()];
    let offs = (0..x.len())
        .map(|k| {
            unravel(k, x.shape(), &mut pos);
            let len = lens[pos[batch_axis]] as usize;
            if pos[time_axis] < len {
                pos[time_axis] = len - 1 - pos[time_axis];
            }
            pos.iter().zip(&xs).map(|(p, s)| p * s).sum()
        })
        .collect::<Vec<usize>>();
    Ok(vec![x.take(x.shape().to_vec(), &offs)])
}

fn eval_trilu(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let k = c
        .opt_input(1)
        .map(Tensor::first_i64)
        .transpose()?
        .unwrap_or(0);
    let upper = super::params::trilu_upper(c.attrs())?;
    if x.rank() < 2 {
        bail!("Trilu expects rank >= 2");
    }
    let (h, w) = (x.shape()[x.rank() - 2], x.shape()[x.rank() - 1]);
    let offs: Vec<Option<usize>> = (0..x.len())
        .map(|i| {
            let (r, col) = (((i / w) % h) as i64, (i % w) as i64);
            let keep = if upper { col - r >= k } else { col - r <= k };
            keep.then_some(i)
        })
        .collect();
    Ok(vec![take_or_fill(x, x.shape().to_vec(), &offs, 0.0)?])
}

/// `CenterCropPad`'s output shape and, per axis, where the input's origin
/// lands in the output: negative where the axis is cropped (centred, the
/// extra element going to the end), positive where it is padded.
pub fn center_crop_pad_window(
    input: &[usize],
    target: &[usize],
    attrs: &crate::attr::Attrs,
) -> Result<(Vec<usize>, Vec<i64>)> {
    let axes = match attrs.opt_ints("axes")? {
        Some(a) => norm_axes(a, input.len())?,
        None => (0..input.len()).collect(),
    };
    if target.len() != axes.len() {
        bail!(
            "CenterCropPad has {} sizes for {} axes",
            target.len(),
            axes.len()
        );
    }
    let mut shape = input.to_vec();
    let mut begin = vec![0i64; input.len()];
    for (&ax, &t) in axes.iter().zip(target) {
        let d = input[ax];
        begin[ax] = if t < d {
            -(((d - t) / 2) as i64)
        } else {
            ((t - d) / 2) as i64
        };
        shape[ax] = t;
    }
    Ok((shape, begin))
}

fn eval_center_crop_pad(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let target = to_dims(c.input(1)?, "CenterCropPad shape")?;
    let (shape, begin) = center_crop_pad_window(x.shape(), &target, c.attrs())?;
    let xs = strides(x.shape());
    let mut pos = vec![0; x.rank()];
    let n: usize = shape.iter().product();
    let offs: Vec<Option<usize>> = (0..n)
        .map(|k| {
            unravel(k, &shape, &mut pos);
            let mut off = 0;
            for i in 0..x.rank() {
                let p = pos[i] as i64 - begin[i];
                if p < 0 || p >= x.shape()[i] as i64 {
                    return None;
                }
                off += p as usize * xs[i];
            }
            Some(off)
        })
        .collect();
    Ok(vec![take_or_fill(x, shape, &offs, 0.0)?])
}
