//! Choosing codes, scales and zero points for blocks of weights, without
//! calibration data: what `passes::quant` runs on every weight it packs.
//!
//! Each block of `block` consecutive values of a row gets a scale `s` and
//! an integer zero point `z` (see [`crate::packed`] for how they are
//! stored); a value `x` becomes the code `q = clamp(round(x / s) + z)`
//! and reads back as `(q - z) · s`. Two ways to choose `(s, z)`:
//!
//! * [`Method::Rounding`]: the block's range (widened to hold 0) mapped
//!   onto the codes: exact at the extremes, but a single outlier
//!   stretches every step. Good enough at 8 bits.
//! * [`Method::Search`]: for each of a grid of clipping ranges (the
//!   range shrunk toward 0 by up to 45%), codes by rounding, then
//!   alternately the least-squares scale for those codes and the codes
//!   for that scale; the candidate with the least squared error wins.
//!   Rounding's choice is the first candidate, so the result is never
//!   worse than rounding. This is what keeps 3- and 2-bit weights
//!   usable: at 2 bits there are four codes, and where they sit matters
//!   more than covering the extremes.
//!
//! Scales stored as float16 are rounded before codes are chosen, so the
//! error reported is the error of what is stored.

use half::f16;

/// How a block's scale and zero point are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Rounding,
    Search,
}

impl Method {
    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            Method::Rounding => "round-to-nearest",
            Method::Search => "clip search + least squares",
        }
    }
}

/// How to quantize one weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// 2 to 8.
    pub bits: u32,
    /// Values per block, a power of two of 16 or more.
    pub block: usize,
    /// Zero points fixed at the middle code (`2^(bits-1)`), so they need
    /// not be stored.
    pub symmetric: bool,
    /// Scales stored as float16 instead of float32.
    pub f16_scales: bool,
    pub method: Method,
}

/// A weight of `rows` rows of `k` values, quantized.
#[derive(Clone, Debug)]
pub struct Quantized {
    /// One code per value, row-major `[rows, k]`.
    pub codes: Vec<u8>,
    /// One per (row, block), row-major.
    pub scales: Vec<f32>,
    /// One per (row, block); all `2^(bits-1)` when symmetric.
    pub zeros: Vec<u8>,
    /// Sum of squared errors over the weight.
    pub error: f64,
    /// Sum of squared values of the weight (`error / norm` is the
    /// relative squared error).
    pub norm: f64,
}

impl Quantized {
    /// `‖W − Ŵ‖ / ‖W‖`.
    pub fn relative_error(&self) -> f64 {
        if self.norm == 0.0 {
            0.0
        } else {
            (self.error / self.norm).sqrt()
        }
    }
}

/// Quantizes `w` (`rows × k`, row-major) by `spec`.
pub fn quantize(w: &[f32], rows: usize, k: usize, spec: &Spec) -> Quantized {
    assert_eq!(w.len(), rows * k, "weight of {rows}x{k}");
    let blocks = k.div_ceil(spec.block);
    let mut out = Quantized {
        codes: vec![0; rows * k],
        scales: Vec::with_capacity(rows * blocks),
        zeros: Vec::with_capacity(rows * blocks),
        error: 0.0,
        norm: 0.0,
    };
    for r in 0..rows {
        for b in 0..blocks {
            let range = r * k + b * spec.block..r * k + ((b + 1) * spec.block).min(k);
            let x = &w[range.clone()];
            let fit = fit_block(x, spec);
            encode(x, fit, spec.bits, &mut out.codes[range]);
            out.scales.push(fit.scale);
            out.zeros.push(fit.zero);
            out.error += fit.error;
            out.norm += x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
        }
    }
    out
}

/// A block's parameters and the squared error they give.
#[derive(Clone, Copy, Debug)]
struct Fit {
    scale: f32,
    zero: u8,
    error: f64,
}

/// The scale as stored.
fn stored(scale: f32, spec: &Spec) -> f32 {
    if spec.f16_scales {
        f16::from_f32(scale).to_f32()
    } else {
        scale
    }
}

fn code(x: f32, scale: f32, zero: u8, max: f32) -> f32 {
    ((x / scale).round() + f32::from(zero)).clamp(0.0, max)
}

fn encode(x: &[f32], fit: Fit, bits: u32, codes: &mut [u8]) {
    let max = ((1u32 << bits) - 1) as f32;
    for (c, &v) in codes.iter_mut().zip(x) {
        *c = code(v, fit.scale, fit.zero, max) as u8;
    }
}

/// Squared error of `x` under (`scale`, `zero`).
fn error_of(x: &[f32], scale: f32, zero: u8, max: f32) -> f64 {
    x.iter()
        .map(|&v| {
            let d = f64::from(v) - f64::from((code(v, scale, zero, max) - f32::from(zero)) * scale);
            d * d
        })
        .sum()
}

