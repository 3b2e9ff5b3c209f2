//! Neural-network ops: Conv (implicit GEMM on the tiled template),
//! ConvTranspose, pooling, and the normalizations.

use std::fmt::Write;

use wpc_bundle::device_data::Word;
use wpc_ir::ops::Window;
use wpc_ir::{Error, Result};

use super::elementwise::broadcast_kernel;
use super::index::{literal, offset_of, row_major, show, size, strides, unravel, unravel_of};
use super::matmul::{GemmSpec, gemm_kernel};
use super::{require_f32, tree_reduce, workgroup_array};
use crate::kernel::{Kernel, Params};
use crate::lower::{Arg, Ctx, Lowered, Tt};
use wpc_ir::sym::Expr;

fn lit(v: f64) -> String {
    literal(v, Word::F32)
}

/// Conv as an implicit GEMM per (image, group): M = output channels of the
/// group, N = output positions, K = input channels of the group x kernel
/// positions; B is gathered from the input on the fly (im2col in the load).
pub fn conv(ctx: &Ctx) -> Result<Lowered> {
    require_f32(ctx, ctx.input(0)?)?;
    let bias = ctx.has_input(2).then_some(ConvWeight::Input(2));
    conv_gemm(
        ctx,
        ConvOperands {
            kind: "Conv f32",
            weight: ConvWeight::Input(1),
            bias,
            load_w: "$w".into(),
            load_x: "$x".into(),
            reads: Vec::new(),
            store: "$v".into(),
        },
    )
}

/// ConvInteger: `Σ (x − x_zero_point)·(w − w_zero_point)` in int32. The
/// kernel sums in float32, which is exact only while no partial sum can
/// reach 2^24: bounded from a constant weight's own values (widened to
/// float at compile time less its zero points), else from the types'
/// ranges; past that the node is refused.
pub fn conv_integer(ctx: &Ctx) -> Result<Lowered> {
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    let range = |t: &Tt| {
        let (lo, hi) = t
            .dtype
            .int_range()
            .ok_or_else(|| Error::unsupported(format!("ConvInteger over {} on WebGPU", t.dtype)))?;
        Ok::<f64, Error>(hi - lo)
    };
    // The largest |x − x_zero_point| an element of x's type can give.
    let widest = range(x)?;
    let per_channel = w.numel() / w.shape[0].max(1);
    // Node inputs the loads read: x's zero point, and the weight's where
    // the weight is not a constant.
    let mut reads = Vec::new();
    let mut load_x = "f32($x)".to_string();
    if ctx.has_input(2) {
        load_x.push_str(" - f32(xzp[0])");
        reads.push(("xzp", 2));
    }
    let constant = (ctx.opt_constant(1), ctx.opt_constant(3));
    let (weight, load_w, largest) = match constant {
        (Some(w), zeros) if zeros.is_some() || !ctx.has_input(3) => {
            let weight = dequantized_weight(w, zeros, None);
            let values = weight.as_slice::<f32>().expect("float32");
            let largest = (values.chunks(per_channel.max(1)))
                .map(|row| row.iter().map(|v| f64::from(v.abs())).sum::<f64>() * widest)
                .fold(0.0, f64::max);
            (ConvWeight::Derived(weight), "$w".to_string(), largest)
        }
        _ => {
            let load = if ctx.has_input(3) {
                reads.push(("wzp", 3));
                let ch = if ctx.input(3)?.numel() == 1 {
                    "0u"
                } else {
                    "grp * MGu + m"
                };
                format!("f32($w) - f32(wzp[{ch}])")
            } else {
                "f32($w)".to_string()
            };
            let largest = widest * range(w)? * per_channel as f64;
            (ConvWeight::Input(1), load, largest)
        }
    };
    if largest >= f64::from(1u32 << 24) {
        return Err(Error::unsupported(format!(
            "ConvInteger whose sums may reach {largest:.0}: float32 is exact only below 2^24 on WebGPU"
        )));
    }
    conv_gemm(
        ctx,
        ConvOperands {
            kind: "ConvInteger",
            weight,
            load_w,
            bias: None,
            load_x,
            reads,
            store: "i32($v)".into(),
        },
    )
}

