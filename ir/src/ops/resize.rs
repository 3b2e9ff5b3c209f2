//! Resampling: `Resize` (and its predecessor `Upsample`), `GridSample` and
//! `AffineGrid`.
//!
//! `Resize` is separable 1-D resampling along each axis, innermost first,
//! which is exactly the nesting order of the ONNX reference, so
//! tf_crop_and_resize extrapolation blends the same way.

use super::params::{GridPadding, GridSample, Sampling};
use super::{EvalCtx, OpDef, op};
use crate::attr::Attrs;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub(super) fn ops() -> Vec<OpDef> {
    vec![
        op!("Resize", eval_resize, |c| super::infer::by_evaluation(
            c,
            &[0]
        ))
        .steered_by(&[1, 2, 3]),
        op!("Upsample", eval_upsample, |c| super::infer::by_evaluation(
            c,
            &[0]
        ))
        .steered_by(&[1]),
        op!("GridSample", eval_grid_sample),
        op!("AffineGrid", eval_affine_grid),
    ]
}

/// How to resample one axis.
struct AxisPlan {
    input: usize,
    output: usize,
    scale: f64,
    roi: (f64, f64),
}

struct Options<'a> {
    mode: &'a str,
    coord: &'a str,
    nearest: &'a str,
    cubic_a: f64,
    exclude_outside: bool,
    extrapolation: f64,
    antialias: bool,
}

impl Options<'_> {
    /// Interpolation weights for a fractional position `ratio` in (0, 1].
    fn coeffs(&self, ratio: f64, scale: f64) -> Result<Vec<f64>> {
        let a = self.cubic_a;
        Ok(match self.mode {
            "nearest" => {
                let second = match self.nearest {
                    "round_prefer_floor" => ratio > 0.5,
                    "round_prefer_ceil" => ratio >= 0.5,
                    "floor" => ratio == 1.0,
                    "ceil" => true,
                    m => bail!("unknown nearest_mode '{m}'"),
                };
                if ratio == 1.0 || second {
                    vec![0.0, 1.0]
                } else {
                    vec![1.0, 0.0]
                }
            }
            "linear" if self.antialias && scale < 1.0 => {
                let start = (-1.0 / scale).floor() as i64 + 1;
                let c: Vec<f64> = (start..2 - start)
                    .map(|i| (1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0))
                    .collect();
                normalized(c)
            }
            "linear" => vec![1.0 - ratio, ratio],
            "cubic" if self.antialias && scale < 1.0 => {
                let k = |x: f64| {
                    let x = x.abs();
                    if x <= 1.0 {
                        (a + 2.0) * x.powi(3) - (a + 3.0) * x * x + 1.0
                    } else if x < 2.0 {
                        a * x.powi(3) - 5.0 * a * x * x + 8.0 * a * x - 4.0 * a
                    } else {
                        0.0
                    }
                };
                let start = (-2.0 / scale).floor() as i64 + 1;
                normalized(
                    (start..2 - start)
                        .map(|i| k(scale * (i as f64 - ratio)))
                        .collect(),
                )
            }
            "cubic" => {
                let (r, s) = (ratio, 1.0 - ratio);
                vec![
                    ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
                    ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                    ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0,
                    ((a * (s + 1.0) - 5.0 * a) * (s + 1.0) + 8.0 * a) * (s + 1.0) - 4.0 * a,
                ]
            }
            m => bail!("unknown Resize mode '{m}'"),
        })
    }

    /// The source coordinate of output index `x`, or `None` to extrapolate.
    fn source(&self, x: usize, p: &AxisPlan) -> Result<Option<f64>> {
        let (x, inw, outf) = (x as f64, p.input as f64, p.scale * p.input as f64);
        Ok(Some(match self.coord {
            "align_corners" => {
                if outf == 1.0 {
                    0.0
                } else {
                    x * (inw - 1.0) / (outf - 1.0)
                }
            }
            "asymmetric" => x / p.scale,
            "tf_crop_and_resize" => {
                let (s, e) = p.roi;
                let v = if outf == 1.0 {
                    (e - s) * (inw - 1.0) / 2.0
                } else {
                    x * (e - s) * (inw - 1.0) / (outf - 1.0)
                } + s * (inw - 1.0);
                if v < 0.0 || v > inw - 1.0 {
                    return Ok(None);
                }
                v
            }
            "pytorch_half_pixel" => {
                if outf == 1.0 {
                    -0.5
                } else {
                    (x + 0.5) / p.scale - 0.5
                }
            }
            "half_pixel" => (x + 0.5) / p.scale - 0.5,
            "half_pixel_symmetric" => {
                let adjustment = p.output as f64 / outf;
                inw / 2.0 * (1.0 - adjustment) + (x + 0.5) / p.scale - 0.5
            }
            m => bail!("unknown coordinate_transformation_mode '{m}'"),
        }))
    }

    /// For each output index, the (input index, weight) taps, or an empty
    /// list meaning "the extrapolation value".
    fn taps(&self, p: &AxisPlan) -> Result<Vec<Vec<(usize, f64)>>> {
        (0..p.output)
            .map(|o| {
                let Some(x) = self.source(o, p)? else {
                    return Ok(Vec::new());
                };
                let ratio = if x.fract() == 0.0 { 1.0 } else { x - x.floor() };
                let mut c = self.coeffs(ratio, p.scale)?;
                let n = c.len();
                // The n nearest indices of the edge-padded axis, ties to the smaller.
                let pad = n.div_ceil(2) as i64;
                let len = p.input as i64 + 2 * pad;
                let xp = x + pad as f64;
                let mut cand: Vec<i64> = ((xp.floor() as i64 - n as i64)
                    ..=(xp.floor() as i64 + n as i64 + 1))
                    .filter(|i| (0..len).contains(i))
                    .collect();
                cand.sort_by(|a, b| {
                    ((xp - *a as f64).abs(), *a)
                        .partial_cmp(&((xp - *b as f64).abs(), *b))
                        .expect("finite")
                });
                cand.truncate(n);
                cand.sort_unstable();
                let idx: Vec<i64> = cand.iter().map(|i| i - pad).collect();
                if self.exclude_outside {
                    for (k, &i) in idx.iter().enumerate() {
                        if i < 0 || i >= p.input as i64 {
                            c[k] = 0.0;
                        }
                    }
                    c = normalized(c);
                }
                Ok(idx
                    .iter()
                    .zip(c)
                    .map(|(&i, w)| (i.clamp(0, p.input as i64 - 1) as usize, w))
                    .collect())
            })
            .collect()
    }
}

