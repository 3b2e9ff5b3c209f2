//! Parameters of the shape and data-movement ops.

use crate::attr::Attrs;
use crate::error::Result;
use crate::ops::util::norm_axes;
use crate::sym::Expr;

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

/// `Trilu`: keep the upper (else the lower) triangle.
pub fn trilu_upper(a: &Attrs) -> Result<bool> {
    Ok(a.int("upper", 1)? != 0)
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

impl Pad {
    /// The fill value of a constant pad: input 2 when the node has it
    /// (`Some`, holding its value if known; empty meaning 0), else the
    /// attribute of older opsets. A value known only at run time is
    /// refused: kernels bake it in.
    pub fn fill(&self, input: Option<Option<&crate::Tensor>>) -> Result<f64> {
        match input {
            Some(Some(t)) if !t.is_empty() => t.first_f64(),
            Some(Some(_)) => Ok(0.0),
            Some(None) => Err(crate::Error::unsupported(
                "Pad with a value that is not a constant",
            )),
            None => Ok(f64::from(self.value)),
        }
    }
}

/// Where `Pad` puts its input: per axis the elements added before and
/// after it (negative crops), and the output shape. The interpreter and
/// every backend read this one view, and ask [`PadView::source`] which
/// input element an output element copies.
#[derive(Clone, Debug, PartialEq)]
pub struct PadView {
    pub mode: PadMode,
    pub before: Vec<i64>,
    pub after: Vec<i64>,
    pub input: Vec<usize>,
    pub shape: Vec<usize>,
}

impl PadView {
    /// The view of a Pad node (attributes `a`) over an input of `shape`,
    /// its pads and axes (inputs 1 and 3) read by `ints`.
    pub fn of_node(
        a: &Attrs,
        shape: &[usize],
        ints: impl Fn(usize) -> Result<Option<Vec<i64>>>,
    ) -> Result<PadView> {
        let rank = shape.len();
        let mode = Pad::of(a)?.mode;
        let pads = ints(1)?.ok_or_else(|| crate::Error::invalid("Pad needs pads"))?;
        let axes = match ints(3)? {
            Some(a) => norm_axes(&a, rank)?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            crate::bail!("Pad has {} pads for {} axes", pads.len(), axes.len());
        }
        let (mut before, mut after) = (vec![0i64; rank], vec![0i64; rank]);
        for (k, &a) in axes.iter().enumerate() {
            before[a] = pads[k];
            after[a] = pads[k + axes.len()];
        }
        let shape_out = (0..rank)
            .map(|i| {
                let d = shape[i] as i64 + before[i] + after[i];
                usize::try_from(d)
                    .map_err(|_| crate::Error::invalid(format!("Pad makes axis {i} negative")))
            })
            .collect::<Result<Vec<usize>>>()?;
        let fills = shape_out.iter().all(|&d| d > 0);
        if mode != PadMode::Constant && fills && shape.contains(&0) {
            crate::bail!("Pad mode '{}' cannot pad an empty axis", mode.name());
        }
        Ok(PadView {
            mode,
            before,
            after,
            input: shape.to_vec(),
            shape: shape_out,
        })
    }

    /// The input coordinate that output coordinate `o` of `axis` copies,
    /// or `None` where a constant pad puts its value.
    pub fn source(&self, axis: usize, o: usize) -> Option<usize> {
        let d = self.input[axis] as i64;
        let p = o as i64 - self.before[axis];
        if (0..d).contains(&p) {
            return Some(p as usize);
        }
        let q = match self.mode {
            PadMode::Constant => return None,
            PadMode::Edge => p.clamp(0, d - 1),
            PadMode::Reflect if d == 1 => 0,
            PadMode::Reflect => {
                let period = 2 * (d - 1);
                let m = p.rem_euclid(period);
                if m < d { m } else { period - m }
            }
            PadMode::Wrap => p.rem_euclid(d),
        };
        Some(q as usize)
    }

    /// Whether `axis` is copied unchanged (nothing added or cropped).
    pub fn unpadded(&self, axis: usize) -> bool {
        self.before[axis] == 0 && self.after[axis] == 0
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

/// What `Slice` reads from a tensor: the output's shape, and per output
/// dim the signed element stride into the input (a negative step walks
/// backwards), from element `base`. The interpreter and every backend's
/// Slice read this one view, so ONNX's clamping rules live here only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceView {
    pub shape: Vec<usize>,
    pub strides: Vec<isize>,
    pub base: isize,
}

impl SliceView {
    /// The view of a Slice node over an input of `shape`, its starts,
    /// ends, axes and steps (inputs 1 to 4) read by `ints`.
    pub fn of_node(
        shape: &[usize],
        ints: impl Fn(usize) -> Result<Option<Vec<i64>>>,
    ) -> Result<SliceView> {
        let need = |i: usize, what: &str| {
            ints(i)?.ok_or_else(|| crate::Error::invalid(format!("Slice needs {what}")))
        };
        let (starts, ends) = (need(1, "starts")?, need(2, "ends")?);
        let (axes, steps) = (ints(3)?, ints(4)?);
        SliceView::of(shape, &starts, &ends, axes.as_deref(), steps.as_deref())
    }

    /// The view of `starts..ends` by `steps` (default 1) along `axes`
    /// (default the first `starts.len()`) of a tensor of `shape`.
    pub fn of(
        shape: &[usize],
        starts: &[i64],
        ends: &[i64],
        axes: Option<&[i64]>,
        steps: Option<&[i64]>,
    ) -> Result<SliceView> {
        let rank = shape.len();
        let axes = match axes {
            Some(a) => norm_axes(a, rank)?,
            None if starts.len() <= rank => (0..starts.len()).collect(),
            None => crate::bail!(
                "Slice has {} starts for an input of rank {rank}",
                starts.len()
            ),
        };
        let steps = steps.map_or_else(|| vec![1; starts.len()], <[i64]>::to_vec);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            crate::bail!("Slice starts, ends, axes and steps differ in length");
        }
        let st: Vec<isize> = crate::tensor::strides(shape)
            .into_iter()
            .map(|s| s as isize)
            .collect();
        let mut view = SliceView {
            shape: shape.to_vec(),
            strides: st.clone(),
            base: 0,
        };
        for (k, &ax) in axes.iter().enumerate() {
            if steps[k] == 0 {
                crate::bail!("Slice step cannot be 0");
            }
            let (s, step, len) = slice_range(starts[k], ends[k], steps[k], shape[ax]);
            view.shape[ax] = len;
            if len > 0 {
                view.base += s as isize * st[ax];
            }
            view.strides[ax] = st[ax] * step as isize;
        }
        Ok(view)
    }
}

/// Row-major element strides of `dims`, sizes that may be symbolic.
pub fn row_major(dims: &[Expr]) -> Vec<Expr> {
    let mut strides = vec![Expr::constant(1); dims.len()];
    for d in (0..dims.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1].mul(&dims[d + 1]);
    }
    strides
}

