//! The op registry: every op wpc knows, defined once.
//!
//! An op is an [`OpDef`]: its name and domain, its reference semantics
//! (`eval`) and its shape/type inference (`infer`). Ops are grouped by family,
//! one module each; [`registry`] collects them. Adding an op means adding its
//! `OpDef` to its family's `OPS` table — nothing else changes: the
//! interpreter, shape inference, `wpc inspect` and the conformance runner all
//! find it here.

mod attention;
mod control;
mod elementwise;
pub mod fused;
mod infer;
mod matmul;
mod misc;
mod movement;
mod nn;
pub mod params;
pub mod quant;
mod reduce;
mod resize;
mod rnn;
mod signal;
pub mod symbolic;
pub mod util;

#[cfg(test)]
mod prop_tests;

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::attr::Attrs;
use crate::error::{Error, Result};
use crate::graph::{Graph, Model, Node, ValueType};
use crate::tensor::Tensor;

pub use infer::InferCtx;
pub(crate) use matmul::gemm_acc;
pub use movement::center_crop_pad_window;
pub use nn::Window;
pub use resize::{ResamplePass, resample_passes};

/// Evaluates an op on concrete inputs (the reference semantics).
pub type EvalFn = fn(&EvalCtx) -> Result<Vec<Tensor>>;
/// Infers output types from input types (and constant inputs, when known).
pub type InferFn = fn(&InferCtx) -> Result<Vec<ValueType>>;

/// One op's definition.
pub struct OpDef {
    pub name: &'static str,
    /// `""` for the default ONNX domain.
    pub domain: &'static str,
    pub eval: EvalFn,
    /// `None` when the op's output shapes depend on input values in ways
    /// inference does not model; such outputs stay unknown until folded.
    pub infer: Option<InferFn>,
    /// Inputs whose values steer the computation itself (axes, pads,
    /// slice bounds, an If's condition) or decide an output shape, and so
    /// must be known when compiling: a model input feeding one has to be
    /// frozen (`--freeze`). Kernels are specialized on these values.
    pub steering: &'static [usize],
    /// What kind of computation the op is, for passes and backends that
    /// treat whole kinds alike (fusion, aliasing).
    pub class: OpClass,
}

/// The kinds of op that passes and backends treat alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpClass {
    /// Anything else.
    Opaque,
    /// Each output element is a function of the inputs' elements at the
    /// same (broadcast) position, and the output shape is the inputs'
    /// broadcast shape: chains of these fuse into one kernel, and one can
    /// be the epilogue of the kernel producing its input.
    Pointwise,
    /// Output 0 is input 0's elements in the same order under another
    /// shape: a backend can alias the buffer instead of copying.
    View,
    /// Each output element is a sum of products over the inputs (MatMul,
    /// Gemm, Conv), computed in registers before it is stored: a
    /// pointwise tail of its result can run there, as the kernel's
    /// epilogue, instead of in a kernel of its own.
    Contraction,
}

impl OpDef {
    /// This op with `inputs` as its [`OpDef::steering`] inputs.
    pub fn steered_by(self, inputs: &'static [usize]) -> OpDef {
        OpDef {
            steering: inputs,
            ..self
        }
    }

    /// This op in `domain` instead of the default one.
    pub fn in_domain(self, domain: &'static str) -> OpDef {
        OpDef { domain, ..self }
    }

    /// This op as an [`OpClass::Pointwise`] one.
    pub fn pointwise(self) -> OpDef {
        OpDef {
            class: OpClass::Pointwise,
            ..self
        }
    }

    /// This op as an [`OpClass::View`] one.
    pub fn view(self) -> OpDef {
        OpDef {
            class: OpClass::View,
            ..self
        }
    }

    /// This op as an [`OpClass::Contraction`] one.
    pub fn contraction(self) -> OpDef {
        OpDef {
            class: OpClass::Contraction,
            ..self
        }
    }
}

/// The [`OpClass`] of `op` in `domain`; [`OpClass::Opaque`] for unknown ops.
pub fn class_of(domain: &str, op: &str) -> OpClass {
    lookup(domain, op).map_or(OpClass::Opaque, |d| d.class)
}

/// Whether input `index` of `op` (in `domain`) is one of its
/// [`OpDef::steering`] inputs; `false` for unknown ops.
pub fn is_steering_input(domain: &str, op: &str, index: usize) -> bool {
    lookup(domain, op).is_some_and(|d| d.steering.contains(&index))
}

/// Declares an [`OpDef`] of the default domain.
macro_rules! op {
    ($name:literal, $eval:expr) => {
        $crate::ops::OpDef {
            name: $name,
            domain: "",
            eval: $eval,
            infer: None,
            steering: &[],
            class: $crate::ops::OpClass::Opaque,
        }
    };
    ($name:literal, $eval:expr, $infer:expr) => {
        $crate::ops::OpDef {
            name: $name,
            domain: "",
            eval: $eval,
            infer: Some($infer),
            steering: &[],
            class: $crate::ops::OpClass::Opaque,
        }
    };
}
pub(crate) use op;

