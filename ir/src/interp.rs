//! The reference interpreter: evaluates a graph node by node with each op's
//! registered `eval`, which is the definition of what the op means.
//!
//! Values are freed after their last use, so peak memory stays near that of
//! a real runtime; constants are read in place, never copied.

use std::collections::HashMap;

use crate::error::{Error, ErrorKind, Result};
use crate::graph::{Graph, Model, ValueId};
use crate::ops::{self, EvalCtx, SubgraphRunner};
use crate::tensor::Tensor;

/// Runs `model` on named inputs and returns its outputs, named, in order.
pub fn run_model(model: &Model, inputs: &HashMap<String, Tensor>) -> Result<Vec<(String, Tensor)>> {
    let g = &model.graph;
    for name in inputs.keys() {
        if !g.inputs.iter().any(|&i| g.value(i).name == *name) {
            let known: Vec<_> = g.inputs.iter().map(|&i| g.value(i).name.as_str()).collect();
            bail!(
                "the model has no input '{name}' (its inputs: {})",
                known.join(", ")
            );
        }
    }
    let mut ordered = Vec::with_capacity(g.inputs.len());
    for &id in &g.inputs {
        let v = g.value(id);
        let t = inputs
            .get(&v.name)
            .ok_or_else(|| Error::invalid(format!("input '{}' was not given", v.name)))?;
        check_input(&v.name, &v.ty, t)?;
        ordered.push(t.clone());
    }
    let outs = if g.sizes.is_empty() {
        run_graph(g, model.opset(), ordered, None)?
    } else {
        // Values the passes left as expressions over the symbols become
        // constants at the sizes these inputs have.
        let mut sized = g.clone();
        let symbols = input_symbols(g, &ordered)?;
        for (v, s) in std::mem::take(&mut sized.sizes) {
            let elems = s
                .elems
                .iter()
                .map(|e| e.eval(&|name| symbols.get(name).copied()))
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "'{}' is computed from sizes these inputs do not give",
                        g.value(v).name
                    ))
                })?;
            let dtype = g.value(v).ty.dtype.unwrap_or(crate::DType::I64);
            sized
                .constants
                .insert(v, Tensor::i64s(s.shape.clone(), elems).cast(dtype));
        }
        run_graph(&sized, model.opset(), ordered, None)?
    };
    Ok(g.outputs
        .iter()
        .map(|&o| g.value(o).name.clone())
        .zip(outs)
        .collect())
}

/// The size each symbolic dim of the graph's inputs has in `inputs`
/// (which [`check_input`] has checked against the declarations); two
/// inputs giving one symbol different sizes are an error.
fn input_symbols(g: &Graph, inputs: &[Tensor]) -> Result<HashMap<String, i64>> {
    let mut sizes: HashMap<String, i64> = HashMap::new();
    for (&id, t) in g.inputs.iter().zip(inputs) {
        let Some(dims) = g.value(id).ty.shape.dims() else {
            continue;
        };
        for (d, &n) in dims.iter().zip(t.shape()) {
            if let crate::shape::Dim::Symbol(s) = d {
                match sizes.insert(s.clone(), n as i64) {
                    Some(before) if before != n as i64 => bail!(
                        "dim '{s}' is {before} in one input and {n} in input '{}'",
                        g.value(id).name
                    ),
                    _ => {}
                }
            }
        }
    }
    Ok(sizes)
}

/// Rejects an input whose dtype or known dims differ from the declaration.
fn check_input(name: &str, ty: &crate::graph::ValueType, t: &Tensor) -> Result<()> {
    if let Some(dt) = ty.dtype
        && dt != t.dtype()
    {
        bail!("input '{name}' must be {dt}, got {}", t.dtype());
    }
    if let Some(dims) = ty.shape.dims() {
        let fits = dims.len() == t.rank()
            && dims
                .iter()
                .zip(t.shape())
                .all(|(d, &n)| d.known().is_none_or(|k| k == n));
        if !fits {
            bail!(
                "input '{name}' must have shape {}, got {:?}",
                ty.shape,
                t.shape()
            );
        }
    }
    Ok(())
}

/// The values visible to a graph being evaluated: its own, then its parents'.
struct Scope<'a> {
    graph: &'a Graph,
    env: &'a [Option<Tensor>],
    parent: Option<&'a Scope<'a>>,
}

impl<'a> Scope<'a> {
    fn get(&self, id: ValueId) -> Option<&'a Tensor> {
        if let Some(t) = self.env[id.index()].as_ref() {
            return Some(t);
        }
        if let Some(t) = self.graph.constants.get(&id) {
            return Some(t);
        }
        if self.graph.value(id).outer {
            return self.parent?.lookup(&self.graph.value(id).name);
        }
        None
    }

    fn lookup(&self, name: &str) -> Option<&'a Tensor> {
        match self.graph.find_value(name) {
            Some(id) => self.get(id),
            None => self.parent?.lookup(name),
        }
    }
}

