//! Typed op parameters: an op's attributes read, defaulted and validated
//! once, here, into the form every consumer uses. The reference kernels,
//! shape inference and each backend's lowering call `Params::of` and read
//! fields; none of them reads these attributes by name, so a default or a
//! validity rule cannot differ between the interpreter and a backend.
//!
//! Families not yet here still read their attributes where they are used
//! (issue 13 moves them in, family by family).

use crate::attr::Attrs;
use crate::error::{Error, Result};

use super::util::{norm_axes, norm_axis};
use crate::dtype::DType;

/// The integer-list attribute that input `index` of `op` replaced when a
/// newer opset made it an input (`Slice`'s starts before opset 10, the
/// axes of `Squeeze` and the reductions before 13 or 18, ...). Readers of
/// such an input fall back to the attribute on older models, through
/// this one table.
pub fn replaced_attribute(op: &str, index: usize) -> Option<&'static str> {
    Some(match (op, index) {
        ("Reshape", 1) => "shape",
        ("Squeeze" | "Unsqueeze", 1) => "axes",
        ("Split", 1) => "split",
        ("Slice", 1) => "starts",
        ("Slice", 2) => "ends",
        ("Slice", 3) => "axes",
        ("Pad", 1) => "pads",
        (r, 1) if r.starts_with("Reduce") => "axes",
        _ => return None,
    })
}

/// The values of integer input `index` of a node, from the input when it
/// has one (`input`), else from the attribute it replaced
/// ([`replaced_attribute`]).
pub fn ints_input(
    op: &str,
    a: &Attrs,
    index: usize,
    input: Option<Vec<i64>>,
) -> Result<Option<Vec<i64>>> {
    if input.is_some() {
        return Ok(input);
    }
    match replaced_attribute(op, index) {
        Some(name) => Ok(a.opt_ints(name)?.map(<[i64]>::to_vec)),
        None => Ok(None),
    }
}

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

/// `Transpose`'s permutation for an input of `rank`: `perm`, checked to
/// be a permutation of the axes (negative axes counted from the end), or
/// the axes reversed when absent.
pub fn transpose_perm(a: &Attrs, rank: usize) -> Result<Vec<usize>> {
    match a.opt_ints("perm")? {
        None => Ok((0..rank).rev().collect()),
        Some(p) if p.len() != rank => bail!("perm {p:?} does not match rank {rank}"),
        Some(p) => norm_axes(p, rank),
    }
}

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

/// ONNX `Attention` (opset 23/24).
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    /// Head counts of Q and of K/V, given for 3-D inputs (B, S, H·D).
    pub q_num_heads: Option<usize>,
    pub kv_num_heads: Option<usize>,
    /// The scale of Q·Kᵀ; `None`: 1/√(head size).
    pub scale: Option<f32>,
    /// Scores become softcap · tanh(score / softcap) when positive.
    pub softcap: f32,
    pub is_causal: bool,
    /// Which intermediate scores the optional `qk_matmul_output` holds,
    /// 0 to 3 (before and after masking and softcap, or the softmax).
    pub qk_matmul_output_mode: u8,
    /// Keys visible before and after each query (`None`: unlimited).
    pub left_window: Option<usize>,
    pub right_window: Option<usize>,
}

impl Attention {
    pub fn of(a: &Attrs) -> Result<Attention> {
        let heads = |name: &str| -> Result<Option<usize>> {
            match a.opt_int(name)? {
                Some(n) if n < 1 => bail!("Attention's {name} must be positive, got {n}"),
                n => Ok(n.map(|n| n as usize)),
            }
        };
        let window = |name: &str| -> Result<Option<usize>> {
            match a.int(name, -1)? {
                n if n < -1 => bail!("Attention's {name} must be -1 (unlimited) or more, got {n}"),
                -1 => Ok(None),
                n => Ok(Some(n as usize)),
            }
        };
        let mode = a.int("qk_matmul_output_mode", 0)?;
        if !(0..=3).contains(&mode) {
            bail!("Attention's qk_matmul_output_mode must be 0 to 3, got {mode}");
        }
        Ok(Attention {
            q_num_heads: heads("q_num_heads")?,
            kv_num_heads: heads("kv_num_heads")?,
            scale: a.opt_float("scale")?,
            softcap: a.float("softcap", 0.0)?,
            is_causal: a.int("is_causal", 0)? != 0,
            qk_matmul_output_mode: mode as u8,
            left_window: window("left_window_size")?,
            right_window: window("right_window_size")?,
        })
    }

