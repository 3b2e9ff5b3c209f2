//! Neural-network ops: convolution, pooling, normalisation and the softmax family.

use super::infer::{InferCtx, same_as_input};
use super::matmul::gemm_acc;
use super::util::split_at_axis;
use super::{EvalCtx, OpDef, op};
use crate::attr::Attrs;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::ValueType;
use crate::shape::{Dim, Shape};
use crate::sym::Expr;
use crate::tensor::Tensor;

pub(super) fn ops() -> Vec<OpDef> {
    vec![
        op!("Conv", eval_conv, infer_conv).contraction(),
        op!("ConvInteger", eval_conv_integer, |c| {
            // Conv's shapes (same attributes), in int32.
            let mut out = infer_conv(c)?;
            out[0].dtype = Some(DType::I32);
            Ok(out)
        }),
        op!("ConvTranspose", eval_conv_transpose, infer_conv_transpose),
        op!("CausalConvWithState", eval_causal_conv_with_state),
        op!("Col2Im", eval_col2im),
        op!("MaxUnpool", eval_max_unpool),
        op!("MaxPool", |c| eval_pool(c, PoolKind::Max), infer_pool),
        op!("AveragePool", |c| eval_pool(c, PoolKind::Avg), infer_pool),
        op!(
            "LpPool",
            |c| eval_pool(c, PoolKind::Lp(super::params::lp_pool_p(c.attrs())?)),
            |c| super::infer::by_evaluation(c, &[0])
        ),
        op!(
            "GlobalMaxPool",
            |c| eval_global_pool(c, PoolKind::Max),
            infer_global_pool
        ),
        op!(
            "GlobalAveragePool",
            |c| eval_global_pool(c, PoolKind::Avg),
            infer_global_pool
        ),
        op!(
            "GlobalLpPool",
            |c| eval_global_pool(c, PoolKind::Lp(super::params::lp_pool_p(c.attrs())?)),
            |c| super::infer::by_evaluation(c, &[0])
        ),
        op!("BatchNormalization", eval_batch_norm, same_as_input),
        op!("InstanceNormalization", eval_instance_norm, same_as_input),
        op!("LayerNormalization", eval_layer_norm, same_as_input),
        op!("GroupNormalization", eval_group_norm, same_as_input),
        op!("RMSNormalization", eval_rms_norm, same_as_input),
        op!("LpNormalization", eval_lp_norm, same_as_input),
        op!("MeanVarianceNormalization", eval_mvn, same_as_input),
        op!("LRN", eval_lrn, same_as_input),
        op!(
            "Softmax",
            |c| eval_softmax(c, SoftmaxKind::Softmax),
            super::infer::same_as_input
        ),
        op!(
            "LogSoftmax",
            |c| eval_softmax(c, SoftmaxKind::Log),
            super::infer::same_as_input
        ),
        op!(
            "Hardmax",
            |c| eval_softmax(c, SoftmaxKind::Hard),
            super::infer::same_as_input
        ),
    ]
}

/// Geometry of a sliding window over N spatial dims: kernel, strides,
/// dilations, pads (begin…, end…) and the resulting output sizes.
pub struct Window {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub out: Vec<usize>,
}

impl Window {
    /// Reads `strides`, `dilations`, `pads`, `auto_pad` and `ceil_mode` for
    /// `input` spatial sizes and `kernel` sizes.
    pub fn new(attrs: &Attrs, input: &[usize], kernel: &[usize]) -> Result<Window> {
        let n = input.len();
        let list = |name: &str, default: usize| -> Result<Vec<usize>> {
            match attrs.opt_ints(name)? {
                Some(v) if v.len() == n => v
                    .iter()
                    .map(|&x| {
                        usize::try_from(x)
                            .map_err(|_| Error::invalid(format!("negative {name} {x}")))
                    })
                    .collect(),
                Some(v) => bail!("'{name}' has {} values for {n} spatial dims", v.len()),
                None => Ok(vec![default; n]),
            }
        };
        if kernel.len() != n || kernel.contains(&0) {
            bail!("kernel shape {kernel:?} must have {n} positive sizes");
        }
        let strides = list("strides", 1)?;
        let dilations = list("dilations", 1)?;
        if strides.contains(&0) || dilations.contains(&0) {
            bail!("strides and dilations must be positive");
        }
        let ceil = attrs.int("ceil_mode", 0)? != 0;
        let mut pads = match attrs.opt_ints("pads")? {
            Some(p) if p.len() == 2 * n => p
                .iter()
                .map(|&x| {
                    usize::try_from(x).map_err(|_| Error::invalid(format!("negative pad {x}")))
                })
                .collect::<Result<_>>()?,
            Some(p) => bail!("'pads' has {} values for {n} spatial dims", p.len()),
            None => vec![0; 2 * n],
        };
        let auto = attrs.string("auto_pad", "NOTSET")?;
        let mut out = vec![0; n];
        for i in 0..n {
            let eff = (kernel[i] - 1) * dilations[i] + 1;
            match auto {
                "SAME_UPPER" | "SAME_LOWER" => {
                    out[i] = input[i].div_ceil(strides[i]);
                    let total = ((out[i] - 1) * strides[i] + eff).saturating_sub(input[i]);
                    let small = total / 2;
                    (pads[i], pads[i + n]) = if auto == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                }
                "VALID" => {
                    pads[i] = 0;
                    pads[i + n] = 0;
                    out[i] = if input[i] >= eff {
                        (input[i] - eff) / strides[i] + 1
                    } else {
                        0
                    };
                }
                "NOTSET" | "" => {
                    let span = input[i] + pads[i] + pads[i + n];
                    if span < eff {
                        bail!("kernel extent {eff} exceeds padded input size {span}");
                    }
                    out[i] = if ceil {
                        (span - eff).div_ceil(strides[i]) + 1
                    } else {
                        (span - eff) / strides[i] + 1
                    };
                    // A window must start inside the input or the left pad.
                    if ceil && (out[i] - 1) * strides[i] >= input[i] + pads[i] {
                        out[i] -= 1;
                    }
                }
                other => bail!("unknown auto_pad '{other}'"),
            }
        }
        Ok(Window {
            kernel: kernel.to_vec(),
            strides,
            dilations,
            pads,
            out,
        })
    }

