//! Reductions over one run of adjacent axes: the input is viewed as
//! [outer, r, inner] and each output element folds r inputs. With inner = 1
//! the r inputs are contiguous and fold as vectors, the lanes combined at
//! the end; otherwise vectors run along inner and fold down the r axis.
//! Reductions over non-adjacent axes run the reference kernel. Any of
//! outer, r and inner may be dynamic (sizes from the run's table).

use walrus::ir::{BinaryOp, UnaryOp};
use walrus::{FunctionBuilder, InstrSeqBuilder, LocalId};
use wpc_ir::{Error, Result};

use crate::emit::{self, Arith, Fx};
use crate::lower::Ctx;
use crate::sizes::{Size, Sizes};
use wpc_ir::sym::Expr;

/// How elements fold: `acc = op(acc, x)`, or `op(acc, x·x)` when `square`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fold {
    pub op: Arith,
    pub square: bool,
}

impl Fold {
    pub fn plain(op: Arith) -> Fold {
        Fold { op, square: false }
    }

    /// The fold's identity: what an accumulator starts from.
    fn init(self) -> f32 {
        match self.op {
            Arith::Max => f32::NEG_INFINITY,
            Arith::Min => f32::INFINITY,
            Arith::Mul => 1.0,
            _ => 0.0,
        }
    }

    /// Folds the value on the stack into `acc` (both of `lanes`).
    fn step(self, b: &mut InstrSeqBuilder, lanes: usize, acc: LocalId, x: LocalId) {
        b.local_set(x).local_get(acc).local_get(x);
        if self.square {
            b.local_get(x);
            emit::arith(b, lanes, Arith::Mul);
        }
        emit::arith(b, lanes, self.op);
        b.local_set(acc);
    }
}

/// Folds `n` floats from `ptr` (advanced past them) into `result`:
/// vectors of 4 then a scalar tail, the lanes combined at the end. `n`
/// may be known only at run time.
pub fn reduce_row(
    b: &mut InstrSeqBuilder,
    fx: &mut Fx,
    ptr: LocalId,
    n: Size,
    fold: Fold,
    result: LocalId,
) {
    let lanes = fx.isa.lanes();
    let (i, v, xv, xs) = (fx.i32(), fx.vec(4), fx.vec(4), fx.f32());
    // Where the vectors end: a constant, or n rounded down to whole vectors.
    let main = match n {
        _ if lanes != 4 => Size::Const(0),
        Size::Const(n) => Size::Const(n / 4 * 4),
        Size::Local(n) => {
            let main = fx.i32();
            b.local_get(n)
                .i32_const(-4)
                .binop(BinaryOp::I32And)
                .local_set(main);
            Size::Local(main)
        }
    };
    b.f32_const(fold.init()).local_set(result);
    if main != Size::Const(0) {
        emit::constant(b, 4, fold.init());
        b.local_set(v);
        emit::for_size(b, i, Size::Const(0), main, 4, |b| {
            b.local_get(ptr);
            emit::load(b, fx, 4, 0);
            fold.step(b, 4, v, xv);
            emit::bump(b, ptr, 16);
        });
        for lane in 0..4 {
            b.local_get(result)
                .local_get(v)
                .unop(UnaryOp::F32x4ExtractLane { idx: lane });
            emit::arith(b, 1, fold.op);
            b.local_set(result);
        }
    }
    if main != n {
        emit::for_size(b, i, main, n, 1, |b| {
            b.local_get(ptr);
            emit::load(b, fx, 1, 0);
            fold.step(b, 1, result, xs);
            emit::bump(b, ptr, 4);
        });
    }
}

