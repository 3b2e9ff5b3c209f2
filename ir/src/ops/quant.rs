//! Linear (de)quantisation and the QLinear ops built on it.

use super::infer::InferCtx;
use super::params::{GatherBlockQuantized, MatMulNBits};
use super::util::{norm_axis, round_half_even, unravel};
use super::{EvalCtx, OpDef, op};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::ValueType;
use crate::packed::{Layout, Weight, ZeroPoints};
use crate::shape::{Dim, Shape};
use crate::tensor::Tensor;

pub(super) fn ops() -> Vec<OpDef> {
    vec![
        op!("QuantizeLinear", eval_quantize, infer_quantize),
        op!("DequantizeLinear", eval_dequantize, infer_dequantize),
        op!("DynamicQuantizeLinear", eval_dynamic_quantize, |c| {
            // uint8 codes of x's shape, and one scale and zero point.
            let mut out = super::infer::shape_with_dtype(c, DType::U8)?;
            out.push(super::infer::known(Some(DType::F32), &[]));
            out.push(super::infer::known(Some(DType::U8), &[]));
            Ok(out)
        }),
        op!("QLinearMatMul", eval_qlinear_matmul),
        op!("QLinearConv", eval_qlinear_conv),
        op!("MatMulNBits", eval_matmul_nbits, infer_matmul_nbits).in_domain(MICROSOFT),
        op!(
            "GatherBlockQuantized",
            eval_gather_block_quantized,
            infer_gather_block_quantized
        )
        .in_domain(MICROSOFT),
    ]
}

/// The domain of ONNX Runtime's contrib ops.
pub const MICROSOFT: &str = "com.microsoft";

/// For each element of a tensor of `shape`, the index of its scale / zero
/// point: one per tensor, one per slice along `axis`, or one per block of
/// `block` elements along `axis` (blocked quantisation, opset 21).
fn param_index(shape: &[usize], param: &Tensor, axis: i64, block: usize) -> Result<Vec<usize>> {
    let n: usize = shape.iter().product();
    if param.len() == 1 && block == 0 {
        return Ok(vec![0; n]);
    }
    let axis = norm_axis(axis, shape.len())?;
    if block == 0 {
        if param.rank() != 1 || param.len() != shape[axis] {
            bail!(
                "scale of shape {:?} does not match axis {axis} of {:?}",
                param.shape(),
                shape
            );
        }
        let inner: usize = shape[axis + 1..].iter().product();
        return Ok((0..n).map(|i| (i / inner) % shape[axis]).collect());
    }
    if param.rank() != shape.len() {
        bail!(
            "blocked scale of shape {:?} must have the rank of {:?}",
            param.shape(),
            shape
        );
    }
    let pst = crate::tensor::strides(param.shape());
    let mut pos = vec![0; shape.len()];
    Ok((0..n)
        .map(|i| {
            unravel(i, shape, &mut pos);
            pos[axis] /= block;
            pos.iter().zip(&pst).map(|(p, s)| p * s).sum()
        })
        .collect())
}

/// [`param_index`] with the node's `axis` and `block_size` attributes.
fn node_param_index(c: &EvalCtx, x: &Tensor, scale: &Tensor) -> Result<Vec<usize>> {
    let q = super::params::Quantization::of(c.attrs())?;
    param_index(x.shape(), scale, q.axis, q.block_size)
}

/// Quantises `x` with per-element scale/zero-point lookups into `dtype`,
/// saturating. `x / scale` is rounded to float32 first when `in_f32` (as
/// the spec computes it in the input's type): a quotient like 25.4999996
/// in float64 is exactly 25.5 in float32, and rounds to even differently.
pub fn quantize(
    x: &[f64],
    shape: &[usize],
    scale: &[f64],
    zp: &[f64],
    idx: &[usize],
    dtype: DType,
    in_f32: bool,
) -> Tensor {
    let (lo, hi) = dtype
        .int_range()
        .unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
    let y = x.iter().zip(idx).map(|(v, &k)| {
        let ratio = v / scale[k];
        let ratio = if in_f32 { ratio as f32 as f64 } else { ratio };
        let q = round_half_even(ratio) + zp.get(k).copied().unwrap_or(0.0);
        q.clamp(lo, hi)
    });
    Tensor::from_f64s(dtype, shape.to_vec(), y)
}