/// QLinearConv: x and w dequantized, convolved with the bias (int32 at
/// scale `x_scale · w_scale`), requantized to y's scale and zero point.
/// Every parameter but x must be a constant: the weight and bias become
/// float at compile time and the scalars literals, as the reference
/// computes them (rounding half to even, saturating).
pub fn qlinear_conv(ctx: &Ctx) -> Result<Lowered> {
    let scalar = |i: usize| -> Result<f64> {
        let t = ctx.constant(i)?;
        if t.len() != 1 {
            return Err(Error::unsupported(format!(
                "QLinearConv with per-channel input {i} on WebGPU"
            )));
        }
        Ok(t.to_f64s()[0])
    };
    let (x_scale, x_zero, y_scale, y_zero) = (scalar(1)?, scalar(2)?, scalar(6)?, scalar(7)?);
    let (w, w_scale) = (ctx.constant(3)?, ctx.constant(4)?);
    let weight = dequantized_weight(w, Some(ctx.constant(5)?), Some(w_scale));
    let bias = match ctx.opt_constant(8) {
        // int32 at scale x_scale · w_scale.
        Some(b) => Some(ConvWeight::Derived(dequantized_weight(
            b,
            None,
            Some(&wpc_ir::Tensor::from_f64s(
                wpc_ir::DType::F64,
                w_scale.shape().to_vec(),
                w_scale.to_f64s().into_iter().map(|s| x_scale * s),
            )),
        ))),
        None if ctx.has_input(8) => {
            return Err(Error::unsupported(
                "QLinearConv with a computed bias on WebGPU",
            ));
        }
        None => None,
    };
    let out = ctx.output(0)?;
    let (lo, hi) = match out.dtype {
        wpc_ir::DType::U8 | wpc_ir::DType::I8 => out.dtype.int_range().expect("an integer type"),
        other => {
            return Err(Error::unsupported(format!(
                "QLinearConv to {other} on WebGPU"
            )));
        }
    };
    conv_gemm(
        ctx,
        ConvOperands {
            kind: "QLinearConv",
            weight: ConvWeight::Derived(weight),
            bias,
            load_w: "$w".into(),
            load_x: format!("(f32($x) - {}) * {}", lit(x_zero), lit(x_scale)),
            reads: Vec::new(),
            store: format!(
                "{}(clamp(round($v / {}) + {}, {lo:?}, {hi:?}))",
                out.word.wgsl(),
                lit(y_scale),
                lit(y_zero)
            ),
        },
    )
}

/// `(w − zero)·scale` of a constant `w` as float32, each parameter one
/// value or one per output channel (axis 0), absent meaning 0 and 1:
/// how the integer convolutions take a constant weight (and bias).
fn dequantized_weight(
    w: &wpc_ir::Tensor,
    zero: Option<&wpc_ir::Tensor>,
    scale: Option<&wpc_ir::Tensor>,
) -> wpc_ir::Tensor {
    let per_channel = w.len() / w.shape().first().copied().unwrap_or(1).max(1);
    let at = |p: Option<&Vec<f64>>, c: usize, absent: f64| {
        p.map_or(absent, |v| v[if v.len() == 1 { 0 } else { c }])
    };
    let (zero, scale) = (zero.map(|z| z.to_f64s()), scale.map(|s| s.to_f64s()));
    let values: Vec<f32> = (w.to_f64s().iter().enumerate())
        .map(|(i, &v)| {
            let c = i / per_channel;
            ((v - at(zero.as_ref(), c, 0.0)) * at(scale.as_ref(), c, 1.0)) as f32
        })
        .collect();
    wpc_ir::Tensor::from_vec(w.shape().to_vec(), values)
}

/// A weight or bias of a convolution: a node input, or a float tensor
/// the lowering derived from its inputs.
enum ConvWeight {
    Input(usize),
    Derived(wpc_ir::Tensor),
}

