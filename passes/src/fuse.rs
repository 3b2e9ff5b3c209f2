//! Fuses chains of pointwise ops ([`OpClass::Pointwise`]) into single
//! `FusedElementwise` nodes, and a chain that reads the result of a
//! contraction ([`OpClass::Contraction`]: MatMul, Gemm, Conv) into that
//! contraction's kernel as a `FusedEpilogue` ([`wpc_ir::ops::fused`]): a
//! backend then computes a whole chain (an erf-GELU's five ops, a bias and
//! residual Add and the Relu after them, a HardSwish written as
//! `x*clip(x+3,0,6)/6`) in one kernel without writing the intermediates
//! to memory, and where a contraction heads it, on the values the
//! contraction still holds in registers.
//!
//! Which nodes may join a fused kernel is the backend's call (which ops and
//! dtypes its fused kernel computes, how many buffers one kernel may
//! bind, which operand layouts its epilogues load), so the pass runs per
//! variant with that backend's [`FusionTarget`].
//!
//! A group grows from a root (visited consumers first) into the producers
//! of its inputs, taking a producer only when every reader of the value it
//! makes is already in the group and the value is not a graph output: the
//! intermediates are then read nowhere else, so nothing needs them in
//! memory, and (every member but the root feeding only members) no path
//! can leave the group and come back, so the fused graph stays acyclic.
//! A contraction whose result only the group reads, of the shape the
//! group writes, may then join as the group's anchor (one per group; its
//! own inputs stay outside), if the backend lowers the result.

use std::collections::{BTreeSet, HashMap, HashSet};

use wpc_ir::ops::{OpClass, fused};
use wpc_ir::{Attr, Attrs, Graph, Model, Node, NodeId, Result, ValueId};

/// What a backend tells the fusion pass.
pub trait FusionTarget {
    /// Whether `node` of `graph` (a pointwise node with known types) can
    /// be computed inside this backend's fused elementwise kernel.
    fn fuses(&self, graph: &Graph, node: NodeId) -> bool;

    /// The most tensors one fused kernel may read (its output aside).
    fn max_inputs(&self) -> usize;

    /// Whether this backend lowers `node`, a candidate `FusedEpilogue`
    /// over values of `graph` (not yet in it), computing the tail in the
    /// anchor's store. Without an answer of its own a backend makes none.
    fn epilogue(&self, graph: &Graph, node: &Node) -> bool {
        let _ = (graph, node);
        false
    }

    /// Whether this backend has a kernel of its own for the default-domain
    /// `op`, one of those [`crate::rewrite`] may put in place of the
    /// nodes an exporter wrote (Gelu, Swish, SwiGLU, HardSigmoid,
    /// HardSwish, LayerNormalization, RMSNormalization, Attention). Where it has
    /// none, the written-out form stays, for its own kernels and fusion.
    fn has_kernel(&self, op: &str) -> bool;
}

/// What [`fuse`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FuseStats {
    /// Fused nodes made (of either kind).
    pub groups: usize,
    /// Nodes they replaced.
    pub nodes: usize,
    /// How many of the fused nodes are contractions with an epilogue.
    pub epilogues: usize,
}

