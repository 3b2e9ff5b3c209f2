//! Parameters of `TopK`, `NonMaxSuppression`, the cumulative ops,
//! `EyeLike` and the losses.

use crate::attr::Attrs;
use crate::error::Result;
use crate::tensor::Tensor;

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

/// `NonMaxSuppression`'s attribute and scalar inputs, with the defaults
/// of an input left out or empty.
#[derive(Clone, Debug, PartialEq)]
pub struct NonMaxSuppression {
    /// Boxes are (x centre, y centre, width, height), else corners
    /// (y1, x1, y2, x2) in any order.
    pub center_point_box: bool,
    /// Boxes kept per batch and class at most (default 0: none).
    pub per_class: u64,
    /// A box overlapping a kept one by more than this is dropped (default 0).
    pub iou_threshold: f64,
    /// Only boxes scoring above this are considered, where given.
    pub score_threshold: Option<f64>,
}

impl NonMaxSuppression {
    /// From the attributes and inputs 2 to 4 (`None` where left out).
    pub fn of(
        a: &Attrs,
        per_class: Option<&Tensor>,
        iou_threshold: Option<&Tensor>,
        score_threshold: Option<&Tensor>,
    ) -> Result<NonMaxSuppression> {
        fn given(t: Option<&Tensor>) -> Option<&Tensor> {
            t.filter(|t| !t.is_empty())
        }
        Ok(NonMaxSuppression {
            center_point_box: a.int("center_point_box", 0)? != 0,
            per_class: given(per_class).map_or(0, |t| t.get_i64(0).max(0) as u64),
            iou_threshold: given(iou_threshold).map_or(0.0, |t| t.get_f64(0)),
            score_threshold: given(score_threshold).map(|t| t.get_f64(0)),
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
