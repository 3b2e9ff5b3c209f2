//! Integer quantization at run time, as onnxruntime's `quantize_dynamic`
//! writes it: `DynamicQuantizeLinear` turns activations into uint8 codes
//! with one scale and zero point measured on the tensor, and
//! `MatMulInteger` multiplies codes by int8/uint8 weights into int32.
//! Both take dynamic sizes.

use wpc_bundle::device_data::Word;
use wpc_ir::sym::Expr;
use wpc_ir::{Error, Result};

use super::{tree_reduce, workgroup_array};
use crate::kernel::Kernel;
use crate::lower::{Arg, Ctx, Launch, Lowered};

/// `DynamicQuantizeLinear`: one workgroup finds the range of `x` (held to
/// include 0) and derives `scale = (max − min) / 255` and the zero point
/// `round(−min / scale)`; then every element becomes
/// `clamp(round(x / scale) + zero_point, 0, 255)` (all zero points when
/// the tensor is all zeros, as the reference does).
pub fn dynamic_quantize_linear(ctx: &Ctx) -> Result<Lowered> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    if x.word != Word::F32 {
        return Err(Error::unsupported(format!(
            "DynamicQuantizeLinear of {} on WebGPU",
            x.dtype
        )));
    }
    let n = x.numel_of();
    let wg = ctx.tuning().reduction;
    let mut range = Kernel::new(format!("DynamicQuantizeLinear range {:?}", x.shape));
    range.input("in0", Word::F32).output("p", Word::F32);
    let mut args = vec![Arg::In(0), Arg::Temp(0)];
    let mut publish = String::new();
    if ctx.wants_output(1) {
        range.output("out1", Word::F32);
        args.push(Arg::Out(1));
        publish.push_str("        out1[0] = s;\n");
    }
    if ctx.wants_output(2) {
        range.output("out2", ctx.output(2)?.word);
        args.push(Arg::Out(2));
        publish.push_str(&format!(
            "        out2[0] = {}(z);\n",
            ctx.output(2)?.word.wgsl()
        ));
    }
    workgroup_array(&mut range, "part", "f32", wg);
    let count = range.params.size(&n);
    let body = format!(
        "    var lo = 0.0;
    var hi = 0.0;
    for (var j = lidx; j < {count}; j = j + {wg}u) {{
        lo = min(lo, in0[j]);
        hi = max(hi, in0[j]);
    }}
{}{}    if (lidx == 0u) {{
        let s = (hi - lo) / 255.0;
        let z = select(clamp(round((0.0 - lo) / s), 0.0, 255.0), 0.0, s == 0.0);
        p[0] = s;
        p[1] = z;
{publish}    }}
",
        tree_reduce("lo", "part", wg, "min($a, $b)"),
        tree_reduce("hi", "part", wg, "max($a, $b)"),
    );
    range.one_group_per_item(1, wg, ctx.max_groups(), &body);
    let mut codes = Kernel::new(format!("DynamicQuantizeLinear codes {:?}", x.shape));
    codes
        .input("in0", Word::F32)
        .input("p", Word::F32)
        .output("out0", out.word);
    codes.one_per_item_of(
        &n,
        ctx.tuning().elementwise,
        ctx.max_groups(),
        &format!(
            "    let s = p[0];\n    let z = p[1];\n    out0[i] = {}(select(clamp(round(in0[i] / s) + z, 0.0, 255.0), z, s == 0.0));\n",
            out.word.wgsl()
        ),
    );
    Ok(Lowered::Launches {
        temps: vec![2],
        launches: vec![
            Launch {
                kernel: range,
                args,
            },
            Launch {
                kernel: codes,
                args: vec![Arg::In(0), Arg::Temp(0), Arg::Out(0)],
            },
        ],
    })
}

/// `MatMulInteger`: `Y[.., m, n] = Σₖ (A[.., m, k] − a_zero) · (B[k, n] −
/// b_zero[n])` in int32, exactly (one thread per output; `B` 2-D, `A`'s
/// zero point one scalar, `B`'s one or one per column).
pub fn matmul_integer(ctx: &Ctx) -> Result<Lowered> {
    let (a, b, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    if a.dims.len() < 2 || b.dims.len() != 2 {
        return Err(Error::unsupported(
            "MatMulInteger on WebGPU takes A of rank 2 or more and a 2-D B",
        ));
    }
    let (Some(kk), Some(nn)) = (b.dims[0].as_const(), b.dims[1].as_const()) else {
        return Err(Error::unsupported(
            "MatMulInteger on WebGPU with a B of dynamic size",
        ));
    };
    if a.dims[a.dims.len() - 1].as_const() != Some(kk) {
        return Err(Error::unsupported(format!(
            "MatMulInteger whose A rows ({}) are not B's {kk}",
            a.dims[a.dims.len() - 1]
        )));
    }
    let mut k = Kernel::new(format!(
        "MatMulInteger {:?} x [{kk}x{nn}] {}x{}",
        a.shape, a.dtype, b.dtype
    ));
    k.input("in0", a.word).input("in1", b.word);
    let mut args = vec![Arg::In(0), Arg::In(1)];
    let za = if ctx.has_input(2) {
        if ctx.input(2)?.numel() != 1 {
            return Err(Error::unsupported(
                "MatMulInteger with a per-row zero point for A on WebGPU",
            ));
        }
        k.input("za", ctx.input(2)?.word);
        args.push(Arg::In(2));
        "i32(za[0])"
    } else {
        "0i"
    };
    let zb = if ctx.has_input(3) {
        let z = ctx.input(3)?;
        k.input("zb", z.word);
        args.push(Arg::In(3));
        match z.numel() {
            1 => "i32(zb[0])",
            len if len as i64 == nn => "i32(zb[n])",
            _ => {
                return Err(Error::unsupported(
                    "MatMulInteger with a zero point for B that is neither one value nor one per column",
                ));
            }
        }
    } else {
        "0i"
    };
    k.output("out0", out.word);
    args.push(Arg::Out(0));
    let rows = Expr::product(&a.dims[..a.dims.len() - 1]);
    let items = rows.scale(nn);
    let body = format!(
        "    let n = i % {nn}u;
    let m = i / {nn}u;
    let za = {za};
    let zb = {zb};
    var acc = 0i;
    for (var k = 0u; k < {kk}u; k++) {{
        acc += (i32(in0[m * {kk}u + k]) - za) * (i32(in1[k * {nn}u + n]) - zb);
    }}
    out0[i] = acc;
"
    );
    k.one_per_item_of(&items, ctx.tuning().elementwise, ctx.max_groups(), &body);
    Ok(Lowered::one(k, args))
}