/// Replaces every group of two or more fusible pointwise nodes with one
/// `FusedElementwise` node, or (a contraction heading it) with one
/// `FusedEpilogue` node.
pub fn fuse(model: &mut Model, target: &dyn FusionTarget) -> Result<FuseStats> {
    let g = &mut model.graph;
    let order = g.topo_order()?;
    let fusible: HashSet<NodeId> = order
        .iter()
        .copied()
        .filter(|&n| is_candidate(g, n) && target.fuses(g, n))
        .collect();
    let position: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut taken: HashSet<NodeId> = HashSet::new();
    let mut groups: Vec<(Vec<NodeId>, Node)> = Vec::new();
    for &root in order.iter().rev() {
        if !fusible.contains(&root) || taken.contains(&root) {
            continue;
        }
        let mut group = grow(g, root, &fusible, &taken, target.max_inputs());
        let fused = match with_anchor(g, &group, &taken, &position, target)? {
            Some((anchor, node)) => {
                group.push(anchor);
                Some(node)
            }
            None if group.len() >= 2 => {
                Some(fused_node(g, &group, &position, fused::FUSED_ELEMENTWISE)?)
            }
            None => None,
        };
        if let Some(node) = fused {
            taken.extend(group.iter().copied());
            groups.push((group, node));
        }
    }
    let mut stats = FuseStats::default();
    // Added in model order, so node ids do not depend on the order groups
    // were found in.
    groups.sort_by_key(|(grp, _)| grp.iter().map(|n| position[n]).min());
    for (group, node) in groups {
        stats.groups += 1;
        stats.nodes += group.len();
        stats.epilogues += usize::from(fused::is_fused_epilogue(&node));
        for &n in &group {
            g.remove_node(n);
        }
        g.add_node(node)?;
    }
    Ok(stats)
}

/// Whether every tensor `node` reads and writes has a known type: a dtype
/// and every size known, statically or as an expression over the model's
/// symbols.
fn is_typed_node(g: &Graph, node: &Node) -> bool {
    let is_static =
        |v: &ValueId| g.value(*v).ty.dtype.is_some() && g.value(*v).ty.shape.exprs().is_some();
    node.outputs.iter().flatten().all(is_static)
        && node
            .inputs
            .iter()
            .flatten()
            .all(|v| is_static(v) || g.constants.contains_key(v))
}

/// A default-domain pointwise node with one output, all of known type,
/// reading at least one tensor that is not a constant (constant folding
/// has computed the others).
fn is_candidate(g: &Graph, n: NodeId) -> bool {
    let node = g.node(n);
    wpc_ir::ops::class_of(&node.domain, &node.op) == OpClass::Pointwise
        && node.outputs.len() == 1
        && node.outputs[0].is_some()
        && is_typed_node(g, node)
        && node
            .inputs
            .iter()
            .flatten()
            .any(|v| !g.constants.contains_key(v))
}

/// The first contraction (in input order) that can head `group`: its one
/// output is read by the group alone, is not a graph output, and has the
/// shape the group writes, so the tail runs once per element the
/// contraction computes; and the backend lowers the result. Returns the
/// contraction and the `FusedEpilogue` node replacing both.
fn with_anchor(
    g: &Graph,
    group: &[NodeId],
    taken: &HashSet<NodeId>,
    position: &HashMap<NodeId, usize>,
    target: &dyn FusionTarget,
) -> Result<Option<(NodeId, Node)>> {
    let members: HashSet<NodeId> = group.iter().copied().collect();
    let root = group[0];
    let out = g.node(root).outputs[0].expect("candidates have an output");
    let out_shape = g.value(out).ty.shape.clone();
    for v in external_inputs(g, group) {
        let Some(p) = g.producer(v) else { continue };
        let node = g.node(p);
        let anchor = wpc_ir::ops::class_of(&node.domain, &node.op) == OpClass::Contraction
            && !taken.contains(&p)
            && node.outputs.iter().flatten().count() == 1
            && node.outputs[0] == Some(v)
            && is_typed_node(g, node)
            && g.value(v).ty.shape == out_shape
            && !g.outputs.contains(&v)
            && g.consumers(v).iter().all(|c| members.contains(c));
        if !anchor {
            continue;
        }
        let mut with = group.to_vec();
        with.push(p);
        let fused = fused_node(g, &with, position, fused::FUSED_EPILOGUE)?;
        if target.epilogue(g, &fused) {
            return Ok(Some((p, fused)));
        }
    }
    Ok(None)
}

