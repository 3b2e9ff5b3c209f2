//! Pooling, normalization and softmax: per plane or per row loops, with
//! vectors along the contiguous pixel axis where the work is a plain
//! per-channel affine map.

use walrus::ir::{BinaryOp, UnaryOp};
use walrus::{FunctionBuilder, InstrSeqBuilder, LocalId};
use wpc_ir::{Error, Result};

use super::reduce::{Fold, reduce_row};
use crate::emit::{self, Arith};
use crate::lower::Ctx;
use crate::sizes::{self, Size, Sizes};
use wpc_ir::sym::Expr;

/// Spatial dims (sizes, or a window's parameters) as (height, width), a
/// 1-D axis being width with `fill` for height.
pub(super) fn hw<T: Clone>(v: &[T], fill: T) -> [T; 2] {
    match v {
        [w] => [fill, w.clone()],
        [h, w] => [h.clone(), w.clone()],
        _ => [fill.clone(), fill],
    }
}

/// `MaxPool` / `AveragePool` (1-D and 2-D): one output at a time, taps
/// outside the input skipped (max) or not counted (average, unless
/// `count_include_pad`).
pub fn pool(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    super::require_f32(ctx, &x)?;
    if ctx.wants_output(1) {
        return Err(Error::unsupported("MaxPool indices on WebAssembly"));
    }
    let spatial = x.shape.len() - 2;
    if !(1..=2).contains(&spatial) {
        return Err(Error::unsupported(format!(
            "{} over {spatial} spatial dims on WebAssembly",
            ctx.node.op
        )));
    }
    let params = wpc_ir::ops::params::Pool::of(ctx.attrs(), spatial)?;
    let kernel = &params.kernel;
    let win = wpc_ir::ops::Window::new(ctx.attrs(), &x.shape[2..], kernel)?;
    if !(x.is_static() && out.is_static()) {
        wpc_ir::ops::params::pads_fixed_for_dynamic_sizes(&ctx.node.op, ctx.attrs())?;
    }
    let is_max = ctx.node.op == "MaxPool";
    let include_pad = params.count_include_pad;
    // The planes and image sizes may be dynamic; the window is compiled in.
    let [ih, iw] = hw(&x.dims[2..], Expr::constant(1));
    let [oh, ow] = hw(&out.dims[2..], Expr::constant(1));
    let [kh, kw] = hw(kernel, 1);
    let [sh, sw] = hw(&win.strides, 1);
    let [dh, dw] = hw(&win.dilations, 1);
    let [ph, pw] = hw(&win.pads[..spatial], 0);
    let [pe_h, pe_w] = hw(&win.pads[spatial..], 0);
    let spans = [
        ih.add(&Expr::constant((ph + pe_h) as i64)),
        iw.add(&Expr::constant((pw + pe_w) as i64)),
    ];
    let sizes_of = [
        Expr::product(&x.dims[..2]),
        ih.mul(&iw).scale(4),
        ih,
        iw,
        oh,
        ow,
    ];
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let (p, oy, ox, ky, kx, iy, ix, plane, dst) = (
        fx.i32(),
        fx.i32(),
        fx.i32(),
        fx.i32(),
        fx.i32(),
        fx.i32(),
        fx.i32(),
        fx.i32(),
        fx.i32(),
    );
    let (acc, count, ok) = (fx.f32(), fx.f32(), fx.i32());
    let mut b = f.func_body();
    let mut sizes = Sizes::new(table);
    let [planes, plane_bytes, ih, iw, oh, ow] = sizes_of.map(|e| sizes.of(&mut b, &mut fx, &e));
    let (planes, plane_bytes, ih, iw, oh, ow) = (planes?, plane_bytes?, ih?, iw?, oh?, ow?);
    let [span_h, span_w] = spans.map(|e| sizes.of(&mut b, &mut fx, &e));
    let (span_h, span_w) = (span_h?, span_w?);
    b.i32_const(out.addr as i32).local_set(dst);
    emit::for_size(&mut b, p, Size::Const(0), planes, 1, |b| {
        emit::scaled(b, p, plane_bytes, x.addr);
        b.local_set(plane);
        emit::for_size(b, oy, Size::Const(0), oh, 1, |b| {
            emit::for_size(b, ox, Size::Const(0), ow, 1, |b| {
                b.f32_const(if is_max { f32::NEG_INFINITY } else { 0.0 })
                    .local_set(acc)
                    .f32_const(0.0)
                    .local_set(count);
                emit::for_range(b, ky, 0, kh as i64, 1, |b| {
                    emit::tap_coord(b, iy, oy, sh, ky, dh, ph);
                    emit::for_range(b, kx, 0, kw as i64, 1, |b| {
                        emit::tap_coord(b, ix, ox, sw, kx, dw, pw);
                        // Inside the input?
                        b.local_get(iy);
                        ih.push(b);
                        b.binop(BinaryOp::I32LtU).local_get(ix);
                        iw.push(b);
                        b.binop(BinaryOp::I32LtU)
                            .binop(BinaryOp::I32And)
                            .local_set(ok);
                        b.local_get(acc);
                        emit::load_tap(b, &fx, plane, iy, ix, iw, ok);
                        if is_max {
                            b.binop(BinaryOp::F32Max);
                            b.local_get(acc).local_get(ok).select(None);
                        } else {
                            b.f32_const(0.0)
                                .local_get(ok)
                                .select(None)
                                .binop(BinaryOp::F32Add);
                        }
                        b.local_set(acc);
                        // Counted taps: inside the input, or inside the
                        // padded input with count_include_pad.
                        b.local_get(count);
                        if include_pad {
                            in_padded(b, iy, ph, span_h);
                            in_padded(b, ix, pw, span_w);
                            b.binop(BinaryOp::I32And);
                        } else {
                            b.local_get(ok);
                        }
                        b.unop(UnaryOp::F32ConvertUI32)
                            .binop(BinaryOp::F32Add)
                            .local_set(count);
                    });
                });
                b.local_get(dst).local_get(acc);
                if !is_max {
                    b.local_get(count).binop(BinaryOp::F32Div);
                }
                emit::store(b, &fx, 1, 0);
                emit::bump(b, dst, 4);
            });
        });
    });
    Ok(())
}

