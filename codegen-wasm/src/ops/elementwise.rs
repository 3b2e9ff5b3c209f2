//! Elementwise float ops with ONNX broadcasting. Shapes are collapsed to
//! the fewest dims that keep each input's broadcast pattern, then walked
//! by nested loops with one pointer per tensor; the innermost loop runs in
//! vectors where every input is contiguous or a splat and the op has a
//! vector form, with a scalar tail.

use walrus::ir::{BinaryOp, UnaryOp};
use walrus::{FunctionBuilder, FunctionId, InstrSeqBuilder, LocalId};
use wpc_ir::ops::params::Elementwise as E;
use wpc_ir::{Error, Result};

use crate::emit::{self, Arith, Fx};
use crate::lower::{Ctx, Tt};

/// How an op computes one element from its operands (all f32).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    /// Folded over the operands left to right (Add, Max, Sum, ...).
    Fold(Arith),
    Relu,
    Neg,
    Abs,
    Sqrt,
    Floor,
    Ceil,
    Reciprocal,
    /// max(x, 0) + alpha · min(x, 0)
    LeakyRelu(f32),
    Clip(f32, f32),
    Exp,
    Log,
    Sigmoid,
    Tanh,
    Erf,
    /// x^p for a constant p.
    PowConst(f32),
    Pow,
}

impl Op {
    /// Whether the op has an `f32x4` form.
    fn vectorizes(self) -> bool {
        matches!(
            self,
            Op::Fold(_)
                | Op::Relu
                | Op::Neg
                | Op::Abs
                | Op::Sqrt
                | Op::Floor
                | Op::Ceil
                | Op::Reciprocal
                | Op::LeakyRelu(_)
                | Op::Clip(..)
        ) || matches!(self, Op::PowConst(p) if p == 1.0 || p == 2.0 || p == 0.5)
    }
}

const OPS: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Max",
    "Min",
    "Sum",
    "Relu",
    "Neg",
    "Abs",
    "Sqrt",
    "Floor",
    "Ceil",
    "Reciprocal",
    "LeakyRelu",
    "Clip",
    "Exp",
    "Log",
    "Sigmoid",
    "Tanh",
    "Erf",
    "Pow",
];

pub fn is_elementwise(op: &str) -> bool {
    OPS.contains(&op)
}

fn classify(ctx: &Ctx) -> Result<(Op, usize)> {
    let params = E::of(&ctx.node.op, ctx.attrs())?;
    let n = ctx.node.inputs.len();
    Ok(match ctx.node.op.as_str() {
        "Add" | "Sum" => (Op::Fold(Arith::Add), n),
        "Sub" => (Op::Fold(Arith::Sub), 2),
        "Mul" => (Op::Fold(Arith::Mul), 2),
        "Div" => (Op::Fold(Arith::Div), 2),
        "Max" => (Op::Fold(Arith::Max), n),
        "Min" => (Op::Fold(Arith::Min), n),
        "Relu" => (Op::Relu, 1),
        "Neg" => (Op::Neg, 1),
        "Abs" => (Op::Abs, 1),
        "Sqrt" => (Op::Sqrt, 1),
        "Floor" => (Op::Floor, 1),
        "Ceil" => (Op::Ceil, 1),
        "Reciprocal" => (Op::Reciprocal, 1),
        "LeakyRelu" => match params {
            Some(E::LeakyRelu { alpha }) => (Op::LeakyRelu(alpha), 1),
            _ => unreachable!("LeakyRelu's parameters are LeakyRelu"),
        },
        "Clip" => {
            let Some(E::Clip { min, max }) = params else {
                unreachable!("Clip's parameters are Clip")
            };
            // Bounds are attributes before opset 11, constant inputs since.
            let bound = |i: usize, attr: Option<f32>, default: f32| -> Result<f32> {
                if ctx.opset < 11 {
                    return Ok(attr.unwrap_or(default));
                }
                Ok(match ctx.has_input(i) {
                    true => ctx.constant(i)?.to_f32s()[0],
                    false => default,
                })
            };
            (
                Op::Clip(
                    bound(1, min, f32::NEG_INFINITY)?,
                    bound(2, max, f32::INFINITY)?,
                ),
                1,
            )
        }
        "Exp" => (Op::Exp, 1),
        "Log" => (Op::Log, 1),
        "Sigmoid" => (Op::Sigmoid, 1),
        "Tanh" => (Op::Tanh, 1),
        "Erf" => (Op::Erf, 1),
        "Pow" => match ctx.opt_constant(1) {
            Some(p) if p.len() == 1 => (Op::PowConst(p.to_f32s()[0]), 1),
            _ => (Op::Pow, 2),
        },
        other => return Err(Error::unsupported(format!("{other} on WebAssembly"))),
    })
}

