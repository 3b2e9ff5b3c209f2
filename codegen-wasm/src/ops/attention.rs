//! ONNX `Attention` (what the rewrite pass makes of scaled dot-product
//! attention), blocked: per batch item and K/V head, Kᵀ is laid out once,
//! then per block of query rows the scores `scale · Q·Kᵀ` are one GEMM
//! into a block-sized buffer, each row gets the mask added and its
//! softmax, and `P·V` is a second GEMM straight into the output. The
//! scores never exist for more than one block of rows. Covered: 3-D
//! (B, S, H·D) and 4-D (B, H, S, D) inputs, grouped K/V heads, a float
//! mask over the keys; past keys, causal or windowed masking, softcap
//! and the optional outputs run the reference kernel. Dynamic sizes go
//! to [`super::attention_rows`].

use walrus::ir::BinaryOp;
use walrus::{FunctionBuilder, FunctionId, InstrSeqBuilder, LocalId};
use wpc_ir::ops::util::broadcast_strides;
use wpc_ir::{DType, Error, Result};

use super::gemm::{Gemm, emit_gemm};
use crate::emit::{self, Fx};
use crate::lower::{Ctx, Tt};
use crate::sizes::Size;

/// Query rows per block: the scores buffer holds this many rows.
const BLOCK: usize = 32;

/// Where (item, head, row)'s vector of a Q/K/V/output tensor starts, in
/// elements: `item · item + head · head + row · row`.
#[derive(Clone, Copy)]
struct Strides {
    item: usize,
    head: usize,
    row: usize,
}

impl Strides {
    /// 3-D (B, S, H·D) with `heads` heads, or 4-D (B, H, S, D).
    fn of(t: &Tt, heads: usize) -> Strides {
        if t.shape.len() == 3 {
            let (seq, width) = (t.shape[1], t.shape[2]);
            Strides {
                item: seq * width,
                head: width / heads,
                row: width,
            }
        } else {
            let (h, seq, d) = (t.shape[1], t.shape[2], t.shape[3]);
            Strides {
                item: h * seq * d,
                head: seq * d,
                row: d,
            }
        }
    }
}

/// The sizes of one Attention.
struct Dims {
    batch: usize,
    heads: usize,
    /// Query heads per K/V head.
    reps: usize,
    queries: usize,
    keys: usize,
    dim: usize,
    dim_v: usize,
}

