//! Parameters of the shape and data-movement ops.

use crate::attr::Attrs;
use crate::error::Result;
use crate::ops::util::norm_axes;

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

/// `Shape`'s slice of the dims, [start, end) for an input of `rank`
/// (negative bounds count from the end; both are clamped).
pub fn shape_range(a: &Attrs, rank: usize) -> Result<(usize, usize)> {
    let fix = |v: i64| (if v < 0 { v + rank as i64 } else { v }).clamp(0, rank as i64) as usize;
    let start = fix(a.int("start", 0)?);
    let end = fix(a.int("end", rank as i64)?);
    Ok((start, end.max(start)))
}