/// QuantizeLinear's output type: its zero point's, else the
/// `output_dtype` attribute's (opset 21), else uint8.
fn quantized_dtype(zero_point: Option<DType>, output_dtype: i64) -> Result<DType> {
    let dtype = match (zero_point, output_dtype) {
        (Some(z), _) => z,
        (None, 0) => DType::U8,
        (None, code) => DType::from_onnx(code as i32).ok_or_else(|| {
            Error::unsupported(format!(
                "QuantizeLinear to {} is not supported",
                DType::onnx_code_name(code as i32)
            ))
        })?,
    };
    if dtype.is_float() {
        bail!("QuantizeLinear to {dtype} is not supported");
    }
    Ok(dtype)
}

/// DequantizeLinear's output type: the `output_dtype` attribute's
/// (opset 23), else its scale's.
fn dequantized_dtype(scale: DType, output_dtype: i64) -> DType {
    match output_dtype {
        0 => scale,
        code => DType::from_onnx(code as i32).unwrap_or(scale),
    }
}

/// Q/DQ keep their input's shape; the types are as above (known without
/// the sizes, so symbolic shapes pass through).
fn infer_quantize(c: &InferCtx) -> Result<Vec<ValueType>> {
    let zero_point = match c.input(2) {
        Err(_) => None,
        Ok(t) => match t.dtype {
            Some(d) => Some(d),
            None => return super::infer::by_evaluation(c, &[0]),
        },
    };
    let dtype = quantized_dtype(zero_point, c.node.attrs.int("output_dtype", 0)?)?;
    super::infer::shape_with_dtype(c, dtype)
}

fn infer_dequantize(c: &InferCtx) -> Result<Vec<ValueType>> {
    let Some(scale) = c.dtype(1) else {
        return super::infer::by_evaluation(c, &[0]);
    };
    let dtype = dequantized_dtype(scale, c.node.attrs.int("output_dtype", 0)?);
    super::infer::shape_with_dtype(c, dtype)
}

fn eval_quantize(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, scale) = (c.input(0)?, c.input(1)?);
    let zp = c.opt_input(2);
    let dtype = quantized_dtype(zp.map(Tensor::dtype), c.attrs().int("output_dtype", 0)?)?;
    let idx = node_param_index(c, x, scale)?;
    let zpv = zp.map_or_else(|| vec![0.0; scale.len()], Tensor::to_f64s);
    Ok(vec![quantize(
        &x.to_f64s(),
        x.shape(),
        &scale.to_f64s(),
        &zpv,
        &idx,
        dtype,
        x.dtype() != DType::F64,
    )])
}

fn eval_dequantize(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (x, scale) = (c.input(0)?, c.input(1)?);
    let idx = node_param_index(c, x, scale)?;
    let y = dequantize(x, scale, c.opt_input(2), &idx);
    let dtype = dequantized_dtype(scale.dtype(), c.attrs().int("output_dtype", 0)?);
    Ok(vec![Tensor::from_f64s(dtype, x.shape().to_vec(), y)])
}

fn eval_dynamic_quantize(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    // The spec computes in float32; f64 would round some values differently.
    let v = x.to_f32s();
    let max = v.iter().copied().fold(0.0f32, f32::max);
    let min = v.iter().copied().fold(0.0f32, f32::min);
    let scale = (max - min) / 255.0;
    let zp = if scale == 0.0 {
        0.0
    } else {
        ((0.0 - min) / scale).clamp(0.0, 255.0).round_ties_even()
    };
    let q: Vec<f64> = v
        .iter()
        .map(|&x| {
            if scale == 0.0 {
                f64::from(zp)
            } else {
                f64::from(((x / scale).round_ties_even() + zp).clamp(0.0, 255.0))
            }
        })
        .collect();
    let y = Tensor::from_f64s(DType::U8, x.shape().to_vec(), q);
    let (scale, zp) = (f64::from(scale), f64::from(zp));
    Ok(vec![
        y,
        Tensor::from_f64s(DType::F32, vec![], [scale]),
        Tensor::from_f64s(DType::U8, vec![], [zp]),
    ])
}

