//! Per-op lowerings to wasm, one module per op family. [`lowering`] is
//! the table from op name to lowering: adding an op to the WebAssembly
//! backend means one function in its family module and one line here.

pub mod attention;
pub mod attention_rows;
pub mod cast;
pub mod conv_transpose;
pub mod elementwise;
pub mod gemm;
pub mod half;
pub mod integer;
pub mod movement;
pub mod nn;
pub mod quant;
pub mod reduce;
pub mod resize;
pub mod rnn;

use wpc_ir::{DType, Error, Result};

use crate::lower::{Ctx, LowerFn, Tt};

/// The WebAssembly lowering of `op` in `domain`, if there is one.
pub fn lowering(domain: &str, op: &str) -> Option<LowerFn> {
    if domain == wpc_ir::ops::fused::DOMAIN && op == wpc_ir::ops::fused::FUSED_ELEMENTWISE {
        return Some(elementwise::fused);
    }
    if domain == wpc_ir::ops::quant::MICROSOFT {
        return match op {
            "MatMulNBits" => Some(quant::matmul_nbits),
            "GatherBlockQuantized" => Some(quant::gather_block_quantized),
            _ => None,
        };
    }
    if !domain.is_empty() && domain != "ai.onnx" {
        return None;
    }
    if elementwise::is_elementwise(op) {
        return Some(elementwise::lower);
    }
    Some(match op {
        "MatMul" => gemm::matmul,
        "Gemm" => gemm::gemm,
        "Conv" => gemm::conv,
        "ConvTranspose" => conv_transpose::conv_transpose,
        "MaxPool" | "AveragePool" => nn::pool,
        "GlobalAveragePool" | "GlobalMaxPool" => nn::global_pool,
        "BatchNormalization" => nn::batch_norm,
        "Softmax" | "LogSoftmax" => nn::softmax,
        "LRN" => nn::lrn,
        "Concat" => movement::concat,
        "Transpose" => movement::transpose,
        "Expand" => movement::expand,
        "Slice" => movement::slice,
        "Tile" => movement::tile,
        "Split" => movement::split,
        "Pad" => movement::pad,
        "LSTM" | "GRU" | "RNN" => rnn::recurrent,
        "Attention" => attention::attention,
        "Resize" | "Upsample" => resize::resize,
        "Cast" => cast::cast,
        "QuantizeLinear" => integer::quantize,
        "DequantizeLinear" => integer::dequantize,
        "DynamicQuantizeLinear" => integer::dynamic_quantize,
        "MatMulInteger" => integer::matmul_integer,
        "Gather" => movement::gather,
        "LayerNormalization" => nn::layer_norm,
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd"
        | "ReduceSumSquare" => reduce::reduce,
        _ => return None,
    })
}

/// Whether the lowering of `op` reads sizes that are dynamic from the
/// run's size table; the other kernels are compiled for static shapes, and
/// a node of theirs with dynamic sizes runs the reference kernel.
pub fn handles_dynamic_sizes(domain: &str, op: &str) -> bool {
    if domain == wpc_ir::ops::fused::DOMAIN {
        return op == wpc_ir::ops::fused::FUSED_ELEMENTWISE;
    }
    if domain == wpc_ir::ops::quant::MICROSOFT {
        return matches!(op, "MatMulNBits" | "GatherBlockQuantized");
    }
    (domain.is_empty() || domain == "ai.onnx")
        && (elementwise::is_elementwise(op)
            || matches!(
                op,
                "MatMul"
                    | "Softmax"
                    | "LogSoftmax"
                    | "LayerNormalization"
                    | "Gather"
                    | "Cast"
                    | "QuantizeLinear"
                    | "DequantizeLinear"
                    | "DynamicQuantizeLinear"
                    | "MatMulInteger"
                    | "Attention"
                    | "Conv"
                    | "Gemm"
                    | "GlobalAveragePool"
                    | "GlobalMaxPool"
                    | "MaxPool"
                    | "AveragePool"
                    | "Slice"
                    | "Transpose"
                    | "Expand"
                    | "Split"
                    | "Concat"
                    | "Pad"
                    | "ReduceSum"
                    | "ReduceMean"
                    | "ReduceMax"
                    | "ReduceMin"
                    | "ReduceProd"
                    | "ReduceSumSquare"
                    | "LSTM"
                    | "GRU"
                    | "RNN"
            ))
}

/// Rejects tensors the float kernels cannot compute on, naming the op (the
/// node then runs the reference kernel).
pub fn require_f32(ctx: &Ctx, t: &Tt) -> Result<()> {
    if t.dtype != DType::F32 {
        return Err(Error::unsupported(format!(
            "{} on {} tensors",
            ctx.node.op, t.dtype
        )));
    }
    Ok(())
}

/// What the WebAssembly variants fuse: float32 pointwise nodes the
/// elementwise kernel computes, with constant parameters (Clip bounds),
/// and such chains into the GEMM behind MatMul, Gemm and Conv as its
/// epilogue.
pub struct Fusion {
    pub opset: u32,
}

/// A fused kernel keeps one pointer per input in a local; past this many
/// inputs the chain is split instead.
const MAX_FUSED_INPUTS: usize = 16;

impl wpc_passes::fuse::FusionTarget for Fusion {
    fn fuses(&self, graph: &wpc_ir::Graph, n: wpc_ir::NodeId) -> bool {
        elementwise::fuses(graph, n, self.opset)
    }

    fn max_inputs(&self) -> usize {
        MAX_FUSED_INPUTS
    }

    fn epilogue(&self, graph: &wpc_ir::Graph, node: &wpc_ir::Node) -> bool {
        node.inputs.len() <= MAX_FUSED_INPUTS && gemm::takes_epilogue(graph, node, self.opset)
    }

    /// A generated kernel, not the reference kernel every op has.
    fn has_kernel(&self, op: &str) -> bool {
        lowering("", op).is_some()
    }
}
