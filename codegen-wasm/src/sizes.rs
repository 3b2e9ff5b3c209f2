//! Sizes in generated code: a constant where the dim is static, else an
//! i32 local computed from the run's size table
//! ([`crate::lower::SizeTable`]) when the kernel starts. Kernels that take
//! dynamic sizes ask [`Sizes::of`] for every loop count and pointer step
//! before they emit their loops, so each is computed once per call and a
//! loop that runs zero times never leaves one unset.

use walrus::InstrSeqBuilder;
use walrus::LocalId;
use walrus::ir::BinaryOp;
use wpc_ir::sym::{Expr, Term};
use wpc_ir::{Error, ErrorKind, Result};

use crate::emit::{self, Fx};
use crate::lower::SizeTable;

/// A size as generated code holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Const(i64),
    /// An i32 local set at the kernel's start.
    Local(LocalId),
}

impl Size {
    /// Pushes the size (an i32; [`Sizes::of`] gives constants that fit).
    pub fn push(self, b: &mut InstrSeqBuilder) {
        match self {
            Size::Const(c) => {
                b.i32_const(c as i32);
            }
            Size::Local(l) => {
                b.local_get(l);
            }
        }
    }
}

/// The sizes one kernel computes, each at most once.
pub struct Sizes<'t> {
    table: Option<&'t SizeTable>,
    known: Vec<(Expr, LocalId)>,
}

impl<'t> Sizes<'t> {
    pub fn new(table: Option<&'t SizeTable>) -> Sizes<'t> {
        Sizes {
            table,
            known: Vec::new(),
        }
    }

    /// `e` as a constant, or in a local computed here (at `b`'s position,
    /// which must run before any use).
    pub fn of(&mut self, b: &mut InstrSeqBuilder, fx: &mut Fx, e: &Expr) -> Result<Size> {
        if let Some(c) = e.as_const() {
            return i32::try_from(c)
                .map(|_| Size::Const(c))
                .map_err(|_| Error::unsupported(format!("size {c} is over wasm32's i32 range")));
        }
        if let Some((_, l)) = self.known.iter().find(|(k, _)| k == e) {
            return Ok(Size::Local(*l));
        }
        let table = self.table.ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                format!("size {e} is dynamic, but the module has no size table"),
            )
        })?;
        term(b, fx, table, &e.term())?;
        let l = fx.i32();
        b.local_set(l);
        self.known.push((e.clone(), l));
        Ok(Size::Local(l))
    }

    /// [`Sizes::of`] for each of `es`.
    pub fn all(&mut self, b: &mut InstrSeqBuilder, fx: &mut Fx, es: &[Expr]) -> Result<Vec<Size>> {
        es.iter().map(|e| self.of(b, fx, e)).collect()
    }
}

/// The value of `e`, which the kernel needs at compile time (`what`, e.g.
/// a row's length, names it in the refusal where it is dynamic).
pub fn fixed(e: &Expr, what: &str) -> Result<usize> {
    e.as_const()
        .and_then(|c| usize::try_from(c).ok())
        .ok_or_else(|| Error::unsupported(format!("{what} {e}, known only at run time")))
}

/// Pushes the value of `t` (an i32), reading dims from `table`.
fn term(b: &mut InstrSeqBuilder, fx: &mut Fx, table: &SizeTable, t: &Term) -> Result<()> {
    match t {
        Term::Int(c) => {
            let c = i32::try_from(*c).map_err(|_| {
                Error::unsupported(format!("size constant {c} is over wasm32's i32 range"))
            })?;
            b.i32_const(c);
        }
        Term::Sym(s) => {
            let at = table.addr_of(s).ok_or_else(|| {
                Error::new(ErrorKind::Internal, format!("size table has no dim '{s}'"))
            })?;
            b.i32_const(at as i32);
            emit::load_i32(b, fx, 0);
        }
        Term::Op(op, args) => {
            let (first, rest) = args.split_first().ok_or_else(|| {
                Error::new(ErrorKind::Internal, format!("size op {op} has no operands"))
            })?;
            term(b, fx, table, first)?;
            for a in rest {
                match *op {
                    "+" => {
                        term(b, fx, table, a)?;
                        b.binop(BinaryOp::I32Add);
                    }
                    "*" => {
                        term(b, fx, table, a)?;
                        b.binop(BinaryOp::I32Mul);
                    }
                    "max" | "min" => {
                        let (x, y) = (fx.i32(), fx.i32());
                        b.local_set(x);
                        term(b, fx, table, a)?;
                        b.local_set(y);
                        let cmp = if *op == "max" {
                            BinaryOp::I32GtS
                        } else {
                            BinaryOp::I32LtS
                        };
                        b.local_get(x)
                            .local_get(y)
                            .local_get(x)
                            .local_get(y)
                            .binop(cmp)
                            .select(None);
                    }
                    "floor_div" | "mod" => {
                        let (x, y, r) = (fx.i32(), fx.i32(), fx.i32());
                        b.local_set(x);
                        term(b, fx, table, a)?;
                        b.local_set(y);
                        // Truncating remainder; it needs flooring where it
                        // is non-zero and its sign differs from the divisor's.
                        b.local_get(x)
                            .local_get(y)
                            .binop(BinaryOp::I32RemS)
                            .local_set(r);
                        let push_adjust = |b: &mut InstrSeqBuilder| {
                            b.local_get(r)
                                .i32_const(0)
                                .binop(BinaryOp::I32Ne)
                                .local_get(r)
                                .local_get(y)
                                .binop(BinaryOp::I32Xor)
                                .i32_const(0)
                                .binop(BinaryOp::I32LtS)
                                .binop(BinaryOp::I32And);
                        };
                        if *op == "floor_div" {
                            b.local_get(x).local_get(y).binop(BinaryOp::I32DivS);
                            push_adjust(b);
                            b.binop(BinaryOp::I32Sub);
                        } else {
                            b.local_get(r).local_get(y);
                            push_adjust(b);
                            b.binop(BinaryOp::I32Mul).binop(BinaryOp::I32Add);
                        }
                    }
                    other => {
                        return Err(Error::new(
                            ErrorKind::Internal,
                            format!("unknown size op {other}"),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}