fn normalized(c: Vec<f64>) -> Vec<f64> {
    let s: f64 = c.iter().sum();
    c.into_iter().map(|v| v / s).collect()
}

/// Resamples `data` (shape `shape`) along `axis` with per-output taps.
fn resample_axis(
    data: &[f64],
    shape: &[usize],
    axis: usize,
    taps: &[Vec<(usize, f64)>],
    extrapolation: f64,
) -> Vec<f64> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let (n_in, n_out) = (shape[axis], taps.len());
    let mut out = vec![0.0; outer * n_out * inner];
    for o in 0..outer {
        for (j, t) in taps.iter().enumerate() {
            let dst = &mut out[(o * n_out + j) * inner..(o * n_out + j + 1) * inner];
            if t.is_empty() {
                dst.fill(extrapolation);
                continue;
            }
            for &(i, w) in t {
                let src = &data[(o * n_in + i) * inner..(o * n_in + i + 1) * inner];
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += w * s);
            }
        }
    }
    out
}

fn resize(x: &Tensor, plans: &[AxisPlan], opts: &Options) -> Result<Tensor> {
    let mut shape = x.shape().to_vec();
    let mut data = x.to_f64s();
    for pass in passes(plans, opts)? {
        data = resample_axis(&data, &shape, pass.axis, &pass.taps, pass.extrapolation);
        shape[pass.axis] = pass.taps.len();
    }
    Ok(if x.dtype().is_float() {
        Tensor::from_f64s(x.dtype(), shape, data)
    } else {
        Tensor::from_i128s(
            x.dtype(),
            shape,
            data.into_iter().map(|v| v.round() as i128),
        )
    })
}

fn options<'a>(a: &'a Attrs, legacy: bool) -> Result<Options<'a>> {
    Ok(Options {
        mode: a.string("mode", "nearest")?,
        coord: if legacy {
            "asymmetric"
        } else {
            a.string("coordinate_transformation_mode", "half_pixel")?
        },
        nearest: if legacy {
            "floor"
        } else {
            a.string("nearest_mode", "round_prefer_floor")?
        },
        cubic_a: f64::from(a.float("cubic_coeff_a", -0.75)?),
        exclude_outside: a.int("exclude_outside", 0)? != 0,
        extrapolation: f64::from(a.float("extrapolation_value", 0.0)?),
        antialias: a.int("antialias", 0)? != 0,
    })
}