/// Pushes `op` applied to the operands in `v` (one local each); `tmp` is
/// a scalar scratch local.
fn apply(b: &mut InstrSeqBuilder, lanes: usize, op: Op, v: &[LocalId], math: &Funcs, tmp: LocalId) {
    let x = v[0];
    let vec = lanes == 4;
    let un = |b: &mut InstrSeqBuilder, scalar: UnaryOp, vector: UnaryOp| {
        b.local_get(x).unop(if vec { vector } else { scalar });
    };
    match op {
        Op::Fold(a) => {
            b.local_get(x);
            for &y in &v[1..] {
                b.local_get(y);
                emit::arith(b, lanes, a);
            }
        }
        Op::Relu => {
            b.local_get(x);
            emit::constant(b, lanes, 0.0);
            emit::arith(b, lanes, Arith::Max);
        }
        Op::Neg => un(b, UnaryOp::F32Neg, UnaryOp::F32x4Neg),
        Op::Abs => un(b, UnaryOp::F32Abs, UnaryOp::F32x4Abs),
        Op::Sqrt => un(b, UnaryOp::F32Sqrt, UnaryOp::F32x4Sqrt),
        Op::Floor => un(b, UnaryOp::F32Floor, UnaryOp::F32x4Floor),
        Op::Ceil => un(b, UnaryOp::F32Ceil, UnaryOp::F32x4Ceil),
        Op::Reciprocal => {
            emit::constant(b, lanes, 1.0);
            b.local_get(x);
            emit::arith(b, lanes, Arith::Div);
        }
        Op::LeakyRelu(alpha) => {
            b.local_get(x);
            emit::constant(b, lanes, 0.0);
            emit::arith(b, lanes, Arith::Max);
            b.local_get(x);
            emit::constant(b, lanes, 0.0);
            emit::arith(b, lanes, Arith::Min);
            emit::constant(b, lanes, alpha);
            emit::arith(b, lanes, Arith::Mul);
            emit::arith(b, lanes, Arith::Add);
        }
        Op::Clip(lo, hi) => {
            b.local_get(x);
            emit::constant(b, lanes, lo);
            emit::arith(b, lanes, Arith::Max);
            emit::constant(b, lanes, hi);
            emit::arith(b, lanes, Arith::Min);
        }
        Op::PowConst(1.0) => {
            b.local_get(x);
        }
        Op::PowConst(2.0) => {
            b.local_get(x).local_get(x);
            emit::arith(b, lanes, Arith::Mul);
        }
        Op::PowConst(0.5) => un(b, UnaryOp::F32Sqrt, UnaryOp::F32x4Sqrt),
        // Scalar only from here on.
        Op::Exp => {
            b.local_get(x).call(math.exp());
        }
        Op::Log => {
            b.local_get(x).call(math.log());
        }
        Op::Sigmoid => {
            // 1 / (1 + e^-x)
            b.f32_const(1.0)
                .f32_const(1.0)
                .local_get(x)
                .unop(UnaryOp::F32Neg)
                .call(math.exp())
                .binop(BinaryOp::F32Add)
                .binop(BinaryOp::F32Div);
        }
        Op::Tanh => {
            // 1 - 2 / (e^{2x} + 1), x clamped where tanh is ±1 in f32.
            b.f32_const(1.0)
                .f32_const(2.0)
                .local_get(x)
                .f32_const(-15.0)
                .binop(BinaryOp::F32Max)
                .f32_const(15.0)
                .binop(BinaryOp::F32Min)
                .f32_const(2.0)
                .binop(BinaryOp::F32Mul)
                .call(math.exp())
                .f32_const(1.0)
                .binop(BinaryOp::F32Add)
                .binop(BinaryOp::F32Div)
                .binop(BinaryOp::F32Sub);
        }
        Op::Erf => {
            // Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7):
            // sign(x)·(1 − t·P(t)·e^{−x²}), t = 1 / (1 + 0.3275911·|x|).
            b.f32_const(1.0)
                .f32_const(1.0)
                .f32_const(0.327_591_1)
                .local_get(x)
                .unop(UnaryOp::F32Abs)
                .binop(BinaryOp::F32Mul)
                .binop(BinaryOp::F32Add)
                .binop(BinaryOp::F32Div)
                .local_set(tmp);
            b.f32_const(1.061_405_4);
            for c in [-1.453_152_1, 1.421_413_8, -0.284_496_74, 0.254_829_6] {
                b.local_get(tmp)
                    .binop(BinaryOp::F32Mul)
                    .f32_const(c)
                    .binop(BinaryOp::F32Add);
            }
            b.local_get(tmp)
                .binop(BinaryOp::F32Mul)
                .local_get(x)
                .local_get(x)
                .binop(BinaryOp::F32Mul)
                .unop(UnaryOp::F32Neg)
                .call(math.exp())
                .binop(BinaryOp::F32Mul)
                .local_set(tmp);
            b.f32_const(1.0)
                .local_get(tmp)
                .binop(BinaryOp::F32Sub)
                .local_get(x)
                .binop(BinaryOp::F32Copysign);
        }
        Op::PowConst(p) => pow(b, x, Exponent::Const(p), math, tmp),
        Op::Pow => pow(b, x, Exponent::Local(v[1]), math, tmp),
    }
}

