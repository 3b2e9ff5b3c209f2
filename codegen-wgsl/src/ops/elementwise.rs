//! Elementwise ops (with ONNX multidirectional broadcasting): one thread
//! per output element, each op a WGSL expression over its loaded inputs.

use std::collections::BTreeSet;
use std::fmt::Write;

use wpc_bundle::device_data::Word;
use wpc_ir::ops::params::Elementwise as E;
use wpc_ir::{Attrs, DType, Error, Node, Result};

use super::index::{broadcast_row_major, consts, literal, offset_of, unravel_of};
use crate::kernel::Kernel;
use crate::lower::{Arg, Ctx, Lowered, Tt};
use wpc_ir::sym::Expr;

const UNARY_FLOAT: &[(&str, &str)] = &[
    ("Sqrt", "sqrt(a)"),
    ("Exp", "exp(a)"),
    ("Log", "log(a)"),
    ("Sin", "sin(a)"),
    ("Cos", "cos(a)"),
    ("Tan", "tan(a)"),
    ("Asin", "asin(a)"),
    ("Acos", "acos(a)"),
    ("Atan", "atan(a)"),
    ("Sinh", "sinh(a)"),
    ("Cosh", "cosh(a)"),
    ("Tanh", "tanh(clamp(a, -15.0, 15.0))"),
    ("Asinh", "asinh(a)"),
    ("Acosh", "acosh(a)"),
    ("Atanh", "atanh(a)"),
    ("Floor", "floor(a)"),
    ("Ceil", "ceil(a)"),
    ("Round", "round(a)"),
    ("Reciprocal", "1.0 / a"),
    ("Sigmoid", "1.0 / (1.0 + exp(-a))"),
    ("Softsign", "a / (1.0 + abs(a))"),
    ("Softplus", "select(log(1.0 + exp(a)), a, a > 20.0)"),
    (
        "Mish",
        "a * tanh(clamp(select(log(1.0 + exp(a)), a, a > 20.0), -15.0, 15.0))",
    ),
    ("HardSwish", "a * clamp(a / 6.0 + 0.5, 0.0, 1.0)"),
    ("Erf", "erf_(a)"),
];

const OTHER: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Mod",
    "Neg",
    "Abs",
    "Sign",
    "Relu",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "HardSigmoid",
    "ThresholdedRelu",
    "PRelu",
    "Shrink",
    "Swish",
    "Clip",
    "Not",
    "And",
    "Or",
    "Xor",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "Where",
    "Min",
    "Max",
    "Sum",
    "Mean",
    "IsNaN",
    "IsInf",
    "BitShift",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
    "BitwiseNot",
    "Cast",
    "CastLike",
    "BitCast",
    "SwiGLU",
];

/// The WGSL expression (over `a`) of a float-only unary op, if `op` is one.
pub fn unary_float(op: &str) -> Option<&'static str> {
    UNARY_FLOAT.iter().find(|(o, _)| *o == op).map(|(_, e)| *e)
}

pub fn is_elementwise(op: &str) -> bool {
    UNARY_FLOAT.iter().any(|(o, _)| *o == op) || OTHER.contains(&op)
}

/// Keeps an integer result inside its ONNX type's range the way the
/// reference does (two's-complement wrap), since the device computes in
/// 32 bits.
fn wrap(expr: String, dtype: DType) -> String {
    let bits = dtype.packed_bits().unwrap_or(8 * dtype.size() as u32);
    if !dtype.is_int() || bits >= 32 {
        expr
    } else if dtype.is_unsigned() {
        format!("(({expr}) & {:#x}u)", (1u32 << bits) - 1)
    } else {
        let unused = 32 - bits;
        format!("(({expr}) << {unused}u) >> {unused}u")
    }
}

fn bool_of(cond: &str) -> String {
    format!("select(0u, 1u, {cond})")
}