pub fn attention(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (q, k, v, out) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?, ctx.output(0)?);
    for t in [&q, &k, &v] {
        super::require_f32(ctx, t)?;
    }
    let p = wpc_ir::ops::params::Attention::of(ctx.attrs())?;
    let refuse = |what: &str| Err(Error::unsupported(what.to_string()));
    if (4..=6).any(|i| ctx.has_input(i)) {
        return refuse("past keys and values or padded lengths");
    }
    if (1..4).any(|i| ctx.wants_output(i)) {
        return refuse("the present or qk_matmul outputs");
    }
    if p.is_causal || p.softcap != 0.0 || p.left_window.is_some() || p.right_window.is_some() {
        return refuse("causal or windowed masking or a softcap");
    }
    if ![&q, &k, &v, &out].iter().all(|t| t.is_static()) {
        return super::attention_rows::attention(ctx, f, [&q, &k, &v, &out], &p);
    }
    let three_d = q.shape.len() == 3;
    let (heads, kv_heads) = if three_d {
        p.heads_3d()?
    } else {
        (q.shape[1], k.shape[1])
    };
    if kv_heads == 0 || heads % kv_heads != 0 || q.shape.len() != k.shape.len() {
        return Err(Error::invalid("Attention head counts do not divide"));
    }
    let seq = |t: &Tt| if three_d { t.shape[1] } else { t.shape[2] };
    let width = |t: &Tt, h: usize| if three_d { t.shape[2] / h } else { t.shape[3] };
    let dims = Dims {
        batch: q.shape[0],
        heads,
        reps: heads / kv_heads,
        queries: seq(&q),
        keys: seq(&k),
        dim: width(&q, heads),
        dim_v: width(&v, kv_heads),
    };
    let mask = match ctx.has_input(3) {
        true => {
            let m = ctx.input(3)?;
            if m.dtype != DType::F32 || m.shape.last() != Some(&dims.keys) || m.shape.len() > 4 {
                return refuse("a mask that is not float32 over every key");
            }
            let full = [dims.batch, dims.heads, dims.queries, dims.keys];
            let s = broadcast_strides(&m.shape, &full);
            Some((m.addr, s))
        }
        false => None,
    };
    let block = dims.queries.min(BLOCK);
    let kt = ctx.scratch(4 * dims.dim * dims.keys);
    let scores = ctx.scratch(4 * block * dims.keys);
    let exp = ctx.exp();
    let (sq, sk, sv, so) = (
        Strides::of(&q, heads),
        Strides::of(&k, kv_heads),
        Strides::of(&v, kv_heads),
        Strides::of(&out, heads),
    );
    let mut fx = ctx.fx();
    let l = Locals::new(&mut fx);
    let qk = |fx: &mut Fx, rows: usize| Gemm {
        m: Size::Const(rows as i64),
        n: dims.keys,
        k: dims.dim,
        a: fx.i32(),
        lda: sq.row,
        b: fx.i32(),
        ldb: dims.keys,
        packed: false,
        c: fx.i32(),
        ldc: dims.keys,
        alpha: p.scale_for(dims.dim) as f32,
        bias: None,
        tail: None,
    };
    let pv = |fx: &mut Fx, rows: usize| Gemm {
        m: Size::Const(rows as i64),
        n: dims.dim_v,
        k: dims.keys,
        a: fx.i32(),
        lda: dims.keys,
        b: fx.i32(),
        ldb: sv.row,
        packed: false,
        c: fx.i32(),
        ldc: so.row,
        alpha: 1.0,
        bias: None,
        tail: None,
    };
    let full_blocks = dims.queries / block;
    let tail_rows = dims.queries % block;
    let plans = [
        (qk(&mut fx, block), pv(&mut fx, block), block),
        (
            qk(&mut fx, tail_rows.max(1)),
            pv(&mut fx, tail_rows.max(1)),
            tail_rows.max(1),
        ),
    ];
    let mut b = f.func_body();
    emit::for_range(&mut b, l.item, 0, dims.batch as i64, 1, |b| {
        emit::for_range(b, l.kv_head, 0, (dims.heads / dims.reps) as i64, 1, |b| {
            // Kᵀ once for the query heads that share this K/V head.
            transpose_keys(b, &fx, &l, &dims, (k.addr, sk), kt);
            emit::for_range(b, l.rep, 0, dims.reps as i64, 1, |b| {
                // head = kv_head · reps + rep
                emit::linear(b, &[(l.kv_head, dims.reps), (l.rep, 1)], 1, 0);
                b.local_set(l.head);
                let run_block = |b: &mut InstrSeqBuilder,
                                 fx: &mut Fx,
                                 (qk, pv, rows): &(Gemm, Gemm, usize),
                                 first: Row| {
                    // The block's query rows, from row `first`.
                    first.push(b, &l, block);
                    b.local_set(l.first);
                    emit::linear(
                        b,
                        &[(l.item, sq.item), (l.head, sq.head), (l.first, sq.row)],
                        4,
                        q.addr,
                    );
                    b.local_set(qk.a);
                    b.i32_const(kt as i32).local_set(qk.b);
                    b.i32_const(scores as i32).local_set(qk.c);
                    emit_gemm(b, fx, qk);
                    softmax_rows(b, fx, &l, &dims, (*rows, scores), mask.as_ref(), exp);
                    b.i32_const(scores as i32).local_set(pv.a);
                    emit::linear(b, &[(l.item, sv.item), (l.kv_head, sv.head)], 4, v.addr);
                    b.local_set(pv.b);
                    emit::linear(
                        b,
                        &[(l.item, so.item), (l.head, so.head), (l.first, so.row)],
                        4,
                        out.addr,
                    );
                    b.local_set(pv.c);
                    emit_gemm(b, fx, pv);
                };
                emit::for_range(b, l.block, 0, full_blocks as i64, 1, |b| {
                    run_block(b, &mut fx, &plans[0], Row::Block);
                });
                if tail_rows > 0 {
                    run_block(b, &mut fx, &plans[1], Row::Fixed(full_blocks * block));
                }
            });
        });
    });
    Ok(())
}

/// The first query row of a block: block `l.block`'s, or a fixed row
/// (the partial block at the end).
#[derive(Clone, Copy)]
enum Row {
    Block,
    Fixed(usize),
}

impl Row {
    fn push(self, b: &mut InstrSeqBuilder, l: &Locals, block: usize) {
        match self {
            Row::Block => {
                b.local_get(l.block)
                    .i32_const(block as i32)
                    .binop(BinaryOp::I32Mul);
            }
            Row::Fixed(r) => {
                b.i32_const(r as i32);
            }
        }
    }
}

struct Locals {
    item: LocalId,
    head: LocalId,
    kv_head: LocalId,
    rep: LocalId,
    block: LocalId,
    first: LocalId,
    row: LocalId,
    key: LocalId,
    src: LocalId,
    dst: LocalId,
    mask: LocalId,
    max: LocalId,
    sum: LocalId,
    e: LocalId,
}