struct Runner<'a> {
    scope: &'a Scope<'a>,
    opset: u32,
}

impl SubgraphRunner for Runner<'_> {
    fn run(&self, graph: &Graph, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        run_graph(graph, self.opset, inputs, Some(self.scope))
    }
}

/// Evaluates `graph` with positional `inputs`; `parent` resolves names the
/// graph reads from enclosing graphs.
fn run_graph(
    graph: &Graph,
    opset: u32,
    inputs: Vec<Tensor>,
    parent: Option<&Scope>,
) -> Result<Vec<Tensor>> {
    if inputs.len() != graph.inputs.len() {
        bail!(
            "graph '{}' takes {} inputs, got {}",
            graph.name,
            graph.inputs.len(),
            inputs.len()
        );
    }
    let order = graph.topo_order()?;
    let mut env: Vec<Option<Tensor>> = vec![None; graph.value_ids().count()];
    for (&id, t) in graph.inputs.iter().zip(inputs) {
        env[id.index()] = Some(t);
    }
    // The step after which each value is dead (graph outputs never are).
    let mut last_use: HashMap<ValueId, usize> = HashMap::new();
    for (step, &n) in order.iter().enumerate() {
        // Values a subgraph reads by name stay alive until its node has run.
        for v in graph.reads(n) {
            last_use.insert(v, step);
        }
    }
    for o in &graph.outputs {
        last_use.remove(o);
    }
    let mut dead_after: Vec<Vec<ValueId>> = vec![Vec::new(); order.len()];
    for (v, step) in last_use {
        dead_after[step].push(v);
    }
    for (step, &nid) in order.iter().enumerate() {
        let node = graph.node(nid);
        let def = ops::lookup(&node.domain, &node.op).ok_or_else(|| {
            Error::unsupported(format!("op {} is not supported", node.op)).within(node.context())
        })?;
        let outputs = {
            let scope = Scope {
                graph,
                env: &env,
                parent,
            };
            let mut ins = Vec::with_capacity(node.inputs.len());
            for &i in &node.inputs {
                ins.push(match i {
                    None => None,
                    Some(v) => Some(scope.get(v).ok_or_else(|| {
                        Error::invalid(format!("input '{}' has no value", graph.value(v).name))
                            .within(node.context())
                    })?),
                });
            }
            let runner = Runner {
                scope: &scope,
                opset,
            };
            let ctx = EvalCtx {
                node,
                inputs: ins,
                opset,
                subgraphs: &runner,
            };
            eval_guarded(def.eval, &ctx)?
        };
        if node.outputs.iter().skip(outputs.len()).any(Option::is_some) {
            return Err(Error::unsupported(format!(
                "produces {} outputs, more were requested",
                outputs.len()
            ))
            .within(node.context()));
        }
        for (slot, t) in node.outputs.iter().zip(outputs) {
            if let Some(v) = slot {
                env[v.index()] = Some(t);
            }
        }
        for v in &dead_after[step] {
            env[v.index()] = None;
        }
    }
    let scope = Scope {
        graph,
        env: &env,
        parent,
    };
    graph
        .outputs
        .iter()
        .map(|&o| {
            scope.get(o).cloned().ok_or_else(|| {
                Error::invalid(format!(
                    "graph output '{}' was never computed",
                    graph.value(o).name
                ))
            })
        })
        .collect()
}

/// Runs a kernel, turning a panic (a wpc bug, typically an input shape a
/// kernel failed to validate) into an [`ErrorKind::Internal`] error that
/// names the node, so one bad node never takes the process down.
fn eval_guarded(eval: ops::EvalFn, ctx: &EvalCtx) -> Result<Vec<Tensor>> {
    let node = ctx.node;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eval(ctx))) {
        Ok(r) => r.map_err(|e| e.within(node.context())),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(Error::new(
                ErrorKind::Internal,
                format!("internal error (a bug in wpc): {msg}"),
            )
            .within(node.context()))
        }
    }
}

/// Evaluates one node on constant inputs (constant folding uses this).
pub fn eval_node(
    node: &crate::graph::Node,
    inputs: Vec<Option<&Tensor>>,
    opset: u32,
) -> Result<Vec<Tensor>> {
    struct NoSubgraphs;
    impl SubgraphRunner for NoSubgraphs {
        fn run(&self, _: &Graph, _: Vec<Tensor>) -> Result<Vec<Tensor>> {
            Err(Error::unsupported(
                "subgraphs are not evaluated during folding",
            ))
        }
    }
    let def = ops::lookup(&node.domain, &node.op).ok_or_else(|| {
        Error::unsupported(format!("op {} is not supported", node.op)).within(node.context())
    })?;
    eval_guarded(
        def.eval,
        &EvalCtx {
            node,
            inputs,
            opset,
            subgraphs: &NoSubgraphs,
        },
    )
}
