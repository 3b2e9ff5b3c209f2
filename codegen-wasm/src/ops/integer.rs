//! Integer quantization, as onnxruntime's quantization tools write it:
//! `QuantizeLinear`/`DequantizeLinear` (per tensor or per axis; static
//! QDQ models), and `DynamicQuantizeLinear` with `MatMulInteger`
//! (`quantize_dynamic`). Elements are read and written in their own
//! types (`cast`'s loads and stores) and computed in float64 where the
//! reference does, so results are the reference's bit for bit; every
//! kernel takes dynamic sizes.

use walrus::ir::{BinaryOp, LoadKind, MemArg, StoreKind, UnaryOp};
use walrus::{FunctionBuilder, InstrSeqBuilder, LocalId, ValType};
use wpc_ir::ops::params::Quantization;
use wpc_ir::sym::Expr;
use wpc_ir::{DType, Error, Result};

use super::cast::{load_f64, store_from_f64};
use crate::emit;
use crate::lower::{Ctx, Tt};
use crate::sizes::{Size, Sizes};

const F32: MemArg = MemArg {
    align: 2,
    offset: 0,
};

/// A byte-aligned access `offset` bytes past its address.
fn at(offset: u64) -> MemArg {
    MemArg { align: 0, offset }
}

/// The axis a Q/DQ node's scale runs along (`None`: one scale), refusing
/// blocked parameters.
fn param_axis(ctx: &Ctx, x: &Tt, scale: &Tt) -> Result<Option<usize>> {
    let q = Quantization::of(ctx.attrs())?;
    if q.block_size != 0 {
        return Err(Error::unsupported("blocked quantization parameters"));
    }
    if scale.numel() == 1 && scale.shape.len() <= 1 {
        return Ok(None);
    }
    let axis = wpc_ir::ops::util::norm_axis(q.axis, x.dims.len())?;
    if x.dims[axis].as_const() != Some(scale.numel() as i64) {
        return Err(Error::unsupported(format!(
            "scales that are not one per element of axis {axis} ({} of them, the axis {})",
            scale.numel(),
            x.dims[axis]
        )));
    }
    Ok(Some(axis))
}

/// A Q/DQ node: for every element of input 0 in order, `map` gets the
/// element's value as an f64 on the stack, and the locals holding its
/// scale `s` and zero point `z` (f64; one per tensor, or one per slice
/// along the node's axis), and leaves the f64 to store in the output.
fn with_params(
    ctx: &mut Ctx,
    f: &mut FunctionBuilder,
    x: &Tt,
    out: &Tt,
    map: impl Fn(&mut InstrSeqBuilder, LocalId, LocalId),
) -> Result<()> {
    let scale = ctx.input(1)?;
    let zero = if ctx.has_input(2) {
        Some(ctx.input(2)?)
    } else {
        None
    };
    let axis = param_axis(ctx, x, &scale)?;
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let mem = fx.mem;
    let (o, p, j, src, dst) = (fx.i32(), fx.i32(), fx.i32(), fx.i32(), fx.i32());
    let (s, z) = (fx.locals.add(ValType::F64), fx.locals.add(ValType::F64));
    let mut b = f.func_body();
    let (outer, along, inner) = match axis {
        None => (Expr::constant(1), Expr::constant(1), Expr::product(&x.dims)),
        Some(a) => (
            Expr::product(&x.dims[..a]),
            x.dims[a].clone(),
            Expr::product(&x.dims[a + 1..]),
        ),
    };
    let [outer, along, inner]: [Size; 3] = Sizes::new(table)
        .all(&mut b, &mut fx, &[outer, along, inner])?
        .try_into()
        .expect("three sizes");
    b.i32_const(x.addr as i32)
        .local_set(src)
        .i32_const(out.addr as i32)
        .local_set(dst);
    let (xs, os) = (x.dtype.size() as i64, out.dtype.size() as i64);
    emit::for_size(&mut b, o, Size::Const(0), outer, 1, |b| {
        emit::for_size(b, p, Size::Const(0), along, 1, |b| {
            load_param(b, mem, Some(&scale), Some(p), s);
            load_param(b, mem, zero.as_ref(), Some(p), z);
            emit::for_size(b, j, Size::Const(0), inner, 1, |b| {
                b.local_get(dst).local_get(src);
                load_f64(b, mem, x.dtype);
                map(b, s, z);
                store_from_f64(b, mem, out.dtype);
                emit::bump(b, src, xs);
                emit::bump(b, dst, os);
            });
        });
    });
    Ok(())
}