/// Per dim of `out`, the element stride of a tensor of `dims` that
/// broadcasts to it (0 along the dims it has size 1 or lacks). A dim of
/// symbolic size broadcasts only against itself: whether it is 1 is
/// decided at run time, which a compiled stride cannot follow.
pub fn broadcast_row_major(dims: &[Expr], out: &[Expr]) -> Result<Vec<Expr>> {
    let own = row_major(dims);
    let off = out.len() - dims.len();
    (0..out.len())
        .map(|i| {
            if i < off || dims[i - off].as_const() == Some(1) {
                Ok(Expr::constant(0))
            } else if dims[i - off] == out[i] || dims[i - off].as_const().is_some() {
                Ok(own[i - off].clone())
            } else {
                Err(crate::Error::unsupported(format!(
                    "broadcasting a dim of dynamic size {} against {}",
                    dims[i - off],
                    out[i]
                )))
            }
        })
        .collect()
}

/// What `Slice` reads when sizes may be symbolic: from element `base`,
/// per input dim the element stride (the row-major stride times the
/// step). Starts may be sizes (a constant, or an expression of dims that
/// the dims' ranges prove never negative: one that may be is refused,
/// as a kernel could not tell at compile time whether it counts from the
/// end); a negative constant counts from the end, and a start is clamped
/// to its axis as ONNX clamps it. The output's dims (from shape inference)
/// say how far each axis goes. Forward steps only.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceStrides {
    pub base: Expr,
    pub strides: Vec<Expr>,
}

impl SliceStrides {
    /// The strides of a Slice node over an input of `dims`: its starts
    /// (input 1) as sizes, `None` where they are known only at run time,
    /// and its axes and steps (inputs 3 and 4) read by `ints`; `range`
    /// gives each dim's (least, most).
    pub fn of_node(
        dims: &[Expr],
        starts: Option<Vec<Expr>>,
        ints: impl Fn(usize) -> Result<Option<Vec<i64>>>,
        range: &dyn Fn(&str) -> Option<(i64, i64)>,
    ) -> Result<SliceStrides> {
        let starts = starts
            .ok_or_else(|| crate::Error::unsupported("Slice with starts known only at run time"))?;
        let steps = ints(4)?;
        SliceStrides::of(dims, &starts, ints(3)?.as_deref(), steps.as_deref(), range)
    }

