//! Graph-to-graph passes of wpc.
//!
//! Each pass is a function over a [`Model`] that reports whether it changed
//! anything, so they compose freely; [`optimize`] runs the standard pipeline
//! to a fixed point. Passes never do I/O. The pipeline's passes never look
//! at targets: they simplify the graph every backend then lowers; the
//! per-variant ones see a backend only through the contract
//! ([`backend::Backend`]).
//!
//! * [`bind`] fixes model inputs to values or shapes before the rest run.
//! * [`shape_inference::infer_shapes`] fills in dtypes and symbolic shapes.
//! * [`const_fold::fold_constants`] evaluates nodes whose inputs are all known,
//!   with the reference interpreter (so folding means exactly what running does).
//! * [`dce::eliminate_dead_nodes`] removes nodes and constants nothing reads.
//! * [`static_shapes::fold_static_shapes`] turns `Shape`/`Size` of fully
//!   known shapes into constants.
//! * [`inline_if::inline_constant_if`] replaces an `If` whose condition is a
//!   constant with the nodes of the branch it takes.
//! * [`fold_batch_norm::fold_conv_batch_norm`] folds an inference
//!   BatchNormalization into the Conv before it.
//! * [`rewrite::rewrite`] recognizes ops exporters write out (GELU,
//!   SiLU/SwiGLU, HardSwish, LayerNorm, RMSNorm, attention) with an
//!   e-graph and puts them in where the backend has their kernels.
//! * [`fuse::fuse`] merges chains of pointwise
//!   ops into one fused node.
//!
//! The last two run per variant, after [`optimize`], with the backend
//! saying what it computes ([`fuse::FusionTarget`]). [`backend`] is the
//! contract every backend implements (what it runs, what it fuses, how
//! it lowers) and the per-variant pipeline run through it.

pub mod backend;
pub mod bind;
pub mod const_fold;
pub mod dce;
pub mod fold_batch_norm;
pub mod fuse;
pub mod inline_if;
pub mod quant;
pub mod rewrite;
pub mod shape_inference;
pub mod static_shapes;

#[cfg(test)]
mod test_util;

use wpc_ir::{Model, Result};

/// What [`optimize`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptimizeStats {
    pub folded: usize,
    pub removed: usize,
    pub inlined: usize,
    /// Rounds of the pipeline run (the last one changed nothing, unless
    /// the limit stopped it).
    pub rounds: usize,
    /// Why it stopped.
    pub stop: Stop,
}

/// Why [`optimize`] stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stop {
    /// A round changed nothing: the graph is at its fixed point.
    #[default]
    Converged,
    /// [`MAX_ROUNDS`] rounds ran and each still changed something. The
    /// graph is valid, only less simplified than it could be.
    RoundLimit,
}

/// The most rounds [`optimize`] runs. Every round removes or inlines at
/// least one node, so the pipeline ends by itself; the limit bounds the
/// time a pathological graph (a long chain where each fold enables only
/// the next) can take.
pub const MAX_ROUNDS: usize = 64;