/// Loads element `p` of the parameter `t` (its only element when it has
/// one; absent: 0) into the f64 `into`.
fn load_param(
    b: &mut InstrSeqBuilder,
    mem: walrus::MemoryId,
    t: Option<&Tt>,
    p: Option<LocalId>,
    into: LocalId,
) {
    match t {
        Some(t) => {
            match p.filter(|_| t.numel() != 1) {
                Some(p) => emit::addr(b, t.addr, p, t.dtype.size() as u32),
                None => {
                    b.i32_const(t.addr as i32);
                }
            }
            load_f64(b, mem, t.dtype);
        }
        None => {
            b.f64_const(0.0);
        }
    }
    b.local_set(into);
}

/// `DequantizeLinear`: `(x − zero_point) · scale`.
pub fn dequantize(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    if out.dtype != DType::F32 || x.dtype.is_float() {
        return Err(Error::unsupported(format!(
            "DequantizeLinear from {} to {}",
            x.dtype, out.dtype
        )));
    }
    with_params(ctx, f, &x, &out, |b, s, z| {
        b.local_get(z)
            .binop(BinaryOp::F64Sub)
            .local_get(s)
            .binop(BinaryOp::F64Mul);
    })
}

/// `QuantizeLinear`: `saturate(round_half_even(x / scale) + zero_point)`,
/// the quotient rounded to float32 first for float32 `x` (as the
/// reference does).
pub fn quantize(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    if x.dtype != DType::F32 {
        return Err(Error::unsupported(format!("QuantizeLinear of {}", x.dtype)));
    }
    let (lo, hi) = out
        .dtype
        .int_range()
        .ok_or_else(|| Error::unsupported(format!("QuantizeLinear to {}", out.dtype)))?;
    with_params(ctx, f, &x, &out, |b, s, z| {
        b.local_get(s)
            .binop(BinaryOp::F64Div)
            .unop(UnaryOp::F32DemoteF64)
            .unop(UnaryOp::F64PromoteF32)
            .unop(UnaryOp::F64Nearest)
            .local_get(z)
            .binop(BinaryOp::F64Add)
            .f64_const(lo)
            .binop(BinaryOp::F64Max)
            .f64_const(hi)
            .binop(BinaryOp::F64Min);
    })
}

