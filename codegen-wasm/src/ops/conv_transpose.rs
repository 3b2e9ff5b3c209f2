//! `ConvTranspose` (1-D and 2-D) as a GEMM and a scatter (col2im): per
//! batch item and group, `col = Wᵀ·x` gives every kernel tap's
//! contribution at every input pixel (the GEMM of [`super::gemm`], with
//! Wᵀ laid out at compile time), then each tap's plane is added into the
//! output at the pixels it lands on, over the output that starts as the
//! bias. The taps are unrolled, so the input rows and columns a tap
//! lands inside the output are known at compile time and the scatter
//! never tests a bound.

use walrus::ir::BinaryOp;
use walrus::{FunctionBuilder, InstrSeqBuilder, LocalId};
use wpc_ir::ops::params::ConvTranspose;
use wpc_ir::{Error, Result};

use super::gemm::{Gemm, emit_gemm};
use crate::emit::{self, Arith, Fx};
use crate::lower::Ctx;
use crate::sizes::Size;

/// The 2-D geometry (1-D as height 1) of one ConvTranspose.
struct Geometry {
    input: [usize; 2],
    kernel: [usize; 2],
    output: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: [i64; 2],
}

impl Geometry {
    /// The input positions along `axis` whose tap `k` lands inside the
    /// output, and the output position of the first of them.
    fn landing(&self, axis: usize, k: usize) -> Option<(usize, usize, usize)> {
        let (s, n_in, n_out) = (
            self.stride[axis] as i64,
            self.input[axis] as i64,
            self.output[axis] as i64,
        );
        // o = i·s + k·d − p must satisfy 0 ≤ o < n_out.
        let shift = k as i64 * self.dilation[axis] as i64 - self.pad[axis];
        let lo = ((-shift).max(0) + s - 1) / s;
        let hi = ((n_out - 1 - shift).div_euclid(s) + 1).min(n_in);
        (lo < hi).then(|| (lo as usize, hi as usize, (lo * s + shift) as usize))
    }
}

pub fn conv_transpose(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    super::require_f32(ctx, &x)?;
    let w = ctx.constant(1)?;
    let spatial = x.shape.len() - 2;
    if !(1..=2).contains(&spatial) {
        return Err(Error::unsupported(format!(
            "ConvTranspose over {spatial} spatial dims"
        )));
    }
    let p = ConvTranspose::of(ctx.attrs(), spatial)?;
    let kernel = &w.shape()[2..];
    let win = p.window(&x.shape[2..], kernel);
    let two = |v: &[usize], fill: usize| -> [usize; 2] {
        if v.len() == 1 {
            [fill, v[0]]
        } else {
            [v[0], v[1]]
        }
    };
    let positive = |v: &[i64]| v.iter().map(|&s| s as usize).collect::<Vec<_>>();
    let geo = Geometry {
        input: two(&x.shape[2..], 1),
        kernel: two(kernel, 1),
        output: two(&win.out, 1),
        stride: two(&positive(&p.strides), 1),
        dilation: two(&positive(&p.dilations), 1),
        pad: if spatial == 1 {
            [0, win.pads[0]]
        } else {
            [win.pads[0], win.pads[1]]
        },
    };
    let groups = p.group;
    let (batch, cin) = (x.shape[0], x.shape[1]);
    let (cg, mg) = (cin / groups, w.shape()[1]);
    let cout = mg * groups;
    let taps = geo.kernel[0] * geo.kernel[1];
    let pixels = geo.input[0] * geo.input[1];
    let plane = geo.output[0] * geo.output[1];
    if out.shape[1] != cout || cg * groups != cin {
        return Err(Error::invalid(
            "ConvTranspose channels do not match its weights",
        ));
    }
    // Per group, Wᵀ: rows (output channel, tap), columns input channels.
    let wv = w.to_f32s();
    let mut a = vec![0.0; groups * mg * taps * cg];
    for g in 0..groups {
        for ci in 0..cg {
            for r in 0..mg * taps {
                a[(g * mg * taps + r) * cg + ci] = wv[((g * cg + ci) * mg) * taps + r];
            }
        }
    }
    let a_at = ctx.weight(&a);
    let bias = match ctx.has_input(2) {
        true => Some(ctx.weight(&ctx.constant(2)?.to_f32s())),
        false => None,
    };
    let col = ctx.scratch(4 * mg * taps * pixels);
    let mut fx = ctx.fx();
    let gemm = Gemm {
        m: Size::Const((mg * taps) as i64),
        n: pixels,
        k: cg,
        a: fx.i32(),
        lda: cg,
        b: fx.i32(),
        ldb: pixels,
        packed: false,
        c: fx.i32(),
        ldc: pixels,
        alpha: 1.0,
        bias: None,
        tail: None,
    };
    let l = Locals {
        item: fx.i32(),
        group: fx.i32(),
        dst_group: fx.i32(),
        channel: fx.i32(),
        row: fx.i32(),
        col: fx.i32(),
        src: fx.i32(),
        dst: fx.i32(),
        bias: fx.f32(),
    };
    let mut b = f.func_body();
    emit::for_range(&mut b, l.item, 0, batch as i64, 1, |b| {
        emit::for_range(b, l.group, 0, groups as i64, 1, |b| {
            emit::linear(b, &[(l.group, mg * taps * cg * 4)], 1, a_at);
            b.local_set(gemm.a);
            emit::linear(b, &[(l.item, cin), (l.group, cg)], pixels * 4, x.addr);
            b.local_set(gemm.b);
            b.i32_const(col as i32).local_set(gemm.c);
            emit_gemm(b, &mut fx, &gemm);
            emit::linear(b, &[(l.item, cout), (l.group, mg)], plane * 4, out.addr);
            b.local_set(l.dst_group);
            start_planes(b, &fx, &l, (mg, plane), bias);
            for ky in 0..geo.kernel[0] {
                for kx in 0..geo.kernel[1] {
                    scatter_tap(b, &fx, &l, &geo, (ky, kx), (mg, col));
                }
            }
        });
    });
    Ok(())
}

