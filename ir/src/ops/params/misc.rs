//! Parameters of `TopK`, the cumulative ops, `EyeLike` and the losses.

use crate::attr::Attrs;
use crate::error::Result;

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

/// `EyeLike`'s diagonal: 0 the main one, positive above, negative below.
pub fn eye_like_diagonal(a: &Attrs) -> Result<i64> {
    a.int("k", 0)
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
