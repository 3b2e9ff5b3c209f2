//! The graph IR: ops as nodes of a petgraph DAG, tensors as typed values.
//!
//! Values (every tensor name of the ONNX graph) live in an arena and are
//! referred to by [`ValueId`]; nodes live in a `StableGraph` whose edges run
//! from producer to consumer, so removing a node never invalidates another
//! node's id. Initializers are values with a constant attached.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;

use crate::attr::Attrs;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// A value (tensor) of a graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(u32);

impl ValueId {
    /// The id of the `index`-th value of a graph (for code that evaluates a
    /// node outside any graph, such as the WebAssembly reference module).
    pub fn from_index(index: usize) -> ValueId {
        ValueId(index as u32)
    }

    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// An op node of a graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(NodeIndex);

/// What is known statically about a value: its dtype and (symbolic) shape.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ValueType {
    pub dtype: Option<DType>,
    pub shape: Shape,
}

impl ValueType {
    pub fn new(dtype: DType, shape: Shape) -> ValueType {
        ValueType {
            dtype: Some(dtype),
            shape,
        }
    }

    /// The type of a concrete tensor.
    pub fn of(t: &Tensor) -> ValueType {
        ValueType::new(t.dtype(), Shape::known(t.shape()))
    }
}

/// A named tensor of the graph.
#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    pub ty: ValueType,
    /// True when the value is defined by an enclosing graph (a subgraph of
    /// `If`, `Loop` or `Scan` reading its parent's tensors by name).
    pub outer: bool,
}

/// One op application.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: String,
    /// The op's domain; empty for the default ONNX domain.
    pub domain: String,
    /// Inputs by position; `None` for an omitted optional input.
    pub inputs: Vec<Option<ValueId>>,
    /// Outputs by position; `None` for an omitted optional output.
    pub outputs: Vec<Option<ValueId>>,
    pub attrs: Attrs,
}

impl Node {
    /// The node's name and op, for error messages.
    pub fn context(&self) -> String {
        Error::node_context(&self.name, &self.op)
    }
}

