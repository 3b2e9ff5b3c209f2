//! Ops that make tensors (`Constant`, `Range`, `OneHot`, …), order them
//! (`TopK`, `CumSum`), and the training-time losses and `Dropout`.

use super::infer::{self, InferCtx};
use super::params::LossReduction;
use super::util::{norm_axis, split_at_axis, to_dims};
use super::{EvalCtx, OpDef, op};
use crate::attr::Attr;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::ValueType;
use crate::shape::{Dim, Shape};
use crate::sym::Expr;
use crate::tensor::Tensor;

pub(super) fn ops() -> Vec<OpDef> {
    vec![
        op!("Constant", |c| Ok(vec![constant_value(c.node)?]), |c| Ok(
            vec![ValueType::of(&constant_value(c.node)?)]
        )),
        op!(
            "ConstantOfShape",
            eval_constant_of_shape,
            infer_constant_of_shape
        )
        .steered_by(&[0]),
        op!("Range", eval_range, infer_range).steered_by(&[0, 1, 2]),
        op!("OneHot", eval_one_hot, |c| super::infer::by_evaluation(
            c,
            &[0]
        ))
        .steered_by(&[1]),
        op!("EyeLike", eval_eye_like, |c| infer::shape_with_dtype(
            c,
            eye_dtype(&c.node.attrs, c.dtype(0))?
        )),
        op!("TopK", eval_topk, |c| super::infer::by_evaluation(c, &[0])).steered_by(&[1]),
        op!("Unique", eval_unique),
        // The thresholds and the per-class limit are compiled into the
        // kernels (exporters write them as constants).
        op!("NonMaxSuppression", eval_nms, infer_nms).steered_by(&[2, 3, 4]),
        op!(
            "CumSum",
            |c| eval_cumulative(c, 0.0, |a, b| a + b),
            infer::same_as_input
        )
        .steered_by(&[1]),
        op!(
            "CumProd",
            |c| eval_cumulative(c, 1.0, |a, b| a * b),
            infer::same_as_input
        )
        .steered_by(&[1]),
        op!("Dropout", eval_dropout, |c| super::infer::by_evaluation(
            c,
            &[0]
        )),
        op!("NegativeLogLikelihoodLoss", eval_nll_loss),
        op!("SoftmaxCrossEntropyLoss", eval_softmax_ce_loss),
    ]
}

/// The value of a `Constant` node, from whichever attribute holds it.
pub fn constant_value(node: &crate::graph::Node) -> Result<Tensor> {
    let (name, attr) = node
        .attrs
        .0
        .first()
        .ok_or_else(|| Error::invalid("Constant has no value attribute"))?;
    Ok(match (name.as_str(), attr) {
        ("value", Attr::Tensor(t)) => t.clone(),
        ("value_float", Attr::Float(f)) => Tensor::scalar(*f),
        ("value_floats", Attr::Floats(v)) => Tensor::from_vec(vec![v.len()], v.clone()),
        ("value_int", Attr::Int(i)) => Tensor::scalar(*i),
        ("value_ints", Attr::Ints(v)) => Tensor::i64s(vec![v.len()], v.clone()),
        ("value_string" | "value_strings", _) => unsupported!("string constants are not supported"),
        (name, _) => bail!("Constant attribute '{name}' is not a value"),
    })
}

fn fill_value(c_attrs: &crate::attr::Attrs) -> Result<Tensor> {
    Ok(match c_attrs.opt_tensor("value")? {
        Some(t) if t.len() == 1 => t.clone(),
        Some(_) => bail!("ConstantOfShape value must hold one element"),
        None => Tensor::scalar(0.0f32),
    })
}

fn eval_constant_of_shape(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let shape = to_dims(c.input(0)?, "ConstantOfShape shape")?;
    let v = fill_value(c.attrs())?;
    let n = shape.iter().product::<usize>();
    Ok(vec![v.reshaped(vec![1]).take(shape, &vec![0; n])])
}

fn infer_constant_of_shape(c: &InferCtx) -> Result<Vec<ValueType>> {
    let dtype = Some(fill_value(&c.node.attrs)?.dtype());
    match c.constant(0) {
        Some(t) => Ok(vec![infer::known(
            dtype,
            &to_dims(t, "ConstantOfShape shape")?,
        )]),
        // A shape computed from symbolic sizes.
        None if c.is_symbolic(0) => Ok(vec![ValueType {
            dtype,
            shape: Shape(
                c.ints(0)
                    .map(|d| d.into_iter().map(crate::shape::Dim::of).collect()),
            ),
        }]),
        None => Ok(vec![ValueType {
            dtype,
            shape: Shape(
                c.dims(0)
                    .and_then(|d| d[0].known())
                    .map(|r| vec![crate::shape::Dim::Unknown; r]),
            ),
        }]),
    }
}

