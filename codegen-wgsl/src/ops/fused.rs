//! `FusedElementwise`: a chain of pointwise ops in one kernel. Each body
//! node becomes a WGSL function built from the same expression as its
//! stand-alone kernel ([`super::elementwise::expression`]); `main` loads
//! the node's inputs once per element, calls the functions in body order
//! (scalar constants of the body as literals) and stores the last result.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use wpc_ir::{Error, Graph, NodeId, Result, ValueId};

use super::elementwise::{Site, broadcast_kernel_with, expression};
use super::index::{broadcast_row_major, literal, offset_of, unravel_of};
use crate::kernel::Params;
use crate::lower::{Arg, Ctx, Launch, Lowered, Tt};

/// The dim ranges of the model a fused body belongs to.
type Ranges = BTreeMap<String, (usize, usize)>;

/// The kernel-side type of a body value.
fn body_type(body: &Graph, v: ValueId, demote_f64: bool, ranges: &Ranges) -> Result<Tt> {
    crate::lower::tensor_type_in(body, ranges, v, demote_f64)
}

/// The WGSL function computing body node `n` (named `name`) from its
/// present inputs: its declaration, and the types of the inputs it takes.
fn node_function(
    body: &Graph,
    n: NodeId,
    name: &str,
    opset: u32,
    demote_f64: bool,
    ranges: &Ranges,
    helpers: &mut BTreeSet<&'static str>,
) -> Result<String> {
    let node = body.node(n);
    let ins = node
        .inputs
        .iter()
        .flatten()
        .map(|&v| body_type(body, v, demote_f64, ranges))
        .collect::<Result<Vec<_>>>()?;
    let out =
        node.outputs.first().copied().flatten().ok_or_else(|| {
            Error::invalid("a fused body node has no output").within(node.context())
        })?;
    let out = body_type(body, out, demote_f64, ranges)?;
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
fn fuses(graph: &Graph, n: NodeId, opset: u32, demote_f64: bool, ranges: &Ranges) -> bool {
    node_function(
        graph,
        n,
        "f",
        opset,
        demote_f64,
        ranges,
        &mut BTreeSet::new(),
    )
    .is_ok()
}

/// The WGSL of body nodes `nodes`, in order: a function per node
/// (`{prefix}{k}`, into `decls`) and a `let t{k}` per node calling it (the
/// returned statements). `names` holds what each value already computed
/// is called (inputs, loads); it gains each node's result.
fn chain(
    body: &Graph,
    nodes: &[NodeId],
    names: &mut HashMap<ValueId, String>,
    ctx: &Ctx,
    decls: &mut String,
    helpers: &mut BTreeSet<&'static str>,
) -> Result<String> {
    let mut lets = String::new();
    for (k, &n) in nodes.iter().enumerate() {
        let node = body.node(n);
        let f = format!("op{k}");
        decls.push_str(&node_function(
            body,
            n,
            &f,
            ctx.opset,
            ctx.demote_f64,
            ctx.ranges,
            helpers,
        )?);
        let args = node
            .inputs
            .iter()
            .flatten()
            .map(|v| match body.constants.get(v) {
                Some(c) => Ok(literal(
                    c.to_f64s()[0],
                    body_type(body, *v, ctx.demote_f64, ctx.ranges)?.word,
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
    }
    Ok(lets)
}

/// The op names of `nodes`, for a kernel's label.
fn op_list(body: &Graph, nodes: &[NodeId]) -> String {
    let ops: Vec<&str> = nodes.iter().map(|&n| body.node(n).op.as_str()).collect();
    ops.join(", ")
}

pub fn fused(ctx: &Ctx) -> Result<Lowered> {
    let body = wpc_ir::ops::fused::body(ctx.node)?;
    let out = ctx.output(0)?.clone();
    let ins = (0..ctx.inputs.len())
        .map(|i| ctx.input(i).cloned())
        .collect::<Result<Vec<_>>>()?;
    let mut helpers = BTreeSet::new();
    let mut decls = String::new();
    // What each body value is called in `main`: the loads are `a`, `b`, ...
    let mut names: HashMap<ValueId, String> = body
        .inputs
        .iter()
        .enumerate()
        .map(|(j, &v)| (v, ((b'a' + j as u8) as char).to_string()))
        .collect();
    let order = body.topo_order()?;
    let lets = chain(body, &order, &mut names, ctx, &mut decls, &mut helpers)?;
    let result = names[&body.outputs[0]].clone();
    let label = format!(
        "{}({}) {}{:?}",
        ctx.node.op,
        op_list(body, &order),
        out.dtype.name(),
        out.shape
    );
    let operands: Vec<(Tt, Vec<wpc_ir::sym::Expr>)> =
        ins.iter().map(|t| (t.clone(), t.dims.clone())).collect();
    let mut k = broadcast_kernel_with(ctx, label, &operands, &out, &lets, &result, helpers)?;
    k.decls.push_str(&decls);
    let mut args: Vec<Arg> = (0..ins.len()).map(Arg::In).collect();
    args.push(Arg::Out(0));
    Ok(Lowered::one(k, args))
}

/// The function a `FusedEpilogue`'s anchor calls on each result before
/// storing it: `fn epilogue(v: f32, o: u32) -> f32`, `o` being the
/// element's flat index in the output.
pub const EPILOGUE: &str = "epilogue";

/// The anchors whose lowerings store through [`Ctx::store`].
const ANCHORS: &[&str] = &["MatMul", "Gemm", "Conv"];

/// The tail of `e` as the [`EPILOGUE`] function, and the fused-node
/// inputs it loads (bound as `ep{j}` for fused input `j`); dynamic sizes
/// it indexes by are read from `params` (those of the kernel it joins).
fn epilogue_function(
    e: &wpc_ir::ops::fused::Epilogue,
    ctx: &Ctx,
    params: &mut Params,
    helpers: &mut BTreeSet<&'static str>,
) -> Result<(String, Vec<usize>)> {
    let body = e.body;
    let out = ctx.output(0)?;
    let mut decls = String::new();
    let mut names = HashMap::from([(e.result, "v".to_string())]);
    let mut loads = String::new();
    let mut read = Vec::new();
    let mut coords = false;
    for (j, &v) in body.inputs.iter().enumerate() {
        let tail_reads = e
            .tail
            .iter()
            .any(|&n| body.node(n).inputs.contains(&Some(v)));
        if !tail_reads {
            continue;
        }
        let t = ctx.input(j)?;
        let off = if t.dims.iter().all(|d| d.as_const() == Some(1)) {
            "0u".to_string()
        } else if t.dims == out.dims {
            "o".to_string()
        } else {
            coords = true;
            offset_of(params, "q", &broadcast_row_major(&t.dims, &out.dims)?)
        };
        let _ = writeln!(loads, "    let e{j} = ep{j}[{off}];");
        names.insert(v, format!("e{j}"));
        read.push(j);
    }
    let lets = chain(body, &e.tail, &mut names, ctx, &mut decls, helpers)?;
    let index = if coords {
        unravel_of(params, "o", &out.dims, "q")
    } else {
        String::new()
    };
    let _ = write!(
        decls,
        "fn {EPILOGUE}(v: f32, o: u32) -> f32 {{\n{index}{loads}{lets}    return {};\n}}\n",
        names[&body.outputs[0]]
    );
    Ok((decls, read))
}

/// `FusedEpilogue`: the anchor's own lowering, whose stores call the
/// tail's [`EPILOGUE`] function; each kernel writing the output also
/// binds the tensors the tail reads.
pub fn fused_epilogue(ctx: &Ctx) -> Result<Lowered> {
    let e = wpc_ir::ops::fused::epilogue(ctx.node)?;
    let lower = super::lowering(&e.anchor.domain, &e.anchor.op)
        .filter(|_| e.anchor.domain.is_empty() && ANCHORS.contains(&e.anchor.op.as_str()))
        .ok_or_else(|| Error::unsupported(format!("{} with an epilogue on WebGPU", e.anchor.op)))?;
    ctx.check_dynamic(&e.anchor.domain, &e.anchor.op)?;
    let mut helpers = BTreeSet::new();
    let lowered = lower(&ctx.for_anchor(&e.anchor, &e.anchor_inputs))?;
    let mut attach = |launches: &mut Vec<Launch>| -> Result<()> {
        for l in launches {
            for a in &mut l.args {
                if let Arg::In(i) = a {
                    *a = Arg::In(e.anchor_inputs[*i].expect("a bound input is present"));
                }
            }
            if !l.args.contains(&Arg::Out(0)) {
                continue;
            }
            if !l.kernel.body.contains(EPILOGUE) {
                return Err(Error::new(
                    wpc_ir::ErrorKind::Internal,
                    format!("the {} kernel ignored its epilogue", e.anchor.op),
                ));
            }
            let (decls, read) = epilogue_function(&e, ctx, &mut l.kernel.params, &mut helpers)?;
            l.kernel.decls.push_str(&decls);
            l.kernel.helpers.extend(helpers.iter().copied());
            for &j in &read {
                l.kernel.input(&format!("ep{j}"), ctx.input(j)?.word);
                l.args.push(Arg::In(j));
            }
        }
        Ok(())
    };
    Ok(match lowered {
        Lowered::Launches {
            temps,
            mut launches,
        } => {
            attach(&mut launches)?;
            Lowered::Launches { temps, launches }
        }
        Lowered::WithConsts {
            consts,
            temps,
            mut launches,
        } => {
            attach(&mut launches)?;
            Lowered::WithConsts {
                consts,
                temps,
                launches,
            }
        }
        Lowered::Alias => {
            return Err(Error::new(
                wpc_ir::ErrorKind::Internal,
                "an epilogue's anchor lowered to an alias",
            ));
        }
    })
}

/// What the WebGPU variant fuses: pointwise nodes that have a WGSL
/// expression for their types, up to one binding fewer than the
/// profile's storage buffers per stage (the output takes one).
pub struct Fusion {
    pub opset: u32,
    pub demote_f64: bool,
    pub max_inputs: usize,
    pub ranges: Ranges,
}

impl Fusion {
    pub fn new(model: &wpc_ir::Model, profile: &wpc_targets::Profile, demote_f64: bool) -> Fusion {
        let buffers = profile.webgpu.limits.max_storage_buffers_per_shader_stage as usize;
        Fusion {
            opset: model.opset(),
            demote_f64,
            max_inputs: buffers.saturating_sub(1),
            ranges: model.dim_ranges.clone(),
        }
    }
}

impl wpc_passes::fuse::FusionTarget for Fusion {
    fn fuses(&self, graph: &Graph, n: NodeId) -> bool {
        let node = graph.node(n);
        super::elementwise::is_elementwise(&node.op)
            && fuses(graph, n, self.opset, self.demote_f64, &self.ranges)
    }

    fn max_inputs(&self) -> usize {
        self.max_inputs
    }

    /// A MatMul, Gemm or Conv on float32 whose tail has WGSL expressions,
    /// binding no more buffers than the profile allows: the anchor's
    /// own, and the tensors the tail reads.
    fn epilogue(&self, _: &Graph, node: &wpc_ir::Node) -> bool {
        let Ok(e) = wpc_ir::ops::fused::epilogue(node) else {
            return false;
        };
        let body = e.body;
        let f32_only = body
            .node_ids()
            .flat_map(|n| {
                let n = body.node(n);
                n.inputs
                    .iter()
                    .chain(&n.outputs)
                    .flatten()
                    .copied()
                    .collect::<Vec<_>>()
            })
            .all(|v| body.value(v).ty.dtype == Some(wpc_ir::DType::F32));
        let tail_ok = e.tail.iter().all(|&n| {
            super::elementwise::is_elementwise(&body.node(n).op)
                && fuses(body, n, self.opset, self.demote_f64, &self.ranges)
        });
        let read = body
            .inputs
            .iter()
            .filter(|v| {
                e.tail
                    .iter()
                    .any(|&n| body.node(n).inputs.contains(&Some(**v)))
            })
            .count();
        let bindings = e.anchor.inputs.iter().flatten().count() + 1 + read;
        // An anchor over dynamic sizes must be one whose kernel reads them.
        let static_shapes = body
            .node_ids()
            .flat_map(|n| body.node(n).outputs.clone())
            .flatten()
            .all(|v| body.value(v).ty.shape.concrete().is_some());
        (static_shapes || super::handles_dynamic_sizes(&e.anchor.domain, &e.anchor.op))
            && e.anchor.domain.is_empty()
            && ANCHORS.contains(&e.anchor.op.as_str())
            && f32_only
            && tail_ok
            && bindings <= self.max_inputs + 1
    }

    /// Where the model's sizes are dynamic, only the ops whose kernels
    /// read them at run time ([`super::handles_dynamic_sizes`]).
    fn has_kernel(&self, op: &str) -> bool {
        super::lowering("", op).is_some()
            && (self.ranges.is_empty() || super::handles_dynamic_sizes("", op))
    }
}