/// What the implicit-GEMM convolution reads and stores: Conv's own
/// operands, or the integer convolutions' with their zero points and
/// scales applied as x is loaded and the sum stored.
struct ConvOperands {
    /// The kernel's label: op and type.
    kind: &'static str,
    /// x is the node's input 0.
    weight: ConvWeight,
    /// The weight's element `$w` as the f32 the sum takes.
    load_w: String,
    bias: Option<ConvWeight>,
    /// x's element `$x` as the f32 the sum takes (padding reads 0).
    load_x: String,
    /// Node inputs the loads read, each bound under its name (zero
    /// points).
    reads: Vec<(&'static str, usize)>,
    /// The stored value, of the sum (bias included) `$v`.
    store: String,
}

fn conv_gemm(ctx: &Ctx, ops: ConvOperands) -> Result<Lowered> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let w_shape = match &ops.weight {
        ConvWeight::Input(i) => {
            let w = ctx.input(*i)?;
            // Spatial sizes and the batch may be dynamic (read from the
            // parameters); channels and the kernel are compiled in.
            if !w.is_static() {
                return Err(crate::lower::dynamic_size_refused(ops.kind, w));
            }
            w.shape.clone()
        }
        ConvWeight::Derived(t) => t.shape().to_vec(),
    };
    if x.dims.get(1).and_then(Expr::as_const).is_none() {
        return Err(crate::lower::dynamic_size_refused(ops.kind, x));
    }
    let kernel: Vec<usize> = w_shape[2..].to_vec();
    let input = &x.dims[2..];
    let win = Window::new(ctx.attrs(), &x.shape[2..], &kernel)?;
    if !x.is_static() {
        wpc_ir::ops::params::pads_fixed_for_dynamic_sizes(ops.kind, ctx.attrs())?;
    }
    let group = wpc_ir::ops::params::conv_group(ctx.attrs())?;
    let c = x.shape[1];
    let m_all = w_shape[0];
    let (cg, mg) = (c / group, m_all / group);
    let kp: usize = kernel.iter().product();
    let sp = Expr::product(input);
    let ns = Expr::product(&out.dims[2..]);
    let nd = input.len();
    let xs = row_major(input);
    let mut params = Params::default();
    let mut load_b = format!("let c = k / {kp}u;\nlet kr = k % {kp}u;\n");
    load_b.push_str(&unravel("kr", &kernel, "kq"));
    load_b.push_str(&unravel_of(&mut params, "n", &out.dims[2..], "oq"));
    let mut conds = Vec::new();
    let mut terms = Vec::new();
    for d in 0..nd {
        let _ = writeln!(
            load_b,
            "let h{d} = i32(oq{d} * {}u + kq{d} * {}u) - {};",
            win.strides[d], win.dilations[d], win.pads[d]
        );
        let bound = params.signed(&input[d]);
        conds.push(format!("h{d} >= 0 && h{d} < {bound}"));
        terms.push(format!("u32(h{d}) * {}", params.size(&xs[d])));
    }
    let element = format!(
        "x[xbase + (cbase + c) * {} + {}]",
        params.size(&sp),
        terms.join(" + ")
    );
    let value = ops.load_x.replace("$x", &element);
    let _ = writeln!(load_b, "if ({}) {{ v = {value}; }}", conds.join(" && "));
    let bias = if ops.bias.is_some() {
        " + bias[grp * MGu + m]".replace("MG", &mg.to_string())
    } else {
        String::new()
    };
    let label = if x.is_static() {
        format!(
            "{} x{:?} w{:?} group {group} -> {:?}",
            ops.kind, x.shape, w_shape, out.shape
        )
    } else {
        format!(
            "{} x{} w{:?} group {group} -> {}",
            ops.kind,
            show(&x.dims),
            w_shape,
            show(&out.dims)
        )
    };
    let prelude = format!(
        "    let nb = bat / {group}u;\n    let grp = bat % {group}u;\n    let xbase = nb * {};\n    let cbase = grp * {cg}u;\n",
        params.size(&sp.scale(c as i64))
    );
    // The sum with its bias, bracketed where the store applies more.
    let sum = if bias.is_empty() || ops.store == "$v" {
        format!("v{bias}")
    } else {
        format!("(v{bias})")
    };
    let store = ctx.store(
        &format!(
            "(nb * {m_all}u + grp * {mg}u + m) * {} + n",
            params.size(&ns)
        ),
        &ops.store.replace("$v", &sum),
    );
    let spec = GemmSpec {
        label,
        m: size(mg),
        n: ns,
        k: size(cg * kp),
        batch: x.dims[0].scale(group as i64),
        params,
        prelude,
        load_a: format!(
            "v = {};",
            ops.load_w
                .replace("$w", &format!("w[(grp * {mg}u + m) * {}u + k]", cg * kp))
                .replace("MG", &mg.to_string())
        ),
        load_b,
        load_b4: None,
        store,
    };
    let mut k = gemm_kernel(&spec, &ctx.tuning().conv, ctx.max_groups())?;
    // Bindings, in order: x, w, bias, the loads' reads, out.
    let mut consts = Vec::new();
    let mut operand = |k: &mut Kernel, name: &str, word: Word, w: ConvWeight| {
        k.input(name, word);
        match w {
            ConvWeight::Input(i) => Arg::In(i),
            ConvWeight::Derived(t) => {
                consts.push(t);
                Arg::Const(consts.len() - 1)
            }
        }
    };
    k.input("x", x.word);
    let mut args = vec![Arg::In(0)];
    let w_word = match ops.weight {
        ConvWeight::Input(i) => ctx.input(i)?.word,
        ConvWeight::Derived(_) => Word::F32,
    };
    args.push(operand(&mut k, "w", w_word, ops.weight));
    if let Some(b) = ops.bias {
        args.push(operand(&mut k, "bias", Word::F32, b));
    }
    for (name, i) in ops.reads {
        k.input(name, ctx.input(i)?.word);
        args.push(Arg::In(i));
    }
    k.output("out0", out.word);
    args.push(Arg::Out(0));
    Ok(Lowered::WithConsts {
        consts,
        temps: Vec::new(),
        launches: vec![crate::lower::Launch { kernel: k, args }],
    })
}

