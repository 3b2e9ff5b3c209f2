//! Transformer ops: `Attention` (opset 23+: scaled dot-product attention
//! with grouped key/value heads, masks, causal and sliding-window bias, KV
//! cache and softcap), `RotaryEmbedding`, `LinearAttention` and the KV-cache
//! writer `TensorScatter`, following the ONNX reference semantics.

use super::infer::InferCtx;
use super::movement::{concat, transpose};
use super::util::broadcast_offsets;
use super::{EvalCtx, OpDef, op};
use crate::dtype::DType;
use crate::error::Result;
use crate::graph::ValueType;
use crate::shape::{Dim, Shape};
use crate::tensor::Tensor;

pub(super) fn ops() -> Vec<OpDef> {
    vec![
        op!("Attention", eval_attention, infer_attention),
        op!(
            "RotaryEmbedding",
            eval_rotary_embedding,
            super::infer::same_as_input
        ),
        op!("LinearAttention", eval_linear_attention),
        op!(
            "TensorScatter",
            eval_tensor_scatter,
            super::infer::same_as_input
        ),
    ]
}

/// (B, S, H·D) → (B, H, S, D).
fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let [b, s, hidden] = x.shape() else {
        bail!("expected a 3-D input, got {:?}", x.shape())
    };
    if heads == 0 || hidden % heads != 0 {
        bail!("hidden size {hidden} is not divisible into {heads} heads");
    }
    Ok(transpose(
        &x.clone().reshaped(vec![*b, *s, heads, hidden / heads]),
        &[0, 2, 1, 3],
    ))
}

/// Attention's outputs: Y (Q's layout with V's head size), the present
/// keys and values (B, kv heads, past + new, head size), and the scores
/// (B, q heads, Sq, past + new). Dims not known stay unknown.
fn infer_attention(c: &InferCtx) -> Result<Vec<ValueType>> {
    let p = super::params::Attention::of(&c.node.attrs)?;
    let dims = |i: usize| c.dims(i).map(<[Dim]>::to_vec);
    let (Some(q), Some(k), Some(v)) = (dims(0), dims(1), dims(2)) else {
        return Ok(vec![ValueType::default(); c.node.outputs.len()]);
    };
    let known = |d: &Dim| d.known();
    let join = |a: Option<usize>| a.map_or(Dim::Unknown, Dim::Known);
    let three_d = q.len() == 3;
    let (batch, q_heads, sq, kv_heads, new) = if three_d {
        let (qh, kvh) = p.heads_3d()?;
        (
            q[0].clone(),
            Dim::Known(qh),
            q[1].clone(),
            Dim::Known(kvh),
            k[1].clone(),
        )
    } else if q.len() == 4 && k.len() == 4 && v.len() == 4 {
        (
            q[0].clone(),
            q[1].clone(),
            q[2].clone(),
            k[1].clone(),
            k[2].clone(),
        )
    } else {
        bail!("Attention expects 3-D or 4-D Q, K and V");
    };
    // Head sizes: 3-D inputs hold heads · size in their last dim.
    let size = |t: &[Dim], heads: &Dim| match three_d {
        true => join(known(&t[2]).zip(known(heads)).map(|(w, h)| w / h.max(1))),
        false => t[3].clone(),
    };
    let (dk, dv) = (size(&k, &kv_heads), size(&v, &kv_heads));
    let past = c
        .dims(4)
        .and_then(|d| d.get(2).cloned())
        .unwrap_or(Dim::Known(0));
    let total = join(known(&past).zip(known(&new)).map(|(a, b)| a + b));
    let y = match three_d {
        true => vec![
            batch.clone(),
            sq.clone(),
            join(known(&q_heads).zip(known(&dv)).map(|(h, d)| h * d)),
        ],
        false => vec![batch.clone(), q_heads.clone(), sq.clone(), dv.clone()],
    };
    let typed = |d: Vec<Dim>| ValueType {
        dtype: c.dtype(0),
        shape: Shape(Some(d)),
    };
    Ok(vec![
        typed(y),
        typed(vec![batch.clone(), kv_heads.clone(), total.clone(), dk]),
        typed(vec![batch.clone(), kv_heads, total.clone(), dv]),
        typed(vec![batch, q_heads, sq, total]),
    ]
    .into_iter()
    .take(c.node.outputs.len())
    .collect())
}

