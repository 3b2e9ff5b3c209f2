//! Elementwise float ops with ONNX broadcasting. Shapes are collapsed to
//! the fewest dims that keep each input's broadcast pattern, then walked
//! by nested loops with one pointer per tensor; the innermost loop runs in
//! vectors where every input is contiguous or a splat and the op has a
//! vector form, with a scalar tail.

use std::collections::HashMap;
use walrus::ir::{BinaryOp, UnaryOp};

use walrus::{FunctionBuilder, FunctionId, InstrSeqBuilder, LocalId};
use wpc_ir::ops::params::{Elementwise as E, broadcast_row_major, row_major};
use wpc_ir::sym::Expr;
use wpc_ir::{Error, Graph, Node, NodeId, Result, Tensor, ValueId};

use crate::emit::{self, Arith, Fx};
use crate::lower::{Ctx, Tt};
use crate::sizes::{Size, Sizes};

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
    /// clamp(alpha · x + beta, 0, 1)
    HardSigmoid(f32, f32),
    /// x · clamp(x / 6 + 1/2, 0, 1)
    HardSwish,
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
    /// The one-operand op `name` computes when it has no attributes.
    fn named(name: &str) -> Option<Op> {
        Some(match name {
            "Relu" => Op::Relu,
            "Neg" => Op::Neg,
            "Abs" => Op::Abs,
            "Sqrt" => Op::Sqrt,
            "Floor" => Op::Floor,
            "Ceil" => Op::Ceil,
            "Reciprocal" => Op::Reciprocal,
            "HardSwish" => Op::HardSwish,
            "Exp" => Op::Exp,
            "Log" => Op::Log,
            "Sigmoid" => Op::Sigmoid,
            "Tanh" => Op::Tanh,
            "Erf" => Op::Erf,
            _ => return None,
        })
    }

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
                | Op::HardSigmoid(..)
                | Op::HardSwish
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
    "HardSigmoid",
    "HardSwish",
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

/// The node an elementwise kernel computes: of the graph, or inside a
/// fused body, with the constants it reads at compile time.
pub struct Site<'a> {
    pub node: &'a Node,
    pub opset: u32,
    /// The value of input `i`, where it is a constant.
    pub constant: &'a dyn Fn(usize) -> Option<&'a Tensor>,
}