/// A dataflow graph (the main graph of a model, or a subgraph).
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    dag: StableDiGraph<Node, ValueId>,
    values: Vec<Value>,
    producer: Vec<Option<NodeId>>,
    /// For each value, the nodes reading it (inputs and subgraph captures),
    /// kept in step with `reads_of` so consumer queries never scan the graph.
    users: Vec<Vec<NodeId>>,
    /// What each node read when it was last wired.
    reads_of: HashMap<NodeId, Vec<ValueId>>,
    by_name: HashMap<String, ValueId>,
    /// Graph inputs, in order.
    pub inputs: Vec<ValueId>,
    /// Graph outputs, in order.
    pub outputs: Vec<ValueId>,
    /// Constant values (initializers and folded results).
    pub constants: BTreeMap<ValueId, Tensor>,
    /// Values computed from symbolic sizes that no kernel computes: shape
    /// arithmetic whose result only steers other ops (a `Reshape`'s
    /// shape, an `Expand`'s, a `Range`'s limit), known as expressions over
    /// the model's symbols (see `passes::static_shapes`). A backend reads
    /// them as it reads constants, with sizes it learns at run time.
    pub sizes: BTreeMap<ValueId, crate::ops::symbolic::SymValue>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    /// Adds a value; names must be unique within the graph.
    pub fn add_value(&mut self, name: impl Into<String>, ty: ValueType) -> Result<ValueId> {
        let name = name.into();
        if self.by_name.contains_key(&name) {
            return Err(Error::invalid(format!(
                "tensor name '{name}' is defined twice"
            )));
        }
        let id = ValueId(self.values.len() as u32);
        self.by_name.insert(name.clone(), id);
        self.values.push(Value {
            name,
            ty,
            outer: false,
        });
        self.producer.push(None);
        self.users.push(Vec::new());
        Ok(id)
    }

    /// Adds a value with a fresh name derived from `hint`.
    pub fn add_fresh_value(&mut self, hint: &str, ty: ValueType) -> ValueId {
        let mut name = hint.to_string();
        let mut n = 0;
        while self.by_name.contains_key(&name) {
            n += 1;
            name = format!("{hint}__{n}");
        }
        self.add_value(name, ty).expect("fresh name is unique")
    }

    /// Adds `t` as a constant (an initializer) under a fresh name
    /// derived from `hint`.
    pub fn add_constant(&mut self, hint: &str, t: Tensor) -> ValueId {
        let v = self.add_fresh_value(hint, ValueType::of(&t));
        self.constants.insert(v, t);
        v
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        &mut self.values[id.index()]
    }

    pub fn value_ids(&self) -> impl Iterator<Item = ValueId> + '_ {
        (0..self.values.len() as u32).map(ValueId)
    }

    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.by_name.get(name).copied()
    }

    /// The node producing `v`, if any (inputs and constants have none).
    pub fn producer(&self, v: ValueId) -> Option<NodeId> {
        self.producer[v.index()]
    }

    /// Adds a node; its outputs must not already have a producer.
    pub fn add_node(&mut self, node: Node) -> Result<NodeId> {
        for &o in node.outputs.iter().flatten() {
            if self.producer[o.index()].is_some() || self.constants.contains_key(&o) {
                let name = &self.values[o.index()].name;
                return Err(Error::invalid(format!("tensor '{name}' is produced twice"))
                    .within(node.context()));
            }
        }
        let outputs: Vec<ValueId> = node.outputs.iter().flatten().copied().collect();
        let id = NodeId(self.dag.add_node(node));
        for &o in &outputs {
            self.producer[o.index()] = Some(id);
        }
        self.rewire(id);
        // Nodes added earlier may already read these outputs (passes add
        // producers after consumers): give them their edges too.
        for o in outputs {
            for consumer in self.users[o.index()].clone() {
                if consumer != id {
                    self.dag.add_edge(id.0, consumer.0, o);
                }
            }
        }
        Ok(id)
    }

    /// Removes a node and returns it; its outputs lose their producer.
    pub fn remove_node(&mut self, id: NodeId) -> Node {
        let node = self.dag.remove_node(id.0).expect("node id is live");
        for &o in node.outputs.iter().flatten() {
            self.producer[o.index()] = None;
        }
        for v in self.reads_of.remove(&id).unwrap_or_default() {
            self.users[v.index()].retain(|&u| u != id);
        }
        node
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.dag[id.0]
    }

    /// Mutable access to a node. Call [`Graph::rewire`] after changing its inputs.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.dag[id.0]
    }

    /// The values `id` reads: its inputs and what its subgraphs capture by name.
    pub fn reads(&self, id: NodeId) -> Vec<ValueId> {
        let node = &self.dag[id.0];
        let mut reads: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
        for sub in node.attrs.subgraphs() {
            reads.extend(
                sub.outer_names()
                    .iter()
                    .filter_map(|name| self.find_value(name)),
            );
        }
        reads
    }

    /// Recomputes the incoming edges of `id` from what it reads.
    pub fn rewire(&mut self, id: NodeId) {
        let old: Vec<_> = self
            .dag
            .edges_directed(id.0, petgraph::Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.dag.remove_edge(e);
        }
        for v in self.reads_of.remove(&id).unwrap_or_default() {
            self.users[v.index()].retain(|&u| u != id);
        }
        let reads = self.reads(id);
        for &v in &reads {
            if let Some(p) = self.producer[v.index()] {
                self.dag.add_edge(p.0, id.0, v);
            }
            if !self.users[v.index()].contains(&id) {
                self.users[v.index()].push(id);
            }
        }
        self.reads_of.insert(id, reads);
    }

    pub fn node_count(&self) -> usize {
        self.dag.node_count()
    }

    /// All node ids, in no particular order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.dag.node_indices().map(NodeId)
    }

    /// The nodes in an order where every producer precedes its consumers.
    /// Ties keep the order nodes were added in, so evaluation is deterministic.
    pub fn topo_order(&self) -> Result<Vec<NodeId>> {
        let mut indegree: HashMap<NodeIndex, usize> = HashMap::new();
        for n in self.dag.node_indices() {
            indegree.insert(
                n,
                self.dag
                    .edges_directed(n, petgraph::Direction::Incoming)
                    .count(),
            );
        }
        let mut ready: std::collections::BTreeSet<NodeIndex> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(n) = ready.pop_first() {
            order.push(NodeId(n));
            for e in self.dag.edges_directed(n, petgraph::Direction::Outgoing) {
                let d = indegree.get_mut(&e.target()).expect("target is a node");
                *d -= 1;
                if *d == 0 {
                    ready.insert(e.target());
                }
            }
        }
        if order.len() != indegree.len() {
            return Err(Error::invalid(format!("graph '{}' has a cycle", self.name)));
        }
        Ok(order)
    }

    /// The nodes reading `v` (as an input or a subgraph capture).
    pub fn consumers(&self, v: ValueId) -> Vec<NodeId> {
        self.users[v.index()].clone()
    }

    /// Replaces every read of `old` (by nodes and graph outputs) with `new`.
    pub fn replace_uses(&mut self, old: ValueId, new: ValueId) {
        for n in self.consumers(old) {
            for i in self.dag[n.0].inputs.iter_mut() {
                if *i == Some(old) {
                    *i = Some(new);
                }
            }
            self.rewire(n);
        }
        for o in self.outputs.iter_mut() {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Names of values this graph reads from enclosing graphs, including
    /// those read by its own subgraphs.
    pub fn outer_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .values
            .iter()
            .filter(|v| v.outer)
            .map(|v| v.name.clone())
            .collect();
        for n in self.dag.node_weights() {
            for g in n.attrs.subgraphs() {
                for name in g.outer_names() {
                    if self.find_value(&name).is_none() {
                        names.push(name);
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }
}

/// A whole model: the main graph plus the opsets it was written against.
#[derive(Clone, Debug)]
pub struct Model {
    pub graph: Graph,
    /// Opset version per domain (`""` is the default ONNX domain).
    pub opsets: BTreeMap<String, u32>,
    pub ir_version: i64,
    pub producer: String,
    /// The external data files the importer read tensors from (resolved
    /// paths): with the model file, what it was built from.
    pub external_data: Vec<PathBuf>,
    /// The sizes each symbolic dim may take (inclusive), where compiling
    /// bounded it: shape inference decides `min(seq, 512)` by them.
    /// A symbol not listed may be any size.
    pub dim_ranges: BTreeMap<String, (usize, usize)>,
    /// The symbols whose size only the data decides (NonZero's count),
    /// each with the name of the value it is a dim of (the output of the
    /// node that counts it): shape inference adds them, with their ranges
    /// in `dim_ranges`; runtimes learn their sizes from the kernels
    /// instead of the inputs.
    pub counted_dims: BTreeMap<String, String>,
}

/// The range of symbol `name` for [`crate::sym::Expr::bounds`] under
/// [`Model::dim_ranges`] `ranges`: its bound, or any size.
pub fn dim_range(ranges: &BTreeMap<String, (usize, usize)>, name: &str) -> Option<(i64, i64)> {
    match ranges.contains_key(name) {
        true => bounded_range(ranges, name),
        false => Some((0, i64::MAX)),
    }
}

/// The bound `ranges` gives symbol `name`, if any (what sizes a buffer
/// for it).
pub fn bounded_range(ranges: &BTreeMap<String, (usize, usize)>, name: &str) -> Option<(i64, i64)> {
    let &(lo, hi) = ranges.get(name)?;
    Some((i64::try_from(lo).ok()?, i64::try_from(hi).ok()?))
}

impl Model {
    /// The default-domain opset version.
    pub fn opset(&self) -> u32 {
        self.opsets.get("").copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(g: &mut Graph, op: &str, inputs: &[ValueId], out: &str) -> (NodeId, ValueId) {
        let o = g.add_value(out, ValueType::default()).unwrap();
        let n = Node {
            name: out.into(),
            op: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|&i| Some(i)).collect(),
            outputs: vec![Some(o)],
            attrs: Attrs::default(),
        };
        (g.add_node(n).unwrap(), o)
    }

    #[test]
    fn edges_and_consumers_follow_every_mutation() {
        let mut g = Graph::new("g");
        let x = g.add_value("x", ValueType::default()).unwrap();
        let (a, av) = node(&mut g, "Relu", &[x], "a");
        let (b, bv) = node(&mut g, "Neg", &[av], "b");
        // A consumer added before its producer (as passes do) still orders after it.
        let late = g.add_value("late", ValueType::default()).unwrap();
        let (c, _) = node(&mut g, "Add", &[bv, late], "c");
        let (p, _) = {
            let n = Node {
                name: "p".into(),
                op: "Abs".into(),
                domain: String::new(),
                inputs: vec![Some(x)],
                outputs: vec![Some(late)],
                attrs: Attrs::default(),
            };
            (g.add_node(n).unwrap(), late)
        };
        let order = g.topo_order().unwrap();
        let pos = |n| order.iter().position(|&o| o == n).unwrap();
        assert!(pos(a) < pos(b) && pos(b) < pos(c) && pos(p) < pos(c));
        assert_eq!(g.consumers(x), vec![a, p]);
        // Rewiring c to read x directly drops it from b's consumers.
        g.replace_uses(bv, x);
        assert!(g.consumers(bv).is_empty());
        assert!(g.consumers(x).contains(&c));
        g.remove_node(c);
        assert!(!g.consumers(x).contains(&c));
        assert!(
            g.add_node(Node {
                name: "dup".into(),
                op: "Relu".into(),
                domain: String::new(),
                inputs: vec![],
                outputs: vec![Some(av)],
                attrs: Attrs::default()
            })
            .is_err(),
            "a value is produced once"
        );
    }
}