/// `Range`'s length where its integer limit (or start) is symbolic:
/// `max(ceil((limit - start) / delta), 0)` for a constant delta.
fn infer_range(c: &InferCtx) -> Result<Vec<ValueType>> {
    let evaluated = super::infer::by_evaluation(c, &[])?;
    if !evaluated.is_empty() || !(0..3).any(|i| c.is_symbolic(i)) {
        return Ok(evaluated);
    }
    let one = |i: usize| c.ints(i).and_then(|v| v.first().cloned());
    let (Some(start), Some(limit), Some(delta)) = (one(0), one(1), one(2)) else {
        return Ok(Vec::new());
    };
    let len = match delta.as_const() {
        Some(d) if d > 0 => limit
            .sub(&start)
            .add(&Expr::constant(d - 1))
            .floor_div(&Expr::constant(d)),
        Some(d) if d < 0 => start
            .sub(&limit)
            .add(&Expr::constant(-d - 1))
            .floor_div(&Expr::constant(-d)),
        _ => return Ok(Vec::new()),
    };
    Ok(vec![ValueType {
        dtype: c.dtype(0),
        shape: Shape(Some(vec![crate::shape::Dim::of(
            len.max_of(&Expr::constant(0)),
        )])),
    }])
}

fn eval_range(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (s, l, d) = (c.input(0)?, c.input(1)?, c.input(2)?);
    let dt = s.dtype();
    if dt.is_float() {
        let (s, l, d) = (s.first_f64()?, l.first_f64()?, d.first_f64()?);
        if d == 0.0 {
            bail!("Range delta cannot be 0");
        }
        let n = ((l - s) / d).ceil().max(0.0) as usize;
        return Ok(vec![Tensor::from_f64s(
            dt,
            vec![n],
            (0..n).map(|i| s + i as f64 * d),
        )]);
    }
    let (s, l, d) = (
        i128::from(s.first_i64()?),
        i128::from(l.first_i64()?),
        i128::from(d.first_i64()?),
    );
    if d == 0 {
        bail!("Range delta cannot be 0");
    }
    let n = ((l - s) as f64 / d as f64).ceil().max(0.0) as usize;
    Ok(vec![Tensor::from_i128s(
        dt,
        vec![n],
        (0..n).map(|i| s + i as i128 * d),
    )])
}

fn eval_one_hot(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (idx, depth, values) = (c.input(0)?, c.input(1)?, c.input(2)?);
    let depth = depth.first_f64()? as i64;
    if depth <= 0 || values.len() != 2 {
        bail!("OneHot needs a positive depth and two values");
    }
    let axis = super::params::axis("OneHot", c.attrs(), idx.rank() + 1)?;
    let mut shape = idx.shape().to_vec();
    shape.insert(axis, depth as usize);
    let (outer, _, inner) = split_at_axis(&shape, axis);
    let ids = idx.to_f64s();
    let d = depth as usize;
    let offs: Vec<usize> = (0..outer * d * inner)
        .map(|k| {
            let (o, j, i) = (k / (d * inner), (k / inner) % d, k % inner);
            let mut v = ids[o * inner + i] as i64;
            if v < 0 {
                v += depth;
            }
            usize::from(v == j as i64)
        })
        .collect();
    Ok(vec![values.take(shape, &offs)])
}

fn eye_dtype(a: &crate::attr::Attrs, input: Option<DType>) -> Result<DType> {
    match a.opt_int("dtype")? {
        Some(code) => DType::from_onnx(code as i32).ok_or_else(|| {
            Error::unsupported(format!(
                "EyeLike dtype {} is not supported",
                DType::onnx_code_name(code as i32)
            ))
        }),
        None => input.ok_or_else(|| Error::invalid("EyeLike input type is unknown")),
    }
}

fn eval_eye_like(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let [h, w] = x.shape() else {
        bail!("EyeLike expects a 2-D input")
    };
    let k = super::params::eye_like_diagonal(c.attrs())?;
    let dt = eye_dtype(c.attrs(), Some(x.dtype()))?;
    let v = (0..h * w).map(|i| f64::from(u8::from((i % w) as i64 - (i / w) as i64 == k)));
    Ok(vec![Tensor::from_f64s(dt, vec![*h, *w], v)])
}