enum Exponent {
    Const(f32),
    Local(LocalId),
}

/// x^y as e^{y·log|x|}, negated for a negative x and odd integer y; NaN
/// for a negative x and fractional y (log of a negative), as in C's pow.
fn pow(b: &mut InstrSeqBuilder, x: LocalId, y: Exponent, math: &Funcs, tmp: LocalId) {
    let push_y = |b: &mut InstrSeqBuilder| match y {
        Exponent::Const(p) => {
            b.f32_const(p);
        }
        Exponent::Local(l) => {
            b.local_get(l);
        }
    };
    // Pushes whether x < 0 and `scale`·y is an integer.
    let negative_and_integer = |b: &mut InstrSeqBuilder, scale: f32| {
        b.local_get(x).f32_const(0.0).binop(BinaryOp::F32Lt);
        push_y(b);
        b.f32_const(scale)
            .binop(BinaryOp::F32Mul)
            .unop(UnaryOp::F32Trunc);
        push_y(b);
        b.f32_const(scale)
            .binop(BinaryOp::F32Mul)
            .binop(BinaryOp::F32Eq)
            .binop(BinaryOp::I32And);
    };
    // e^(y · log(base)), base = |x| for a negative x and integer y, else x.
    b.local_get(x).unop(UnaryOp::F32Abs).local_get(x);
    negative_and_integer(b, 1.0);
    b.select(None).call(math.log());
    push_y(b);
    b.binop(BinaryOp::F32Mul)
        .call(math.exp())
        .local_tee(tmp)
        .unop(UnaryOp::F32Neg)
        .local_get(tmp);
    // Negative x and odd integer y (y integer, y/2 not): the negation.
    negative_and_integer(b, 1.0);
    negative_and_integer(b, 0.5);
    b.i32_const(1)
        .binop(BinaryOp::I32Xor)
        .binop(BinaryOp::I32And)
        .select(None);
}

/// Math functions the expressions call (present when the op needs them).
struct Funcs {
    exp: Option<FunctionId>,
    log: Option<FunctionId>,
}

impl Funcs {
    fn exp(&self) -> FunctionId {
        self.exp.expect("exp requested for this op")
    }

    fn log(&self) -> FunctionId {
        self.log.expect("log requested for this op")
    }
}

/// Dims merged where every operand's stride pattern allows, innermost last.
/// Returns the output dims and per operand its element strides.
fn collapse(out: &[usize], ins: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let strides: Vec<Vec<usize>> = ins
        .iter()
        .map(|s| wpc_ir::ops::util::broadcast_strides(s, out))
        .collect();
    let mut dims: Vec<usize> = Vec::new();
    let mut st: Vec<Vec<usize>> = vec![Vec::new(); ins.len()];
    for d in 0..out.len() {
        if out[d] == 1 {
            continue;
        }
        let mergeable = !dims.is_empty()
            && strides.iter().enumerate().all(|(j, s)| {
                let prev = *st[j].last().expect("same length as dims");
                prev == s[d] * out[d]
            });
        if mergeable {
            *dims.last_mut().expect("non-empty") *= out[d];
            for (j, s) in strides.iter().enumerate() {
                *st[j].last_mut().expect("non-empty") = s[d];
            }
        } else {
            dims.push(out[d]);
            for (j, s) in strides.iter().enumerate() {
                st[j].push(s[d]);
            }
        }
    }
    if dims.is_empty() {
        dims.push(1);
        for s in &mut st {
            s.push(0);
        }
    }
    (dims, st)
}