/// The expression converting `a` (of `from`) to `to`, as the reference's
/// `Cast` does: floats to integers truncate and saturate, integers wrap.
fn cast(
    a: &str,
    from: &Tt,
    to: DType,
    to_word: Word,
    helpers: &mut BTreeSet<&'static str>,
) -> String {
    if to == DType::Bool {
        return match from.word {
            Word::F32 => bool_of(&format!("{a} != 0.0")),
            Word::I32 => bool_of(&format!("{a} != 0")),
            Word::U32 => bool_of(&format!("{a} != 0u")),
        };
    }
    // The bounds of int32 and uint32 that f32 holds exactly.
    const I32_BOUNDS: (f64, f64) = (-2147483648.0, 2147483520.0);
    const U32_HI: f64 = 4294967040.0;
    match (from.word, to_word) {
        (_, Word::F32) => format!("f32({a})"),
        // Sub-byte types go by way of a saturated int32, then wrap; from
        // 2^31 up that is int32's largest, which f32 cannot hold.
        (Word::F32, w) if to.packed_bits().is_some() => {
            helpers.insert("f2i");
            let (lo, hi) = I32_BOUNDS;
            let saturated =
                format!("select(f2i({a}, {lo:?}, {hi:?}), 2147483647, {a} >= 2147483648.0)");
            wrap(format!("{}({saturated})", w.wgsl()), to)
        }
        (Word::F32, Word::I32) => {
            helpers.insert("f2i");
            let (lo, hi) = match to {
                DType::I8 | DType::I16 => to.int_range().expect("an integer type"),
                _ => I32_BOUNDS,
            };
            format!("f2i({a}, {lo:?}, {hi:?})")
        }
        (Word::F32, Word::U32) => {
            helpers.insert("f2u");
            let hi = match to {
                DType::U8 | DType::U16 => to.int_range().expect("an integer type").1,
                _ => U32_HI,
            };
            format!("f2u({a}, {hi:?})")
        }
        (_, w) => wrap(format!("{}({a})", w.wgsl()), to),
    }
}

/// What an elementwise expression depends on besides its operands' types:
/// the node (op, attributes, which optional inputs are present) and the
/// opset. A node of the graph or one inside a fused body.
pub struct Site<'a> {
    pub node: &'a Node,
    pub opset: u32,
}

impl Site<'_> {
    fn attrs(&self) -> &Attrs {
        &self.node.attrs
    }

    fn has_input(&self, i: usize) -> bool {
        self.node.inputs.get(i).is_some_and(Option::is_some)
    }
}