/// The per-axis plans of a `Resize` on an input of `shape`; `input(i)`
/// gives the node's parameter inputs (roi, scales, sizes).
fn resize_plans<'a, 'b>(
    a: &'a Attrs,
    opset: u32,
    shape: &[usize],
    input: impl Fn(usize) -> Option<&'b Tensor>,
) -> Result<(Vec<AxisPlan>, Options<'a>)> {
    let r = shape.len();
    let legacy = opset < 11;
    let opts = options(a, legacy)?;
    let axes = match a.opt_ints("axes")? {
        Some(v) => super::util::norm_axes(v, r)?,
        None => (0..r).collect(),
    };
    let non_empty = |i: usize| input(i).filter(|t| !t.is_empty());
    let (scales_in, sizes_in, roi_in) = if legacy {
        (non_empty(1), None, None)
    } else {
        (non_empty(2), non_empty(3), non_empty(1))
    };
    let mut scale = vec![1.0; r];
    let mut out = shape.to_vec();
    match (scales_in, sizes_in) {
        (Some(s), None) => {
            let s = s.to_f64s();
            if s.len() != axes.len() {
                bail!("Resize has {} scales for {} axes", s.len(), axes.len());
            }
            for (k, &ax) in axes.iter().enumerate() {
                scale[ax] = s[k];
                out[ax] = (shape[ax] as f64 * s[k]).floor() as usize;
            }
        }
        (None, Some(sz)) => {
            let sz = sz.to_i64s();
            if sz.len() != axes.len() {
                bail!("Resize has {} sizes for {} axes", sz.len(), axes.len());
            }
            let ratios: Vec<f64> = axes
                .iter()
                .zip(&sz)
                .map(|(&ax, &s)| s as f64 / shape[ax] as f64)
                .collect();
            let common = match a.string("keep_aspect_ratio_policy", "stretch")? {
                "stretch" => None,
                "not_larger" => Some(ratios.iter().copied().fold(f64::INFINITY, f64::min)),
                "not_smaller" => Some(ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                p => bail!("unknown keep_aspect_ratio_policy '{p}'"),
            };
            for (k, &ax) in axes.iter().enumerate() {
                match common {
                    None => {
                        scale[ax] = ratios[k];
                        out[ax] = sz[k] as usize;
                    }
                    Some(s) => {
                        scale[ax] = s;
                        out[ax] = (s * shape[ax] as f64 + 0.5).floor() as usize;
                    }
                }
            }
        }
        _ => {
            return Err(Error::invalid(
                "Resize needs exactly one of 'scales' and 'sizes'",
            ));
        }
    }
    let roi = roi_in.map(Tensor::to_f64s);
    let plans: Vec<AxisPlan> = (0..r)
        .map(|ax| {
            let roi = match &roi {
                Some(v) if v.len() == 2 * axes.len() => match axes.iter().position(|&a| a == ax) {
                    Some(k) => (v[k], v[k + axes.len()]),
                    None => (0.0, 1.0),
                },
                _ => (0.0, 1.0),
            };
            AxisPlan {
                input: shape[ax],
                output: out[ax],
                scale: scale[ax],
                roi,
            }
        })
        .collect();
    Ok((plans, opts))
}

fn eval_resize(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let (plans, opts) = resize_plans(c.attrs(), c.opset, x.shape(), |i| c.opt_input(i))?;
    Ok(vec![resize(x, &plans, &opts)?])
}

/// The per-axis plans of an `Upsample` on an input of `shape`.
fn upsample_plans<'a>(
    a: &'a Attrs,
    shape: &[usize],
    scales_in: Option<&Tensor>,
) -> Result<(Vec<AxisPlan>, Options<'a>)> {
    let scales = match scales_in {
        Some(t) => t.to_f64s(),
        None => a
            .opt_floats("scales")?
            .ok_or_else(|| Error::invalid("Upsample needs scales"))?
            .iter()
            .map(|&v| f64::from(v))
            .collect(),
    };
    if scales.len() != shape.len() {
        bail!(
            "Upsample has {} scales for rank {}",
            scales.len(),
            shape.len()
        );
    }
    let opts = options(a, true)?;
    let plans: Vec<AxisPlan> = (0..shape.len())
        .map(|ax| AxisPlan {
            input: shape[ax],
            output: (shape[ax] as f64 * scales[ax]).floor() as usize,
            scale: scales[ax],
            roi: (0.0, 1.0),
        })
        .collect();
    Ok((plans, opts))
}

