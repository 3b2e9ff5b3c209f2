//! Element-wise ops: unary math and activations, broadcasting arithmetic,
//! comparisons, logic, bitwise ops, variadic reductions (`Sum`, `Max`, …),
//! `Where`, `Clip` and casts.

use super::infer::{self, InferCtx};
use super::params::Elementwise as E;
use super::util::{
    binary_numeric, broadcast_shapes, compare, map_float, map_numeric, nan_max, nan_min,
    round_half_even, same_dtype, zip_broadcast,
};
use super::{EvalCtx, OpClass, OpDef, op};
use crate::attr::Attrs;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::ValueType;
use crate::tensor::{Elem, Tensor};

pub(super) fn ops() -> Vec<OpDef> {
    let mut v = Vec::new();
    for name in FLOAT_UNARY {
        v.push(OpDef {
            name,
            domain: "",
            eval: eval_float_unary,
            infer: Some(infer::same_as_input),
            steering: &[],
            class: OpClass::Pointwise,
        });
    }
    v.extend([
        op!(
            "Abs",
            |c| unary_numeric(c, f64::abs, i128::abs),
            infer::same_as_input
        ),
        op!(
            "Neg",
            |c| unary_numeric(c, |x| -x, |x| -x),
            infer::same_as_input
        ),
        op!(
            "Sign",
            |c| unary_numeric(c, sign, i128::signum),
            infer::same_as_input
        ),
        op!(
            "Relu",
            |c| unary_numeric(c, |x| if x > 0.0 { x } else { 0.0 }, |x| x.max(0)),
            infer::same_as_input
        ),
        op!("Shrink", eval_shrink, infer::same_as_input),
        op!("IsNaN", |c| float_predicate(c, f64::is_nan), |c| {
            infer::shape_with_dtype(c, DType::Bool)
        }),
        op!("IsInf", eval_isinf, |c| infer::shape_with_dtype(
            c,
            DType::Bool
        )),
        op!("Not", eval_not, infer::same_as_input),
        op!("BitwiseNot", |c| int_unary(c, |x| !x), infer::same_as_input),
        op!(
            "Add",
            |c| arith(c, |a, b| a + b, |a, b| Ok(a + b)),
            infer::broadcast
        ),
        op!(
            "Sub",
            |c| arith(c, |a, b| a - b, |a, b| Ok(a - b)),
            infer::broadcast
        ),
        op!(
            "Mul",
            |c| arith(c, |a, b| a * b, |a, b| Ok(a.wrapping_mul(b))),
            infer::broadcast
        ),
        op!("Div", |c| arith(c, |a, b| a / b, int_div), infer::broadcast),
        op!("Mod", eval_mod, infer::broadcast),
        op!("Pow", eval_pow, infer::broadcast),
        op!(
            "PRelu",
            |c| arith(
                c,
                |x, s| if x < 0.0 { s * x } else { x },
                |x, s| Ok(if x < 0 { s * x } else { x })
            ),
            infer::broadcast
        ),
        op!("BitShift", eval_bitshift, infer::broadcast),
        op!(
            "BitwiseAnd",
            |c| int_binary(c, |a, b| a & b),
            infer::broadcast
        ),
        op!(
            "BitwiseOr",
            |c| int_binary(c, |a, b| a | b),
            infer::broadcast
        ),
        op!(
            "BitwiseXor",
            |c| int_binary(c, |a, b| a ^ b),
            infer::broadcast
        ),
        op!("And", |c| logic(c, |a, b| a & b), infer::broadcast_bool),
        op!("Or", |c| logic(c, |a, b| a | b), infer::broadcast_bool),
        op!("Xor", |c| logic(c, |a, b| a ^ b), infer::broadcast_bool),
        op!(
            "Equal",
            |c| cmp(c, |a, b| a == b, |a, b| a == b),
            infer::broadcast_bool
        ),
        op!(
            "Greater",
            |c| cmp(c, |a, b| a > b, |a, b| a > b),
            infer::broadcast_bool
        ),
        op!(
            "Less",
            |c| cmp(c, |a, b| a < b, |a, b| a < b),
            infer::broadcast_bool
        ),
        op!(
            "GreaterOrEqual",
            |c| cmp(c, |a, b| a >= b, |a, b| a >= b),
            infer::broadcast_bool
        ),
        op!(
            "LessOrEqual",
            |c| cmp(c, |a, b| a <= b, |a, b| a <= b),
            infer::broadcast_bool
        ),
        op!(
            "Sum",
            |c| variadic(c, |a, b| a + b, |a, b| a + b),
            infer::broadcast
        ),
        op!("Max", |c| variadic(c, nan_max, i128::max), infer::broadcast),
        op!("Min", |c| variadic(c, nan_min, i128::min), infer::broadcast),
        op!("Mean", eval_mean, infer::broadcast),
        op!("Where", eval_where, infer_where),
        op!("Clip", eval_clip, infer::same_as_input),
        op!("Cast", eval_cast, infer_cast),
        op!("BitCast", eval_bitcast, infer_cast),
        op!("SwiGLU", eval_swiglu, infer::same_as_input),
    ]);
    let mut v: Vec<OpDef> = v.into_iter().map(OpDef::pointwise).collect();
    // Its second input gives only a dtype, whatever its shape.
    v.push(op!(
        "CastLike",
        |c| Ok(vec![c.input(0)?.cast(c.input(1)?.dtype())]),
        infer_cast_like
    ));
    v
}