/// Binds x, w, the optional bias and the output of a float convolution
/// kernel (inputs 0, 1 and 2).
fn bind_conv(k: &mut Kernel, has_bias: bool) -> Vec<Arg> {
    k.input("x", Word::F32).input("w", Word::F32);
    let mut args = vec![Arg::In(0), Arg::In(1)];
    if has_bias {
        k.input("bias", Word::F32);
        args.push(Arg::In(2));
    }
    k.output("out0", Word::F32);
    args.push(Arg::Out(0));
    args
}

/// ConvTranspose: one thread per output element gathers the input
/// pixels whose strided taps land on it. Batch and image size may be
/// dynamic where the pads are fixed (no `output_shape`, no SAME
/// `auto_pad`); channels, kernel, strides and dilations are compiled in.
pub fn conv_transpose(ctx: &Ctx) -> Result<Lowered> {
    let (x, w, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    require_f32(ctx, x)?;
    let nd = x.shape.len() - 2;
    let p = wpc_ir::ops::params::ConvTranspose::of(ctx.attrs(), nd)?;
    let group = p.group;
    let (ci, co) = (x.shape[1], out.shape[1]);
    let (cig, cog) = (ci / group, co / group);
    let kernel: Vec<usize> = w.shape[2..].to_vec();
    let dynamic = !(x.is_static() && out.is_static());
    if dynamic && (p.output_shape.is_some() || p.same.is_some()) {
        return Err(Error::unsupported(
            "ConvTranspose with output_shape or auto_pad SAME over a dynamic size (its pads depend on the size)",
        ));
    }
    let pads = p.window(&x.shape[2..], &kernel).pads;
    let (st, dil) = (&p.strides, &p.dilations);
    let input = &x.dims[2..];
    let mut sizes = Params::default();
    let isp = sizes.size(&Expr::product(input));
    let kp: usize = kernel.iter().product();
    let ist = row_major(input);
    let mut b = unravel_of(&mut sizes, "i", &out.dims, "o");
    let _ = writeln!(
        b,
        "    let g = o1 / {cog}u;\n    let ocl = o1 % {cog}u;\n    var acc = 0.0;\n    for (var kk = 0u; kk < {kp}u; kk = kk + 1u) {{"
    );
    b.push_str(&unravel("kk", &kernel, "kq").replace("    let", "        let"));
    let mut conds = Vec::new();
    let mut terms = Vec::new();
    for d in 0..nd {
        let _ = writeln!(
            b,
            "        let p{d} = i32(o{}) + {} - i32(kq{d}) * {};",
            d + 2,
            pads[d],
            dil[d]
        );
        conds.push(format!(
            "p{d} >= 0 && p{d} % {s} == 0 && p{d} / {s} < {}",
            sizes.signed(&input[d]),
            s = st[d]
        ));
        terms.push(format!("u32(p{d} / {}) * {}", st[d], sizes.size(&ist[d])));
    }
    let _ = writeln!(
        b,
        "        if ({}) {{\n            let ioff = {};\n            for (var c = 0u; c < {cig}u; c = c + 1u) {{\n                let ic = g * {cig}u + c;\n                acc = acc + x[(o0 * {ci}u + ic) * {isp} + ioff] * w[(ic * {cog}u + ocl) * {kp}u + kk];\n            }}\n        }}\n    }}",
        conds.join(" && "),
        terms.join(" + ")
    );
    let has_bias = ctx.has_input(2);
    let _ = writeln!(
        b,
        "    out0[i] = acc{};",
        if has_bias { " + bias[o1]" } else { "" }
    );
    let mut k = Kernel::new(format!(
        "ConvTranspose f32 x{} w{:?} -> {}",
        show(&x.dims),
        w.shape,
        show(&out.dims)
    ));
    k.params = sizes;
    let args = bind_conv(&mut k, has_bias);
    k.one_per_item_of(&out.numel_of(), ctx.tuning().pool, ctx.max_groups(), &b);
    Ok(Lowered::one(k, args))
}

/// MaxPool, AveragePool and LpPool: one thread per output element walks
/// its window. The batch, channels and image size may be dynamic (read
/// from the parameters); the window, strides, dilations and pads are
/// compiled in.
pub fn pool(ctx: &Ctx) -> Result<Lowered> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    require_f32(ctx, x)?;
    let params = wpc_ir::ops::params::Pool::of(ctx.attrs(), x.shape.len() - 2)?;
    let kernel = &params.kernel;
    let win = Window::new(ctx.attrs(), &x.shape[2..], kernel)?;
    if !(x.is_static() && out.is_static()) {
        wpc_ir::ops::params::pads_fixed_for_dynamic_sizes(&ctx.node.op, ctx.attrs())?;
    }
    let (input, output) = (&x.dims[2..], &out.dims[2..]);
    let nd = input.len();
    let mut sizes = Params::default();
    let isp = sizes.size(&Expr::product(input));
    let osp = sizes.size(&Expr::product(output));
    let kp: usize = kernel.iter().product();
    let ist = row_major(input);
    let op = ctx.node.op.as_str();
    let include_pad = params.count_include_pad;
    let p = wpc_ir::ops::params::lp_pool_p(ctx.attrs())?;
    let wants_idx = ctx.wants_output(1);
    if wants_idx && params.column_major_indices {
        return Err(Error::unsupported(
            "MaxPool indices in column-major storage order",
        ));
    }
    let mut b = format!("    let pl = i / {osp};\n    let os = i % {osp};\n");
    b.push_str(&unravel_of(&mut sizes, "os", output, "o"));
    let init = if op == "MaxPool" {
        "f32_bits(0xff800000u)"
    } else {
        "0.0"
    };
    let _ = writeln!(
        b,
        "    var acc = {init};\n    var arg = 0u;\n    var count = 0u;\n    var padded = 0u;\n    for (var kk = 0u; kk < {kp}u; kk = kk + 1u) {{"
    );
    b.push_str(&unravel("kk", kernel, "kq").replace("    let", "        let"));
    let mut inside = Vec::new();
    let mut in_pad = Vec::new();
    let mut terms = Vec::new();
    for d in 0..nd {
        let _ = writeln!(
            b,
            "        let h{d} = i32(o{d} * {}u + kq{d} * {}u) - {};",
            win.strides[d], win.dilations[d], win.pads[d]
        );
        let n = sizes.signed(&input[d]);
        inside.push(format!("h{d} >= 0 && h{d} < {n}"));
        let padded_end = sizes.signed(&input[d].add(&Expr::constant(win.pads[d + nd] as i64)));
        in_pad.push(format!("h{d} >= -{} && h{d} < {padded_end}", win.pads[d]));
        terms.push(format!("u32(h{d}) * {}", sizes.size(&ist[d])));
    }
    let _ = writeln!(
        b,
        "        if ({}) {{ padded = padded + 1u; }}",
        in_pad.join(" && ")
    );
    let update = match op {
        "MaxPool" => "if (v > acc) { acc = v; arg = off; }".to_string(),
        "AveragePool" => "acc = acc + v;".to_string(),
        _ => format!("acc = acc + pow(abs(v), {});", lit(p)),
    };
    let _ = writeln!(
        b,
        "        if ({}) {{\n            let off = {};\n            let v = x[pl * {isp} + off];\n            count = count + 1u;\n            {update}\n        }}\n    }}",
        inside.join(" && "),
        terms.join(" + ")
    );
    let result = match op {
        "MaxPool" => "acc".to_string(),
        "AveragePool" if include_pad => "acc / f32(max(padded, 1u))".to_string(),
        "AveragePool" => "acc / f32(max(count, 1u))".to_string(),
        _ => format!("pow(acc, {})", lit(1.0 / p)),
    };
    let _ = writeln!(b, "    out0[i] = {result};");
    let mut k = Kernel::new(format!("{op} f32{} kernel {kernel:?}", show(&x.dims)));
    k.params = sizes;
    k.input("x", Word::F32).output("out0", Word::F32);
    let mut args = vec![Arg::In(0), Arg::Out(0)];
    if wants_idx {
        let iw = ctx.output(1)?.word;
        let _ = writeln!(b, "    out1[i] = {}(pl * {isp} + arg);", iw.wgsl());
        k.output("out1", iw);
        args.push(Arg::Out(1));
    }
    k.one_per_item_of(&out.numel_of(), ctx.tuning().pool, ctx.max_groups(), &b);
    Ok(Lowered::one(k, args))
}