fn eval_attention(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let p = super::params::Attention::of(c.attrs())?;
    let (q_in, k_in, v_in) = (c.input(0)?, c.input(1)?, c.input(2)?);
    let three_d = q_in.rank() == 3;
    if k_in.rank() != q_in.rank() || v_in.rank() != q_in.rank() {
        bail!(
            "Q, K and V must have the same rank, got {:?}, {:?} and {:?}",
            q_in.shape(),
            k_in.shape(),
            v_in.shape()
        );
    }
    let (q, mut k, mut v) = if three_d {
        let (qh, kvh) = p.heads_3d()?;
        (
            split_heads(q_in, qh)?,
            split_heads(k_in, kvh)?,
            split_heads(v_in, kvh)?,
        )
    } else if q_in.rank() == 4 {
        (q_in.clone(), k_in.clone(), v_in.clone())
    } else {
        bail!("Attention expects 3-D or 4-D Q, got {:?}", q_in.shape());
    };
    let past = match (c.opt_input(4), c.opt_input(5)) {
        (Some(pk), Some(pv)) => {
            k = concat(&[pk, &k], 2)?;
            v = concat(&[pv, &v], 2)?;
            pk.shape()[2]
        }
        (None, None) => 0,
        _ => bail!("past_key and past_value must be given together"),
    };
    let nonpad = c.opt_input(6).map(Tensor::to_i64s);
    if nonpad.as_ref().is_some_and(|n| n.len() != q.shape()[0]) {
        bail!("nonpad_kv_seqlen must hold one length per batch");
    }
    let (qs, ks, vs) = (q.shape().to_vec(), k.shape().to_vec(), v.shape().to_vec());
    let (batch, qh, sq, dh) = (qs[0], qs[1], qs[2], qs[3]);
    let (kvh, skv, dv) = (ks[1], ks[2], vs[3]);
    let consistent = qs.len() == 4
        && ks.len() == 4
        && vs.len() == 4
        && ks[0] == batch
        && vs[0] == batch
        && vs[1] == kvh
        && vs[2] == skv;
    if !consistent || kvh == 0 || qh % kvh != 0 || ks[3] != dh {
        bail!("Attention head shapes do not match: Q {qs:?}, K {ks:?}, V {vs:?}");
    }
    let reps = qh / kvh;
    let scale = p.scale_for(dh);
    let softcap = f64::from(p.softcap);
    let causal = p.is_causal;
    let mode = p.qk_matmul_output_mode;
    let window = |w: Option<usize>| w.map(|w| w as i64);
    let (left, right) = (window(p.left_window), window(p.right_window));
    // The mask, padded to the full kv length and broadcast to (B, H, Sq, Skv).
    let mask = match c.opt_input(3) {
        Some(m) => {
            let mut m = if m.dtype() == DType::Bool {
                Tensor::from_vec(
                    m.shape().to_vec(),
                    m.to_bools()
                        .iter()
                        .map(|&b| if b { 0.0 } else { f64::NEG_INFINITY })
                        .collect::<Vec<f64>>(),
                )
            } else {
                m.cast(DType::F64)
            };
            let last = *m.shape().last().unwrap_or(&0);
            if last < skv {
                let mut pad_shape = m.shape().to_vec();
                *pad_shape.last_mut().expect("rank >= 1") = skv - last;
                let n = pad_shape.iter().product();
                let pad = Tensor::from_vec(pad_shape, vec![f64::NEG_INFINITY; n]);
                m = concat(&[&m, &pad], m.rank() - 1)?;
            }
            let full = [batch, qh, sq, skv];
            if m.rank() > 4 || super::util::broadcast_shapes(&[m.shape(), &full])? != full {
                bail!(
                    "attn_mask of shape {:?} does not broadcast to {full:?}",
                    m.shape()
                );
            }
            let offs = broadcast_offsets(m.shape(), &full);
            let mv = m.to_f64s();
            Some(offs.into_iter().map(|o| mv[o]).collect::<Vec<f64>>())
        }
        None => None,
    };
    let (qv, kv, vv) = (q.to_f64s(), k.to_f64s(), v.to_f64s());
    let mut y = vec![0.0; batch * qh * sq * dv];
    let mut qk_out = vec![0.0; batch * qh * sq * skv];
    let mut row = vec![0.0; skv];
    let mut bias = vec![0.0; skv];
    for b in 0..batch {
        // Causal and window frontiers align to the end of the cache.
        let offset = match (&nonpad, past) {
            (Some(n), 0) => n[b] - sq as i64,
            _ => past as i64,
        };
        for h in 0..qh {
            let kh = h / reps;
            for i in 0..sq {
                let pos = i as i64 + offset;
                for j in 0..skv {
                    let mut bj = mask
                        .as_ref()
                        .map_or(0.0, |m| m[((b * qh + h) * sq + i) * skv + j]);
                    let jj = j as i64;
                    if causal && jj > pos {
                        bj = f64::NEG_INFINITY;
                    }
                    if left.is_some_and(|l| pos - jj > l) || right.is_some_and(|r| jj - pos > r) {
                        bj = f64::NEG_INFINITY;
                    }
                    if let Some(n) = &nonpad
                        && jj >= n[b]
                    {
                        bj = f64::NEG_INFINITY;
                    }
                    bias[j] = bj;
                    let qrow = &qv[((b * qh + h) * sq + i) * dh..][..dh];
                    let krow = &kv[((b * kvh + kh) * skv + j) * dh..][..dh];
                    let mut s: f64 = qrow.iter().zip(krow).map(|(x, y)| x * y).sum::<f64>() * scale;
                    if softcap > 0.0 {
                        s = (s / softcap).tanh() * softcap;
                    }
                    row[j] = s;
                }
                let at = ((b * qh + h) * sq + i) * skv;
                if mode <= 1 {
                    qk_out[at..at + skv].copy_from_slice(&row);
                }
                row.iter_mut().zip(&bias).for_each(|(r, b)| *r += b);
                if mode == 2 {
                    qk_out[at..at + skv].copy_from_slice(&row);
                }
                let all_masked = bias.iter().all(|b| *b == f64::NEG_INFINITY);
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let max = if max == f64::NEG_INFINITY { 0.0 } else { max };
                row.iter_mut().for_each(|r| *r = (*r - max).exp());
                let sum: f64 = row.iter().sum();
                row.iter_mut().for_each(|r| {
                    *r = if all_masked || sum == 0.0 {
                        0.0
                    } else {
                        *r / sum
                    }
                });
                if mode == 3 {
                    qk_out[at..at + skv].copy_from_slice(&row);
                }
                let out = &mut y[((b * qh + h) * sq + i) * dv..][..dv];
                for (j, p) in row.iter().enumerate() {
                    let vrow = &vv[((b * kvh + kh) * skv + j) * dv..][..dv];
                    out.iter_mut().zip(vrow).for_each(|(o, x)| *o += p * x);
                }
            }
        }
    }
    let dt = q.dtype();
    let mut y = Tensor::from_f64s(dt, vec![batch, qh, sq, dv], y);
    if three_d {
        y = transpose(&y, &[0, 2, 1, 3]).reshaped(vec![batch, sq, qh * dv]);
    }
    let qk = Tensor::from_f64s(dt, vec![batch, qh, sq, skv], qk_out);
    Ok(vec![y, k, v, qk])
}