    /// The head counts of 3-D Q and K/V, which the attributes must give.
    pub fn heads_3d(&self) -> Result<(usize, usize)> {
        match (self.q_num_heads, self.kv_num_heads) {
            (Some(q), Some(kv)) => Ok((q, kv)),
            _ => bail!("3-D Attention needs q_num_heads and kv_num_heads"),
        }
    }

    /// The scale of Q·Kᵀ for heads of `head_size`.
    pub fn scale_for(&self, head_size: usize) -> f64 {
        self.scale
            .map_or(1.0 / (head_size as f64).sqrt(), f64::from)
    }
}

/// The `Reduce*` ops.
#[derive(Clone, Debug, PartialEq)]
pub struct Reduce {
    pub keepdims: bool,
    /// With no axes, return the input (instead of reducing every axis).
    pub noop_with_empty_axes: bool,
}

impl Reduce {
    pub fn of(a: &Attrs) -> Result<Reduce> {
        Ok(Reduce {
            keepdims: a.int("keepdims", 1)? != 0,
            noop_with_empty_axes: a.int("noop_with_empty_axes", 0)? != 0,
        })
    }

    /// The axes to reduce for an input of `rank`, given the node's axes
    /// ([`ints_input`] 1); `None` when the op is a no-op. Repeated axes
    /// are an error.
    pub fn axes(&self, given: Option<Vec<i64>>, rank: usize) -> Result<Option<Vec<usize>>> {
        match given {
            Some(a) if !a.is_empty() => Ok(Some(norm_axes(&a, rank)?)),
            _ if self.noop_with_empty_axes => Ok(None),
            _ => Ok(Some((0..rank).collect())),
        }
    }
}

/// `ArgMax` and `ArgMin`.
#[derive(Clone, Debug, PartialEq)]
pub struct ArgReduce {
    axis: i64,
    pub keepdims: bool,
    /// Of equal values, the last index wins (else the first).
    pub select_last_index: bool,
}

impl ArgReduce {
    pub fn of(a: &Attrs) -> Result<ArgReduce> {
        Ok(ArgReduce {
            axis: a.int("axis", 0)?,
            keepdims: a.int("keepdims", 1)? != 0,
            select_last_index: a.int("select_last_index", 0)? != 0,
        })
    }

    /// The reduced axis of an input of `rank`.
    pub fn axis(&self, rank: usize) -> Result<usize> {
        norm_axis(self.axis, rank)
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
        let legacy = opset < 13;
        let axis = norm_axis(a.int("axis", if legacy { 1 } else { -1 })?, shape.len())?;
        let product = |dims: &[usize]| dims.iter().product::<usize>();
        let (len, inner) = if legacy {
            (product(&shape[axis..]), 1)
        } else {
            (shape[axis], product(&shape[axis + 1..]))
        };
        Ok(SoftmaxRows {
            axis,
            outer: product(&shape[..axis]),
            len,
            inner,
        })
    }
}

/// The one `axis` of the ops that work along an axis, with each op's
/// default (Concat has none: it must be given), for a tensor of `rank`
/// (the output's for Concat and OneHot, which join or add along it);
/// negative axes count from the end.
pub fn axis(op: &str, a: &Attrs, rank: usize) -> Result<usize> {
    let default = match op {
        "Concat" => None,
        "Gather" | "GatherElements" | "ScatterElements" | "Split" => Some(0),
        "OneHot" | "TopK" => Some(-1),
        other => bail!("{other} has no single-axis parameter"),
    };
    match (a.opt_int("axis")?, default) {
        (Some(axis), _) | (None, Some(axis)) => norm_axis(axis, rank),
        (None, None) => bail!("{op} needs 'axis'"),
    }
}

/// `TopK` beyond its axis ([`axis`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TopK {
    /// The k largest (else the k smallest).
    pub largest: bool,
}

impl TopK {
    pub fn of(a: &Attrs) -> Result<TopK> {
        Ok(TopK {
            largest: a.int("largest", 1)? != 0,
        })
    }
}