pub fn global_pool(ctx: &Ctx) -> Result<Lowered> {
    let x = ctx.input(0)?;
    require_f32(ctx, x)?;
    // Rows (batch × channels) and their length (the spatial size) may be
    // dynamic.
    let len = Expr::product(&x.dims[2..]);
    let rows = Expr::product(&x.dims[..2]);
    let stat = match ctx.node.op.as_str() {
        "GlobalMaxPool" => Stat::Max,
        "GlobalLpPool" => Stat::LpPool(wpc_ir::ops::params::lp_pool_p(ctx.attrs())?),
        _ => Stat::Mean,
    };
    row_norm(ctx, RowSpec::contiguous_of(rows, len, stat), None)
}

pub fn batch_norm(ctx: &Ctx) -> Result<Lowered> {
    let x = ctx.input(0)?;
    require_f32(ctx, x)?;
    let p = wpc_ir::ops::params::BatchNorm::of(ctx.attrs())?;
    if p.training || ctx.wants_output(1) {
        return Err(Error::unsupported(
            "BatchNormalization in training mode on WebGPU",
        ));
    }
    let eps = lit(f64::from(p.epsilon));
    let c = x.shape.get(1).copied().unwrap_or(1);
    let mut per_channel = vec![c];
    per_channel.extend(std::iter::repeat_n(1, x.shape.len().saturating_sub(2)));
    let per_channel = super::index::consts(&per_channel);
    let mut ins = vec![(x.clone(), x.dims.clone())];
    for i in 1..5 {
        ins.push((ctx.input(i)?.clone(), per_channel.clone()));
    }
    let expr = format!("(a - d) / sqrt(e + {eps}) * b + c");
    let k = broadcast_kernel(ctx, &ins, ctx.output(0)?, &expr, Default::default())?;
    Ok(Lowered::one(
        k,
        (0..5).map(Arg::In).chain([Arg::Out(0)]).collect(),
    ))
}

