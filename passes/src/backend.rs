//! The contract every backend implements, and the per-variant pipeline
//! the middle end runs through it.
//!
//! A backend (WebGPU, WebAssembly; WebNN next) answers three questions:
//!
//! * **What it runs** ([`Backend::runs`]): for one node of a graph, a
//!   kernel of its own, a view that aliases its input, a slower general
//!   path ([`Runs::Fallback`], e.g. wasm's reference kernels), or nothing,
//!   each refusal with a reason a user can read. [`partition`] asks it of
//!   every node before anything is lowered, so a variant that cannot be
//!   built is reported with every node it cannot run, and each fallback is
//!   a decision the manifest records.
//! * **What it fuses** ([`Backend::fusion`]): its cost model for the
//!   rewrite and fusion passes ([`FusionTarget`]).
//! * **How it lowers** ([`Backend::lower`]): the graph after the passes,
//!   into one [`Lowered`] per variant: its manifest entry, its code files
//!   and its weight bytes. The orchestrator (`wpc::compile`) writes them
//!   into a bundle; a backend never touches shards or the file system.
//!
//! [`for_variant`] is the pipeline between the target-independent
//! optimization ([`crate::optimize`]) and lowering: partition, then
//! recognize ops the backend has kernels for ([`crate::rewrite`]), then
//! fuse ([`crate::fuse`]).

use wpc_bundle::manifest::Variant;
use wpc_ir::{Error, ErrorKind, Graph, Model, NodeId, Result};

use crate::fuse::FusionTarget;

/// How a backend runs one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runs {
    /// A kernel generated for it.
    Kernel,
    /// No kernel: the output shares its input's bytes.
    View,
    /// A slower, general path (wasm: the reference interpreter's kernel
    /// compiled to wasm32), and why the node does not get a kernel.
    Fallback(String),
    /// Not at all, and why.
    No(String),
}

/// A backend: what it runs, what it fuses, how it lowers.
pub trait Backend {
    /// The name reports use ("webgpu", "wasm").
    fn name(&self) -> &'static str;

    /// The variants it builds from one graph, by manifest name, in
    /// preference order ("webgpu"; "wasm-relaxed", "wasm-simd", ...).
    fn variants(&self) -> Vec<String>;

    /// How it runs `node` of `graph` (optimized, static types), judged
    /// without lowering anything.
    fn runs(&self, graph: &Graph, node: NodeId) -> Runs;

    /// Its cost model for the rewrite and fusion passes.
    fn fusion(&self) -> &dyn FusionTarget;

    /// Lowers `model` (after [`for_variant`]) for `variant`, one of
    /// [`Backend::variants`]. A kernel may still refuse a node that
    /// [`Backend::runs`] gave it (an attribute combination it does not
    /// cover): a backend with a fallback runs the node there and lists it
    /// in the variant's `fallback` with the kernel's reason; one without
    /// fails with that reason.
    fn lower(&self, model: &Model, variant: &str) -> Result<Lowered>;
}

/// One variant, lowered.
#[derive(Clone, Debug)]
pub struct Lowered {
    /// Its manifest entry; the shard ranges of its weights are filled in
    /// by whoever lays out the shards.
    pub variant: Variant,
    /// Code files the entry names (file name, bytes).
    pub files: Vec<(String, Vec<u8>)>,
    /// Weight bytes, each with the index of the range it fills in
    /// `variant.shard_ranges_mut()`, in the order kernels first read them
    /// (the order they go into shards).
    pub weights: Vec<(usize, Vec<u8>)>,
}

/// How many refused nodes [`partition`]'s error names (the first in
/// topological order, where the trouble starts); it counts the rest.
const SHOWN_REFUSALS: usize = 8;

/// Asks `backend` how it runs each node of `graph`: every node's
/// [`Runs`], in topological order. Fails, naming every node it cannot run
/// and why, if there is one.
pub fn partition(backend: &dyn Backend, graph: &Graph) -> Result<Vec<(NodeId, Runs)>> {
    let nodes: Vec<(NodeId, Runs)> = graph
        .topo_order()?
        .into_iter()
        .map(|n| (n, backend.runs(graph, n)))
        .collect();
    let refused: Vec<(String, &String)> = nodes
        .iter()
        .filter_map(|(n, runs)| match runs {
            Runs::No(why) => Some((graph.node(*n).context(), why)),
            _ => None,
        })
        .collect();
    match refused.as_slice() {
        [] => Ok(nodes),
        [(node, why)] => Err(Error::unsupported(why.to_string()).within(node.clone())),
        many => {
            let shown: Vec<String> = many
                .iter()
                .take(SHOWN_REFUSALS)
                .map(|(node, why)| format!("{node}: {why}"))
                .collect();
            let more = match many.len().saturating_sub(SHOWN_REFUSALS) {
                0 => String::new(),
                n => format!("; and {n} more"),
            };
            Err(Error::unsupported(format!(
                "{} cannot run {} nodes: {}{more}",
                backend.name(),
                many.len(),
                shown.join("; ")
            )))
        }
    }
}

/// What the per-variant passes did for one backend's variants.
#[derive(Clone, Debug, Default)]
pub struct VariantPasses {
    /// The backend ("webgpu", "wasm"; a backend's variants share their
    /// graph).
    pub backend: String,
    /// Nodes of the optimized graph, before the per-variant passes.
    pub nodes_before: usize,
    /// The e-graph rewrite ([`crate::rewrite`]).
    pub rewrite: crate::rewrite::RewriteStats,
    /// Fusion ([`crate::fuse`]).
    pub fusion: crate::fuse::FuseStats,
    /// Nodes after them: one kernel each, but for views.
    pub nodes_after: usize,
}