    fn spatial(&self) -> usize {
        self.out.iter().product()
    }

    /// The row-major offset in an input of spatial size `input` that kernel
    /// position `kpos` reads for output position `opos`; `None` in padding.
    fn input_offset(&self, opos: &[usize], kpos: &[usize], input: &[usize]) -> Option<usize> {
        let mut off = 0usize;
        for d in 0..input.len() {
            let p = (opos[d] * self.strides[d] + kpos[d] * self.dilations[d]) as isize
                - self.pads[d] as isize;
            if p < 0 || p >= input[d] as isize {
                return None;
            }
            off = off * input[d] + p as usize;
        }
        Some(off)
    }
}

/// im2col for one image and one channel group: rows are (channel, kernel
/// position), columns output positions; padded positions read 0.
fn im2col<T: Copy + Default>(x: &[T], channels: usize, input: &[usize], w: &Window) -> Vec<T> {
    let ksize: usize = w.kernel.iter().product();
    let osize = w.spatial();
    let isize_: usize = input.iter().product();
    let nd = input.len();
    let mut cols = vec![T::default(); channels * ksize * osize];
    let mut kpos = vec![0; nd];
    let mut opos = vec![0; nd];
    for kk in 0..ksize {
        super::util::unravel(kk, &w.kernel, &mut kpos);
        for o in 0..osize {
            super::util::unravel(o, &w.out, &mut opos);
            if let Some(off) = w.input_offset(&opos, &kpos, input) {
                for ch in 0..channels {
                    cols[(ch * ksize + kk) * osize + o] = x[ch * isize_ + off];
                }
            }
        }
    }
    cols
}

/// N-D grouped convolution: im2col + the blocked GEMM, per image and group.
fn conv<T: super::matmul::Scalar>(
    x: &[T],
    xsh: &[usize],
    w: &[T],
    wsh: &[usize],
    bias: Option<&[T]>,
    group: usize,
    win: &Window,
) -> Vec<T> {
    let (n, c) = (xsh[0], xsh[1]);
    let m = wsh[0];
    let input = &xsh[2..];
    let cg = c / group;
    let mg = m / group;
    let ksize: usize = wsh[2..].iter().product();
    let isize_: usize = input.iter().product();
    let osize = win.spatial();
    let mut out = vec![T::default(); n * m * osize];
    for b in 0..n {
        for g in 0..group {
            let xs = &x[(b * c + g * cg) * isize_..(b * c + (g + 1) * cg) * isize_];
            let cols = im2col(xs, cg, input, win);
            let wg = &w[g * mg * cg * ksize..(g + 1) * mg * cg * ksize];
            let og = &mut out[(b * m + g * mg) * osize..(b * m + (g + 1) * mg) * osize];
            if let Some(bias) = bias {
                for (mi, row) in og.chunks_mut(osize.max(1)).enumerate() {
                    row.iter_mut().for_each(|v| *v = bias[g * mg + mi]);
                }
            }
            gemm_acc(mg, cg * ksize, osize, wg, &cols, og);
        }
    }
    out
}

fn conv_window(c: &EvalCtx, x: &Tensor, w: &Tensor) -> Result<(Window, usize)> {
    if x.rank() < 3 || w.rank() != x.rank() {
        bail!(
            "Conv expects X and W of equal rank >= 3, got {:?} and {:?}",
            x.shape(),
            w.shape()
        );
    }
    let group = super::params::conv_group(c.attrs())?;
    if x.shape()[1] != w.shape()[1] * group || !w.shape()[0].is_multiple_of(group) {
        bail!(
            "Conv channels do not match: X {:?}, W {:?}, group {group}",
            x.shape(),
            w.shape()
        );
    }
    let kernel = match c.attrs().opt_ints("kernel_shape")? {
        Some(k) => k.iter().map(|&v| v as usize).collect(),
        None => w.shape()[2..].to_vec(),
    };
    Ok((Window::new(c.attrs(), &x.shape()[2..], &kernel)?, group))
}

fn eval_conv(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, w) = (c.input(0)?, c.input(1)?);
    let (win, group) = conv_window(c, x, w)?;
    let mut shape = vec![x.shape()[0], w.shape()[0]];
    shape.extend(&win.out);
    let bias = c.opt_input(2);
    let t = if x.dtype() == DType::F64 {
        let b = bias.map(Tensor::to_f64s);
        Tensor::from_vec(
            shape,
            conv(
                &x.to_f64s(),
                x.shape(),
                &w.to_f64s(),
                w.shape(),
                b.as_deref(),
                group,
                &win,
            ),
        )
    } else {
        let b = bias.map(Tensor::to_f32s);
        Tensor::from_vec(
            shape,
            conv(
                &x.to_f32s(),
                x.shape(),
                &w.to_f32s(),
                w.shape(),
                b.as_deref(),
                group,
                &win,
            ),
        )
        .cast(x.dtype())
    };
    Ok(vec![t])
}

