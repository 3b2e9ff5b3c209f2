//! The e-graph's language and what it knows about each class.
//!
//! Each graph node the rewrite pass looks into becomes one [`Expr`]
//! over the classes of its inputs; every other value (a model input, a
//! constant, the output of an op the rules never look through) is a
//! [`Expr::Value`] leaf. Numbers a rule needs (the reciprocal of a
//! divisor, the 2 of a square, an op's float attributes) are
//! [`Expr::Num`]s: rules match them, extraction never makes a tensor of
//! one.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use egg::{DidMerge, Id, define_language};
use wpc_ir::{DType, Dim, ValueId, ValueType};

define_language! {
    /// One e-node. The ops the pass reads from graphs, then the ops its
    /// rules recognize (with their ONNX meaning and an ONNX op each),
    /// then the parameters those take.
    pub enum Expr {
        "Add" = Add([Id; 2]),
        "Sub" = Sub([Id; 2]),
        "Mul" = Mul([Id; 2]),
        "Div" = Div([Id; 2]),
        "Pow" = Pow([Id; 2]),
        "Sqrt" = Sqrt([Id; 1]),
        "Reciprocal" = Reciprocal([Id; 1]),
        "Erf" = Erf([Id; 1]),
        "Tanh" = Tanh([Id; 1]),
        "Sigmoid" = Sigmoid([Id; 1]),
        // `Clip(x, min, max)` with both bounds given as inputs (opset 11+).
        "Clip" = Clip([Id; 3]),
        // `ReduceMean` over the last axis, keeping it.
        "MeanLast" = MeanLast([Id; 1]),
        "MatMul" = MatMul([Id; 2]),
        // `Softmax` over the last axis.
        "SoftmaxLast" = SoftmaxLast([Id; 1]),
        "IsNaN" = IsNaN([Id; 1]),
        "Where" = Where([Id; 3]),
        // `Softmax` over the last axis with rows that come out NaN (every
        // key masked by -inf) as zeros: what torch exports for
        // `scaled_dot_product_attention`, and what `Attention` computes.
        "GuardedSoftmax" = GuardedSoftmax([Id; 1]),
        // `Transpose(x)` by a permutation ([`Perm`]).
        "Transpose" = Transpose([Id; 2]),
        // `Reshape(x, shape)` by a constant shape.
        "Reshape" = Reshape([Id; 2]),
        // Views the attention rules match through, never extracted:
        // `x: [B, S, H·D]` as `[B, H, S, D]` (H a number), the same with
        // the last two axes swapped (`Kᵀ`), and `y: [B, H, S, D]` back as
        // `[B, S, H·D]`.
        "Heads" = Heads([Id; 2]),
        "HeadsT" = HeadsT([Id; 2]),
        "MergeHeads" = MergeHeads([Id; 1]),
        // `HardSigmoid(x)` with its `alpha` and `beta` as numbers.
        "HardSigmoid" = HardSigmoid([Id; 3]),
        "HardSwish" = HardSwish([Id; 1]),
        // `Gelu(x)`, exact (`approximate = "none"`).
        "Gelu" = Gelu([Id; 1]),
        // `Gelu(x)` with `approximate = "tanh"`.
        "GeluTanh" = GeluTanh([Id; 1]),
        // `Swish(x)` with `alpha = 1`: SiLU.
        "Swish" = Swish([Id; 1]),
        // `SwiGLU(a, b)` = `Swish(a) · b`.
        "SwiGLU" = SwiGlu([Id; 2]),
        // `LayerNormalization(x, scale, bias)` over the last axis, with
        // its epsilon last.
        "LayerNorm" = LayerNorm([Id; 4]),
        // `RMSNormalization(x, scale)` over the last axis, epsilon last.
        "RmsNorm" = RmsNorm([Id; 3]),
        // `Attention(q, k, v, mask)` on 3-D `[B, S, H·D]` inputs, then
        // the scale and the head count H.
        "Attention" = Attention([Id; 6]),
        // A norm's scale when the model has none: ones.
        "ones" = Ones,
        // An optional input the model does not give (a norm's bias, an
        // attention mask).
        "none" = Absent,
        Value(Leaf),
        Perm(Perm),
        Num(Number),
    }
}

/// A graph value as an e-graph leaf, written `%7` in patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Leaf(pub ValueId);

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0.index())
    }
}

impl FromStr for Leaf {
    type Err = String;
    fn from_str(s: &str) -> Result<Leaf, String> {
        let index = s.strip_prefix('%').ok_or("a leaf is written %N")?;
        let index = index.parse::<usize>().map_err(|e| e.to_string())?;
        Ok(Leaf(ValueId::from_index(index)))
    }
}

/// A permutation of axes, written `p0.2.1.3` in patterns.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Perm(pub Vec<usize>);

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let axes: Vec<String> = self.0.iter().map(usize::to_string).collect();
        write!(f, "p{}", axes.join("."))
    }
}