/// Whether a group input is a scalar constant the body keeps for itself
/// (an exporter's `Constant` 3.0 or 0.5), rather than a tensor the fused
/// node reads. Only pointwise members inline them: an anchor reads its
/// inputs as the plain op does.
fn inlined(g: &Graph, reader: &Node, v: ValueId) -> bool {
    wpc_ir::ops::class_of(&reader.domain, &reader.op) == OpClass::Pointwise
        && g.constants.get(&v).is_some_and(|t| t.len() == 1)
}

/// The tensors `group` reads from outside itself: an anchor's first, in
/// its input order, then the others in first-read order.
fn external_inputs(g: &Graph, group: &[NodeId]) -> Vec<ValueId> {
    let members: HashSet<NodeId> = group.iter().copied().collect();
    let mut ordered: Vec<NodeId> = group.to_vec();
    ordered.sort_by_key(|&n| {
        let node = g.node(n);
        wpc_ir::ops::class_of(&node.domain, &node.op) != OpClass::Contraction
    });
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for n in ordered {
        let node = g.node(n);
        for &v in node.inputs.iter().flatten() {
            let inside = g.producer(v).is_some_and(|p| members.contains(&p));
            if !inside && !inlined(g, node, v) && seen.insert(v) {
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

/// The fused node (`op` of [`fused::DOMAIN`]) computing `group` (root
/// first) of `g`: its body is the group's nodes in model order
/// (`position`) over its external inputs, and it writes the root's output
/// value, so its readers need no rewiring. `g` is not changed.
fn fused_node(
    g: &Graph,
    group: &[NodeId],
    position: &HashMap<NodeId, usize>,
    op: &str,
) -> Result<Node> {
    let root = group[0];
    let mut ordered = group.to_vec();
    // In model order, but an epilogue's anchor first (its body starts
    // with it): it reads nothing of the group, while a pointwise member
    // that reads only outside values may come before it in the model.
    ordered.sort_by_key(|&n| {
        let node = g.node(n);
        let anchor = wpc_ir::ops::class_of(&node.domain, &node.op) == OpClass::Contraction;
        (!anchor, position[&n])
    });
    let inputs = external_inputs(g, &ordered);
    let out = g.node(root).outputs[0].expect("candidates have an output");
    let mut body = Graph::new(format!("{}_body", g.value(out).name));
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    for &v in &inputs {
        let b = body.add_value(g.value(v).name.clone(), g.value(v).ty.clone())?;
        body.inputs.push(b);
        map.insert(v, b);
    }
    for n in ordered {
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
        body.add_node(Node {
            inputs,
            outputs,
            ..node
        })?;
    }
    body.outputs.push(map[&out]);
    let mut attrs = Attrs::default();
    attrs.insert(fused::BODY, Attr::Graph(Box::new(body)));
    Ok(Node {
        name: format!("{} (fused)", g.node(root).name),
        op: op.into(),
        domain: fused::DOMAIN.into(),
        inputs: inputs.into_iter().map(Some).collect(),
        outputs: vec![Some(out)],
        attrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::GraphBuilder;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use wpc_ir::{DType, Dim, Tensor};

    /// Fuses every candidate, with room for `max_inputs` tensors, and
    /// makes every epilogue it is offered.
    struct Everything(usize);

    impl FusionTarget for Everything {
        fn fuses(&self, _: &Graph, _: NodeId) -> bool {
            true
        }
        fn max_inputs(&self) -> usize {
            self.0
        }
        fn epilogue(&self, _: &Graph, node: &Node) -> bool {
            node.inputs.len() <= self.0
        }
        fn has_kernel(&self, _: &str) -> bool {
            true
        }
    }

    /// [`Everything`] but epilogues.
    struct NoEpilogues(usize);

    impl FusionTarget for NoEpilogues {
        fn fuses(&self, _: &Graph, _: NodeId) -> bool {
            true
        }
        fn max_inputs(&self) -> usize {
            self.0
        }
        fn has_kernel(&self, _: &str) -> bool {
            true
        }
    }

    const UNARY: &[&str] = &["Relu", "Neg", "Tanh", "Sigmoid", "Abs", "Erf"];
    const BINARY: &[&str] = &["Add", "Sub", "Mul", "Max"];

    /// A random DAG over `x: [2,3,4]`, `y: [3,4]` and a scalar constant:
    /// each step applies a unary or binary pointwise op, or a MatMul by a
    /// constant 4×4 weight, to earlier values (or, at `opaque`, a Softmax
    /// that fusion must not cross); the last value and the value
    /// `also_out` picks are the graph's outputs.
    fn random_graph(steps: &[(usize, usize, usize)], opaque: usize, also_out: usize) -> Model {
        let mut b = GraphBuilder::new();
        let x = b.input(
            "x",
            DType::F32,
            vec![Dim::Known(2), Dim::Known(3), Dim::Known(4)],
        );
        let y = b.input("y", DType::F32, vec![Dim::Known(3), Dim::Known(4)]);
        let c = b.constant("half", Tensor::scalar(0.5f32));
        let w: Vec<f32> = (0..16).map(|i| ((i * 7 % 11) as f32 - 5.0) / 8.0).collect();
        let w = b.constant("w", Tensor::from_vec(vec![4, 4], w));
        let mut values = vec![x, y, c];
        // Whether each value has rank 2 or more (a MatMul can read it).
        let mut matrix = vec![true, true, false];
        for (k, &(op, a, bb)) in steps.iter().enumerate() {
            let pick = a % values.len();
            let a = values[pick];
            let mut is_matrix = matrix[pick];
            let v = if k == opaque {
                is_matrix = true;
                let wide = b.node("Add", &[a, x]);
                b.node("Softmax", &[wide])
            } else if op >= 12 {
                let m = if is_matrix { a } else { x };
                is_matrix = true;
                b.node("MatMul", &[m, w])
            } else if op % 2 == 0 {
                b.node(UNARY[op / 2 % UNARY.len()], &[a])
            } else {
                let other = bb % values.len();
                is_matrix |= matrix[other];
                b.node(BINARY[op / 2 % BINARY.len()], &[a, values[other]])
            };
            values.push(v);
            matrix.push(is_matrix);
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
        let stats = fuse(&mut model, &Everything(8)).unwrap();
        assert_eq!((stats.groups, stats.nodes, stats.epilogues), (1, 5, 0));
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
        let stats = fuse(&mut model, &Everything(8)).unwrap();
        assert_eq!((stats.groups, stats.nodes), (1, 2));
        let g = &model.graph;
        let relu = g.producer(r).map(|p| g.node(p).op.clone());
        assert_eq!(relu.as_deref(), Some("Relu"));
    }

    /// A linear layer as exporters write it (MatMul, then Add of the
    /// bias) and the erf-GELU after it, over the shared feeds' `x`.
    fn linear_gelu() -> Model {
        let mut b = GraphBuilder::new();
        let x = b.input(
            "x",
            DType::F32,
            vec![Dim::Known(2), Dim::Known(3), Dim::Known(4)],
        );
        b.input("y", DType::F32, vec![Dim::Known(3), Dim::Known(4)]);
        let w = b.constant(
            "w",
            Tensor::from_vec(vec![4, 4], (0..16).map(|i| i as f32 / 16.0).collect()),
        );
        let bias = b.constant(
            "bias",
            Tensor::from_vec(vec![4], vec![0.1f32, -0.2, 0.3, -0.4]),
        );
        let sqrt2 = b.constant("sqrt2", Tensor::scalar(std::f32::consts::SQRT_2));
        let one = b.constant("one", Tensor::scalar(1.0f32));
        let half = b.constant("half", Tensor::scalar(0.5f32));
        let mm = b.node("MatMul", &[x, w]);
        let h = b.node("Add", &[mm, bias]);
        let d = b.node("Div", &[h, sqrt2]);
        let e = b.node("Erf", &[d]);
        let a = b.node("Add", &[e, one]);
        let m = b.node("Mul", &[h, a]);
        let y = b.node("Mul", &[m, half]);
        let mut model = b.finish(&[y]);
        crate::shape_inference::infer_shapes(&mut model).unwrap();
        model
    }

    #[test]
    fn a_linear_layer_and_its_gelu_become_one_matmul_with_an_epilogue() {
        let mut model = linear_gelu();
        let before = run(&model);
        let stats = fuse(&mut model, &Everything(8)).unwrap();
        assert_eq!((stats.groups, stats.nodes, stats.epilogues), (1, 7, 1));
        let g = &model.graph;
        let only: Vec<_> = g.node_ids().map(|n| g.node(n)).collect();
        assert_eq!(only.len(), 1);
        let e = fused::epilogue(only[0]).unwrap();
        assert_eq!(e.anchor.op, "MatMul");
        // The anchor reads x and the weight; the tail the bias.
        assert_eq!(e.anchor_inputs, vec![Some(0), Some(1)]);
        assert_eq!(only[0].inputs.len(), 3);
        assert_eq!(e.tail.len(), 6);
        assert_eq!(run(&model), before);

        // A backend without epilogues gets the chain fused on its own.
        let mut model = linear_gelu();
        let stats = fuse(&mut model, &NoEpilogues(8)).unwrap();
        assert_eq!((stats.groups, stats.nodes, stats.epilogues), (1, 6, 0));
        assert_eq!(run(&model), before);
    }

    #[test]
    fn a_contraction_read_twice_or_broadcast_up_heads_no_epilogue() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, vec![Dim::Known(3), Dim::Known(4)]);
        let big = b.input(
            "y",
            DType::F32,
            vec![Dim::Known(2), Dim::Known(3), Dim::Known(4)],
        );
        let w = b.constant("w", Tensor::from_vec(vec![4, 4], vec![0.25f32; 16]));
        let shared = b.node("MatMul", &[x, w]);
        let r = b.node("Relu", &[shared]);
        let s = b.node("Softmax", &[shared]);
        // [3,4] + [2,3,4]: the Add writes more elements than the MatMul.
        let wide = b.node("MatMul", &[x, w]);
        let up = b.node("Add", &[wide, big]);
        let mut model = b.finish(&[r, s, up]);
        crate::shape_inference::infer_shapes(&mut model).unwrap();
        let stats = fuse(&mut model, &Everything(8)).unwrap();
        assert_eq!(stats.epilogues, 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Fusing (epilogues too) never changes what the graph computes
        /// (the body runs the same kernels, so bit for bit), keeps it
        /// acyclic, respects the input limit and makes well-formed
        /// epilogues.
        #[test]
        fn fusion_keeps_the_outputs(
            steps in proptest::collection::vec((0usize..14, 0usize..64, 0usize..64), 1..14),
            opaque in 0usize..20,
            also_out in 0usize..64,
            max_inputs in 1usize..4,
        ) {
            let mut model = random_graph(&steps, opaque, also_out);
            let before = run(&model);
            let count = model.graph.node_count();
            let stats = fuse(&mut model, &Everything(max_inputs)).unwrap();
            let g = &model.graph;
            prop_assert!(g.topo_order().is_ok());
            prop_assert_eq!(g.node_count(), count - stats.nodes + stats.groups);
            for n in g.node_ids() {
                let node = g.node(n);
                if fused::is_fused_elementwise(node) {
                    prop_assert!(node.inputs.len() <= max_inputs);
                }
                if fused::is_fused_epilogue(node) {
                    let split = fused::epilogue(node);
                    prop_assert!(split.is_ok(), "{:?}", split.err());
                }
            }
            prop_assert_eq!(run(&model), before);
        }
    }
}
