//! Symbolic tensor shapes.

use std::fmt;

use crate::sym::Expr;

/// One dimension of a tensor shape: a known size, a named symbol
/// (`batch`, `seq_len`: ONNX's `dim_param`), a size computed from
/// symbols (`2*seq + 1`), or not known at all.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(usize),
    Symbol(String),
    /// Neither a constant nor one symbol ([`Dim::of`] keeps it so).
    Expr(Expr),
    Unknown,
}

impl Dim {
    /// The size, when it is known.
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }

    /// The dim an expression gives: `Known` for a non-negative constant,
    /// `Symbol` for one symbol, `Unknown` for a negative constant (no
    /// size), `Expr` otherwise.
    pub fn of(e: Expr) -> Dim {
        if let Some(c) = e.as_const() {
            return usize::try_from(c).map_or(Dim::Unknown, Dim::Known);
        }
        if let Some(s) = e.as_sym() {
            return Dim::Symbol(s.to_string());
        }
        Dim::Expr(e)
    }

    /// The size as an expression, unless it is unknown.
    pub fn expr(&self) -> Option<Expr> {
        match self {
            Dim::Known(n) => i64::try_from(*n).ok().map(Expr::constant),
            Dim::Symbol(s) => Some(Expr::sym(s)),
            Dim::Expr(e) => Some(e.clone()),
            Dim::Unknown => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            // Quoted unless a plain name, so a symbol an exporter named
            // `?` or `` is told apart from a dim of unknown size.
            Dim::Symbol(s)
                if !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || "_.-".contains(c)) =>
            {
                f.write_str(s)
            }
            Dim::Symbol(s) => write!(f, "'{s}'"),
            Dim::Expr(e) => write!(f, "{e}"),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A tensor shape whose rank may itself be unknown.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Option<Vec<Dim>>);

impl Shape {
    /// A shape of unknown rank.
    pub fn unknown() -> Shape {
        Shape(None)
    }

    /// A fully known shape.
    pub fn known(dims: &[usize]) -> Shape {
        Shape(Some(dims.iter().map(|&d| Dim::Known(d)).collect()))
    }

    /// The dimensions, when the rank is known.
    pub fn dims(&self) -> Option<&[Dim]> {
        self.0.as_deref()
    }

    /// The rank, when known.
    pub fn rank(&self) -> Option<usize> {
        self.0.as_ref().map(Vec::len)
    }

    /// The concrete sizes, when every dimension is known.
    pub fn concrete(&self) -> Option<Vec<usize>> {
        self.0.as_ref()?.iter().map(Dim::known).collect()
    }

    /// The element count, when every dimension is known.
    pub fn numel(&self) -> Option<usize> {
        self.concrete().map(|d| d.iter().product())
    }

    /// The dims as expressions, when the rank and every dim are known
    /// (as sizes or from symbols).
    pub fn exprs(&self) -> Option<Vec<Expr>> {
        self.0.as_ref()?.iter().map(Dim::expr).collect()
    }

    /// The element count as an expression, when every dim has one.
    pub fn numel_expr(&self) -> Option<Expr> {
        Some(Expr::product(&self.exprs()?))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("[..]"),
            Some(dims) => {
                f.write_str("[")?;
                for (i, d) in dims.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{d}")?;
                }
                f.write_str("]")
            }
        }
    }
}