/// Float-only unary ops, evaluated by [`float_unary_fn`].
const FLOAT_UNARY: [&str; 33] = [
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Asinh",
    "Acosh",
    "Atanh",
    "Sigmoid",
    "Tanh",
    "Erf",
    "Softplus",
    "Softsign",
    "Elu",
    "Selu",
    "Celu",
    "LeakyRelu",
    "HardSigmoid",
    "HardSwish",
    "ThresholdedRelu",
    "Mish",
    "Gelu",
    "Swish",
];

/// The scalar function of a float unary op, with its attributes bound.
pub(super) fn float_unary_fn(op: &str, a: &Attrs) -> Result<Box<dyn Fn(f64) -> f64>> {
    if let Some(p) = E::of(op, a)? {
        let f = |v: f32| f64::from(v);
        return Ok(match p {
            E::Elu { alpha } => {
                let al = f(alpha);
                Box::new(move |x| if x < 0.0 { al * (x.exp() - 1.0) } else { x })
            }
            E::Selu { alpha, gamma } => {
                let (al, g) = (f(alpha), f(gamma));
                Box::new(move |x| {
                    if x <= 0.0 {
                        g * (al * x.exp() - al)
                    } else {
                        g * x
                    }
                })
            }
            E::Celu { alpha } => {
                let al = f(alpha);
                Box::new(move |x| x.max(0.0) + (al * ((x / al).exp() - 1.0)).min(0.0))
            }
            E::LeakyRelu { alpha } => {
                let al = f(alpha);
                Box::new(move |x| if x < 0.0 { al * x } else { x })
            }
            E::HardSigmoid { alpha, beta } => {
                let (al, b) = (f(alpha), f(beta));
                Box::new(move |x| (al * x + b).clamp(0.0, 1.0))
            }
            E::ThresholdedRelu { alpha } => {
                let al = f(alpha);
                Box::new(move |x| if x > al { x } else { 0.0 })
            }
            E::Gelu { tanh: false } => {
                Box::new(|x| 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)))
            }
            E::Gelu { tanh: true } => Box::new(|x: f64| {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
            }),
            E::Swish { alpha } => {
                let al = f(alpha);
                Box::new(move |x| x * sigmoid(al * x))
            }
            other => {
                return Err(Error::unsupported(format!(
                    "no float function for {other:?}"
                )));
            }
        });
    }
    Ok(match op {
        "Exp" => Box::new(f64::exp),
        "Log" => Box::new(f64::ln),
        "Sqrt" => Box::new(f64::sqrt),
        "Reciprocal" => Box::new(|x| 1.0 / x),
        "Floor" => Box::new(f64::floor),
        "Ceil" => Box::new(f64::ceil),
        "Round" => Box::new(round_half_even),
        "Sin" => Box::new(f64::sin),
        "Cos" => Box::new(f64::cos),
        "Tan" => Box::new(f64::tan),
        "Asin" => Box::new(f64::asin),
        "Acos" => Box::new(f64::acos),
        "Atan" => Box::new(f64::atan),
        "Sinh" => Box::new(f64::sinh),
        "Cosh" => Box::new(f64::cosh),
        "Asinh" => Box::new(f64::asinh),
        "Acosh" => Box::new(f64::acosh),
        "Atanh" => Box::new(f64::atanh),
        "Relu" => Box::new(|x: f64| if x < 0.0 { 0.0 } else { x }),
        "Sigmoid" => Box::new(sigmoid),
        "Tanh" => Box::new(f64::tanh),
        "Erf" => Box::new(libm::erf),
        "Softplus" => Box::new(|x: f64| if x > 30.0 { x } else { x.exp().ln_1p() }),
        "Softsign" => Box::new(|x: f64| x / (1.0 + x.abs())),
        "HardSwish" => Box::new(|x| x * (x / 6.0 + 0.5).clamp(0.0, 1.0)),
        "Mish" => Box::new(|x: f64| x * (x.exp().ln_1p()).tanh()),
        _ => return Err(Error::unsupported(format!("no float function for {op}"))),
    })
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        x.exp() / (1.0 + x.exp())
    }
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

