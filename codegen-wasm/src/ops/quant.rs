//! `MatMulNBits`: a product by packed low-bit weights (`wpc_ir::packed`).
//! The codes stay packed in linear memory; the kernel dequantizes one
//! panel of 8 output columns at a time (K × 8 floats of scratch) and runs
//! the GEMM micro-kernel on it, so no float copy of the weight exists
//! beyond one panel.

use walrus::ir::{BinaryOp, ExtendedLoad, LoadKind, MemArg, UnaryOp};
use walrus::{FunctionBuilder, InstrSeqBuilder, LocalId};
use wpc_ir::ops::params::MatMulNBits;
use wpc_ir::packed::{Weight, ZeroPoints};
use wpc_ir::sym::Expr;
use wpc_ir::{DType, Error, Result};

use super::gemm::{Gemm, Place, emit_gemm};
use crate::emit::{self, Fx};
use crate::lower::Ctx;
use crate::sizes::Sizes;

/// Output columns dequantized per GEMM.
const PANEL: usize = 8;

/// Where one weight's packed data sits in linear memory, and its shape.
struct Packed {
    codes: u32,
    scales: u32,
    /// `−zero · scale` per block: a value is `q · scale + offset`.
    offsets: u32,
    k: usize,
    bits: u32,
    block: usize,
    blocks: usize,
    row_bits: usize,
}

impl Packed {
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
        let (jj, kk, bit, g) = (fx.i32(), fx.i32(), fx.i32(), fx.i32());
        let (row_bit, row_group) = (fx.i32(), fx.i32());
        let mem = fx.mem;
        let shift = self.block.trailing_zeros() as i32;
        let mask = (1i32 << self.bits) - 1;
        emit::for_range(b, jj, 0, width as i64, 1, |b| {
            // Row j0 + jj starts at bit row_bit, its blocks at row_group.
            for (at, per_row) in [(row_bit, self.row_bits), (row_group, self.blocks)] {
                b.local_get(j0)
                    .local_get(jj)
                    .binop(BinaryOp::I32Add)
                    .i32_const(per_row as i32)
                    .binop(BinaryOp::I32Mul)
                    .local_set(at);
            }
            emit::for_range(b, kk, 0, self.k as i64, 1, |b| {
                // bit = row_bit + kk · bits; g = row_group + kk / block
                b.local_get(row_bit)
                    .local_get(kk)
                    .i32_const(self.bits as i32)
                    .binop(BinaryOp::I32Mul)
                    .binop(BinaryOp::I32Add)
                    .local_set(bit);
                b.local_get(row_group)
                    .local_get(kk)
                    .i32_const(shift)
                    .binop(BinaryOp::I32ShrU)
                    .binop(BinaryOp::I32Add)
                    .local_set(g);
                // dst[(kk · width + jj)] = q · scale[g] + offset[g]
                emit::linear(b, &[(kk, width), (jj, 1)], 4, dst);
                b.local_get(bit)
                    .i32_const(3)
                    .binop(BinaryOp::I32ShrU)
                    .load(
                        mem,
                        LoadKind::I32_16 {
                            kind: ExtendedLoad::ZeroExtend,
                        },
                        MemArg {
                            align: 1,
                            offset: u64::from(self.codes),
                        },
                    )
                    .local_get(bit)
                    .i32_const(7)
                    .binop(BinaryOp::I32And)
                    .binop(BinaryOp::I32ShrU)
                    .i32_const(mask)
                    .binop(BinaryOp::I32And)
                    .unop(UnaryOp::F32ConvertSI32);
                emit::addr(b, self.scales, g, 4);
                emit::load(b, fx, 1, 0);
                b.binop(BinaryOp::F32Mul);
                emit::addr(b, self.offsets, g, 4);
                emit::load(b, fx, 1, 0);
                b.binop(BinaryOp::F32Add);
                emit::store(b, fx, 1, 0);
            });
        });
    }
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
    let layout = p.layout();
    let codes = ctx.constant(1)?;
    let codes = codes
        .as_slice::<u8>()
        .ok_or_else(|| Error::unsupported("packed codes that are not uint8"))?;
    layout.check(codes.len())?;
    let scales = ctx.constant(2)?.to_f32s();
    let zero_bytes;
    let zero_floats;
    let zero_points = match ctx.opt_constant(3) {
        None if ctx.has_input(3) => {
            return Err(Error::unsupported("zero points that are not constants"));
        }
        None => ZeroPoints::Default,
        Some(z) if z.dtype() == DType::U8 => {
            zero_bytes = z.as_slice::<u8>().expect("uint8").to_vec();
            ZeroPoints::Packed(&zero_bytes)
        }
        Some(z) => {
            zero_floats = z.to_f32s();
            ZeroPoints::Float(&zero_floats)
        }
    };
    let blocks = layout.blocks();
    let weight = Weight {
        layout,
        codes,
        scales: scales.clone(),
        zero_points,
        groups: None,
    };
    let offsets: Vec<f32> = (0..layout.rows * blocks)
        .map(|g| -weight.zero_point(g / blocks, g % blocks) * scales[g])
        .collect();
    // The codes exactly as WebGPU binds them (padded to whole words and
    // one more, which also covers this kernel's 16-bit loads): one blob,
    // which the bundle stores once for both backends.
    let padded: Vec<u8> = wpc_ir::packed::words(codes)
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let packed = Packed {
        codes: ctx.weight_bytes(padded),
        scales: ctx.weight(&scales),
        offsets: ctx.weight(&offsets),
        k: p.k,
        bits: layout.bits,
        block: layout.block,
        blocks,
        row_bits: layout.row_bytes * 8,
    };
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