/// `RotaryEmbedding` (opset 23): rotates the first `rotary_embedding_dim`
/// channels of every head by position-dependent angles, in halves or
/// interleaved pairs.
fn eval_rotary_embedding(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, cos, sin) = (c.input(0)?, c.input(1)?, c.input(2)?);
    let p = super::params::Rotary::of(c.attrs())?;
    let interleaved = p.interleaved;
    // Work in (B, S, H, D).
    let bshd = match x.shape() {
        [_, _, _, _] => transpose(x, &[0, 2, 1, 3]),
        [b, s, hidden] => {
            let heads = p.num_heads.unwrap_or(0);
            if heads == 0 || hidden % heads != 0 {
                bail!("RotaryEmbedding on 3-D input needs num_heads dividing {hidden}");
            }
            x.clone().reshaped(vec![*b, *s, heads, hidden / heads])
        }
        s => bail!("RotaryEmbedding expects a 3-D or 4-D input, got {s:?}"),
    };
    let [b, s, h, d] = bshd.shape().try_into().expect("rank 4");
    let rd = p.rotary_dim.unwrap_or(d);
    let half = rd / 2;
    if rd > d || cos.shape().last() != Some(&half) || sin.shape().last() != Some(&half) {
        bail!(
            "cos/sin caches {:?} do not match rotary_embedding_dim/2 = {half}",
            cos.shape()
        );
    }
    // Row of the caches for (batch, position).
    let positions = c.opt_input(3).map(Tensor::to_i64s);
    let row = |bi: usize, si: usize| match &positions {
        Some(p) => p[bi * s + si] as usize,
        None => bi * s + si,
    };
    let (cv, sv, mut xv) = (cos.to_f64s(), sin.to_f64s(), bshd.to_f64s());
    for bi in 0..b {
        for si in 0..s {
            let r = row(bi, si);
            for hi in 0..h {
                let base = ((bi * s + si) * h + hi) * d;
                for k in 0..half {
                    let (i1, i2) = if interleaved {
                        (base + 2 * k, base + 2 * k + 1)
                    } else {
                        (base + k, base + half + k)
                    };
                    let (x1, x2) = (xv[i1], xv[i2]);
                    let (co, si_) = (cv[r * half + k], sv[r * half + k]);
                    xv[i1] = co * x1 - si_ * x2;
                    xv[i2] = si_ * x1 + co * x2;
                }
            }
        }
    }
    let y = Tensor::from_f64s(x.dtype(), vec![b, s, h, d], xv);
    Ok(vec![if x.rank() == 4 {
        transpose(&y, &[0, 2, 1, 3])
    } else {
        y.reshaped(x.shape().to_vec())
    }])
}