fn eval_float_unary(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let f = float_unary_fn(&c.node.op, c.attrs())?;
    Ok(vec![map_float(c.input(0)?, f)?])
}

fn unary_numeric(
    c: &EvalCtx,
    ff: impl Fn(f64) -> f64,
    fi: impl Fn(i128) -> i128,
) -> Result<Vec<Tensor>> {
    Ok(vec![map_numeric(c.input(0)?, ff, fi)?])
}

fn int_unary(c: &EvalCtx, f: impl Fn(i128) -> i128) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    if !x.dtype().is_int() {
        bail!("expects an integer input, got {}", x.dtype());
    }
    Ok(vec![map_numeric(x, |v| v, f)?])
}

fn eval_shrink(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let E::Shrink { bias, lambd } = E::expect("Shrink", c.attrs())? else {
        unreachable!("Shrink's parameters are Shrink")
    };
    let (bias, lambd) = (f64::from(bias), f64::from(lambd));
    let f = move |x: f64| {
        if x < -lambd {
            x + bias
        } else if x > lambd {
            x - bias
        } else {
            0.0
        }
    };
    let x = c.input(0)?;
    // Shrink also takes integers; f64 holds their values exactly.
    Ok(vec![map_float(&x.cast(DType::F64), f)?.cast(x.dtype())])
}

fn float_predicate(c: &EvalCtx, p: impl Fn(f64) -> bool) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    if !x.dtype().is_float() {
        bail!("expects a floating-point input, got {}", x.dtype());
    }
    Ok(vec![Tensor::from_vec(
        x.shape().to_vec(),
        x.to_f64s().into_iter().map(p).collect::<Vec<bool>>(),
    )])
}

fn eval_isinf(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let E::IsInf {
        negative: neg,
        positive: pos,
    } = E::expect("IsInf", c.attrs())?
    else {
        unreachable!("IsInf's parameters are IsInf")
    };
    float_predicate(c, |x| {
        x.is_infinite() && ((x > 0.0 && pos) || (x < 0.0 && neg))
    })
}

fn eval_not(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let v = x
        .as_slice::<bool>()
        .ok_or_else(|| Error::invalid(format!("Not expects bool, got {}", x.dtype())))?;
    Ok(vec![Tensor::from_vec(
        x.shape().to_vec(),
        v.iter().map(|b| !b).collect::<Vec<_>>(),
    )])
}

fn arith(
    c: &EvalCtx,
    ff: impl Fn(f64, f64) -> f64,
    fi: impl Fn(i128, i128) -> Result<i128>,
) -> Result<Vec<Tensor>> {
    Ok(vec![binary_numeric(c.input(0)?, c.input(1)?, ff, fi)?])
}

fn int_div(a: i128, b: i128) -> Result<i128> {
    if b == 0 {
        bail!("integer division by zero");
    }
    Ok(a / b)
}

