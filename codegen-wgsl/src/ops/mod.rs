//! Per-op lowerings to WGSL, one module per op family. [`lowering`] is
//! the table from op name to lowering: adding an op to the WebGPU backend
//! means one function in its family module and one line there.

pub mod attention;
pub mod counted;
pub mod elementwise;
pub mod fused;
pub mod index;
pub mod integer;
pub mod loss;
pub mod matmul;
pub mod movement;
pub mod nn;
pub mod quant;
pub mod reduce;
pub mod resize;
pub mod rnn;

use wpc_bundle::device_data::Word;

use std::fmt::Write;

use wpc_ir::{Error, Result};

use crate::kernel::Kernel;
use crate::lower::{Ctx, LowerFn, Tt};

/// The ReduceX ops, all lowered by [`reduce::reduce`].
const REDUCTIONS: &[&str] = &[
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
];

/// The WebGPU lowering of `op` in `domain`, if there is one.
pub fn lowering(domain: &str, op: &str) -> Option<LowerFn> {
    if domain == wpc_ir::ops::fused::DOMAIN {
        return match op {
            wpc_ir::ops::fused::FUSED_ELEMENTWISE => Some(fused::fused),
            wpc_ir::ops::fused::FUSED_EPILOGUE => Some(fused::fused_epilogue),
            _ => None,
        };
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
        _ if wpc_ir::ops::class_of(domain, op) == wpc_ir::ops::OpClass::View => movement::alias,
        "Dropout" => elementwise::dropout,
        "DequantizeLinear" => elementwise::dequantize,
        "QuantizeLinear" => elementwise::quantize,
        "DynamicQuantizeLinear" => integer::dynamic_quantize_linear,
        "MatMulInteger" => integer::matmul_integer,
        "Transpose" => movement::transpose,
        "Slice" => movement::slice,
        "Expand" => movement::expand,
        "Tile" => movement::tile,
        "Concat" => movement::concat,
        "Split" => movement::split,
        "Pad" => movement::pad,
        "CenterCropPad" => movement::center_crop_pad,
        "DepthToSpace" => movement::depth_to_space,
        "SpaceToDepth" => movement::space_to_depth,
        "Gather" => movement::gather,
        "GatherElements" => movement::gather_elements,
        "GatherND" => movement::gather_nd,
        "ScatterND" => movement::scatter_nd,
        "ScatterElements" | "Scatter" => movement::scatter_elements,
        "Trilu" => movement::trilu,
        "Range" => movement::range,
        "EyeLike" => movement::eye_like,
        "OneHot" => movement::one_hot,
        _ if REDUCTIONS.contains(&op) => reduce::reduce,
        "ArgMax" | "ArgMin" => reduce::arg,
        "Softmax" | "LogSoftmax" | "Hardmax" => reduce::softmax,
        "CumSum" | "CumProd" => reduce::cumulative,
        "TopK" => reduce::top_k,
        "NonZero" => counted::non_zero,
        "NonMaxSuppression" => counted::non_max_suppression,
        "MatMul" => matmul::matmul,
        "Gemm" => matmul::gemm,
        "QLinearMatMul" => matmul::qlinear_matmul,
        "Conv" => nn::conv,
        "ConvInteger" => nn::conv_integer,
        "QLinearConv" => nn::qlinear_conv,
        "ConvTranspose" => nn::conv_transpose,
        "MaxPool" | "AveragePool" | "LpPool" => nn::pool,
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => nn::global_pool,
        "BatchNormalization" => nn::batch_norm,
        "LayerNormalization" | "RMSNormalization" => nn::layer_norm,
        "InstanceNormalization"
        | "GroupNormalization"
        | "MeanVarianceNormalization"
        | "LpNormalization" => nn::norm_rows,
        "LRN" => nn::lrn,
        "Attention" => attention::attention,
        "RotaryEmbedding" => attention::rotary_embedding,
        "LSTM" => rnn::lstm,
        "GRU" => rnn::gru,
        "RNN" => rnn::rnn,
        "Resize" | "Upsample" => resize::resize,
        "GridSample" => resize::grid_sample,
        "NegativeLogLikelihoodLoss" | "SoftmaxCrossEntropyLoss" => loss::loss,
        _ => return None,
    })
}

