//! Matrix products and linear algebra: `MatMul`, `Gemm`, `MatMulInteger`,
//! `Einsum`, `Det`, and the blocked kernel that `Conv` also uses.

use super::infer::InferCtx;
use super::movement::transpose;
use super::util::{broadcast_offsets, broadcast_shapes};
use super::{EvalCtx, OpDef, op};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::ValueType;
use crate::shape::{Dim, Shape};
use crate::tensor::Tensor;

pub(super) fn ops() -> Vec<OpDef> {
    vec![
        op!("MatMul", eval_matmul, infer_matmul).contraction(),
        op!("Gemm", eval_gemm, infer_gemm).contraction(),
        op!("MatMulInteger", eval_matmul_integer, |c| {
            // MatMul's shapes, in int32.
            let mut out = infer_matmul(c)?;
            out[0].dtype = Some(DType::I32);
            Ok(out)
        }),
        op!("Einsum", eval_einsum, |c| super::infer::by_evaluation(
            c,
            &[0, 1, 2, 3, 4, 5, 6, 7]
        )),
        op!("Det", eval_det),
    ]
}

/// Scalar types the blocked kernel computes in.
pub trait Scalar:
    Copy + Default + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self> + Send + Sync
{
}
impl Scalar for f32 {}
impl Scalar for f64 {}

/// `c[m×n] += a[m×k] · b[k×n]`, row-major, blocked so a panel of `b` stays
/// in cache while rows of `a` stream past it; the inner loop is a
/// contiguous axpy the compiler vectorises.
pub fn gemm_acc<T: Scalar>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T]) {
    const KB: usize = 256;
    const NB: usize = 512;
    for k0 in (0..k).step_by(KB) {
        let k1 = (k0 + KB).min(k);
        for n0 in (0..n).step_by(NB) {
            let n1 = (n0 + NB).min(n);
            for i in 0..m {
                let crow = &mut c[i * n + n0..i * n + n1];
                for kk in k0..k1 {
                    let av = a[i * k + kk];
                    let brow = &b[kk * n + n0..kk * n + n1];
                    for (cv, &bv) in crow.iter_mut().zip(brow) {
                        *cv = *cv + av * bv;
                    }
                }
            }
        }
    }
}