fn eval_topk(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let k = c.input(1)?.first_i64()?;
    let axis = super::params::axis("TopK", c.attrs(), x.rank())?;
    let largest = super::params::TopK::of(c.attrs())?.largest;
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    if k < 0 || k as usize > n {
        bail!("TopK k={k} is out of range for an axis of size {n}");
    }
    let k = k as usize;
    let xs = x.to_f64s();
    let mut offs = Vec::with_capacity(outer * k * inner);
    let mut idx = vec![0i64; outer * k * inner];
    for o in 0..outer {
        for i in 0..inner {
            let mut order: Vec<usize> = (0..n).collect();
            // Ties keep the lower index first, as the spec requires.
            order.sort_by(|&a, &b| {
                let (va, vb) = (xs[(o * n + a) * inner + i], xs[(o * n + b) * inner + i]);
                let ord = va.partial_cmp(&vb).unwrap_or(std::cmp::Ordering::Equal);
                (if largest { ord.reverse() } else { ord }).then(a.cmp(&b))
            });
            for (j, &src) in order[..k].iter().enumerate() {
                idx[(o * k + j) * inner + i] = src as i64;
            }
        }
    }
    for o in 0..outer {
        for j in 0..k {
            for i in 0..inner {
                offs.push((o * n + idx[(o * k + j) * inner + i] as usize) * inner + i);
            }
        }
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = k;
    Ok(vec![x.take(shape.clone(), &offs), Tensor::i64s(shape, idx)])
}

fn eval_cumulative(c: &EvalCtx, init: f64, f: fn(f64, f64) -> f64) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let axis = norm_axis(c.input(1)?.first_i64()?, x.rank())?;
    let super::params::Cumulative { exclusive, reverse } =
        super::params::Cumulative::of(c.attrs())?;
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    let xs = x.to_f64s();
    let mut y = vec![0.0; xs.len()];
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = init;
            for step in 0..n {
                let j = if reverse { n - 1 - step } else { step };
                let at = (o * n + j) * inner + i;
                if exclusive {
                    y[at] = acc;
                    acc = f(acc, xs[at]);
                } else {
                    acc = f(acc, xs[at]);
                    y[at] = acc;
                }
            }
        }
    }
    Ok(vec![if x.dtype().is_float() {
        Tensor::from_f64s(x.dtype(), x.shape().to_vec(), y)
    } else {
        Tensor::from_i128s(
            x.dtype(),
            x.shape().to_vec(),
            y.into_iter().map(|v| v as i128),
        )
    }])
}

fn eval_dropout(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let training = c
        .opt_input(2)
        .is_some_and(|t| t.to_bools().first().copied().unwrap_or(false));
    let ratio = match c.opt_input(1) {
        Some(t) => t.first_f64()?,
        None => f64::from(c.attrs().float("ratio", 0.5)?),
    };
    if training && ratio > 0.0 {
        unsupported!(
            "Dropout in training mode is random and not supported by the reference interpreter"
        );
    }
    let mut out = vec![x.clone()];
    if c.wants_output(1) {
        out.push(Tensor::from_vec(x.shape().to_vec(), vec![true; x.len()]));
    }
    Ok(out)
}

/// NLL loss over (N, C, d…) log-probabilities; returns the reduced loss and
/// the per-element losses.
fn nll(
    logp: &[f64],
    shape: &[usize],
    target: &[i64],
    weight: Option<&[f64]>,
    ignore: Option<i64>,
    reduction: LossReduction,
) -> Result<Vec<f64>> {
    let (n, ch) = (shape[0], shape[1]);
    let inner: usize = shape[2..].iter().product();
    let mut losses = vec![0.0; n * inner];
    let mut wsum = 0.0;
    for b in 0..n {
        for i in 0..inner {
            let t = target[b * inner + i];
            if Some(t) == ignore {
                continue;
            }
            if t < 0 || t as usize >= ch {
                bail!("target class {t} is out of range for {ch} classes");
            }
            let w = weight.map_or(1.0, |w| w[t as usize]);
            losses[b * inner + i] = -logp[(b * ch + t as usize) * inner + i] * w;
            wsum += w;
        }
    }
    Ok(match reduction {
        LossReduction::None => losses,
        LossReduction::Sum => vec![losses.iter().sum()],
        LossReduction::Mean => vec![if wsum == 0.0 {
            0.0
        } else {
            losses.iter().sum::<f64>() / wsum
        }],
    })
}

