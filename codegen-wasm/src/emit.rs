//! Small helpers over walrus's instruction builder: counted loops, f32 and
//! vector loads and stores at constant addresses, and the arithmetic that
//! differs between the scalar, SIMD128 and relaxed-SIMD variants ([`Isa`]).
//! Kernels call these instead of spelling out instruction sequences, so a
//! kernel is written once for every variant.

use walrus::ir::{BinaryOp, LoadKind, MemArg, StoreKind, TernaryOp, UnaryOp, Value};
use walrus::{InstrSeqBuilder, LocalId, MemoryId, ModuleLocals, ValType};

use crate::sizes::Size;

/// Which WebAssembly instruction set a variant may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// MVP instructions only, for engines without SIMD.
    Scalar,
    /// SIMD128 (`f32x4` arithmetic).
    Simd,
    /// SIMD128 plus relaxed SIMD (`f32x4.relaxed_madd`).
    Relaxed,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Simd, Isa::Relaxed, Isa::Scalar];

    /// The variant's name in bundles and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "wasm-scalar",
            Isa::Simd => "wasm-simd",
            Isa::Relaxed => "wasm-relaxed",
        }
    }

    pub fn parse(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }

    /// f32 lanes per vector register: 4 with SIMD, 1 without.
    pub fn lanes(self) -> usize {
        match self {
            Isa::Scalar => 1,
            Isa::Simd | Isa::Relaxed => 4,
        }
    }

    /// The wasm features (as `WebAssembly.validate` probes name them) the
    /// variant needs.
    pub fn features(self) -> Vec<String> {
        match self {
            Isa::Scalar => Vec::new(),
            Isa::Simd => vec!["simd".into()],
            Isa::Relaxed => vec!["simd".into(), "relaxed-simd".into()],
        }
    }
}

/// A function under construction: its locals, the memory, and the ISA.
pub struct Fx<'a> {
    pub locals: &'a mut ModuleLocals,
    pub mem: MemoryId,
    pub isa: Isa,
}

impl Fx<'_> {
    pub fn i32(&mut self) -> LocalId {
        self.locals.add(ValType::I32)
    }

    pub fn f32(&mut self) -> LocalId {
        self.locals.add(ValType::F32)
    }

    /// A local holding one vector of `lanes` floats (v128, or f32 when scalar).
    pub fn vec(&mut self, lanes: usize) -> LocalId {
        self.locals.add(if lanes == 4 {
            ValType::V128
        } else {
            ValType::F32
        })
    }
}

fn arg(offset: u64, align: u32) -> MemArg {
    MemArg { align, offset }
}

/// Loads `lanes` floats from `addr + offset` (address on the stack).
pub fn load(b: &mut InstrSeqBuilder, fx: &Fx, lanes: usize, offset: u64) {
    if lanes == 4 {
        b.load(fx.mem, LoadKind::V128, arg(offset, 4));
    } else {
        b.load(fx.mem, LoadKind::F32, arg(offset, 4));
    }
}

/// Stores `lanes` floats (value on the stack above the address).
pub fn store(b: &mut InstrSeqBuilder, fx: &Fx, lanes: usize, offset: u64) {
    if lanes == 4 {
        b.store(fx.mem, StoreKind::V128, arg(offset, 4));
    } else {
        b.store(fx.mem, StoreKind::F32, arg(offset, 4));
    }
}

pub fn load_i32(b: &mut InstrSeqBuilder, fx: &Fx, offset: u64) {
    b.load(fx.mem, LoadKind::I32 { atomic: false }, arg(offset, 4));
}

/// Loads an index (int32 or int64, wrapped to i32) from the address on the
/// stack plus `offset`.
pub fn load_index(b: &mut InstrSeqBuilder, fx: &Fx, offset: u64, wide: bool) {
    if wide {
        b.load(fx.mem, LoadKind::I64 { atomic: false }, arg(offset, 8))
            .unop(UnaryOp::I32WrapI64);
    } else {
        load_i32(b, fx, offset);
    }
}

/// Sets `i` to element `t` (a local) of the int32 or int64 (`wide`)
/// index tensor at `base`, as a position along an axis of `dim`: wrapped
/// if negative, and 0 when still out of range, so a gather reads row 0
/// rather than past its data.
pub fn load_axis_index(
    b: &mut InstrSeqBuilder,
    fx: &Fx,
    (base, wide): (u64, bool),
    t: LocalId,
    i: LocalId,
    dim: usize,
) {
    b.local_get(t)
        .i32_const(if wide { 8 } else { 4 })
        .binop(BinaryOp::I32Mul);
    load_index(b, fx, base, wide);
    b.local_tee(i)
        .local_get(i)
        .i32_const(dim as i32)
        .binop(BinaryOp::I32Add)
        .local_get(i)
        .i32_const(0)
        .binop(BinaryOp::I32GeS)
        .select(None)
        .local_tee(i)
        .i32_const(0)
        .local_get(i)
        .i32_const(dim as i32)
        .binop(BinaryOp::I32LtU)
        .select(None)
        .local_set(i);
}