/// `DepthToSpace` and `SpaceToDepth`.
#[derive(Clone, Debug, PartialEq)]
pub struct Blocks {
    /// The side of a block, at least 1.
    pub blocksize: usize,
    /// Channels ordered column-row-depth (`CRD`) instead of the default
    /// depth-column-row (`DCR`).
    pub crd: bool,
}

impl Blocks {
    pub fn of(a: &Attrs) -> Result<Blocks> {
        let blocksize = a.int("blocksize", 0)?;
        if blocksize < 1 {
            bail!("blocksize must be positive, got {blocksize}");
        }
        let crd = match a.string("mode", "DCR")? {
            "DCR" => false,
            "CRD" => true,
            other => bail!("unknown mode '{other}' (DCR or CRD)"),
        };
        Ok(Blocks {
            blocksize: blocksize as usize,
            crd,
        })
    }
}

/// How `ScatterElements` and `ScatterND` combine an update with the
/// value already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScatterReduction {
    /// The update replaces it.
    None,
    Add,
    Mul,
    Max,
    Min,
}

impl ScatterReduction {
    pub fn of(a: &Attrs) -> Result<ScatterReduction> {
        Ok(match a.string("reduction", "none")? {
            "none" => ScatterReduction::None,
            "add" => ScatterReduction::Add,
            "mul" => ScatterReduction::Mul,
            "max" => ScatterReduction::Max,
            "min" => ScatterReduction::Min,
            r => bail!("unknown scatter reduction '{r}'"),
        })
    }
}

/// `CumSum` and `CumProd` beyond the axis (an input).
#[derive(Clone, Debug, PartialEq)]
pub struct Cumulative {
    /// Each output leaves out its own element.
    pub exclusive: bool,
    /// Accumulate from the end.
    pub reverse: bool,
}

impl Cumulative {
    pub fn of(a: &Attrs) -> Result<Cumulative> {
        Ok(Cumulative {
            exclusive: a.int("exclusive", 0)? != 0,
            reverse: a.int("reverse", 0)? != 0,
        })
    }
}

/// `Trilu`: keep the upper (else the lower) triangle.
pub fn trilu_upper(a: &Attrs) -> Result<bool> {
    Ok(a.int("upper", 1)? != 0)
}

/// `EyeLike`'s diagonal: 0 the main one, positive above, negative below.
pub fn eye_like_diagonal(a: &Attrs) -> Result<i64> {
    a.int("k", 0)
}

/// `GatherND`'s leading batch dims shared by data and indices.
pub fn gather_nd_batch_dims(a: &Attrs) -> Result<usize> {
    match a.int("batch_dims", 0)? {
        b if b < 0 => bail!("GatherND's batch_dims must not be negative, got {b}"),
        b => Ok(b as usize),
    }
}

/// What `Pad` puts outside the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    /// A constant value.
    Constant,
    /// The input mirrored, without repeating the edge.
    Reflect,
    /// The edge element repeated.
    Edge,
    /// The input repeated (cyclic).
    Wrap,
}

impl PadMode {
    pub fn name(self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Edge => "edge",
            PadMode::Wrap => "wrap",
        }
    }
}

/// `Pad`'s attributes (pads and value are inputs since opset 11; the
/// pads attribute is read through [`ints_input`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Pad {
    pub mode: PadMode,
    /// The `value` attribute of opsets before 11.
    pub value: f32,
}

impl Pad {
    pub fn of(a: &Attrs) -> Result<Pad> {
        let mode = match a.string("mode", "constant")? {
            "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            "wrap" => PadMode::Wrap,
            m => bail!("unknown Pad mode '{m}' (constant, reflect, edge or wrap)"),
        };
        Ok(Pad {
            mode,
            value: a.float("value", 0.0)?,
        })
    }
}

/// Which way `LSTM`, `GRU` and `RNN` run over the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
    Bidirectional,
}

/// `LSTM`, `GRU` and `RNN`.
#[derive(Clone, Debug, PartialEq)]
pub struct Recurrent {
    /// When absent, the recurrence weights' shape says.
    pub hidden_size: Option<usize>,
    /// `layout = 1`: inputs and outputs are batch-major.
    pub batch_first: bool,
    pub direction: Direction,
    /// The gate activations, per direction; `None`: the cell's defaults.
    pub activations: Option<Vec<String>>,
    /// Cell inputs are clipped to [-clip, clip].
    pub clip: Option<f32>,
    /// GRU: apply the reset gate after the recurrence's linear part.
    pub linear_before_reset: bool,
    /// LSTM: couple the input and forget gates.
    pub input_forget: bool,
}

