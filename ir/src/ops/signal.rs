//! Signal processing: window functions and the discrete Fourier transform
//! (the front end of audio models such as Whisper).

use std::f64::consts::PI;

use super::util::norm_axis;
use super::{EvalCtx, OpDef, op};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub(super) fn ops() -> Vec<OpDef> {
    vec![
        op!("HannWindow", |c| eval_window(c, &[0.5, -0.5])).steered_by(&[0]),
        op!("HammingWindow", |c| eval_window(
            c,
            &[25.0 / 46.0, -21.0 / 46.0]
        ))
        .steered_by(&[0]),
        op!("BlackmanWindow", |c| eval_window(c, &[0.42, -0.5, 0.08])).steered_by(&[0]),
        op!("DFT", eval_dft),
        op!("STFT", eval_stft),
    ]
}

/// A generalised cosine window `Σ_k a_k cos(2πkn/N)`.
fn eval_window(c: &EvalCtx, coeffs: &[f64]) -> Result<Vec<Tensor>> {
    let size = c.input(0)?.first_i64()?;
    let size = usize::try_from(size)
        .map_err(|_| Error::invalid(format!("window size {size} is negative")))?;
    let periodic = c.attrs().int("periodic", 1)? != 0;
    let n = if periodic {
        size
    } else {
        size.saturating_sub(1)
    } as f64;
    let dtype = DType::from_onnx(c.attrs().int("output_datatype", 1)? as i32)
        .ok_or_else(|| Error::unsupported("unsupported window output type"))?;
    let v = (0..size).map(|i| {
        coeffs
            .iter()
            .enumerate()
            .map(|(k, a)| a * (2.0 * PI * k as f64 * i as f64 / n).cos())
            .sum()
    });
    Ok(vec![Tensor::from_f64s(dtype, vec![size], v)])
}

/// DFT of one complex sequence (naive O(n²), exact enough for a reference).
fn dft(re: &[f64], im: &[f64], out_len: usize, inverse: bool) -> (Vec<f64>, Vec<f64>) {
    let n = re.len();
    let sign = if inverse { 1.0 } else { -1.0 };
    let scale = if inverse { 1.0 / n as f64 } else { 1.0 };
    let mut or = vec![0.0; out_len];
    let mut oi = vec![0.0; out_len];
    for k in 0..out_len {
        for t in 0..n {
            let ang = sign * 2.0 * PI * (k * t % n.max(1)) as f64 / n as f64;
            let (s, c) = ang.sin_cos();
            or[k] += re[t] * c - im[t] * s;
            oi[k] += re[t] * s + im[t] * c;
        }
        or[k] *= scale;
        oi[k] *= scale;
    }
    (or, oi)
}

fn eval_dft(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let r = x.rank();
    let inverse = c.attrs().int("inverse", 0)? != 0;
    let onesided = c.attrs().int("onesided", 0)? != 0;
    // The signal axis: an input since opset 20, an attribute before.
    let axis = match c.opt_input(2) {
        Some(t) => t.first_i64()?,
        None => c.attrs().int("axis", 1)?,
    };
    let axis = norm_axis(axis, r)?;
    if axis == r - 1 {
        bail!("DFT axis cannot be the last (complex) dimension");
    }
    let complex_in = match x.shape()[r - 1] {
        1 => false,
        2 => true,
        d => bail!("DFT input's last dimension must be 1 (real) or 2 (complex), got {d}"),
    };
    let n_in = x.shape()[axis];
    // An inverse one-sided DFT takes a half spectrum and returns a real
    // signal (irfft); the missing half follows from Hermitian symmetry.
    let irfft = inverse && onesided;
    let n = match c.opt_input(1).filter(|t| !t.is_empty()) {
        Some(t) => t.first_i64()? as usize,
        None if irfft => 2 * n_in.saturating_sub(1),
        None => n_in,
    };
    let out_len = if onesided && !irfft { n / 2 + 1 } else { n };
    let outer: usize = x.shape()[..axis].iter().product();
    let inner: usize = x.shape()[axis + 1..r - 1].iter().product();
    let xs = x.to_f64s();
    let cw = x.shape()[r - 1];
    let mut out = vec![0.0; outer * out_len * inner * if irfft { 1 } else { 2 }];
    for o in 0..outer {
        for i in 0..inner {
            // The sequence, zero-padded or truncated to n.
            let (mut re, mut im) = (vec![0.0; n], vec![0.0; n]);
            for t in 0..n.min(n_in) {
                let at = ((o * n_in + t) * inner + i) * cw;
                re[t] = xs[at];
                im[t] = if complex_in { xs[at + 1] } else { 0.0 };
            }
            if irfft {
                for t in n_in..n {
                    (re[t], im[t]) = (re[n - t], -im[n - t]);
                }
            }
            let (fr, fi) = dft(&re, &im, out_len, inverse);
            let parts = if irfft { 1 } else { 2 };
            for k in 0..out_len {
                let at = ((o * out_len + k) * inner + i) * parts;
                out[at] = fr[k];
                if !irfft {
                    out[at + 1] = fi[k];
                }
            }
        }
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = out_len;
    shape[r - 1] = if irfft { 1 } else { 2 };
    Ok(vec![Tensor::from_f64s(x.dtype(), shape, out)])
}

fn eval_stft(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let step = c.input(1)?.first_i64()? as usize;
    let window = c.opt_input(2).map(Tensor::to_f64s);
    let frame_len = match (c.opt_input(3), &window) {
        (Some(t), _) => t.first_i64()? as usize,
        (None, Some(w)) => w.len(),
        (None, None) => bail!("STFT needs a window or a frame_length"),
    };
    let onesided = c.attrs().int("onesided", 1)? != 0;
    let [batch, len, cw] = x.shape().try_into().map_err(|_| {
        Error::invalid(format!(
            "STFT expects [batch, length, 1|2], got {:?}",
            x.shape()
        ))
    })?;
    if step == 0 || frame_len == 0 || frame_len > len {
        bail!("STFT frame length {frame_len} and step {step} do not fit a signal of length {len}");
    }
    let frames = (len - frame_len) / step + 1;
    let out_len = if onesided {
        frame_len / 2 + 1
    } else {
        frame_len
    };
    let xs = x.to_f64s();
    let mut out = Vec::with_capacity(batch * frames * out_len * 2);
    for b in 0..batch {
        for f in 0..frames {
            let w = |t: usize| window.as_ref().map_or(1.0, |w| w[t]);
            let re: Vec<f64> = (0..frame_len)
                .map(|t| xs[(b * len + f * step + t) * cw] * w(t))
                .collect();
            let im: Vec<f64> = (0..frame_len)
                .map(|t| {
                    if cw == 2 {
                        xs[(b * len + f * step + t) * cw + 1] * w(t)
                    } else {
                        0.0
                    }
                })
                .collect();
            let (fr, fi) = dft(&re, &im, out_len, false);
            for k in 0..out_len {
                out.push(fr[k]);
                out.push(fi[k]);
            }
        }
    }
    Ok(vec![Tensor::from_f64s(
        x.dtype(),
        vec![batch, frames, out_len, 2],
        out,
    )])
}