/// `DynamicQuantizeLinear`: the range of `x` (held to include 0) gives
/// `scale = (max − min) / 255` and the zero point `round(−min / scale)`
/// (0 for an all-zero tensor); then each element is
/// `clamp(round(x / scale) + zero_point, 0, 255)`, in float32 as the
/// reference computes it.
pub fn dynamic_quantize(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    if x.dtype != DType::F32 {
        return Err(Error::unsupported(format!(
            "DynamicQuantizeLinear of {}",
            x.dtype
        )));
    }
    let scale_out = if ctx.wants_output(1) {
        Some(ctx.output(1)?)
    } else {
        None
    };
    let zero_out = if ctx.wants_output(2) {
        Some(ctx.output(2)?)
    } else {
        None
    };
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let mem = fx.mem;
    let (i, src, dst) = (fx.i32(), fx.i32(), fx.i32());
    let (lo, hi, s, z) = (fx.f32(), fx.f32(), fx.f32(), fx.f32());
    let mut b = f.func_body();
    let n = Sizes::new(table).of(&mut b, &mut fx, &Expr::product(&x.dims))?;
    b.f32_const(0.0).local_set(lo).f32_const(0.0).local_set(hi);
    b.i32_const(x.addr as i32).local_set(src);
    emit::for_size(&mut b, i, Size::Const(0), n, 1, |b| {
        for (acc, op) in [(lo, BinaryOp::F32Min), (hi, BinaryOp::F32Max)] {
            b.local_get(acc)
                .local_get(src)
                .load(mem, LoadKind::F32, F32)
                .binop(op)
                .local_set(acc);
        }
        emit::bump(b, src, 4);
    });
    // s = (hi − lo) / 255; z = s != 0 ? clamp(nearest(−lo / s), 0, 255) : 0
    b.local_get(hi)
        .local_get(lo)
        .binop(BinaryOp::F32Sub)
        .f32_const(255.0)
        .binop(BinaryOp::F32Div)
        .local_set(s);
    b.f32_const(0.0)
        .local_get(lo)
        .binop(BinaryOp::F32Sub)
        .local_get(s)
        .binop(BinaryOp::F32Div)
        .unop(UnaryOp::F32Nearest)
        .f32_const(0.0)
        .binop(BinaryOp::F32Max)
        .f32_const(255.0)
        .binop(BinaryOp::F32Min)
        .f32_const(0.0)
        .local_get(s)
        .f32_const(0.0)
        .binop(BinaryOp::F32Ne)
        .select(None)
        .local_set(z);
    if let Some(t) = &scale_out {
        b.i32_const(t.addr as i32)
            .local_get(s)
            .store(mem, StoreKind::F32, F32);
    }
    if let Some(t) = &zero_out {
        b.i32_const(t.addr as i32)
            .local_get(z)
            .unop(UnaryOp::F64PromoteF32);
        store_from_f64(&mut b, mem, t.dtype);
    }
    b.i32_const(x.addr as i32)
        .local_set(src)
        .i32_const(out.addr as i32)
        .local_set(dst);
    emit::for_size(&mut b, i, Size::Const(0), n, 1, |b| {
        // s != 0 ? clamp(nearest(x / s) + z, 0, 255) : z
        b.local_get(dst)
            .local_get(src)
            .load(mem, LoadKind::F32, F32)
            .local_get(s)
            .binop(BinaryOp::F32Div)
            .unop(UnaryOp::F32Nearest)
            .local_get(z)
            .binop(BinaryOp::F32Add)
            .f32_const(0.0)
            .binop(BinaryOp::F32Max)
            .f32_const(255.0)
            .binop(BinaryOp::F32Min)
            .local_get(z)
            .local_get(s)
            .f32_const(0.0)
            .binop(BinaryOp::F32Ne)
            .select(None)
            .unop(UnaryOp::F64PromoteF32);
        store_from_f64(b, mem, out.dtype);
        emit::bump(b, src, 4);
        emit::bump(b, dst, out.dtype.size() as i64);
    });
    Ok(())
}

