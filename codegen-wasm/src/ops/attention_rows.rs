//! ONNX `Attention` where the batch or sequence lengths are known only at
//! run time: one query row at a time. Its scores against every key go to
//! a row buffer sized for the most keys, get the mask and their softmax
//! there, and the output row accumulates the value rows weighted by them.
//! Head counts and head sizes are compiled in (their dot products and
//! row updates unrolled into vectors); the batch, query and key counts
//! and the strides that depend on them are read from the size table when
//! the kernel starts. [`super::attention`] sends dynamic nodes here after
//! the refusals both share.

use walrus::ir::{BinaryOp, UnaryOp};
use walrus::{FunctionBuilder, InstrSeqBuilder, LocalId};
use wpc_ir::sym::Expr;
use wpc_ir::{DType, Error, Result};

use crate::emit::{self, Arith, Fx};
use crate::lower::{Ctx, Tt};
use crate::sizes::{Size, Sizes, fixed};
use wpc_ir::ops::params::broadcast_row_major;

/// Element strides of a Q/K/V/output tensor: per batch item, per head,
/// per sequence row.
struct Strides<T> {
    item: T,
    head: T,
    row: T,
}

/// 3-D (B, S, H·D) with `heads` heads, or 4-D (B, H, S, D).
fn strides(t: &Tt, heads: usize) -> Strides<Expr> {
    let d = &t.dims;
    if d.len() == 3 {
        Strides {
            item: d[1].mul(&d[2]),
            head: d[2].floor_div(&Expr::constant(heads as i64)),
            row: d[2].clone(),
        }
    } else {
        Strides {
            item: Expr::product(&d[1..]),
            head: d[2].mul(&d[3]),
            row: d[3].clone(),
        }
    }
}

/// The sizes of [`Strides`] in generated code.
fn sized(
    b: &mut InstrSeqBuilder,
    fx: &mut Fx,
    sizes: &mut Sizes,
    s: &Strides<Expr>,
) -> Result<Strides<Size>> {
    Ok(Strides {
        item: sizes.of(b, fx, &s.item)?,
        head: sizes.of(b, fx, &s.head)?,
        row: sizes.of(b, fx, &s.row)?,
    })
}

/// Pushes `base + 4 · Σ index · stride` (a byte address).
fn address(b: &mut InstrSeqBuilder, base: u32, terms: &[(LocalId, Size)]) {
    b.i32_const(base as i32);
    for &(index, stride) in terms {
        b.local_get(index);
        match stride {
            Size::Const(1) => {}
            s => {
                s.push(b);
                b.binop(walrus::ir::BinaryOp::I32Mul);
            }
        }
        b.i32_const(4)
            .binop(BinaryOp::I32Mul)
            .binop(BinaryOp::I32Add);
    }
}

/// The vector chunks of a row of `len` floats: (lanes, byte offset).
fn chunks(len: usize, lanes: usize) -> Vec<(usize, u64)> {
    let main = len / lanes * lanes;
    (0..main)
        .step_by(lanes)
        .map(|i| (lanes, 4 * i as u64))
        .chain((main..len).map(|i| (1, 4 * i as u64)))
        .collect()
}

