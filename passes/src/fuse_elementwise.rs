//! Fuses chains of pointwise ops ([`OpClass::Pointwise`]) into single
//! `FusedElementwise` nodes ([`wpc_ir::ops::fused`]), so a backend
//! computes a whole chain (an erf-GELU's five ops, a residual Add and the
//! Relu after it, a HardSwish written as `x*clip(x+3,0,6)/6`) in one
//! kernel without writing the intermediates to memory.
//!
//! Which nodes may join a fused kernel is the backend's call (which ops and
//! dtypes its fused kernel computes, how many buffers one kernel may
//! bind), so the pass runs per variant with that backend's
//! [`FusionTarget`].
//!
//! A group grows from a root (visited consumers first) into the producers
//! of its inputs, taking a producer only when every reader of the value it
//! makes is already in the group and the value is not a graph output: the
//! intermediates are then read nowhere else, so nothing needs them in
//! memory, and (every member but the root feeding only members) no path
//! can leave the group and come back, so the fused graph stays acyclic.

use std::collections::{BTreeSet, HashMap, HashSet};

use wpc_ir::ops::{OpClass, fused};
use wpc_ir::{Attr, Attrs, Graph, Model, Node, NodeId, Result, ValueId};

/// What a backend tells the fusion pass.
pub trait FusionTarget {
    /// Whether `node` of `graph` (a pointwise node with static types) can
    /// be computed inside this backend's fused elementwise kernel.
    fn fuses(&self, graph: &Graph, node: NodeId) -> bool;

    /// The most tensors one fused kernel may read (its output aside).
    fn max_inputs(&self) -> usize;
}

/// What [`fuse_elementwise`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FuseStats {
    /// Fused nodes made.
    pub groups: usize,
    /// Pointwise nodes they replaced.
    pub nodes: usize,
}

/// Replaces every group of two or more fusible pointwise nodes with one
/// `FusedElementwise` node.
pub fn fuse_elementwise(model: &mut Model, target: &dyn FusionTarget) -> Result<FuseStats> {
    let g = &mut model.graph;
    let order = g.topo_order()?;
    let fusible: HashSet<NodeId> = order
        .iter()
        .copied()
        .filter(|&n| is_candidate(g, n) && target.fuses(g, n))
        .collect();
    let mut taken: HashSet<NodeId> = HashSet::new();
    let mut groups: Vec<Vec<NodeId>> = Vec::new();
    for &root in order.iter().rev() {
        if !fusible.contains(&root) || taken.contains(&root) {
            continue;
        }
        let group = grow(g, root, &fusible, &taken, target.max_inputs());
        if group.len() >= 2 {
            taken.extend(group.iter().copied());
            groups.push(group);
        }
    }
    let mut stats = FuseStats::default();
    // Rewritten in model order, so names and bodies do not depend on the
    // order groups were found in.
    let position: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    groups.sort_by_key(|grp| position[&grp[0]]);
    for mut group in groups {
        group.sort_by_key(|n| position[n]);
        stats.groups += 1;
        stats.nodes += group.len();
        replace_group(g, &group)?;
    }
    Ok(stats)
}

/// A default-domain pointwise node with one output, all of static type,
/// reading at least one tensor that is not a constant (constant folding
/// has computed the others).
fn is_candidate(g: &Graph, n: NodeId) -> bool {
    let node = g.node(n);
    let is_static =
        |v: &ValueId| g.value(*v).ty.dtype.is_some() && g.value(*v).ty.shape.concrete().is_some();
    wpc_ir::ops::class_of(&node.domain, &node.op) == OpClass::Pointwise
        && node.outputs.len() == 1
        && node.outputs[0].is_some_and(|o| is_static(&o))
        && node
            .inputs
            .iter()
            .flatten()
            .all(|v| is_static(v) || g.constants.contains_key(v))
        && node
            .inputs
            .iter()
            .flatten()
            .any(|v| !g.constants.contains_key(v))
}

/// Whether a group input is a scalar constant the body keeps for itself
/// (an exporter's `Constant` 3.0 or 0.5), rather than a tensor the fused
/// node reads.
fn inlined(g: &Graph, v: ValueId) -> bool {
    g.constants.get(&v).is_some_and(|t| t.len() == 1)
}

/// The tensors `group` reads from outside itself, in first-read order.
fn external_inputs(g: &Graph, group: &[NodeId]) -> Vec<ValueId> {
    let members: HashSet<NodeId> = group.iter().copied().collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for &n in group {
        for &v in g.node(n).inputs.iter().flatten() {
            let inside = g.producer(v).is_some_and(|p| members.contains(&p));
            if !inside && !inlined(g, v) && seen.insert(v) {
                out.push(v);
            }
        }
    }
    out
}