/// Dequantises input `i` given its scale and zero point at `i+1`, `i+2`,
/// with per-axis parameters along `axis` when they are 1-D.
fn dequant_input(c: &EvalCtx, i: usize, axis: i64) -> Result<Tensor> {
    let (x, s) = (c.input(i)?, c.input(i + 1)?);
    let idx = param_index(x.shape(), s, axis, 0)?;
    Ok(Tensor::from_vec(
        x.shape().to_vec(),
        dequantize(x, s, c.opt_input(i + 2), &idx),
    ))
}

/// `(x - zero_point) * scale`, with each element's parameters at `idx`.
fn dequantize(x: &Tensor, scale: &Tensor, zero_point: Option<&Tensor>, idx: &[usize]) -> Vec<f64> {
    let s = scale.to_f64s();
    let z = zero_point.map_or_else(|| vec![0.0; s.len()], Tensor::to_f64s);
    x.to_f64s()
        .iter()
        .zip(idx)
        .map(|(v, &k)| (v - z[k]) * s[k])
        .collect()
}

fn requantize(c: &EvalCtx, y: &Tensor, si: usize) -> Result<Tensor> {
    let (s, z) = (c.input(si)?, c.input(si + 1)?);
    let n = y.len();
    Ok(quantize(
        &y.to_f64s(),
        y.shape(),
        &s.to_f64s(),
        &z.to_f64s(),
        &vec![0; n],
        z.dtype(),
        false,
    ))
}

fn eval_qlinear_matmul(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let a = dequant_input(c, 0, -2)?;
    let b = dequant_input(c, 3, -1)?;
    let y = super::matmul::matmul(&a, &b, DType::F64)?;
    Ok(vec![requantize(c, &y, 6)?])
}

fn eval_qlinear_conv(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = dequant_input(c, 0, 1)?;
    let w = dequant_input(c, 3, 0)?;
    let mut bias = c.opt_input(8).map(|b| b.to_f64s());
    if let Some(b) = bias.as_mut() {
        // The int32 bias is quantised with scale x_scale * w_scale.
        let xs = c.input(1)?.first_f64()?;
        let ws = c.input(4)?.to_f64s();
        for (k, v) in b.iter_mut().enumerate() {
            *v *= xs * ws[if ws.len() == 1 { 0 } else { k }];
        }
    }
    let bias_t = bias.map(|b| Tensor::from_vec(vec![b.len()], b));
    let node = c.node;
    let inputs = vec![Some(&x), Some(&w), bias_t.as_ref()];
    let inner = EvalCtx {
        node,
        inputs,
        opset: c.opset,
        subgraphs: c.subgraphs,
    };
    let y = super::lookup("", "Conv").expect("Conv is registered");
    let y = (y.eval)(&inner)?.remove(0);
    Ok(vec![requantize(c, &y, 6)?])
}

/// The packed weight of a `MatMulNBits` or `GatherBlockQuantized` node:
/// its codes, scales and zero points at inputs `[codes, scales, zeros]`.
fn packed_weight<'a>(
    c: &EvalCtx<'a>,
    layout: Layout,
    [codes, scales, zeros]: [usize; 3],
    zeros_f32: &'a mut Vec<f32>,
) -> Result<Weight<'a>> {
    weight_of(
        layout,
        c.input(codes)?,
        c.input(scales)?,
        c.opt_input(zeros),
        zeros_f32,
    )
}