/// The output expression of elementwise `op`, over its present inputs
/// named `a`, `b`, ...
pub fn expression(
    ctx: &Site,
    ins: &[Tt],
    out: &Tt,
    helpers: &mut BTreeSet<&'static str>,
) -> Result<String> {
    let op = ctx.node.op.as_str();
    let w = ins.first().map(|t| t.word).unwrap_or(Word::F32);
    let float = w == Word::F32;
    let lit = |v: f64| literal(v, w);
    let names: Vec<String> = (0..ins.len())
        .map(|i| ((b'a' + i as u8) as char).to_string())
        .collect();
    let fold = |f: &dyn Fn(&str, &str) -> String| {
        let mut e = names[0].clone();
        for n in &names[1..] {
            e = f(&e, n);
        }
        e
    };
    if let Some((_, e)) = UNARY_FLOAT.iter().find(|(o, _)| *o == op) {
        if !float {
            return Err(Error::unsupported(format!(
                "{op} on {} tensors",
                ins[0].dtype
            )));
        }
        if op == "Erf" {
            helpers.insert("erf");
        }
        return Ok(e.to_string());
    }
    if let Some(p) = E::of(op, ctx.attrs())? {
        return parameterized(ctx, p, ins, out, &names, helpers);
    }
    let cmp = |sym: &str| bool_of(&format!("a {sym} b"));
    let e = match op {
        "Add" => wrap("a + b".into(), out.dtype),
        "Sub" => wrap("a - b".into(), out.dtype),
        "Mul" => wrap("a * b".into(), out.dtype),
        "Div" => match w {
            Word::F32 => "a / b".into(),
            Word::I32 => {
                helpers.insert("div_i");
                wrap("div_i(a, b)".into(), out.dtype)
            }
            Word::U32 => {
                helpers.insert("div_u");
                "div_u(a, b)".into()
            }
        },
        "Pow" => {
            let b = match (w, ins[1].word) {
                (Word::F32, Word::F32) => "b".to_string(),
                (Word::F32, _) => "f32(b)".to_string(),
                (_, Word::F32) => {
                    helpers.insert("powf");
                    return Ok(cast(
                        "powf(f32(a), b)",
                        &Tt {
                            word: Word::F32,
                            ..out.clone()
                        },
                        out.dtype,
                        out.word,
                        helpers,
                    ));
                }
                (Word::I32, _) => {
                    helpers.insert("powi");
                    return Ok(wrap("powi(a, i32(b))".into(), out.dtype));
                }
                (Word::U32, _) => {
                    helpers.insert("powu");
                    return Ok(wrap("powu(a, u32(b))".into(), out.dtype));
                }
            };
            helpers.insert("powf");
            format!("powf(a, {b})")
        }
        "Neg" => wrap("-a".into(), out.dtype),
        "Abs" => match w {
            Word::U32 => "a".into(),
            _ => wrap("abs(a)".into(), out.dtype),
        },
        "Sign" => match w {
            Word::U32 => "select(0u, 1u, a > 0u)".into(),
            _ => "sign(a)".into(),
        },
        "Relu" => format!("max(a, {})", lit(0.0)),
        "PRelu" => match w {
            Word::F32 => "select(b * a, a, a >= 0.0)".into(),
            _ => "select(b * a, a, a >= 0)".into(),
        },
        "Not" => "1u - a".into(),
        "And" => "a & b".into(),
        "Or" => "a | b".into(),
        "Xor" => "a ^ b".into(),
        "Equal" => cmp("=="),
        "Less" => cmp("<"),
        "Greater" => cmp(">"),
        "LessOrEqual" => cmp("<="),
        "GreaterOrEqual" => cmp(">="),
        "Where" => "select(c, b, a != 0u)".into(),
        "Min" | "Max" => {
            let f = match (op, float) {
                ("Min", true) => "fmin",
                ("Max", true) => "fmax",
                ("Min", false) => "min",
                _ => "max",
            };
            if float {
                helpers.insert(f);
            }
            fold(&|x, y| format!("{f}({x}, {y})"))
        }
        "Sum" => wrap(fold(&|x, y| format!("{x} + {y}")), out.dtype),
        "Mean" => format!(
            "({}) / {}",
            fold(&|x, y| format!("{x} + {y}")),
            lit(ins.len() as f64)
        ),
        "IsNaN" => {
            helpers.insert("is_nan");
            bool_of("is_nan(a)")
        }
        "BitwiseAnd" => "a & b".into(),
        "BitwiseOr" => "a | b".into(),
        "BitwiseXor" => "a ^ b".into(),
        "BitwiseNot" => wrap("~a".into(), out.dtype),
        "Cast" | "CastLike" => cast("a", &ins[0], out.dtype, out.word, helpers),
        "BitCast" => {
            if out.dtype.size() > 4 {
                return Err(Error::unsupported(format!(
                    "BitCast to {}: WGSL has no 64-bit types",
                    out.dtype
                )));
            }
            // Narrow types live sign- or zero-extended in a 32-bit word:
            // reinterpret the word, then extend from the target's width.
            wrap(format!("bitcast<{}>(a)", out.word.wgsl()), out.dtype)
        }
        other => {
            return Err(Error::unsupported(format!(
                "{other} has no WebGPU expression"
            )));
        }
    };
    Ok(e)
}