/// The group rooted at `root`: members in discovery order, root first.
fn grow(
    g: &Graph,
    root: NodeId,
    fusible: &HashSet<NodeId>,
    taken: &HashSet<NodeId>,
    max_inputs: usize,
) -> Vec<NodeId> {
    let mut group = vec![root];
    let mut members: HashSet<NodeId> = HashSet::from([root]);
    let mut next = 0;
    while next < group.len() {
        let n = group[next];
        next += 1;
        for v in g.node(n).inputs.clone().into_iter().flatten() {
            let Some(p) = g.producer(v) else { continue };
            if members.contains(&p)
                || !fusible.contains(&p)
                || taken.contains(&p)
                || g.outputs.contains(&v)
                || !g.consumers(v).iter().all(|c| members.contains(c))
            {
                continue;
            }
            group.push(p);
            if external_inputs(g, &group).len() > max_inputs {
                group.pop();
                continue;
            }
            members.insert(p);
        }
    }
    group
}

/// Swaps `group` (in model order, root last) for one fused node that
/// writes the root's output value, so its readers need no rewiring.
fn replace_group(g: &mut Graph, group: &[NodeId]) -> Result<()> {
    let inputs = external_inputs(g, group);
    let root = *group.last().expect("a group has members");
    let out = g.node(root).outputs[0].expect("candidates have an output");
    let mut body = Graph::new(format!("{}_body", g.value(out).name));
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    for &v in &inputs {
        let b = body.add_value(g.value(v).name.clone(), g.value(v).ty.clone())?;
        body.inputs.push(b);
        map.insert(v, b);
    }
    let mut nodes = Vec::new();
    for &n in group {
        let node = g.node(n).clone();
        let mut remap = |v: ValueId, body: &mut Graph| -> Result<ValueId> {
            if let Some(&b) = map.get(&v) {
                return Ok(b);
            }
            let b = body.add_value(g.value(v).name.clone(), g.value(v).ty.clone())?;
            if let Some(t) = g.constants.get(&v) {
                body.constants.insert(b, t.clone());
            }
            map.insert(v, b);
            Ok(b)
        };
        let inputs = node
            .inputs
            .iter()
            .map(|v| v.map(|v| remap(v, &mut body)).transpose())
            .collect::<Result<Vec<_>>>()?;
        let outputs = node
            .outputs
            .iter()
            .map(|v| v.map(|v| remap(v, &mut body)).transpose())
            .collect::<Result<Vec<_>>>()?;
        nodes.push(Node {
            inputs,
            outputs,
            ..node
        });
    }
    for node in nodes {
        body.add_node(node)?;
    }
    body.outputs.push(map[&out]);
    let name = format!("{} (fused)", g.node(root).name);
    for &n in group {
        g.remove_node(n);
    }
    let mut attrs = Attrs::default();
    attrs.insert(fused::BODY, Attr::Graph(Box::new(body)));
    g.add_node(Node {
        name,
        op: fused::FUSED_ELEMENTWISE.into(),
        domain: fused::DOMAIN.into(),
        inputs: inputs.into_iter().map(Some).collect(),
        outputs: vec![Some(out)],
        attrs,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::GraphBuilder;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use wpc_ir::{DType, Dim, Tensor};

    /// Fuses every candidate, with room for `max_inputs` tensors.
    struct Everything(usize);

    impl FusionTarget for Everything {
        fn fuses(&self, _: &Graph, _: NodeId) -> bool {
            true
        }
        fn max_inputs(&self) -> usize {
            self.0
        }
    }

    const UNARY: &[&str] = &["Relu", "Neg", "Tanh", "Sigmoid", "Abs", "Erf"];
    const BINARY: &[&str] = &["Add", "Sub", "Mul", "Max"];

    /// A random DAG over `x: [2,3,4]`, `y: [3,4]` and a scalar constant:
    /// each step applies a unary or binary pointwise op (or, at `opaque`,
    /// a Softmax that fusion must not cross) to earlier values; the last
    /// value and the value `also_out` picks are the graph's outputs.
    fn random_graph(steps: &[(usize, usize, usize)], opaque: usize, also_out: usize) -> Model {
        let mut b = GraphBuilder::new();
        let x = b.input(
            "x",
            DType::F32,
            vec![Dim::Known(2), Dim::Known(3), Dim::Known(4)],
        );
        let y = b.input("y", DType::F32, vec![Dim::Known(3), Dim::Known(4)]);
        let c = b.constant("half", Tensor::scalar(0.5f32));
        let mut values = vec![x, y, c];
        for (k, &(op, a, bb)) in steps.iter().enumerate() {
            let a = values[a % values.len()];
            let v = if k == opaque {
                let wide = b.node("Add", &[a, x]);
                b.node("Softmax", &[wide])
            } else if op % 2 == 0 {
                b.node(UNARY[op / 2 % UNARY.len()], &[a])
            } else {
                let other = values[bb % values.len()];
                b.node(BINARY[op / 2 % BINARY.len()], &[a, other])
            };
            values.push(v);
        }
        let last = *values.last().expect("at least one step");
        let extra = values[3 + also_out % steps.len()];
        let outs = if extra == last {
            vec![last]
        } else {
            vec![last, extra]
        };
        let mut model = b.finish(&outs);
        crate::shape_inference::infer_shapes(&mut model).unwrap();
        model
    }

    fn run(model: &Model) -> Vec<Vec<f64>> {
        let x: Vec<f32> = (0..24).map(|i| (i as f32 - 11.5) / 4.0).collect();
        let y: Vec<f32> = (0..12).map(|i| (i as f32 * 0.7).sin()).collect();
        let feeds = HashMap::from([
            ("x".to_string(), Tensor::from_vec(vec![2, 3, 4], x)),
            ("y".to_string(), Tensor::from_vec(vec![3, 4], y)),
        ]);
        wpc_ir::interp::run_model(model, &feeds)
            .unwrap()
            .into_iter()
            .map(|(_, t)| t.to_f64s())
            .collect()
    }

    #[test]
    fn gelu_as_torch_writes_it_becomes_one_node() {
        let mut b = GraphBuilder::new();
        let x = b.input(
            "x",
            DType::F32,
            vec![Dim::Known(2), Dim::Known(3), Dim::Known(4)],
        );
        // Unread, for the shared feeds.
        b.input("y", DType::F32, vec![Dim::Known(3), Dim::Known(4)]);
        let sqrt2 = b.constant("sqrt2", Tensor::scalar(std::f32::consts::SQRT_2));
        let one = b.constant("one", Tensor::scalar(1.0f32));
        let half = b.constant("half", Tensor::scalar(0.5f32));
        let d = b.node("Div", &[x, sqrt2]);
        let e = b.node("Erf", &[d]);
        let a = b.node("Add", &[e, one]);
        let m = b.node("Mul", &[x, a]);
        let y = b.node("Mul", &[m, half]);
        let mut model = b.finish(&[y]);
        crate::shape_inference::infer_shapes(&mut model).unwrap();
        let before = run(&model);
        let stats = fuse_elementwise(&mut model, &Everything(8)).unwrap();
        assert_eq!((stats.groups, stats.nodes), (1, 5));
        let g = &model.graph;
        let only: Vec<_> = g.node_ids().map(|n| g.node(n)).collect();
        assert_eq!(only.len(), 1);
        assert!(fused::is_fused_elementwise(only[0]));
        // The scalars live in the body; the node reads x alone.
        assert_eq!(only[0].inputs, vec![Some(x)]);
        assert_eq!(fused::body(only[0]).unwrap().constants.len(), 3);
        assert_eq!(run(&model), before);
    }

    #[test]
    fn a_value_read_outside_the_chain_stays_in_memory() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, vec![Dim::Known(4)]);
        let r = b.node("Relu", &[x]);
        let n = b.node("Neg", &[r]);
        let t = b.node("Tanh", &[n]);
        // `r` is also read by the Softmax: Relu stays a node of its own.
        let s = b.node("Softmax", &[r]);
        let mut model = b.finish(&[t, s]);
        crate::shape_inference::infer_shapes(&mut model).unwrap();
        let stats = fuse_elementwise(&mut model, &Everything(8)).unwrap();
        assert_eq!((stats.groups, stats.nodes), (1, 2));
        let g = &model.graph;
        let relu = g.producer(r).map(|p| g.node(p).op.clone());
        assert_eq!(relu.as_deref(), Some("Relu"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Fusing never changes what the graph computes (the body runs the
        /// same kernels, so bit for bit), keeps it acyclic, respects the
        /// input limit and leaves no fusible pair of neighbours unfused.
        #[test]
        fn fusion_keeps_the_outputs(
            steps in proptest::collection::vec((0usize..12, 0usize..64, 0usize..64), 1..14),
            opaque in 0usize..20,
            also_out in 0usize..64,
            max_inputs in 1usize..4,
        ) {
            let mut model = random_graph(&steps, opaque, also_out);
            let before = run(&model);
            let count = model.graph.node_count();
            let stats = fuse_elementwise(&mut model, &Everything(max_inputs)).unwrap();
            let g = &model.graph;
            prop_assert!(g.topo_order().is_ok());
            prop_assert_eq!(g.node_count(), count - stats.nodes + stats.groups);
            for n in g.node_ids() {
                let node = g.node(n);
                if fused::is_fused_elementwise(node) {
                    prop_assert!(node.inputs.len() <= max_inputs);
                }
            }
            prop_assert_eq!(run(&model), before);
        }
    }
}
