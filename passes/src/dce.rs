//! Dead-node elimination: removes nodes none of whose outputs are read (by
//! another node, a subgraph, or the graph outputs), and unread constants
//! and symbolic sizes.

use std::collections::HashSet;

use wpc_ir::{Model, ValueId};

/// Removes dead nodes and constants from the main graph; returns how many
/// nodes were removed.
pub fn eliminate_dead_nodes(model: &mut Model) -> usize {
    let g = &mut model.graph;
    let mut removed = 0;
    loop {
        let mut live: HashSet<ValueId> = g.outputs.iter().copied().collect();
        for id in g.node_ids() {
            live.extend(g.reads(id));
        }
        let dead: Vec<_> = g
            .node_ids()
            .filter(|&id| {
                !g.node(id)
                    .outputs
                    .iter()
                    .flatten()
                    .any(|o| live.contains(o))
            })
            .collect();
        let unused: Vec<ValueId> = g
            .constants
            .keys()
            .copied()
            .filter(|v| !live.contains(v))
            .collect();
        for v in unused {
            g.constants.remove(&v);
        }
        g.sizes.retain(|v, _| live.contains(v));
        if dead.is_empty() {
            return removed;
        }
        removed += dead.len();
        for id in dead {
            g.remove_node(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::GraphBuilder;
    use wpc_ir::{DType, Dim, Tensor};

    #[test]
    fn removes_chains_nobody_reads() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, vec![Dim::Known(2)]);
        let unused_c = b.constant("k", Tensor::from_vec(vec![2], vec![1.0f32, 1.0]));
        let dead1 = b.node("Add", &[x, unused_c]);
        let _dead2 = b.node("Relu", &[dead1]);
        let y = b.node("Neg", &[x]);
        let mut model = b.finish(&[y]);
        assert_eq!(eliminate_dead_nodes(&mut model), 2);
        assert_eq!(model.graph.node_count(), 1);
        assert!(model.graph.constants.is_empty());
        assert_eq!(eliminate_dead_nodes(&mut model), 0);
    }
}
