//! Comparing computed tensors with expected ones at stated tolerances.

use wpc_ir::{DType, Tensor};

/// Allowed error: `|got - want| <= atol + rtol * |want|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Tolerance {
    /// The tolerance wpc states for `dtype` on the reference backend:
    /// float32/float64 `rtol 1e-3, atol 1e-5` (the ONNX backend-test `rtol`,
    /// with an `atol` that forgives f32 rounding near zero); float16 and
    /// bfloat16 `rtol 1e-2, atol 1e-3`; integers and bool exact.
    pub fn for_dtype(dtype: DType) -> Tolerance {
        match dtype {
            DType::F32 | DType::F64 => Tolerance {
                rtol: 1e-3,
                atol: 1e-5,
            },
            DType::F16 | DType::BF16 => Tolerance {
                rtol: 1e-2,
                atol: 1e-3,
            },
            _ => Tolerance {
                rtol: 0.0,
                atol: 0.0,
            },
        }
    }
}

/// The worst errors seen in a comparison.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ErrorStats {
    pub max_abs: f64,
    pub max_rel: f64,
}

/// Compares `got` with `want`; `Err` says why they differ.
pub fn compare(got: &Tensor, want: &Tensor, tol: Tolerance) -> Result<ErrorStats, String> {
    if got.dtype() != want.dtype() {
        return Err(format!(
            "dtype {} but expected {}",
            got.dtype(),
            want.dtype()
        ));
    }
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?} but expected {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let (g, w) = (got.to_f64s(), want.to_f64s());
    let mut stats = ErrorStats::default();
    let mut first_bad = None;
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        if a == b || (a.is_nan() && b.is_nan()) {
            continue;
        }
        let abs = (a - b).abs();
        let rel = if b != 0.0 { abs / b.abs() } else { abs };
        if abs.is_finite() {
            stats.max_abs = stats.max_abs.max(abs);
            stats.max_rel = stats.max_rel.max(rel);
        }
        // Written so that a NaN error (one side NaN) counts as out of tolerance.
        let within = abs <= tol.atol + tol.rtol * b.abs();
        if !within && first_bad.is_none() {
            first_bad = Some((i, a, b));
        }
    }
    match first_bad {
        None => Ok(stats),
        Some((i, a, b)) => Err(format!(
            "element {i} is {a} but expected {b} (max abs error {:.3e}, max rel error {:.3e}; tolerance rtol {} atol {})",
            stats.max_abs, stats.max_rel, tol.rtol, tol.atol
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_respects_tolerance_nan_and_shape() {
        let tol = Tolerance::for_dtype(DType::F32);
        let a = Tensor::from_vec(vec![3], vec![1.0f32, f32::NAN, 100.0]);
        let b = Tensor::from_vec(vec![3], vec![1.000_001f32, f32::NAN, 100.05]);
        assert!(compare(&a, &b, tol).is_ok());
        let c = Tensor::from_vec(vec![3], vec![1.1f32, f32::NAN, 100.0]);
        assert!(compare(&a, &c, tol).unwrap_err().contains("element 0"));
        assert!(compare(&a, &a.clone().reshaped(vec![3, 1]), tol).is_err());
        let i = Tensor::from_vec(vec![1], vec![1i64]);
        assert!(
            compare(
                &i,
                &Tensor::from_vec(vec![1], vec![2i64]),
                Tolerance::for_dtype(DType::I64)
            )
            .is_err()
        );
    }
}
