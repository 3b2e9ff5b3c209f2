//! Transcendental functions, which WebAssembly lacks: `exp` and `log` as
//! wasm functions (f32 → f32), emitted into a module on first use. The
//! other float ops (sigmoid, tanh, erf, pow) are built from these in
//! [`crate::ops::elementwise`].
//!
//! `exp`: Cephes' range reduction x = n·ln2 + r with a degree-6 polynomial
//! for e^r, scaled by 2^n through the exponent bits (relative error ~1e-7).
//! `log`: x = 2^e·m with m in [√½, √2), log m = 2·atanh((m−1)/(m+1)) by its
//! series to s⁹ (relative error ~1e-7).

use walrus::ir::{BinaryOp, UnaryOp};
use walrus::{FunctionBuilder, FunctionId, Module, ValType};

/// The math functions a module has so far.
#[derive(Default)]
pub struct Math {
    exp: Option<FunctionId>,
    log: Option<FunctionId>,
}

impl Math {
    pub fn exp(&mut self, module: &mut Module) -> FunctionId {
        *self.exp.get_or_insert_with(|| emit_exp(module))
    }

    pub fn log(&mut self, module: &mut Module) -> FunctionId {
        *self.log.get_or_insert_with(|| emit_log(module))
    }
}

fn emit_exp(module: &mut Module) -> FunctionId {
    let x = module.locals.add(ValType::F32);
    let n = module.locals.add(ValType::F32);
    let r = module.locals.add(ValType::F32);
    let mut f = FunctionBuilder::new(&mut module.types, &[ValType::F32], &[ValType::F32]);
    f.name("exp".into());
    let mut b = f.func_body();
    // NaN stays NaN; beyond the f32 range the result is inf or 0.
    b.local_get(x).local_get(x).binop(BinaryOp::F32Ne).if_else(
        None,
        |t| {
            t.local_get(x).return_();
        },
        |_| {},
    );
    b.local_get(x)
        .f32_const(88.722_84)
        .binop(BinaryOp::F32Gt)
        .if_else(
            None,
            |t| {
                t.f32_const(f32::INFINITY).return_();
            },
            |_| {},
        );
    b.local_get(x)
        .f32_const(-103.972_08)
        .binop(BinaryOp::F32Lt)
        .if_else(
            None,
            |t| {
                t.f32_const(0.0).return_();
            },
            |_| {},
        );
    // n = round(x / ln2), clamped so 2^n splits into two normal factors.
    b.local_get(x)
        .f32_const(std::f32::consts::LOG2_E)
        .binop(BinaryOp::F32Mul)
        .unop(UnaryOp::F32Nearest)
        .local_set(n);
    // r = x - n·ln2, with ln2 split in two for precision.
    b.local_get(x)
        .local_get(n)
        .f32_const(0.693_359_4)
        .binop(BinaryOp::F32Mul)
        .binop(BinaryOp::F32Sub)
        .local_get(n)
        .f32_const(-2.121_944_4e-4)
        .binop(BinaryOp::F32Mul)
        .binop(BinaryOp::F32Sub)
        .local_set(r);
    // Horner: ((((c5 r + c4) r + c3) r + c2) r + c1) r + c0, then · r² + r + 1.
    let coeffs = [
        1.987_569_1e-4,
        1.398_2e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    b.f32_const(coeffs[0]);
    for c in &coeffs[1..] {
        b.local_get(r)
            .binop(BinaryOp::F32Mul)
            .f32_const(*c)
            .binop(BinaryOp::F32Add);
    }
    b.local_get(r)
        .binop(BinaryOp::F32Mul)
        .local_get(r)
        .binop(BinaryOp::F32Mul)
        .local_get(r)
        .binop(BinaryOp::F32Add)
        .f32_const(1.0)
        .binop(BinaryOp::F32Add);
    // · 2^(n/2) · 2^(n - n/2): each factor stays a normal float.
    for half in [true, false] {
        b.local_get(n).unop(UnaryOp::I32TruncSF32);
        if half {
            b.i32_const(1).binop(BinaryOp::I32ShrS);
        } else {
            b.local_get(n)
                .unop(UnaryOp::I32TruncSF32)
                .i32_const(1)
                .binop(BinaryOp::I32ShrS)
                .binop(BinaryOp::I32Sub);
        }
        b.i32_const(127)
            .binop(BinaryOp::I32Add)
            .i32_const(23)
            .binop(BinaryOp::I32Shl)
            .unop(UnaryOp::F32ReinterpretI32)
            .binop(BinaryOp::F32Mul);
    }
    f.finish(vec![x], &mut module.funcs)
}

fn emit_log(module: &mut Module) -> FunctionId {
    let x = module.locals.add(ValType::F32);
    let e = module.locals.add(ValType::F32);
    let m = module.locals.add(ValType::F32);
    let s = module.locals.add(ValType::F32);
    let s2 = module.locals.add(ValType::F32);
    let mut f = FunctionBuilder::new(&mut module.types, &[ValType::F32], &[ValType::F32]);
    f.name("log".into());
    let mut b = f.func_body();
    // NaN and negatives give NaN, 0 gives -inf, inf stays inf.
    b.local_get(x)
        .f32_const(0.0)
        .binop(BinaryOp::F32Gt)
        .if_else(
            None,
            |_| {},
            |t| {
                t.local_get(x)
                    .f32_const(0.0)
                    .binop(BinaryOp::F32Eq)
                    .if_else(
                        None,
                        |z| {
                            z.f32_const(f32::NEG_INFINITY).return_();
                        },
                        |_| {},
                    );
                t.f32_const(f32::NAN).return_();
            },
        );
    b.local_get(x)
        .f32_const(f32::INFINITY)
        .binop(BinaryOp::F32Eq)
        .if_else(
            None,
            |t| {
                t.local_get(x).return_();
            },
            |_| {},
        );
    // Subnormals: scale into the normal range first (2^24), undo below.
    b.f32_const(0.0).local_set(e);
    b.local_get(x)
        .f32_const(f32::MIN_POSITIVE)
        .binop(BinaryOp::F32Lt)
        .if_else(
            None,
            |t| {
                t.local_get(x)
                    .f32_const(16_777_216.0)
                    .binop(BinaryOp::F32Mul)
                    .local_set(x)
                    .f32_const(-24.0)
                    .local_set(e);
            },
            |_| {},
        );
    // x = 2^e · m, m in [1, 2).
    b.local_get(e)
        .local_get(x)
        .unop(UnaryOp::I32ReinterpretF32)
        .i32_const(23)
        .binop(BinaryOp::I32ShrU)
        .i32_const(127)
        .binop(BinaryOp::I32Sub)
        .unop(UnaryOp::F32ConvertSI32)
        .binop(BinaryOp::F32Add)
        .local_set(e);
    b.local_get(x)
        .unop(UnaryOp::I32ReinterpretF32)
        .i32_const(0x007f_ffff)
        .binop(BinaryOp::I32And)
        .i32_const(0x3f80_0000)
        .binop(BinaryOp::I32Or)
        .unop(UnaryOp::F32ReinterpretI32)
        .local_set(m);
    // Centre m on 1: m in [√½, √2).
    b.local_get(m)
        .f32_const(std::f32::consts::SQRT_2)
        .binop(BinaryOp::F32Gt)
        .if_else(
            None,
            |t| {
                t.local_get(m)
                    .f32_const(0.5)
                    .binop(BinaryOp::F32Mul)
                    .local_set(m)
                    .local_get(e)
                    .f32_const(1.0)
                    .binop(BinaryOp::F32Add)
                    .local_set(e);
            },
            |_| {},
        );
    b.local_get(m)
        .f32_const(1.0)
        .binop(BinaryOp::F32Sub)
        .local_get(m)
        .f32_const(1.0)
        .binop(BinaryOp::F32Add)
        .binop(BinaryOp::F32Div)
        .local_tee(s)
        .local_get(s)
        .binop(BinaryOp::F32Mul)
        .local_set(s2);
    // 2s (1 + s²/3 + s⁴/5 + s⁶/7 + s⁸/9) + e·ln2
    b.f32_const(1.0 / 9.0);
    for c in [1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0] {
        b.local_get(s2)
            .binop(BinaryOp::F32Mul)
            .f32_const(c)
            .binop(BinaryOp::F32Add);
    }
    b.local_get(s)
        .binop(BinaryOp::F32Mul)
        .f32_const(2.0)
        .binop(BinaryOp::F32Mul)
        .local_get(e)
        .f32_const(std::f32::consts::LN_2)
        .binop(BinaryOp::F32Mul)
        .binop(BinaryOp::F32Add);
    f.finish(vec![x], &mut module.funcs)
}