fn eval_mod(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let E::Mod { fmod } = E::expect("Mod", c.attrs())? else {
        unreachable!("Mod's parameters are Mod")
    };
    let (a, b) = (c.input(0)?, c.input(1)?);
    // fmod=0 follows Python (the result takes the divisor's sign); the
    // conformance suite applies that to floats too.
    let t = binary_numeric(
        a,
        b,
        |x, y| {
            let r = x % y;
            if !fmod && r != 0.0 && (r < 0.0) != (y < 0.0) {
                r + y
            } else {
                r
            }
        },
        |x, y| {
            if y == 0 {
                bail!("integer modulo by zero");
            }
            let r = x % y;
            // fmod=0 follows Python: the result takes the divisor's sign.
            Ok(if !fmod && r != 0 && (r < 0) != (y < 0) {
                r + y
            } else {
                r
            })
        },
    )?;
    Ok(vec![t])
}

fn eval_pow(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    // The exponent may have its own type; the result has the base's.
    let (shape, v) = zip_broadcast(&a.to_f64s(), a.shape(), &b.to_f64s(), b.shape(), f64::powf)?;
    let t = if a.dtype().is_float() {
        Tensor::from_f64s(a.dtype(), shape, v)
    } else {
        Tensor::from_i128s(a.dtype(), shape, v.into_iter().map(|x| x as i128))
    };
    Ok(vec![t])
}

fn eval_bitshift(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let E::BitShift { left } = E::expect("BitShift", c.attrs())? else {
        unreachable!("BitShift's parameters are BitShift")
    };
    let bits = (c.input(0)?.dtype().size() * 8) as i128;
    // Out-of-range shifts saturate: everything shifted out (sign kept on the right).
    int_binary(c, move |x, s| match (left, (0..bits).contains(&s)) {
        (true, true) => x << s,
        (true, false) => 0,
        (false, true) => x >> s,
        (false, false) => {
            if x < 0 {
                -1
            } else {
                0
            }
        }
    })
}

fn int_binary(c: &EvalCtx, f: impl Fn(i128, i128) -> i128) -> Result<Vec<Tensor>> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    if !a.dtype().is_int() {
        bail!("expects integer inputs, got {}", a.dtype());
    }
    // Sign-extended i128 images give the right bits after truncation.
    Ok(vec![binary_numeric(a, b, |x, _| x, |x, y| Ok(f(x, y)))?])
}

fn logic(c: &EvalCtx, f: impl Fn(bool, bool) -> bool) -> Result<Vec<Tensor>> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    let (x, y) = match (a.as_slice::<bool>(), b.as_slice::<bool>()) {
        (Some(x), Some(y)) => (x, y),
        _ => bail!("expects bool inputs, got {} and {}", a.dtype(), b.dtype()),
    };
    let (shape, v) = zip_broadcast(x, a.shape(), y, b.shape(), f)?;
    Ok(vec![Tensor::from_vec(shape, v)])
}

fn cmp(
    c: &EvalCtx,
    ff: impl Fn(f64, f64) -> bool,
    fi: impl Fn(i128, i128) -> bool,
) -> Result<Vec<Tensor>> {
    Ok(vec![compare(c.input(0)?, c.input(1)?, ff, fi)?])
}

fn variadic(
    c: &EvalCtx,
    ff: impl Fn(f64, f64) -> f64 + Copy,
    fi: impl Fn(i128, i128) -> i128 + Copy,
) -> Result<Vec<Tensor>> {
    let mut acc = c.input(0)?.clone();
    for i in 1..c.num_inputs() {
        acc = binary_numeric(&acc, c.input(i)?, ff, |a, b| Ok(fi(a, b)))?;
    }
    Ok(vec![acc])
}

fn eval_mean(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let sum = variadic(c, |a, b| a + b, |a, b| a + b)?.remove(0);
    let n = c.num_inputs() as f64;
    Ok(vec![map_float(&sum, |x| x / n)?])
}