impl Recurrent {
    pub fn of(a: &Attrs) -> Result<Recurrent> {
        let direction = match a.string("direction", "forward")? {
            "forward" => Direction::Forward,
            "reverse" => Direction::Reverse,
            "bidirectional" => Direction::Bidirectional,
            d => bail!("unknown direction '{d}' (forward, reverse or bidirectional)"),
        };
        let hidden_size = match a.opt_int("hidden_size")? {
            Some(h) if h < 1 => bail!("hidden_size must be positive, got {h}"),
            h => h.map(|h| h as usize),
        };
        Ok(Recurrent {
            hidden_size,
            batch_first: a.int("layout", 0)? != 0,
            direction,
            activations: a.opt_strings("activations")?.map(<[String]>::to_vec),
            clip: a.opt_float("clip")?,
            linear_before_reset: a.int("linear_before_reset", 0)? != 0,
            input_forget: a.int("input_forget", 0)? != 0,
        })
    }

    /// 1, or 2 when bidirectional.
    pub fn directions(&self) -> usize {
        if self.direction == Direction::Bidirectional {
            2
        } else {
            1
        }
    }
}

/// How `GridSample` interpolates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    Nearest,
    Linear,
    Cubic,
}

impl Sampling {
    /// The ONNX name (of the opset-20 spelling).
    pub fn name(self) -> &'static str {
        match self {
            Sampling::Nearest => "nearest",
            Sampling::Linear => "linear",
            Sampling::Cubic => "cubic",
        }
    }

    /// Input elements per dimension that one output element reads.
    pub fn taps(self) -> usize {
        match self {
            Sampling::Nearest => 1,
            Sampling::Linear => 2,
            Sampling::Cubic => 4,
        }
    }
}

/// What `GridSample` reads for coordinates outside the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridPadding {
    Zeros,
    Border,
    Reflection,
}

impl GridPadding {
    /// The ONNX name.
    pub fn name(self) -> &'static str {
        match self {
            GridPadding::Zeros => "zeros",
            GridPadding::Border => "border",
            GridPadding::Reflection => "reflection",
        }
    }
}

/// `GridSample`.
#[derive(Clone, Debug, PartialEq)]
pub struct GridSample {
    pub mode: Sampling,
    pub padding: GridPadding,
    /// -1 and 1 are the centers of the corner elements (else their
    /// outer edges).
    pub align_corners: bool,
}

impl GridSample {
    pub fn of(a: &Attrs) -> Result<GridSample> {
        let mode = match a.string("mode", "linear")? {
            "bilinear" | "linear" => Sampling::Linear,
            "bicubic" | "cubic" => Sampling::Cubic,
            "nearest" => Sampling::Nearest,
            m => bail!("unknown GridSample mode '{m}'"),
        };
        let padding = match a.string("padding_mode", "zeros")? {
            "zeros" => GridPadding::Zeros,
            "border" => GridPadding::Border,
            "reflection" => GridPadding::Reflection,
            p => bail!("unknown GridSample padding_mode '{p}'"),
        };
        Ok(GridSample {
            mode,
            padding,
            align_corners: a.int("align_corners", 0)? != 0,
        })
    }
}

/// `LpPool`'s and `GlobalLpPool`'s p.
pub fn lp_pool_p(a: &Attrs) -> Result<f64> {
    Ok(a.int("p", 2)? as f64)
}

/// `RotaryEmbedding`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rotary {
    /// Rotate (even, odd) pairs (else the two halves).
    pub interleaved: bool,
    /// Heads of a 3-D input (B, S, heads · head size).
    pub num_heads: Option<usize>,
    /// The rotated part of each head; `None`: all of it.
    pub rotary_dim: Option<usize>,
}

impl Rotary {
    pub fn of(a: &Attrs) -> Result<Rotary> {
        let positive = |name: &str| -> Result<Option<usize>> {
            match a.int(name, 0)? {
                0 => Ok(None),
                n if n < 0 => bail!("RotaryEmbedding's {name} must not be negative, got {n}"),
                n => Ok(Some(n as usize)),
            }
        };
        Ok(Rotary {
            interleaved: a.int("interleaved", 0)? != 0,
            num_heads: positive("num_heads")?,
            rotary_dim: positive("rotary_embedding_dim")?,
        })
    }
}