/// The expression of an elementwise op that takes parameters, over
/// inputs named `names` (`a`, `b`, ...).
fn parameterized(
    ctx: &Site,
    p: E,
    ins: &[Tt],
    out: &Tt,
    names: &[String],
    helpers: &mut BTreeSet<&'static str>,
) -> Result<String> {
    let w = ins.first().map(|t| t.word).unwrap_or(Word::F32);
    let float = w == Word::F32;
    let lit = |v: f32| literal(v.into(), w);
    Ok(match p {
        E::Mod { fmod } => match (w, fmod) {
            (Word::F32, true) => "a % b".into(),
            (Word::F32, false) => {
                helpers.insert("pymod_f");
                "pymod_f(a, b)".into()
            }
            (Word::I32, true) => {
                helpers.insert("fmod_i");
                "fmod_i(a, b)".into()
            }
            (Word::I32, false) => {
                helpers.insert("pymod_i");
                "pymod_i(a, b)".into()
            }
            (Word::U32, _) => {
                helpers.insert("mod_u");
                "mod_u(a, b)".into()
            }
        },
        E::LeakyRelu { alpha } => format!("select({} * a, a, a >= 0.0)", lit(alpha)),
        E::Elu { alpha } => format!("select({} * (exp(a) - 1.0), a, a > 0.0)", lit(alpha)),
        E::Selu { alpha, gamma } => {
            let (alpha, gamma) = (lit(alpha), lit(gamma));
            format!("{gamma} * select({alpha} * exp(a) - {alpha}, a, a > 0.0)")
        }
        E::Celu { alpha } => {
            let alpha = lit(alpha);
            format!("max(0.0, a) + min(0.0, {alpha} * (exp(a / {alpha}) - 1.0))")
        }
        E::Gelu { tanh: true } => {
            "0.5 * a * (1.0 + tanh(clamp(0.7978845608 * (a + 0.044715 * a * a * a), -15.0, 15.0)))"
                .into()
        }
        E::Gelu { tanh: false } => {
            helpers.insert("erf");
            "0.5 * a * (1.0 + erf_(a * 0.70710678118))".into()
        }
        E::HardSigmoid { alpha, beta } => {
            format!("clamp({} * a + {}, 0.0, 1.0)", lit(alpha), lit(beta))
        }
        E::ThresholdedRelu { alpha } => format!("select(0.0, a, a > {})", lit(alpha)),
        E::Shrink { bias, lambd } => {
            let (bias, lambd, zero) = (lit(bias), lit(lambd), lit(0.0));
            format!("select(select({zero}, a - {bias}, a > {lambd}), a + {bias}, a < -{lambd})")
        }
        E::Swish { alpha } => format!("a / (1.0 + exp(-{} * a))", lit(alpha)),
        E::SwiGlu { alpha } => format!("a / (1.0 + exp(-{} * a)) * b", lit(alpha)),
        E::Clip { min, max } => {
            // Bounds are attributes before opset 11, optional inputs since.
            let (lo, hi) = if ctx.opset < 11 {
                (min.map(lit), max.map(lit))
            } else {
                let mut next = 1;
                let mut bound = |i: usize| {
                    ctx.has_input(i).then(|| {
                        let n = names[next].clone();
                        next += 1;
                        n
                    })
                };
                (bound(1), bound(2))
            };
            let (mx, mn) = if float {
                helpers.insert("fmax");
                helpers.insert("fmin");
                ("fmax", "fmin")
            } else {
                ("max", "min")
            };
            let mut e = "a".to_string();
            if let Some(lo) = lo {
                e = format!("{mx}({e}, {lo})");
            }
            if let Some(hi) = hi {
                e = format!("{mn}({e}, {hi})");
            }
            e
        }
        E::IsInf { negative, positive } => {
            helpers.insert("is_inf");
            bool_of(&format!(
                "is_inf(a) && ((a > 0.0 && {positive}) || (a < 0.0 && {negative}))"
            ))
        }
        E::BitShift { left } => {
            let bits = out.dtype.size() * 8;
            if w == Word::I32 && !left {
                // Arithmetic right shift saturates to the sign, for shifts
                // past the width and negative ones (huge as u32) alike.
                wrap("a >> min(u32(b), 31u)".into(), out.dtype)
            } else {
                // Shifting by the full width or more gives 0, as in the
                // reference.
                let shifted = if left {
                    "a << min(u32(b), 31u)"
                } else {
                    "a >> min(u32(b), 31u)"
                };
                let zero = literal(0.0, w);
                wrap(
                    format!("select({shifted}, {zero}, u32(b) >= {bits}u)"),
                    out.dtype,
                )
            }
        }
    })
}

/// The broadcasting kernel: loads each input as `a`, `b`, ... and stores `expr`.
pub fn broadcast_kernel(
    ctx: &Ctx,
    ins: &[(Tt, Vec<Expr>)],
    out: &Tt,
    expr: &str,
    helpers: BTreeSet<&'static str>,
) -> Result<Kernel> {
    let label = format!("{} {}{:?}", ctx.node.op, out.dtype.name(), out.shape);
    broadcast_kernel_with(ctx, label, ins, out, "", expr, helpers)
}

