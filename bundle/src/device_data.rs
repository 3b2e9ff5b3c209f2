//! Host tensors ↔ the 32-bit words WGSL buffers hold.
//!
//! WGSL storage buffers hold `f32`, `i32` and `u32` (and `f16` behind a
//! feature). Every tensor therefore lives on the device as one 32-bit word
//! per element: floats as `f32`, signed integers as `i32`, unsigned
//! integers and bools as `u32`. 64-bit integers are narrowed, and a value
//! that does not fit is an error, never a silent wrap.

use wpc_ir::{DType, Data, Tensor};

use crate::{Error, Result};

/// The 32-bit element type a tensor has on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Word {
    F32,
    I32,
    U32,
}

impl Word {
    /// The word for `dtype`; `None` for `float64`, which WGSL cannot hold
    /// (the compiler demotes it to `f32` only when asked to).
    pub fn for_dtype(dtype: DType, demote_f64: bool) -> Option<Word> {
        Some(match dtype {
            DType::F32 | DType::F16 | DType::BF16 => Word::F32,
            DType::F64 if demote_f64 => Word::F32,
            DType::F64 => return None,
            DType::I2 | DType::I4 | DType::I8 | DType::I16 | DType::I32 | DType::I64 => Word::I32,
            DType::U2 | DType::U4 | DType::U8 | DType::U16 | DType::U32 | DType::U64 => Word::U32,
            DType::Bool => Word::U32,
        })
    }

    /// The WGSL scalar type name.
    pub fn wgsl(self) -> &'static str {
        match self {
            Word::F32 => "f32",
            Word::I32 => "i32",
            Word::U32 => "u32",
        }
    }

    pub fn parse(name: &str) -> Option<Word> {
        Some(match name {
            "f32" => Word::F32,
            "i32" => Word::I32,
            "u32" => Word::U32,
            _ => return None,
        })
    }
}

/// The dtype and static shape of graph value `v`, or why a kernel backend
/// cannot compile it: a dtype or shape unknown at compile time.
pub fn static_type(g: &wpc_ir::Graph, v: wpc_ir::ValueId) -> wpc_ir::Result<(DType, Vec<usize>)> {
    let value = g.value(v);
    let shape = value.ty.shape.concrete().ok_or_else(|| {
        wpc_ir::Error::unsupported(format!(
            "the shape of '{}' is not known at compile time ({}); kernels are compiled for static shapes (bind symbols with --dim)",
            value.name, value.ty.shape
        ))
    })?;
    Ok((known_dtype(value)?, shape))
}

/// The dtype and shape of graph value `v` where sizes may be dynamic:
/// each dim a size or computed from the model's symbols. Errors name the
/// value whose dtype or shape is not known at compile time.
pub fn symbolic_type(
    g: &wpc_ir::Graph,
    v: wpc_ir::ValueId,
) -> wpc_ir::Result<(DType, Vec<wpc_ir::sym::Expr>)> {
    let value = g.value(v);
    let dims = value.ty.shape.exprs().ok_or_else(|| {
        wpc_ir::Error::unsupported(format!(
            "the shape of '{}' is not known at compile time ({})",
            value.name, value.ty.shape
        ))
    })?;
    Ok((known_dtype(value)?, dims))
}

/// [`symbolic_type`] with each dim's largest size under the model's dim
/// `ranges` (what memory is planned for): `(dtype, dims, largest)`.
/// Errors name the value and the size without an upper bound.
pub fn bounded_type(
    g: &wpc_ir::Graph,
    ranges: &std::collections::BTreeMap<String, (usize, usize)>,
    v: wpc_ir::ValueId,
) -> wpc_ir::Result<(DType, Vec<wpc_ir::sym::Expr>, Vec<usize>)> {
    let (dtype, dims) = symbolic_type(g, v)?;
    let largest = dims
        .iter()
        .map(|d| {
            largest(d, ranges).ok_or_else(|| {
                wpc_ir::Error::unsupported(format!(
                    "the size {d} of '{}' has no upper bound: give its symbols the sizes they may take with --dim SYMBOL=MIN..MAX",
                    g.value(v).name
                ))
            })
        })
        .collect::<wpc_ir::Result<Vec<usize>>>()?;
    Ok((dtype, dims, largest))
}

/// The largest value of size `e` under the dims' `ranges`.
pub fn largest(
    e: &wpc_ir::sym::Expr,
    ranges: &std::collections::BTreeMap<String, (usize, usize)>,
) -> Option<usize> {
    let (_, hi) = e.bounds(&|s| wpc_ir::graph::bounded_range(ranges, s))?;
    usize::try_from(hi).ok()
}

/// The dtype of `value`, or why a kernel backend cannot compile it.
fn known_dtype(value: &wpc_ir::Value) -> wpc_ir::Result<DType> {
    value.ty.dtype.ok_or_else(|| {
        wpc_ir::Error::unsupported(format!(
            "the dtype of '{}' is not known at compile time",
            value.name
        ))
    })
}

