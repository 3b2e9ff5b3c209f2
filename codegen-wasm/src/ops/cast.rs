//! `Cast` between the numeric dtypes and bool, element by element, with
//! the reference's meaning (`Tensor::cast`): where a float is on either
//! side the value goes through f64 (so an int64 becomes a float32 by way
//! of a double, as there), float to integer saturates at the target's
//! range with NaN as 0 (Rust's `as`), and integers convert among
//! themselves exactly, wrapping to the target's width; to bool is
//! `x != 0`. The sub-byte types sit one to a byte, sign- or zero-extended;
//! a float becomes one by way of a saturated int32, wrapped to its width.
//! float16 goes through float32 (`super::half`), except from float64,
//! which would round twice; bfloat16 is left to the reference kernel.

use walrus::ir::{BinaryOp, ExtendedLoad, LoadKind, MemArg, StoreKind, UnaryOp};
use walrus::{FunctionBuilder, InstrSeqBuilder, MemoryId};
use wpc_ir::{DType, Error, Result};

use super::half::Half;
use crate::emit;
use crate::lower::Ctx;
use crate::sizes::{Size, Sizes};
use wpc_ir::sym::Expr;

pub fn cast(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let (from, to) = (x.dtype, out.dtype);
    for t in [from, to] {
        if t == DType::BF16 {
            return Err(Error::unsupported(format!("Cast with {t}")));
        }
    }
    if from == DType::F64 && to == DType::F16 {
        return Err(Error::unsupported("Cast from float64 to float16"));
    }
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let mem = fx.mem;
    let half = Half::new(&mut fx);
    let (i, src, dst) = (fx.i32(), fx.i32(), fx.i32());
    let mut b = f.func_body();
    let count = Sizes::new(table).of(&mut b, &mut fx, &Expr::product(&x.dims))?;
    b.i32_const(x.addr as i32)
        .local_set(src)
        .i32_const(out.addr as i32)
        .local_set(dst);
    emit::for_size(&mut b, i, Size::Const(0), count, 1, |b| {
        b.local_get(dst).local_get(src);
        if from == DType::F16 {
            half.load(b, mem);
            b.unop(UnaryOp::F64PromoteF32);
        } else if from.is_float() || to.is_float() {
            load_f64(b, mem, from);
        }
        if to == DType::F16 {
            b.unop(UnaryOp::F32DemoteF64);
            half.store(b, mem);
        } else if from.is_float() || to.is_float() {
            store_from_f64(b, mem, to);
        } else {
            load_i64(b, mem, from);
            store_from_i64(b, mem, to);
        }
        emit::bump(b, src, from.size() as i64);
        emit::bump(b, dst, to.size() as i64);
    });
    Ok(())
}

fn arg(size: usize) -> MemArg {
    MemArg {
        align: size.trailing_zeros(),
        offset: 0,
    }
}

/// Loads an element of `t` (address on the stack) as an f64.
pub(crate) fn load_f64(b: &mut InstrSeqBuilder, mem: MemoryId, t: DType) {
    match t {
        DType::F64 => {
            b.load(mem, LoadKind::F64, arg(8));
        }
        DType::F32 => {
            b.load(mem, LoadKind::F32, arg(4))
                .unop(UnaryOp::F64PromoteF32);
        }
        DType::U64 => {
            b.load(mem, LoadKind::I64 { atomic: false }, arg(8))
                .unop(UnaryOp::F64ConvertUI64);
        }
        _ => {
            load_i64(b, mem, t);
            b.unop(UnaryOp::F64ConvertSI64);
        }
    }
}