fn eval_upsample(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let (plans, opts) = upsample_plans(c.attrs(), x.shape(), c.opt_input(1))?;
    Ok(vec![resize(x, &plans, &opts)?])
}

/// One separable pass of `Resize`/`Upsample`: along `axis`, output index
/// `j` is `Σ w · input[i]` over `taps[j]`, or `extrapolation` if `taps[j]`
/// is empty. Backends replay the passes in order to match the reference.
pub struct ResamplePass {
    pub axis: usize,
    pub taps: Vec<Vec<(usize, f64)>>,
    pub extrapolation: f64,
}

/// The passes of a `Resize` or `Upsample` node on an input of `shape`,
/// given the node's inputs (only the parameter inputs are read).
pub fn resample_passes(
    node: &crate::graph::Node,
    opset: u32,
    shape: &[usize],
    inputs: &[Option<&Tensor>],
) -> Result<Vec<ResamplePass>> {
    let input = |i: usize| inputs.get(i).copied().flatten();
    let (plans, opts) = if node.op == "Upsample" {
        upsample_plans(&node.attrs, shape, input(1))?
    } else {
        resize_plans(&node.attrs, opset, shape, input)?
    };
    passes(&plans, &opts)
}

/// The passes `resize` applies, last axis first.
fn passes(plans: &[AxisPlan], opts: &Options) -> Result<Vec<ResamplePass>> {
    let mut out = Vec::new();
    for axis in (0..plans.len()).rev() {
        let p = &plans[axis];
        if p.output == p.input && p.scale == 1.0 && opts.coord != "tf_crop_and_resize" {
            continue;
        }
        out.push(ResamplePass {
            axis,
            taps: opts.taps(p)?,
            extrapolation: opts.extrapolation,
        });
    }
    Ok(out)
}

/// Reflects `x` into `[lo, hi]` by bouncing off the borders.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    let (d, from_low) = if x < lo {
        (lo - x, true)
    } else if x > hi {
        (x - hi, false)
    } else {
        return x;
    };
    let n = (d / range).floor();
    let r = d - n * range;
    let even = n as i64 % 2 == 0;
    match (from_low, even) {
        (true, true) | (false, false) => lo + r,
        _ => hi - r,
    }
}