/// Pushes whether `coord + pad` lies in `0..span`.
fn in_padded(b: &mut InstrSeqBuilder, coord: LocalId, pad: usize, span: Size) {
    b.local_get(coord)
        .i32_const(pad as i32)
        .binop(BinaryOp::I32Add);
    span.push(b);
    b.binop(BinaryOp::I32LtU);
}

/// `GlobalAveragePool` / `GlobalMaxPool`: one reduction per plane.
pub fn global_pool(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    super::require_f32(ctx, &x)?;
    let is_max = ctx.node.op == "GlobalMaxPool";
    if !is_max && ctx.node.op != "GlobalAveragePool" {
        return Err(Error::unsupported(format!(
            "{} on WebAssembly",
            ctx.node.op
        )));
    }
    // Planes and their area may be dynamic (a batch, an image size).
    let (planes, area) = (Expr::product(&x.dims[..2]), Expr::product(&x.dims[2..]));
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let (p, src, dst, r) = (fx.i32(), fx.i32(), fx.i32(), fx.f32());
    let mut b = f.func_body();
    let mut sizes = Sizes::new(table);
    let (planes, area) = (
        sizes.of(&mut b, &mut fx, &planes)?,
        sizes.of(&mut b, &mut fx, &area)?,
    );
    b.i32_const(x.addr as i32)
        .local_set(src)
        .i32_const(out.addr as i32)
        .local_set(dst);
    emit::for_size(&mut b, p, Size::Const(0), planes, 1, |b| {
        let op = if is_max { Arith::Max } else { Arith::Add };
        reduce_row(b, &mut fx, src, area, Fold::plain(op), r);
        b.local_get(dst).local_get(r);
        if !is_max {
            match area {
                Size::Const(n) => {
                    b.f32_const(n as f32);
                }
                Size::Local(n) => {
                    b.local_get(n).unop(UnaryOp::F32ConvertSI32);
                }
            }
            b.binop(BinaryOp::F32Div);
        }
        emit::store(b, &fx, 1, 0);
        emit::bump(b, dst, 4);
    });
    Ok(())
}