/// `MatMulInteger` by a 2-D `B`: `Y[r, n] = Σₖ (A[r, k] − a_zero) ·
/// (B[k, n] − b_zero[n])`, summed exactly (on SIMD variants with a
/// constant B of 8-bit codes, in i32 lanes by [`IntegerProduct`]; else
/// in float64, which holds every
/// partial sum of 8-bit products exactly) and stored as int32. `A`'s
/// zero point is one value; `B`'s one, or one per column.
pub fn matmul_integer(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (a, out) = (ctx.input(0)?, ctx.output(0)?);
    if a.dims.len() < 2 {
        return Err(Error::unsupported(
            "MatMulInteger with an A of rank below 2",
        ));
    }
    // A constant B is placed only if the kernel reads it as it is (see
    // `pair_panels`).
    let constant_b = ctx.opt_constant(1);
    let b_rank = match constant_b {
        Some(t) => t.rank(),
        None => ctx.input(1)?.dims.len(),
    };
    if b_rank != 2 {
        return Err(Error::unsupported("MatMulInteger with a B that is not 2-D"));
    }
    let (b_dtype, kk, nn) = match constant_b {
        Some(t) => (t.dtype(), t.shape()[0], t.shape()[1]),
        None => {
            let bm = ctx.input(1)?;
            (
                bm.dtype,
                crate::sizes::fixed(&bm.dims[0], "MatMulInteger's K")?,
                crate::sizes::fixed(&bm.dims[1], "MatMulInteger's N")?,
            )
        }
    };
    if a.dims[a.dims.len() - 1].as_const() != Some(kk as i64) {
        return Err(Error::unsupported(format!(
            "MatMulInteger whose A rows ({}) are not B's {kk}",
            a.dims[a.dims.len() - 1]
        )));
    }
    let za = if ctx.has_input(2) {
        Some(ctx.input(2)?)
    } else {
        None
    };
    let zb = if ctx.has_input(3) {
        Some(ctx.input(3)?)
    } else {
        None
    };
    if za.as_ref().is_some_and(|z| z.numel() != 1)
        || zb
            .as_ref()
            .is_some_and(|z| z.numel() != 1 && z.numel() != nn)
    {
        return Err(Error::unsupported(
            "MatMulInteger zero points other than one value (A) or one per column (B)",
        ));
    }
    let mut operands = IntegerProduct {
        a: a.dtype,
        b: (0, b_dtype),
        zb: zb.as_ref().map(|z| (z.addr, z.dtype, z.numel() == 1)),
        k: kk,
    };
    // Columns the vector kernel takes, in blocks of 8 laid out at compile
    // time (`pair_panels`); the rest are summed one by one, from B as it
    // is (placed only if there are any).
    let in_blocks = match constant_b {
        Some(_) if operands.vectorizes(ctx.isa) => nn - nn % 8,
        _ => 0,
    };
    if let Some(t) = constant_b.filter(|_| in_blocks > 0) {
        operands.b.0 = ctx.weight_bytes(pair_panels(&t.to_le_bytes(), kk, nn));
    }
    let b_addr = match in_blocks < nn {
        true => ctx.input(1)?.addr,
        false => 0,
    };
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let mem = fx.mem;
    let (r, n, k, arow, orow) = (fx.i32(), fx.i32(), fx.i32(), fx.i32(), fx.i32());
    let (acc, zav, zbv) = (
        fx.locals.add(ValType::F64),
        fx.locals.add(ValType::F64),
        fx.locals.add(ValType::F64),
    );
    let mut b = f.func_body();
    let rows =
        Sizes::new(table).of(&mut b, &mut fx, &Expr::product(&a.dims[..a.dims.len() - 1]))?;
    load_param(&mut b, mem, za.as_ref(), None, zav);
    let (asz, bsz) = (a.dtype.size() as i64, b_dtype.size() as u32);
    let vector = (in_blocks > 0).then(|| VectorLocals::new(&mut fx));
    b.i32_const(a.addr as i32)
        .local_set(arow)
        .i32_const(out.addr as i32)
        .local_set(orow);
    emit::for_size(&mut b, r, Size::Const(0), rows, 1, |b| {
        if let Some(v) = &vector {
            operands.blocks(b, mem, v, (arow, orow, zav), in_blocks);
        }
        emit::for_range(b, n, in_blocks as i64, nn as i64, 1, |b| {
            load_param(b, mem, zb.as_ref(), Some(n), zbv);
            b.f64_const(0.0).local_set(acc);
            emit::for_range(b, k, 0, kk as i64, 1, |b| {
                // acc += (A[r, k] − za) · (B[k, n] − zb)
                b.local_get(acc);
                emit::addr(b, 0, k, asz as u32);
                b.local_get(arow).binop(BinaryOp::I32Add);
                load_f64(b, mem, a.dtype);
                b.local_get(zav).binop(BinaryOp::F64Sub);
                emit::linear(b, &[(k, nn), (n, 1)], bsz as usize, b_addr);
                load_f64(b, mem, b_dtype);
                b.local_get(zbv)
                    .binop(BinaryOp::F64Sub)
                    .binop(BinaryOp::F64Mul)
                    .binop(BinaryOp::F64Add)
                    .local_set(acc);
            });
            emit::addr(b, 0, n, out.dtype.size() as u32);
            b.local_get(orow).binop(BinaryOp::I32Add).local_get(acc);
            store_from_f64(b, mem, out.dtype);
        });
        emit::bump(b, arow, kk as i64 * asz);
        emit::bump(b, orow, nn as i64 * out.dtype.size() as i64);
    });
    Ok(())
}

/// A `MatMulInteger` by a constant 2-D `B` of 8-bit codes: where things
/// are and what they are, for the vector kernel.
struct IntegerProduct {
    a: DType,
    /// Where [`pair_panels`] put B, and its type.
    b: (u32, DType),
    /// `B`'s zero point: address, type, and whether it is one value.
    zb: Option<(u32, DType, bool)>,
    k: usize,
}

