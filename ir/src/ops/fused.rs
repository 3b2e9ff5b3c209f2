//! Ops that only fusion creates, in wpc's own domain ([`DOMAIN`]); no
//! model file carries them.
//!
//! `FusedElementwise` is a chain (a DAG) of [`super::OpClass::Pointwise`]
//! nodes computed as one: its `body` attribute is that subgraph, with one
//! graph input per node input (in order) and one output, and scalar
//! constants of its own. Its meaning is the body's, which the reference
//! interpreter runs as it is; a backend generates one kernel that
//! computes every body node per output element, so the intermediates
//! never reach memory.

use super::{EvalCtx, InferCtx, OpDef};
use crate::attr::Attrs;
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, ValueType};

/// The domain of the ops wpc's passes create.
pub const DOMAIN: &str = "wpc";

/// The op name of a fused chain of pointwise ops.
pub const FUSED_ELEMENTWISE: &str = "FusedElementwise";

/// The attribute holding a fused node's body.
pub const BODY: &str = "body";

pub(super) fn ops() -> Vec<OpDef> {
    vec![OpDef {
        name: FUSED_ELEMENTWISE,
        domain: DOMAIN,
        eval: eval_fused,
        infer: Some(infer_fused),
        steering: &[],
        class: super::OpClass::Opaque,
    }]
}

/// Whether `node` is a fused pointwise chain.
pub fn is_fused_elementwise(node: &Node) -> bool {
    node.domain == DOMAIN && node.op == FUSED_ELEMENTWISE
}

/// The body of a fused node, checked against the node: one body input
/// per node input and exactly one output.
pub fn body(node: &Node) -> Result<&Graph> {
    body_of(&node.attrs, node.inputs.len())
}

fn body_of(attrs: &Attrs, inputs: usize) -> Result<&Graph> {
    let body = attrs.graph(BODY)?;
    if body.inputs.len() != inputs || body.outputs.len() != 1 {
        return Err(Error::invalid(format!(
            "a fused body takes one input per node input and gives one output; this one takes {} (the node has {inputs}) and gives {}",
            body.inputs.len(),
            body.outputs.len()
        )));
    }
    Ok(body)
}

fn eval_fused(c: &EvalCtx) -> Result<Vec<crate::tensor::Tensor>> {
    let body = body(c.node)?;
    let inputs = (0..c.num_inputs())
        .map(|i| c.input(i).cloned())
        .collect::<Result<Vec<_>>>()?;
    c.subgraphs.run(body, inputs)
}

/// The body's output type, which fusion copied from the value it replaced.
fn infer_fused(c: &InferCtx) -> Result<Vec<ValueType>> {
    let body = body(c.node)?;
    Ok(vec![body.value(body.outputs[0]).ty.clone()])
}
