//! Parameters of the resampling ops.

use crate::attr::Attrs;
use crate::error::Result;

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