fn eval_where(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (cond, x, y) = (c.input(0)?, c.input(1)?, c.input(2)?);
    same_dtype(x, y)?;
    let cv = cond
        .as_slice::<bool>()
        .ok_or_else(|| Error::invalid("Where condition must be bool"))?;
    let out = broadcast_shapes(&[cond.shape(), x.shape(), y.shape()])?;
    let oc = super::util::broadcast_offsets(cond.shape(), &out);
    let ox = super::util::broadcast_offsets(x.shape(), &out);
    let oy = super::util::broadcast_offsets(y.shape(), &out);
    let data = crate::map_data!(x.data(), xv => {
        let yv = Elem::slice(y.data()).expect("dtype checked");
        (0..oc.len()).map(|i| if cv[oc[i]] { xv[ox[i]] } else { yv[oy[i]] }).collect()
    });
    Ok(vec![Tensor::new(out, data)])
}

fn infer_where(c: &InferCtx) -> Result<Vec<ValueType>> {
    let shapes: Vec<_> = (0..3)
        .map(|i| c.input(i).map(|t| &t.shape))
        .collect::<Result<_>>()?;
    Ok(vec![ValueType {
        dtype: c.dtype(1),
        shape: infer::broadcast_shape(&shapes)?,
    }])
}

fn eval_clip(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let E::Clip { min, max } = E::expect("Clip", c.attrs())? else {
        unreachable!("Clip's parameters are Clip")
    };
    let bound = |i: usize, attr: Option<f32>, default: f64| -> Result<f64> {
        Ok(match c.opt_input(i) {
            Some(t) if !t.is_empty() => t.first_f64()?,
            _ => attr.map_or(default, f64::from),
        })
    };
    let lo = bound(1, min, f64::NEG_INFINITY)?;
    let hi = bound(2, max, f64::INFINITY)?;
    let t = map_numeric(
        x,
        |v| if v.is_nan() { v } else { v.max(lo).min(hi) },
        |v| {
            let v = if lo.is_finite() { v.max(lo as i128) } else { v };
            if hi.is_finite() { v.min(hi as i128) } else { v }
        },
    )?;
    Ok(vec![t])
}

fn cast_target(attrs: &Attrs) -> Result<DType> {
    let to = attrs
        .opt_int("to")?
        .ok_or_else(|| Error::invalid("Cast needs the 'to' attribute"))?;
    DType::from_onnx(to as i32).ok_or_else(|| {
        Error::unsupported(format!(
            "Cast to {} is not supported",
            DType::onnx_code_name(to as i32)
        ))
    })
}

fn eval_cast(c: &EvalCtx) -> Result<Vec<Tensor>> {
    Ok(vec![c.input(0)?.cast(cast_target(c.attrs())?)])
}

fn infer_cast(c: &InferCtx) -> Result<Vec<ValueType>> {
    infer::shape_with_dtype(c, cast_target(&c.node.attrs)?)
}

fn infer_cast_like(c: &InferCtx) -> Result<Vec<ValueType>> {
    Ok(vec![ValueType {
        dtype: c.dtype(1),
        shape: c.input(0)?.shape.clone(),
    }])
}

fn eval_swiglu(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    if a.shape() != b.shape() {
        bail!(
            "SwiGLU inputs must have the same shape, got {:?} and {:?}",
            a.shape(),
            b.shape()
        );
    }
    let E::SwiGlu { alpha } = E::expect("SwiGLU", c.attrs())? else {
        unreachable!("SwiGLU's parameters are SwiGlu")
    };
    let alpha = f64::from(alpha);
    Ok(vec![binary_numeric(
        a,
        b,
        |x, y| x * sigmoid(alpha * x) * y,
        |_, _| bail!("SwiGLU expects floating-point inputs"),
    )?])
}

/// `BitCast`: the same bytes read as another type of the same width.
fn eval_bitcast(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let to = cast_target(c.attrs())?;
    if to.size() != x.dtype().size() {
        bail!(
            "BitCast from {} to {to} changes the element width",
            x.dtype()
        );
    }
    let mut bytes = Vec::with_capacity(x.len() * to.size());
    crate::with_data!(x.data(), v => v.iter().for_each(|e| e.write_le(&mut bytes)));
    Ok(vec![Tensor::new(
        x.shape().to_vec(),
        crate::tensor::Data::from_le_bytes(to, &bytes),
    )])
}