/// y = x·scale[c] + shift[c] over (N, C, pixels), vectors along pixels.
fn channel_affine(
    ctx: &mut Ctx,
    f: &mut FunctionBuilder,
    scale: &[f32],
    shift: &[f32],
) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let channels = x.shape.get(1).copied().unwrap_or(1);
    let area: usize = x.shape.get(2..).map_or(1, |s| s.iter().product());
    let planes = x.shape[0] * channels;
    let (s_at, t_at) = (ctx.weight(scale), ctx.weight(shift));
    let mut fx = ctx.fx();
    let lanes = fx.isa.lanes();
    let (p, c, src, dst, i) = (fx.i32(), fx.i32(), fx.i32(), fx.i32(), fx.i32());
    let (sv, tv, ss, ts) = (fx.vec(lanes), fx.vec(lanes), fx.f32(), fx.f32());
    let mut b = f.func_body();
    b.i32_const(x.addr as i32)
        .local_set(src)
        .i32_const(out.addr as i32)
        .local_set(dst);
    let main = area / lanes * lanes;
    emit::for_range(&mut b, p, 0, planes as i64, 1, |b| {
        b.local_get(p)
            .i32_const(channels as i32)
            .binop(BinaryOp::I32RemU)
            .i32_const(4)
            .binop(BinaryOp::I32Mul)
            .local_set(c);
        for (at, scalar, vector) in [(s_at, ss, sv), (t_at, ts, tv)] {
            b.local_get(c);
            emit::load(b, &fx, 1, at as u64);
            b.local_tee(scalar);
            emit::splat(b, lanes);
            b.local_set(vector);
        }
        let step = |b: &mut InstrSeqBuilder, l: usize, s: LocalId, t: LocalId| {
            b.local_get(dst).local_get(src);
            emit::load(b, &fx, l, 0);
            b.local_get(s);
            emit::arith(b, l, Arith::Mul);
            b.local_get(t);
            emit::arith(b, l, Arith::Add);
            emit::store(b, &fx, l, 0);
            emit::bump(b, src, 4 * l as i64);
            emit::bump(b, dst, 4 * l as i64);
        };
        if main > 0 {
            emit::for_range(b, i, 0, main as i64, lanes as i64, |b| {
                step(b, lanes, sv, tv)
            });
        }
        if main < area {
            emit::for_range(b, i, main as i64, area as i64, 1, |b| step(b, 1, ss, ts));
        }
    });
    Ok(())
}

/// `BatchNormalization` at inference, folded at compile time into one
/// scale and shift per channel.
pub fn batch_norm(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let p = wpc_ir::ops::params::BatchNorm::of(ctx.attrs())?;
    if p.training || ctx.wants_output(1) {
        return Err(Error::unsupported(
            "BatchNormalization in training mode on WebAssembly",
        ));
    }
    let x = ctx.input(0)?;
    super::require_f32(ctx, &x)?;
    let eps = p.epsilon;
    let [scale, bias, mean, var] = [1, 2, 3, 4].map(|i| ctx.constant(i).map(|t| t.to_f32s()));
    let (scale, bias, mean, var) = (scale?, bias?, mean?, var?);
    let s: Vec<f32> = scale
        .iter()
        .zip(&var)
        .map(|(g, v)| g / (v + eps).sqrt())
        .collect();
    let t: Vec<f32> = bias
        .iter()
        .zip(&mean)
        .zip(&s)
        .map(|((b, m), s)| b - m * s)
        .collect();
    channel_affine(ctx, f, &s, &t)
}

/// `Softmax` / `LogSoftmax` along one axis (opset ≥ 13) or over the
/// flattened trailing dims (earlier opsets): max, sum of exponentials,
/// then normalize, per row.
pub fn softmax(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    super::require_f32(ctx, &x)?;
    let log = match ctx.node.op.as_str() {
        "Softmax" => false,
        "LogSoftmax" => true,
        other => return Err(Error::unsupported(format!("{other} on WebAssembly"))),
    };
    // Rows may be dynamic (a softmax over a dynamic batch or sequence);
    // each row's length and layout are compiled in.
    let (_, [outer, len, inner]) =
        wpc_ir::ops::params::SoftmaxRows::extents(ctx.attrs(), ctx.opset, &x.dims, |d| {
            Expr::product(d)
        })?;
    let len = sizes::fixed(&len, "a softmax row of")?;
    let inner = sizes::fixed(&inner, "a softmax row stride of")?;
    let exp = ctx.exp();
    let logf = log.then(|| ctx.log());
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let (o, i, k, src, dst) = (fx.i32(), fx.i32(), fx.i32(), fx.i32(), fx.i32());
    let (m, s, e) = (fx.f32(), fx.f32(), fx.f32());
    let stride = (4 * inner) as i32;
    // Pushes the address of row element k from `ptr`.
    let at = |b: &mut InstrSeqBuilder, ptr: LocalId| {
        b.local_get(k)
            .i32_const(stride)
            .binop(BinaryOp::I32Mul)
            .local_get(ptr)
            .binop(BinaryOp::I32Add);
    };
    let mut b = f.func_body();
    let outer = Sizes::new(table).of(&mut b, &mut fx, &outer)?;
    emit::for_size(&mut b, o, Size::Const(0), outer, 1, |b| {
        emit::for_range(b, i, 0, inner as i64, 1, |b| {
            // src = x + (o·len·inner + i)·4, dst likewise in the output.
            for (ptr, base) in [(src, x.addr), (dst, out.addr)] {
                emit::linear(b, &[(o, len * inner), (i, 1)], 4, base);
                b.local_set(ptr);
            }
            b.f32_const(f32::NEG_INFINITY).local_set(m);
            emit::for_range(b, k, 0, len as i64, 1, |b| {
                at(b, src);
                emit::load(b, &fx, 1, 0);
                b.local_get(m).binop(BinaryOp::F32Max).local_set(m);
            });
            // dst[k] = e^(x[k] − m); s = Σ dst[k]
            b.f32_const(0.0).local_set(s);
            emit::for_range(b, k, 0, len as i64, 1, |b| {
                at(b, dst);
                at(b, src);
                emit::exp_shifted(b, &fx, exp, [m, e, s]);
            });
            if let Some(logf) = logf {
                b.local_get(m)
                    .local_get(s)
                    .call(logf)
                    .binop(BinaryOp::F32Add)
                    .local_set(s);
            }
            emit::for_range(b, k, 0, len as i64, 1, |b| {
                at(b, dst);
                if logf.is_some() {
                    // x[k] − m − log s
                    at(b, src);
                    emit::load(b, &fx, 1, 0);
                    b.local_get(s).binop(BinaryOp::F32Sub);
                } else {
                    at(b, dst);
                    emit::load(b, &fx, 1, 0);
                    b.local_get(s).binop(BinaryOp::F32Div);
                }
                emit::store(b, &fx, 1, 0);
            });
        });
    });
    Ok(())
}

