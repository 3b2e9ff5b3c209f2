//! Recognizes what exporters write out op by op — GELU (erf and tanh),
//! SiLU and SwiGLU, HardSigmoid and HardSwish, LayerNorm and RMSNorm,
//! scaled dot-product attention — with an e-graph ([`egg`]), and puts
//! the one-op form in the graph where the variant's backend has a kernel
//! for it.
//!
//! The pass reads the float arithmetic of the graph into an e-graph
//! ([`lang::Expr`]; every other value is a leaf), runs the rules of
//! [`rules`] under [`Limits`], and extracts, for each value the rest of
//! the graph reads, the form with the fewest kernels on this backend
//! ([`KernelCount`]): a recognized op counts one where
//! [`FusionTarget::has_kernel`] says the backend computes it, and is
//! never chosen where it does not, so a backend without, say, an
//! `RMSNormalization` kernel keeps the written-out chain (which its
//! fusion then joins into one kernel). Nodes whose best form is the one
//! they already have stay as they are, names and all; a value whose best
//! form changed gets a new producer and keeps its id.
//!
//! Runs per variant after [`crate::optimize`], before [`crate::fuse::fuse`].

pub mod lang;
pub mod rules;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use egg::{CostFunction, Extractor, Id, Language, Runner, StopReason};
use wpc_ir::{
    Attr, Attrs, DType, Error, Graph, Model, Node, NodeId, Result, Tensor, ValueId, ValueType,
};

use crate::fuse::FusionTarget;
use lang::{EGraph, Expr, Facts, GraphFacts, Leaf, Number};

/// When the e-graph runner stops. Node and iteration limits come first,
/// so a model compiles the same on any machine; the time limit is a
/// backstop for pathological graphs.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub iterations: usize,
    pub nodes: usize,
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            iterations: 24,
            nodes: 200_000,
            time: Duration::from_secs(60),
        }
    }
}

/// What [`rewrite`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RewriteStats {
    /// Graph nodes read into the e-graph.
    pub nodes_read: usize,
    /// Runner iterations.
    pub iterations: usize,
    /// E-nodes and e-classes when the runner stopped.
    pub egraph_nodes: usize,
    pub egraph_classes: usize,
    /// Why the runner stopped ("nothing to read" when the graph has no
    /// node the pass reads); `None` when the pass did not run.
    pub stop: Option<String>,
    /// How often each rule changed the e-graph, for the rules that did,
    /// in rule order.
    pub fired: Vec<(String, usize)>,
    /// The recognized ops put into the graph, by ONNX op.
    pub introduced: BTreeMap<String, usize>,
}

/// Rewrites `model` for the backend `target`; see the module docs.
pub fn rewrite(
    model: &mut Model,
    target: &dyn FusionTarget,
    limits: Limits,
) -> Result<RewriteStats> {
    let opset = model.opset();
    let g = &mut model.graph;
    let mut read = Reading::of(g, opset)?;
    let mut stats = RewriteStats {
        nodes_read: read.nodes.len(),
        ..RewriteStats::default()
    };
    if read.roots.is_empty() {
        stats.stop = Some("nothing to read".into());
        return Ok(stats);
    }
    let rules = rules::rules();
    let runner = Runner::default()
        .with_egraph(std::mem::take(&mut read.egraph))
        .with_iter_limit(limits.iterations)
        .with_node_limit(limits.nodes)
        .with_time_limit(limits.time)
        .run(&rules);
    stats.iterations = runner.iterations.len();
    stats.egraph_nodes = runner.egraph.total_number_of_nodes();
    stats.egraph_classes = runner.egraph.number_of_classes();
    stats.stop = runner.stop_reason.as_ref().map(describe);
    for rule in &rules {
        let count: usize = runner
            .iterations
            .iter()
            .filter_map(|i| i.applied.get(&rule.name))
            .sum();
        if count > 0 {
            stats.fired.push((rule.name.to_string(), count));
        }
    }

    let egraph = &runner.egraph;
    // Each class's first value read, and each node the graph had (its
    // e-node over canonical classes) with the first value it makes.
    let mut values = HashMap::new();
    let mut originals = HashMap::new();
    for &n in &read.nodes {
        let v = g.node(n).outputs[0].expect("read nodes have an output");
        values.entry(egraph.find(read.class[&v])).or_insert(v);
        let own = read.enodes[&v].clone().map_children(|c| egraph.find(c));
        originals.entry(own).or_insert(v);
    }
    let cost = KernelCount {
        target,
        originals: &originals,
    };
    let extractor = Extractor::new(egraph, cost.clone());
    let mut emit = Emitter {
        g,
        egraph,
        extractor: &extractor,
        read: &read,
        cost,
        done: HashSet::new(),
        values,
        fresh: HashMap::new(),
        introduced: &mut stats.introduced,
    };
    for &root in &read.roots {
        if extractor.find_best_cost(read.class[&root]).is_finite() {
            emit.value(root)?;
        }
    }
    // A rewrite never reads a value computed from the one it replaces;
    // a cycle here would be a bug in a rule, caught before codegen.
    g.topo_order()
        .map_err(|e| internal(format!("the rewrite pass made a cycle: {e}")))?;
    crate::dce::eliminate_dead_nodes(model);
    crate::shape_inference::infer_shapes(model)?;
    Ok(stats)
}