/// A packed weight from its codes (uint8), scales and zero points,
/// checked against `layout` (every kernel of a packed op reads its
/// weight through this, so all refuse the same inputs alike).
pub fn weight_of<'a>(
    layout: Layout,
    bytes: &'a Tensor,
    scales: &Tensor,
    zeros: Option<&'a Tensor>,
    zeros_f32: &'a mut Vec<f32>,
) -> Result<Weight<'a>> {
    let b = bytes.as_slice::<u8>().ok_or_else(|| {
        Error::invalid(format!("packed codes must be uint8, got {}", bytes.dtype()))
    })?;
    layout.check(b.len())?;
    let groups = layout.rows * layout.blocks();
    if scales.len() != groups {
        bail!(
            "scales have {} elements, expected {groups} ({} rows of {} blocks)",
            scales.len(),
            layout.rows,
            layout.blocks()
        );
    }
    let zero_points = match zeros {
        None => ZeroPoints::Default,
        Some(z) if z.dtype() == DType::U8 => {
            let expect = layout.rows * layout.zero_point_row_bytes();
            if z.len() != expect {
                bail!(
                    "packed zero points have {} bytes, expected {expect}",
                    z.len()
                );
            }
            ZeroPoints::Packed(z.as_slice::<u8>().expect("checked uint8"))
        }
        Some(z) if z.dtype().is_float() && z.len() == groups => {
            *zeros_f32 = z.to_f32s();
            ZeroPoints::Float(zeros_f32)
        }
        Some(z) => bail!(
            "zero points must be packed uint8 codes or one float per block, got {} of {}",
            z.len(),
            z.dtype()
        ),
    };
    Ok(Weight {
        layout,
        codes: b,
        scales: scales.to_f32s(),
        zero_points,
        groups: None,
    })
}

/// A `GatherBlockQuantized` table given as int4 or uint4 values (`[rows,
/// k]`, a code a value: how onnxruntime's quantizer writes embeddings) in
/// the packed uint8 form every kernel reads (`[rows, k / 2]`), with its
/// zero points as floats, one per block: uint4 codes keep theirs (0 when
/// absent, as onnxruntime reads them); int4 codes and zero points (absent:
/// 0) move up by 8, which leaves every `q − zero` as it was. `None` for a
/// table already packed.
pub fn packed_table(
    data: &Tensor,
    zero_points: Option<&Tensor>,
    block: usize,
) -> Result<Option<(Tensor, Tensor)>> {
    let shift = match data.dtype() {
        DType::U4 => 0,
        DType::I4 => 8,
        _ => return Ok(None),
    };
    let &[rows, k] = data.shape() else {
        unsupported!(
            "GatherBlockQuantized of a rank-{} table (wpc takes 2-D tables)",
            data.rank()
        );
    };
    if k % 2 != 0 {
        bail!(
            "a {} table's rows hold {k} values: 4-bit rows must be whole bytes",
            data.dtype()
        );
    }
    // Codes as unsigned nibbles, two to a byte, the first in the low bits.
    let nibble = |q: i128| ((q + shift) & 0xf) as u8;
    let codes: Vec<u8> = match data.data() {
        crate::Data::U4(v) => v.iter().map(|q| nibble(q.0.into())).collect(),
        crate::Data::I4(v) => v.iter().map(|q| nibble(q.0.into())).collect(),
        _ => unreachable!("matched above"),
    };
    let packed: Vec<u8> = codes.chunks(2).map(|p| p[0] | p[1] << 4).collect();
    let blocks = k.div_ceil(block);
    let zeros: Vec<f32> = match zero_points {
        Some(z) if z.len() == rows * blocks && z.dtype() == data.dtype() => z
            .to_i128s()
            .into_iter()
            .map(|z| (z + shift) as f32)
            .collect(),
        Some(z) => bail!(
            "zero points of the {} table must be {rows}x{blocks} of its type, got {} of {}",
            data.dtype(),
            z.len(),
            z.dtype()
        ),
        None => vec![shift as f32; rows * blocks],
    };
    Ok(Some((
        Tensor::from_vec(vec![rows, k / 2], packed),
        Tensor::from_vec(vec![rows, blocks], zeros),
    )))
}

