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
//! With sample inputs, [`gptq`] goes further: it quantizes a weight one
//! input column at a time and spreads each column's rounding error over
//! the columns not yet quantized, in the proportions that keep the
//! layer's *output* on those samples closest (GPTQ: Frantar et al.,
//! 2022, with the inverse Hessian of the layer's input in Cholesky
//! form), the columns with the most input energy first; each block's
//! scale and zero point are chosen by the search above before the
//! columns are.
//!
//! Scales stored as float16 are rounded before codes are chosen, so the
//! error reported is the error of what is stored.

use half::f16;

/// How a block's scale and zero point are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Rounding,
    Search,
    /// [`gptq`], with blocks fit by search (only with sample inputs).
    Gptq,
}

impl Method {
    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            Method::Rounding => "round-to-nearest",
            Method::Search => "clip search + least squares",
            Method::Gptq => "GPTQ (error feedback on samples)",
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
    /// `W − Ŵ` for the weight `w` these codes were made from.
    pub fn difference(&self, w: &[f32], k: usize) -> Vec<f64> {
        let blocks = self.scales.len() / (w.len() / k).max(1);
        let block = k.div_ceil(blocks.max(1));
        w.iter()
            .enumerate()
            .map(|(i, &v)| {
                let g = (i / k) * blocks + (i % k) / block;
                let dq = (f32::from(self.codes[i]) - f32::from(self.zeros[g])) * self.scales[g];
                f64::from(v) - f64::from(dq)
            })
            .collect()
    }

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

/// How far the search shrinks each end of a block's range toward 0.
const SHRINK: [f32; 8] = [1.0, 0.92, 0.85, 0.78, 0.7, 0.62, 0.55, 0.48];

fn fit_block(x: &[f32], spec: &Spec) -> Fit {
    let max = ((1u32 << spec.bits) - 1) as f32;
    let lo = x.iter().copied().fold(0.0f32, f32::min);
    let hi = x.iter().copied().fold(0.0f32, f32::max);
    let fit = |(scale, zero): (f32, u8)| Fit {
        scale,
        zero,
        error: error_of(x, scale, zero, max),
    };
    let mut best = fit(from_range(lo, hi, spec, max));
    if spec.method == Method::Rounding || best.error == 0.0 {
        return best;
    }
    // Each end shrunk on its own (both together when symmetric).
    for (i, &a) in SHRINK.iter().enumerate() {
        for &b in if spec.symmetric {
            &SHRINK[i..=i]
        } else {
            &SHRINK[..]
        } {
            let f = fit(from_range(lo * a, hi * b, spec, max));
            if f.error < best.error {
                best = f;
            }
        }
    }
    // Then the least-squares scale for the codes, alternately with the
    // codes for the scale, at the zero point found and its neighbours.
    let zeros = if spec.symmetric {
        best.zero..=best.zero
    } else {
        best.zero.saturating_sub(1)..=best.zero.saturating_add(1).min(max as u8)
    };
    let start = best;
    for z in zeros {
        let mut s = start.scale;
        for _ in 0..4 {
            let (mut num, mut den) = (0.0f64, 0.0f64);
            for &v in x {
                let d = f64::from(code(v, s, z, max) - f32::from(z));
                num += f64::from(v) * d;
                den += d * d;
            }
            let next = stored((num / den.max(f64::MIN_POSITIVE)) as f32, spec);
            if next.is_nan() || next <= 0.0 || next == s {
                break;
            }
            s = next;
            let f = fit((s, z));
            if f.error < best.error {
                best = f;
            }
        }
    }
    best
}

/// The second moments of a layer's input over sample rows, `H = Σ x xᵀ`
/// (`k × k`, row-major): how much each input column, and each pair,
/// moves the layer's output.
#[derive(Clone, Debug)]
pub struct Hessian {
    pub k: usize,
    pub h: Vec<f64>,
    /// Sample rows it was summed over.
    pub rows: usize,
}

impl Hessian {
    /// `H` of `x` (`rows × k`, row-major), from at most `max_rows` rows
    /// spread evenly over it.
    pub fn of_rows(x: &[f32], k: usize, max_rows: usize) -> Hessian {
        let all = x.len() / k;
        let step = all.div_ceil(max_rows.max(1)).max(1);
        let picked: Vec<usize> = (0..all).step_by(step).collect();
        let n = picked.len();
        let mut xt = vec![0f32; k * n];
        let mut xs = vec![0f32; n * k];
        for (j, &r) in picked.iter().enumerate() {
            let row = &x[r * k..(r + 1) * k];
            xs[j * k..(j + 1) * k].copy_from_slice(row);
            for (i, &v) in row.iter().enumerate() {
                xt[i * n + j] = v;
            }
        }
        let mut h = vec![0f32; k * k];
        crate::ops::gemm_acc(k, n, k, &xt, &xs, &mut h);
        Hessian {
            k,
            h: h.into_iter().map(f64::from).collect(),
            rows: n,
        }
    }

