//! Parameters of convolution, pooling, normalization and softmax.

use crate::attr::Attrs;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::util::{norm_axes, norm_axis};
use crate::sym::Expr;

/// `LRN`: each element divided by (bias + alpha/size · Σ x²)^beta over a
/// window of `size` channels around it.
#[derive(Clone, Debug, PartialEq)]
pub struct Lrn {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

impl Lrn {
    pub fn of(a: &Attrs) -> Result<Lrn> {
        let size = a.int("size", 0)?;
        if size < 1 {
            bail!("LRN needs a positive 'size', got {size}");
        }
        Ok(Lrn {
            size: size as usize,
            alpha: a.float("alpha", 1e-4)?,
            beta: a.float("beta", 0.75)?,
            bias: a.float("bias", 1.0)?,
        })
    }

    /// Channels summed before and after channel c: the window is
    /// [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉].
    pub fn window(&self) -> (usize, usize) {
        ((self.size - 1) / 2, self.size.div_ceil(2) - 1)
    }
}

/// `MaxPool`, `AveragePool` and `LpPool` beyond the window geometry
/// (strides, pads, dilations: [`super::Window`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    /// `kernel_shape`: one positive size per spatial dim.
    pub kernel: Vec<usize>,
    /// `AveragePool`: divide by the whole window, padding included.
    pub count_include_pad: bool,
    /// `LpPool`'s p.
    pub p: i64,
    /// `MaxPool`'s index output is column-major.
    pub column_major_indices: bool,
}

impl Pool {
    /// The parameters for an input with `spatial` spatial dims.
    pub fn of(a: &Attrs, spatial: usize) -> Result<Pool> {
        let kernel = a
            .opt_ints("kernel_shape")?
            .ok_or_else(|| Error::invalid("pooling needs 'kernel_shape'"))?;
        if kernel.len() != spatial || kernel.iter().any(|&k| k < 1) {
            bail!(
                "kernel_shape {kernel:?} must have {spatial} positive sizes, one per spatial dim"
            );
        }
        Ok(Pool {
            kernel: kernel.iter().map(|&k| k as usize).collect(),
            count_include_pad: a.int("count_include_pad", 0)? != 0,
            p: a.int("p", 2)?,
            column_major_indices: a.int("storage_order", 0)? != 0,
        })
    }
}

/// The rows `Softmax`, `LogSoftmax` and `Hardmax` normalize: `outer`
/// blocks of rows of `len` elements `inner` apart. Since opset 13 a row
/// runs along `axis` (default -1); before, the input is flattened to 2-D
/// at `axis` (default 1) and a row is everything from `axis` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoftmaxRows {
    pub axis: usize,
    pub outer: usize,
    pub len: usize,
    pub inner: usize,
}

impl SoftmaxRows {
    /// The rows of an input of `shape` (a scalar is one row of one).
    pub fn of(a: &Attrs, opset: u32, shape: &[usize]) -> Result<SoftmaxRows> {
        let shape = if shape.is_empty() { &[1][..] } else { shape };
        let (axis, [outer, len, inner]) =
            SoftmaxRows::extents(a, opset, shape, |d| d.iter().product::<usize>())?;
        Ok(SoftmaxRows {
            axis,
            outer,
            len,
            inner,
        })
    }

    /// The axis and `[outer, len, inner]` of an input of `shape` (not
    /// empty), over any size type (a backend's dynamic sizes) whose
    /// `product` of dims it is given.
    pub fn extents<T: Clone>(
        a: &Attrs,
        opset: u32,
        shape: &[T],
        product: impl Fn(&[T]) -> T,
    ) -> Result<(usize, [T; 3])> {
        let legacy = opset < 13;
        let axis = norm_axis(a.int("axis", if legacy { 1 } else { -1 })?, shape.len())?;
        let (len, inner) = if legacy {
            (product(&shape[axis..]), product(&[]))
        } else {
            (shape[axis].clone(), product(&shape[axis + 1..]))
        };
        Ok((axis, [product(&shape[..axis]), len, inner]))
    }
}

/// `LpPool`'s and `GlobalLpPool`'s p.
pub fn lp_pool_p(a: &Attrs) -> Result<f64> {
    Ok(a.int("p", 2)? as f64)
}