fn eval_conv_integer(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, w) = (c.input(0)?, c.input(1)?);
    let (win, group) = conv_window(c, x, w)?;
    let xz = c
        .opt_input(2)
        .map(Tensor::first_f64)
        .transpose()?
        .unwrap_or(0.0);
    let xv: Vec<f64> = x.to_f64s().iter().map(|v| v - xz).collect();
    // The weight zero point is per tensor or per output channel.
    let wz = c.opt_input(3).map_or_else(|| vec![0.0], Tensor::to_f64s);
    let per_channel = w.len() / w.shape()[0].max(1);
    let wv: Vec<f64> = w
        .to_f64s()
        .iter()
        .enumerate()
        .map(|(i, v)| v - wz[if wz.len() == 1 { 0 } else { i / per_channel }])
        .collect();
    let mut shape = vec![x.shape()[0], w.shape()[0]];
    shape.extend(&win.out);
    // Padding must read the zero point, i.e. 0 after subtraction: im2col does that.
    let out = conv(&xv, x.shape(), &wv, w.shape(), None, group, &win);
    Ok(vec![Tensor::from_f64s(DType::I32, shape, out)])
}

fn eval_conv_transpose(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, w) = (c.input(0)?, c.input(1)?);
    let a = c.attrs();
    let nd = x
        .rank()
        .checked_sub(2)
        .filter(|&d| d > 0)
        .ok_or_else(|| Error::invalid("ConvTranspose expects rank >= 3"))?;
    let p = super::params::ConvTranspose::of(a, nd)?;
    let group = p.group;
    let (n, ci) = (x.shape()[0], x.shape()[1]);
    let co = w.shape()[1] * group;
    let cig = ci / group;
    let cog = co / group;
    let kernel: Vec<usize> = w.shape()[2..].to_vec();
    let input = &x.shape()[2..];
    let super::params::TransposedWindow { pads, out } = p.window(input, &kernel);
    let (strides, dil) = (&p.strides, &p.dilations);
    let xs = x.to_f64s();
    let ws = w.to_f64s();
    let isz: usize = input.iter().product();
    let ksz: usize = kernel.iter().product();
    let osz: usize = out.iter().product();
    let mut y = vec![0.0; n * co * osz];
    let (mut ipos, mut kpos) = (vec![0; nd], vec![0; nd]);
    for b in 0..n {
        for g in 0..group {
            for icl in 0..cig {
                let ic = g * cig + icl;
                for ii in 0..isz {
                    super::util::unravel(ii, input, &mut ipos);
                    let xv = xs[(b * ci + ic) * isz + ii];
                    for kk in 0..ksz {
                        super::util::unravel(kk, &kernel, &mut kpos);
                        let mut off = 0usize;
                        let mut inside = true;
                        for d in 0..nd {
                            let p = ipos[d] as i64 * strides[d] + kpos[d] as i64 * dil[d] - pads[d];
                            if p < 0 || p >= out[d] as i64 {
                                inside = false;
                                break;
                            }
                            off = off * out[d] + p as usize;
                        }
                        if inside {
                            for ocl in 0..cog {
                                let wv = ws[(ic * cog + ocl) * ksz + kk];
                                y[(b * co + g * cog + ocl) * osz + off] += xv * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(bias) = c.opt_input(2) {
        let bv = bias.to_f64s();
        for (i, v) in y.iter_mut().enumerate() {
            *v += bv[(i / osz) % co];
        }
    }
    let mut shape = vec![n, co];
    shape.extend(&out);
    Ok(vec![Tensor::from_f64s(x.dtype(), shape, y)])
}

#[derive(Clone, Copy)]
enum PoolKind {
    Max,
    Avg,
    Lp(f64),
}

fn eval_pool(c: &EvalCtx, kind: PoolKind) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    if x.rank() < 3 {
        bail!("pooling expects rank >= 3, got {:?}", x.shape());
    }
    let input = &x.shape()[2..];
    let params = super::params::Pool::of(c.attrs(), input.len())?;
    let kernel = &params.kernel;
    let win = Window::new(c.attrs(), input, kernel)?;
    let include_pad = params.count_include_pad;
    let nd = input.len();
    let planes = x.shape()[0] * x.shape()[1];
    let isz: usize = input.iter().product();
    let osz = win.spatial();
    let ksz: usize = kernel.iter().product();
    let xs = x.to_f64s();
    let mut y = vec![0.0; planes * osz];
    let mut idx = vec![0i64; planes * osz];
    let (mut opos, mut kpos) = (vec![0; nd], vec![0; nd]);
    let istr = crate::tensor::strides(input);
    for o in 0..osz {
        super::util::unravel(o, &win.out, &mut opos);
        // The element offsets this window reads, and how many positions it
        // covers inside the padded input (AveragePool's count_include_pad).
        let mut offs = Vec::with_capacity(ksz);
        let mut padded_count = 0usize;
        for kk in 0..ksz {
            super::util::unravel(kk, kernel, &mut kpos);
            let mut off = 0usize;
            let mut inside = true;
            let mut in_pad = true;
            for d in 0..nd {
                let p = (opos[d] * win.strides[d] + kpos[d] * win.dilations[d]) as isize
                    - win.pads[d] as isize;
                if p < -(win.pads[d] as isize) || p >= (input[d] + win.pads[d + nd]) as isize {
                    in_pad = false;
                }
                if p < 0 || p >= input[d] as isize {
                    inside = false;
                } else {
                    off += p as usize * istr[d];
                }
            }
            if in_pad {
                padded_count += 1;
            }
            if inside {
                offs.push(off);
            }
        }
        for pl in 0..planes {
            let base = pl * isz;
            let (v, arg) = match kind {
                PoolKind::Max => {
                    let mut best = f64::NEG_INFINITY;
                    let mut arg = 0;
                    for &off in &offs {
                        let v = xs[base + off];
                        if v > best || best == f64::NEG_INFINITY && offs.len() == 1 {
                            best = v;
                            arg = off;
                        }
                    }
                    (best, arg)
                }
                PoolKind::Avg => {
                    let s: f64 = offs.iter().map(|&off| xs[base + off]).sum();
                    let n = if include_pad {
                        padded_count
                    } else {
                        offs.len()
                    };
                    (s / n.max(1) as f64, 0)
                }
                PoolKind::Lp(p) => (
                    offs.iter()
                        .map(|&off| xs[base + off].abs().powf(p))
                        .sum::<f64>()
                        .powf(1.0 / p),
                    0,
                ),
            };
            y[pl * osz + o] = v;
            idx[pl * osz + o] = (pl * isz + arg) as i64;
        }
    }
    let mut shape = x.shape()[..2].to_vec();
    shape.extend(&win.out);
    let mut outs = vec![Tensor::from_f64s(x.dtype(), shape.clone(), y)];
    if c.wants_output(1) {
        if params.column_major_indices {
            // Column-major indices: transpose the spatial offset.
            for v in idx.iter_mut() {
                let (pl, off) = (*v as usize / isz, *v as usize % isz);
                let mut pos = vec![0; nd];
                super::util::unravel(off, input, &mut pos);
                let mut cm = 0;
                for d in (0..nd).rev() {
                    cm = cm * input[d] + pos[d];
                }
                *v = (pl * isz + cm) as i64;
            }
        }
        outs.push(Tensor::i64s(shape, idx));
    }
    Ok(outs)
}

fn eval_global_pool(c: &EvalCtx, kind: PoolKind) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    if x.rank() < 3 {
        bail!("global pooling expects rank >= 3");
    }
    let planes = x.shape()[0] * x.shape()[1];
    let isz: usize = x.shape()[2..].iter().product();
    let xs = x.to_f64s();
    let y: Vec<f64> = (0..planes)
        .map(|p| {
            let s = &xs[p * isz..(p + 1) * isz];
            match kind {
                PoolKind::Max => s.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                PoolKind::Avg => s.iter().sum::<f64>() / isz as f64,
                PoolKind::Lp(q) => s.iter().map(|v| v.abs().powf(q)).sum::<f64>().powf(1.0 / q),
            }
        })
        .collect();
    let mut shape = x.shape()[..2].to_vec();
    shape.extend(std::iter::repeat_n(1, x.rank() - 2));
    Ok(vec![Tensor::from_f64s(x.dtype(), shape, y)])
}

/// Per-channel affine normalisation `(x - mean) / sqrt(var + eps) * scale + bias`
/// over an (N, C, spatial…) tensor.
fn channel_affine(
    x: &Tensor,
    mean: &[f64],
    var: &[f64],
    scale: &[f64],
    bias: &[f64],
    eps: f64,
) -> Tensor {
    let ch = x.shape()[1];
    let inner: usize = x.shape()[2..].iter().product();
    let xs = x.to_f64s();
    let y = xs.iter().enumerate().map(|(i, v)| {
        let k = (i / inner.max(1)) % ch;
        (v - mean[k]) / (var[k] + eps).sqrt() * scale[k] + bias[k]
    });
    Tensor::from_f64s(x.dtype(), x.shape().to_vec(), y)
}

fn eval_batch_norm(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let get = |i| c.input(i).map(Tensor::to_f64s);
    let (scale, bias, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
    let p = super::params::BatchNorm::of(c.attrs())?;
    let eps = f64::from(p.epsilon);
    if x.rank() < 2
        || [&scale, &bias, &mean, &var]
            .iter()
            .any(|v| v.len() != x.shape()[1])
    {
        bail!(
            "BatchNormalization parameters do not match the {} channels of {:?}",
            x.shape().get(1).unwrap_or(&0),
            x.shape()
        );
    }
    if !p.training {
        return Ok(vec![channel_affine(x, &mean, &var, &scale, &bias, eps)]);
    }
    // Training mode: normalise with batch statistics and update the running ones.
    let momentum = f64::from(p.momentum);
    let ch = x.shape()[1];
    let inner: usize = x.shape()[2..].iter().product();
    let xs = x.to_f64s();
    let count = (xs.len() / ch) as f64;
    let mut bm = vec![0.0; ch];
    let mut bv = vec![0.0; ch];
    for (i, v) in xs.iter().enumerate() {
        bm[(i / inner) % ch] += v / count;
    }
    for (i, v) in xs.iter().enumerate() {
        let k = (i / inner) % ch;
        bv[k] += (v - bm[k]).powi(2) / count;
    }
    let y = channel_affine(x, &bm, &bv, &scale, &bias, eps);
    let rm: Vec<f64> = mean
        .iter()
        .zip(&bm)
        .map(|(r, b)| r * momentum + b * (1.0 - momentum))
        .collect();
    let rv: Vec<f64> = var
        .iter()
        .zip(&bv)
        .map(|(r, b)| r * momentum + b * (1.0 - momentum))
        .collect();
    let dt = c.input(3)?.dtype();
    Ok(vec![
        y,
        Tensor::from_f64s(dt, vec![ch], rm),
        Tensor::from_f64s(dt, vec![ch], rv),
    ])
}

/// Normalises contiguous groups of `len` elements: returns normalised values,
/// and each group's mean and 1/std.
fn normalize_groups(
    xs: &[f64],
    len: usize,
    eps: f64,
    center: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let groups = xs.len().checked_div(len).unwrap_or(0);
    let mut y = vec![0.0; xs.len()];
    let (mut means, mut inv) = (vec![0.0; groups], vec![0.0; groups]);
    for g in 0..groups {
        let s = &xs[g * len..(g + 1) * len];
        let mean = if center {
            s.iter().sum::<f64>() / len as f64
        } else {
            0.0
        };
        let var = s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / len as f64;
        let r = 1.0 / (var + eps).sqrt();
        for (o, v) in y[g * len..(g + 1) * len].iter_mut().zip(s) {
            *o = (v - mean) * r;
        }
        means[g] = mean;
        inv[g] = r;
    }
    (y, means, inv)
}

fn eval_instance_norm(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    super::util::require_rank(x, 2)?;
    let (scale, bias) = (c.input(1)?.to_f64s(), c.input(2)?.to_f64s());
    let eps = f64::from(super::params::InstanceNorm::of(c.attrs())?.epsilon);
    let ch = x.shape()[1];
    let inner: usize = x.shape()[2..].iter().product();
    let (y, _, _) = normalize_groups(&x.to_f64s(), inner, eps, true);
    let y = y
        .iter()
        .enumerate()
        .map(|(i, v)| v * scale[(i / inner) % ch] + bias[(i / inner) % ch]);
    Ok(vec![Tensor::from_f64s(x.dtype(), x.shape().to_vec(), y)])
}

/// Applies `scale` (and `bias`) broadcast over the trailing normalised dims.
fn affine_tail(y: &mut [f64], scale: &Tensor, bias: Option<&Tensor>, tail: &[usize]) -> Result<()> {
    let s = crate::ops::movement::expand_to(scale, tail)?.to_f64s();
    let b = match bias {
        Some(b) => crate::ops::movement::expand_to(b, tail)?.to_f64s(),
        None => vec![0.0; s.len()],
    };
    let n = s.len().max(1);
    for (i, v) in y.iter_mut().enumerate() {
        *v = *v * s[i % n] + b[i % n];
    }
    Ok(())
}

fn eval_layer_norm(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let p = super::params::LayerNorm::of(c.attrs())?;
    let (axis, eps) = (p.axis(x.rank())?, f64::from(p.epsilon));
    let len: usize = x.shape()[axis..].iter().product();
    let (mut y, mean, inv) = normalize_groups(&x.to_f64s(), len, eps, true);
    affine_tail(&mut y, c.input(1)?, c.opt_input(2), &x.shape()[axis..])?;
    let stat_shape: Vec<usize> = x
        .shape()
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < axis { d } else { 1 })
        .collect();
    let stash = p.stash;
    Ok(vec![
        Tensor::from_f64s(x.dtype(), x.shape().to_vec(), y),
        Tensor::from_f64s(stash, stat_shape.clone(), mean),
        Tensor::from_f64s(stash, stat_shape, inv),
    ])
}

fn eval_rms_norm(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let p = super::params::LayerNorm::of(c.attrs())?;
    let (axis, eps) = (p.axis(x.rank())?, f64::from(p.epsilon));
    let len: usize = x.shape()[axis..].iter().product();
    let (mut y, _, _) = normalize_groups(&x.to_f64s(), len, eps, false);
    affine_tail(&mut y, c.input(1)?, None, &x.shape()[axis..])?;
    Ok(vec![Tensor::from_f64s(x.dtype(), x.shape().to_vec(), y)])
}

fn eval_group_norm(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    super::util::require_rank(x, 2)?;
    let p = super::params::GroupNorm::of(c.attrs())?;
    let (groups, eps) = (p.num_groups, f64::from(p.epsilon));
    let ch = x.shape()[1];
    if ch % groups != 0 {
        bail!("GroupNormalization: {ch} channels are not divisible into {groups} groups");
    }
    let inner: usize = x.shape()[2..].iter().product();
    let (y, _, _) = normalize_groups(&x.to_f64s(), ch / groups * inner, eps, true);
    let (scale, bias) = (c.input(1)?.to_f64s(), c.input(2)?.to_f64s());
    // Opset 18 scales per group, opset 21 per channel.
    let per_channel = scale.len() == ch;
    let y = y.iter().enumerate().map(|(i, v)| {
        let k = (i / inner) % ch;
        let k = if per_channel { k } else { k / (ch / groups) };
        v * scale[k] + bias[k]
    });
    Ok(vec![Tensor::from_f64s(x.dtype(), x.shape().to_vec(), y)])
}

fn eval_lp_norm(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let params = super::params::LpNorm::of(c.attrs())?;
    let (axis, p) = (params.axis(x.rank())?, params.p);
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    let mut xs = x.to_f64s();
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * n + k) * inner + i;
            let norm = if p == 1 {
                (0..n).map(|k| xs[at(k)].abs()).sum::<f64>()
            } else {
                (0..n).map(|k| xs[at(k)].powi(2)).sum::<f64>().sqrt()
            };
            if norm != 0.0 {
                (0..n).for_each(|k| xs[at(k)] /= norm);
            }
        }
    }
    Ok(vec![Tensor::from_f64s(x.dtype(), x.shape().to_vec(), xs)])
}

fn eval_mvn(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let axes = super::params::MeanVarianceNorm::of(c.attrs())?.axes(x.rank())?;
    let kept = super::util::keep_dims(x.shape(), &axes);
    let offs = super::util::broadcast_offsets(&kept, x.shape());
    let n_out: usize = kept.iter().product();
    let cnt = (x.len() / n_out.max(1)) as f64;
    let xs = x.to_f64s();
    let (mut mean, mut var) = (vec![0.0; n_out], vec![0.0; n_out]);
    offs.iter().zip(&xs).for_each(|(&o, v)| mean[o] += v / cnt);
    offs.iter()
        .zip(&xs)
        .for_each(|(&o, v)| var[o] += (v - mean[o]).powi(2) / cnt);
    let y = offs
        .iter()
        .zip(&xs)
        .map(|(&o, v)| (v - mean[o]) / (var[o].sqrt() + 1e-9));
    Ok(vec![Tensor::from_f64s(x.dtype(), x.shape().to_vec(), y)])
}

fn eval_lrn(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    super::util::require_rank(x, 2)?;
    let p = super::params::Lrn::of(c.attrs())?;
    let size = p.size;
    let (alpha, beta, bias) = (f64::from(p.alpha), f64::from(p.beta), f64::from(p.bias));
    let ch = x.shape()[1];
    let inner: usize = x.shape()[2..].iter().product();
    let xs = x.to_f64s();
    let (lo, hi) = p.window();
    let y = (0..xs.len()).map(|i| {
        let k = (i / inner) % ch;
        let base = i - k * inner;
        let sq: f64 = (k.saturating_sub(lo)..=(k + hi).min(ch - 1))
            .map(|j| xs[base + j * inner].powi(2))
            .sum();
        xs[i] / (bias + alpha / size as f64 * sq).powf(beta)
    });
    Ok(vec![Tensor::from_f64s(x.dtype(), x.shape().to_vec(), y)])
}

#[derive(Clone, Copy, PartialEq)]
enum SoftmaxKind {
    Softmax,
    Log,
    Hard,
}

fn eval_softmax(c: &EvalCtx, kind: SoftmaxKind) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let super::params::SoftmaxRows {
        outer,
        len: n,
        inner,
        ..
    } = super::params::SoftmaxRows::of(c.attrs(), c.opset, x.shape())?;
    let mut xs = x.to_f64s();
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * n + k) * inner + i;
            let max = (0..n).map(|k| xs[at(k)]).fold(f64::NEG_INFINITY, f64::max);
            match kind {
                SoftmaxKind::Hard => {
                    let first = (0..n).find(|&k| xs[at(k)] == max).unwrap_or(0);
                    (0..n).for_each(|k| xs[at(k)] = if k == first { 1.0 } else { 0.0 });
                }
                _ => {
                    let sum: f64 = (0..n).map(|k| (xs[at(k)] - max).exp()).sum();
                    for k in 0..n {
                        let v = xs[at(k)] - max;
                        xs[at(k)] = if kind == SoftmaxKind::Log {
                            v - sum.ln()
                        } else {
                            v.exp() / sum
                        };
                    }
                }
            }
        }
    }
    Ok(vec![Tensor::from_f64s(x.dtype(), x.shape().to_vec(), xs)])
}