pub fn store_i32(b: &mut InstrSeqBuilder, fx: &Fx, offset: u64) {
    b.store(fx.mem, StoreKind::I32 { atomic: false }, arg(offset, 4));
}

/// Widens the f32 on the stack to a vector of `lanes`.
pub fn splat(b: &mut InstrSeqBuilder, lanes: usize) {
    if lanes == 4 {
        b.unop(UnaryOp::F32x4Splat);
    }
}

/// Pushes `v` as a vector of `lanes`.
pub fn constant(b: &mut InstrSeqBuilder, lanes: usize, v: f32) {
    b.f32_const(v);
    splat(b, lanes);
}

/// Lane-wise arithmetic on the two vectors on the stack.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
}

pub fn arith(b: &mut InstrSeqBuilder, lanes: usize, op: Arith) {
    let op = match (lanes == 4, op) {
        (true, Arith::Add) => BinaryOp::F32x4Add,
        (true, Arith::Sub) => BinaryOp::F32x4Sub,
        (true, Arith::Mul) => BinaryOp::F32x4Mul,
        (true, Arith::Div) => BinaryOp::F32x4Div,
        // pmin/pmax would differ from ONNX on NaN; min/max propagate it.
        (true, Arith::Min) => BinaryOp::F32x4Min,
        (true, Arith::Max) => BinaryOp::F32x4Max,
        (false, Arith::Add) => BinaryOp::F32Add,
        (false, Arith::Sub) => BinaryOp::F32Sub,
        (false, Arith::Mul) => BinaryOp::F32Mul,
        (false, Arith::Div) => BinaryOp::F32Div,
        (false, Arith::Min) => BinaryOp::F32Min,
        (false, Arith::Max) => BinaryOp::F32Max,
    };
    b.binop(op);
}

/// `acc = a * x + acc` with `a`, `x` on the stack: fused (relaxed_madd)
/// where the variant allows it, multiply then add otherwise.
pub fn madd(b: &mut InstrSeqBuilder, fx: &Fx, lanes: usize, acc: LocalId) {
    if lanes == 4 && fx.isa == Isa::Relaxed {
        b.local_get(acc).tern_op(TernaryOp::F32x4RelaxedMadd);
    } else {
        arith(b, lanes, Arith::Mul);
        b.local_get(acc);
        arith(b, lanes, Arith::Add);
    }
    b.local_set(acc);
}

/// Sets `v` to zero.
pub fn zero(b: &mut InstrSeqBuilder, lanes: usize, v: LocalId) {
    if lanes == 4 {
        b.const_(Value::V128(0));
    } else {
        b.f32_const(0.0);
    }
    b.local_set(v);
}

/// `for i in (start..end).step_by(step) { body }` over an i32 local, for a
/// non-empty static range (a do-while: the test sits at the bottom).
pub fn for_range(
    b: &mut InstrSeqBuilder,
    i: LocalId,
    start: i64,
    end: i64,
    step: i64,
    body: impl FnOnce(&mut InstrSeqBuilder),
) {
    if start >= end {
        return;
    }
    b.i32_const(start as i32).local_set(i);
    b.loop_(None, |lp| {
        let top = lp.id();
        body(lp);
        lp.local_get(i)
            .i32_const(step as i32)
            .binop(BinaryOp::I32Add)
            .local_tee(i)
            .i32_const(end as i32)
            .binop(BinaryOp::I32LtS)
            .br_if(top);
    });
}

/// `for i in (start..end).step_by(step)` where both bounds are locals
/// (possibly an empty range: the test sits at the top).
pub fn for_locals(
    b: &mut InstrSeqBuilder,
    i: LocalId,
    start: LocalId,
    end: LocalId,
    step: i32,
    body: impl FnOnce(&mut InstrSeqBuilder),
) {
    b.local_get(start).local_set(i);
    b.block(None, |done| {
        let out = done.id();
        done.loop_(None, |lp| {
            let top = lp.id();
            lp.local_get(i)
                .local_get(end)
                .binop(BinaryOp::I32GeS)
                .br_if(out);
            body(lp);
            lp.local_get(i)
                .i32_const(step)
                .binop(BinaryOp::I32Add)
                .local_set(i)
                .br(top);
        });
    });
}

/// `for i in (start..end).step_by(step)` over sizes that may be known
/// only at run time ([`Size`]): [`for_range`] where both are constants,
/// else a loop that tests at the top (the range may be empty).
pub fn for_size(
    b: &mut InstrSeqBuilder,
    i: LocalId,
    start: Size,
    end: Size,
    step: i64,
    body: impl FnOnce(&mut InstrSeqBuilder),
) {
    if let (Size::Const(s), Size::Const(e)) = (start, end) {
        return for_range(b, i, s, e, step, body);
    }
    start.push(b);
    b.local_set(i);
    b.block(None, |done| {
        let out = done.id();
        done.loop_(None, |lp| {
            let top = lp.id();
            lp.local_get(i);
            end.push(lp);
            lp.binop(BinaryOp::I32GeS).br_if(out);
            body(lp);
            lp.local_get(i)
                .i32_const(step as i32)
                .binop(BinaryOp::I32Add)
                .local_set(i)
                .br(top);
        });
    });
}