/// `QuantizeLinear` and `DequantizeLinear`.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantization {
    /// The axis of per-axis (or blocked) parameters; negative from the end.
    pub axis: i64,
    /// Elements per parameter along `axis` (0: per tensor or per axis).
    pub block_size: usize,
}

impl Quantization {
    pub fn of(a: &Attrs) -> Result<Quantization> {
        let block = a.int("block_size", 0)?;
        if block < 0 {
            bail!("block_size must not be negative, got {block}");
        }
        Ok(Quantization {
            axis: a.int("axis", 1)?,
            block_size: block as usize,
        })
    }
}

/// How `NegativeLogLikelihoodLoss` and `SoftmaxCrossEntropyLoss` reduce
/// the per-element losses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossReduction {
    None,
    Sum,
    /// The weighted mean.
    Mean,
}

impl LossReduction {
    pub fn name(self) -> &'static str {
        match self {
            LossReduction::None => "none",
            LossReduction::Sum => "sum",
            LossReduction::Mean => "mean",
        }
    }
}

/// The two losses' attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Loss {
    pub reduction: LossReduction,
    /// Targets of this class count for nothing.
    pub ignore_index: Option<i64>,
}

impl Loss {
    pub fn of(a: &Attrs) -> Result<Loss> {
        let reduction = match a.string("reduction", "mean")? {
            "none" => LossReduction::None,
            "sum" => LossReduction::Sum,
            "mean" => LossReduction::Mean,
            r => bail!("unknown reduction '{r}' (none, sum or mean)"),
        };
        Ok(Loss {
            reduction,
            ignore_index: a.opt_int("ignore_index")?,
        })
    }
}

/// `Shape`'s slice of the dims, [start, end) for an input of `rank`
/// (negative bounds count from the end; both are clamped).
pub fn shape_range(a: &Attrs, rank: usize) -> Result<(usize, usize)> {
    let fix = |v: i64| (if v < 0 { v + rank as i64 } else { v }).clamp(0, rank as i64) as usize;
    let start = fix(a.int("start", 0)?);
    let end = fix(a.int("end", rank as i64)?);
    Ok((start, end.max(start)))
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

/// The elementwise ops that take attributes, with them. Ops without
/// attributes have no entry ([`Elementwise::of`] gives `None`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Elementwise {
    Elu {
        alpha: f32,
    },
    Selu {
        alpha: f32,
        gamma: f32,
    },
    Celu {
        alpha: f32,
    },
    LeakyRelu {
        alpha: f32,
    },
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    ThresholdedRelu {
        alpha: f32,
    },
    /// `approximate = "tanh"` or the exact erf form.
    Gelu {
        tanh: bool,
    },
    Swish {
        alpha: f32,
    },
    SwiGlu {
        alpha: f32,
    },
    Shrink {
        bias: f32,
        lambd: f32,
    },
    /// Bounds given as attributes (before opset 11; inputs since).
    Clip {
        min: Option<f32>,
        max: Option<f32>,
    },
    /// C's fmod (the dividend's sign) or Python's (the divisor's).
    Mod {
        fmod: bool,
    },
    IsInf {
        negative: bool,
        positive: bool,
    },
    BitShift {
        left: bool,
    },
}