/// Output dims of a sliding-window op over input dims `x` ([N, C, spatial…])
/// producing `channels`; spatial sizes are computed when all are known.
fn window_dims(
    attrs: &Attrs,
    x: &[Dim],
    channels: Dim,
    kernel: Option<Vec<usize>>,
) -> Result<Shape> {
    let spatial: Option<Vec<usize>> = x.get(2..).and_then(|s| s.iter().map(Dim::known).collect());
    let mut dims = vec![x.first().cloned().unwrap_or(Dim::Unknown), channels];
    match (spatial, kernel) {
        (Some(sp), Some(k)) if k.len() == sp.len() => {
            dims.extend(Window::new(attrs, &sp, &k)?.out.into_iter().map(Dim::Known))
        }
        (None, Some(k)) if k.len() + 2 == x.len() => {
            dims.extend(window_symbolic(attrs, &x[2..], &k)?)
        }
        _ => dims.extend(std::iter::repeat_n(Dim::Unknown, x.len().saturating_sub(2))),
    }
    Ok(Shape(Some(dims)))
}

/// A size standing in for a symbolic spatial dim while [`Window::new`]
/// reads the attributes.
const PROBE: usize = 1 << 20;

/// Output sizes of a window over spatial dims some of which are symbolic:
/// `floor((d + pads - extent) / stride) + 1`, or `ceil(d / stride)` for
/// `SAME` padding. Pooling's `ceil_mode` over a symbolic dim stays unknown
/// (its last window's rule depends on the size).
fn window_symbolic(attrs: &Attrs, spatial: &[Dim], kernel: &[usize]) -> Result<Vec<Dim>> {
    let probe: Vec<usize> = spatial.iter().map(|d| d.known().unwrap_or(PROBE)).collect();
    let w = Window::new(attrs, &probe, kernel)?;
    let n = spatial.len();
    let auto = attrs.string("auto_pad", "NOTSET")?;
    let ceil = attrs.int("ceil_mode", 0)? != 0;
    Ok((0..n)
        .map(|i| {
            // Each axis's size depends on its own input size only.
            if spatial[i].known().is_some() {
                return Some(Dim::Known(w.out[i]));
            }
            let d = spatial[i].expr()?;
            let s = Expr::constant(w.strides[i] as i64);
            let extent = ((kernel[i] - 1) * w.dilations[i] + 1) as i64;
            let out = match auto {
                "SAME_UPPER" | "SAME_LOWER" => d.add(&s).add(&Expr::constant(-1)).floor_div(&s),
                _ if ceil => return None,
                _ => {
                    let pads = if auto == "VALID" {
                        0
                    } else {
                        (w.pads[i] + w.pads[i + n]) as i64
                    };
                    d.add(&Expr::constant(pads - extent))
                        .floor_div(&s)
                        .add(&Expr::constant(1))
                }
            };
            Some(Dim::of(out))
        })
        .map(|d| d.unwrap_or(Dim::Unknown))
        .collect())
}