/// What a row kernel computes over each row.
#[derive(Clone, Copy)]
enum Stat {
    /// Subtract the mean, divide by sqrt(variance + eps).
    Standardize(f64),
    /// Divide by sqrt(mean of squares + eps) (RMSNorm).
    Rms(f64),
    /// Divide by the Lp norm (p = 1 or 2).
    Lp(u32),
    /// Write the row's mean / max / Lp norm as one value.
    Mean,
    Max,
    LpPool(f64),
}

/// Rows over a (possibly virtual) shape whose sizes may be dynamic: `kept`
/// axes index rows, `reduced` axes index elements within a row.
struct RowSpec {
    shape: Vec<Expr>,
    reduced: Vec<usize>,
    stat: Stat,
}

impl RowSpec {
    fn contiguous(rows: usize, len: usize, stat: Stat) -> RowSpec {
        RowSpec::contiguous_of(size(rows), size(len), stat)
    }

    /// `rows` rows of `len` elements, one after another.
    fn contiguous_of(rows: Expr, len: Expr, stat: Stat) -> RowSpec {
        RowSpec {
            shape: vec![rows, len],
            reduced: vec![1],
            stat,
        }
    }
}

/// Scale and bias of a normalization: WGSL index expressions over the
/// coordinates (`o{j}` for kept axes, `r{j}` for reduced ones, in order).
struct Affine {
    scale: String,
    bias: Option<String>,
}

