//! The WebAssembly backend behind the middle end's contract
//! ([`wpc_passes::backend::Backend`]): one variant per instruction set
//! ([`Isa`]), all lowered from the same fused graph. Nodes without a
//! generated kernel run the reference kernels ([`crate::reference`]), a
//! fallback each variant lists in its manifest entry.

use wpc_bundle::manifest::{MemoryTensor, Placement, ShardRange, SizeTable, Variant, WasmVariant};
use wpc_ir::{Error, ErrorKind, Graph, Model, NodeId, Result};
use wpc_passes::backend::{Backend, Lowered, Runs};
use wpc_passes::fuse::FusionTarget;

use crate::emit::Isa;
use crate::ops::Fusion;

/// The WebAssembly backend, building the variants of `isas`.
pub struct Wasm {
    isas: Vec<Isa>,
    fusion: Fusion,
    /// The model's dim ranges (what dynamic sizes may be).
    ranges: crate::lower::Ranges,
}

impl Wasm {
    /// The backend for `model` (its opset decides op semantics), building
    /// one variant per ISA of `isas`, in preference order.
    pub fn new(model: &Model, isas: Vec<Isa>) -> Wasm {
        Wasm {
            isas,
            fusion: Fusion {
                opset: model.opset(),
            },
            ranges: model.dim_ranges.clone(),
        }
    }
}

/// The file that holds the reference kernels, shared by every variant
/// that imports them.
const REFERENCE_FILE: &str = "reference.wasm";

impl Backend for Wasm {
    fn name(&self) -> &'static str {
        "wasm"
    }

    fn variants(&self) -> Vec<String> {
        self.isas.iter().map(|i| i.name().to_string()).collect()
    }

    fn runs(&self, graph: &Graph, n: NodeId) -> Runs {
        crate::lower::runs(graph, &self.ranges, graph.node(n))
    }

    fn fusion(&self) -> &dyn FusionTarget {
        &self.fusion
    }

    fn lower(&self, model: &Model, variant: &str) -> Result<Lowered> {
        let isa = Isa::parse(variant)
            .filter(|i| self.isas.contains(i))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    format!("the wasm backend builds no variant '{variant}'"),
                )
            })?;
        let c = crate::compile(model, isa)?;
        let module = format!("model-{}.wasm", isa.name().trim_start_matches("wasm-"));
        let mut files = vec![(module.clone(), c.wasm)];
        let reference = (!c.fallback.is_empty()).then(|| {
            files.push((
                REFERENCE_FILE.to_string(),
                crate::reference::MODULE.to_vec(),
            ));
            REFERENCE_FILE.to_string()
        });
        let slot = |s: &crate::Slot| MemoryTensor {
            offset: s.offset,
            elements: s.elements,
        };
        let entry = WasmVariant {
            name: isa.name().to_string(),
            features: isa.features(),
            module,
            memory_bytes: c.memory_bytes,
            reference,
            fallback: c.fallback,
            sizes: c.sizes.map(|t| SizeTable {
                offset: u64::from(t.addr),
                dims: t.dims,
            }),
            weights: c
                .weights
                .iter()
                .map(|(offset, _)| Placement {
                    range: ShardRange::default(),
                    offset: *offset,
                })
                .collect(),
            inputs: c.inputs.iter().map(slot).collect(),
            outputs: c.outputs.iter().map(slot).collect(),
        };
        Ok(Lowered {
            variant: Variant::Wasm(entry),
            files,
            // Placement `j` is filled by weight `j`.
            weights: c.weights.into_iter().map(|(_, b)| b).enumerate().collect(),
        })
    }
}