impl Elementwise {
    pub fn of(op: &str, a: &Attrs) -> Result<Option<Elementwise>> {
        let alpha = |default: f32| a.float("alpha", default);
        use Elementwise as E;
        Ok(Some(match op {
            "Elu" => E::Elu { alpha: alpha(1.0)? },
            "Selu" => E::Selu {
                alpha: alpha(1.673_263_2)?,
                gamma: a.float("gamma", 1.050_701)?,
            },
            "Celu" => E::Celu { alpha: alpha(1.0)? },
            "LeakyRelu" => E::LeakyRelu {
                alpha: alpha(0.01)?,
            },
            "HardSigmoid" => E::HardSigmoid {
                alpha: alpha(0.2)?,
                beta: a.float("beta", 0.5)?,
            },
            "ThresholdedRelu" => E::ThresholdedRelu { alpha: alpha(1.0)? },
            "Gelu" => E::Gelu {
                tanh: match a.string("approximate", "none")? {
                    "none" => false,
                    "tanh" => true,
                    other => bail!("unknown Gelu approximation '{other}' (none or tanh)"),
                },
            },
            "Swish" => E::Swish { alpha: alpha(1.0)? },
            "SwiGLU" => E::SwiGlu { alpha: alpha(1.0)? },
            "Shrink" => E::Shrink {
                bias: a.float("bias", 0.0)?,
                lambd: a.float("lambd", 0.5)?,
            },
            "Clip" => E::Clip {
                min: a.opt_float("min")?,
                max: a.opt_float("max")?,
            },
            "Mod" => E::Mod {
                fmod: a.int("fmod", 0)? != 0,
            },
            "IsInf" => E::IsInf {
                negative: a.int("detect_negative", 1)? != 0,
                positive: a.int("detect_positive", 1)? != 0,
            },
            "BitShift" => E::BitShift {
                left: match a.string("direction", "")? {
                    "LEFT" => true,
                    "RIGHT" => false,
                    d => bail!("BitShift direction must be LEFT or RIGHT, got '{d}'"),
                },
            },
            _ => return Ok(None),
        }))
    }

    /// [`Elementwise::of`] for an op known to take attributes.
    pub fn expect(op: &str, a: &Attrs) -> Result<Elementwise> {
        Elementwise::of(op, a)?
            .ok_or_else(|| Error::invalid(format!("{op} takes no elementwise parameters")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attr;

    fn attrs(list: &[(&str, Attr)]) -> Attrs {
        let mut a = Attrs::default();
        for (name, value) in list {
            a.insert(*name, value.clone());
        }
        a
    }

    #[test]
    fn defaults_follow_the_onnx_spec() {
        let none = Attrs::default();
        assert_eq!(
            Gemm::of(&none).unwrap(),
            Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: false
            }
        );
        assert_eq!(transpose_perm(&none, 3).unwrap(), [2, 1, 0]);
        let at = Attention::of(&none).unwrap();
        assert_eq!(
            (at.left_window, at.right_window, at.is_causal),
            (None, None, false)
        );
        assert!((at.scale_for(16) - 0.25).abs() < 1e-12);
        let lrn = Lrn::of(&attrs(&[("size", Attr::Int(4))])).unwrap();
        assert_eq!(
            (lrn.alpha, lrn.beta, lrn.bias, lrn.window()),
            (1e-4, 0.75, 1.0, (1, 1))
        );
    }

    #[test]
    fn invalid_parameters_are_errors_not_panics_later() {
        let e = |r: Result<()>| r.unwrap_err().to_string();
        let perm = attrs(&[("perm", Attr::Ints(vec![0, 0]))]);
        assert!(e(transpose_perm(&perm, 2).map(drop)).contains("repeated"));
        assert!(e(transpose_perm(&perm, 3).map(drop)).contains("does not match rank 3"));
        assert!(e(Lrn::of(&Attrs::default()).map(drop)).contains("positive 'size'"));
        let pool = attrs(&[("kernel_shape", Attr::Ints(vec![2, 0]))]);
        assert!(e(Pool::of(&pool, 2).map(drop)).contains("positive sizes"));
        assert!(e(Pool::of(&pool, 3).map(drop)).contains("3 positive sizes"));
        assert!(e(Pool::of(&Attrs::default(), 2).map(drop)).contains("needs 'kernel_shape'"));
        let heads = attrs(&[("q_num_heads", Attr::Int(0))]);
        assert!(e(Attention::of(&heads).map(drop)).contains("must be positive"));
        assert!(
            e(Attention::of(&Attrs::default())
                .and_then(|a| a.heads_3d())
                .map(drop))
            .contains("needs q_num_heads")
        );
        let gelu = attrs(&[("approximate", Attr::String("fast".into()))]);
        assert!(e(Elementwise::of("Gelu", &gelu).map(drop)).contains("unknown Gelu"));
        assert!(
            e(Elementwise::of("BitShift", &Attrs::default()).map(drop)).contains("LEFT or RIGHT")
        );
        assert_eq!(Elementwise::of("Relu", &Attrs::default()).unwrap(), None);
        let mode = attrs(&[("qk_matmul_output_mode", Attr::Int(7))]);
        assert!(e(Attention::of(&mode).map(drop)).contains("0 to 3"));
    }
}