fn row_norm(ctx: &Ctx, spec: RowSpec, affine: Option<Affine>) -> Result<Lowered> {
    let rank = spec.shape.len();
    let kept: Vec<usize> = (0..rank).filter(|d| !spec.reduced.contains(d)).collect();
    let st = row_major(&spec.shape);
    let kept_shape: Vec<Expr> = kept.iter().map(|&d| spec.shape[d].clone()).collect();
    let red_shape: Vec<Expr> = spec
        .reduced
        .iter()
        .map(|&d| spec.shape[d].clone())
        .collect();
    let (rows, len) = (Expr::product(&kept_shape), Expr::product(&red_shape));
    let wg = ctx.tuning().reduction;
    let mut k = Kernel::new(format!(
        "{} f32{} rows {rows} x {len}",
        ctx.node.op,
        super::index::show(&spec.shape)
    ));
    k.input("x", Word::F32);
    let mut args = vec![Arg::In(0)];
    if let Some(a) = &affine {
        k.input("scale", Word::F32);
        args.push(Arg::In(1));
        if a.bias.is_some() {
            k.input("bias", Word::F32);
            args.push(Arg::In(2));
        }
    }
    k.output("out0", Word::F32);
    args.push(Arg::Out(0));
    workgroup_array(&mut k, "part", "f32", wg);
    k.helpers.insert("fmax");
    let tree = |var: &str, comb: &str| tree_reduce(var, "part", wg, comb);
    let p = &mut k.params;
    let red_off = offset_of(
        p,
        "r",
        &spec
            .reduced
            .iter()
            .map(|&d| st[d].clone())
            .collect::<Vec<_>>(),
    );
    let (len_u, red_index) = (p.size(&len), unravel_of(p, "j", &red_shape, "r"));
    let each = |code: &str| {
        format!(
            "    for (var j = lidx; j < {len_u}; j = j + {wg}u) {{\n{}        let x = xin[base + {red_off}];\n        {code}\n    }}\n",
            red_index.replace("    let", "        let")
        )
        .replace("xin[", "x[")
    };
    let mut b = unravel_of(p, "row", &kept_shape, "o");
    let _ = writeln!(
        b,
        "    let base = {};",
        offset_of(
            p,
            "o",
            &kept.iter().map(|&d| st[d].clone()).collect::<Vec<_>>()
        )
    );
    let n = match len.as_const() {
        Some(n) => lit(n as f64),
        None => format!("f32({len_u})"),
    };
    let value = match spec.stat {
        Stat::Standardize(eps) => {
            let _ = write!(b, "    var mean = 0.0;\n{}", each("mean = mean + x;"));
            b.push_str(&tree("mean", "$a + $b"));
            let _ = write!(
                b,
                "    mean = mean / {n};\n    var q = 0.0;\n{}",
                each("q = q + (x - mean) * (x - mean);")
            );
            b.push_str(&tree("q", "$a + $b"));
            let _ = writeln!(b, "    let inv = 1.0 / sqrt(q / {n} + {});", lit(eps));
            Some("(x - mean) * inv")
        }
        Stat::Rms(eps) => {
            let _ = write!(b, "    var q = 0.0;\n{}", each("q = q + x * x;"));
            b.push_str(&tree("q", "$a + $b"));
            let _ = writeln!(b, "    let inv = 1.0 / sqrt(q / {n} + {});", lit(eps));
            Some("x * inv")
        }
        Stat::Lp(p) => {
            let acc = if p == 1 {
                "q = q + abs(x);"
            } else {
                "q = q + x * x;"
            };
            let _ = write!(b, "    var q = 0.0;\n{}", each(acc));
            b.push_str(&tree("q", "$a + $b"));
            let norm = if p == 1 { "q" } else { "sqrt(q)" };
            let _ = writeln!(b, "    let inv = select(1.0 / {norm}, 0.0, q == 0.0);");
            Some("x * inv")
        }
        Stat::Mean | Stat::Max | Stat::LpPool(_) => {
            let (init, acc, comb, fin) = match spec.stat {
                Stat::Mean => (
                    "0.0".to_string(),
                    "q = q + x;".to_string(),
                    "$a + $b",
                    format!("q / {n}"),
                ),
                Stat::Max => (
                    "f32_bits(0xff800000u)".to_string(),
                    "q = fmax(q, x);".to_string(),
                    "fmax($a, $b)",
                    "q".to_string(),
                ),
                Stat::LpPool(p) => (
                    "0.0".to_string(),
                    format!("q = q + pow(abs(x), {});", lit(p)),
                    "$a + $b",
                    format!("pow(q, {})", lit(1.0 / p)),
                ),
                _ => unreachable!("matched above"),
            };
            let _ = write!(b, "    var q = {init};\n{}", each(&acc));
            b.push_str(&tree("q", comb));
            let _ = writeln!(b, "    if (lidx == 0u) {{ out0[row] = {fin}; }}");
            None
        }
    };
    if let Some(v) = value {
        let mut y = format!("({v})");
        if let Some(a) = &affine {
            y = format!("{y} * scale[{}]", a.scale);
            if let Some(bias) = &a.bias {
                y = format!("{y} + bias[{bias}]");
            }
        }
        b.push_str(&each(&format!("out0[base + {red_off}] = {y};")));
    }
    // Optional statistics outputs (LayerNormalization's Mean and InvStdDev).
    if let Stat::Standardize(_) | Stat::Rms(_) = spec.stat {
        for (i, name) in [(1usize, "mean"), (2, "inv")] {
            if ctx.wants_output(i) && ctx.node.op == "LayerNormalization" {
                k.output(&format!("out{i}"), Word::F32);
                args.push(Arg::Out(i));
                let _ = writeln!(b, "    if (lidx == 0u) {{ out{i}[row] = {name}; }}");
            }
        }
    }
    k.one_group_per_item_of(&rows, wg, ctx.max_groups(), &b);
    Ok(Lowered::one(k, args))
}

pub fn layer_norm(ctx: &Ctx) -> Result<Lowered> {
    let x = ctx.input(0)?;
    require_f32(ctx, x)?;
    let rank = x.shape.len();
    let p = wpc_ir::ops::params::LayerNorm::of(ctx.attrs())?;
    let (axis, eps) = (p.axis(rank)?, f64::from(p.epsilon));
    // Rows may be dynamic; the normalized dims (what scale and bias
    // span) are static.
    if x.dims[axis..].iter().any(|d| d.as_const().is_none()) {
        return Err(crate::lower::dynamic_size_refused(&ctx.node.op, x));
    }
    let rows = Expr::product(&x.dims[..axis]);
    let norm_shape = &x.shape[axis..];
    let len: usize = norm_shape.iter().product();
    // Scale and bias broadcast over the normalized dims; index them by the
    // element's position within the row (`r0`).
    let index_of = |t: &Tt| {
        if t.shape == norm_shape {
            "r0".to_string()
        } else if t.numel() == 1 {
            "0u".to_string()
        } else {
            let bs = super::index::broadcast_strides(&t.shape, norm_shape);
            let mut s = String::new();
            let ns = strides(norm_shape);
            let terms: Vec<String> = (0..norm_shape.len())
                .filter(|&d| bs[d] != 0)
                .map(|d| format!("((r0 / {}u) % {}u) * {}u", ns[d], norm_shape[d], bs[d]))
                .collect();
            s.push_str(&if terms.is_empty() {
                "0u".into()
            } else {
                terms.join(" + ")
            });
            s
        }
    };
    let scale = index_of(ctx.input(1)?);
    let bias = if ctx.has_input(2) {
        Some(index_of(ctx.input(2)?))
    } else {
        None
    };
    let stat = if ctx.node.op == "RMSNormalization" {
        Stat::Rms(eps)
    } else {
        Stat::Standardize(eps)
    };
    row_norm(
        ctx,
        RowSpec::contiguous_of(rows, size(len), stat),
        Some(Affine { scale, bias }),
    )
}

