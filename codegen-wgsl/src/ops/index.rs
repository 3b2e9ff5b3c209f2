//! WGSL index arithmetic. Static sizes are literals, so the shader
//! compiler strength-reduces the divisions; dynamic ones are read from the
//! kernel's parameters ([`Params`]). The static forms (`unravel`,
//! `offset`) are the dynamic ones (`unravel_of`, `offset_of`) over
//! constants, so both write the same text for the same sizes.

use std::fmt::Write;

pub use wpc_ir::ops::params::{broadcast_row_major, row_major};
use wpc_ir::sym::Expr;

use crate::kernel::Params;

/// Sizes as a kernel label shows them: `[12, 256]`, `[seq, 256]`.
pub fn show(dims: &[Expr]) -> String {
    let parts: Vec<String> = dims.iter().map(Expr::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// A static size as a size expression.
pub fn size(n: usize) -> Expr {
    Expr::constant(n as i64)
}

/// Static sizes as size expressions.
pub fn consts(v: &[usize]) -> Vec<Expr> {
    v.iter().map(|&n| Expr::constant(n as i64)).collect()
}

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    wpc_ir::tensor::strides(shape)
}

/// Lines `let {p}{d} = ...;` decomposing the flat index `var` over `shape`
/// into coordinates `{p}0..{p}{rank-1}` (all `u32`).
pub fn unravel(var: &str, shape: &[usize], p: &str) -> String {
    unravel_of(&mut Params::default(), var, &consts(shape), p)
}

/// [`unravel`] over sizes that may be dynamic (read from `params`).
pub fn unravel_of(params: &mut Params, var: &str, shape: &[Expr], p: &str) -> String {
    let st = row_major(shape);
    let mut s = String::new();
    for (d, (n, stride)) in shape.iter().zip(&st).enumerate() {
        let trivial = n.as_const().is_some_and(|n| n <= 1) || stride.as_const() == Some(0);
        let e = if trivial {
            "0u".to_string()
        } else if d == 0 {
            format!("{var} / {}", params.size(stride))
        } else if stride.as_const() == Some(1) {
            format!("{var} % {}", params.size(n))
        } else {
            format!("({var} / {}) % {}", params.size(stride), params.size(n))
        };
        let _ = writeln!(s, "    let {p}{d} = {e};");
    }
    s
}

/// `Σ {p}{d} * strides[d]` as a `u32` expression (`0u` when all are 0).
pub fn offset(p: &str, strides: &[usize]) -> String {
    offset_of(&mut Params::default(), p, &consts(strides))
}

/// [`offset`] over strides that may be dynamic (read from `params`).
pub fn offset_of(params: &mut Params, p: &str, strides: &[Expr]) -> String {
    let terms: Vec<String> = strides
        .iter()
        .enumerate()
        .filter(|(_, s)| s.as_const() != Some(0))
        .map(|(d, s)| {
            if s.as_const() == Some(1) {
                format!("{p}{d}")
            } else {
                format!("{p}{d} * {}", params.size(s))
            }
        })
        .collect();
    if terms.is_empty() {
        "0u".into()
    } else {
        terms.join(" + ")
    }
}

/// Strides that read an input of `shape` broadcast to `out` (0 on
/// broadcast dims), aligned to the right as ONNX broadcasting is.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    wpc_ir::ops::util::broadcast_strides(shape, out)
}

/// A WGSL literal of `v` for word type `w` (`1.5`, `-3i`, `7u`); a
/// non-finite float is a call of the `f32_bits` helper, which the kernel
/// then includes (WGSL forbids const-expressions that are inf or NaN).
pub fn literal(v: f64, w: wpc_bundle::device_data::Word) -> String {
    use wpc_bundle::device_data::Word;
    match w {
        Word::F32 => {
            let f = v as f32;
            if f.is_nan() {
                "f32_bits(0x7fc00000u)".into()
            } else if f.is_infinite() {
                if f > 0.0 {
                    "f32_bits(0x7f800000u)".into()
                } else {
                    "f32_bits(0xff800000u)".into()
                }
            } else {
                format!("{f:?}")
            }
        }
        Word::I32 => {
            let i = v.clamp(i32::MIN as f64, i32::MAX as f64) as i32;
            if i == i32::MIN {
                "i32(-2147483648)".into()
            } else {
                format!("{i}i")
            }
        }
        Word::U32 => format!("{}u", v.clamp(0.0, u32::MAX as f64) as u32),
    }
}