/// Refuses (unsupported) a windowed `op` whose `auto_pad` is
/// `SAME_UPPER` or `SAME_LOWER` over sizes known only at run time: its
/// pads are worked out from the input's size, and kernels compile them in.
pub fn pads_fixed_for_dynamic_sizes(op: &str, a: &Attrs) -> Result<()> {
    if a.string("auto_pad", "NOTSET")?.starts_with("SAME") {
        return Err(crate::Error::unsupported(format!(
            "{op} with auto_pad SAME over a dynamic size (its pads depend on the size)"
        )));
    }
    Ok(())
}

/// `Conv`'s and `ConvTranspose`'s number of channel groups (a `group` of
/// 0 or less is taken as 1, as onnxruntime does).
pub fn conv_group(a: &Attrs) -> Result<usize> {
    Ok(a.int("group", 1)?.max(1) as usize)
}

/// `ConvTranspose`'s geometry attributes, for `spatial` spatial dims.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTranspose {
    pub group: usize,
    pub strides: Vec<i64>,
    pub dilations: Vec<i64>,
    pub output_padding: Vec<i64>,
    /// Begin pads then end pads, as given (replaced when `output_shape`
    /// or a SAME `auto_pad` decides them).
    pub pads: Vec<i64>,
    /// `auto_pad` is SAME_UPPER or SAME_LOWER: the output is input ·
    /// stride and the padding is split, the odd one at the end (UPPER) or
    /// at the beginning (LOWER).
    pub same: Option<Same>,
    /// The requested output sizes (the last `spatial` of them count).
    pub output_shape: Option<Vec<i64>>,
}

/// Where the odd pad goes under `auto_pad = SAME_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Same {
    Upper,
    Lower,
}

/// The resolved geometry of one ConvTranspose: pads (begin…, end…) and
/// output sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct TransposedWindow {
    pub pads: Vec<i64>,
    pub out: Vec<usize>,
}

impl ConvTranspose {
    pub fn of(a: &Attrs, spatial: usize) -> Result<ConvTranspose> {
        let list = |name: &str, len: usize, default: i64, min: i64| -> Result<Vec<i64>> {
            match a.opt_ints(name)? {
                None => Ok(vec![default; len]),
                Some(v) if v.len() != len => {
                    bail!("ConvTranspose's {name} has {} values, not {len}", v.len())
                }
                Some(v) if v.iter().any(|&x| x < min) => {
                    bail!("ConvTranspose's {name} {v:?} must be at least {min}")
                }
                Some(v) => Ok(v.to_vec()),
            }
        };
        let same = match a.string("auto_pad", "NOTSET")? {
            "SAME_UPPER" => Some(Same::Upper),
            "SAME_LOWER" => Some(Same::Lower),
            "NOTSET" | "VALID" => None,
            other => bail!("unknown auto_pad '{other}'"),
        };
        let output_shape = a.opt_ints("output_shape")?.map(<[i64]>::to_vec);
        if output_shape.as_ref().is_some_and(|s| s.len() < spatial) {
            bail!("ConvTranspose's output_shape has fewer than {spatial} sizes");
        }
        Ok(ConvTranspose {
            group: conv_group(a)?,
            strides: list("strides", spatial, 1, 1)?,
            dilations: list("dilations", spatial, 1, 1)?,
            output_padding: list("output_padding", spatial, 0, 0)?,
            pads: list("pads", 2 * spatial, 0, 0)?,
            same,
            output_shape,
        })
    }

    /// The output sizes over `input` spatial sizes that may be symbolic,
    /// where the pads are as given (no `output_shape`, no SAME `auto_pad`:
    /// those make the pads depend on the sizes): `stride·(in − 1) +
    /// output_padding + (kernel − 1)·dilation + 1 − pads`. `None`
    /// otherwise.
    pub fn out_sizes(&self, input: &[Expr], kernel: &[usize]) -> Option<Vec<Expr>> {
        if self.output_shape.is_some() || self.same.is_some() {
            return None;
        }
        let nd = input.len();
        let c = Expr::constant;
        Some(
            (0..nd)
                .map(|i| {
                    let fixed =
                        self.output_padding[i] + (kernel[i] as i64 - 1) * self.dilations[i] + 1
                            - self.pads[i]
                            - self.pads[i + nd];
                    input[i].add(&c(-1)).mul(&c(self.strides[i])).add(&c(fixed))
                })
                .collect(),
        )
    }

