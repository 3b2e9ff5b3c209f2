//! Parameters of the matrix products.

use crate::attr::Attrs;
use crate::error::Result;

/// `Gemm`: Y = alpha · op(A) · op(B) + beta · C.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Gemm {
    pub fn of(a: &Attrs) -> Result<Gemm> {
        Ok(Gemm {
            alpha: a.float("alpha", 1.0)?,
            beta: a.float("beta", 1.0)?,
            trans_a: a.int("transA", 0)? != 0,
            trans_b: a.int("transB", 0)? != 0,
        })
    }
}