fn kernel_attr(attrs: &Attrs) -> Result<Option<Vec<usize>>> {
    Ok(attrs
        .opt_ints("kernel_shape")?
        .map(|k| k.iter().map(|&v| v as usize).collect()))
}

fn infer_conv(c: &InferCtx) -> Result<Vec<ValueType>> {
    let dtype = c.dtype(0);
    let (Some(x), Some(w)) = (c.dims(0), c.dims(1)) else {
        return Ok(vec![ValueType {
            dtype,
            shape: Shape::unknown(),
        }]);
    };
    let kernel = match kernel_attr(&c.node.attrs)? {
        Some(k) => Some(k),
        None => w.get(2..).and_then(|k| k.iter().map(Dim::known).collect()),
    };
    let channels = w.first().cloned().unwrap_or(Dim::Unknown);
    Ok(vec![ValueType {
        dtype,
        shape: window_dims(&c.node.attrs, x, channels, kernel)?,
    }])
}

/// `ConvTranspose`: batch, the weight's output channels × groups, and
/// each spatial size from [`super::params::ConvTranspose::out_sizes`]
/// where the pads are fixed (symbolic sizes stay symbolic); by
/// evaluation otherwise.
fn infer_conv_transpose(c: &InferCtx) -> Result<Vec<ValueType>> {
    let (Some(x), Some(w)) = (c.dims(0), c.dims(1)) else {
        return super::infer::by_evaluation(c, &[0, 1, 2]);
    };
    let kernel: Option<Vec<usize>> = w.get(2..).and_then(|k| k.iter().map(Dim::known).collect());
    let (Some(kernel), Some(per_group)) = (kernel, w.get(1).and_then(Dim::known)) else {
        return super::infer::by_evaluation(c, &[0, 1, 2]);
    };
    let p = super::params::ConvTranspose::of(&c.node.attrs, kernel.len())?;
    let input: Option<Vec<Expr>> = x.get(2..).and_then(|d| d.iter().map(Dim::expr).collect());
    let Some(out) = input.and_then(|i| p.out_sizes(&i, &kernel)) else {
        return super::infer::by_evaluation(c, &[0, 1, 2]);
    };
    let mut dims = vec![x[0].clone(), Dim::Known(per_group * p.group)];
    dims.extend(out.into_iter().map(Dim::of));
    Ok(vec![ValueType {
        dtype: c.dtype(0),
        shape: Shape(Some(dims)),
    }])
}