    /// Pads and output sizes for `input` spatial sizes and `kernel` sizes.
    pub fn window(&self, input: &[usize], kernel: &[usize]) -> TransposedWindow {
        let nd = input.len();
        let mut pads = self.pads.clone();
        let mut out = vec![0usize; nd];
        for i in 0..nd {
            let full = self.strides[i] * (input[i] as i64 - 1)
                + self.output_padding[i]
                + (kernel[i] as i64 - 1) * self.dilations[i]
                + 1;
            let (target, odd_first) = match (&self.output_shape, self.same) {
                (Some(os), same) => (Some(os[os.len() - nd + i]), same == Some(Same::Lower)),
                (None, Some(same)) => {
                    (Some(input[i] as i64 * self.strides[i]), same == Same::Lower)
                }
                (None, None) => (None, false),
            };
            match target {
                Some(target) => {
                    let total = (full - target).max(0);
                    let (small, large) = (total / 2, total - total / 2);
                    (pads[i], pads[i + nd]) = if odd_first {
                        (large, small)
                    } else {
                        (small, large)
                    };
                    out[i] = target.max(0) as usize;
                }
                None => out[i] = (full - pads[i] - pads[i + nd]).max(0) as usize,
            }
        }
        TransposedWindow { pads, out }
    }
}

/// `BatchNormalization`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub epsilon: f32,
    pub momentum: f32,
    /// Normalize with the batch's statistics and update the running ones.
    pub training: bool,
}

impl BatchNorm {
    pub fn of(a: &Attrs) -> Result<BatchNorm> {
        Ok(BatchNorm {
            epsilon: a.float("epsilon", 1e-5)?,
            momentum: a.float("momentum", 0.9)?,
            training: a.int("training_mode", 0)? != 0,
        })
    }
}

/// `LayerNormalization` and `RMSNormalization`: every axis from `axis`
/// on is normalized.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm {
    axis: i64,
    pub epsilon: f32,
    /// The element type of the mean and inverse-deviation outputs.
    pub stash: DType,
}

impl LayerNorm {
    pub fn of(a: &Attrs) -> Result<LayerNorm> {
        let stash = match a.int("stash_type", 1)? {
            1 => DType::F32,
            code => DType::from_onnx(code as i32).unwrap_or(DType::F32),
        };
        Ok(LayerNorm {
            axis: a.int("axis", -1)?,
            epsilon: a.float("epsilon", 1e-5)?,
            stash,
        })
    }

    /// The first normalized axis of an input of `rank`.
    pub fn axis(&self, rank: usize) -> Result<usize> {
        norm_axis(self.axis, rank)
    }
}

/// `InstanceNormalization`.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceNorm {
    pub epsilon: f32,
}

impl InstanceNorm {
    pub fn of(a: &Attrs) -> Result<InstanceNorm> {
        Ok(InstanceNorm {
            epsilon: a.float("epsilon", 1e-5)?,
        })
    }
}

/// `GroupNormalization`.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupNorm {
    pub num_groups: usize,
    pub epsilon: f32,
}

impl GroupNorm {
    pub fn of(a: &Attrs) -> Result<GroupNorm> {
        let groups = a.int("num_groups", 0)?;
        if groups < 1 {
            bail!("GroupNormalization needs a positive num_groups, got {groups}");
        }
        Ok(GroupNorm {
            num_groups: groups as usize,
            epsilon: a.float("epsilon", 1e-5)?,
        })
    }
}

/// `LpNormalization`: each vector along `axis` divided by its L1 or L2
/// norm.
#[derive(Clone, Debug, PartialEq)]
pub struct LpNorm {
    axis: i64,
    /// 1 or 2.
    pub p: u32,
}

impl LpNorm {
    pub fn of(a: &Attrs) -> Result<LpNorm> {
        let p = a.int("p", 2)?;
        if !(1..=2).contains(&p) {
            bail!("LpNormalization's p must be 1 or 2, got {p}");
        }
        Ok(LpNorm {
            axis: a.int("axis", -1)?,
            p: p as u32,
        })
    }

    /// The normalized axis of an input of `rank`.
    pub fn axis(&self, rank: usize) -> Result<usize> {
        norm_axis(self.axis, rank)
    }
}

/// `MeanVarianceNormalization`: zero mean, unit variance over `axes`.
#[derive(Clone, Debug, PartialEq)]
pub struct MeanVarianceNorm {
    axes: Vec<i64>,
}

impl MeanVarianceNorm {
    pub fn of(a: &Attrs) -> Result<MeanVarianceNorm> {
        Ok(MeanVarianceNorm {
            axes: a.opt_ints("axes")?.unwrap_or(&[0, 2, 3]).to_vec(),
        })
    }

    /// The normalized axes of an input of `rank`.
    pub fn axes(&self, rank: usize) -> Result<Vec<usize>> {
        norm_axes(&self.axes, rank)
    }
}
