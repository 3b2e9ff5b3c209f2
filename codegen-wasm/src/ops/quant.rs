//! Packed low-bit weights (`wpc_ir::packed`): `MatMulNBits` and
//! `GatherBlockQuantized`. The codes stay packed in linear memory, in the
//! padded words WebGPU binds (one blob in the bundle for both backends).
//! `MatMulNBits` dequantizes one panel of 8 output columns at a time (K × 8
//! floats of scratch) and runs the GEMM micro-kernel on it, so no float
//! copy of the weight exists beyond one panel; `GatherBlockQuantized`
//! dequantizes the gathered rows straight into its output.

use walrus::ir::{BinaryOp, ExtendedLoad, LoadKind, LoadSimdKind, MemArg, StoreKind, UnaryOp};
use walrus::{FunctionBuilder, InstrSeqBuilder, LocalId};
use wpc_ir::ops::params::{GatherBlockQuantized, MatMulNBits};
use wpc_ir::ops::quant::weight_of;
use wpc_ir::packed::{Layout, Weight};
use wpc_ir::sym::Expr;
use wpc_ir::{DType, Error, Result};

use super::gemm::{Gemm, Place, emit_gemm};
use super::half::Half;
use crate::emit::{self, Fx};
use crate::lower::Ctx;
use crate::sizes::Sizes;

/// Output columns dequantized per GEMM.
const PANEL: usize = 8;

/// Where one weight's packed data sits in linear memory, and its shape.
struct Packed {
    codes: u32,
    scales: u32,
    /// The zero point per block, as a float: a value is
    /// `(q − zero) · scale`, in float32 as the reference computes it.
    zeros: u32,
    rows: usize,
    k: usize,
    bits: u32,
    block: usize,
    blocks: usize,
    row_bits: usize,
}

impl Packed {
    /// Lays out a constant weight's codes, scales and zero points in
    /// linear memory.
    fn place(ctx: &mut Ctx, weight: &Weight) -> Packed {
        let layout = weight.layout;
        let blocks = layout.blocks();
        let zeros: Vec<f32> = (0..layout.rows * blocks)
            .map(|g| weight.zero_point(g / blocks, g % blocks))
            .collect();
        // Padded to whole words and one more, which also covers the 16-bit
        // loads of the last codes.
        let padded: Vec<u8> = wpc_ir::packed::words(weight.codes)
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        Packed {
            codes: ctx.weight_bytes(padded),
            scales: ctx.weight(&weight.scales),
            zeros: ctx.weight(&zeros),
            rows: layout.rows,
            k: layout.k,
            bits: layout.bits,
            block: layout.block,
            blocks,
            row_bits: layout.row_bytes * 8,
        }
    }

    /// Writes the `k` values of row `row` (a local) from address `at` (a
    /// local, advanced past them) on, `step` bytes apart, as float32, or
    /// as float16 given `half`'s locals. Block by block: each block's
    /// scale and zero point are loaded once, and the bit and output
    /// positions advance by a constant step per value.
    fn dequantize_row(
        &self,
        b: &mut InstrSeqBuilder,
        fx: &mut Fx,
        row: LocalId,
        at: LocalId,
        step: usize,
        half: Option<Half>,
    ) {
        let (blk, e, bit, param) = (fx.i32(), fx.i32(), fx.i32(), fx.i32());
        let (scale, zero) = (fx.f32(), fx.f32());
        let mem = fx.mem;
        let mask = (1i32 << self.bits) - 1;
        let f32_at = |offset: u32| MemArg {
            align: 2,
            offset: u64::from(offset),
        };
        // SIMD: four codes at a time where four of them fill whole bytes
        // (2, 4 and 8 bits), for float32 outputs.
        let vector = (fx.isa.lanes() == 4 && half.is_none() && matches!(self.bits, 2 | 4 | 8))
            .then(|| (fx.vec(4), fx.vec(4), fx.vec(4)));
        // One block of `count` values: (q − zero) · scale each.
        let block = |b: &mut InstrSeqBuilder, count: usize| {
            for (into, base) in [(scale, self.scales), (zero, self.zeros)] {
                b.local_get(param)
                    .load(mem, LoadKind::F32, f32_at(base))
                    .local_set(into);
            }
            emit::bump(b, param, 4);
            let mut scalar_from = 0;
            if let Some((scales, zeros, values)) = vector {
                for (into, from) in [(scales, scale), (zeros, zero)] {
                    b.local_get(from).unop(UnaryOp::F32x4Splat).local_set(into);
                }
                let quads = count / 4;
                emit::for_range(b, e, 0, quads as i64, 1, |b| {
                    self.dequantize_quad(b, mem, bit, (scales, zeros, values));
                    for lane in 0..4u8 {
                        b.local_get(at).local_get(values).load_simd(
                            mem,
                            LoadSimdKind::V128Store32Lane(lane),
                            f32_at(u32::from(lane) * step as u32),
                        );
                    }
                    emit::bump(b, bit, 4 * i64::from(self.bits));
                    emit::bump(b, at, 4 * step as i64);
                });
                scalar_from = quads * 4;
            }
            emit::for_range(b, e, scalar_from as i64, count as i64, 1, |b| {
                b.local_get(at)
                    .local_get(bit)
                    .i32_const(3)
                    .binop(BinaryOp::I32ShrU)
                    .load(
                        mem,
                        LoadKind::I32_16 {
                            kind: ExtendedLoad::ZeroExtend,
                        },
                        MemArg {
                            align: 0,
                            offset: u64::from(self.codes),
                        },
                    )
                    .local_get(bit)
                    .i32_const(7)
                    .binop(BinaryOp::I32And)
                    .binop(BinaryOp::I32ShrU)
                    .i32_const(mask)
                    .binop(BinaryOp::I32And)
                    .unop(UnaryOp::F32ConvertSI32)
                    .local_get(zero)
                    .binop(BinaryOp::F32Sub)
                    .local_get(scale)
                    .binop(BinaryOp::F32Mul);
                match half {
                    Some(h) => h.store(b, mem),
                    None => {
                        b.store(mem, StoreKind::F32, f32_at(0));
                    }
                }
                emit::bump(b, bit, i64::from(self.bits));
                emit::bump(b, at, step as i64);
            });
        };
        // The row's first bit and first (scale, zero point) byte.
        for (into, per_row) in [(bit, self.row_bits), (param, 4 * self.blocks)] {
            b.local_get(row)
                .i32_const(per_row as i32)
                .binop(BinaryOp::I32Mul)
                .local_set(into);
        }
        let (whole, tail) = (self.k / self.block, self.k % self.block);
        emit::for_range(b, blk, 0, whole as i64, 1, |b| block(b, self.block));
        if tail > 0 {
            block(b, tail);
        }
    }