/// Whether `op`'s lowering takes tensors of dynamic size (reading the
/// sizes from its parameters at run time); the others are compiled for
/// static shapes only.
pub fn handles_dynamic_sizes(domain: &str, op: &str) -> bool {
    if domain == wpc_ir::ops::fused::DOMAIN {
        // An epilogue's anchor is checked when it is lowered.
        return op == wpc_ir::ops::fused::FUSED_ELEMENTWISE
            || op == wpc_ir::ops::fused::FUSED_EPILOGUE;
    }
    if domain == wpc_ir::ops::quant::MICROSOFT {
        return matches!(op, "MatMulNBits" | "GatherBlockQuantized");
    }
    let default_domain = domain.is_empty() || domain == "ai.onnx";
    default_domain
        && (elementwise::is_elementwise(op)
            || wpc_ir::ops::class_of(domain, op) == wpc_ir::ops::OpClass::View
            || REDUCTIONS.contains(&op)
            || matches!(
                op,
                "Transpose"
                    | "QuantizeLinear"
                    | "DequantizeLinear"
                    | "DynamicQuantizeLinear"
                    | "MatMulInteger"
                    | "Slice"
                    | "Expand"
                    | "Gather"
                    | "MatMul"
                    | "Softmax"
                    | "LogSoftmax"
                    | "Hardmax"
                    | "LayerNormalization"
                    | "RMSNormalization"
                    | "Attention"
                    | "Conv"
                    | "Pad"
                    | "Gemm"
                    | "GlobalAveragePool"
                    | "GlobalMaxPool"
                    | "GlobalLpPool"
                    | "MaxPool"
                    | "ConvTranspose"
                    | "AveragePool"
                    | "LpPool"
                    | "NonZero"
                    | "GatherND"
                    | "NonMaxSuppression"
                    | "Concat"
                    | "Split"
                    | "LSTM"
                    | "GRU"
                    | "RNN"
            ))
}

/// A kernel copying `words` 32-bit words from binding 0 to binding 1.
pub fn copy_kernel(words: &wpc_ir::sym::Expr, ctx: &Ctx) -> Kernel {
    let mut k = Kernel::new(format!("Copy {words} words"));
    k.input("src", Word::U32)
        .output("dst", Word::U32)
        .one_per_item_of(
            words,
            ctx.tuning().elementwise,
            ctx.max_groups(),
            "    dst[i] = src[i];\n",
        );
    k
}

/// Rejects tensors the float-only kernels cannot compute on, naming the op.
pub fn require_f32(ctx: &Ctx, t: &Tt) -> Result<()> {
    if t.word != Word::F32 {
        return Err(Error::unsupported(format!(
            "{} on {} tensors",
            ctx.node.op, t.dtype
        )));
    }
    Ok(())
}

/// Declares `var<workgroup> {name}: array<{ty}, {size}>` (32-bit
/// elements) on `k` and counts its bytes.
pub fn workgroup_array(k: &mut Kernel, name: &str, ty: &str, size: u32) {
    let _ = writeln!(k.decls, "var<workgroup> {name}: array<{ty}, {size}>;");
    k.workgroup_bytes += size * 4;
}

/// Code that combines every lane's `{var}` into `{array}[0]` with `comb`
/// (an expression over `$a` and `$b`), then reads it back into `{var}` on
/// every lane: a tree reduction over a workgroup of `size` lanes.
pub fn tree_reduce(var: &str, array: &str, size: u32, comb: &str) -> String {
    let step = comb
        .replace("$a", &format!("{array}[lidx]"))
        .replace("$b", &format!("{array}[lidx + s]"));
    format!(
        "    {array}[lidx] = {var};\n    workgroupBarrier();\n    for (var s = {}u; s > 0u; s = s >> 1u) {{\n        if (lidx < s) {{ {array}[lidx] = {step}; }}\n        workgroupBarrier();\n    }}\n    {var} = {array}[0];\n    workgroupBarrier();\n",
        size / 2
    )
}