/// Keys' cubic convolution weights (a = -0.75) for offset `t` in [0, 1).
fn cubic_weights(t: f64) -> [f64; 4] {
    let a = -0.75;
    let far = |x: f64| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    let near = |x: f64| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// `GridSample`: samples an (N, C, spatial…) input at the normalised
/// coordinates of `grid` (N, out…, rank) with nearest, linear or cubic
/// interpolation.
fn eval_grid_sample(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, grid) = (c.input(0)?, c.input(1)?);
    let GridSample {
        mode,
        padding,
        align_corners: align,
    } = GridSample::of(c.attrs())?;
    super::util::require_rank(x, 3)?;
    let dims = &x.shape()[2..];
    let nd = dims.len();
    if grid.rank() != nd + 2 || grid.shape()[0] != x.shape()[0] || grid.shape()[nd + 1] != nd {
        bail!(
            "GridSample grid {:?} does not match input {:?}",
            grid.shape(),
            x.shape()
        );
    }
    let (n, ch) = (x.shape()[0], x.shape()[1]);
    let out_sp: Vec<usize> = grid.shape()[1..=nd].to_vec();
    let osz: usize = out_sp.iter().product();
    let isz: usize = dims.iter().product();
    let istr = crate::tensor::strides(dims);
    let (xs, gs) = (x.to_f64s(), grid.to_f64s());
    let border: Vec<(f64, f64)> = dims
        .iter()
        .map(|&d| {
            if align {
                (0.0, d as f64 - 1.0)
            } else {
                (-0.5, d as f64 - 0.5)
            }
        })
        .collect();
    // Reads one pixel of plane `p` at integer coordinates, applying the padding rule.
    let pixel = |p: usize, idx: &[i64]| -> f64 {
        let mut off = 0;
        for d in 0..nd {
            let size = dims[d] as i64;
            let i = match padding {
                GridPadding::Zeros if idx[d] < 0 || idx[d] >= size => return 0.0,
                GridPadding::Zeros => idx[d],
                GridPadding::Border => idx[d].clamp(0, size - 1),
                GridPadding::Reflection => {
                    (reflect(idx[d] as f64, border[d].0, border[d].1) as i64).clamp(0, size - 1)
                }
            };
            off += i as usize * istr[d];
        }
        xs[p * isz + off]
    };
    let taps = mode.taps();
    let mut y = vec![0.0; n * ch * osz];
    let mut coord = vec![0.0; nd];
    let mut idx = vec![0i64; nd];
    for b in 0..n {
        for o in 0..osz {
            let g = &gs[(b * osz + o) * nd..(b * osz + o + 1) * nd];
            for d in 0..nd {
                // The grid lists coordinates innermost dimension first (x, y, …).
                let v = g[nd - 1 - d];
                let len = dims[d] as f64;
                let mut p = if align {
                    (v + 1.0) / 2.0 * (len - 1.0)
                } else {
                    ((v + 1.0) * len - 1.0) / 2.0
                };
                if mode == Sampling::Nearest {
                    p = p.round_ties_even();
                }
                if p < border[d].0 || p > border[d].1 {
                    p = match padding {
                        GridPadding::Border => p.clamp(0.0, len - 1.0),
                        GridPadding::Reflection => reflect(p, border[d].0, border[d].1),
                        GridPadding::Zeros => p,
                    };
                }
                coord[d] = p;
            }
            // Per-dimension taps: (first index, weights).
            let weights: Vec<(i64, Vec<f64>)> = coord
                .iter()
                .map(|&p| match mode {
                    Sampling::Nearest => (p as i64, vec![1.0]),
                    Sampling::Linear => {
                        (p.floor() as i64, vec![1.0 - (p - p.floor()), p - p.floor()])
                    }
                    Sampling::Cubic => {
                        (p.floor() as i64 - 1, cubic_weights(p - p.floor()).to_vec())
                    }
                })
                .collect();
            for plane in b * ch..(b + 1) * ch {
                let mut acc = 0.0;
                for combo in 0..taps.pow(nd as u32) {
                    let mut w = 1.0;
                    let mut rest = combo;
                    for d in (0..nd).rev() {
                        let t = rest % taps;
                        rest /= taps;
                        idx[d] = weights[d].0 + t as i64;
                        w *= weights[d].1[t];
                    }
                    if w != 0.0 {
                        acc += w * pixel(plane, &idx);
                    }
                }
                y[plane * osz + o] = acc;
            }
        }
    }
    let mut shape = vec![n, ch];
    shape.extend(out_sp);
    Ok(vec![Tensor::from_f64s(x.dtype(), shape, y)])
}

/// `AffineGrid`: the sampling grid of an affine transform `theta` for an
/// output of `size` (N, C, spatial…), in normalised coordinates.
fn eval_affine_grid(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (theta, size) = (c.input(0)?, c.input(1)?.to_i64s());
    let align = c.attrs().int("align_corners", 0)? != 0;
    let nd = size
        .len()
        .checked_sub(2)
        .filter(|&d| d == 2 || d == 3)
        .ok_or_else(|| Error::invalid("AffineGrid size must have 4 or 5 entries"))?;
    let n = size[0] as usize;
    let sp: Vec<usize> = size[2..].iter().map(|&d| d as usize).collect();
    if theta.shape() != [n, nd, nd + 1] {
        bail!(
            "AffineGrid theta {:?} must be [{n}, {nd}, {}]",
            theta.shape(),
            nd + 1
        );
    }
    let th = theta.to_f64s();
    let lin = |i: usize, len: usize| {
        if align {
            if len == 1 {
                0.0
            } else {
                -1.0 + 2.0 * i as f64 / (len - 1) as f64
            }
        } else {
            (2.0 * i as f64 + 1.0) / len as f64 - 1.0
        }
    };
    let osz: usize = sp.iter().product();
    let mut out = Vec::with_capacity(n * osz * nd);
    let mut pos = vec![0; nd];
    for b in 0..n {
        for o in 0..osz {
            super::util::unravel(o, &sp, &mut pos);
            // Homogeneous base point, innermost dimension first: (x, y[, z], 1).
            let mut base: Vec<f64> = (0..nd).rev().map(|d| lin(pos[d], sp[d])).collect();
            base.push(1.0);
            for r in 0..nd {
                out.push(
                    (0..=nd)
                        .map(|k| th[(b * nd + r) * (nd + 1) + k] * base[k])
                        .sum(),
                );
            }
        }
    }
    let mut shape = vec![n];
    shape.extend(&sp);
    shape.push(nd);
    Ok(vec![Tensor::from_f64s(theta.dtype(), shape, out)])
}