impl Locals {
    fn new(fx: &mut Fx) -> Locals {
        Locals {
            item: fx.i32(),
            head: fx.i32(),
            kv_head: fx.i32(),
            rep: fx.i32(),
            block: fx.i32(),
            first: fx.i32(),
            row: fx.i32(),
            key: fx.i32(),
            src: fx.i32(),
            dst: fx.i32(),
            mask: fx.i32(),
            max: fx.f32(),
            sum: fx.f32(),
            e: fx.f32(),
        }
    }
}

/// Kᵀ of (item, K/V head) into `kt`: (dim × keys), row-major, the B
/// operand of the scores' GEMM.
fn transpose_keys(
    b: &mut InstrSeqBuilder,
    fx: &Fx,
    l: &Locals,
    dims: &Dims,
    (k, sk): (u32, Strides),
    kt: u32,
) {
    emit::for_range(b, l.key, 0, dims.keys as i64, 1, |b| {
        emit::linear(
            b,
            &[(l.item, sk.item), (l.kv_head, sk.head), (l.key, sk.row)],
            4,
            k,
        );
        b.local_set(l.src);
        emit::linear(b, &[(l.key, 1)], 4, kt);
        b.local_set(l.dst);
        emit::for_range(b, l.row, 0, dims.dim as i64, 1, |b| {
            b.local_get(l.dst).local_get(l.src);
            emit::load(b, fx, 1, 0);
            emit::store(b, fx, 1, 0);
            emit::bump(b, l.src, 4);
            emit::bump(b, l.dst, (4 * dims.keys) as i64);
        });
    });
}

/// Each of the `rows` score rows at `scores` (query rows from
/// `l.first`) plus its mask row, then its softmax in place, as the
/// reference computes it: a row whose every score is -inf (all keys
/// masked) becomes zeros, not NaNs.
fn softmax_rows(
    b: &mut InstrSeqBuilder,
    fx: &Fx,
    l: &Locals,
    dims: &Dims,
    (rows, scores): (usize, u32),
    mask: Option<&(u32, Vec<usize>)>,
    exp: FunctionId,
) {
    let keys = dims.keys;
    emit::for_range(b, l.row, 0, rows as i64, 1, |b| {
        emit::linear(b, &[(l.row, keys)], 4, scores);
        b.local_set(l.dst);
        if let Some((at, s)) = mask {
            // The mask row of (item, head, first + row).
            emit::linear(
                b,
                &[
                    (l.item, s[0]),
                    (l.head, s[1]),
                    (l.first, s[2]),
                    (l.row, s[2]),
                ],
                4,
                *at,
            );
            b.local_set(l.mask);
        }
        b.f32_const(f32::NEG_INFINITY).local_set(l.max);
        let at = |b: &mut InstrSeqBuilder, ptr: LocalId, stride: usize| {
            emit::linear(b, &[(l.key, stride)], 4, 0);
            b.local_get(ptr).binop(BinaryOp::I32Add);
        };
        emit::for_range(b, l.key, 0, keys as i64, 1, |b| {
            at(b, l.dst, 1);
            if mask.is_some() {
                at(b, l.dst, 1);
                emit::load(b, fx, 1, 0);
                at(b, l.mask, mask.map_or(1, |(_, s)| s[3]));
                emit::load(b, fx, 1, 0);
                b.binop(BinaryOp::F32Add);
                emit::store(b, fx, 1, 0);
                at(b, l.dst, 1);
            }
            emit::load(b, fx, 1, 0);
            b.local_get(l.max).binop(BinaryOp::F32Max).local_set(l.max);
        });
        // An all -inf row: e^(x − 0) is 0 everywhere, and so is the sum.
        b.local_get(l.max)
            .f32_const(0.0)
            .local_get(l.max)
            .f32_const(f32::NEG_INFINITY)
            .binop(BinaryOp::F32Ne)
            .select(None)
            .local_set(l.max);
        b.f32_const(0.0).local_set(l.sum);
        emit::for_range(b, l.key, 0, keys as i64, 1, |b| {
            at(b, l.dst, 1);
            at(b, l.dst, 1);
            emit::exp_shifted(b, fx, exp, [l.max, l.e, l.sum]);
        });
        // 1/sum, or 0 when nothing was left.
        b.f32_const(1.0)
            .local_get(l.sum)
            .binop(BinaryOp::F32Div)
            .f32_const(0.0)
            .local_get(l.sum)
            .f32_const(0.0)
            .binop(BinaryOp::F32Gt)
            .select(None)
            .local_set(l.sum);
        emit::for_range(b, l.key, 0, keys as i64, 1, |b| {
            at(b, l.dst, 1);
            at(b, l.dst, 1);
            emit::load(b, fx, 1, 0);
            b.local_get(l.sum).binop(BinaryOp::F32Mul);
            emit::store(b, fx, 1, 0);
        });
    });
}