/// The op `site` computes, and how many inputs it reads.
fn classify(site: &Site) -> Result<(Op, usize)> {
    let node = site.node;
    let params = E::of(&node.op, &node.attrs)?;
    let n = node.inputs.len();
    let has_input = |i: usize| node.inputs.get(i).is_some_and(Option::is_some);
    Ok(match node.op.as_str() {
        "Add" | "Sum" => (Op::Fold(Arith::Add), n),
        "Sub" => (Op::Fold(Arith::Sub), 2),
        "Mul" => (Op::Fold(Arith::Mul), 2),
        "Div" => (Op::Fold(Arith::Div), 2),
        "Max" => (Op::Fold(Arith::Max), n),
        "Min" => (Op::Fold(Arith::Min), n),
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
                if site.opset < 11 {
                    return Ok(attr.unwrap_or(default));
                }
                Ok(match has_input(i) {
                    true => match (site.constant)(i) {
                        Some(t) => t.to_f32s()[0],
                        None => {
                            return Err(Error::unsupported(
                                "Clip bounds that are not constants on WebAssembly",
                            ));
                        }
                    },
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
        "HardSigmoid" => match params {
            Some(E::HardSigmoid { alpha, beta }) => (Op::HardSigmoid(alpha, beta), 1),
            _ => unreachable!("HardSigmoid's parameters are HardSigmoid"),
        },
        "Pow" => match (site.constant)(1) {
            Some(p) if p.len() == 1 => (Op::PowConst(p.to_f32s()[0]), 1),
            _ => (Op::Pow, 2),
        },
        other => match Op::named(other) {
            Some(op) => (op, 1),
            None => return Err(Error::unsupported(format!("{other} on WebAssembly"))),
        },
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
            clamp(b, lanes, lo, hi);
        }
        Op::HardSigmoid(alpha, beta) => {
            b.local_get(x);
            emit::constant(b, lanes, alpha);
            emit::arith(b, lanes, Arith::Mul);
            emit::constant(b, lanes, beta);
            emit::arith(b, lanes, Arith::Add);
            clamp(b, lanes, 0.0, 1.0);
        }
        Op::HardSwish => {
            b.local_get(x).local_get(x);
            emit::constant(b, lanes, 6.0);
            emit::arith(b, lanes, Arith::Div);
            emit::constant(b, lanes, 0.5);
            emit::arith(b, lanes, Arith::Add);
            clamp(b, lanes, 0.0, 1.0);
            emit::arith(b, lanes, Arith::Mul);
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

/// Clamps the value on the stack to [lo, hi] (max, then min, as Clip
/// is defined).
fn clamp(b: &mut InstrSeqBuilder, lanes: usize, lo: f32, hi: f32) {
    emit::constant(b, lanes, lo);
    emit::arith(b, lanes, Arith::Max);
    emit::constant(b, lanes, hi);
    emit::arith(b, lanes, Arith::Min);
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
/// Returns the output dims and per operand its element strides; `None`
/// where an operand's dim is neither the output's nor 1 (a broadcast that
/// only the run's sizes could decide).
fn collapse(out: &[Expr], ins: &[Vec<Expr>]) -> Option<(Vec<Expr>, Vec<Vec<Expr>>)> {
    let strides: Vec<Vec<Expr>> = ins
        .iter()
        .map(|s| broadcast_row_major(s, out).ok())
        .collect::<Option<_>>()?;
    let mut dims: Vec<Expr> = Vec::new();
    let mut st: Vec<Vec<Expr>> = vec![Vec::new(); ins.len()];
    for d in 0..out.len() {
        if out[d].as_const() == Some(1) {
            continue;
        }
        let mergeable = !dims.is_empty()
            && strides.iter().enumerate().all(|(j, s)| {
                let prev = st[j].last().expect("same length as dims");
                *prev == s[d].mul(&out[d])
            });
        if mergeable {
            let last = dims.last_mut().expect("non-empty");
            *last = last.mul(&out[d]);
            for (j, s) in strides.iter().enumerate() {
                *st[j].last_mut().expect("non-empty") = s[d].clone();
            }
        } else {
            dims.push(out[d].clone());
            for (j, s) in strides.iter().enumerate() {
                st[j].push(s[d].clone());
            }
        }
    }
    if dims.is_empty() {
        dims.push(Expr::constant(1));
        for s in &mut st {
            s.push(Expr::constant(0));
        }
    }
    Some((dims, st))
}

/// Where a step of an elementwise program takes an operand from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Operand {
    /// The kernel's input tensor `j`, at the element being computed.
    Input(usize),
    /// The result of an earlier step.
    Step(usize),
    /// A scalar constant.
    Const(f32),
}

/// One op of an elementwise program, applied to its operands.
#[derive(Clone, Debug)]
struct Step {
    op: Op,
    args: Vec<Operand>,
}

/// Pointwise steps over operands held in locals: a fused chain's kernel
/// runs one on each element (or vector) it loads, a GEMM's epilogue on
/// each result it holds.
pub struct Program {
    steps: Vec<Step>,
    /// How many operands ([`Operand::Input`]) the steps read.
    inputs: usize,
    /// The [`Operand::Const`]s, in the order the steps read them.
    consts: Vec<f32>,
    math: Funcs,
}

/// The locals one lane width of a [`Program`] computes in.
pub struct Regs {
    /// Where the caller puts the operands before [`Program::emit`].
    pub inputs: Vec<LocalId>,
    results: Vec<LocalId>,
    consts: Vec<LocalId>,
}

impl Program {
    fn new(ctx: &mut Ctx, steps: Vec<Step>, inputs: usize) -> Program {
        let ops = || steps.iter().map(|s| s.op);
        let general_pow =
            |op: Op| matches!(op, Op::Pow) || matches!(op, Op::PowConst(_)) && !op.vectorizes();
        let needs_exp = ops()
            .any(|op| general_pow(op) || matches!(op, Op::Exp | Op::Sigmoid | Op::Tanh | Op::Erf));
        let needs_log = ops().any(|op| general_pow(op) || op == Op::Log);
        let math = Funcs {
            exp: needs_exp.then(|| ctx.exp()),
            log: needs_log.then(|| ctx.log()),
        };
        let consts = steps
            .iter()
            .flat_map(|s| &s.args)
            .filter_map(|a| match a {
                Operand::Const(c) => Some(*c),
                _ => None,
            })
            .collect();
        Program {
            steps,
            inputs,
            consts,
            math,
        }
    }

    /// Whether every step has an `f32x4` form.
    pub fn vectorizes(&self) -> bool {
        self.steps.iter().all(|s| s.op.vectorizes())
    }

    /// Fresh locals for computing `lanes` at a time.
    pub fn regs(&self, fx: &mut Fx, lanes: usize) -> Regs {
        let mut make = |n: usize| (0..n).map(|_| fx.vec(lanes)).collect::<Vec<_>>();
        Regs {
            inputs: make(self.inputs),
            results: make(self.steps.len()),
            consts: make(self.consts.len()),
        }
    }

    /// Fills `regs`' constants (once, before any [`Program::emit`]).
    pub fn set_consts(&self, b: &mut InstrSeqBuilder, regs: &Regs, lanes: usize) {
        for (c, local) in self.consts.iter().zip(&regs.consts) {
            emit::constant(b, lanes, *c);
            b.local_set(*local);
        }
    }

    /// Computes the steps on `regs.inputs`, leaving the last result on the
    /// stack above whatever `before_last` pushes (a store's address);
    /// `tmp` is a scalar scratch local.
    pub fn emit(
        &self,
        b: &mut InstrSeqBuilder,
        lanes: usize,
        regs: &Regs,
        tmp: LocalId,
        before_last: impl FnOnce(&mut InstrSeqBuilder),
    ) {
        let mut before_last = Some(before_last);
        let mut next_const = 0;
        for (k, step) in self.steps.iter().enumerate() {
            let operands: Vec<LocalId> = step
                .args
                .iter()
                .map(|a| match *a {
                    Operand::Input(j) => regs.inputs[j],
                    Operand::Step(i) => regs.results[i],
                    Operand::Const(_) => {
                        next_const += 1;
                        regs.consts[next_const - 1]
                    }
                })
                .collect();
            let last = k + 1 == self.steps.len();
            if last && let Some(push) = before_last.take() {
                push(b);
            }
            apply(b, lanes, step.op, &operands, &self.math, tmp);
            if !last {
                b.local_set(regs.results[k]);
            }
        }
    }
}

/// A [`Program`] built term by term, for kernels that compute a formula
/// of their own (a recurrent cell's gates) rather than a graph's nodes.
#[derive(Default)]
pub struct Formula {
    steps: Vec<Step>,
    inputs: usize,
}

/// A value of a [`Formula`]: an operand or an earlier step's result.
#[derive(Clone, Copy, Debug)]
pub struct Term(Operand);

impl Formula {
    /// The next operand (the caller loads operand `j` into
    /// `regs.inputs[j]`).
    pub fn input(&mut self) -> Term {
        self.inputs += 1;
        Term(Operand::Input(self.inputs - 1))
    }

    pub fn constant(v: f32) -> Term {
        Term(Operand::Const(v))
    }

    fn step(&mut self, op: Op, args: &[Term]) -> Term {
        self.steps.push(Step {
            op,
            args: args.iter().map(|t| t.0).collect(),
        });
        Term(Operand::Step(self.steps.len() - 1))
    }

    pub fn arith(&mut self, a: Arith, x: Term, y: Term) -> Term {
        self.step(Op::Fold(a), &[x, y])
    }

    /// `x` clamped to [-bound, bound], or `x` without a bound.
    pub fn clip(&mut self, x: Term, bound: Option<f32>) -> Term {
        match bound {
            Some(c) => self.step(Op::Clip(-c, c), &[x]),
            None => x,
        }
    }

    /// The op `name` (one without attributes) applied to `x`.
    pub fn unary(&mut self, name: &str, x: Term) -> Result<Term> {
        let op = Op::named(name)
            .ok_or_else(|| Error::unsupported(format!("{name} as an activation on WebAssembly")))?;
        Ok(self.step(op, &[x]))
    }

    /// The program whose result is its last step (the last `arith`,
    /// `unary` or bounded `clip`: every formula ends in one).
    pub fn program(self, ctx: &mut Ctx) -> Program {
        Program::new(ctx, self.steps, self.inputs)
    }
}

pub fn lower(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (op, arity) = {
        let constant = |i: usize| ctx.opt_constant(i);
        classify(&Site {
            node: ctx.node,
            opset: ctx.opset,
            constant: &constant,
        })?
    };
    let ins: Vec<Tt> = (0..arity).map(|i| ctx.input(i)).collect::<Result<_>>()?;
    let step = Step {
        op,
        args: (0..arity).map(Operand::Input).collect(),
    };
    let program = Program::new(ctx, vec![step], arity);
    emit_program(ctx, f, &ins, &program)
}

/// `FusedElementwise`: the body's nodes as the steps of one program, so
/// each element is loaded once and only the last result is stored.
pub fn fused(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let body = wpc_ir::ops::fused::body(ctx.node)?;
    let at = body
        .inputs
        .iter()
        .enumerate()
        .map(|(j, &v)| (v, Operand::Input(j)))
        .collect();
    let steps = program(body, &body.topo_order()?, at, ctx.opset)?;
    let ins: Vec<Tt> = (0..ctx.node.inputs.len())
        .map(|i| ctx.input(i))
        .collect::<Result<_>>()?;
    let program = Program::new(ctx, steps, ins.len());
    emit_program(ctx, f, &ins, &program)
}

/// The tail of a `FusedEpilogue` as a program on the anchor's result
/// (operand 0) and the fused-node inputs the tail reads (operands 1..,
/// whose fused-input indices are returned in that order).
pub fn tail(ctx: &mut Ctx, e: &wpc_ir::ops::fused::Epilogue) -> Result<(Program, Vec<usize>)> {
    let body = e.body;
    let read = tail_inputs(e);
    let at = std::iter::once((e.result, Operand::Input(0)))
        .chain(
            read.iter()
                .enumerate()
                .map(|(k, &j)| (body.inputs[j], Operand::Input(k + 1))),
        )
        .collect();
    let steps = program(body, &e.tail, at, ctx.opset)?;
    Ok((Program::new(ctx, steps, read.len() + 1), read))
}

/// The fused-node inputs `e`'s tail reads, in input order.
pub fn tail_inputs(e: &wpc_ir::ops::fused::Epilogue) -> Vec<usize> {
    let body = e.body;
    (0..body.inputs.len())
        .filter(|&j| {
            e.tail
                .iter()
                .any(|&n| body.node(n).inputs.contains(&Some(body.inputs[j])))
        })
        .collect()
}

/// The steps computing `nodes` of `body` in order, operands found in `at`
/// (which gains each node's result) or as scalar constants of the body.
fn program(
    body: &Graph,
    nodes: &[NodeId],
    mut at: HashMap<ValueId, Operand>,
    opset: u32,
) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for &n in nodes {
        let node = body.node(n);
        let within = |e: Error| e.within(node.context());
        let (op, arity) = classify_in(body, n, opset).map_err(within)?;
        let args = (0..arity)
            .map(|i| {
                let v = node.inputs.get(i).copied().flatten();
                let found = v.and_then(|v| {
                    at.get(&v).copied().or_else(|| {
                        let t = body.constants.get(&v)?;
                        (t.len() == 1).then(|| Operand::Const(t.to_f32s()[0]))
                    })
                });
                found.ok_or_else(|| within(Error::invalid(format!("operand {i} is not computed"))))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = node.outputs.first().copied().flatten();
        let out = out.ok_or_else(|| within(Error::invalid("no output")))?;
        at.insert(out, Operand::Step(steps.len()));
        steps.push(Step { op, args });
    }
    Ok(steps)
}

/// The op node `n` of `graph` computes, if every tensor it touches is
/// float32 (constants from `graph`).
fn classify_in(graph: &Graph, n: NodeId, opset: u32) -> Result<(Op, usize)> {
    let node = graph.node(n);
    for v in node
        .inputs
        .iter()
        .flatten()
        .chain(node.outputs.iter().flatten())
    {
        let dtype = graph.value(*v).ty.dtype;
        if dtype != Some(wpc_ir::DType::F32) {
            return Err(Error::unsupported(format!(
                "{} on {} tensors in a fused kernel",
                node.op,
                dtype.map_or("untyped".into(), |d| d.to_string())
            )));
        }
    }
    let constant = |i: usize| {
        let v = node.inputs.get(i).copied().flatten()?;
        graph.constants.get(&v)
    };
    classify(&Site {
        node,
        opset,
        constant: &constant,
    })
}

/// Whether node `n` of `graph` has a vector form (and the fused kernel
/// computes it).
pub fn vectorizes(graph: &Graph, n: NodeId, opset: u32) -> bool {
    fuses(graph, n, opset) && classify_in(graph, n, opset).is_ok_and(|(op, _)| op.vectorizes())
}

/// Whether the fused kernel can compute node `n` of `graph`.
pub fn fuses(graph: &Graph, n: NodeId, opset: u32) -> bool {
    is_elementwise(&graph.node(n).op) && classify_in(graph, n, opset).is_ok()
}

/// Emits `program` over `ins`, broadcast to the node's output 0: nested
/// loops with a pointer per tensor, vectors in the innermost loop where
/// every step has a vector form and every input is contiguous or a splat.
fn emit_program(
    ctx: &mut Ctx,
    f: &mut FunctionBuilder,
    ins: &[Tt],
    program: &Program,
) -> Result<()> {
    for t in ins {
        super::require_f32(ctx, t)?;
    }
    let out = ctx.output(0)?;
    let shapes: Vec<Vec<Expr>> = ins.iter().map(|t| t.dims.clone()).collect();
    let (dims, strides) = collapse(&out.dims, &shapes)
        .ok_or_else(|| Error::unsupported("a broadcast whose sizes are only known at run time"))?;
    let lanes = if program.vectorizes() {
        ctx.isa.lanes()
    } else {
        1
    };
    let mut sizes = Sizes::new(ctx.sizes);
    let mut fx = ctx.fx();
    let ptrs: Vec<LocalId> = (0..=ins.len()).map(|_| fx.i32()).collect();
    let idx: Vec<LocalId> = dims.iter().map(|_| fx.i32()).collect();
    let wide = program.regs(&mut fx, lanes);
    let narrow = program.regs(&mut fx, 1);
    let tmp = fx.f32();
    let mut b = f.func_body();
    for (p, t) in ptrs.iter().zip(ins) {
        b.i32_const(t.addr as i32).local_set(*p);
    }
    b.i32_const(out.addr as i32).local_set(ptrs[ins.len()]);
    program.set_consts(&mut b, &wide, lanes);
    program.set_consts(&mut b, &narrow, 1);
    let all: Vec<Vec<Expr>> = strides
        .into_iter()
        .chain(std::iter::once(row_major(&dims)))
        .collect();
    // Each tensor's step along the innermost dim: 1, or 0 for a splat.
    let inner_steps: Vec<i64> = all
        .iter()
        .map(|s| s[s.len() - 1].as_const())
        .collect::<Option<_>>()
        .ok_or_else(|| Error::unsupported("an innermost stride known only at run time"))?;
    // Innermost: vectors where every input is contiguous or a splat.
    let inner_ok = lanes == 4 && inner_steps.iter().all(|s| (0..=1).contains(s));
    let n = dims.last().expect("at least one dim");
    let main = if inner_ok {
        n.floor_div(&Expr::constant(4)).scale(4)
    } else {
        Expr::constant(0)
    };
    let vector_part = main.as_const() != Some(0);
    let scalar_part = main != *n;
    let (n, main) = (
        sizes.of(&mut b, &mut fx, n)?,
        sizes.of(&mut b, &mut fx, &main)?,
    );
    let walk = Walk::new(&mut b, &mut fx, &mut sizes, 4, &dims, &all, &ptrs, &idx)?;
    walk.level(&mut b, &mut fx, 0, &mut |b, fx, inner| {
        let body = |b: &mut InstrSeqBuilder, fx: &Fx, l: usize, regs: &Regs| {
            for (j, v) in regs.inputs.iter().enumerate() {
                b.local_get(ptrs[j]);
                if inner_steps[j] == 0 {
                    emit::load(b, fx, 1, 0);
                    emit::splat(b, l);
                } else {
                    emit::load(b, fx, l, 0);
                }
                b.local_set(*v);
            }
            // The last step's result goes straight to memory.
            program.emit(b, l, regs, tmp, |b| {
                b.local_get(ptrs[ins.len()]);
            });
            emit::store(b, fx, l, 0);
            for (j, p) in ptrs.iter().enumerate() {
                emit::bump(b, *p, 4 * l as i64 * inner_steps[j]);
            }
        };
        if vector_part {
            emit::for_size(b, inner, Size::Const(0), main, 4, |b| body(b, fx, 4, &wide));
        }
        if scalar_part {
            emit::for_size(b, inner, main, n, 1, |b| body(b, fx, 1, &narrow));
        }
    });
    Ok(())
}

/// Nested loops over collapsed dims, each tensor's pointer advancing by
/// its own stride; the innermost level is left to the caller, which must
/// advance the pointers itself. Loop counts and pointer steps are
/// [`Size`]s, computed when the kernel starts where they are dynamic.
pub struct Walk<'a> {
    /// Per dim, its size (the last is the caller's loop's count).
    pub dims: Vec<Size>,
    /// Per outer dim, per tensor: the bytes its pointer moves after each
    /// index of that dim (the level below moved it too).
    steps: Vec<Vec<Size>>,
    /// Per outer dim, per tensor: the bytes that move its pointer back
    /// after that dim's loop.
    rewinds: Vec<Vec<Size>>,
    pub ptrs: &'a [LocalId],
    pub idx: &'a [LocalId],
}

impl<'a> Walk<'a> {
    /// The walk of `dims` with per tensor element `strides` per dim
    /// (negative ones walk backwards) over elements of `elem_bytes`; the
    /// sizes it needs are computed at `b`'s position.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        b: &mut InstrSeqBuilder,
        fx: &mut Fx,
        sizes: &mut Sizes,
        elem_bytes: usize,
        dims: &[Expr],
        strides: &[Vec<Expr>],
        ptrs: &'a [LocalId],
        idx: &'a [LocalId],
    ) -> Result<Walk<'a>> {
        let eb = elem_bytes as i64;
        let outer = dims.len().saturating_sub(1);
        let mut steps = Vec::with_capacity(outer);
        let mut rewinds = Vec::with_capacity(outer);
        for d in 0..outer {
            let mut step = Vec::new();
            let mut rewind = Vec::new();
            for s in strides {
                // The innermost loop leaves its pointers advanced; outer
                // levels rewind theirs.
                let moved = if d + 2 == dims.len() {
                    dims[d + 1].mul(&s[d + 1])
                } else {
                    Expr::constant(0)
                };
                step.push(sizes.of(b, fx, &s[d].sub(&moved).scale(eb))?);
                rewind.push(sizes.of(b, fx, &dims[d].mul(&s[d]).scale(-eb))?);
            }
            steps.push(step);
            rewinds.push(rewind);
        }
        Ok(Walk {
            dims: sizes.all(b, fx, dims)?,
            steps,
            rewinds,
            ptrs,
            idx,
        })
    }

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
        emit::for_size(b, self.idx[d], Size::Const(0), self.dims[d], 1, |b| {
            self.level(b, fx, d + 1, inner);
            for (p, step) in self.ptrs.iter().zip(&self.steps[d]) {
                emit::bump_size(b, *p, *step);
            }
        });
        for (p, rewind) in self.ptrs.iter().zip(&self.rewinds[d]) {
            emit::bump_size(b, *p, *rewind);
        }
    }
}
