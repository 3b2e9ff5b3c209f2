//! Reductions over axes (`ReduceSum`, `ReduceMean`, …) and `ArgMax`/`ArgMin`.

use super::infer::InferCtx;
use super::util::{broadcast_offsets, keep_dims, nan_max, nan_min, split_at_axis};
use super::{EvalCtx, OpDef, op};
use crate::dtype::DType;
use crate::error::Result;
use crate::graph::ValueType;
use crate::shape::{Dim, Shape};
use crate::tensor::Tensor;

pub(super) fn ops() -> Vec<OpDef> {
    let mut v: Vec<OpDef> = REDUCERS
        .iter()
        .map(|r| OpDef {
            name: r.0,
            domain: "",
            eval: eval_reduce,
            infer: Some(infer_reduce),
            // The axes (an input since opset 18, 13 for ReduceSum).
            steering: &[1],
            class: super::OpClass::Opaque,
        })
        .collect();
    v.push(op!("ArgMax", |c| eval_arg(c, |a, b| a > b), infer_arg));
    v.push(op!("ArgMin", |c| eval_arg(c, |a, b| a < b), infer_arg));
    v
}

/// How a reduction combines elements: `(name, init, map, combine, finish(acc, n))`.
type Reducer = (
    &'static str,
    f64,
    fn(f64) -> f64,
    fn(f64, f64) -> f64,
    fn(f64, usize) -> f64,
);

const REDUCERS: [Reducer; 10] = [
    ("ReduceSum", 0.0, |x| x, |a, b| a + b, |a, _| a),
    ("ReduceMean", 0.0, |x| x, |a, b| a + b, |a, n| a / n as f64),
    ("ReduceMax", f64::NEG_INFINITY, |x| x, nan_max, |a, _| a),
    ("ReduceMin", f64::INFINITY, |x| x, nan_min, |a, _| a),
    ("ReduceProd", 1.0, |x| x, |a, b| a * b, |a, _| a),
    ("ReduceL1", 0.0, f64::abs, |a, b| a + b, |a, _| a),
    ("ReduceL2", 0.0, |x| x * x, |a, b| a + b, |a, _| a.sqrt()),
    ("ReduceLogSum", 0.0, |x| x, |a, b| a + b, |a, _| a.ln()),
    (
        "ReduceLogSumExp",
        0.0,
        f64::exp,
        |a, b| a + b,
        |a, _| a.ln(),
    ),
    ("ReduceSumSquare", 0.0, |x| x * x, |a, b| a + b, |a, _| a),
];

fn eval_reduce(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let r = REDUCERS
        .iter()
        .find(|r| r.0 == c.node.op)
        .expect("registered reducer");
    let p = super::params::Reduce::of(c.attrs())?;
    let keepdims = p.keepdims;
    let Some(axes) = p.axes(c.ints_input(1)?, x.rank())? else {
        return Ok(vec![x.clone()]);
    };
    let kept = keep_dims(x.shape(), &axes);
    let n_out: usize = kept.iter().product();
    let count = if n_out == 0 {
        0
    } else {
        x.len() / n_out.max(1)
    };
    // Over bool, max starts at false and min at true (not at ∓inf, which is true).
    let init = match (x.dtype(), r.0) {
        (DType::Bool, "ReduceMax") => 0.0,
        (DType::Bool, "ReduceMin") => 1.0,
        _ => r.1,
    };
    let mut acc = vec![init; n_out];
    let offs = broadcast_offsets(&kept, x.shape());
    let xs = x.to_f64s();
    // LogSumExp subtracts the max first so large inputs do not overflow.
    let shift = if r.0 == "ReduceLogSumExp" {
        let mut m = vec![f64::NEG_INFINITY; n_out];
        for (i, &o) in offs.iter().enumerate() {
            m[o] = m[o].max(xs[i]);
        }
        m.iter_mut()
            .filter(|v| !v.is_finite())
            .for_each(|v| *v = 0.0);
        m
    } else {
        vec![0.0; n_out]
    };
    for (i, &o) in offs.iter().enumerate() {
        acc[o] = (r.3)(acc[o], (r.2)(xs[i] - shift[o]));
    }
    let vals: Vec<f64> = acc
        .iter()
        .zip(&shift)
        .map(|(&a, &s)| (r.4)(a, count) + s)
        .collect();
    let shape = if keepdims {
        kept
    } else {
        x.shape()
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, &d)| d)
            .collect()
    };
    let out = if x.dtype().is_float() || x.dtype() == DType::Bool {
        Tensor::from_f64s(x.dtype(), shape, vals)
    } else {
        Tensor::from_i128s(x.dtype(), shape, vals.into_iter().map(|v| v as i128))
    };
    Ok(vec![out])
}

fn infer_reduce(c: &InferCtx) -> Result<Vec<ValueType>> {
    let x = c.input(0)?;
    let p = super::params::Reduce::of(&c.node.attrs)?;
    let keepdims = p.keepdims;
    let axes = match c.inputs.get(1).and_then(Option::as_ref) {
        Some(_) => match c.constant(1) {
            Some(t) => Some(t.to_i64s()),
            None => {
                return Ok(vec![ValueType {
                    dtype: x.dtype,
                    shape: Shape::unknown(),
                }]);
            }
        },
        None => super::params::ints_input(&c.node.op, &c.node.attrs, 1, None)?,
    };
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![ValueType {
            dtype: x.dtype,
            shape: Shape::unknown(),
        }]);
    };
    let Some(axes) = p.axes(axes, dims.len())? else {
        return Ok(vec![x.clone()]);
    };
    let shape: Vec<Dim> = dims
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keepdims) {
            (true, true) => Some(Dim::Known(1)),
            (true, false) => None,
            (false, _) => Some(d.clone()),
        })
        .collect();
    Ok(vec![ValueType {
        dtype: x.dtype,
        shape: Shape(Some(shape)),
    }])
}

fn eval_arg(c: &EvalCtx, better: fn(f64, f64) -> bool) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let p = super::params::ArgReduce::of(c.attrs())?;
    let (axis, keepdims, last) = (p.axis(x.rank())?, p.keepdims, p.select_last_index);
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    if n == 0 {
        bail!("cannot take {} over an empty axis", c.node.op);
    }
    let xs = x.to_f64s();
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let mut best = 0;
            for k in 1..n {
                let (v, b) = (xs[(o * n + k) * inner + i], xs[(o * n + best) * inner + i]);
                if better(v, b) || (last && v == b) {
                    best = k;
                }
            }
            out.push(best as i64);
        }
    }
    let mut shape = x.shape().to_vec();
    if keepdims {
        shape[axis] = 1;
    } else {
        shape.remove(axis);
    }
    Ok(vec![Tensor::i64s(shape, out)])
}

fn infer_arg(c: &InferCtx) -> Result<Vec<ValueType>> {
    let Some(dims) = c.dims(0) else {
        return Ok(vec![ValueType {
            dtype: Some(DType::I64),
            shape: Shape::unknown(),
        }]);
    };
    let p = super::params::ArgReduce::of(&c.node.attrs)?;
    let axis = p.axis(dims.len())?;
    let mut d = dims.to_vec();
    if p.keepdims {
        d[axis] = Dim::Known(1);
    } else {
        d.remove(axis);
    }
    Ok(vec![ValueType::new(DType::I64, Shape(Some(d)))])
}