/// Batched, broadcasting matrix product with numpy `matmul` semantics,
/// computed in `f32` for f32/f16/bf16 inputs and `f64` otherwise.
pub fn matmul(a: &Tensor, b: &Tensor, out_dtype: DType) -> Result<Tensor> {
    let (mut ash, mut bsh) = (a.shape().to_vec(), b.shape().to_vec());
    if ash.is_empty() || bsh.is_empty() {
        bail!("MatMul inputs must have rank >= 1");
    }
    let a_vec = ash.len() == 1;
    let b_vec = bsh.len() == 1;
    if a_vec {
        ash.insert(0, 1);
    }
    if b_vec {
        bsh.push(1);
    }
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (k2, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    if k != k2 {
        bail!(
            "MatMul inner dimensions differ: {:?} x {:?}",
            a.shape(),
            b.shape()
        );
    }
    let batch = broadcast_shapes(&[&ash[..ash.len() - 2], &bsh[..bsh.len() - 2]])?;
    let nb: usize = batch.iter().product();
    let oa = broadcast_offsets(&ash[..ash.len() - 2], &batch);
    let ob = broadcast_offsets(&bsh[..bsh.len() - 2], &batch);
    let mut shape = batch.clone();
    if !a_vec {
        shape.push(m);
    }
    if !b_vec {
        shape.push(n);
    }
    macro_rules! run {
        ($t:ty, $av:expr, $bv:expr) => {{
            let (av, bv) = ($av, $bv);
            let mut out = vec![<$t>::default(); nb * m * n];
            for bi in 0..nb {
                let (ai, bj) = (oa[bi] * m * k, ob[bi] * k * n);
                gemm_acc(
                    m,
                    k,
                    n,
                    &av[ai..ai + m * k],
                    &bv[bj..bj + k * n],
                    &mut out[bi * m * n..(bi + 1) * m * n],
                );
            }
            out
        }};
    }
    Ok(
        if matches!(a.dtype(), DType::F32 | DType::F16 | DType::BF16) {
            let out = run!(f32, a.to_f32s(), b.to_f32s());
            Tensor::from_vec(shape.clone(), out).cast(out_dtype)
        } else {
            let out = run!(f64, a.to_f64s(), b.to_f64s());
            Tensor::from_f64s(out_dtype, shape, out)
        },
    )
}

fn eval_matmul(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    super::util::same_dtype(a, b)?;
    Ok(vec![matmul(a, b, a.dtype())?])
}

fn infer_matmul(c: &InferCtx) -> Result<Vec<ValueType>> {
    let dtype = c.dtype(0);
    let (Some(a), Some(b)) = (c.dims(0), c.dims(1)) else {
        return Ok(vec![ValueType {
            dtype,
            shape: Shape::unknown(),
        }]);
    };
    if a.is_empty() || b.is_empty() {
        bail!("MatMul inputs must have rank >= 1");
    }
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    let (a_vec, b_vec) = (a.len() == 1, b.len() == 1);
    if a_vec {
        a.insert(0, Dim::Known(1));
    }
    if b_vec {
        b.push(Dim::Known(1));
    }
    let batch = super::infer::broadcast_shape(&[
        &Shape(Some(a[..a.len() - 2].to_vec())),
        &Shape(Some(b[..b.len() - 2].to_vec())),
    ])?;
    let mut dims = batch.0.unwrap_or_default();
    if !a_vec {
        dims.push(a[a.len() - 2].clone());
    }
    if !b_vec {
        dims.push(b[b.len() - 1].clone());
    }
    Ok(vec![ValueType {
        dtype,
        shape: Shape(Some(dims)),
    }])
}

fn eval_gemm(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (mut a, mut b) = (c.input(0)?.clone(), c.input(1)?.clone());
    if a.rank() != 2 || b.rank() != 2 {
        bail!(
            "Gemm expects 2-D A and B, got {:?} and {:?}",
            a.shape(),
            b.shape()
        );
    }
    let p = super::params::Gemm::of(c.attrs())?;
    if p.trans_a {
        a = transpose(&a, &[1, 0]);
    }
    if p.trans_b {
        b = transpose(&b, &[1, 0]);
    }
    let (alpha, beta) = (f64::from(p.alpha), f64::from(p.beta));
    let dt = a.dtype();
    let mut y = matmul(&a, &b, dt)?;
    if alpha != 1.0 {
        y = super::util::map_numeric(&y, |v| v * alpha, |v| (v as f64 * alpha) as i128)?;
    }
    if let Some(bias) = c.opt_input(2) {
        let bias =
            super::util::map_numeric(&bias.cast(dt), |v| v * beta, |v| (v as f64 * beta) as i128)?;
        y = super::util::binary_numeric(&y, &bias, |p, q| p + q, |p, q| Ok(p + q))?;
    }
    Ok(vec![y])
}

fn eval_matmul_integer(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let (a, b) = (c.input(0)?, c.input(1)?);
    let zp = |i: usize| c.opt_input(i).map(|t| t.to_f64s());
    let (za, zb) = (zp(2), zp(3));
    let sub = |t: &Tensor, z: Option<Vec<f64>>, per_row: bool| -> Tensor {
        let v = t.to_f64s();
        let z = z.unwrap_or_else(|| vec![0.0]);
        let cols = *t.shape().last().unwrap_or(&1);
        let rows = if t.rank() >= 2 {
            t.shape()[t.rank() - 2]
        } else {
            1
        };
        let out = v.iter().enumerate().map(|(i, x)| {
            let zi = if z.len() == 1 {
                0
            } else if per_row {
                (i / cols) % rows
            } else {
                i % cols
            };
            x - z[zi]
        });
        Tensor::from_f64s(DType::F64, t.shape().to_vec(), out)
    };
    let y = matmul(&sub(a, za, true), &sub(b, zb, false), DType::F64)?;
    Ok(vec![y.cast(DType::I32)])
}

fn eval_einsum(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let eq = c
        .attrs()
        .opt_string("equation")?
        .ok_or_else(|| Error::invalid("Einsum needs 'equation'"))?
        .replace(' ', "");
    let inputs: Vec<&Tensor> = (0..c.num_inputs())
        .map(|i| c.input(i))
        .collect::<Result<_>>()?;
    Ok(vec![einsum(&eq, &inputs)?])
}

/// Einsum by direct summation over the joint index space (with `...`
/// expanded to the broadcast batch dims). Correct for every equation; fast
/// enough for the small contractions models use it for.
fn einsum(eq: &str, inputs: &[&Tensor]) -> Result<Tensor> {
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq, None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != inputs.len() {
        bail!(
            "Einsum equation '{eq}' names {} inputs, got {}",
            terms.len(),
            inputs.len()
        );
    }
    // Expand "..." into upper-case letters for the broadcast dims.
    let mut ell_rank = 0;
    for (t, x) in terms.iter().zip(inputs) {
        if t.contains("...") {
            let named = t.len() - 3;
            if x.rank() < named {
                bail!(
                    "Einsum term '{t}' names more dims than its input's rank {}",
                    x.rank()
                );
            }
            ell_rank = ell_rank.max(x.rank() - named);
        }
    }
    let ell: String = (0..ell_rank).map(|i| (b'A' + i as u8) as char).collect();
    let mut labels: Vec<Vec<char>> = Vec::new();
    let mut sizes: std::collections::BTreeMap<char, usize> = Default::default();
    for (t, x) in terms.iter().zip(inputs) {
        let mine = (x.rank() + 3).saturating_sub(t.len());
        let full: Vec<char> = t
            .replace("...", &ell[ell_rank - mine.min(ell_rank)..])
            .chars()
            .collect();
        if full.len() != x.rank() {
            bail!(
                "Einsum term '{t}' does not match an input of rank {}",
                x.rank()
            );
        }
        for (ch, &d) in full.iter().zip(x.shape()) {
            let e = sizes.entry(*ch).or_insert(d);
            if *e == 1 {
                *e = d;
            } else if d != 1 && *e != d {
                bail!("Einsum label '{ch}' has sizes {e} and {d}");
            }
        }
        labels.push(full);
    }
    let out: Vec<char> = match rhs {
        Some(r) => r.replace("...", &ell).chars().collect(),
        None => {
            let mut counts: std::collections::BTreeMap<char, usize> = Default::default();
            labels
                .iter()
                .flatten()
                .for_each(|c| *counts.entry(*c).or_default() += 1);
            ell.chars()
                .chain(
                    counts
                        .iter()
                        .filter(|(c, n)| **n == 1 && !c.is_uppercase())
                        .map(|(c, _)| *c),
                )
                .collect()
        }
    };
    let all: Vec<char> = out
        .iter()
        .copied()
        .chain(sizes.keys().filter(|k| !out.contains(k)).copied())
        .collect();
    let dims: Vec<usize> = all.iter().map(|c| sizes[c]).collect();
    let out_dims: Vec<usize> = dims[..out.len()].to_vec();
    let datas: Vec<Vec<f64>> = inputs.iter().map(|t| t.to_f64s()).collect();
    // For each input, its stride along every joint label (0 if absent or broadcast).
    let st: Vec<Vec<usize>> = labels
        .iter()
        .zip(inputs)
        .map(|(l, x)| {
            let xs = crate::tensor::strides(x.shape());
            all.iter()
                .map(|c| {
                    l.iter()
                        .enumerate()
                        .filter(|(i, lc)| *lc == c && x.shape()[*i] != 1)
                        .map(|(i, _)| xs[i])
                        .sum()
                })
                .collect()
        })
        .collect();
    let total: usize = dims.iter().product();
    let n_out: usize = out_dims.iter().product();
    let inner = total.checked_div(n_out).unwrap_or(0);
    let mut result = vec![0.0; n_out];
    let mut pos = vec![0; all.len()];
    for (idx, r) in result.iter_mut().enumerate().take(n_out) {
        for j in 0..inner {
            super::util::unravel(idx * inner + j, &dims, &mut pos);
            let mut p = 1.0;
            for (d, s) in datas.iter().zip(&st) {
                p *= d[pos.iter().zip(s).map(|(a, b)| a * b).sum::<usize>()];
            }
            *r += p;
        }
    }
    Ok(Tensor::from_f64s(inputs[0].dtype(), out_dims, result))
}

fn infer_gemm(c: &InferCtx) -> Result<Vec<ValueType>> {
    let dtype = c.dtype(0);
    let (Some(a), Some(b)) = (c.dims(0), c.dims(1)) else {
        return Ok(vec![ValueType {
            dtype,
            shape: Shape(Some(vec![Dim::Unknown; 2])),
        }]);
    };
    if a.len() != 2 || b.len() != 2 {
        bail!("Gemm expects 2-D A and B");
    }
    let p = super::params::Gemm::of(&c.node.attrs)?;
    let m = a[usize::from(p.trans_a)].clone();
    let n = b[usize::from(!p.trans_b)].clone();
    Ok(vec![ValueType {
        dtype,
        shape: Shape(Some(vec![m, n])),
    }])
}

/// Determinant of every trailing square matrix, by LU decomposition with
/// partial pivoting in `f64`.
fn eval_det(c: &EvalCtx) -> Result<Vec<Tensor>> {
    let x = c.input(0)?;
    let r = x.rank();
    if r < 2 || x.shape()[r - 1] != x.shape()[r - 2] {
        bail!("Det expects [..., M, M], got {:?}", x.shape());
    }
    let n = x.shape()[r - 1];
    let xs = x.to_f64s();
    let count = xs.len() / (n * n).max(1);
    let dets = (0..count).map(|b| {
        let mut m = xs[b * n * n..(b + 1) * n * n].to_vec();
        let mut det = 1.0;
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&i, &j| m[i * n + col].abs().total_cmp(&m[j * n + col].abs()))
                .expect("non-empty range");
            if m[pivot * n + col] == 0.0 {
                return 0.0;
            }
            if pivot != col {
                for k in 0..n {
                    m.swap(pivot * n + k, col * n + k);
                }
                det = -det;
            }
            det *= m[col * n + col];
            for row in col + 1..n {
                let f = m[row * n + col] / m[col * n + col];
                for k in col..n {
                    m[row * n + k] -= f * m[col * n + k];
                }
            }
        }
        det
    });
    Ok(vec![Tensor::from_f64s(
        x.dtype(),
        x.shape()[..r - 2].to_vec(),
        dets.collect::<Vec<_>>(),
    )])
}