/// `ReduceSum`, `ReduceMean`, `ReduceMax`, `ReduceMin`, `ReduceSumSquare`
/// and `ReduceProd` over adjacent axes (keepdims does not change the
/// layout).
pub fn reduce(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    super::require_f32(ctx, &x)?;
    let (fold, mean) = match ctx.node.op.as_str() {
        "ReduceSum" => (Fold::plain(Arith::Add), false),
        "ReduceMean" => (Fold::plain(Arith::Add), true),
        "ReduceMax" => (Fold::plain(Arith::Max), false),
        "ReduceMin" => (Fold::plain(Arith::Min), false),
        "ReduceProd" => (Fold::plain(Arith::Mul), false),
        "ReduceSumSquare" => (
            Fold {
                op: Arith::Add,
                square: true,
            },
            false,
        ),
        op => return Err(Error::unsupported(format!("{op} on WebAssembly"))),
    };
    let rank = x.shape.len();
    let p = wpc_ir::ops::params::Reduce::of(ctx.attrs())?;
    let Some(mut axes) = p.axes(ctx.ints(1)?, rank)? else {
        return Err(Error::unsupported("a reduction over no axes"));
    };
    axes.sort_unstable();
    let (first, last) = match (axes.first(), axes.last()) {
        (Some(&f), Some(&l)) if l - f + 1 == axes.len() => (f, l),
        (None, _) => (0, 0),
        _ => return Err(Error::unsupported("a reduction over non-adjacent axes")),
    };
    // The sizes of the [outer, r, inner] view; any may be dynamic.
    let outer = Expr::product(&x.dims[..first]);
    let r = match axes.is_empty() {
        true => Expr::constant(1),
        false => Expr::product(&x.dims[first..=last]),
    };
    let inner = Expr::product(&x.dims[(last + 1).min(rank)..]);
    if r.as_const() == Some(0) {
        return Err(Error::unsupported("a reduction over an empty axis"));
    }
    let rows_in_one = inner.as_const() == Some(1);
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let lanes = fx.isa.lanes();
    let (o, src, dst, c, t, p) = (fx.i32(), fx.i32(), fx.i32(), fx.i32(), fx.i32(), fx.i32());
    let (acc_v, acc_s, xv, xs) = (fx.vec(lanes), fx.f32(), fx.vec(lanes), fx.f32());
    let inv = fx.f32();
    let mut b = f.func_body();
    let mut sizes = Sizes::new(table);
    // Whole vectors of columns end at `main`: inner rounded down to lanes.
    let main = inner
        .floor_div(&Expr::constant(lanes as i64))
        .scale(lanes as i64);
    let [outer, r, inner, main, inner4, block] = [
        outer,
        r.clone(),
        inner.clone(),
        main,
        inner.scale(4),
        r.mul(&inner).scale(4),
    ]
    .map(|e| sizes.of(&mut b, &mut fx, &e));
    let (outer, r, inner, main, inner4, block) = (outer?, r?, inner?, main?, inner4?, block?);
    // A mean scales by 1/r: a constant, or worked out once at the start.
    if let (true, Size::Local(n)) = (mean, r) {
        b.f32_const(1.0)
            .local_get(n)
            .unop(UnaryOp::F32ConvertSI32)
            .binop(BinaryOp::F32Div)
            .local_set(inv);
    }
    b.i32_const(x.addr as i32)
        .local_set(src)
        .i32_const(out.addr as i32)
        .local_set(dst);
    let finish = |b: &mut InstrSeqBuilder, l: usize| {
        if !mean {
            return;
        }
        match r {
            Size::Const(n) => emit::constant(b, l, 1.0 / n as f32),
            Size::Local(_) => {
                b.local_get(inv);
                emit::splat(b, l);
            }
        }
        emit::arith(b, l, Arith::Mul);
    };
    emit::for_size(&mut b, o, Size::Const(0), outer, 1, |b| {
        if rows_in_one {
            reduce_row(b, &mut fx, src, r, fold, acc_s);
            b.local_get(dst).local_get(acc_s);
            finish(b, 1);
            emit::store(b, &fx, 1, 0);
            emit::bump(b, dst, 4);
            return;
        }
        // Columns of `l` lanes: fold down r rows `inner` apart.
        let column = |b: &mut InstrSeqBuilder, l: usize, acc: LocalId, x: LocalId| {
            emit::constant(b, l, fold.init());
            b.local_set(acc);
            b.local_get(src)
                .local_get(c)
                .i32_const(4)
                .binop(BinaryOp::I32Mul)
                .binop(BinaryOp::I32Add)
                .local_set(p);
            emit::for_size(b, t, Size::Const(0), r, 1, |b| {
                b.local_get(p);
                emit::load(b, &fx, l, 0);
                fold.step(b, l, acc, x);
                emit::bump_size(b, p, inner4);
            });
            b.local_get(dst).local_get(acc);
            finish(b, l);
            emit::store(b, &fx, l, 0);
            emit::bump(b, dst, 4 * l as i64);
        };
        if main != Size::Const(0) {
            emit::for_size(b, c, Size::Const(0), main, lanes as i64, |b| {
                column(b, lanes, acc_v, xv)
            });
        }
        if main != inner {
            emit::for_size(b, c, main, inner, 1, |b| column(b, 1, acc_s, xs));
        }
        emit::bump_size(b, src, block);
    });
    Ok(())
}