/// The device word of a tensor of `dtype` named `name`, or why WGSL
/// cannot hold it: float64, unless `demote_f64`.
pub fn word_of(dtype: DType, name: &str, demote_f64: bool) -> wpc_ir::Result<Word> {
    Word::for_dtype(dtype, demote_f64).ok_or_else(|| {
        wpc_ir::Error::unsupported(format!(
            "'{name}' is {dtype}, which the kernels cannot hold (no 64-bit floats); compile with --demote-f64 to compute it in float32"
        ))
    })
}

/// [`static_type`] plus the device word, or why WGSL cannot hold the
/// value: float64, unless `demote_f64`.
pub fn static_layout(
    g: &wpc_ir::Graph,
    v: wpc_ir::ValueId,
    demote_f64: bool,
) -> wpc_ir::Result<(DType, Vec<usize>, Word)> {
    let (dtype, shape) = static_type(g, v)?;
    let word = word_of(dtype, &g.value(v).name, demote_f64)?;
    Ok((dtype, shape, word))
}

/// The device words of `t`; `what` names the tensor in errors.
pub fn to_words(t: &Tensor, word: Word, what: &str) -> Result<Vec<u32>> {
    let out_of_range = |v: i128| {
        Error::Input(format!(
            "{what}: value {v} does not fit the 32-bit integers WebGPU computes with"
        ))
    };
    Ok(match (t.data(), word) {
        (Data::F32(v), _) => v.iter().map(|x| x.to_bits()).collect(),
        (Data::I32(v), _) => v.iter().map(|&x| x as u32).collect(),
        (Data::U32(v), _) => v.clone(),
        (Data::Bool(v), _) => v.iter().map(|&b| u32::from(b)).collect(),
        (_, Word::F32) => t.to_f64s().iter().map(|&x| (x as f32).to_bits()).collect(),
        (_, Word::I32) => t
            .to_i128s()
            .into_iter()
            .map(|v| {
                i32::try_from(v)
                    .map(|x| x as u32)
                    .map_err(|_| out_of_range(v))
            })
            .collect::<Result<_>>()?,
        (_, Word::U32) => t
            .to_i128s()
            .into_iter()
            .map(|v| u32::try_from(v).map_err(|_| out_of_range(v)))
            .collect::<Result<_>>()?,
    })
}

/// Little-endian bytes of [`to_words`].
pub fn to_bytes(t: &Tensor, word: Word, what: &str) -> Result<Vec<u8>> {
    Ok(to_words(t, word, what)?
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect())
}

/// The host tensor of `dtype` and `shape` whose device words are `words`.
pub fn from_words(words: &[u32], word: Word, dtype: DType, shape: Vec<usize>) -> Tensor {
    match (word, dtype) {
        (_, DType::F32) => Tensor::new(
            shape,
            Data::F32(words.iter().map(|&w| f32::from_bits(w)).collect()),
        ),
        (_, DType::I32) => Tensor::new(shape, Data::I32(words.iter().map(|&w| w as i32).collect())),
        (_, DType::U32) => Tensor::new(shape, Data::U32(words.to_vec())),
        (_, DType::Bool) => Tensor::new(shape, Data::Bool(words.iter().map(|&w| w != 0).collect())),
        (Word::F32, _) => Tensor::from_f64s(
            dtype,
            shape,
            words.iter().map(|&w| f64::from(f32::from_bits(w))),
        ),
        (Word::I32, _) => {
            Tensor::from_i128s(dtype, shape, words.iter().map(|&w| i128::from(w as i32)))
        }
        (Word::U32, _) => Tensor::from_i128s(dtype, shape, words.iter().map(|&w| i128::from(w))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_round_trips_when_it_fits_and_errors_when_not() {
        let t = Tensor::i64s(vec![3], vec![-5, 0, 2_000_000_000]);
        let w = to_words(&t, Word::I32, "x").unwrap();
        assert_eq!(from_words(&w, Word::I32, DType::I64, vec![3]), t);
        let big = Tensor::i64s(vec![1], vec![1 << 40]);
        let err = to_words(&big, Word::I32, "input 'x'")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("input 'x'") && err.contains("1099511627776"),
            "{err}"
        );
    }

    #[test]
    fn narrow_types_widen_and_come_back() {
        let t = Tensor::from_vec(vec![2], vec![-3i8, 127]);
        let w = to_words(&t, Word::I32, "x").unwrap();
        assert_eq!(from_words(&w, Word::I32, DType::I8, vec![2]), t);
        let b = Tensor::from_vec(vec![2], vec![true, false]);
        assert_eq!(to_words(&b, Word::U32, "b").unwrap(), vec![1, 0]);
    }
}