/// The NLL loss of node `c` over log-probabilities `logp` shaped like input 0,
/// with the node's target, weights, `ignore_index` and `reduction`.
fn nll_loss(c: &EvalCtx, logp: &[f64]) -> Result<Tensor> {
    let (x, t) = (c.input(0)?, c.input(1)?);
    let super::params::Loss {
        reduction,
        ignore_index: ignore,
    } = super::params::Loss::of(c.attrs())?;
    let w = c.opt_input(2).map(Tensor::to_f64s);
    let inner: usize = x.shape().get(2..).map_or(0, |s| s.iter().product());
    if x.rank() < 2 || t.len() != x.shape()[0] * inner {
        bail!(
            "target of shape {:?} does not match scores of shape {:?}",
            t.shape(),
            x.shape()
        );
    }
    if w.as_ref().is_some_and(|w| w.len() != x.shape()[1]) {
        bail!(
            "weight has {} entries for {} classes",
            w.as_ref().map_or(0, Vec::len),
            x.shape()[1]
        );
    }
    let v = nll(
        logp,
        x.shape(),
        &t.to_i64s(),
        w.as_deref(),
        ignore,
        reduction,
    )?;
    let shape = if reduction == LossReduction::None {
        t.shape().to_vec()
    } else {
        vec![]
    };
    Ok(Tensor::from_f64s(x.dtype(), shape, v))
}

fn eval_nll_loss(c: &EvalCtx) -> Result<Vec<Tensor>> {
    Ok(vec![nll_loss(c, &c.input(0)?.to_f64s())?])
}

fn eval_softmax_ce_loss(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    if x.rank() < 2 {
        bail!(
            "SoftmaxCrossEntropyLoss expects scores of rank >= 2, got {:?}",
            x.shape()
        );
    }
    let (n, ch) = (x.shape()[0], x.shape()[1]);
    let inner: usize = x.shape()[2..].iter().product();
    let mut logp = x.to_f64s();
    for b in 0..n {
        for i in 0..inner {
            let at = |k: usize| (b * ch + k) * inner + i;
            let max = (0..ch)
                .map(|k| logp[at(k)])
                .fold(f64::NEG_INFINITY, f64::max);
            let lse = (0..ch).map(|k| (logp[at(k)] - max).exp()).sum::<f64>().ln() + max;
            (0..ch).for_each(|k| logp[at(k)] -= lse);
        }
    }
    let mut out = vec![nll_loss(c, &logp)?];
    if c.wants_output(1) {
        out.push(Tensor::from_f64s(x.dtype(), x.shape().to_vec(), logp));
    }
    Ok(out)
}