fn internal(reason: impl Into<String>) -> Error {
    Error::new(wpc_ir::ErrorKind::Internal, reason)
}

fn describe(stop: &StopReason) -> String {
    match stop {
        StopReason::Saturated => "saturated".into(),
        StopReason::IterationLimit(n) => format!("iteration limit ({n})"),
        StopReason::NodeLimit(n) => format!("e-node limit ({n})"),
        StopReason::TimeLimit(s) => format!("time limit ({s:.0} s)"),
        StopReason::Other(why) => why.clone(),
    }
}

/// The graph read into an e-graph.
struct Reading {
    egraph: EGraph,
    /// The nodes read, in topological order.
    nodes: Vec<NodeId>,
    /// Each value read (an output of a read node) and its class.
    class: HashMap<ValueId, Id>,
    /// Each value read and the e-node its node became.
    enodes: HashMap<ValueId, Expr>,
    /// The values read that the rest of the graph reads, or that are
    /// graph outputs, in topological order.
    roots: Vec<ValueId>,
}

impl Reading {
    fn of(g: &Graph, opset: u32) -> Result<Reading> {
        let mut r = Reading {
            egraph: EGraph::new(GraphFacts::default()),
            nodes: Vec::new(),
            class: HashMap::new(),
            enodes: HashMap::new(),
            roots: Vec::new(),
        };
        for n in g.topo_order()? {
            let Some(out) = readable(g, n) else {
                continue;
            };
            let node = g.node(n);
            let Some(enode) = r.enode(g, node, opset) else {
                continue;
            };
            let id = r.egraph.add(enode.clone());
            r.egraph.set_analysis_data(
                id,
                Facts {
                    ty: Some(g.value(out).ty.clone()),
                    ..Facts::default()
                },
            );
            r.class.insert(out, id);
            r.enodes.insert(out, enode);
            r.nodes.push(n);
        }
        let read: HashSet<NodeId> = r.nodes.iter().copied().collect();
        for &n in &r.nodes {
            let out = g.node(n).outputs[0].expect("read nodes have an output");
            if g.outputs.contains(&out) || g.consumers(out).iter().any(|c| !read.contains(c)) {
                r.roots.push(out);
            }
        }
        r.egraph.rebuild();
        Ok(r)
    }

    /// The class of input `v`: the class of the node that made it, or a
    /// leaf.
    fn input(&mut self, g: &Graph, v: ValueId) -> Id {
        if let Some(&id) = self.class.get(&v) {
            return id;
        }
        let facts = leaf_facts(g, v);
        self.egraph.analysis.leaves.insert(v, facts);
        self.egraph.add(Expr::Value(Leaf(v)))
    }

    fn number(&mut self, v: f32) -> Id {
        self.egraph.add(Expr::Num(Number::new(f64::from(v))))
    }