/// `LinearAttention`: recurrent linear attention over a (B, H_kv, d_k, d_v)
/// state, with the `linear`, `gated` (decay), `delta` (beta) and
/// `gated_delta` update rules.
fn eval_linear_attention(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let a = c.attrs();
    let (q, k, v) = (c.input(0)?, c.input(1)?, c.input(2)?);
    let rule = a.string("update_rule", "gated_delta")?;
    let (gating, delta) = match rule {
        "linear" => (false, false),
        "gated" => (true, false),
        "delta" => (false, true),
        "gated_delta" => (true, true),
        r => bail!("unknown update_rule '{r}'"),
    };
    let qh = a.int("q_num_heads", 0)? as usize;
    let kvh = a.int("kv_num_heads", 0)? as usize;
    if qh == 0 || kvh == 0 || !qh.is_multiple_of(kvh) {
        bail!("q_num_heads ({qh}) must be a positive multiple of kv_num_heads ({kvh})");
    }
    let (decay, beta) = (c.opt_input(4), c.opt_input(5));
    if gating != decay.is_some() || delta != beta.is_some() {
        bail!("update_rule '{rule}' needs decay: {gating}, beta: {delta}");
    }
    let (q4, k4, v4) = (
        split_heads(q, qh)?,
        split_heads(k, kvh)?,
        split_heads(v, kvh)?,
    );
    let (b, t, dk, dv) = (q.shape()[0], q.shape()[1], q4.shape()[3], v4.shape()[3]);
    let (qv, kv, vv) = (q4.to_f64s(), k4.to_f64s(), v4.to_f64s());
    // decay is per head (last dim H_kv) or per key channel (H_kv·d_k).
    let decay_v = decay.map(Tensor::to_f64s);
    let per_channel_decay = decay.is_some_and(|d| d.shape().last() == Some(&(kvh * dk)));
    let beta_v = beta.map(Tensor::to_f64s);
    let beta_last = beta.map_or(1, |t| *t.shape().last().unwrap_or(&1));
    let mut state = match c.opt_input(3) {
        Some(s) if s.shape() == [b, kvh, dk, dv] => s.to_f64s(),
        Some(s) => bail!(
            "past_state {:?} must be [{b}, {kvh}, {dk}, {dv}]",
            s.shape()
        ),
        None => vec![0.0; b * kvh * dk * dv],
    };
    let scale = a
        .opt_float("scale")?
        .filter(|&s| s != 0.0)
        .map_or(1.0 / (dk as f64).sqrt(), f64::from);
    let mut out = vec![0.0; b * qh * t * dv];
    let mut vt = vec![0.0; dv];
    for bi in 0..b {
        for i in 0..t {
            for h in 0..kvh {
                let st = &mut state[(bi * kvh + h) * dk * dv..][..dk * dv];
                let krow = &kv[((bi * kvh + h) * t + i) * dk..][..dk];
                vt.copy_from_slice(&vv[((bi * kvh + h) * t + i) * dv..][..dv]);
                if let Some(dec) = &decay_v {
                    for d in 0..dk {
                        let g = if per_channel_decay {
                            dec[(bi * t + i) * kvh * dk + h * dk + d]
                        } else {
                            dec[(bi * t + i) * kvh + h]
                        };
                        st[d * dv..(d + 1) * dv]
                            .iter_mut()
                            .for_each(|s| *s *= g.exp());
                    }
                }
                if let Some(bt) = &beta_v {
                    let bv = bt[(bi * t + i) * beta_last + if beta_last == 1 { 0 } else { h }];
                    for m in 0..dv {
                        let retrieved: f64 = (0..dk).map(|d| st[d * dv + m] * krow[d]).sum();
                        vt[m] = bv * (vt[m] - retrieved);
                    }
                }
                for d in 0..dk {
                    for m in 0..dv {
                        st[d * dv + m] += krow[d] * vt[m];
                    }
                }
            }
            for h in 0..qh {
                let st = &state[(bi * kvh + h / (qh / kvh)) * dk * dv..][..dk * dv];
                let qrow = &qv[((bi * qh + h) * t + i) * dk..][..dk];
                for m in 0..dv {
                    out[((bi * qh + h) * t + i) * dv + m] =
                        scale * (0..dk).map(|d| qrow[d] * st[d * dv + m]).sum::<f64>();
                }
            }
        }
    }
    let y = transpose(
        &Tensor::from_f64s(q.dtype(), vec![b, qh, t, dv], out),
        &[0, 2, 1, 3],
    )
    .reshaped(vec![b, t, qh * dv]);
    let state_dtype = c.opt_input(3).map_or(q.dtype(), Tensor::dtype);
    Ok(vec![
        y,
        Tensor::from_f64s(state_dtype, vec![b, kvh, dk, dv], state),
    ])
}

