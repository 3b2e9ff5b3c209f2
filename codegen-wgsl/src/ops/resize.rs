//! Resize and Upsample as separable passes, replayed exactly as the
//! reference defines them: the taps (source index, weight) of every output
//! index along an axis are computed at compile time by the reference's own
//! code (`wpc_ir::ops::resample_passes`) and shipped as a small table, so
//! every coordinate mode, nearest rounding, cubic coefficient and
//! `exclude_outside` rule is defined in one place.

use wpc_ir::{Error, Result, Tensor};
use wpc_runtime::device_data::Word;

use super::index::literal;
use crate::kernel::Kernel;
use crate::lower::{Arg, Ctx, Launch, Lowered};

pub fn resize(ctx: &Ctx) -> Result<Lowered> {
    let x = ctx.input(0)?;
    if x.word != Word::F32 {
        return Err(Error::unsupported(format!(
            "{} on {} tensors",
            ctx.node.op, x.dtype
        )));
    }
    let params: Vec<Option<&Tensor>> = (0..ctx.inputs.len()).map(|i| ctx.opt_constant(i)).collect();
    for i in 1..ctx.inputs.len() {
        if ctx.has_input(i) && params[i].is_none() && ctx.input(i)?.numel() > 0 {
            return Err(Error::unsupported(format!(
                "{} input {i} (roi, scales or sizes) must be a constant for WebGPU",
                ctx.node.op
            )));
        }
    }
    let passes = wpc_ir::ops::resample_passes(ctx.node, ctx.opset, &x.shape, &params)?;
    if passes.is_empty() {
        return Ok(Lowered::one(
            super::copy_kernel(x.numel(), ctx),
            vec![Arg::In(0), Arg::Out(0)],
        ));
    }
    let mut shape = x.shape.clone();
    let mut src = Arg::In(0);
    let (mut consts, mut temps, mut launches) = (Vec::new(), Vec::new(), Vec::new());
    for (p, pass) in passes.iter().enumerate() {
        let (n_in, n_out) = (shape[pass.axis], pass.taps.len());
        let inner: usize = shape[pass.axis + 1..].iter().product();
        let k = pass.taps.iter().map(Vec::len).max().unwrap_or(1).max(1);
        // Per output index: K (index, weight) pairs; index -1 marks extrapolation.
        let mut table = vec![0.0f32; n_out * k * 2];
        for (j, taps) in pass.taps.iter().enumerate() {
            if taps.is_empty() {
                table[j * k * 2] = -1.0;
            }
            for (t, &(i, w)) in taps.iter().enumerate() {
                table[(j * k + t) * 2] = i as f32;
                table[(j * k + t) * 2 + 1] = w as f32;
            }
        }
        consts.push(Tensor::from_vec(vec![table.len()], table));
        shape[pass.axis] = n_out;
        let dst = if p + 1 == passes.len() {
            Arg::Out(0)
        } else {
            temps.push(shape.iter().product());
            Arg::Temp(temps.len() - 1)
        };
        let body = format!(
            "    let ii = i % {inner}u;\n    let j = (i / {inner}u) % {n_out}u;\n    let o = i / {}u;\n    let t = j * {}u;\n    if (taps[t] < 0.0) {{ out0[i] = {}; return; }}\n    var acc = 0.0;\n    for (var q = 0u; q < {k}u; q = q + 1u) {{\n        acc = acc + taps[t + 2u * q + 1u] * src[(o * {n_in}u + u32(taps[t + 2u * q])) * {inner}u + ii];\n    }}\n    out0[i] = acc;\n",
            inner * n_out,
            2 * k,
            literal(pass.extrapolation, Word::F32)
        );
        let mut kernel = Kernel::new(format!(
            "{} pass axis {} f32{:?} x{k} taps",
            ctx.node.op, pass.axis, shape
        ));
        kernel
            .input("src", Word::F32)
            .input("taps", Word::F32)
            .output("out0", Word::F32);
        kernel.one_per_item(
            shape.iter().product(),
            ctx.tuning().elementwise,
            ctx.max_groups(),
            &body,
        );
        launches.push(Launch {
            kernel,
            args: vec![src, Arg::Const(consts.len() - 1), dst],
        });
        src = dst;
    }
    Ok(Lowered::WithConsts {
        consts,
        temps,
        launches,
    })
}