    /// The four values whose codes start at bit `bit` (a whole byte: 2-,
    /// 4- or 8-bit codes) into the vector local `values`: the codes'
    /// bytes splatted, each lane masked to its code and scaled back down
    /// by a power of two (exact), then `(q − zero) · scale` as the scalar
    /// path computes it.
    fn dequantize_quad(
        &self,
        b: &mut InstrSeqBuilder,
        mem: walrus::MemoryId,
        bit: LocalId,
        (scales, zeros, values): (LocalId, LocalId, LocalId),
    ) {
        let bits = self.bits;
        let load = match bits {
            2 => LoadKind::I32_8 {
                kind: ExtendedLoad::ZeroExtend,
            },
            4 => LoadKind::I32_16 {
                kind: ExtendedLoad::ZeroExtend,
            },
            _ => LoadKind::I32 { atomic: false },
        };
        let lanes = |f: &dyn Fn(u32) -> u32| -> u128 {
            (0..4).fold(0u128, |v, lane| v | u128::from(f(lane)) << (32 * lane))
        };
        let code_mask = (1u32 << bits) - 1;
        let masks = lanes(&|lane| code_mask << (lane * bits));
        let down = lanes(&|lane| (1.0f32 / (1u32 << (lane * bits)) as f32).to_bits());
        b.local_get(bit)
            .i32_const(3)
            .binop(BinaryOp::I32ShrU)
            .load(
                mem,
                load,
                MemArg {
                    align: 0,
                    offset: u64::from(self.codes),
                },
            )
            .unop(UnaryOp::I32x4Splat)
            .const_(walrus::ir::Value::V128(masks))
            .binop(BinaryOp::V128And)
            .unop(UnaryOp::F32x4ConvertI32x4U)
            .const_(walrus::ir::Value::V128(down))
            .binop(BinaryOp::F32x4Mul)
            .local_get(zeros)
            .binop(BinaryOp::F32x4Sub)
            .local_get(scales)
            .binop(BinaryOp::F32x4Mul)
            .local_set(values);
    }

    /// Writes rows `j0 .. j0 + width` of the weight (`j0` a local), as
    /// a row-major `K × width` float block at `dst`.
    fn dequantize_panel(
        &self,
        b: &mut InstrSeqBuilder,
        fx: &mut Fx,
        j0: LocalId,
        width: usize,
        dst: u32,
    ) {
        let (jj, row, at) = (fx.i32(), fx.i32(), fx.i32());
        emit::for_range(b, jj, 0, width as i64, 1, |b| {
            b.local_get(j0)
                .local_get(jj)
                .binop(BinaryOp::I32Add)
                .local_set(row);
            // Row j0 + jj is column jj of the panel.
            emit::addr(b, dst, jj, 4);
            b.local_set(at);
            self.dequantize_row(b, fx, row, at, 4 * width, None);
        });
    }
}