fn infer_pool(c: &InferCtx) -> Result<Vec<ValueType>> {
    let dtype = c.dtype(0);
    let Some(x) = c.dims(0) else {
        return Ok(vec![ValueType {
            dtype,
            shape: Shape::unknown(),
        }]);
    };
    let channels = x.get(1).cloned().unwrap_or(Dim::Unknown);
    let shape = window_dims(&c.node.attrs, x, channels, kernel_attr(&c.node.attrs)?)?;
    Ok(vec![
        ValueType {
            dtype,
            shape: shape.clone(),
        },
        ValueType::new(DType::I64, shape),
    ])
}

fn infer_global_pool(c: &InferCtx) -> Result<Vec<ValueType>> {
    let x = c.input(0)?;
    let shape = x.shape.dims().map(|d| {
        d.iter()
            .enumerate()
            .map(|(i, dim)| if i < 2 { dim.clone() } else { Dim::Known(1) })
            .collect()
    });
    Ok(vec![ValueType {
        dtype: x.dtype,
        shape: Shape(shape),
    }])
}

/// `CausalConvWithState`: a depthwise 1-D convolution over the past state
/// followed by the input (so each output sees only the past), optionally
/// with SiLU; also returns the new state (the last k-1 steps).
fn eval_causal_conv_with_state(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, w) = (c.input(0)?, c.input(1)?);
    let ([b, ch, len], [wc, 1, k]) = (x.shape(), w.shape()) else {
        bail!(
            "CausalConvWithState expects input [B, C, L] and weight [C, 1, k], got {:?} and {:?}",
            x.shape(),
            w.shape()
        );
    };
    let (b, ch, len, k) = (*b, *ch, *len, *k);
    if *wc != ch || k == 0 {
        bail!("weight {:?} does not match {ch} channels", w.shape());
    }
    let state = match c.opt_input(3) {
        Some(s) if s.shape() == [b, ch, k - 1] => s.clone(),
        Some(s) => bail!("past_state {:?} must be [{b}, {ch}, {}]", s.shape(), k - 1),
        None => Tensor::zeros(x.dtype(), vec![b, ch, k - 1]),
    };
    let padded = super::movement::concat(&[&state, x], 2)?;
    let win = Window::new(&Attrs::default(), &[len + k - 1], &[k])?;
    let bias = c.opt_input(2).map(Tensor::to_f64s);
    let y = conv(
        &padded.to_f64s(),
        padded.shape(),
        &w.to_f64s(),
        w.shape(),
        bias.as_deref(),
        ch,
        &win,
    );
    let y = match c.attrs().string("activation", "none")? {
        "none" => y,
        "silu" | "swish" => y.into_iter().map(|v| v / (1.0 + (-v).exp())).collect(),
        a => bail!("unknown activation '{a}' (expected none, silu or swish)"),
    };
    let present = super::movement::narrow(&padded, 2, len, k - 1);
    Ok(vec![
        Tensor::from_f64s(x.dtype(), vec![b, ch, len], y),
        present,
    ])
}

