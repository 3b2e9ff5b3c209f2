//! Helpers shared by the op families: axes, broadcasting, and generic
//! element-wise loops over typed storage.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::{Data, Elem, Tensor, strides};

/// Normalises a possibly negative `axis` against `rank` (`-1` is the last).
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        bail!("axis {axis} is out of range for a tensor of rank {rank}");
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}

/// Normalises a list of axes, rejecting duplicates.
pub fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let a = norm_axis(a, rank)?;
        if out.contains(&a) {
            bail!("axis {a} is repeated in {axes:?}");
        }
        out.push(a);
    }
    Ok(out)
}

/// The numpy-style broadcast of several shapes.
pub fn broadcast_shapes(shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[off + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                bail!("shapes {:?} cannot be broadcast together", shapes);
            }
        }
    }
    Ok(out)
}

/// Strides of `shape` seen from `out` (rank-aligned on the right), with 0
/// on broadcast dimensions.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let st = strides(shape);
    let off = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < off || shape[i - off] == 1 {
                0
            } else {
                st[i - off]
            }
        })
        .collect()
}

/// For every element of `out` (row-major), the offset of the element of a
/// tensor of `shape` that broadcasts onto it.
pub fn broadcast_offsets(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let st: Vec<isize> = broadcast_strides(shape, out)
        .into_iter()
        .map(|s| s as isize)
        .collect();
    strided_offsets(out, &st, 0)
}

/// Offsets `base + sum(index[i] * strides[i])` of every index of `shape`,
/// in row-major order. Strides may be negative (reversed slices) or zero
/// (broadcasts): every view of a tensor is an offset list like this one.
pub fn strided_offsets(shape: &[usize], strides: &[isize], base: isize) -> Vec<usize> {
    let n: usize = shape.iter().product();
    let mut offs = Vec::with_capacity(n);
    if n == 0 {
        return offs;
    }
    let rank = shape.len();
    if rank == 0 {
        offs.push(base as usize);
        return offs;
    }
    let mut idx = vec![0usize; rank];
    let (inner, inner_st) = (shape[rank - 1], strides[rank - 1]);
    let mut cur = base;
    loop {
        for j in 0..inner as isize {
            offs.push((cur + j * inner_st) as usize);
        }
        // Advance the odometer over all but the innermost dimension.
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return offs;
            }
            d -= 1;
            idx[d] += 1;
            cur += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            cur -= strides[d] * idx[d] as isize;
            idx[d] = 0;
        }
    }
}

/// Applies `f` element-wise over two broadcast slices.
pub fn zip_broadcast<A: Copy, B: Copy, R>(
    a: &[A],
    ash: &[usize],
    b: &[B],
    bsh: &[usize],
    f: impl Fn(A, B) -> R,
) -> Result<(Vec<usize>, Vec<R>)> {
    let out = broadcast_shapes(&[ash, bsh])?;
    if ash == bsh {
        return Ok((out, a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()));
    }
    if b.len() == 1 && ash == out.as_slice() {
        let y = b[0];
        return Ok((out, a.iter().map(|&x| f(x, y)).collect()));
    }
    if a.len() == 1 && bsh == out.as_slice() {
        let x = a[0];
        return Ok((out, b.iter().map(|&y| f(x, y)).collect()));
    }
    let oa = broadcast_offsets(ash, &out);
    let ob = broadcast_offsets(bsh, &out);
    let r = oa.iter().zip(&ob).map(|(&i, &j)| f(a[i], b[j])).collect();
    Ok((out, r))
}

/// Checks that two tensors share a dtype (ONNX's type constraint `T`).
pub fn same_dtype(a: &Tensor, b: &Tensor) -> Result<DType> {
    if a.dtype() != b.dtype() {
        bail!(
            "inputs have different element types: {} and {}",
            a.dtype(),
            b.dtype()
        );
    }
    Ok(a.dtype())
}

fn zip_same<T: Elem>(a: &Tensor, b: &Tensor, f: impl Fn(T, T) -> T) -> Result<Tensor> {
    let x = a.as_slice::<T>().expect("dtype checked");
    let y = b
        .as_slice::<T>()
        .ok_or_else(|| Error::invalid("input element types differ"))?;
    let (shape, v) = zip_broadcast(x, a.shape(), y, b.shape(), f)?;
    Ok(Tensor::new(shape, T::wrap(v)))
}