/// `Unique`: distinct elements (or slices along `axis`), sorted or in order
/// of first occurrence, with first indices, inverse indices and counts.
fn eval_unique(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let sorted = c.attrs().int("sorted", 1)? != 0;
    let (x, axis) = match c.attrs().opt_int("axis")? {
        Some(a) => (x.clone(), norm_axis(a, x.rank())?),
        None => (x.clone().reshaped(vec![x.len()]), 0),
    };
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    let xs = x.to_f64s();
    // Slice k of the axis, as a comparable key.
    let key = |k: usize| -> Vec<f64> {
        (0..outer)
            .flat_map(|o| (0..inner).map(move |i| (o * n + k) * inner + i))
            .map(|at| xs[at])
            .collect()
    };
    let keys: Vec<Vec<f64>> = (0..n).map(key).collect();
    let cmp = |a: &Vec<f64>, b: &Vec<f64>| {
        a.iter()
            .zip(b)
            .map(|(p, q)| p.total_cmp(q))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    };
    let mut firsts: Vec<usize> = Vec::new();
    for k in 0..n {
        if !firsts.iter().any(|&f| cmp(&keys[f], &keys[k]).is_eq()) {
            firsts.push(k);
        }
    }
    if sorted {
        firsts.sort_by(|&a, &b| cmp(&keys[a], &keys[b]));
    }
    let inverse: Vec<i64> = (0..n)
        .map(|k| {
            firsts
                .iter()
                .position(|&f| cmp(&keys[f], &keys[k]).is_eq())
                .expect("every slice has a first") as i64
        })
        .collect();
    let counts: Vec<i64> = (0..firsts.len())
        .map(|u| inverse.iter().filter(|&&i| i == u as i64).count() as i64)
        .collect();
    let mut offs = Vec::with_capacity(outer * firsts.len() * inner);
    for o in 0..outer {
        for &f in &firsts {
            offs.extend((0..inner).map(|i| (o * n + f) * inner + i));
        }
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = firsts.len();
    let u = firsts.len();
    Ok(vec![
        x.take(shape, &offs),
        Tensor::i64s(vec![u], firsts.iter().map(|&f| f as i64).collect()),
        Tensor::i64s(vec![n], inverse),
        Tensor::i64s(vec![u], counts),
    ])
}

/// Intersection over union of two boxes given as (y1, x1, y2, x2) corners
/// in any order, or as (x centre, y centre, width, height).
fn iou(a: &[f64], b: &[f64], center: bool) -> f64 {
    let corners = |v: &[f64]| {
        if center {
            (
                v[1] - v[3] / 2.0,
                v[0] - v[2] / 2.0,
                v[1] + v[3] / 2.0,
                v[0] + v[2] / 2.0,
            )
        } else {
            (
                v[0].min(v[2]),
                v[1].min(v[3]),
                v[0].max(v[2]),
                v[1].max(v[3]),
            )
        }
    };
    let (ay1, ax1, ay2, ax2) = corners(a);
    let (by1, bx1, by2, bx2) = corners(b);
    let inter = (ay2.min(by2) - ay1.max(by1)).max(0.0) * (ax2.min(bx2) - ax1.max(bx1)).max(0.0);
    let union = (ay2 - ay1) * (ax2 - ax1) + (by2 - by1) * (bx2 - bx1) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// `NonMaxSuppression`: `[n, 3]` int64 (batch, class, box) triples, where
/// `n` is up to batches × classes × min(boxes, max_output_boxes_per_class).
fn infer_nms(c: &InferCtx) -> Result<Vec<ValueType>> {
    let (Some([b, _, _]), Some([_, classes, n])) = (c.dims(0), c.dims(1)) else {
        return Ok(vec![ValueType::new(DType::I64, Shape::unknown())]);
    };
    // A limit computed at run time is at most the box count.
    let per_class = match (c.inputs.get(2).is_some_and(Option::is_some), c.constant(2)) {
        (true, None) => n.expr(),
        (_, limit) => {
            let p = super::params::NonMaxSuppression::of(&c.node.attrs, limit, None, None)?;
            let limit = Expr::constant(i64::try_from(p.per_class).unwrap_or(i64::MAX));
            n.expr().map(|n| n.min_of(&limit))
        }
    };
    let most = b
        .expr()
        .zip(classes.expr())
        .zip(per_class)
        .map(|((b, classes), k)| b.mul(&classes).mul(&k));
    let count = most.map_or(Dim::Unknown, |m| c.counted(0, 0, m));
    Ok(vec![ValueType::new(
        DType::I64,
        Shape(Some(vec![count, Dim::Known(3)])),
    )])
}

/// `NonMaxSuppression`: per batch and class, greedily keeps the highest
/// scoring boxes that overlap no kept box by more than `iou_threshold`.
fn eval_nms(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (boxes, scores) = (c.input(0)?, c.input(1)?);
    let ([nb, nbox, 4], [sb, classes, sn]) = (boxes.shape(), scores.shape()) else {
        bail!(
            "NonMaxSuppression expects boxes [B, N, 4] and scores [B, C, N], got {:?} and {:?}",
            boxes.shape(),
            scores.shape()
        );
    };
    if nb != sb || nbox != sn {
        bail!(
            "boxes {:?} and scores {:?} disagree",
            boxes.shape(),
            scores.shape()
        );
    }
    let p = super::params::NonMaxSuppression::of(
        c.attrs(),
        c.opt_input(2),
        c.opt_input(3),
        c.opt_input(4),
    )?;
    let max_out = usize::try_from(p.per_class).unwrap_or(usize::MAX);
    let (iou_max, min_score, center) = (p.iou_threshold, p.score_threshold, p.center_point_box);
    let (bv, sv) = (boxes.to_f64s(), scores.to_f64s());
    let mut selected = Vec::new();
    for b in 0..*nb {
        for cl in 0..*classes {
            let score = |i: usize| sv[(b * classes + cl) * nbox + i];
            let mut order: Vec<usize> = (0..*nbox)
                .filter(|&i| min_score.is_none_or(|m| score(i) > m))
                .collect();
            order.sort_by(|&i, &j| score(j).total_cmp(&score(i)).then(i.cmp(&j)));
            let mut kept: Vec<usize> = Vec::new();
            for i in order {
                if kept.len() >= max_out {
                    break;
                }
                let bx = |k: usize| &bv[(b * nbox + k) * 4..(b * nbox + k + 1) * 4];
                if kept.iter().all(|&k| iou(bx(k), bx(i), center) <= iou_max) {
                    kept.push(i);
                }
            }
            selected.extend(
                kept.into_iter()
                    .flat_map(|i| [b as i64, cl as i64, i as i64]),
            );
        }
    }
    Ok(vec![Tensor::i64s(vec![selected.len() / 3, 3], selected)])
}
