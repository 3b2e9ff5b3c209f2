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
//!
//! `FusedEpilogue` is a [`super::OpClass::Contraction`] (the anchor: a
//! MatMul, Gemm or Conv) followed by pointwise nodes that read its result
//! (the tail: a bias Add, an activation, a residual Add), laid out the
//! same way: the body is the anchor and its tail, the anchor first. A
//! backend computes the tail in the anchor kernel's store, on the value
//! still in registers ([`epilogue`] splits the body for it).

use super::{EvalCtx, InferCtx, OpDef};
use crate::attr::Attrs;
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, NodeId, ValueId, ValueType};

/// The domain of the ops wpc's passes create.
pub const DOMAIN: &str = "wpc";

/// The op name of a fused chain of pointwise ops.
pub const FUSED_ELEMENTWISE: &str = "FusedElementwise";

/// The op name of a contraction with a fused pointwise tail.
pub const FUSED_EPILOGUE: &str = "FusedEpilogue";

/// The attribute holding a fused node's body.
pub const BODY: &str = "body";

pub(super) fn ops() -> Vec<OpDef> {
    [FUSED_ELEMENTWISE, FUSED_EPILOGUE]
        .into_iter()
        .map(|name| OpDef {
            name,
            domain: DOMAIN,
            eval: eval_fused,
            infer: Some(infer_fused),
            steering: &[],
            class: super::OpClass::Opaque,
        })
        .collect()
}

/// Whether `node` is a fused pointwise chain.
pub fn is_fused_elementwise(node: &Node) -> bool {
    node.domain == DOMAIN && node.op == FUSED_ELEMENTWISE
}

/// Whether `node` is a contraction with a fused tail.
pub fn is_fused_epilogue(node: &Node) -> bool {
    node.domain == DOMAIN && node.op == FUSED_EPILOGUE
}

/// A `FusedEpilogue` node taken apart for a backend.
#[derive(Debug)]
pub struct Epilogue<'a> {
    pub body: &'a Graph,
    /// The anchor as a node of the graph the fused node sits in: it reads
    /// the fused node's inputs and writes the fused node's output, so a
    /// backend lowers it as it would the plain op, applying the tail
    /// before each store.
    pub anchor: Node,
    /// For each of the anchor's input slots, the fused-node input it is
    /// (`None` where an optional input is absent).
    pub anchor_inputs: Vec<Option<usize>>,
    /// The anchor's result, as a body value: what the tail reads where
    /// the plain graph read the anchor's output.
    pub result: ValueId,
    /// The tail's body nodes in order; the last writes the body output.
    pub tail: Vec<NodeId>,
}

/// Splits a `FusedEpilogue` node into its anchor and tail, checking the
/// layout [`FUSED_EPILOGUE`] promises: the first body node is a
/// contraction reading only body inputs, and every later node is
/// pointwise.
pub fn epilogue(node: &Node) -> Result<Epilogue<'_>> {
    let body = body(node)?;
    let order = body.topo_order()?;
    let bad =
        |why: &str| Error::invalid(format!("a FusedEpilogue body {why}")).within(node.context());
    let (&first, tail) = order.split_first().ok_or_else(|| bad("is empty"))?;
    let a = body.node(first);
    if super::class_of(&a.domain, &a.op) != super::OpClass::Contraction {
        return Err(bad(&format!("starts with {}, not a contraction", a.op)));
    }
    if let Some(&n) = tail.iter().find(|&&n| {
        let t = body.node(n);
        super::class_of(&t.domain, &t.op) != super::OpClass::Pointwise
    }) {
        return Err(bad(&format!("has {} in its tail", body.node(n).op)));
    }
    let anchor_inputs = a
        .inputs
        .iter()
        .map(|v| match v {
            None => Ok(None),
            Some(v) => match body.inputs.iter().position(|b| b == v) {
                Some(j) => Ok(Some(j)),
                None => Err(bad("feeds its anchor a value that is not a body input")),
            },
        })
        .collect::<Result<Vec<_>>>()?;
    let result = a
        .outputs
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| bad("has an anchor without an output"))?;
    let anchor = Node {
        inputs: anchor_inputs
            .iter()
            .map(|j| j.and_then(|j| node.inputs[j]))
            .collect(),
        outputs: vec![node.outputs.first().copied().flatten()],
        name: node.name.clone(),
        ..a.clone()
    };
    Ok(Epilogue {
        body,
        anchor,
        anchor_inputs,
        result,
        tail: tail.to_vec(),
    })
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