/// A broadcasting binary op: floats go through `ff` in `f64`, integers
/// through `fi` in `i128` (wrapped back into their type); bool is rejected.
pub fn binary_numeric(
    a: &Tensor,
    b: &Tensor,
    ff: impl Fn(f64, f64) -> f64,
    fi: impl Fn(i128, i128) -> Result<i128>,
) -> Result<Tensor> {
    let dt = same_dtype(a, b)?;
    if dt.is_float() {
        macro_rules! go {
            ($t:ty) => {
                zip_same::<$t>(a, b, |x, y| <$t>::from_f64(ff(x.to_f64(), y.to_f64())))
            };
        }
        return match dt {
            DType::F32 => go!(f32),
            DType::F64 => go!(f64),
            DType::F16 => go!(half::f16),
            _ => go!(half::bf16),
        };
    }
    if dt == DType::Bool {
        bail!("this op does not accept bool inputs");
    }
    // Integer path: errors (division by zero) surface after the loop.
    let err = std::cell::Cell::new(None);
    let g = |x: i128, y: i128| match fi(x, y) {
        Ok(v) => v,
        Err(e) => {
            err.set(Some(e));
            0
        }
    };
    let out = crate::with_data!(a.data(), x => zip_same_int(x, a.shape(), b, &g)?);
    match err.into_inner() {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// A broadcasting comparison producing bool.
pub fn compare(
    a: &Tensor,
    b: &Tensor,
    ff: impl Fn(f64, f64) -> bool,
    fi: impl Fn(i128, i128) -> bool,
) -> Result<Tensor> {
    let dt = same_dtype(a, b)?;
    let float = dt.is_float();
    crate::with_data!(a.data(), x => zip_typed(x, a.shape(), b, |p, q| {
        if float { ff(p.to_f64(), q.to_f64()) } else { fi(p.to_i128(), q.to_i128()) }
    }))
}

/// Integer zip that wraps results back into the element type `T`.
fn zip_same_int<T: Elem>(
    x: &[T],
    xsh: &[usize],
    b: &Tensor,
    g: &impl Fn(i128, i128) -> i128,
) -> Result<Tensor> {
    let y = b
        .as_slice::<T>()
        .ok_or_else(|| Error::invalid("input element types differ"))?;
    let (shape, v) = zip_broadcast(x, xsh, y, b.shape(), |p, q| {
        T::from_i128(g(p.to_i128(), q.to_i128()))
    })?;
    Ok(Tensor::new(shape, T::wrap(v)))
}

/// Zips `x` with `b`'s elements of the same type `T` into a tensor of `R`.
fn zip_typed<T: Elem, R>(
    x: &[T],
    xsh: &[usize],
    b: &Tensor,
    f: impl Fn(T, T) -> R,
) -> Result<Tensor>
where
    Vec<R>: crate::tensor::IntoData,
{
    let y = b
        .as_slice::<T>()
        .ok_or_else(|| Error::invalid("input element types differ"))?;
    let (shape, v) = zip_broadcast(x, xsh, y, b.shape(), f)?;
    Ok(Tensor::from_vec(shape, v))
}

/// Maps a float tensor element-wise through `f` in `f64`, keeping its dtype.
pub fn map_float(t: &Tensor, f: impl Fn(f64) -> f64) -> Result<Tensor> {
    let data = match t.data() {
        Data::F32(v) => Data::F32(v.iter().map(|&x| f(x as f64) as f32).collect()),
        Data::F64(v) => Data::F64(v.iter().map(|&x| f(x)).collect()),
        Data::F16(v) => Data::F16(
            v.iter()
                .map(|x| half::f16::from_f64(f(x.to_f64())))
                .collect(),
        ),
        Data::BF16(v) => Data::BF16(
            v.iter()
                .map(|x| half::bf16::from_f64(f(x.to_f64())))
                .collect(),
        ),
        _ => bail!("expects a floating-point input, got {}", t.dtype()),
    };
    Ok(Tensor::new(t.shape().to_vec(), data))
}

/// Maps a numeric tensor element-wise: floats through `ff`, integers through `fi`.
pub fn map_numeric(
    t: &Tensor,
    ff: impl Fn(f64) -> f64,
    fi: impl Fn(i128) -> i128,
) -> Result<Tensor> {
    if t.dtype().is_float() {
        return map_float(t, ff);
    }
    if t.dtype() == DType::Bool {
        bail!("does not accept bool inputs");
    }
    let data = crate::map_data!(t.data(), v => v.iter().map(|&x| Elem::from_i128(fi(x.to_i128()))).collect());
    Ok(Tensor::new(t.shape().to_vec(), data))
}

/// Converts an input tensor's values to `usize` dimensions, rejecting negatives.
pub fn to_dims(t: &Tensor, what: &str) -> Result<Vec<usize>> {
    t.to_i64s()
        .into_iter()
        .map(|d| {
            usize::try_from(d)
                .map_err(|_| Error::invalid(format!("{what} has a negative dimension {d}")))
        })
        .collect()
}

/// Fails unless `x` has at least `min` dims (ops that index N, C, … dims).
pub fn require_rank(x: &Tensor, min: usize) -> Result<()> {
    if x.rank() < min {
        bail!(
            "expects an input of rank >= {min}, got shape {:?}",
            x.shape()
        );
    }
    Ok(())
}

/// Splits `shape` around `axis` into (outer, axis length, inner) element counts.
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// Row-major multi-index of `flat` in `shape`.
pub fn unravel(mut flat: usize, shape: &[usize], out: &mut [usize]) {
    for i in (0..shape.len()).rev() {
        let d = shape[i].max(1);
        out[i] = flat % d;
        flat /= d;
    }
}

/// `max` that propagates NaN, as ONNX `Max` and `ReduceMax` do.
pub fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// `min` that propagates NaN.
pub fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// `shape` with the dims in `axes` set to 1 (a reduction with keepdims).
pub fn keep_dims(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect()
}

/// Round half to even, as ONNX `Round` and the quantizers do.
pub fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_offsets_match_definition() {
        assert_eq!(broadcast_offsets(&[3, 1], &[3, 2]), vec![0, 0, 1, 1, 2, 2]);
        assert_eq!(broadcast_offsets(&[2], &[3, 2]), vec![0, 1, 0, 1, 0, 1]);
        assert_eq!(broadcast_offsets(&[], &[2]), vec![0, 0]);
        assert!(broadcast_shapes(&[&[2, 3], &[4, 3]]).is_err());
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(-1.5), -2.0);
        assert_eq!(norm_axis(-1, 3).unwrap(), 2);
        assert!(norm_axis(3, 3).is_err());
    }
}