/// Every registered op, by name (each name may exist in several domains).
pub fn registry() -> &'static HashMap<&'static str, Vec<OpDef>> {
    static REGISTRY: OnceLock<HashMap<&'static str, Vec<OpDef>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let families = [
            elementwise::ops(),
            reduce::ops(),
            movement::ops(),
            matmul::ops(),
            nn::ops(),
            quant::ops(),
            control::ops(),
            misc::ops(),
            attention::ops(),
            resize::ops(),
            rnn::ops(),
            signal::ops(),
            fused::ops(),
        ];
        let mut map: HashMap<&'static str, Vec<OpDef>> = HashMap::new();
        for op in families.into_iter().flatten() {
            let defs = map.entry(op.name).or_default();
            assert!(
                defs.iter().all(|d| d.domain != op.domain),
                "op {} registered twice",
                op.name
            );
            defs.push(op);
        }
        map
    })
}

/// The definition of `node`'s op, if wpc supports it.
pub fn lookup(domain: &str, op: &str) -> Option<&'static OpDef> {
    let domain = if domain == "ai.onnx" { "" } else { domain };
    registry().get(op)?.iter().find(|d| d.domain == domain)
}

/// Names of every supported default-domain op, sorted.
pub fn supported_ops() -> Vec<&'static str> {
    let mut v: Vec<_> = registry()
        .values()
        .flatten()
        .filter(|d| d.domain.is_empty())
        .map(|d| d.name)
        .collect();
    v.sort_unstable();
    v
}

/// A node wpc cannot run, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedNode {
    pub node: String,
    pub op: String,
    pub domain: String,
}

/// Every node of `model` (subgraphs included) whose op is not registered.
pub fn unsupported_nodes(model: &Model) -> Vec<UnsupportedNode> {
    fn walk(g: &Graph, out: &mut Vec<UnsupportedNode>) {
        for id in g.node_ids() {
            let n = g.node(id);
            if lookup(&n.domain, &n.op).is_none() {
                out.push(UnsupportedNode {
                    node: n.name.clone(),
                    op: n.op.clone(),
                    domain: n.domain.clone(),
                });
            }
            for sub in n.attrs.subgraphs() {
                walk(sub, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&model.graph, &mut out);
    out
}

/// Fails with an error naming the first unsupported node, if any.
pub fn check_model(model: &Model) -> Result<()> {
    let bad = unsupported_nodes(model);
    match bad.first() {
        None => Ok(()),
        Some(u) => {
            let domain = if u.domain.is_empty() {
                String::new()
            } else {
                format!(" of domain '{}'", u.domain)
            };
            let more = if bad.len() > 1 {
                format!(" ({} more unsupported nodes)", bad.len() - 1)
            } else {
                String::new()
            };
            Err(
                Error::unsupported(format!("op {}{domain} is not supported{more}", u.op))
                    .within(Error::node_context(&u.node, &u.op)),
            )
        }
    }
}

/// Runs a subgraph for a control-flow op, with the caller's scope as its
/// outer scope.
pub trait SubgraphRunner {
    fn run(&self, graph: &Graph, inputs: Vec<Tensor>) -> Result<Vec<Tensor>>;
}

/// What an op's `eval` sees: the node, its inputs, the opset, and a way to
/// run subgraphs.
pub struct EvalCtx<'a> {
    pub node: &'a Node,
    pub inputs: Vec<Option<&'a Tensor>>,
    /// The default-domain opset version of the model.
    pub opset: u32,
    pub subgraphs: &'a dyn SubgraphRunner,
}

impl<'a> EvalCtx<'a> {
    pub fn attrs(&self) -> &'a Attrs {
        &self.node.attrs
    }

    /// Input `i`, which the op requires.
    pub fn input(&self, i: usize) -> Result<&'a Tensor> {
        self.opt_input(i)
            .ok_or_else(|| Error::invalid(format!("required input {i} is missing")))
    }

    /// Input `i`, when given.
    pub fn opt_input(&self, i: usize) -> Option<&'a Tensor> {
        self.inputs.get(i).copied().flatten()
    }

    /// How many input slots the node has (including omitted optional ones).
    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// How many outputs the node asks for.
    pub fn num_outputs(&self) -> usize {
        self.node.outputs.len()
    }

    /// True when output `i` is requested.
    pub fn wants_output(&self, i: usize) -> bool {
        self.node.outputs.get(i).is_some_and(Option::is_some)
    }

    /// An int list given as input `i`, or on older opsets as the attribute
    /// it replaced ([`params::replaced_attribute`]).
    pub fn ints_input(&self, i: usize) -> Result<Option<Vec<i64>>> {
        let given = self.opt_input(i).map(Tensor::to_i64s);
        params::ints_input(&self.node.op, self.attrs(), i, given)
    }
}

#[cfg(test)]
mod tests {
    use super::is_steering_input;

    #[test]
    fn steering_inputs_are_properties_of_the_op() {
        for (op, steering, data) in [
            ("Slice", &[1, 2, 3, 4][..], &[0][..]),
            ("Pad", &[1, 3], &[0, 2]),
            ("ReduceMean", &[1], &[0]),
            ("Reshape", &[1], &[0]),
            ("Range", &[0, 1, 2], &[]),
            ("If", &[0], &[]),
            ("Add", &[], &[0, 1]),
        ] {
            for &i in steering {
                assert!(is_steering_input("", op, i), "{op} input {i}");
            }
            for &i in data {
                assert!(!is_steering_input("", op, i), "{op} input {i}");
            }
        }
        assert!(!is_steering_input("", "NoSuchOp", 0));
    }
}
