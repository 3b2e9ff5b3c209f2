//! Parameters of the elementwise ops that take attributes.

use crate::attr::Attrs;
use crate::error::{Error, Result};

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
