//! Recognizes LayerNorm written out as the exporters write it (torch
//! before opset 17, transformers' BERT, tf2onnx):
//!
//! ```text
//! mean = ReduceMean(x, last axis)      d = Sub(x, mean)
//! var  = ReduceMean(Pow(d, 2) or Mul(d, d), last axis)
//! y    = Div(d, Sqrt(Add(var, eps)))   [· gamma]  [+ beta]
//! ```
//!
//! and replaces the chain (up to nine nodes, four of them reductions) with
//! one `LayerNormalization` over the last axis, which every backend
//! computes in a single pass over each row. Applies only when each
//! intermediate is read by the chain alone, eps is a scalar constant and
//! gamma and beta (where present) are constants along the last axis.

use std::collections::HashSet;

use wpc_ir::{Attr, Attrs, DType, Graph, Model, Node, NodeId, Result, Tensor, ValueId, ValueType};

/// Replaces every decomposed LayerNorm; returns how many.
pub fn fold_layer_norm(model: &mut Model) -> Result<usize> {
    let g = &mut model.graph;
    let mut removed: HashSet<NodeId> = HashSet::new();
    let mut folded = 0;
    for div in g.topo_order()? {
        if removed.contains(&div) {
            continue;
        }
        let Some(m) = match_at(g, div) else {
            continue;
        };
        removed.extend(m.nodes.iter().copied());
        rewrite(g, m)?;
        folded += 1;
    }
    Ok(folded)
}

/// A matched chain.
struct Chain {
    x: ValueId,
    epsilon: f32,
    gamma: Option<ValueId>,
    beta: Option<ValueId>,
    /// The chain's last value, which the LayerNormalization produces.
    out: ValueId,
    /// The nodes it replaces; the Div first.
    nodes: Vec<NodeId>,
}

/// The node producing `v` if it is the default-domain `op`, with the
/// value read only by `reader` and not a graph output.
fn only_for(g: &Graph, v: ValueId, op: &str, readers: &[NodeId]) -> Option<NodeId> {
    let p = g.producer(v)?;
    let node = g.node(p);
    let mut consumers = g.consumers(v);
    consumers.sort();
    consumers.dedup();
    let mut expected = readers.to_vec();
    expected.sort();
    expected.dedup();
    (node.op == op && node.domain.is_empty() && consumers == expected && !g.outputs.contains(&v))
        .then_some(p)
}

fn input(node: &Node, i: usize) -> Option<ValueId> {
    node.inputs.get(i).copied().flatten()
}

fn scalar(g: &Graph, v: ValueId) -> Option<f32> {
    let t = g.constants.get(&v)?;
    (t.len() == 1 && t.dtype() == DType::F32).then(|| t.to_f32s()[0])
}

/// Whether `n` is a ReduceMean over exactly the last axis of its input,
/// keeping dims.
fn mean_of_last_axis(g: &Graph, n: NodeId) -> Option<ValueId> {
    let node = g.node(n);
    let x = input(node, 0)?;
    let rank = g.value(x).ty.shape.concrete()?.len();
    let params = wpc_ir::ops::params::Reduce::of(&node.attrs).ok()?;
    let given = match input(node, 1) {
        Some(a) => Some(g.constants.get(&a)?.to_i64s()),
        None => None,
    };
    let given = wpc_ir::ops::params::ints_input(&node.op, &node.attrs, 1, given).ok()?;
    let axes = params.axes(given, rank).ok()??;
    (params.keepdims && rank > 0 && axes == [rank - 1]).then_some(x)
}

/// The other operand of a commutative binary `node` when one is `v`.
fn other_operand(node: &Node, v: ValueId) -> Option<ValueId> {
    match (input(node, 0)?, input(node, 1)?) {
        (a, b) if a == v => Some(b),
        (a, b) if b == v => Some(a),
        _ => None,
    }
}

/// A constant holding one float per element of the last axis, as the
/// affine parameters do.
fn per_channel(g: &Graph, v: ValueId, channels: usize) -> bool {
    g.constants.get(&v).is_some_and(|t| {
        t.dtype() == DType::F32
            && t.shape().iter().product::<usize>() == channels
            && t.shape().last() == Some(&channels)
    })
}

