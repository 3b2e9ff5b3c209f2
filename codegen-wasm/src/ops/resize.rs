//! `Resize` and `Upsample` as the reference's separable passes
//! ([`wpc_ir::ops::resample_passes`]): the taps (source index, weight)
//! of every output index along an axis come from the reference's own
//! code and are stored as a table, so every coordinate mode, rounding
//! rule and cubic coefficient is defined in one place. A pass computes
//! `out[o, j, i] = Σ w · src[o, index, i]` over output index `j`'s taps,
//! in vectors along the contiguous `i` where there are four or more.

use walrus::ir::{BinaryOp, LoadKind, MemArg};
use walrus::{FunctionBuilder, InstrSeqBuilder, LocalId};
use wpc_ir::{Error, Result, Tensor};

use crate::emit::{self, Fx};
use crate::lower::Ctx;

/// One pass, placed: where it reads and writes and its tap table.
struct Pass {
    src: u32,
    dst: u32,
    outer: usize,
    /// Source rows along the axis, output rows, and elements per row.
    rows_in: usize,
    rows_out: usize,
    inner: usize,
    /// Taps per output row (rows with fewer are padded with weight 0).
    taps: usize,
    /// Per output row and tap: the source row's byte offset (i32) and
    /// its weight (f32).
    table: u32,
}

pub fn resize(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let x = ctx.input(0)?;
    super::require_f32(ctx, &x)?;
    let out = ctx.output(0)?;
    let inputs = ctx.node.inputs.len();
    for i in 1..inputs {
        if ctx.has_input(i) && ctx.opt_constant(i).is_none() && ctx.input_type(i)?.1 != [0] {
            return Err(Error::unsupported(format!(
                "{} input {i} (roi, scales or sizes) that is not a constant",
                ctx.node.op
            )));
        }
    }
    let params: Vec<Option<&Tensor>> = (0..inputs).map(|i| ctx.opt_constant(i)).collect();
    let passes = wpc_ir::ops::resample_passes(ctx.node, ctx.opset, &x.shape, &params)?;
    let mut shape = x.shape.clone();
    let mut src = x.addr;
    let mut placed = Vec::new();
    for (p, pass) in passes.iter().enumerate() {
        let (rows_in, rows_out) = (shape[pass.axis], pass.taps.len());
        let inner: usize = shape[pass.axis + 1..].iter().product();
        let outer: usize = shape[..pass.axis].iter().product();
        // Only tf_crop_and_resize leaves an output row without taps (it
        // holds the extrapolation value, not a sum that could be NaN).
        if pass.taps.iter().any(Vec::is_empty) {
            return Err(Error::unsupported(
                "output rows outside the crop (tf_crop_and_resize's extrapolation)",
            ));
        }
        let taps = pass.taps.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut table = Vec::with_capacity(rows_out * taps * 8);
        for row in &pass.taps {
            for t in 0..taps {
                let (i, w) = row.get(t).copied().unwrap_or((0, 0.0));
                table.extend(((i * inner * 4) as i32).to_le_bytes());
                table.extend((w as f32).to_le_bytes());
            }
        }
        shape[pass.axis] = rows_out;
        let dst = if p + 1 == passes.len() {
            out.addr
        } else {
            ctx.scratch(4 * shape.iter().product::<usize>())
        };
        placed.push(Pass {
            src,
            dst,
            outer,
            rows_in,
            rows_out,
            inner,
            taps,
            table: ctx.data(table),
        });
        src = dst;
    }
    let mut fx = ctx.fx();
    let mut b = f.func_body();
    if placed.is_empty() {
        // Every axis keeps its size and coordinates: a copy.
        b.i32_const(out.addr as i32)
            .i32_const(x.addr as i32)
            .i32_const((4 * x.numel()) as i32)
            .memory_copy(fx.mem, fx.mem);
    }
    for pass in &placed {
        emit_pass(&mut b, &mut fx, pass);
    }
    Ok(())
}

/// The locals of one pass.
struct Locals {
    o: LocalId,
    j: LocalId,
    i: LocalId,
    src: LocalId,
    dst: LocalId,
    tap: LocalId,
    /// Per tap: the source row's address, its weight (scalar and splat).
    rows: Vec<LocalId>,
    weights: Vec<LocalId>,
    splats: Vec<LocalId>,
    acc: LocalId,
    acc1: LocalId,
}

fn emit_pass(b: &mut InstrSeqBuilder, fx: &mut Fx, pass: &Pass) {
    let lanes = if pass.inner >= 4 { fx.isa.lanes() } else { 1 };
    let l = Locals {
        o: fx.i32(),
        j: fx.i32(),
        i: fx.i32(),
        src: fx.i32(),
        dst: fx.i32(),
        tap: fx.i32(),
        rows: (0..pass.taps).map(|_| fx.i32()).collect(),
        weights: (0..pass.taps).map(|_| fx.f32()).collect(),
        splats: (0..pass.taps).map(|_| fx.vec(lanes)).collect(),
        acc: fx.vec(lanes),
        acc1: fx.f32(),
    };
    let mem = fx.mem;
    let row_bytes = 4 * pass.inner;
    b.i32_const(pass.src as i32)
        .local_set(l.src)
        .i32_const(pass.dst as i32)
        .local_set(l.dst);
    emit::for_range(b, l.o, 0, pass.outer as i64, 1, |b| {
        b.i32_const(pass.table as i32).local_set(l.tap);
        emit::for_range(b, l.j, 0, pass.rows_out as i64, 1, |b| {
            for t in 0..pass.taps {
                let at = |offset: usize| MemArg {
                    align: 2,
                    offset: offset as u64,
                };
                b.local_get(l.tap)
                    .load(mem, LoadKind::I32 { atomic: false }, at(8 * t))
                    .local_get(l.src)
                    .binop(BinaryOp::I32Add)
                    .local_set(l.rows[t]);
                b.local_get(l.tap)
                    .load(mem, LoadKind::F32, at(8 * t + 4))
                    .local_tee(l.weights[t]);
                emit::splat(b, lanes);
                b.local_set(l.splats[t]);
            }
            // One row of outputs: vectors, then a scalar tail.
            let main = if lanes == 4 { row_bytes / 16 * 16 } else { 0 };
            let row = |b: &mut InstrSeqBuilder, from: usize, to: usize, n: usize| {
                let (acc, weights) = if n == 4 {
                    (l.acc, &l.splats)
                } else {
                    (l.acc1, &l.weights)
                };
                emit::for_range(b, l.i, from as i64, to as i64, 4 * n as i64, |b| {
                    emit::zero(b, n, acc);
                    for (&weight, &row) in weights.iter().zip(&l.rows) {
                        b.local_get(weight);
                        b.local_get(row).local_get(l.i).binop(BinaryOp::I32Add);
                        emit::load(b, fx, n, 0);
                        emit::madd(b, fx, n, acc);
                    }
                    b.local_get(l.dst).local_get(l.i).binop(BinaryOp::I32Add);
                    b.local_get(acc);
                    emit::store(b, fx, n, 0);
                });
            };
            if main > 0 {
                row(b, 0, main, 4);
            }
            if main < row_bytes {
                row(b, main, row_bytes, 1);
            }
            emit::bump(b, l.dst, row_bytes as i64);
            emit::bump(b, l.tap, 8 * pass.taps as i64);
        });
        emit::bump(b, l.src, (pass.rows_in * row_bytes) as i64);
    });
}