/// `Y = A · dequantize(B)ᵀ (+ bias)`, one row of `B` dequantized at a time.
fn eval_matmul_nbits(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let p = MatMulNBits::of(c.attrs())?;
    let a = c.input(0)?;
    if a.shape().last() != Some(&p.k) {
        bail!("A of shape {:?} does not end in K={}", a.shape(), p.k);
    }
    let mut zf = Vec::new();
    let mut w = packed_weight(c, p.layout(), [1, 2, 3], &mut zf)?;
    if let Some(g) = c.opt_input(4) {
        let g = g.to_i64s();
        let blocks = p.layout().blocks() as i64;
        if g.len() != p.k || g.iter().any(|&b| !(0..blocks).contains(&b)) {
            bail!(
                "g_idx must give each of the K={} values a block below {blocks}",
                p.k
            );
        }
        w.groups = Some(g.iter().map(|&b| b as usize).collect());
    }
    let bias = c.opt_input(5).map(Tensor::to_f32s);
    if bias.as_ref().is_some_and(|b| b.len() != p.n) {
        bail!("bias must have N={} elements", p.n);
    }
    let av = a.to_f32s();
    let m = av.len() / p.k;
    let mut y = vec![0f32; m * p.n];
    // Panels of PANEL rows of B, dequantized into a `[K, PANEL]` block
    // for the blocked GEMM: the float weight never exists whole.
    const PANEL: usize = 64;
    let mut row = vec![0f32; p.k];
    let mut panel = vec![0f32; p.k * PANEL];
    let mut out = vec![0f32; m * PANEL];
    for n0 in (0..p.n).step_by(PANEL) {
        let width = PANEL.min(p.n - n0);
        for j in 0..width {
            w.row_into(n0 + j, &mut row);
            for (kk, &v) in row.iter().enumerate() {
                panel[kk * width + j] = v;
            }
        }
        out[..m * width].fill(0.0);
        super::matmul::gemm_acc(
            m,
            p.k,
            width,
            &av,
            &panel[..p.k * width],
            &mut out[..m * width],
        );
        for i in 0..m {
            for j in 0..width {
                let b = bias.as_ref().map_or(0.0, |b| b[n0 + j]);
                y[i * p.n + n0 + j] = out[i * width + j] + b;
            }
        }
    }
    let mut shape = a.shape().to_vec();
    *shape.last_mut().expect("rank checked") = p.n;
    Ok(vec![Tensor::from_f64s(
        a.dtype(),
        shape,
        y.into_iter().map(f64::from),
    )])
}

fn infer_matmul_nbits(c: &InferCtx) -> Result<Vec<ValueType>> {
    let p = MatMulNBits::of(&c.node.attrs)?;
    let shape = match c.dims(0) {
        Some(d) if !d.is_empty() => {
            let mut d = d.to_vec();
            *d.last_mut().expect("non-empty") = Dim::Known(p.n);
            Shape(Some(d))
        }
        _ => Shape::unknown(),
    };
    Ok(vec![ValueType {
        dtype: c.dtype(0),
        shape,
    }])
}

/// Rows of a packed `[V, row_bytes]` table at `indices`, dequantized.
fn eval_gather_block_quantized(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let p = GatherBlockQuantized::of(c.attrs())?;
    let repacked = packed_table(c.input(0)?, c.opt_input(3), p.block_size)?;
    let (data, zeros) = match &repacked {
        Some(_) if p.bits != 4 => {
            bail!(
                "a {} table needs bits 4, not {}",
                c.input(0)?.dtype(),
                p.bits
            )
        }
        Some((codes, zeros)) => (codes, Some(zeros)),
        None => (c.input(0)?, c.opt_input(3)),
    };
    if data.rank() != 2 {
        unsupported!(
            "GatherBlockQuantized of a rank-{} table (wpc takes 2-D tables)",
            data.rank()
        );
    }
    let layout = p.layout(data.shape()[0], data.shape()[1])?;
    let mut zf = Vec::new();
    let w = weight_of(layout, data, c.input(2)?, zeros, &mut zf)?;
    let indices = c.input(1)?;
    let rows = layout.rows as i64;
    let mut out = Vec::with_capacity(indices.len() * layout.k);
    let mut row = vec![0f32; layout.k];
    for i in indices.to_i64s() {
        let r = if i < 0 { i + rows } else { i };
        if !(0..rows).contains(&r) {
            bail!("index {i} is out of range for a table of {rows} rows");
        }
        w.row_into(r as usize, &mut row);
        out.extend(row.iter().map(|&v| f64::from(v)));
    }
    let mut shape = indices.shape().to_vec();
    shape.push(layout.k);
    Ok(vec![Tensor::from_f64s(c.input(2)?.dtype(), shape, out)])
}