pub fn lower(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (op, arity) = classify(ctx)?;
    let ins: Vec<Tt> = (0..arity).map(|i| ctx.input(i)).collect::<Result<_>>()?;
    for t in &ins {
        super::require_f32(ctx, t)?;
    }
    let out = ctx.output(0)?;
    let general_pow = matches!(op, Op::Pow) || matches!(op, Op::PowConst(_)) && !op.vectorizes();
    let math = Funcs {
        exp: (general_pow || matches!(op, Op::Exp | Op::Sigmoid | Op::Tanh | Op::Erf))
            .then(|| ctx.exp()),
        log: (general_pow || op == Op::Log).then(|| ctx.log()),
    };
    let shapes: Vec<Vec<usize>> = ins.iter().map(|t| t.shape.clone()).collect();
    let (dims, strides) = collapse(&out.shape, &shapes);
    let lanes = if op.vectorizes() { ctx.isa.lanes() } else { 1 };
    let mut fx = ctx.fx();
    let ptrs: Vec<LocalId> = (0..=ins.len()).map(|_| fx.i32()).collect();
    let idx: Vec<LocalId> = dims.iter().map(|_| fx.i32()).collect();
    let vals: Vec<LocalId> = ins.iter().map(|_| fx.vec(lanes)).collect();
    let svals: Vec<LocalId> = ins.iter().map(|_| fx.f32()).collect();
    let tmp = fx.f32();
    let mut b = f.func_body();
    for (p, t) in ptrs.iter().zip(&ins) {
        b.i32_const(t.addr as i32).local_set(*p);
    }
    b.i32_const(out.addr as i32).local_set(ptrs[ins.len()]);
    let mut out_strides = vec![1usize; dims.len()];
    for d in (0..dims.len().saturating_sub(1)).rev() {
        out_strides[d] = out_strides[d + 1] * dims[d + 1];
    }
    let all: Vec<Vec<usize>> = strides
        .iter()
        .cloned()
        .chain(std::iter::once(out_strides))
        .collect();
    let walk = Walk {
        dims: &dims,
        strides: &all,
        ptrs: &ptrs,
        idx: &idx,
    };
    walk.level(&mut b, &mut fx, 0, &mut |b, fx, inner| {
        // Innermost: vectors where every input is contiguous or a splat.
        let inner_ok = lanes == 4 && all.iter().all(|s| s[s.len() - 1] <= 1);
        let n = *dims.last().expect("at least one dim");
        let main = if inner_ok { n / 4 * 4 } else { 0 };
        let body = |b: &mut InstrSeqBuilder, fx: &Fx, l: usize, vals: &[LocalId]| {
            for (j, v) in vals.iter().enumerate() {
                let s = all[j][all[j].len() - 1];
                b.local_get(ptrs[j]);
                if s == 0 {
                    emit::load(b, fx, 1, 0);
                    emit::splat(b, l);
                } else {
                    emit::load(b, fx, l, 0);
                }
                b.local_set(*v);
            }
            b.local_get(ptrs[ins.len()]);
            apply(b, l, op, vals, &math, tmp);
            emit::store(b, fx, l, 0);
            for (j, p) in ptrs.iter().enumerate() {
                emit::bump(b, *p, (4 * l * all[j][all[j].len() - 1]) as i64);
            }
        };
        if main > 0 {
            emit::for_range(b, inner, 0, main as i64, 4, |b| body(b, fx, 4, &vals));
        }
        if main < n {
            emit::for_range(b, inner, main as i64, n as i64, 1, |b| {
                body(b, fx, 1, &svals)
            });
        }
    });
    Ok(())
}

/// Nested loops over collapsed dims, each tensor's pointer advancing by
/// its own stride; the innermost level is left to the caller, which must
/// advance the pointers itself.
pub struct Walk<'a> {
    pub dims: &'a [usize],
    /// Per tensor, element strides per dim.
    pub strides: &'a [Vec<usize>],
    pub ptrs: &'a [LocalId],
    pub idx: &'a [LocalId],
}

impl Walk<'_> {
    pub fn level(
        &self,
        b: &mut InstrSeqBuilder,
        fx: &mut Fx,
        d: usize,
        inner: &mut dyn FnMut(&mut InstrSeqBuilder, &mut Fx, LocalId),
    ) {
        if d + 1 == self.dims.len() {
            inner(b, fx, self.idx[d]);
            return;
        }
        emit::for_range(b, self.idx[d], 0, self.dims[d] as i64, 1, |b| {
            self.level(b, fx, d + 1, inner);
            // The level below advanced each pointer by dims[d+1]·stride[d+1];
            // move on to the next index of dim d.
            for (j, p) in self.ptrs.iter().enumerate() {
                let s = &self.strides[j];
                // The innermost loop leaves its pointers advanced; outer
                // levels rewind theirs.
                let moved = if d + 2 == self.dims.len() {
                    (self.dims[d + 1] * s[d + 1]) as i64
                } else {
                    0
                };
                emit::bump(b, *p, 4 * (s[d] as i64 - moved));
            }
        });
        // Rewind this level.
        for (j, p) in self.ptrs.iter().enumerate() {
            let s = &self.strides[j];
            emit::bump(b, *p, -4 * (self.dims[d] * s[d]) as i64);
        }
    }
}