pub fn norm_rows(ctx: &Ctx) -> Result<Lowered> {
    let x = ctx.input(0)?;
    require_f32(ctx, x)?;
    let rank = x.shape.len();
    match ctx.node.op.as_str() {
        "InstanceNormalization" => {
            let eps = f64::from(wpc_ir::ops::params::InstanceNorm::of(ctx.attrs())?.epsilon);
            let (rows, len) = (x.shape[0] * x.shape[1], x.shape[2..].iter().product());
            let c = x.shape[1];
            let affine = Affine {
                scale: format!("o0 % {c}u"),
                bias: Some(format!("o0 % {c}u")),
            };
            row_norm(
                ctx,
                RowSpec::contiguous(rows, len, Stat::Standardize(eps)),
                Some(affine),
            )
        }
        "GroupNormalization" => {
            let p = wpc_ir::ops::params::GroupNorm::of(ctx.attrs())?;
            let (g, eps) = (p.num_groups, f64::from(p.epsilon));
            let c = x.shape[1];
            let sp: usize = x.shape[2..].iter().product();
            let rows = x.shape[0] * g;
            let len = c / g * sp;
            // Opset 18 has one scale per group, opset 21 one per channel.
            let idx = if ctx.input(1)?.numel() == g {
                format!("o0 % {g}u")
            } else {
                format!("(o0 % {g}u) * {}u + r0 / {sp}u", c / g)
            };
            let affine = Affine {
                scale: idx.clone(),
                bias: Some(idx),
            };
            row_norm(
                ctx,
                RowSpec::contiguous(rows, len, Stat::Standardize(eps)),
                Some(affine),
            )
        }
        "MeanVarianceNormalization" => {
            let axes = wpc_ir::ops::params::MeanVarianceNorm::of(ctx.attrs())?.axes(rank)?;
            let spec = RowSpec {
                shape: x.dims.clone(),
                reduced: axes,
                stat: Stat::Standardize(1e-9),
            };
            row_norm(ctx, spec, None)
        }
        _ => {
            let params = wpc_ir::ops::params::LpNorm::of(ctx.attrs())?;
            let (axis, p) = (params.axis(rank)?, params.p);
            let spec = RowSpec {
                shape: x.dims.clone(),
                reduced: vec![axis],
                stat: Stat::Lp(p),
            };
            row_norm(ctx, spec, None)
        }
    }
}

pub fn lrn(ctx: &Ctx) -> Result<Lowered> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    require_f32(ctx, x)?;
    let p = wpc_ir::ops::params::Lrn::of(ctx.attrs())?;
    let size = p.size;
    let (alpha, beta, bias) = (f64::from(p.alpha), f64::from(p.beta), f64::from(p.bias));
    let ch = x.shape[1];
    let inner: usize = x.shape[2..].iter().product();
    let (lo, hi) = p.window();
    let b = format!(
        "    let k = (i / {inner}u) % {ch}u;\n    let base = i - k * {inner}u;\n    var sq = 0.0;\n    for (var j = select(0u, k - {lo}u, k >= {lo}u); j <= min(k + {hi}u, {}u); j = j + 1u) {{ let v = x[base + j * {inner}u]; sq = sq + v * v; }}\n    out0[i] = x[i] / pow({} + {} * sq, {});\n",
        ch - 1,
        lit(bias),
        lit(alpha / size as f64),
        lit(beta)
    );
    let mut k = Kernel::new(format!("LRN f32{:?} size {size}", x.shape));
    k.input("x", Word::F32).output("out0", Word::F32);
    k.one_per_item(out.numel(), ctx.tuning().elementwise, ctx.max_groups(), &b);
    Ok(Lowered::one(k, vec![Arg::In(0), Arg::Out(0)]))
}