    /// Adds `other`'s rows (of the same layer input) to these.
    pub fn add(&mut self, other: &Hessian) {
        assert_eq!(self.k, other.k, "second moments of different widths");
        self.h.iter_mut().zip(&other.h).for_each(|(a, b)| *a += b);
        self.rows += other.rows;
    }

    /// `tr(Δ H Δᵀ)` for `d` (`rows × k`): the squared error the samples'
    /// outputs see from a weight error `d` (in float32 through the
    /// blocked GEMM: a report, not an oracle).
    pub fn output_error(&self, d: &[f64]) -> f64 {
        let k = self.k;
        let rows = d.len() / k;
        let d32: Vec<f32> = d.iter().map(|&v| v as f32).collect();
        let h32: Vec<f32> = self.h.iter().map(|&v| v as f32).collect();
        let mut dh = vec![0f32; rows * k];
        crate::ops::gemm_acc(rows, k, k, &d32, &h32, &mut dh);
        dh.iter().zip(&d32).map(|(a, b)| f64::from(a * b)).sum()
    }
}

/// Lower Cholesky factor of `a` (`n × n`, symmetric positive definite),
/// in place; `false` if it is not positive definite.
fn cholesky(a: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let mut d = a[j * n + j];
        for p in 0..j {
            d -= a[j * n + p] * a[j * n + p];
        }
        if d <= 0.0 || !d.is_finite() {
            return false;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for p in 0..j {
                s -= a[i * n + p] * a[j * n + p];
            }
            a[i * n + j] = s / d;
        }
        for p in j + 1..n {
            a[j * n + p] = 0.0;
        }
    }
    true
}

/// The upper Cholesky factor `U` of `H⁻¹` (`H⁻¹ = Uᵀ U`), after damping
/// `H`'s diagonal by `damp` of its mean; `None` if it stays singular.
///
/// With `J` the reversal of the axes and `J H J = L Lᵀ`,
/// `H⁻¹ = (J L⁻¹ J)ᵀ (J L⁻¹ J)` and `J L⁻¹ J` is upper triangular: one
/// Cholesky factorization and one triangular inverse, both walking rows.
fn inverse_factor(h: &[f64], n: usize, damp: f64) -> Option<Vec<f64>> {
    let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            l[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)];
        }
        l[i * n + i] += damp * mean.max(f64::MIN_POSITIVE);
    }
    if !cholesky(&mut l, n) {
        return None;
    }
    // L⁻¹ row by row: row r is (e_r − Σ_{p<r} L[r][p] · row p) / L[r][r].
    let mut li = vec![0.0; n * n];
    for r in 0..n {
        let (done, rest) = li.split_at_mut(r * n);
        let row = &mut rest[..n];
        row[r] = 1.0;
        for p in 0..r {
            let f = l[r * n + p];
            if f != 0.0 {
                for (x, y) in row[..=p].iter_mut().zip(&done[p * n..p * n + p + 1]) {
                    *x -= f * y;
                }
            }
        }
        let d = l[r * n + r];
        row[..=r].iter_mut().for_each(|x| *x /= d);
    }
    let mut u = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            u[i * n + j] = li[(n - 1 - i) * n + (n - 1 - j)];
        }
    }
    Some(u)
}