    /// `node` as an e-node over its inputs' classes, where it is one of
    /// the ops the rules read.
    fn enode(&mut self, g: &Graph, node: &Node, opset: u32) -> Option<Expr> {
        let ins: Vec<ValueId> = node.inputs.iter().copied().collect::<Option<_>>()?;
        let arity = |k: usize| ins.len() == k;
        let op = node.op.as_str();
        let pair = |r: &mut Reading| [r.input(g, ins[0]), r.input(g, ins[1])];
        let one = |r: &mut Reading| [r.input(g, ins[0])];
        Some(match op {
            "Add" if arity(2) => Expr::Add(pair(self)),
            "Sub" if arity(2) => Expr::Sub(pair(self)),
            "Mul" if arity(2) => Expr::Mul(pair(self)),
            "Div" if arity(2) => Expr::Div(pair(self)),
            "Pow" if arity(2) => Expr::Pow(pair(self)),
            "Sqrt" if arity(1) => Expr::Sqrt(one(self)),
            "Reciprocal" if arity(1) => Expr::Reciprocal(one(self)),
            "Erf" if arity(1) => Expr::Erf(one(self)),
            "Tanh" if arity(1) => Expr::Tanh(one(self)),
            "Sigmoid" if arity(1) => Expr::Sigmoid(one(self)),
            // Before opset 11 the bounds are attributes.
            "Clip" if arity(3) && opset >= 11 => {
                Expr::Clip([0, 1, 2].map(|i| self.input(g, ins[i])))
            }
            "ReduceMean" if mean_of_last_axis(g, node)? == ins[0] => Expr::MeanLast(one(self)),
            "MatMul" if arity(2) => Expr::MatMul(pair(self)),
            "IsNaN" if arity(1) => Expr::IsNaN(one(self)),
            "Where" if arity(3) => Expr::Where([0, 1, 2].map(|i| self.input(g, ins[i]))),
            "Softmax" if arity(1) && softmax_over_last_axis(g, node, opset)? => {
                Expr::SoftmaxLast(one(self))
            }
            "Transpose" if arity(1) => {
                let rank = g.value(ins[0]).ty.shape.rank()?;
                let perm = wpc_ir::ops::params::transpose_perm(&node.attrs, rank).ok()?;
                let perm = self.egraph.add(Expr::Perm(lang::Perm(perm)));
                Expr::Transpose([self.input(g, ins[0]), perm])
            }
            // After constant folding a static shape is a constant; a shape
            // computed from dynamic sizes is in `Graph::sizes`.
            "Reshape"
                if arity(2)
                    && (g.constants.contains_key(&ins[1]) || g.sizes.contains_key(&ins[1])) =>
            {
                Expr::Reshape(pair(self))
            }
            "HardSigmoid" if arity(1) => {
                let wpc_ir::ops::params::Elementwise::HardSigmoid { alpha, beta } =
                    wpc_ir::ops::params::Elementwise::of(op, &node.attrs).ok()??
                else {
                    return None;
                };
                Expr::HardSigmoid([self.input(g, ins[0]), self.number(alpha), self.number(beta)])
            }
            _ => return None,
        })
    }
}

/// The output of `n` if the pass may read the node: a default-domain
/// node with one float output (or an `IsNaN`, the one test the rules read).
fn readable(g: &Graph, n: NodeId) -> Option<ValueId> {
    let node = g.node(n);
    let [Some(out)] = node.outputs[..] else {
        return None;
    };
    let float = g.value(out).ty.dtype.is_some_and(DType::is_float);
    (node.domain.is_empty() && (float || node.op == "IsNaN")).then_some(out)
}

/// What the e-graph knows about a leaf.
fn leaf_facts(g: &Graph, v: ValueId) -> Facts {
    match g.constants.get(&v) {
        Some(t) => Facts {
            scalar: (t.len() == 1 && !t.dtype().eq(&DType::Bool)).then(|| t.get_f64(0)),
            ty: Some(ValueType::of(t)),
            constant: true,
        },
        None => Facts {
            ty: Some(g.value(v).ty.clone()),
            ..Facts::default()
        },
    }
}