/// [`broadcast_kernel`] with statements (`lets`) between the loads and
/// the store, and its own label. Each input is read as the shape paired
/// with it; sizes may be dynamic (read from the kernel's parameters).
pub fn broadcast_kernel_with(
    ctx: &Ctx,
    label: String,
    ins: &[(Tt, Vec<Expr>)],
    out: &Tt,
    lets: &str,
    expr: &str,
    helpers: BTreeSet<&'static str>,
) -> Result<Kernel> {
    let mut k = Kernel::new(label);
    let mut body = String::new();
    let scalar = |t: &Tt| t.dims.iter().all(|d| d.as_const() == Some(1));
    let needs_coords = ins.iter().any(|(t, s)| !scalar(t) && s != &out.dims);
    if needs_coords {
        body.push_str(&unravel_of(&mut k.params, "i", &out.dims, "o"));
    }
    for (j, (t, shape)) in ins.iter().enumerate() {
        let name = (b'a' + j as u8) as char;
        k.input(&format!("in{j}"), t.word);
        let off = if scalar(t) {
            "0u".to_string()
        } else if shape == &out.dims {
            "i".to_string()
        } else {
            offset_of(&mut k.params, "o", &broadcast_row_major(shape, &out.dims)?)
        };
        let _ = writeln!(body, "    let {name} = in{j}[{off}];");
    }
    body.push_str(lets);
    let _ = writeln!(body, "    out0[i] = {expr};");
    k.output("out0", out.word);
    k.helpers = helpers;
    k.one_per_item_of(
        &out.numel_of(),
        ctx.tuning().elementwise,
        ctx.max_groups(),
        &body,
    );
    Ok(k)
}

pub fn lower(ctx: &Ctx) -> Result<Lowered> {
    let out = ctx.output(0)?.clone();
    let present: Vec<usize> = (0..ctx.inputs.len())
        .filter(|&i| ctx.has_input(i))
        .collect();
    let ins: Vec<Tt> = present
        .iter()
        .map(|&i| ctx.input(i).cloned())
        .collect::<Result<_>>()?;
    // CastLike's second input only carries the target type.
    let used = if ctx.node.op == "CastLike" {
        1
    } else {
        ins.len()
    };
    let mut helpers = BTreeSet::new();
    let site = Site {
        node: ctx.node,
        opset: ctx.opset,
    };
    let expr = expression(&site, &ins[..used], &out, &mut helpers)?;
    let operands: Vec<(Tt, Vec<Expr>)> = ins[..used]
        .iter()
        .map(|t| (t.clone(), t.dims.clone()))
        .collect();
    let k = broadcast_kernel(ctx, &operands, &out, &expr, helpers)?;
    let mut args: Vec<Arg> = present[..used].iter().map(|&i| Arg::In(i)).collect();
    args.push(Arg::Out(0));
    Ok(Lowered::one(k, args))
}

/// Dropout at inference: output = input, mask (if wanted) all true.
pub fn dropout(ctx: &Ctx) -> Result<Lowered> {
    if let Some(t) = ctx.opt_constant(2) {
        if t.first_bool()? {
            return Err(Error::unsupported(
                "Dropout in training mode (random masks) on WebGPU",
            ));
        }
    } else if ctx.has_input(2) {
        return Err(Error::unsupported(
            "Dropout with a non-constant training_mode",
        ));
    }
    let x = ctx.input(0)?;
    let n = x.numel();
    let mut launches = vec![crate::lower::Launch {
        kernel: super::copy_kernel(&x.numel_of(), ctx),
        args: vec![Arg::In(0), Arg::Out(0)],
    }];
    if ctx.wants_output(1) {
        let mut k = Kernel::new(format!("Fill bool{:?}", x.shape));
        k.output("out0", Word::U32).one_per_item(
            n,
            ctx.tuning().elementwise,
            ctx.max_groups(),
            "    out0[i] = 1u;\n",
        );
        launches.push(crate::lower::Launch {
            kernel: k,
            args: vec![Arg::Out(1)],
        });
    }
    Ok(Lowered::Launches {
        temps: Vec::new(),
        launches,
    })
}