/// `LRN` across channels: x / (bias + alpha/size · Σ x²)^beta over the
/// channel window [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉].
pub fn lrn(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    super::require_f32(ctx, &x)?;
    let wpc_ir::ops::params::Lrn {
        size,
        alpha,
        beta,
        bias,
    } = wpc_ir::ops::params::Lrn::of(ctx.attrs())?;
    let (batch, ch) = (x.shape[0], x.shape[1]);
    let area: usize = x.shape[2..].iter().product();
    let (lo, hi) = ((size - 1) / 2, size.div_ceil(2) - 1);
    let (exp, log) = (ctx.exp(), ctx.log());
    let mut fx = ctx.fx();
    let (n, c, p, j, j0, j1, pix) = (
        fx.i32(),
        fx.i32(),
        fx.i32(),
        fx.i32(),
        fx.i32(),
        fx.i32(),
        fx.i32(),
    );
    let (sq, v) = (fx.f32(), fx.f32());
    let mut b = f.func_body();
    emit::for_range(&mut b, n, 0, batch as i64, 1, |b| {
        emit::for_range(b, c, 0, ch as i64, 1, |b| {
            // The window [max(c − lo, 0), min(c + hi + 1, ch)) as [j0, j1).
            b.local_get(c)
                .i32_const(lo as i32)
                .binop(BinaryOp::I32Sub)
                .local_tee(j0)
                .i32_const(0)
                .local_get(j0)
                .i32_const(0)
                .binop(BinaryOp::I32GtS)
                .select(None)
                .local_set(j0);
            b.local_get(c)
                .i32_const(hi as i32 + 1)
                .binop(BinaryOp::I32Add)
                .local_tee(j1)
                .i32_const(ch as i32)
                .local_get(j1)
                .i32_const(ch as i32)
                .binop(BinaryOp::I32LtS)
                .select(None)
                .local_set(j1);
            emit::for_range(b, p, 0, area as i64, 1, |b| {
                // pix = (n·ch·area + p)·4: channel 0 of this pixel.
                emit::linear(b, &[(n, ch * area), (p, 1)], 4, 0);
                b.local_set(pix);
                b.f32_const(0.0).local_set(sq);
                emit::for_locals(b, j, j0, j1, 1, |b| {
                    b.local_get(j)
                        .i32_const((area * 4) as i32)
                        .binop(BinaryOp::I32Mul)
                        .local_get(pix)
                        .binop(BinaryOp::I32Add);
                    emit::load(b, &fx, 1, x.addr as u64);
                    b.local_tee(v)
                        .local_get(v)
                        .binop(BinaryOp::F32Mul)
                        .local_get(sq)
                        .binop(BinaryOp::F32Add)
                        .local_set(sq);
                });
                // out = x · e^(−beta · log(bias + alpha/size · sq))
                b.local_get(c)
                    .i32_const((area * 4) as i32)
                    .binop(BinaryOp::I32Mul)
                    .local_get(pix)
                    .binop(BinaryOp::I32Add)
                    .local_tee(pix);
                b.local_get(pix);
                emit::load(b, &fx, 1, x.addr as u64);
                b.local_get(sq)
                    .f32_const(alpha / size as f32)
                    .binop(BinaryOp::F32Mul)
                    .f32_const(bias)
                    .binop(BinaryOp::F32Add)
                    .call(log)
                    .f32_const(-beta)
                    .binop(BinaryOp::F32Mul)
                    .call(exp)
                    .binop(BinaryOp::F32Mul);
                emit::store(b, &fx, 1, out.addr as u64);
            });
        });
    });
    Ok(())
}

