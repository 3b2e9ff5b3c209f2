//! Inlines `If` nodes whose condition is a constant: the taken branch's
//! nodes move into the parent graph and the `If` disappears.

use std::collections::HashMap;

use wpc_ir::{Attrs, Error, Graph, Model, Node, Result, ValueId};

/// Inlines every constant-condition `If` of the main graph (one whose branch
/// has nested subgraphs only when its value names stay free), including
/// those a branch brings with it whose conditions are constants; returns
/// how many were inlined.
pub fn inline_constant_if(model: &mut Model) -> Result<usize> {
    let mut inlined = 0;
    // Each sweep removes at least one If, so nesting bounds the sweeps.
    loop {
        let sweep = inline_sweep(&mut model.graph)?;
        if sweep == 0 {
            return Ok(inlined);
        }
        inlined += sweep;
    }
}

/// One pass of [`inline_constant_if`] over the nodes present when it
/// starts.
fn inline_sweep(g: &mut Graph) -> Result<usize> {
    let mut inlined = 0;
    for id in g.topo_order()? {
        let node = g.node(id);
        if node.op != "If" || !node.domain.is_empty() {
            continue;
        }
        let Some(cond) = node
            .inputs
            .first()
            .copied()
            .flatten()
            .and_then(|c| g.constants.get(&c))
        else {
            continue;
        };
        if cond.len() != 1 {
            continue;
        }
        let name = if cond.to_bools()[0] {
            "then_branch"
        } else {
            "else_branch"
        };
        let branch = node
            .attrs
            .graph(name)
            .map_err(|e| e.within(node.context()))?
            .clone();
        // Nested subgraphs read branch values by name, so the branch's values
        // must keep their names: inline only if none collides in the parent.
        let nested = branch
            .node_ids()
            .any(|n| branch.node(n).attrs.subgraphs().next().is_some());
        let collides = branch
            .value_ids()
            .any(|v| !branch.value(v).outer && g.find_value(&branch.value(v).name).is_some());
        if nested && collides {
            continue;
        }
        let node = g.remove_node(id);
        splice(g, &branch, &node).map_err(|e| e.within(node.context()))?;
        inlined += 1;
    }
    Ok(inlined)
}

/// Copies `branch` into `g` and binds `if_node`'s outputs to its results.
fn splice(g: &mut Graph, branch: &Graph, if_node: &Node) -> Result<()> {
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    for v in branch.value_ids() {
        let val = branch.value(v);
        let target = if val.outer {
            g.find_value(&val.name).ok_or_else(|| {
                Error::invalid(format!(
                    "branch reads '{}', which the graph does not define",
                    val.name
                ))
            })?
        } else {
            g.add_fresh_value(&val.name, val.ty.clone())
        };
        map.insert(v, target);
    }
    for (v, t) in &branch.constants {
        g.constants.insert(map[v], t.clone());
    }
    for n in branch.topo_order()? {
        let bn = branch.node(n);
        let remap = |xs: &[Option<ValueId>]| xs.iter().map(|x| x.map(|v| map[&v])).collect();
        g.add_node(Node {
            inputs: remap(&bn.inputs),
            outputs: remap(&bn.outputs),
            ..bn.clone()
        })?;
    }
    if branch.outputs.len() != if_node.outputs.len() {
        return Err(Error::invalid(format!(
            "branch has {} outputs, the If has {}",
            branch.outputs.len(),
            if_node.outputs.len()
        )));
    }
    // Identity keeps the If's output names, which may be graph outputs.
    for (out, res) in if_node.outputs.iter().zip(&branch.outputs) {
        if let Some(out) = out {
            let identity = Node {
                name: format!("{}/inlined", if_node.name),
                op: "Identity".into(),
                domain: String::new(),
                inputs: vec![Some(map[res])],
                outputs: vec![Some(*out)],
                attrs: Attrs::default(),
            };
            g.add_node(identity)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::GraphBuilder;
    use std::collections::HashMap;
    use wpc_ir::{Attr, DType, Dim, Tensor};

    fn branch(op: &str) -> Graph {
        let mut b = GraphBuilder::new();
        let x = b.outer("x");
        let y = b.node(op, &[x]);
        b.finish(&[y]).graph
    }

    #[test]
    fn inlines_the_taken_branch_and_keeps_results() {
        // x = -3: the then branch negates (3), the else branch applies Relu (0).
        for (cond, expect) in [(true, 3.0), (false, 0.0)] {
            let mut b = GraphBuilder::new();
            b.input("x", DType::F32, vec![Dim::Known(1)]);
            let c = b.constant("c", Tensor::scalar(cond));
            let mut attrs = Attrs::default();
            attrs.insert("then_branch", Attr::Graph(Box::new(branch("Neg"))));
            attrs.insert("else_branch", Attr::Graph(Box::new(branch("Relu"))));
            let y = b.node_with("If", &[c], attrs);
            let mut model = b.finish(&[y]);
            assert_eq!(inline_constant_if(&mut model).unwrap(), 1);
            let g = &model.graph;
            assert!(g.node_ids().all(|n| g.node(n).op != "If"));
            let feeds =
                HashMap::from([("x".to_string(), Tensor::from_vec(vec![1], vec![-3.0f32]))]);
            let out = wpc_ir::interp::run_model(&model, &feeds).unwrap();
            assert_eq!(out[0].1.to_f64s(), vec![expect], "cond {cond}");
        }
    }
}
