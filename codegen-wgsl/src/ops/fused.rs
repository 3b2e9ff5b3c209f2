//! `FusedElementwise`: a chain of pointwise ops in one kernel. Each body
//! node becomes a WGSL function built from the same expression as its
//! stand-alone kernel ([`super::elementwise::expression`]); `main` loads
//! the node's inputs once per element, calls the functions in body order
//! (scalar constants of the body as literals) and stores the last result.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use wpc_ir::{Error, Graph, NodeId, Result, ValueId};

use super::elementwise::{Site, broadcast_kernel_with, expression};
use super::index::literal;
use crate::lower::{Arg, Ctx, Lowered, Tt};

/// The kernel-side type of a body value.
fn body_type(body: &Graph, v: ValueId, demote_f64: bool) -> Result<Tt> {
    let (dtype, shape, word) = wpc_runtime::device_data::static_layout(body, v, demote_f64)?;
    Ok(Tt { dtype, shape, word })
}

/// The WGSL function computing body node `n` (named `name`) from its
/// present inputs: its declaration, and the types of the inputs it takes.
fn node_function(
    body: &Graph,
    n: NodeId,
    name: &str,
    opset: u32,
    demote_f64: bool,
    helpers: &mut BTreeSet<&'static str>,
) -> Result<String> {
    let node = body.node(n);
    let ins = node
        .inputs
        .iter()
        .flatten()
        .map(|&v| body_type(body, v, demote_f64))
        .collect::<Result<Vec<_>>>()?;
    let out =
        node.outputs.first().copied().flatten().ok_or_else(|| {
            Error::invalid("a fused body node has no output").within(node.context())
        })?;
    let out = body_type(body, out, demote_f64)?;
    let expr = expression(&Site { node, opset }, &ins, &out, helpers)
        .map_err(|e| e.within(node.context()))?;
    let params: Vec<String> = ins
        .iter()
        .enumerate()
        .map(|(j, t)| format!("{}: {}", (b'a' + j as u8) as char, t.word.wgsl()))
        .collect();
    Ok(format!(
        "fn {name}({}) -> {} {{\n    return {expr};\n}}\n",
        params.join(", "),
        out.word.wgsl()
    ))
}

/// Whether the fused kernel can compute `n` of `graph`: its expression
/// exists for its operand types.
fn fuses(graph: &Graph, n: NodeId, opset: u32, demote_f64: bool) -> bool {
    node_function(graph, n, "f", opset, demote_f64, &mut BTreeSet::new()).is_ok()
}

pub fn fused(ctx: &Ctx) -> Result<Lowered> {
    let body = wpc_ir::ops::fused::body(ctx.node)?;
    let out = ctx.output(0)?.clone();
    let ins = (0..ctx.inputs.len())
        .map(|i| ctx.input(i).cloned())
        .collect::<Result<Vec<_>>>()?;
    let mut helpers = BTreeSet::new();
    let mut decls = String::new();
    let mut lets = String::new();
    // What each body value is called in `main`: the loads are `a`, `b`, ...
    let mut names: HashMap<ValueId, String> = body
        .inputs
        .iter()
        .enumerate()
        .map(|(j, &v)| (v, ((b'a' + j as u8) as char).to_string()))
        .collect();
    let mut ops = Vec::new();
    for (k, n) in body.topo_order()?.into_iter().enumerate() {
        let node = body.node(n);
        let f = format!("op{k}");
        decls.push_str(&node_function(
            body,
            n,
            &f,
            ctx.opset,
            ctx.demote_f64,
            &mut helpers,
        )?);
        let args = node
            .inputs
            .iter()
            .flatten()
            .map(|v| match body.constants.get(v) {
                Some(c) => Ok(literal(
                    c.to_f64s()[0],
                    body_type(body, *v, ctx.demote_f64)?.word,
                )),
                None => names.get(v).cloned().ok_or_else(|| {
                    Error::invalid("a fused body reads a value it never computes")
                        .within(node.context())
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        let _ = writeln!(lets, "    let t{k} = {f}({});", args.join(", "));
        let result = node.outputs[0].expect("node_function checked the output");
        names.insert(result, format!("t{k}"));
        ops.push(node.op.as_str());
    }
    let result = names[&body.outputs[0]].clone();
    let label = format!(
        "{}({}) {}{:?}",
        ctx.node.op,
        ops.join(", "),
        out.dtype.name(),
        out.shape
    );
    let operands: Vec<(Tt, Vec<usize>)> =
        ins.iter().map(|t| (t.clone(), t.shape.clone())).collect();
    let mut k = broadcast_kernel_with(ctx, label, &operands, &out, &lets, &result, helpers);
    k.decls.push_str(&decls);
    let mut args: Vec<Arg> = (0..ins.len()).map(Arg::In).collect();
    args.push(Arg::Out(0));
    Ok(Lowered::one(k, args))
}

/// What the WebGPU variant fuses: pointwise nodes that have a WGSL
/// expression for their types, up to one binding fewer than the
/// profile's storage buffers per stage (the output takes one).
pub struct Fusion {
    pub opset: u32,
    pub demote_f64: bool,
    pub max_inputs: usize,
}

impl Fusion {
    pub fn new(model: &wpc_ir::Model, profile: &wpc_targets::Profile, demote_f64: bool) -> Fusion {
        let buffers = profile.webgpu.limits.max_storage_buffers_per_shader_stage as usize;
        Fusion {
            opset: model.opset(),
            demote_f64,
            max_inputs: buffers.saturating_sub(1),
        }
    }
}

impl wpc_passes::fuse_elementwise::FusionTarget for Fusion {
    fn fuses(&self, graph: &Graph, n: NodeId) -> bool {
        let node = graph.node(n);
        super::elementwise::is_elementwise(&node.op) && fuses(graph, n, self.opset, self.demote_f64)
    }

    fn max_inputs(&self) -> usize {
        self.max_inputs
    }
}