/// The input of `node`, a ReduceMean, when it averages over exactly its
/// last axis and keeps it.
fn mean_of_last_axis(g: &Graph, node: &Node) -> Option<ValueId> {
    use wpc_ir::ops::params::{Reduce, ints_input};
    let x = node.inputs.first().copied().flatten()?;
    let rank = g.value(x).ty.shape.rank()?;
    let params = Reduce::of(&node.attrs).ok()?;
    let given = match node.inputs.get(1).copied().flatten() {
        Some(a) => Some(g.constants.get(&a)?.to_i64s()),
        None => None,
    };
    let given = ints_input(&node.op, &node.attrs, 1, given).ok()?;
    let axes = params.axes(given, rank).ok()??;
    (params.keepdims && rank > 0 && axes == [rank - 1]).then_some(x)
}

/// Whether `node`, a Softmax, normalizes along the last axis of its
/// input (at any opset); `None` when the input's shape is not known.
fn softmax_over_last_axis(g: &Graph, node: &Node, opset: u32) -> Option<bool> {
    let x = node.inputs.first().copied().flatten()?;
    let rank = g.value(x).ty.shape.rank()?;
    // Over the last axis at any opset: a row is that axis alone.
    let dims = vec![(); rank.max(1)];
    let (axis, _) =
        wpc_ir::ops::params::SoftmaxRows::extents(&node.attrs, opset, &dims, |_| ()).ok()?;
    Some(axis + 1 == dims.len())
}

/// The cost model: kernels. Each op is one (a recognized op only where
/// the backend has a kernel for it), views and leaves none; a node the
/// graph did not have costs a little more than one it had, so extraction
/// keeps the model's own arithmetic unless a recognized op saves a
/// kernel. Numbers are parameters: an op that would read one as a tensor
/// is never chosen. Costs add up over a tree, not the graph: a value
/// another reader also needs counts as if replacing it saved its kernel,
/// so a recognized op whose intermediates are read elsewhere comes in
/// beside the nodes that still compute them.
#[derive(Clone)]
pub struct KernelCount<'a> {
    target: &'a dyn FusionTarget,
    /// The graph's own nodes, as e-nodes, with the value each makes.
    originals: &'a HashMap<Expr, ValueId>,
}

/// What a node the graph did not have costs on top of its kernel.
const NEW_NODE: f64 = 1e-3;

impl CostFunction<Expr> for KernelCount<'_> {
    type Cost = f64;

    fn cost<C: FnMut(Id) -> f64>(&mut self, enode: &Expr, mut costs: C) -> f64 {
        let own = match enode {
            Expr::Value(_) => return 0.0,
            // Parameters of recognized ops, never operands of others.
            Expr::Ones | Expr::Absent => return 0.0,
            Expr::Num(_) | Expr::Perm(_) => return f64::INFINITY,
            // A view is no kernel.
            e @ Expr::Reshape(_) if self.originals.contains_key(e) => 0.0,
            e if self.originals.contains_key(e) => 1.0,
            e => match e.recognized_op() {
                Some(op) if self.target.has_kernel(op) => 1.0,
                Some(_) => return f64::INFINITY,
                None if plain_op(e).is_some() => 1.0 + NEW_NODE,
                None => return f64::INFINITY,
            },
        };
        own + enode
            .tensor_children()
            .iter()
            .map(|&c| costs(c))
            .sum::<f64>()
    }
}

/// Puts the extracted forms into the graph.
struct Emitter<'a, 'e> {
    g: &'a mut Graph,
    egraph: &'e EGraph,
    extractor: &'e Extractor<'e, KernelCount<'e>, Expr, GraphFacts>,
    read: &'e Reading,
    cost: KernelCount<'e>,
    /// Values read whose producer is settled.
    done: HashSet<ValueId>,
    /// The first value read (in graph order) of each class.
    values: HashMap<Id, ValueId>,
    /// Values made for classes no graph value stood for.
    fresh: HashMap<Id, ValueId>,
    introduced: &'a mut BTreeMap<String, usize>,
}