/// A QuantizeLinear or DequantizeLinear kernel computing `expr` of the
/// element `a`, its scale `b` and (where the node has one) its zero point
/// `c`. Parameters are per tensor (a scalar), per axis (1-D along
/// `axis`) or per block (x's shape with `ceil(size / block_size)` along
/// `axis`; static shapes only).
fn quant_kernel(ctx: &Ctx, expr: &str) -> Result<Lowered> {
    let (x, scale, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    let q = wpc_ir::ops::params::Quantization::of(ctx.attrs())?;
    let params: Vec<usize> = (1..=2).filter(|&i| ctx.has_input(i)).collect();
    let mut args: Vec<Arg> = vec![Arg::In(0)];
    let k = if q.block_size == 0 {
        let pshape = if scale.numel() == 1 {
            Vec::new()
        } else {
            let axis = wpc_ir::ops::util::norm_axis(q.axis, x.shape.len())?;
            let mut shape = vec![1; x.shape.len() - axis];
            shape[0] = scale.numel();
            shape
        };
        let mut ins = vec![(x.clone(), x.dims.clone())];
        for &i in &params {
            ins.push((ctx.input(i)?.clone(), consts(&pshape)));
            args.push(Arg::In(i));
        }
        args.push(Arg::Out(0));
        broadcast_kernel(ctx, &ins, out, expr, BTreeSet::new())?
    } else {
        if !x.is_static() {
            return Err(crate::lower::dynamic_size_refused(&ctx.node.op, x));
        }
        let axis = wpc_ir::ops::util::norm_axis(q.axis, x.shape.len())?;
        let mut pshape = x.shape.clone();
        pshape[axis] = x.shape[axis].div_ceil(q.block_size);
        if scale.shape != pshape {
            return Err(Error::invalid(format!(
                "{}: blocked scale of shape {:?} does not match {:?} in blocks of {} along axis {axis}",
                ctx.node.op, scale.shape, x.shape, q.block_size
            )));
        }
        // Each element's parameters: its coordinates, with the blocked
        // axis divided by the block.
        let mut lets = super::index::unravel("i", &x.shape, "o");
        let strides = super::index::strides(&pshape);
        let at: Vec<String> = (0..x.shape.len())
            .map(|d| {
                let o = if d == axis {
                    format!("(o{d} / {}u)", q.block_size)
                } else {
                    format!("o{d}")
                };
                format!("{o} * {}u", strides[d])
            })
            .collect();
        let _ = writeln!(lets, "    let p = {};", at.join(" + "));
        for (&i, name) in params.iter().zip(["b", "c"]) {
            let _ = writeln!(lets, "    let {name} = in{i}[p];");
        }
        let label = format!(
            "{} blocked {}{:?}",
            ctx.node.op,
            out.dtype.name(),
            out.shape
        );
        let ins = [(x.clone(), x.dims.clone())];
        let mut k = broadcast_kernel_with(ctx, label, &ins, out, &lets, expr, BTreeSet::new())?;
        // After the output: the bindings' order is the arguments' order.
        args.push(Arg::Out(0));
        for &i in &params {
            k.input(&format!("in{i}"), ctx.input(i)?.word);
            args.push(Arg::In(i));
        }
        k
    };
    Ok(Lowered::one(k, args))
}

/// DequantizeLinear: `(x - zero_point) * scale`.
pub fn dequantize(ctx: &Ctx) -> Result<Lowered> {
    let expr = if ctx.has_input(2) {
        "(f32(a) - f32(c)) * b"
    } else {
        "f32(a) * b"
    };
    quant_kernel(ctx, expr)
}

/// QuantizeLinear: `saturate(round_half_even(x / scale) + zero_point)`.
pub fn quantize(ctx: &Ctx) -> Result<Lowered> {
    let out = ctx.output(0)?;
    // Wider codes than 16 bits would not survive the f32 arithmetic.
    let (lo, hi) = match out.dtype.int_range() {
        Some(range) if out.dtype.size() <= 2 => range,
        _ => {
            return Err(Error::unsupported(format!(
                "QuantizeLinear to {} on WebGPU",
                out.dtype
            )));
        }
    };
    let zp = if ctx.has_input(2) { "f32(c)" } else { "0.0" };
    let w = out.word.wgsl();
    quant_kernel(
        ctx,
        &format!("{w}(clamp(round(f32(a) / b) + {zp}, {lo:?}, {hi:?}))"),
    )
}