/// Inlines constant `If`s, folds constants and removes dead nodes until
/// nothing changes (or for [`MAX_ROUNDS`] rounds), then infers shapes.
pub fn optimize(model: &mut Model) -> Result<OptimizeStats> {
    // Until a round changes nothing.
    let mut stats = OptimizeStats {
        stop: Stop::RoundLimit,
        ..OptimizeStats::default()
    };
    while stats.rounds < MAX_ROUNDS {
        stats.rounds += 1;
        let inlined = inline_if::inline_constant_if(model)?;
        // Before folding, which would widen dequantized weights to float.
        let packed = quant::qdq::pack_dequantized_weights(model)?;
        let folded =
            packed + const_fold::fold_constants(model)? + static_shapes::fold_static_shapes(model)?;
        let folded = folded
            + fold_batch_norm::fold_conv_batch_norm(model)?
            + quant::tables::pack_sub_byte_tables(model)?;
        let removed = dce::eliminate_dead_nodes(model);
        stats.inlined += inlined;
        stats.folded += folded;
        stats.removed += removed;
        if inlined + folded + removed == 0 {
            stats.stop = Stop::Converged;
            break;
        }
    }
    shape_inference::infer_shapes(model)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::GraphBuilder;
    use std::collections::HashMap;
    use wpc_ir::{Attr, Attrs, DType, Dim, Graph, Tensor};

    /// `depth` Ifs nested in each other's then-branches around a `Neg` of
    /// the outer input `x`, each on a true condition: a constant, or when
    /// `computed` one computed from a constant (`Identity(true)`), so that
    /// a round of [`optimize`] inlines only the outermost and the next
    /// round's folding makes the next condition a constant.
    fn nested_ifs(depth: usize, computed: bool) -> wpc_ir::Model {
        fn level(depth: usize, computed: bool) -> Graph {
            // Names unique across levels: a branch whose names collide
            // with the parent's is not inlined.
            let mut b = GraphBuilder::numbered_from(10 * depth);
            let x = b.outer("x");
            if depth == 0 {
                let y = b.node("Neg", &[x]);
                return b.finish(&[y]).graph;
            }
            let known = b.constant(&format!("c{depth}"), Tensor::scalar(true));
            let c = if computed {
                b.node("Identity", &[known])
            } else {
                known
            };
            let mut attrs = Attrs::default();
            attrs.insert(
                "then_branch",
                Attr::Graph(Box::new(level(depth - 1, computed))),
            );
            let mut other = GraphBuilder::numbered_from(10 * depth + 5);
            let ox = other.outer("x");
            let oy = other.node("Relu", &[ox]);
            attrs.insert(
                "else_branch",
                Attr::Graph(Box::new(other.finish(&[oy]).graph)),
            );
            let y = b.node_with("If", &[c], attrs);
            b.finish(&[y]).graph
        }
        let mut b = GraphBuilder::new();
        b.input("x", DType::F32, vec![Dim::Known(1)]);
        let top = level(depth, computed);
        let mut model = b.finish(&[]);
        // The outermost level's nodes become the main graph's.
        let mut attrs = Attrs::default();
        attrs.insert("then_branch", Attr::Graph(Box::new(top)));
        let mut other = GraphBuilder::new();
        let ox = other.outer("x");
        let oy = other.node("Relu", &[ox]);
        attrs.insert(
            "else_branch",
            Attr::Graph(Box::new(other.finish(&[oy]).graph)),
        );
        let g = &mut model.graph;
        let c = g
            .add_value("c0", wpc_ir::ValueType::of(&Tensor::scalar(true)))
            .unwrap();
        g.constants.insert(c, Tensor::scalar(true));
        let y = g.add_fresh_value("y", wpc_ir::ValueType::default());
        g.add_node(wpc_ir::Node {
            name: "top".into(),
            op: "If".into(),
            domain: String::new(),
            inputs: vec![Some(c)],
            outputs: vec![Some(y)],
            attrs,
        })
        .unwrap();
        g.outputs = vec![y];
        model
    }

    fn run(model: &wpc_ir::Model) -> Vec<f64> {
        let feeds = HashMap::from([("x".to_string(), Tensor::from_vec(vec![1], vec![-3.0f32]))]);
        wpc_ir::interp::run_model(model, &feeds).unwrap()[0]
            .1
            .to_f64s()
    }

    #[test]
    fn optimize_runs_to_a_fixed_point_within_its_round_limit() {
        let mut model = nested_ifs(3, true);
        let stats = optimize(&mut model).unwrap();
        assert_eq!(
            (stats.stop, stats.inlined),
            (Stop::Converged, 4),
            "{stats:?}"
        );
        assert_eq!(run(&model), [3.0]);

        // Constant conditions all the way down inline in one round.
        let mut model = nested_ifs(MAX_ROUNDS + 5, false);
        let stats = optimize(&mut model).unwrap();
        assert_eq!(
            (stats.stop, stats.rounds),
            (Stop::Converged, 2),
            "{stats:?}"
        );
        let g = &model.graph;
        assert!(g.node_ids().all(|n| g.node(n).op != "If"));
        assert_eq!(run(&model), [3.0]);

        // Deeper than the limit, one level a round: it stops there, and
        // the graph still runs.
        let mut model = nested_ifs(MAX_ROUNDS + 5, true);
        let stats = optimize(&mut model).unwrap();
        assert_eq!(
            (stats.stop, stats.rounds),
            (Stop::RoundLimit, MAX_ROUNDS),
            "{stats:?}"
        );
        assert_eq!(run(&model), [3.0]);
    }
}
