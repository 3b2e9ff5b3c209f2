//! float16 in linear memory. WebAssembly has no half type, so a value is
//! converted to and from float32 bit by bit, with `half::f16`'s meaning
//! (what the reference computes with): exact widening, narrowing rounded
//! to nearest even, subnormals kept, overflow to infinity, NaN kept NaN.

use walrus::ir::{BinaryOp, ExtendedLoad, LoadKind, MemArg, StoreKind, UnaryOp};
use walrus::{InstrSeqBuilder, LocalId, MemoryId};

use crate::emit::Fx;

const HALF: MemArg = MemArg {
    align: 1,
    offset: 0,
};

/// float32 bits of the exponent bias difference (127 − 15) << 23.
const REBIAS: i32 = 112 << 23;

/// The two scratch locals a conversion needs.
#[derive(Clone, Copy)]
pub struct Half {
    bits: LocalId,
    magnitude: LocalId,
}

impl Half {
    pub fn new(fx: &mut Fx) -> Half {
        Half {
            bits: fx.i32(),
            magnitude: fx.i32(),
        }
    }

    /// Loads the float16 at the address on the stack, as an f32.
    pub fn load(self, b: &mut InstrSeqBuilder, mem: MemoryId) {
        let (bits, m) = (self.bits, self.magnitude);
        b.load(
            mem,
            LoadKind::I32_16 {
                kind: ExtendedLoad::ZeroExtend,
            },
            HALF,
        )
        .local_tee(bits)
        .i32_const(0x7fff)
        .binop(BinaryOp::I32And)
        .local_set(m);
        // A subnormal is its mantissa times 2^-24, exactly.
        b.local_get(m)
            .unop(UnaryOp::F32ConvertSI32)
            .f32_const(2f32.powi(-24))
            .binop(BinaryOp::F32Mul)
            .unop(UnaryOp::I32ReinterpretF32);
        // Otherwise the bits move up and the exponent is rebiased, twice
        // for infinity and NaN (exponent 31 becomes 255).
        b.local_get(m)
            .i32_const(13)
            .binop(BinaryOp::I32Shl)
            .i32_const(REBIAS)
            .binop(BinaryOp::I32Add)
            .i32_const(REBIAS)
            .i32_const(0)
            .local_get(m)
            .i32_const(0x7c00)
            .binop(BinaryOp::I32GeU)
            .select(None)
            .binop(BinaryOp::I32Add);
        b.local_get(m)
            .i32_const(0x400)
            .binop(BinaryOp::I32LtU)
            .select(None)
            .local_get(bits)
            .i32_const(0x8000)
            .binop(BinaryOp::I32And)
            .i32_const(16)
            .binop(BinaryOp::I32Shl)
            .binop(BinaryOp::I32Or)
            .unop(UnaryOp::F32ReinterpretI32);
    }

    /// Stores the f32 on the stack as a float16 at the address below it.
    pub fn store(self, b: &mut InstrSeqBuilder, mem: MemoryId) {
        let (bits, m) = (self.bits, self.magnitude);
        b.unop(UnaryOp::I32ReinterpretF32)
            .local_tee(bits)
            .i32_const(0x7fff_ffff)
            .binop(BinaryOp::I32And)
            .local_set(m);
        // From 65536 up: infinity, or a NaN.
        b.i32_const(0x7e00)
            .i32_const(0x7c00)
            .local_get(m)
            .i32_const(0x7f80_0000)
            .binop(BinaryOp::I32GtU)
            .select(None);
        // Below 2^-14 (float16 subnormals): adding 0.5 rounds the value to
        // a multiple of 2^-24 in the float32 unit, leaving it in the low bits.
        b.local_get(m)
            .unop(UnaryOp::F32ReinterpretI32)
            .f32_const(0.5)
            .binop(BinaryOp::F32Add)
            .unop(UnaryOp::I32ReinterpretF32)
            .i32_const(0x3f00_0000)
            .binop(BinaryOp::I32Sub);
        // Normal: rebias, round half to even on the 13 bits dropped (a
        // carry may run into the exponent, up to infinity).
        b.local_get(m)
            .i32_const(0xfff - REBIAS)
            .binop(BinaryOp::I32Add)
            .local_get(m)
            .i32_const(13)
            .binop(BinaryOp::I32ShrU)
            .i32_const(1)
            .binop(BinaryOp::I32And)
            .binop(BinaryOp::I32Add)
            .i32_const(13)
            .binop(BinaryOp::I32ShrU);
        b.local_get(m)
            .i32_const(113 << 23)
            .binop(BinaryOp::I32LtU)
            .select(None)
            .local_get(m)
            .i32_const(143 << 23)
            .binop(BinaryOp::I32GeU)
            .select(None)
            .local_get(bits)
            .i32_const(16)
            .binop(BinaryOp::I32ShrU)
            .i32_const(0x8000)
            .binop(BinaryOp::I32And)
            .binop(BinaryOp::I32Or)
            .store(mem, StoreKind::I32_16 { atomic: false }, HALF);
    }
}
