//! Resize and Upsample as separable passes, replayed exactly as the
//! reference defines them: the taps (source index, weight) of every output
//! index along an axis are computed at compile time by the reference's own
//! code (`wpc_ir::ops::resample_passes`) and shipped as a small table, so
//! every coordinate mode, nearest rounding, cubic coefficient and
//! `exclude_outside` rule is defined in one place.

use wpc_bundle::device_data::Word;
use wpc_ir::ops::params::{GridPadding, GridSample, Sampling};
use wpc_ir::{Error, Result, Tensor};

use super::index::literal;
use crate::kernel::Kernel;
use crate::lower::{Arg, Ctx, Launch, Lowered};

pub fn resize(ctx: &Ctx) -> Result<Lowered> {
    let x = ctx.input(0)?;
    super::require_f32(ctx, x)?;
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
            super::copy_kernel(&x.numel_of(), ctx),
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

/// GridSample: one thread per output element samples its plane at the
/// grid's normalised coordinates, with the reference's rounding, padding
/// and cubic weights.
pub fn grid_sample(ctx: &Ctx) -> Result<Lowered> {
    let (x, grid, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    super::require_f32(ctx, x)?;
    super::require_f32(ctx, grid)?;
    let GridSample {
        mode,
        padding,
        align_corners: align,
    } = GridSample::of(ctx.attrs())?;
    let taps = mode.taps();
    let dims = &x.shape[2..];
    let nd = dims.len();
    let osz: usize = out.shape[2..].iter().product();
    let isz: usize = dims.iter().product();
    let istr = super::index::strides(dims);
    let lit = |v: f64| literal(v, Word::F32);
    let mut k = Kernel::new(format!(
        "GridSample {} {} f32{:?} -> {:?}",
        mode.name(),
        padding.name(),
        x.shape,
        out.shape
    ));
    k.input("x", Word::F32)
        .input("grid", Word::F32)
        .output("out0", Word::F32);
    k.helpers.insert("reflect");
    if mode == Sampling::Cubic {
        k.helpers.insert("cubic4");
    }
    let mut b = format!(
        "    let o = i % {osz}u;\n    let plane = i / {osz}u;\n    let b = plane / {}u;\n    let g = (b * {osz}u + o) * {nd}u;\n",
        x.shape[1]
    );
    for (d, &len) in dims.iter().enumerate() {
        let lenf = len as f64;
        let (lo, hi) = if align {
            (0.0, lenf - 1.0)
        } else {
            (-0.5, lenf - 0.5)
        };
        let v = format!("grid[g + {}u]", nd - 1 - d);
        let p = if align {
            format!("({v} + 1.0) / 2.0 * {}", lit(lenf - 1.0))
        } else {
            format!("(({v} + 1.0) * {} - 1.0) / 2.0", lit(lenf))
        };
        b.push_str(&format!("    var p{d} = {p};\n"));
        if mode == Sampling::Nearest {
            b.push_str(&format!("    p{d} = round(p{d});\n"));
        }
        let fix = match padding {
            GridPadding::Border => format!("clamp(p{d}, 0.0, {})", lit(lenf - 1.0)),
            GridPadding::Reflection => format!("reflect(p{d}, {}, {})", lit(lo), lit(hi)),
            GridPadding::Zeros => format!("p{d}"),
        };
        b.push_str(&format!(
            "    if (p{d} < {} || p{d} > {}) {{ p{d} = {fix}; }}\n",
            lit(lo),
            lit(hi)
        ));
        let (first, weights) = match mode {
            Sampling::Nearest => (
                format!("i32(p{d})"),
                "vec4<f32>(1.0, 0.0, 0.0, 0.0)".to_string(),
            ),
            Sampling::Linear => (
                format!("i32(floor(p{d}))"),
                format!("vec4<f32>(1.0 - (p{d} - floor(p{d})), p{d} - floor(p{d}), 0.0, 0.0)"),
            ),
            Sampling::Cubic => (
                format!("i32(floor(p{d})) - 1"),
                format!("cubic4(p{d} - floor(p{d}))"),
            ),
        };
        b.push_str(&format!(
            "    let f{d} = {first};\n    let w{d} = {weights};\n"
        ));
    }
    b.push_str("    var acc = 0.0;\n");
    let combos = taps.pow(nd as u32);
    b.push_str(&format!("    for (var c = 0u; c < {combos}u; c = c + 1u) {{\n        var rest = c;\n        var w = 1.0;\n        var off = 0u;\n        var inside = true;\n"));
    for d in (0..nd).rev() {
        let size = dims[d] as i64;
        let (lo, hi) = if align {
            (0.0, size as f64 - 1.0)
        } else {
            (-0.5, size as f64 - 0.5)
        };
        let idx = match padding {
            GridPadding::Zeros => format!("j{d}"),
            GridPadding::Border => format!("clamp(j{d}, 0, {})", size - 1),
            GridPadding::Reflection => format!(
                "clamp(i32(reflect(f32(j{d}), {}, {})), 0, {})",
                lit(lo),
                lit(hi),
                size - 1
            ),
        };
        b.push_str(&format!(
            "        let t{d} = rest % {taps}u;\n        rest = rest / {taps}u;\n        let j{d} = f{d} + i32(t{d});\n        w = w * w{d}[t{d}];\n"
        ));
        if padding == GridPadding::Zeros {
            b.push_str(&format!(
                "        if (j{d} < 0 || j{d} >= {size}) {{ inside = false; }}\n"
            ));
        }
        b.push_str(&format!(
            "        off = off + u32(max({idx}, 0)) * {}u;\n",
            istr[d]
        ));
    }
    b.push_str(&format!(
        "        if (w != 0.0 && inside) {{ acc = acc + w * x[plane * {isz}u + off]; }}\n    }}\n    out0[i] = acc;\n"
    ));
    k.one_per_item(out.numel(), ctx.tuning().elementwise, ctx.max_groups(), &b);
    Ok(Lowered::one(k, vec![Arg::In(0), Arg::In(1), Arg::Out(0)]))
}