/// `MaxUnpool`: scatters pooled values back to the positions `MaxPool`'s
/// indices recorded, zeros elsewhere.
fn eval_max_unpool(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, idx) = (c.input(0)?, c.input(1)?);
    let nd = x
        .rank()
        .checked_sub(2)
        .filter(|&d| d > 0)
        .ok_or_else(|| Error::invalid("MaxUnpool expects rank >= 3"))?;
    // Indices address the unpooled size computed from the attributes; an
    // explicit output_shape (which may add padding) re-places them in it.
    let a = c.attrs();
    let kernel = a
        .opt_ints("kernel_shape")?
        .ok_or_else(|| Error::invalid("MaxUnpool needs kernel_shape"))?;
    let strides = a.opt_ints("strides")?.map_or(vec![1; nd], <[i64]>::to_vec);
    let pads = a.opt_ints("pads")?.map_or(vec![0; 2 * nd], <[i64]>::to_vec);
    let mut natural = x.shape()[..2].to_vec();
    for d in 0..nd {
        let v = (x.shape()[d + 2] as i64 - 1) * strides[d] - pads[d] - pads[d + nd] + kernel[d];
        natural.push(
            usize::try_from(v).map_err(|_| Error::invalid("MaxUnpool output size is negative"))?,
        );
    }
    let shape = match c.opt_input(2) {
        Some(s) => super::util::to_dims(s, "MaxUnpool output_shape")?,
        None => natural.clone(),
    };
    if shape.len() != natural.len() || shape.iter().zip(&natural).any(|(s, n)| s < n) {
        bail!("MaxUnpool output_shape {shape:?} is smaller than the unpooled size {natural:?}");
    }
    let (nsz, mut pos) = (natural.iter().product::<usize>(), vec![0; natural.len()]);
    let n: usize = shape.iter().product();
    let mut y = vec![0.0; n];
    let out_strides = crate::tensor::strides(&shape);
    for (v, i) in x.to_f64s().into_iter().zip(idx.to_i64s()) {
        let i = usize::try_from(i)
            .ok()
            .filter(|&i| i < nsz)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "index {i} is outside the unpooled size {natural:?}"
                ))
            })?;
        super::util::unravel(i, &natural, &mut pos);
        y[pos
            .iter()
            .zip(&out_strides)
            .map(|(p, s)| p * s)
            .sum::<usize>()] = v;
    }
    Ok(vec![Tensor::from_f64s(x.dtype(), shape, y)])
}