/// The packed weight of a node whose codes, scales and zero points are the
/// constants at inputs `[codes, scales, zeros]`, laid out as `layout`
/// says given the codes' shape.
fn packed_weight(
    ctx: &mut Ctx,
    [codes, scales, zeros]: [usize; 3],
    layout: impl FnOnce(&[usize]) -> Result<Layout>,
) -> Result<Packed> {
    let codes = ctx.constant(codes)?;
    let layout = layout(codes.shape())?;
    let zeros = match ctx.opt_constant(zeros) {
        None if ctx.has_input(zeros) => {
            return Err(Error::unsupported("zero points that are not constants"));
        }
        z => z,
    };
    let mut zeros_f32 = Vec::new();
    let weight = weight_of(layout, codes, ctx.constant(scales)?, zeros, &mut zeros_f32)?;
    Ok(Packed::place(ctx, &weight))
}

pub fn matmul_nbits(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let p = MatMulNBits::of(ctx.attrs())?;
    let (a, out) = (ctx.input(0)?, ctx.output(0)?);
    super::require_f32(ctx, &a)?;
    if ctx.has_input(4) {
        return Err(Error::unsupported(
            "MatMulNBits with g_idx (act-order block indices)",
        ));
    }
    if ctx.epilogue.is_some() {
        return Err(Error::unsupported("an epilogue after MatMulNBits"));
    }
    let packed = packed_weight(ctx, [1, 2, 3], |_| Ok(p.layout()))?;
    let bias = match ctx.has_input(5) {
        true => Some(ctx.input(5)?.addr),
        false => None,
    };
    let panel = ctx.scratch(p.k * PANEL * 4);
    let rows = Expr::product(&a.dims[..a.dims.len().saturating_sub(1)]);
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let (j0, bias_at) = (fx.i32(), fx.i32());
    let mut b = f.func_body();
    let m = Sizes::new(table).of(&mut b, &mut fx, &rows)?;
    let (n, k) = (p.n, p.k);
    let gemm = |b: &mut InstrSeqBuilder, fx: &mut Fx, width: usize| {
        packed.dequantize_panel(b, fx, j0, width, panel);
        let g = Gemm {
            m,
            n: width,
            k,
            a: fx.i32(),
            lda: k,
            b: fx.i32(),
            ldb: width,
            packed: false,
            c: fx.i32(),
            ldc: n,
            alpha: 1.0,
            bias: bias.map(|_| Place::Col(bias_at)),
            tail: None,
        };
        b.i32_const(a.addr as i32).local_set(g.a);
        b.i32_const(panel as i32).local_set(g.b);
        emit::addr(b, out.addr, j0, 4);
        b.local_set(g.c);
        if let Some(at) = bias {
            emit::addr(b, at, j0, 4);
            b.local_set(bias_at);
        }
        emit_gemm(b, fx, &g);
    };
    let full = n / PANEL * PANEL;
    emit::for_range(&mut b, j0, 0, full as i64, PANEL as i64, |b| {
        gemm(b, &mut fx, PANEL)
    });
    if full < n {
        b.i32_const(full as i32).local_set(j0);
        gemm(&mut b, &mut fx, n - full);
    }
    Ok(())
}

/// `GatherBlockQuantized`: row `indices[t]` of the packed table (wrapped if
/// negative) dequantized into output row `t`, float32 or float16 (the
/// scales' type; float16 computed in float32 and rounded once). An index out of range reads
/// row 0, as `Gather` does here, rather than memory past the table.
pub fn gather_block_quantized(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let p = GatherBlockQuantized::of(ctx.attrs())?;
    let (idx, out) = (ctx.input(1)?, ctx.output(0)?);
    if !matches!(out.dtype, DType::F32 | DType::F16) {
        return Err(Error::unsupported(format!(
            "GatherBlockQuantized to {} rows",
            out.dtype
        )));
    }
    let wide = match idx.dtype {
        DType::I64 => true,
        DType::I32 => false,
        other => {
            return Err(Error::invalid(format!(
                "GatherBlockQuantized indices are {other}"
            )));
        }
    };
    let packed = packed_weight(ctx, [0, 2, 3], |shape| match shape {
        &[rows, row_bytes] => p.layout(rows, row_bytes),
        _ => Err(Error::unsupported(format!(
            "GatherBlockQuantized of a rank-{} table (wpc takes 2-D tables)",
            shape.len()
        ))),
    })?;
    let rows = packed.rows;
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let (t, row, at) = (fx.i32(), fx.i32(), fx.i32());
    let half = (out.dtype == DType::F16).then(|| Half::new(&mut fx));
    let mut b = f.func_body();
    let count = Sizes::new(table).of(&mut b, &mut fx, &Expr::product(&idx.dims))?;
    b.i32_const(out.addr as i32).local_set(at);
    emit::for_size(&mut b, t, crate::sizes::Size::Const(0), count, 1, |b| {
        emit::load_axis_index(b, &fx, (idx.addr as u64, wide), t, row, rows);
        packed.dequantize_row(b, &mut fx, row, at, out.dtype.size(), half);
    });
    Ok(())
}