/// Quantizes `w` (`rows × k`) by GPTQ against the input statistics `h`
/// (see the module docs); falls back to [`quantize`] if `h` is singular
/// even after damping. The error reported is the weight error, as for
/// [`quantize`].
pub fn gptq(w: &[f32], rows: usize, k: usize, spec: &Spec, h: &Hessian) -> Quantized {
    assert_eq!((w.len(), h.k), (rows * k, k), "weight of {rows}x{k}");
    let mut hh = h.h.clone();
    let mut work: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
    // An input that is always zero carries no information: its weights
    // are free, and its row of H is made regular.
    for i in 0..k {
        if hh[i * k + i] == 0.0 {
            hh[i * k + i] = 1.0;
            for r in 0..rows {
                work[r * k + i] = 0.0;
            }
        }
    }
    // Columns in order of decreasing input energy (GPTQ's "act order"):
    // the error of the columns that matter most is spread over the most
    // columns still free. Each block's scale and zero point are fixed
    // first, from the weight as it is, so blocks stay contiguous runs of
    // the row (no per-column group table) whatever the order.
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| hh[b * k + b].total_cmp(&hh[a * k + a]));
    let mut hp = vec![0.0; k * k];
    for (i, &a) in order.iter().enumerate() {
        for (j, &b) in order.iter().enumerate() {
            hp[i * k + j] = hh[a * k + b];
        }
    }
    let Some(u) = inverse_factor(&hp, k, 0.01) else {
        return quantize(w, rows, k, spec);
    };
    let blocks = k.div_ceil(spec.block);
    let max = ((1u32 << spec.bits) - 1) as f32;
    let search = Spec {
        method: Method::Search,
        ..*spec
    };
    let fitted = quantize(w, rows, k, &search);
    let mut out = Quantized {
        codes: vec![0; rows * k],
        error: 0.0,
        ..fitted
    };
    let mut row = vec![0f64; k];
    for r in 0..rows {
        for (i, &c) in order.iter().enumerate() {
            row[i] = work[r * k + c];
        }
        for i in 0..k {
            let c = order[i];
            let g = r * blocks + c / spec.block;
            let (scale, zero) = (out.scales[g], out.zeros[g]);
            let q = code(row[i] as f32, scale, zero, max);
            out.codes[r * k + c] = q as u8;
            let dq = f64::from((q - f32::from(zero)) * scale);
            let err = (row[i] - dq) / u[i * k + i];
            let ui = &u[i * k..(i + 1) * k];
            for j in i + 1..k {
                row[j] -= err * ui[j];
            }
        }
        for i in 0..k {
            let g = r * blocks + i / spec.block;
            let dq = (f32::from(out.codes[r * k + i]) - f32::from(out.zeros[g])) * out.scales[g];
            out.error += (f64::from(w[r * k + i]) - f64::from(dq)).powi(2);
        }
    }
    out
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
                if i % 61 == 0 {
                    u * 8.0
                } else {
                    u * u * u * 4.0
                }
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
                assert!(
                    (e - q.error).abs() <= 1e-6 * (1.0 + e),
                    "{bits} bits: {e} vs {}",
                    q.error
                );
            }
        }
    }

    /// Roughly normal values (a sum of four uniforms), as trained weights
    /// mostly are.
    fn normal(n: usize) -> Vec<f32> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        (0..n).map(|_| (0..4).map(|_| uniform()).sum()).collect()
    }

    #[test]
    fn search_beats_rounding_below_eight_bits() {
        let w = normal(16 * 128);
        for (bits, gain) in [(2, 0.9), (3, 0.95), (4, 0.98)] {
            let r = quantize(&w, 16, 128, &spec(bits, Method::Rounding)).relative_error();
            let s = quantize(&w, 16, 128, &spec(bits, Method::Search)).relative_error();
            assert!(s < r * gain, "{bits} bits: search {s} vs rounding {r}");
        }
    }

    #[test]
    fn gptq_lowers_the_output_error_on_correlated_inputs() {
        // Inputs whose columns share a common factor, as activations do.
        let (rows, k, n) = (12, 64, 256);
        let w = weight(rows * k);
        let base = weight(n * 3);
        let x: Vec<f32> = (0..n * k)
            .map(|i| {
                base[(i / k) * 3 + i % 3] * (1.0 + (i % k) as f32 / 8.0) + 0.1 * base[i % (n * 3)]
            })
            .collect();
        let h = Hessian::of_rows(&x, k, 1 << 20);
        assert_eq!(h.rows, n);
        for bits in [2, 3, 4] {
            let s = spec(bits, Method::Search);
            let plain = quantize(&w, rows, k, &s);
            let g = gptq(&w, rows, k, &s, &h);
            let (ep, eg) = (
                h.output_error(&plain.difference(&w, k)),
                h.output_error(&g.difference(&w, k)),
            );
            assert!(eg < ep * 0.8, "{bits} bits: gptq {eg} vs search {ep}");
            // Its reported weight error is that of its codes.
            let d: f64 = g.difference(&w, k).iter().map(|d| d * d).sum();
            assert!((d - g.error).abs() <= 1e-6 * (1.0 + d));
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
