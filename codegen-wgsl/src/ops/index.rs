//! WGSL index arithmetic over static shapes: every divisor and stride is a
//! literal, so the shader compiler strength-reduces it.

use std::fmt::Write;

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    wpc_ir::tensor::strides(shape)
}

/// Lines `let {p}{d} = ...;` decomposing the flat index `var` over `shape`
/// into coordinates `{p}0..{p}{rank-1}` (all `u32`).
pub fn unravel(var: &str, shape: &[usize], p: &str) -> String {
    let st = strides(shape);
    let mut s = String::new();
    for (d, (&n, &stride)) in shape.iter().zip(&st).enumerate() {
        let e = if n <= 1 || stride == 0 {
            "0u".to_string()
        } else if d == 0 {
            format!("{var} / {stride}u")
        } else if stride == 1 {
            format!("{var} % {n}u")
        } else {
            format!("({var} / {stride}u) % {n}u")
        };
        let _ = writeln!(s, "    let {p}{d} = {e};");
    }
    s
}

/// `Σ {p}{d} * strides[d]` as a `u32` expression (`0u` when all are 0).
pub fn offset(p: &str, strides: &[usize]) -> String {
    let terms: Vec<String> = strides
        .iter()
        .enumerate()
        .filter(|(_, s)| **s != 0)
        .map(|(d, &s)| {
            if s == 1 {
                format!("{p}{d}")
            } else {
                format!("{p}{d} * {s}u")
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