pub fn attention(
    ctx: &mut Ctx,
    f: &mut FunctionBuilder,
    [q, k, v, out]: [&Tt; 4],
    p: &wpc_ir::ops::params::Attention,
) -> Result<()> {
    let three_d = q.dims.len() == 3;
    let (heads, kv_heads) = if three_d {
        p.heads_3d()?
    } else {
        (
            fixed(&q.dims[1], "query heads")?,
            fixed(&k.dims[1], "key heads")?,
        )
    };
    if kv_heads == 0 || heads % kv_heads != 0 || q.dims.len() != k.dims.len() {
        return Err(Error::invalid("Attention head counts do not divide"));
    }
    let reps = heads / kv_heads;
    let width = |t: &Tt, h: usize| -> Result<usize> {
        let w = if three_d {
            t.dims[2].floor_div(&Expr::constant(h as i64))
        } else {
            t.dims[3].clone()
        };
        fixed(&w, "a head size of")
    };
    let (dim, dim_v) = (width(q, heads)?, width(v, kv_heads)?);
    let seq_axis = if three_d { 1 } else { 2 };
    let (batch, queries, keys) = (
        q.dims[0].clone(),
        q.dims[seq_axis].clone(),
        k.dims[seq_axis].clone(),
    );
    let mask = match ctx.has_input(3) {
        true => {
            let m = ctx.input(3)?;
            let full = [
                batch.clone(),
                Expr::constant(heads as i64),
                queries.clone(),
                keys.clone(),
            ];
            let s = broadcast_row_major(&m.dims, &full)
                .ok()
                .filter(|_| m.dtype == DType::F32 && m.dims.last() == Some(&keys));
            let s =
                s.ok_or_else(|| Error::unsupported("a mask that is not float32 over every key"))?;
            Some((m.addr, s))
        }
        false => None,
    };
    let scale = p.scale_for(dim) as f32;
    let scores = ctx.scratch(4 * k.shape[seq_axis]);
    let exp = ctx.exp();
    let table = ctx.sizes;
    let (sq, sk, sv, so) = (
        strides(q, heads),
        strides(k, kv_heads),
        strides(v, kv_heads),
        strides(out, heads),
    );
    let mut fx = ctx.fx();
    let lanes = fx.isa.lanes();
    let [item, head, kv, row, key, qp, mp, kp, vp, op, sp] = [(); 11].map(|_| fx.i32());
    let (acc, wide) = (fx.vec(lanes), fx.vec(lanes));
    let [dot, max, sum, e] = [(); 4].map(|_| fx.f32());
    let mut b = f.func_body();
    let mut sizes = Sizes::new(table);
    let [batch, queries, keys] = [&batch, &queries, &keys].map(|e| sizes.of(&mut b, &mut fx, e));
    let (batch, queries, keys) = (batch?, queries?, keys?);
    let sq = sized(&mut b, &mut fx, &mut sizes, &sq)?;
    let sk = sized(&mut b, &mut fx, &mut sizes, &sk)?;
    let sv = sized(&mut b, &mut fx, &mut sizes, &sv)?;
    let so = sized(&mut b, &mut fx, &mut sizes, &so)?;
    let mask = match mask {
        Some((at, s)) => Some((at, sizes.all(&mut b, &mut fx, &s)?)),
        None => None,
    };
    let zero = Size::Const(0);
    emit::for_size(&mut b, item, zero, batch, 1, |b| {
        emit::for_range(b, head, 0, heads as i64, 1, |b| {
            // kv = head / reps: the K/V head this query head reads.
            b.local_get(head)
                .i32_const(reps as i32)
                .binop(BinaryOp::I32DivU)
                .local_set(kv);
            emit::for_size(b, row, zero, queries, 1, |b| {
                address(
                    b,
                    q.addr,
                    &[(item, sq.item), (head, sq.head), (row, sq.row)],
                );
                b.local_set(qp);
                if let Some((at, s)) = &mask {
                    address(b, *at, &[(item, s[0]), (head, s[1]), (row, s[2])]);
                    b.local_set(mp);
                }
                // Scores: scale · q·k (+ mask), and their max.
                b.f32_const(f32::NEG_INFINITY).local_set(max);
                emit::for_size(b, key, zero, keys, 1, |b| {
                    address(b, k.addr, &[(item, sk.item), (kv, sk.head), (key, sk.row)]);
                    b.local_set(kp);
                    emit::zero(b, lanes, acc);
                    b.f32_const(0.0).local_set(dot);
                    for (l, at) in chunks(dim, lanes) {
                        b.local_get(qp);
                        emit::load(b, &fx, l, at);
                        b.local_get(kp);
                        emit::load(b, &fx, l, at);
                        emit::madd(b, &fx, l, if l == lanes { acc } else { dot });
                    }
                    b.local_get(dot);
                    horizontal_sum(b, lanes, acc);
                    b.f32_const(scale).binop(BinaryOp::F32Mul);
                    if let Some((_, s)) = &mask {
                        address(b, 0, &[(key, s[3])]);
                        b.local_get(mp).binop(BinaryOp::I32Add);
                        emit::load(b, &fx, 1, 0);
                        b.binop(BinaryOp::F32Add);
                    }
                    b.local_set(dot);
                    address(b, scores, &[(key, Size::Const(1))]);
                    b.local_get(dot);
                    emit::store(b, &fx, 1, 0);
                    b.local_get(max)
                        .local_get(dot)
                        .binop(BinaryOp::F32Max)
                        .local_set(max);
                });
                // An all -inf row (every key masked) becomes zeros, as the
                // reference computes it: e^(x − 0) is 0, and so is the sum.
                b.local_get(max)
                    .f32_const(0.0)
                    .local_get(max)
                    .f32_const(f32::NEG_INFINITY)
                    .binop(BinaryOp::F32Ne)
                    .select(None)
                    .local_set(max);
                b.f32_const(0.0).local_set(sum);
                emit::for_size(b, key, zero, keys, 1, |b| {
                    address(b, scores, &[(key, Size::Const(1))]);
                    b.local_tee(sp).local_get(sp);
                    emit::exp_shifted(b, &fx, exp, [max, e, sum]);
                });
                // sum := 1/sum, or 0 when nothing was left.
                b.f32_const(1.0)
                    .local_get(sum)
                    .binop(BinaryOp::F32Div)
                    .f32_const(0.0)
                    .local_get(sum)
                    .f32_const(0.0)
                    .binop(BinaryOp::F32Gt)
                    .select(None)
                    .local_set(sum);
                // out row = Σ p(key) · v(key).
                address(
                    b,
                    out.addr,
                    &[(item, so.item), (head, so.head), (row, so.row)],
                );
                b.local_set(op);
                for (l, at) in chunks(dim_v, lanes) {
                    b.local_get(op);
                    emit::constant(b, l, 0.0);
                    emit::store(b, &fx, l, at);
                }
                emit::for_size(b, key, zero, keys, 1, |b| {
                    address(b, v.addr, &[(item, sv.item), (kv, sv.head), (key, sv.row)]);
                    b.local_set(vp);
                    address(b, scores, &[(key, Size::Const(1))]);
                    emit::load(b, &fx, 1, 0);
                    b.local_get(sum).binop(BinaryOp::F32Mul).local_set(e);
                    b.local_get(e);
                    emit::splat(b, lanes);
                    b.local_set(wide);
                    for (l, at) in chunks(dim_v, lanes) {
                        b.local_get(op);
                        b.local_get(vp);
                        emit::load(b, &fx, l, at);
                        b.local_get(if l == lanes { wide } else { e });
                        emit::arith(b, l, Arith::Mul);
                        b.local_get(op);
                        emit::load(b, &fx, l, at);
                        emit::arith(b, l, Arith::Add);
                        emit::store(b, &fx, l, at);
                    }
                });
            });
        });
    });
    Ok(())
}

/// Adds the lanes of `acc` to the f32 on the stack (a scalar `acc` is
/// added as it is).
fn horizontal_sum(b: &mut InstrSeqBuilder, lanes: usize, acc: LocalId) {
    if lanes == 1 {
        b.local_get(acc).binop(BinaryOp::F32Add);
        return;
    }
    for lane in 0..lanes as u8 {
        b.local_get(acc)
            .unop(UnaryOp::F32x4ExtractLane { idx: lane })
            .binop(BinaryOp::F32Add);
    }
}