impl Emitter<'_, '_> {
    /// Settles the producer of `v`, a value read: its own node if that is
    /// still the best form, otherwise a node of the best form.
    fn value(&mut self, v: ValueId) -> Result<ValueId> {
        if !self.done.insert(v) {
            return Ok(v);
        }
        let class = self.egraph.find(self.read.class[&v]);
        let best = self.extractor.find_best_node(class).clone();
        let own = self.read.enodes[&v]
            .clone()
            .map_children(|c| self.egraph.find(c));
        let producer = self.g.producer(v).expect("a value read has its node");
        // Its own node where that is as good: of two values the algebra
        // proves equal (`a·b` and `b·a`), each keeps its own rounding.
        let own_cost = self.cost.cost(&own, |c| self.extractor.find_best_cost(c));
        // And where the best form is another value's node of a kind no
        // new node is made of (a MatMul, a Transpose): that value is
        // computed anyway, and this one the same way.
        let makeable = op_name(&best).is_some();
        if best == own || own_cost <= self.extractor.find_best_cost(class) || !makeable {
            let inputs: Vec<ValueId> = self
                .g
                .node(producer)
                .inputs
                .iter()
                .flatten()
                .copied()
                .collect();
            for input in inputs {
                if self.read.class.contains_key(&input) {
                    self.value(input)?;
                }
            }
            return Ok(v);
        }
        let name = format!("{} ({best})", self.g.node(producer).name);
        let node = self.node(&best, name, v)?;
        self.g.remove_node(producer);
        self.g.add_node(node)?;
        Ok(v)
    }

    /// A value holding class `c`.
    fn class(&mut self, c: Id) -> Result<ValueId> {
        let c = self.egraph.find(c);
        let best = self.extractor.find_best_node(c).clone();
        if let Expr::Value(Leaf(v)) = best {
            return Ok(v);
        }
        // A graph value of this class, settled (it is computed anyway):
        // the one whose own node is the best form, or the first.
        if let Some(&v) = self.cost.originals.get(&best).or(self.values.get(&c)) {
            return self.value(v);
        }
        if let Some(&v) = self.fresh.get(&c) {
            return Ok(v);
        }
        let name = format!("rewrite_{best}");
        let v = self.g.add_fresh_value(&name, ValueType::default());
        self.fresh.insert(c, v);
        let node = self.node(&best, name, v)?;
        self.g.add_node(node)?;
        Ok(v)
    }

    /// The node computing `e` into `out`.
    fn node(&mut self, e: &Expr, name: String, out: ValueId) -> Result<Node> {
        let scalar = |egraph: &EGraph, c: Id| {
            egraph[c]
                .data
                .scalar
                .map(|v| v as f32)
                .ok_or_else(|| internal("a rewrite parameter is not a number"))
        };
        let mut attrs = Attrs::default();
        let (op, inputs) = match e {
            Expr::HardSigmoid([x, alpha, beta]) => {
                attrs.insert("alpha", Attr::Float(scalar(self.egraph, *alpha)?));
                attrs.insert("beta", Attr::Float(scalar(self.egraph, *beta)?));
                ("HardSigmoid", vec![Some(self.class(*x)?)])
            }
            Expr::GeluTanh([x]) => {
                attrs.insert("approximate", Attr::String("tanh".into()));
                ("Gelu", vec![Some(self.class(*x)?)])
            }
            Expr::LayerNorm([x, scale, bias, eps]) => {
                attrs.insert("axis", Attr::Int(-1));
                attrs.insert("epsilon", Attr::Float(scalar(self.egraph, *eps)?));
                let inputs = self.norm_inputs(*x, *scale, Some(*bias), &name)?;
                ("LayerNormalization", inputs)
            }
            Expr::Attention([q, k, v, mask, scale, heads]) => {
                let heads = scalar(self.egraph, *heads)? as i64;
                attrs.insert("q_num_heads", Attr::Int(heads));
                attrs.insert("kv_num_heads", Attr::Int(heads));
                attrs.insert("scale", Attr::Float(scalar(self.egraph, *scale)?));
                let mut inputs = vec![
                    Some(self.class(*q)?),
                    Some(self.class(*k)?),
                    Some(self.class(*v)?),
                ];
                if !matches!(self.extractor.find_best_node(*mask), Expr::Absent) {
                    inputs.push(Some(self.class(*mask)?));
                }
                ("Attention", inputs)
            }
            Expr::RmsNorm([x, scale, eps]) => {
                attrs.insert("axis", Attr::Int(-1));
                attrs.insert("epsilon", Attr::Float(scalar(self.egraph, *eps)?));
                (
                    "RMSNormalization",
                    self.norm_inputs(*x, *scale, None, &name)?,
                )
            }
            other => {
                let mut inputs = Vec::new();
                for &c in other.tensor_children() {
                    inputs.push(Some(self.class(c)?));
                }
                let op = op_name(other).ok_or_else(|| {
                    internal(format!(
                        "the rewrite pass chose {other}, which no op computes"
                    ))
                })?;
                (op, inputs)
            }
        };
        if e.recognized_op().is_some() {
            *self.introduced.entry(op.to_string()).or_default() += 1;
        }
        Ok(Node {
            name,
            op: op.into(),
            domain: String::new(),
            inputs,
            outputs: vec![Some(out)],
            attrs,
        })
    }