/// `local += delta` for a delta that may be known only at run time.
pub fn bump_size(b: &mut InstrSeqBuilder, local: LocalId, delta: Size) {
    match delta {
        Size::Const(d) => bump(b, local, d),
        Size::Local(d) => {
            b.local_get(local)
                .local_get(d)
                .binop(BinaryOp::I32Add)
                .local_set(local);
        }
    }
}

/// Pushes `base + i * scale` (bytes), `i` an i32 local.
pub fn addr(b: &mut InstrSeqBuilder, base: u32, i: LocalId, scale: u32) {
    b.local_get(i);
    if scale != 1 {
        b.i32_const(scale as i32).binop(BinaryOp::I32Mul);
    }
    if base != 0 {
        b.i32_const(base as i32).binop(BinaryOp::I32Add);
    }
}

/// Pushes `base + i · by` (bytes), `i` an i32 local and `by` a size.
pub fn scaled(b: &mut InstrSeqBuilder, i: LocalId, by: Size, base: u32) {
    b.local_get(i);
    by.push(b);
    b.binop(BinaryOp::I32Mul);
    if base != 0 {
        b.i32_const(base as i32).binop(BinaryOp::I32Add);
    }
}

/// Pushes `base + k · by` (bytes), `k` a compile-time count and `by` a
/// size.
pub fn times(b: &mut InstrSeqBuilder, k: usize, by: Size, base: u32) {
    match by {
        Size::Const(c) => {
            b.i32_const((base as i64 + k as i64 * c) as i32);
        }
        Size::Local(l) => {
            b.local_get(l)
                .i32_const(k as i32)
                .binop(BinaryOp::I32Mul)
                .i32_const(base as i32)
                .binop(BinaryOp::I32Add);
        }
    }
}

/// Pushes the byte address `base + scale · Σ local·coeff` (i32 locals;
/// a coefficient or scale of 1 and a base of 0 emit nothing).
pub fn linear(b: &mut InstrSeqBuilder, terms: &[(LocalId, usize)], scale: usize, base: u32) {
    for (n, &(local, coeff)) in terms.iter().enumerate() {
        b.local_get(local);
        if coeff != 1 {
            b.i32_const(coeff as i32).binop(BinaryOp::I32Mul);
        }
        if n > 0 {
            b.binop(BinaryOp::I32Add);
        }
    }
    if scale != 1 {
        b.i32_const(scale as i32).binop(BinaryOp::I32Mul);
    }
    if base != 0 {
        b.i32_const(base as i32).binop(BinaryOp::I32Add);
    }
}

/// A softmax's middle step on one element: with a store address and a
/// load address of `x` on the stack, stores `e = exp(x − max)` (through
/// `exp`, a function of the module) and adds it to `sum`.
pub fn exp_shifted(
    b: &mut InstrSeqBuilder,
    fx: &Fx,
    exp: walrus::FunctionId,
    [max, e, sum]: [LocalId; 3],
) {
    load(b, fx, 1, 0);
    b.local_get(max)
        .binop(BinaryOp::F32Sub)
        .call(exp)
        .local_tee(e);
    store(b, fx, 1, 0);
    b.local_get(sum)
        .local_get(e)
        .binop(BinaryOp::F32Add)
        .local_set(sum);
}

/// `local += delta`.
pub fn bump(b: &mut InstrSeqBuilder, local: LocalId, delta: i64) {
    if delta != 0 {
        b.local_get(local)
            .i32_const(delta as i32)
            .binop(BinaryOp::I32Add)
            .local_set(local);
    }
}

/// `coord = o·stride + k·dilation − pad`: the input coordinate of window
/// tap `k` of output position `o` (negative inside the leading pad).
pub fn tap_coord(
    b: &mut InstrSeqBuilder,
    coord: LocalId,
    o: LocalId,
    stride: usize,
    k: LocalId,
    dilation: usize,
    pad: usize,
) {
    b.local_get(o)
        .i32_const(stride as i32)
        .binop(BinaryOp::I32Mul)
        .local_get(k)
        .i32_const(dilation as i32)
        .binop(BinaryOp::I32Mul)
        .binop(BinaryOp::I32Add)
        .i32_const(pad as i32)
        .binop(BinaryOp::I32Sub)
        .local_set(coord);
}

/// Pushes the f32 at `plane[y·width + x]` when `ok` is set, else the
/// plane's first element (always a valid address): the caller masks the
/// value with `ok`, so window taps in the padding never read out of bounds.
pub fn load_tap(
    b: &mut InstrSeqBuilder,
    fx: &Fx,
    plane: LocalId,
    y: LocalId,
    x: LocalId,
    width: Size,
    ok: LocalId,
) {
    b.local_get(y);
    width.push(b);
    b.binop(BinaryOp::I32Mul)
        .local_get(x)
        .binop(BinaryOp::I32Add)
        .i32_const(4)
        .binop(BinaryOp::I32Mul)
        .local_get(plane)
        .binop(BinaryOp::I32Add)
        .local_get(plane)
        .local_get(ok)
        .select(None);
    load(b, fx, 1, 0);
}