/// `Col2Im`: sums sliding blocks (the columns of an im2col matrix) back
/// into an image; the adjoint of the unfolding `Conv` performs.
fn eval_col2im(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let image = super::util::to_dims(c.input(1)?, "Col2Im image_shape")?;
    let block = super::util::to_dims(c.input(2)?, "Col2Im block_shape")?;
    if image.is_empty() || image.len() != block.len() {
        bail!(
            "Col2Im image_shape {image:?} and block_shape {block:?} must be non-empty and of equal length"
        );
    }
    let nd = image.len();
    let mut attrs = c.attrs().clone();
    attrs.insert(
        "kernel_shape",
        crate::attr::Attr::Ints(block.iter().map(|&b| b as i64).collect()),
    );
    let win = Window::new(&attrs, &image, &block)?;
    let [n, cb, l] = x.shape() else {
        bail!("Col2Im expects a 3-D input, got {:?}", x.shape())
    };
    let ksz: usize = block.iter().product();
    if ksz == 0 || cb % ksz != 0 || *l != win.spatial() {
        bail!(
            "Col2Im input {:?} does not match block {block:?} over image {image:?}",
            x.shape()
        );
    }
    let ch = cb / ksz;
    let isz: usize = image.iter().product();
    let xs = x.to_f64s();
    let mut y = vec![0.0; n * ch * isz];
    let (mut kpos, mut opos) = (vec![0; nd], vec![0; nd]);
    for b in 0..*n {
        for cc in 0..ch {
            for kk in 0..ksz {
                super::util::unravel(kk, &block, &mut kpos);
                for o in 0..*l {
                    super::util::unravel(o, &win.out, &mut opos);
                    if let Some(off) = win.input_offset(&opos, &kpos, &image) {
                        y[(b * ch + cc) * isz + off] += xs[((b * cb) + cc * ksz + kk) * l + o];
                    }
                }
            }
        }
    }
    let mut shape = vec![*n, ch];
    shape.extend(&image);
    Ok(vec![Tensor::from_f64s(x.dtype(), shape, y)])
}