fn infer_gather_block_quantized(c: &InferCtx) -> Result<Vec<ValueType>> {
    let p = GatherBlockQuantized::of(&c.node.attrs)?;
    let last = c.dims(0).and_then(|d| d.get(1).and_then(Dim::known));
    // A table of int4 or uint4 values has a value, not a byte, per column.
    let k = match c.dtype(0) {
        Some(DType::I4 | DType::U4) => last,
        _ => last
            .map(|bytes| p.layout(0, bytes))
            .transpose()?
            .map(|l| l.k),
    };
    let shape = match (c.dims(1), k) {
        (Some(d), Some(k)) => {
            let mut d = d.to_vec();
            d.push(Dim::Known(k));
            Shape(Some(d))
        }
        _ => Shape::unknown(),
    };
    Ok(vec![ValueType {
        dtype: c.dtype(2),
        shape,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subbyte::{I4, U4};
    use crate::tensor::Data;

    fn dequantized(codes: &Tensor, zeros: &Tensor, k: usize, block: usize) -> Vec<f32> {
        let layout = GatherBlockQuantized {
            bits: 4,
            block_size: block,
        }
        .layout(codes.shape()[0], codes.shape()[1])
        .unwrap();
        let scales = Tensor::from_vec(vec![layout.rows * layout.blocks()], vec![0.5f32; 4]);
        let mut zf = Vec::new();
        let w = weight_of(layout, codes, &scales, Some(zeros), &mut zf).unwrap();
        let mut out = vec![0f32; layout.rows * k];
        for (r, row) in out.chunks_mut(k).enumerate() {
            w.row_into(r, row);
        }
        out
    }

    #[test]
    fn four_bit_tables_pack_with_their_zero_points() {
        // uint4 values with zero points, per (row, block of 16).
        let q: Vec<u8> = (0..64).map(|i| (i * 7 % 16) as u8).collect();
        let data = Tensor::new(vec![2, 32], Data::U4(q.iter().map(|&v| U4(v)).collect()));
        let z = Tensor::new(vec![2, 2], Data::U4(vec![U4(8), U4(0), U4(15), U4(3)]));
        let (codes, zeros) = packed_table(&data, Some(&z), 16).unwrap().unwrap();
        assert_eq!((codes.shape(), codes.dtype()), (&[2, 16][..], DType::U8));
        let want: Vec<f32> = (0..64)
            .map(|i| (f32::from(q[i]) - [8.0, 0.0, 15.0, 3.0][i / 16]) * 0.5)
            .collect();
        assert_eq!(dequantized(&codes, &zeros, 32, 16), want);
        // int4 values without zero points: onnxruntime's zero is 0.
        let v: Vec<i8> = (0..64).map(|i| (i % 16) as i8 - 8).collect();
        let data = Tensor::new(vec![2, 32], Data::I4(v.iter().map(|&x| I4(x)).collect()));
        let (codes, zeros) = packed_table(&data, None, 16).unwrap().unwrap();
        let want: Vec<f32> = v.iter().map(|&x| f32::from(x) * 0.5).collect();
        assert_eq!(dequantized(&codes, &zeros, 32, 16), want);
        // Packed tables pass; odd rows and mis-shaped zero points do not.
        assert!(packed_table(&codes, None, 16).unwrap().is_none());
        let odd = Tensor::new(vec![1, 3], Data::U4(vec![U4(1); 3]));
        let err = packed_table(&odd, None, 16).unwrap_err().to_string();
        assert!(err.contains("whole bytes"), "{err}");
        let err = packed_table(&data, Some(&Tensor::from_vec(vec![3], vec![1u8; 3])), 16)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("zero points of the int4 table must be 2x2"),
            "{err}"
        );
    }
}