/// Rounding's parameters for the range `[lo, hi]` (which holds 0).
fn from_range(lo: f32, hi: f32, spec: &Spec, max: f32) -> (f32, u8) {
    if spec.symmetric {
        let half = f32::from(1u8 << (spec.bits - 1));
        let s = (-lo / half).max(hi / (half - 1.0));
        let s = if s > 0.0 { s } else { 1.0 };
        return (stored(s, spec), half as u8);
    }
    let s = (hi - lo) / max;
    if s <= 0.0 {
        return (1.0, 0);
    }
    let s = stored(s, spec);
    (s, (-lo / s).round().clamp(0.0, max) as u8)
}

fn fit_block(x: &[f32], spec: &Spec) -> Fit {
    let max = ((1u32 << spec.bits) - 1) as f32;
    let lo = x.iter().copied().fold(0.0f32, f32::min);
    let hi = x.iter().copied().fold(0.0f32, f32::max);
    let (scale, zero) = from_range(lo, hi, spec, max);
    let mut best = Fit {
        scale,
        zero,
        error: error_of(x, scale, zero, max),
    };
    if spec.method == Method::Rounding || best.error == 0.0 {
        return best;
    }
    const STEPS: usize = 10;
    for step in 0..STEPS {
        let shrink = 1.0 - 0.05 * step as f32;
        let (mut s, z) = from_range(lo * shrink, hi * shrink, spec, max);
        for _ in 0..3 {
            // The least-squares scale for these codes: Σx(q−z) / Σ(q−z)².
            let (mut num, mut den) = (0.0f64, 0.0f64);
            for &v in x {
                let d = f64::from(code(v, s, z, max) - f32::from(z));
                num += f64::from(v) * d;
                den += d * d;
            }
            if den == 0.0 {
                break;
            }
            let e = error_of(x, s, z, max);
            if e < best.error {
                best = Fit {
                    scale: s,
                    zero: z,
                    error: e,
                };
            }
            let next = stored((num / den) as f32, spec);
            if !(next > 0.0) || next == s {
                break;
            }
            s = next;
        }
        let e = error_of(x, s, z, max);
        if e < best.error {
            best = Fit {
                scale: s,
                zero: z,
                error: e,
            };
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bits: u32, method: Method) -> Spec {
        Spec {
            bits,
            block: 32,
            symmetric: false,
            f16_scales: false,
            method,
        }
    }

    fn weight(n: usize) -> Vec<f32> {
        // A heavy-tailed weight: mostly small values, a few outliers.
        (0..n)
            .map(|i| {
                let u = ((i * 2654435761) % 1000) as f32 / 1000.0 - 0.5;
                if i % 61 == 0 { u * 8.0 } else { u * u * u * 4.0 }
            })
            .collect()
    }

    fn dequantized(q: &Quantized, k: usize, block: usize) -> Vec<f32> {
        q.codes
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let g = (i / k) * k.div_ceil(block) + (i % k) / block;
                (f32::from(c) - f32::from(q.zeros[g])) * q.scales[g]
            })
            .collect()
    }

    #[test]
    fn the_error_reported_is_the_error_of_the_codes() {
        let w = weight(8 * 80);
        for bits in [2, 3, 4, 8] {
            for method in [Method::Rounding, Method::Search] {
                let q = quantize(&w, 8, 80, &spec(bits, method));
                let e: f64 = w
                    .iter()
                    .zip(dequantized(&q, 80, 32))
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum();
                assert!((e - q.error).abs() <= 1e-6 * (1.0 + e), "{bits} bits: {e} vs {}", q.error);
            }
        }
    }

    #[test]
    fn search_beats_rounding_below_eight_bits() {
        let w = weight(16 * 128);
        for bits in [2, 3, 4] {
            let r = quantize(&w, 16, 128, &spec(bits, Method::Rounding)).relative_error();
            let s = quantize(&w, 16, 128, &spec(bits, Method::Search)).relative_error();
            assert!(s < r * 0.9, "{bits} bits: search {s} vs rounding {r}");
        }
    }

    #[test]
    fn eight_bits_are_close_and_zero_stays_exact() {
        let mut w = weight(4 * 64);
        w[5] = 0.0;
        let q = quantize(&w, 4, 64, &spec(8, Method::Rounding));
        assert!(q.relative_error() < 0.01, "{}", q.relative_error());
        assert_eq!(dequantized(&q, 64, 32)[5], 0.0);
    }

    #[test]
    fn symmetric_blocks_use_the_middle_code_and_f16_scales_are_stored_exactly() {
        let w = weight(2 * 64);
        let s = Spec {
            symmetric: true,
            f16_scales: true,
            ..spec(4, Method::Search)
        };
        let q = quantize(&w, 2, 64, &s);
        assert!(q.zeros.iter().all(|&z| z == 8));
        assert!(q.scales.iter().all(|&s| f16::from_f32(s).to_f32() == s));
        assert!(q.relative_error() < 0.3, "{}", q.relative_error());
    }
}