/// Stores the f64 on the stack as an element of `t`.
pub(crate) fn store_from_f64(b: &mut InstrSeqBuilder, mem: MemoryId, t: DType) {
    let narrow = |b: &mut InstrSeqBuilder, lo: f64, hi: f64, store: StoreKind, size: usize| {
        // Saturate, then truncate (NaN stays NaN and truncates to 0).
        b.f64_const(lo)
            .binop(BinaryOp::F64Max)
            .f64_const(hi)
            .binop(BinaryOp::F64Min)
            .unop(UnaryOp::I32TruncSSatF64)
            .store(mem, store, arg(size));
    };
    match t {
        DType::F64 => {
            b.store(mem, StoreKind::F64, arg(8));
        }
        DType::F32 => {
            b.unop(UnaryOp::F32DemoteF64)
                .store(mem, StoreKind::F32, arg(4));
        }
        DType::Bool => {
            b.f64_const(0.0).binop(BinaryOp::F64Ne).store(
                mem,
                StoreKind::I32_8 { atomic: false },
                arg(1),
            );
        }
        DType::I8 => narrow(b, -128.0, 127.0, StoreKind::I32_8 { atomic: false }, 1),
        DType::U8 => narrow(b, 0.0, 255.0, StoreKind::I32_8 { atomic: false }, 1),
        DType::I16 => narrow(b, -32768.0, 32767.0, StoreKind::I32_16 { atomic: false }, 2),
        DType::U16 => narrow(b, 0.0, 65535.0, StoreKind::I32_16 { atomic: false }, 2),
        DType::I32 => {
            b.unop(UnaryOp::I32TruncSSatF64)
                .store(mem, StoreKind::I32 { atomic: false }, arg(4));
        }
        DType::U32 => {
            b.unop(UnaryOp::I32TruncUSatF64)
                .store(mem, StoreKind::I32 { atomic: false }, arg(4));
        }
        DType::I64 => {
            b.unop(UnaryOp::I64TruncSSatF64)
                .store(mem, StoreKind::I64 { atomic: false }, arg(8));
        }
        DType::U64 => {
            b.unop(UnaryOp::I64TruncUSatF64)
                .store(mem, StoreKind::I64 { atomic: false }, arg(8));
        }
        DType::I4 | DType::U4 | DType::I2 | DType::U2 => {
            let unused = 32 - sub_byte_bits(t);
            let shr = if t.is_unsigned() {
                BinaryOp::I32ShrU
            } else {
                BinaryOp::I32ShrS
            };
            b.unop(UnaryOp::I32TruncSSatF64)
                .i32_const(unused)
                .binop(BinaryOp::I32Shl)
                .i32_const(unused)
                .binop(shr)
                .store(mem, StoreKind::I32_8 { atomic: false }, arg(1));
        }
        DType::F16 | DType::BF16 => {
            unreachable!("cast() stores float16 itself and refuses bfloat16")
        }
    }
}

/// Loads an element of the integer or bool type `t` as an i64, sign- or
/// zero-extended as the type is.
fn load_i64(b: &mut InstrSeqBuilder, mem: MemoryId, t: DType) {
    let (kind, size) = match t {
        DType::I8 | DType::I4 | DType::I2 => (
            LoadKind::I64_8 {
                kind: ExtendedLoad::SignExtend,
            },
            1,
        ),
        DType::U8 | DType::U4 | DType::U2 | DType::Bool => (
            LoadKind::I64_8 {
                kind: ExtendedLoad::ZeroExtend,
            },
            1,
        ),
        DType::I16 => (
            LoadKind::I64_16 {
                kind: ExtendedLoad::SignExtend,
            },
            2,
        ),
        DType::U16 => (
            LoadKind::I64_16 {
                kind: ExtendedLoad::ZeroExtend,
            },
            2,
        ),
        DType::I32 => (
            LoadKind::I64_32 {
                kind: ExtendedLoad::SignExtend,
            },
            4,
        ),
        DType::U32 => (
            LoadKind::I64_32 {
                kind: ExtendedLoad::ZeroExtend,
            },
            4,
        ),
        _ => (LoadKind::I64 { atomic: false }, 8),
    };
    b.load(mem, kind, arg(size));
}

/// Stores the i64 on the stack as an element of the integer or bool type
/// `t`, wrapped to its width.
fn store_from_i64(b: &mut InstrSeqBuilder, mem: MemoryId, t: DType) {
    match t {
        DType::Bool => {
            b.i64_const(0).binop(BinaryOp::I64Ne).store(
                mem,
                StoreKind::I32_8 { atomic: false },
                arg(1),
            );
        }
        DType::I8 | DType::U8 => {
            b.store(mem, StoreKind::I64_8 { atomic: false }, arg(1));
        }
        DType::I4 | DType::U4 | DType::I2 | DType::U2 => {
            let unused = 64 - i64::from(sub_byte_bits(t));
            let shr = if t.is_unsigned() {
                BinaryOp::I64ShrU
            } else {
                BinaryOp::I64ShrS
            };
            b.i64_const(unused)
                .binop(BinaryOp::I64Shl)
                .i64_const(unused)
                .binop(shr)
                .store(mem, StoreKind::I64_8 { atomic: false }, arg(1));
        }
        DType::I16 | DType::U16 => {
            b.store(mem, StoreKind::I64_16 { atomic: false }, arg(2));
        }
        DType::I32 | DType::U32 => {
            b.store(mem, StoreKind::I64_32 { atomic: false }, arg(4));
        }
        _ => {
            b.store(mem, StoreKind::I64 { atomic: false }, arg(8));
        }
    }
}

/// The width of a sub-byte type (int4, uint4, int2, uint2).
fn sub_byte_bits(t: DType) -> i32 {
    t.packed_bits().expect("a sub-byte type") as i32
}