/// The locals of one ConvTranspose.
struct Locals {
    item: LocalId,
    group: LocalId,
    /// The group's first output plane.
    dst_group: LocalId,
    channel: LocalId,
    row: LocalId,
    col: LocalId,
    src: LocalId,
    dst: LocalId,
    bias: LocalId,
}

/// The group's `channels` output planes of `plane` elements start as
/// their channel's bias (group `l.group`'s), or zero.
fn start_planes(
    b: &mut InstrSeqBuilder,
    fx: &Fx,
    l: &Locals,
    (channels, plane): (usize, usize),
    bias: Option<u32>,
) {
    let Some(bias) = bias else {
        b.local_get(l.dst_group)
            .i32_const(0)
            .i32_const((4 * channels * plane) as i32)
            .memory_fill(fx.mem);
        return;
    };
    b.local_get(l.dst_group).local_set(l.dst);
    emit::for_range(b, l.channel, 0, channels as i64, 1, |b| {
        emit::linear(b, &[(l.group, channels), (l.channel, 1)], 4, bias);
        emit::load(b, fx, 1, 0);
        b.local_set(l.bias);
        emit::for_range(b, l.col, 0, plane as i64, 1, |b| {
            b.local_get(l.dst).local_get(l.bias);
            emit::store(b, fx, 1, 0);
            emit::bump(b, l.dst, 4);
        });
    });
}

/// Adds tap (ky, kx)'s rows of `col` into the output planes: input pixel
/// (iy, ix) lands at (iy·sy + ky·dy − py, ix·sx + kx·dx − px), over the
/// input rows and columns that land inside.
fn scatter_tap(
    b: &mut InstrSeqBuilder,
    fx: &Fx,
    l: &Locals,
    geo: &Geometry,
    (ky, kx): (usize, usize),
    (channels, col): (usize, u32),
) {
    let (Some((y0, y1, oy0)), Some((x0, x1, ox0))) = (geo.landing(0, ky), geo.landing(1, kx))
    else {
        return;
    };
    let [ih, iw] = geo.input;
    let [oh, ow] = geo.output;
    let taps = geo.kernel[0] * geo.kernel[1];
    let tap = ky * geo.kernel[1] + kx;
    let [sy, sx] = geo.stride;
    emit::for_range(b, l.channel, 0, channels as i64, 1, |b| {
        emit::for_range(b, l.row, 0, (y1 - y0) as i64, 1, |b| {
            // src = col[(c·taps + tap)][(y0 + row)·iw + x0]
            let first_src = col as usize + 4 * (tap * ih * iw + y0 * iw + x0);
            emit::linear(
                b,
                &[(l.channel, taps * ih * iw), (l.row, iw)],
                4,
                first_src as u32,
            );
            b.local_set(l.src);
            // dst = plane c at (oy0 + row·sy, ox0)
            emit::linear(b, &[(l.channel, oh * ow), (l.row, sy * ow)], 4, 0);
            b.local_get(l.dst_group)
                .binop(BinaryOp::I32Add)
                .i32_const((4 * (oy0 * ow + ox0)) as i32)
                .binop(BinaryOp::I32Add)
                .local_set(l.dst);
            emit::for_range(b, l.col, 0, (x1 - x0) as i64, 1, |b| {
                b.local_get(l.dst).local_get(l.dst);
                emit::load(b, fx, 1, 0);
                b.local_get(l.src);
                emit::load(b, fx, 1, 0);
                emit::arith(b, 1, Arith::Add);
                emit::store(b, fx, 1, 0);
                emit::bump(b, l.src, 4);
                emit::bump(b, l.dst, 4 * sx as i64);
            });
        });
    });
}