/// The graph `backend` lowers: `optimized` partitioned (failing if the
/// backend cannot run a node), then, when `fuse` is on, with the ops it
/// has kernels for recognized and its pointwise chains fused.
pub fn for_variant(
    optimized: &Model,
    backend: &dyn Backend,
    fuse: bool,
) -> Result<(Model, VariantPasses)> {
    partition(backend, &optimized.graph)?;
    let mut model = optimized.clone();
    let mut stats = VariantPasses {
        backend: backend.name().to_string(),
        nodes_before: model.graph.node_count(),
        ..VariantPasses::default()
    };
    if fuse {
        let target = backend.fusion();
        let limits = crate::rewrite::Limits::default();
        match crate::rewrite::rewrite(&mut model, target, limits) {
            Ok(rewrite) => stats.rewrite = rewrite,
            // An optimization that failed on its own terms (a bug, never
            // the model's fault) costs speed, not the bundle: the graph
            // is lowered as written, and the report says why.
            Err(e) if e.kind == ErrorKind::Internal => {
                model = optimized.clone();
                stats.rewrite.stop = Some(format!("failed, graph left as written: {e}"));
            }
            Err(e) => return Err(e),
        }
        stats.fusion = crate::fuse::fuse(&mut model, target)?;
        // The scalars the bodies took in are read by nothing else now.
        crate::dce::eliminate_dead_nodes(&mut model);
    }
    stats.nodes_after = model.graph.node_count();
    Ok((model, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::GraphBuilder;
    use wpc_ir::{DType, Dim, Node};

    /// Runs Det nowhere, Neg on its fallback, the rest as kernels; fuses
    /// every pointwise node.
    struct Picky;

    impl FusionTarget for Picky {
        fn fuses(&self, _: &Graph, _: NodeId) -> bool {
            true
        }
        fn max_inputs(&self) -> usize {
            8
        }
        fn epilogue(&self, _: &Graph, _: &Node) -> bool {
            false
        }
        fn has_kernel(&self, _: &str) -> bool {
            true
        }
    }

    impl Backend for Picky {
        fn name(&self) -> &'static str {
            "picky"
        }
        fn variants(&self) -> Vec<String> {
            vec!["picky".into()]
        }
        fn runs(&self, graph: &Graph, n: NodeId) -> Runs {
            match graph.node(n).op.as_str() {
                "Det" => Runs::No("no Det here".into()),
                "Neg" => Runs::Fallback("Neg is slow here".into()),
                _ => Runs::Kernel,
            }
        }
        fn fusion(&self) -> &dyn FusionTarget {
            self
        }
        fn lower(&self, _: &Model, _: &str) -> Result<Lowered> {
            Err(Error::unsupported("lowers nothing"))
        }
    }

    fn square(b: &mut GraphBuilder) -> wpc_ir::ValueId {
        b.input("x", DType::F32, vec![Dim::Known(3), Dim::Known(3)])
    }

    #[test]
    fn partition_names_every_node_the_backend_cannot_run() {
        let mut b = GraphBuilder::new();
        let x = square(&mut b);
        let d1 = b.node("Det", &[x]);
        let r = b.node("Relu", &[x]);
        let d2 = b.node("Det", &[r]);
        let m = b.finish(&[d1, d2]);
        let e = partition(&Picky, &m.graph).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        let text = e.to_string();
        assert!(text.contains("picky cannot run 2 nodes"), "{text}");
        for n in m.graph.node_ids().filter(|&n| m.graph.node(n).op == "Det") {
            let want = format!("{}: no Det here", m.graph.node(n).context());
            assert!(text.contains(&want), "{text} lacks {want}");
        }
    }

    #[test]
    fn one_refused_node_is_the_error_s_context() {
        let mut b = GraphBuilder::new();
        let x = square(&mut b);
        let d = b.node("Det", &[x]);
        let m = b.finish(&[d]);
        let e = partition(&Picky, &m.graph).unwrap_err();
        let det = m.graph.node_ids().next().unwrap();
        assert_eq!(e.context, vec![m.graph.node(det).context()]);
        assert_eq!(e.reason, "no Det here");
    }

    #[test]
    fn every_node_gets_its_verdict_in_order() {
        let mut b = GraphBuilder::new();
        let x = square(&mut b);
        let r = b.node("Relu", &[x]);
        let n = b.node("Neg", &[r]);
        let m = b.finish(&[n]);
        let verdicts: Vec<Runs> = partition(&Picky, &m.graph)
            .unwrap()
            .into_iter()
            .map(|(_, runs)| runs)
            .collect();
        assert_eq!(
            verdicts,
            [Runs::Kernel, Runs::Fallback("Neg is slow here".into())]
        );
    }

    #[test]
    fn for_variant_fuses_only_when_asked_and_refuses_what_cannot_run() {
        let mut b = GraphBuilder::new();
        let x = square(&mut b);
        let r = b.node("Relu", &[x]);
        let t = b.node("Tanh", &[r]);
        let s = b.node("Sigmoid", &[t]);
        let mut m = b.finish(&[s]);
        crate::shape_inference::infer_shapes(&mut m).unwrap();
        let (kept, stats) = for_variant(&m, &Picky, false).unwrap();
        assert_eq!((stats.nodes_before, stats.nodes_after), (3, 3));
        assert_eq!(kept.graph.node_count(), 3);
        let (fused, stats) = for_variant(&m, &Picky, true).unwrap();
        assert_eq!((stats.backend.as_str(), stats.nodes_after), ("picky", 1));
        assert_eq!(stats.fusion.groups, 1);
        assert_eq!(fused.graph.node_count(), 1);

        let mut b = GraphBuilder::new();
        let x = square(&mut b);
        let d = b.node("Det", &[x]);
        let m = b.finish(&[d]);
        assert!(for_variant(&m, &Picky, true).is_err());
    }
}