/// `TensorScatter`: writes `update` into a KV cache along `axis` at each
/// batch's write index (`linear`), or wrapping around (`circular`).
fn eval_tensor_scatter(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (cache, update) = (c.input(0)?, c.input(1)?);
    let r = cache.rank();
    let axis = super::util::norm_axis(c.attrs().int("axis", -2)?, r)?;
    let circular = match c.attrs().string("mode", "linear")? {
        "linear" => false,
        "circular" => true,
        m => bail!("unknown TensorScatter mode '{m}'"),
    };
    if update.rank() != r
        || (0..r).any(|i| {
            if i == axis {
                update.shape()[i] > cache.shape()[i]
            } else {
                update.shape()[i] != cache.shape()[i]
            }
        })
    {
        bail!(
            "update {:?} does not fit cache {:?} along axis {axis}",
            update.shape(),
            cache.shape()
        );
    }
    let starts = c
        .opt_input(2)
        .map_or_else(|| vec![0; cache.shape()[0]], Tensor::to_i64s);
    let max = cache.shape()[axis];
    let cst = crate::tensor::strides(cache.shape());
    let mut pos = vec![0; r];
    // Each element of the result reads the cache, or the update that overwrote it.
    let mut src: Vec<Option<usize>> = vec![None; cache.len()];
    for u in 0..update.len() {
        super::util::unravel(u, update.shape(), &mut pos);
        let mut at = starts[pos[0]] as usize + pos[axis];
        if circular {
            at %= max;
        } else if at >= max {
            bail!("write index {at} is past the cache length {max}");
        }
        pos[axis] = at;
        src[pos.iter().zip(&cst).map(|(p, s)| p * s).sum::<usize>()] = Some(u);
    }
    let both = super::movement::concat(
        &[
            &cache.clone().reshaped(vec![cache.len()]),
            &update.clone().reshaped(vec![update.len()]),
        ],
        0,
    )?;
    let offs: Vec<usize> = src
        .iter()
        .enumerate()
        .map(|(i, s)| s.map_or(i, |u| cache.len() + u))
        .collect();
    Ok(vec![both.take(cache.shape().to_vec(), &offs)])
}