    /// A norm's inputs: `x`, its scale, and its bias where it has one
    /// (`bias` given and not [`Expr::Absent`]).
    fn norm_inputs(
        &mut self,
        x: Id,
        scale: Id,
        bias: Option<Id>,
        name: &str,
    ) -> Result<Vec<Option<ValueId>>> {
        let mut inputs = vec![
            Some(self.class(x)?),
            Some(self.norm_param(x, scale, 1.0, name)?),
        ];
        if let Some(bias) = bias
            && !matches!(self.extractor.find_best_node(bias), Expr::Absent)
        {
            inputs.push(Some(self.norm_param(x, bias, 0.0, name)?));
        }
        Ok(inputs)
    }

    /// A norm's scale or bias as a constant of shape `[channels]`: the
    /// model's own (reshaped), or `fill` where it has none.
    fn norm_param(&mut self, x: Id, param: Id, fill: f64, name: &str) -> Result<ValueId> {
        let facts = &self.egraph[self.egraph.find(x)].data;
        let (dtype, shape) = facts
            .known_type()
            .ok_or_else(|| internal("a norm's input has no known type"))?;
        let channels = shape
            .last()
            .and_then(wpc_ir::Dim::known)
            .ok_or_else(|| internal("a norm over no axis of static size"))?;
        let tensor = match self.egraph[param].iter().find_map(|n| match n {
            Expr::Value(Leaf(v)) => self.g.constants.get(v),
            _ => None,
        }) {
            Some(t) => t.clone().reshaped(vec![channels]),
            None => Tensor::from_f64s(dtype, vec![channels], vec![fill; channels]),
        };
        let what = if fill == 1.0 { "scale" } else { "bias" };
        Ok(self.g.add_constant(&format!("{name} {what}"), tensor))
    }
}

/// The ONNX op of an e-node a new node can be made for: a recognized
/// op, or one of the ops read from graphs that is made from its children
/// alone ([`plain_op`]).
fn op_name(e: &Expr) -> Option<&'static str> {
    plain_op(e).or_else(|| e.recognized_op())
}

/// The op of `e` where it is graph float arithmetic that a node
/// can be made for from its children alone (no attributes, no
/// opset-dependent form).
fn plain_op(e: &Expr) -> Option<&'static str> {
    Some(match e {
        Expr::Add(_) => "Add",
        Expr::Sub(_) => "Sub",
        Expr::Mul(_) => "Mul",
        Expr::Div(_) => "Div",
        Expr::Pow(_) => "Pow",
        Expr::Sqrt(_) => "Sqrt",
        Expr::Reciprocal(_) => "Reciprocal",
        Expr::Erf(_) => "Erf",
        Expr::Tanh(_) => "Tanh",
        Expr::Sigmoid(_) => "Sigmoid",
        Expr::Clip(_) => "Clip",
        _ => return None,
    })
}
