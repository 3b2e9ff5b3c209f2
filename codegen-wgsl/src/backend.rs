//! The WebGPU backend behind the middle end's contract
//! ([`wpc_passes::backend::Backend`]): one variant, `webgpu`, with no
//! fallback path, so a node it has no kernel or device type for keeps the
//! variant from being built.

use wpc_bundle::manifest::{ShardRange, Variant};
use wpc_ir::ops::OpClass;
use wpc_ir::{Error, ErrorKind, Graph, Model, NodeId, Result};
use wpc_passes::backend::{Backend, Lowered, Runs};
use wpc_passes::fuse::FusionTarget;
use wpc_targets::Profile;

use crate::lower::{Options, compile};
use crate::ops::fused::Fusion;

/// The WebGPU backend for one model and target profile.
pub struct WebGpu {
    profile: Profile,
    options: Options,
    fusion: Fusion,
    /// The model's dim ranges (what dynamic sizes may be).
    ranges: std::collections::BTreeMap<String, (usize, usize)>,
}

impl WebGpu {
    /// The backend for `model` (its opset decides op semantics) on
    /// `profile` (its limits bound what one kernel may bind).
    pub fn new(model: &Model, profile: &Profile, options: Options) -> WebGpu {
        WebGpu {
            fusion: Fusion::new(model, profile, options.demote_f64),
            profile: profile.clone(),
            options,
            ranges: model.dim_ranges.clone(),
        }
    }
}

/// The variant's name in bundles.
const VARIANT: &str = "webgpu";

impl Backend for WebGpu {
    fn name(&self) -> &'static str {
        VARIANT
    }

    fn variants(&self) -> Vec<String> {
        vec![VARIANT.to_string()]
    }

    /// A kernel when the op has a lowering and every tensor it touches
    /// has a known shape (static, or dynamic within the model's dim ranges
    /// where the op's kernel reads its sizes at run time) and a 32-bit
    /// device word.
    fn runs(&self, graph: &Graph, n: NodeId) -> Runs {
        let node = graph.node(n);
        if crate::ops::lowering(&node.domain, &node.op).is_none() {
            return Runs::No(format!("op {} has no WebGPU kernel yet", node.op));
        }
        for &v in node.inputs.iter().chain(&node.outputs).flatten() {
            let t = crate::lower::tensor_type_in(graph, &self.ranges, v, self.options.demote_f64);
            match t {
                Err(e) => return Runs::No(e.reason),
                Ok(t)
                    if !t.is_static()
                        && !crate::ops::handles_dynamic_sizes(&node.domain, &node.op) =>
                {
                    return Runs::No(crate::lower::dynamic_size_refused(&node.op, &t).reason);
                }
                Ok(_) => {}
            }
        }
        if wpc_ir::ops::class_of(&node.domain, &node.op) == OpClass::View {
            Runs::View
        } else {
            Runs::Kernel
        }
    }

    fn fusion(&self) -> &dyn FusionTarget {
        &self.fusion
    }

    fn lower(&self, model: &Model, variant: &str) -> Result<Lowered> {
        if variant != VARIANT {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("the WebGPU backend builds no variant '{variant}'"),
            ));
        }
        let compiled = compile(model, &self.profile, &self.options)?;
        let mut entry = compiled.variant;
        for (buffer, _) in &compiled.weights {
            entry.buffers[*buffer].init = Some(ShardRange::default());
        }
        // A weight fills the range of its buffer, whose place among the
        // initialized buffers is its index in `shard_ranges_mut`.
        let rank = |buffer: usize| {
            entry.buffers[..buffer]
                .iter()
                .filter(|b| b.init.is_some())
                .count()
        };
        let weights = compiled
            .weights
            .into_iter()
            .map(|(buffer, bytes)| (rank(buffer), bytes))
            .collect();
        Ok(Lowered {
            variant: Variant::WebGpu(entry),
            files: compiled
                .shaders
                .into_iter()
                .map(|(file, text)| (file, text.into_bytes()))
                .collect(),
            weights,
        })
    }
}