    pub fn of(
        dims: &[Expr],
        starts: &[Expr],
        axes: Option<&[i64]>,
        steps: Option<&[i64]>,
        range: &dyn Fn(&str) -> Option<(i64, i64)>,
    ) -> Result<SliceStrides> {
        let axes = match axes {
            Some(a) => norm_axes(a, dims.len())?,
            None => (0..starts.len()).collect(),
        };
        let steps = steps.map_or_else(|| vec![1; starts.len()], <[i64]>::to_vec);
        if axes.len() != starts.len() || steps.len() != starts.len() {
            bail!("Slice starts, axes and steps differ in length");
        }
        let row = row_major(dims);
        let mut strides = row.clone();
        let mut base = Expr::constant(0);
        for (k, &ax) in axes.iter().enumerate() {
            if steps[k] <= 0 {
                return Err(crate::Error::unsupported(
                    "Slice with a backward step over a dynamic size",
                ));
            }
            let d = &dims[ax];
            let start = match starts[k].as_const() {
                Some(s) if s < 0 => d.add(&Expr::constant(s)).max_of(&Expr::constant(0)),
                Some(_) => starts[k].min_of(d),
                None if starts[k].bounds(range).is_some_and(|(least, _)| least >= 0) => {
                    starts[k].min_of(d)
                }
                None => {
                    return Err(crate::Error::unsupported(format!(
                        "Slice with a start computed from sizes ({}) that may be negative",
                        starts[k]
                    )));
                }
            };
            base = base.add(&start.mul(&row[ax]));
            strides[ax] = row[ax].scale(steps[k]);
        }
        Ok(SliceStrides { base, strides })
    }
}

/// The length of one sliced axis whose size `dim`, start or end is
/// symbolic, by [`slice_range`]'s rules (forward steps only: `None` for a
/// backward one). The clamps stay `min`/`max` until the dims' ranges
/// decide them.
pub fn slice_len_symbolic(start: &Expr, end: &Expr, step: i64, dim: &Expr) -> Option<Expr> {
    if step <= 0 {
        return None;
    }
    let fix = |v: &Expr| match v.as_const() {
        Some(c) if c < 0 => dim.add(&Expr::constant(c)),
        _ => v.clone(),
    };
    let clamp = |v: Expr| v.min_of(dim).max_of(&Expr::constant(0));
    let (s, e) = (clamp(fix(start)), clamp(fix(end)));
    Some(
        e.sub(&s)
            .add(&Expr::constant(step - 1))
            .floor_div(&Expr::constant(step))
            .max_of(&Expr::constant(0)),
    )
}

/// The (start, step, length) of one sliced axis, with ONNX's clamping rules.
fn slice_range(start: i64, end: i64, step: i64, dim: usize) -> (i64, i64, usize) {
    // Nothing to select (and no index to clamp a backward start to).
    if dim == 0 {
        return (0, step, 0);
    }
    let d = dim as i64;
    let fix = |v: i64| if v < 0 { v + d } else { v };
    let (s, e) = if step > 0 {
        (fix(start).clamp(0, d), fix(end).clamp(0, d))
    } else {
        (fix(start).clamp(0, d - 1), fix(end).clamp(-1, d - 1))
    };
    let len = if step > 0 {
        (e - s + step - 1) / step
    } else {
        (s - e + (-step) - 1) / (-step)
    };
    (s, step, len.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::{SliceStrides, SliceView};
    use crate::sym::Expr;

    #[test]
    fn a_computed_start_is_taken_only_where_it_cannot_be_negative() {
        let dims = [Expr::sym("s"), Expr::constant(8)];
        let range = |d: &str| (d == "k" || d == "s").then_some((1, 16));
        // x[k:] over the sequence, k a dim: from row k.
        let k = Expr::sym("k");
        let v =
            SliceStrides::of(&dims, std::slice::from_ref(&k), Some(&[0]), None, &range).unwrap();
        assert_eq!(v.base, k.min_of(&dims[0]).scale(8));
        assert_eq!(v.strides, vec![Expr::constant(8), Expr::constant(1)]);
        // x[-k:]: whether it counts from the end is decided at run time.
        let e = SliceStrides::of(&dims, &[k.scale(-1)], Some(&[0]), None, &range).unwrap_err();
        assert!(e.to_string().contains("may be negative"), "{e}");
        // A negative constant counts from the end.
        let v = SliceStrides::of(&dims, &[Expr::constant(-2)], Some(&[0]), None, &range).unwrap();
        let from_end = dims[0].add(&Expr::constant(-2)).max_of(&Expr::constant(0));
        assert_eq!(v.base, from_end.scale(8));
    }

    #[test]
    fn slices_clamp_as_onnx_says_even_over_an_empty_axis() {
        // Backwards from the last element, past the front.
        let v = SliceView::of(&[5, 3], &[-1], &[-10], Some(&[0]), Some(&[-2])).unwrap();
        assert_eq!((v.shape, v.strides, v.base), (vec![3, 3], vec![-6, 1], 12));
        // Forwards with bounds past either end.
        let v = SliceView::of(&[5, 3], &[-9, 1], &[9, 3], None, None).unwrap();
        assert_eq!((v.shape, v.strides, v.base), (vec![5, 2], vec![3, 1], 1));
        // An empty axis, walked either way, selects nothing.
        for step in [1, -1] {
            let v = SliceView::of(&[0, 3], &[-1], &[-10], Some(&[0]), Some(&[step])).unwrap();
            assert_eq!(v.shape, vec![0, 3]);
        }
    }
}