impl FromStr for Perm {
    type Err = String;
    fn from_str(s: &str) -> Result<Perm, String> {
        let axes = s
            .strip_prefix('p')
            .ok_or("a permutation is written pA.B.C")?;
        axes.split('.')
            .map(|a| a.parse::<usize>().map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()
            .map(Perm)
    }
}

/// A number, kept as its bits so e-nodes can be hashed and compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Number(u64);

impl Number {
    pub fn new(v: f64) -> Number {
        Number(v.to_bits())
    }

    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl FromStr for Number {
    type Err = std::num::ParseFloatError;
    fn from_str(s: &str) -> Result<Number, Self::Err> {
        s.parse::<f64>().map(Number::new)
    }
}

impl Expr {
    /// The ONNX op this e-node is emitted as, where it is one the rules
    /// introduce; `None` for the ops read from the graph, which keep
    /// their nodes.
    pub fn recognized_op(&self) -> Option<&'static str> {
        Some(match self {
            Expr::HardSigmoid(_) => "HardSigmoid",
            Expr::HardSwish(_) => "HardSwish",
            Expr::Gelu(_) | Expr::GeluTanh(_) => "Gelu",
            Expr::Swish(_) => "Swish",
            Expr::SwiGlu(_) => "SwiGLU",
            Expr::LayerNorm(_) => "LayerNormalization",
            Expr::RmsNorm(_) => "RMSNormalization",
            Expr::Attention(_) => "Attention",
            _ => return None,
        })
    }

    /// The children that are tensors the op reads, as opposed to its
    /// parameters (numbers, or a norm's scale and bias, which are
    /// constants).
    pub fn tensor_children(&self) -> &[Id] {
        match self {
            Expr::HardSigmoid([x, ..]) => std::slice::from_ref(x),
            Expr::LayerNorm([x, ..]) | Expr::RmsNorm([x, ..]) => std::slice::from_ref(x),
            Expr::Attention(children) => &children[..4],
            Expr::Transpose([x, _]) | Expr::Reshape([x, _]) => std::slice::from_ref(x),
            Expr::Heads([x, _]) | Expr::HeadsT([x, _]) => std::slice::from_ref(x),
            Expr::Value(_) | Expr::Num(_) | Expr::Perm(_) | Expr::Ones | Expr::Absent => &[],
            other => egg::Language::children(other),
        }
    }
}

/// What the e-graph knows about a class.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// The one number every element of the class's tensor holds, where it
    /// is a constant with one element (of any rank: rules check with
    /// `fits` that broadcasting it changes no shape) or a [`Expr::Num`].
    pub scalar: Option<f64>,
    /// The type of the graph value the class stands for, where it stands
    /// for one.
    pub ty: Option<ValueType>,
    /// Whether the class is a constant of the graph.
    pub constant: bool,
}

impl Facts {
    /// The class's dtype and shape, where every dim is known: a size, or
    /// one computed from the model's symbols (rules compare dims, so a
    /// dynamic `seq` matches itself).
    pub fn known_type(&self) -> Option<(DType, Vec<Dim>)> {
        let ty = self.ty.as_ref()?;
        let dims = ty.shape.dims()?;
        if dims.contains(&Dim::Unknown) {
            return None;
        }
        Some((ty.dtype?, dims.to_vec()))
    }

    /// Its rank, where known (a number's is 0).
    pub fn rank(&self) -> Option<usize> {
        match &self.ty {
            Some(ty) => ty.shape.rank(),
            None => self.scalar.map(|_| 0),
        }
    }
}

/// The e-graph analysis: facts about the graph's leaves, known before
/// the e-graph is built, and [`Facts`] merged as classes merge.
#[derive(Default)]
pub struct GraphFacts {
    pub leaves: HashMap<ValueId, Facts>,
}

pub type EGraph = egg::EGraph<Expr, GraphFacts>;

impl egg::Analysis<Expr> for GraphFacts {
    type Data = Facts;

    fn make(egraph: &mut EGraph, enode: &Expr, _: Id) -> Facts {
        let number = |v: f64| Facts {
            scalar: Some(v),
            ..Facts::default()
        };
        match enode {
            Expr::Value(Leaf(v)) => egraph.analysis.leaves.get(v).cloned().unwrap_or_default(),
            Expr::Num(n) => number(n.get()),
            // A product of numbers of rank 0 is one too: `Q·s · Kᵀ·s`
            // scales the scores by s².
            Expr::Mul([a, b]) => {
                let rank0 = |c: &Id| {
                    let f = &egraph[*c].data;
                    f.scalar.is_some() && f.rank() == Some(0)
                };
                match (egraph[*a].data.scalar, egraph[*b].data.scalar) {
                    (Some(x), Some(y)) if rank0(a) && rank0(b) => number(x * y),
                    _ => Facts::default(),
                }
            }
            _ => Facts::default(),
        }
    }

    fn merge(&mut self, a: &mut Facts, b: Facts) -> DidMerge {
        // Two numbers of one class differ at most in rounding (products
        // of the same numbers grouped differently): either will do.
        let before = a.clone();
        a.scalar = a.scalar.or(b.scalar);
        a.ty = a.ty.take().or_else(|| b.ty.clone());
        a.constant |= b.constant;
        DidMerge(*a != before, *a != b)
    }
}
