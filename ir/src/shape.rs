//! Symbolic tensor shapes.

use std::fmt;

/// One dimension of a tensor shape: a known size, a named symbol
/// (`batch`, `seq_len`: ONNX's `dim_param`), or not known at all.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(usize),
    Symbol(String),
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