/// B (`k × n` bytes, row-major) as the vector kernel reads it: for each
/// whole block of 8 columns, for each pair of rows `(2p, 2p + 1)`, 16
/// bytes `B[2p, c], B[2p + 1, c]` for its columns `c` in turn (a row
/// past `k` reads 0, and the kernel gives it no weight). Each block is
/// `⌈k/2⌉ · 16` bytes, read in order.
fn pair_panels(b: &[u8], k: usize, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(k.div_ceil(2) * 2 * n);
    for block in (0..n - n % 8).step_by(8) {
        for pair in (0..k).step_by(2) {
            for c in block..block + 8 {
                out.push(b[pair * n + c]);
                out.push(if pair + 1 < k {
                    b[(pair + 1) * n + c]
                } else {
                    0
                });
            }
        }
    }
    out
}

/// The vector kernel's locals.
struct VectorLocals {
    n: LocalId,
    k: LocalId,
    za: LocalId,
    a_at: LocalId,
    b_at: LocalId,
    a_pair: LocalId,
    zb_low: LocalId,
    zb_high: LocalId,
    b_codes: LocalId,
    low: LocalId,
    high: LocalId,
}

impl VectorLocals {
    fn new(fx: &mut emit::Fx) -> VectorLocals {
        let v128 = |fx: &mut emit::Fx| fx.locals.add(ValType::V128);
        VectorLocals {
            n: fx.i32(),
            k: fx.i32(),
            za: fx.i32(),
            a_at: fx.i32(),
            b_at: fx.i32(),
            a_pair: v128(fx),
            zb_low: v128(fx),
            zb_high: v128(fx),
            b_codes: v128(fx),
            low: v128(fx),
            high: v128(fx),
        }
    }
}

impl IntegerProduct {
    /// Whether the vector kernel computes this product exactly: SIMD, both
    /// operands 8-bit (so `code − zero` fits an i16 and a product an i32),
    /// and K short enough that the i32 sums cannot wrap.
    fn vectorizes(&self, isa: emit::Isa) -> bool {
        let bytes = |t: DType| matches!(t, DType::U8 | DType::I8);
        isa != emit::Isa::Scalar
            && bytes(self.a)
            && bytes(self.b.1)
            && self.zb.is_none_or(|(_, t, _)| bytes(t))
            && (self.k as u64) * 255 * 255 < i32::MAX as u64
    }

    /// Columns `0 .. columns` (a multiple of 8) of one output row: for
    /// each block of 8, `Σₖ (A[r, k] − za) · (B[k, n..n + 8] − zb)` two
    /// rows of B at a time. A pair's codes of 4 columns are widened to
    /// i16 lanes `b_kc, b_k+1,c`, and `i32x4.dot_i16x8_s` against A's two
    /// codes gives each column's `a_k·b_kc + a_k+1·b_k+1,c` in an i32
    /// lane: exact, as the reference is. `arow` and `orow` address the
    /// row of A and of the output; `za` is A's zero point as f64.
    fn blocks(
        &self,
        b: &mut InstrSeqBuilder,
        mem: walrus::MemoryId,
        v: &VectorLocals,
        (arow, orow, za): (LocalId, LocalId, LocalId),
        columns: usize,
    ) {
        b.local_get(za).unop(UnaryOp::I32TruncSF64).local_set(v.za);
        emit::for_range(b, v.n, 0, columns as i64, 8, |b| {
            // B's zero points for these 8 columns as i16 lanes, each
            // twice (for both rows of a pair): columns 0–3, then 4–7.
            match self.zb {
                Some((addr, t, false)) => {
                    b.local_get(v.n)
                        .load_simd(mem, widen(t), at(u64::from(addr)))
                        .local_tee(v.zb_high)
                        .local_get(v.zb_high)
                        .i8x16_shuffle(doubled_lanes(0))
                        .local_set(v.zb_low)
                        .local_get(v.zb_high)
                        .local_get(v.zb_high)
                        .i8x16_shuffle(doubled_lanes(4))
                        .local_set(v.zb_high);
                }
                Some((addr, t, true)) => {
                    b.i32_const(0)
                        .load(mem, byte(t), at(u64::from(addr)))
                        .unop(UnaryOp::I16x8Splat)
                        .local_tee(v.zb_low)
                        .local_set(v.zb_high);
                }
                None => {
                    b.const_(walrus::ir::Value::V128(0))
                        .local_tee(v.zb_low)
                        .local_set(v.zb_high);
                }
            }
            b.const_(walrus::ir::Value::V128(0))
                .local_tee(v.low)
                .local_set(v.high);
            b.local_get(arow).local_set(v.a_at);
            // Block n/8 starts n/8 · ⌈K/2⌉ · 16 bytes in.
            b.local_get(v.n)
                .i32_const(2 * self.k.div_ceil(2) as i32)
                .binop(BinaryOp::I32Mul)
                .i32_const(self.b.0 as i32)
                .binop(BinaryOp::I32Add)
                .local_set(v.b_at);
            emit::for_range(b, v.k, 0, self.k as i64 / 2, 1, |b| {
                self.pair_step(b, mem, v, true)
            });
            if self.k % 2 == 1 {
                self.pair_step(b, mem, v, false);
            }
            for (half, sum) in [(0u64, v.low), (16, v.high)] {
                emit::addr(b, 0, v.n, 4);
                b.local_get(orow)
                    .binop(BinaryOp::I32Add)
                    .local_get(sum)
                    .store(mem, StoreKind::V128, at(half));
            }
        });
    }