/// `LayerNormalization` over the trailing dims from `axis`: per row, the
/// mean, the variance about it, then (x − mean) / √(var + ε) · scale + bias
/// (scale and bias broadcast over the row).
pub fn layer_norm(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, scale, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    super::require_f32(ctx, &x)?;
    if ctx.wants_output(1) || ctx.wants_output(2) {
        return Err(Error::unsupported(
            "LayerNormalization mean/inv-std outputs on WebAssembly",
        ));
    }
    let p = wpc_ir::ops::params::LayerNorm::of(ctx.attrs())?;
    let (axis, eps) = (p.axis(x.shape.len())?, p.epsilon);
    // Rows may be dynamic; each row's length is compiled in.
    let rows = Expr::product(&x.dims[..axis]);
    let len = sizes::fixed(&Expr::product(&x.dims[axis..]), "a normalized row of")?;
    if scale.numel() != len {
        return Err(Error::unsupported(
            "LayerNormalization with a scale broadcast within the row",
        ));
    }
    let bias = if ctx.has_input(2) {
        Some(ctx.input(2)?.addr)
    } else {
        None
    };
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let (r, k, src, dst, p) = (fx.i32(), fx.i32(), fx.i32(), fx.i32(), fx.i32());
    let (mean, var, v) = (fx.f32(), fx.f32(), fx.f32());
    let mut b = f.func_body();
    let rows = Sizes::new(table).of(&mut b, &mut fx, &rows)?;
    b.i32_const(x.addr as i32)
        .local_set(src)
        .i32_const(out.addr as i32)
        .local_set(dst);
    emit::for_size(&mut b, r, Size::Const(0), rows, 1, |b| {
        b.local_get(src).local_set(p);
        reduce_row(
            b,
            &mut fx,
            p,
            Size::Const(len as i64),
            Fold::plain(Arith::Add),
            mean,
        );
        b.local_get(mean)
            .f32_const(len as f32)
            .binop(BinaryOp::F32Div)
            .local_set(mean);
        b.f32_const(0.0).local_set(var);
        emit::for_range(b, k, 0, len as i64, 1, |b| {
            b.local_get(k)
                .i32_const(4)
                .binop(BinaryOp::I32Mul)
                .local_get(src)
                .binop(BinaryOp::I32Add);
            emit::load(b, &fx, 1, 0);
            b.local_get(mean)
                .binop(BinaryOp::F32Sub)
                .local_tee(v)
                .local_get(v)
                .binop(BinaryOp::F32Mul)
                .local_get(var)
                .binop(BinaryOp::F32Add)
                .local_set(var);
        });
        // var := 1 / √(var / len + ε)
        b.f32_const(1.0)
            .local_get(var)
            .f32_const(len as f32)
            .binop(BinaryOp::F32Div)
            .f32_const(eps)
            .binop(BinaryOp::F32Add)
            .unop(UnaryOp::F32Sqrt)
            .binop(BinaryOp::F32Div)
            .local_set(var);
        emit::for_range(b, k, 0, len as i64, 1, |b| {
            b.local_get(k)
                .i32_const(4)
                .binop(BinaryOp::I32Mul)
                .local_set(p);
            b.local_get(p).local_get(dst).binop(BinaryOp::I32Add);
            b.local_get(p).local_get(src).binop(BinaryOp::I32Add);
            emit::load(b, &fx, 1, 0);
            b.local_get(mean)
                .binop(BinaryOp::F32Sub)
                .local_get(var)
                .binop(BinaryOp::F32Mul)
                .local_get(p);
            emit::load(b, &fx, 1, scale.addr as u64);
            b.binop(BinaryOp::F32Mul);
            if let Some(at) = bias {
                b.local_get(p);
                emit::load(b, &fx, 1, at as u64);
                b.binop(BinaryOp::F32Add);
            }
            emit::store(b, &fx, 1, 0);
        });
        emit::bump(b, src, 4 * len as i64);
        emit::bump(b, dst, 4 * len as i64);
    });
    Ok(())
}