fn match_at(g: &Graph, div: NodeId) -> Option<Chain> {
    let node = g.node(div);
    if node.op != "Div" || !node.domain.is_empty() {
        return None;
    }
    let (d, s) = (input(node, 0)?, input(node, 1)?);
    let sqrt = only_for(g, s, "Sqrt", &[div])?;
    let ve = input(g.node(sqrt), 0)?;
    let add_eps = only_for(g, ve, "Add", &[sqrt])?;
    let (var, epsilon) = {
        let n = g.node(add_eps);
        let (a, b) = (input(n, 0)?, input(n, 1)?);
        match (scalar(g, a), scalar(g, b)) {
            (None, Some(e)) => (a, e),
            (Some(e), None) => (b, e),
            _ => return None,
        }
    };
    let var_mean = only_for(g, var, "ReduceMean", &[add_eps])?;
    let sq = mean_of_last_axis(g, var_mean)?;
    let square = g.producer(sq)?;
    let squared = {
        let n = g.node(square);
        match n.op.as_str() {
            "Pow" => input(n, 0) == Some(d) && input(n, 1).and_then(|p| scalar(g, p)) == Some(2.0),
            "Mul" => input(n, 0) == Some(d) && input(n, 1) == Some(d),
            _ => false,
        }
    };
    if !squared || only_for(g, sq, &g.node(square).op, &[var_mean]).is_none() {
        return None;
    }
    let sub = only_for(g, d, "Sub", &[square, div])?;
    let (x, mean) = (input(g.node(sub), 0)?, input(g.node(sub), 1)?);
    let mean_node = only_for(g, mean, "ReduceMean", &[sub])?;
    if mean_of_last_axis(g, mean_node)? != x || g.value(x).ty.dtype != Some(DType::F32) {
        return None;
    }
    let channels = *g.value(x).ty.shape.concrete()?.last()?;
    let mut nodes = vec![div, sqrt, add_eps, var_mean, square, sub, mean_node];
    let mut out = node.outputs.first().copied().flatten()?;
    // The affine tail: times gamma, plus beta.
    let affine = |op: &str, nodes: &mut Vec<NodeId>, out: &mut ValueId| -> Option<ValueId> {
        let [next] = g.consumers(*out)[..] else {
            return None;
        };
        let n = g.node(next);
        if n.op != op || !n.domain.is_empty() || g.outputs.contains(out) {
            return None;
        }
        let param = other_operand(n, *out).filter(|&p| per_channel(g, p, channels))?;
        nodes.push(next);
        *out = n.outputs.first().copied().flatten()?;
        Some(param)
    };
    let gamma = affine("Mul", &mut nodes, &mut out);
    let beta = gamma.and_then(|_| affine("Add", &mut nodes, &mut out));
    Some(Chain {
        x,
        epsilon,
        gamma,
        beta,
        out,
        nodes,
    })
}