    /// Adds rows `k` and `k + 1` of the product to the sums (only row
    /// `k`, the last of an odd K, when `!both`: A's second code is then
    /// 0), and moves past them.
    fn pair_step(
        &self,
        b: &mut InstrSeqBuilder,
        mem: walrus::MemoryId,
        v: &VectorLocals,
        both: bool,
    ) {
        // (a_k − za) in the low 16 bits of each i32 lane, (a_k+1 − za)
        // in the high 16.
        b.local_get(v.a_at)
            .load(mem, byte(self.a), at(0))
            .local_get(v.za)
            .binop(BinaryOp::I32Sub)
            .i32_const(0xffff)
            .binop(BinaryOp::I32And);
        if both {
            b.local_get(v.a_at)
                .load(mem, byte(self.a), at(1))
                .local_get(v.za)
                .binop(BinaryOp::I32Sub)
                .i32_const(16)
                .binop(BinaryOp::I32Shl)
                .binop(BinaryOp::I32Or);
        }
        b.unop(UnaryOp::I32x4Splat).local_set(v.a_pair);
        b.local_get(v.b_at)
            .load(mem, LoadKind::V128, at(0))
            .local_set(v.b_codes);
        let (low, high) = match self.b.1 {
            DType::I8 => (UnaryOp::I16x8WidenLowI8x16S, UnaryOp::I16x8WidenHighI8x16S),
            _ => (UnaryOp::I16x8WidenLowI8x16U, UnaryOp::I16x8WidenHighI8x16U),
        };
        for (extend, zero, sum) in [(low, v.zb_low, v.low), (high, v.zb_high, v.high)] {
            b.local_get(v.b_codes)
                .unop(extend)
                .local_get(zero)
                .binop(BinaryOp::I16x8Sub)
                .local_get(v.a_pair)
                .binop(BinaryOp::I32x4DotI16x8S)
                .local_get(sum)
                .binop(BinaryOp::I32x4Add)
                .local_set(sum);
        }
        emit::bump(b, v.a_at, if both { 2 } else { 1 });
        emit::bump(b, v.b_at, 16);
    }
}

/// Loads 8 bytes of type `t` as i16 lanes.
fn widen(t: DType) -> walrus::ir::LoadSimdKind {
    match t {
        DType::I8 => walrus::ir::LoadSimdKind::V128Load8x8S,
        _ => walrus::ir::LoadSimdKind::V128Load8x8U,
    }
}

/// Loads one byte of type `t` as an i32.
fn byte(t: DType) -> LoadKind {
    LoadKind::I32_8 {
        kind: match t {
            DType::I8 => walrus::ir::ExtendedLoad::SignExtend,
            _ => walrus::ir::ExtendedLoad::ZeroExtend,
        },
    }
}

/// The shuffle that repeats i16 lanes `first .. first + 4` of a vector
/// twice each: `[x₀, x₀, x₁, x₁, …]`.
fn doubled_lanes(first: u8) -> [u8; 16] {
    let mut indices = [0u8; 16];
    for j in 0..4u8 {
        let lane = 2 * (first + j);
        let at = 4 * j as usize;
        indices[at..at + 4].copy_from_slice(&[lane, lane + 1, lane, lane + 1]);
    }
    indices
}