fn rewrite(g: &mut Graph, chain: Chain) -> Result<()> {
    let name = format!("{} (LayerNorm)", g.node(chain.nodes[0]).name);
    let channels = *g
        .value(chain.x)
        .ty
        .shape
        .concrete()
        .and_then(|s| s.last().copied())
        .as_ref()
        .expect("matched on a known last axis");
    let flat = |g: &mut Graph, v: Option<ValueId>, fill: f32, what: &str| -> ValueId {
        let t = match v {
            Some(v) => g.constants[&v].clone().reshaped(vec![channels]),
            None => Tensor::from_vec(vec![channels], vec![fill; channels]),
        };
        let id = g.add_fresh_value(&format!("{name} {what}"), ValueType::of(&t));
        g.constants.insert(id, t);
        id
    };
    let gamma = flat(g, chain.gamma, 1.0, "scale");
    let beta = chain.beta.map(|b| flat(g, Some(b), 0.0, "bias"));
    for &n in &chain.nodes {
        g.remove_node(n);
    }
    let mut attrs = Attrs::default();
    attrs.insert("axis", Attr::Int(-1));
    attrs.insert("epsilon", Attr::Float(chain.epsilon));
    g.add_node(Node {
        name,
        op: "LayerNormalization".into(),
        domain: String::new(),
        inputs: vec![Some(chain.x), Some(gamma), beta],
        outputs: vec![Some(chain.out)],
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
    use wpc_ir::Dim;

    /// How a test writes the chain.
    #[derive(Clone, Copy, Debug)]
    struct Form {
        /// `Mul(d, d)` instead of `Pow(d, 2)`.
        mul_square: bool,
        /// Operands of the commutative ops swapped.
        swapped: bool,
        /// 0: no affine tail; 1: gamma; 2: gamma and beta.
        affine: u8,
        /// Axes as an input (opset 18) instead of an attribute.
        axes_input: bool,
    }

    fn layer_norm(shape: &[usize], eps: f32, form: Form) -> (Model, ValueId) {
        let mut b = GraphBuilder::new();
        let dims = shape.iter().map(|&d| Dim::Known(d)).collect();
        let x = b.input("x", DType::F32, dims);
        let c = *shape.last().unwrap();
        let axes = b.constant("axes", Tensor::from_vec(vec![1], vec![-1i64]));
        let mean = |b: &mut GraphBuilder, v: ValueId| {
            if form.axes_input {
                b.node("ReduceMean", &[v, axes])
            } else {
                let mut a = Attrs::default();
                a.insert("axes", Attr::Ints(vec![-1]));
                b.node_with("ReduceMean", &[v], a)
            }
        };
        let pair = |a: ValueId, b: ValueId| if form.swapped { [b, a] } else { [a, b] };
        let m = mean(&mut b, x);
        let d = b.node("Sub", &[x, m]);
        let sq = if form.mul_square {
            b.node("Mul", &[d, d])
        } else {
            let two = b.constant("two", Tensor::scalar(2.0f32));
            b.node("Pow", &[d, two])
        };
        let var = mean(&mut b, sq);
        let e = b.constant("eps", Tensor::scalar(eps));
        let ve = b.node("Add", &pair(var, e));
        let s = b.node("Sqrt", &[ve]);
        let mut y = b.node("Div", &[d, s]);
        if form.affine >= 1 {
            let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 / 7.0).collect();
            let gamma = b.constant("gamma", Tensor::from_vec(vec![c], gamma));
            y = b.node("Mul", &pair(y, gamma));
        }
        if form.affine >= 2 {
            let beta: Vec<f32> = (0..c).map(|i| (i as f32).cos()).collect();
            let beta = b.constant("beta", Tensor::from_vec(vec![c], beta));
            y = b.node("Add", &pair(y, beta));
        }
        let mut model = b.finish(&[y]);
        model
            .opsets
            .insert(String::new(), if form.axes_input { 18 } else { 13 });
        crate::shape_inference::infer_shapes(&mut model).unwrap();
        (model, x)
    }

    fn run(model: &Model, shape: &[usize]) -> Vec<f64> {
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 9.0)
            .collect();
        let feeds = HashMap::from([("x".to_string(), Tensor::from_vec(shape.to_vec(), x))]);
        wpc_ir::interp::run_model(model, &feeds).unwrap()[0]
            .1
            .to_f64s()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Each way of writing the chain becomes one LayerNormalization
        /// that computes the same (to float32 rounding of a different
        /// summation order).
        #[test]
        fn every_written_form_folds_to_one_node(
            rows in 1usize..4,
            batch in 1usize..3,
            channels in 1usize..40,
            eps in prop_oneof![Just(1e-5f32), Just(1e-12f32), Just(0.1f32)],
            mul_square: bool,
            swapped: bool,
            affine in 0u8..3,
            axes_input: bool,
        ) {
            let shape = [batch, rows, channels];
            let form = Form { mul_square, swapped, affine, axes_input };
            let (mut model, x) = layer_norm(&shape, eps, form);
            let before = run(&model, &shape);
            prop_assert_eq!(fold_layer_norm(&mut model).unwrap(), 1);
            let g = &model.graph;
            let nodes: Vec<&Node> = g.node_ids().map(|n| g.node(n)).collect();
            prop_assert_eq!(nodes.len(), 1);
            prop_assert_eq!(nodes[0].op.as_str(), "LayerNormalization");
            prop_assert_eq!(nodes[0].inputs[0], Some(x));
            let after = run(&model, &shape);
            for (a, b) in after.iter().zip(&before) {
                prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn a_chain_whose_mean_is_read_elsewhere_is_left_alone() {
        let form = Form {
            mul_square: false,
            swapped: false,
            affine: 2,
            axes_input: false,
        };
        let (mut model, _) = layer_norm(&[1, 2, 8], 1e-5, form);
        let g = &mut model.graph;
        let mean = g
            .node_ids()
            .find(|&n| g.node(n).op == "ReduceMean")
            .and_then(|n| g.node(n).outputs[0])
            .unwrap();
        g.outputs.push(mean);
        let count = g.node_count();
        assert_eq!(fold_layer_norm(&mut model).unwrap(), 0);
        assert_eq!(model.graph.node_count(), count);
    }
}
