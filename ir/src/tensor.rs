//! Dense tensors with typed storage: the values the interpreter computes.
//!
//! Each dtype keeps its own `Vec<T>`, so a tensor costs exactly its bytes and
//! kernels can work on native slices. The [`Elem`] trait lets generic kernels
//! move every type through two wide domains: `f64` for floating-point math
//! and `i128` for integer math (which holds every `u64` and `i64` exactly, so
//! wrapping and comparisons stay right for all integer types).

use half::{bf16, f16};

use crate::dtype::DType;
use crate::subbyte::{I2, I4, U2, U4};

/// An element type the interpreter stores.
pub trait Elem: Copy + PartialEq + PartialOrd + Default + std::fmt::Debug + 'static {
    const DTYPE: DType;
    fn to_f64(self) -> f64;
    /// Float to this type with ONNX `Cast` semantics (truncation toward zero,
    /// saturating; NaN to 0 for integers).
    fn from_f64(v: f64) -> Self;
    fn to_i128(self) -> i128;
    /// Integer to this type, wrapping like a two's-complement truncation.
    fn from_i128(v: i128) -> Self;
    /// Appends the little-endian bytes (ONNX's `raw_data` layout).
    fn write_le(self, out: &mut Vec<u8>);
    /// The elements of `d` when it holds this type.
    fn slice(d: &Data) -> Option<&[Self]>;
    /// Wraps a vector of this type.
    fn wrap(v: Vec<Self>) -> Data;
}

macro_rules! int_elem {
    ($($t:ty => $d:ident),*) => {$(
        impl Elem for $t {
            const DTYPE: DType = DType::$d;
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
            fn to_i128(self) -> i128 { self as i128 }
            fn from_i128(v: i128) -> Self { v as $t }
            fn write_le(self, out: &mut Vec<u8>) { out.extend_from_slice(&self.to_le_bytes()) }
            fn slice(d: &Data) -> Option<&[Self]> { if let Data::$d(v) = d { Some(v) } else { None } }
            fn wrap(v: Vec<Self>) -> Data { Data::$d(v) }
        }
    )*};
}
int_elem!(i8 => I8, u8 => U8, i16 => I16, u16 => U16, i32 => I32, u32 => U32, i64 => I64, u64 => U64);

macro_rules! float_elem {
    ($($t:ty => $d:ident, $from:expr, $to:expr);*) => {$(
        impl Elem for $t {
            const DTYPE: DType = DType::$d;
            fn to_f64(self) -> f64 { $to(self) }
            fn from_f64(v: f64) -> Self { $from(v) }
            fn to_i128(self) -> i128 { $to(self) as i128 }
            fn from_i128(v: i128) -> Self { $from(v as f64) }
            fn write_le(self, out: &mut Vec<u8>) { out.extend_from_slice(&self.to_le_bytes()) }
            fn slice(d: &Data) -> Option<&[Self]> { if let Data::$d(v) = d { Some(v) } else { None } }
            fn wrap(v: Vec<Self>) -> Data { Data::$d(v) }
        }
    )*};
}
float_elem!(
    f32 => F32, |v: f64| v as f32, |x: f32| x as f64;
    f64 => F64, |v: f64| v, |x: f64| x;
    f16 => F16, f16::from_f64, |x: f16| x.to_f64();
    bf16 => BF16, bf16::from_f64, |x: bf16| x.to_f64()
);

impl Elem for bool {
    const DTYPE: DType = DType::Bool;
    fn to_f64(self) -> f64 {
        self as u8 as f64
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn to_i128(self) -> i128 {
        self as i128
    }
    fn from_i128(v: i128) -> Self {
        v != 0
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(self as u8)
    }
    fn slice(d: &Data) -> Option<&[Self]> {
        if let Data::Bool(v) = d { Some(v) } else { None }
    }
    fn wrap(v: Vec<Self>) -> Data {
        Data::Bool(v)
    }
}

/// Typed element storage of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    F64(Vec<f64>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    I4(Vec<I4>),
    U4(Vec<U4>),
    I2(Vec<I2>),
    U2(Vec<U2>),
}

impl Data {
    /// Elements from their little-endian bytes (ONNX's `raw_data` layout;
    /// a bool is one byte, and so is each sub-byte element, which ONNX
    /// instead packs: see [`crate::subbyte::unpack`]). Trailing bytes short
    /// of an element are ignored.
    pub fn from_le_bytes(dtype: DType, b: &[u8]) -> Data {
        macro_rules! le {
            ($t:ty, $n:expr) => {
                b.chunks_exact($n)
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")))
                    .collect()
            };
        }
        match dtype {
            DType::F32 => Data::F32(le!(f32, 4)),
            DType::F64 => Data::F64(le!(f64, 8)),
            DType::F16 => Data::F16(
                b.chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DType::BF16 => Data::BF16(
                b.chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DType::I8 => Data::I8(b.iter().map(|&x| x as i8).collect()),
            DType::U8 => Data::U8(b.to_vec()),
            DType::I16 => Data::I16(le!(i16, 2)),
            DType::U16 => Data::U16(le!(u16, 2)),
            DType::I32 => Data::I32(le!(i32, 4)),
            DType::U32 => Data::U32(le!(u32, 4)),
            DType::I64 => Data::I64(le!(i64, 8)),
            DType::U64 => Data::U64(le!(u64, 8)),
            DType::Bool => Data::Bool(b.iter().map(|&x| x != 0).collect()),
            DType::I4 => Data::I4(b.iter().map(|&x| I4::wrapping(x as i8 as i128)).collect()),
            DType::U4 => Data::U4(b.iter().map(|&x| U4::wrapping(x as i128)).collect()),
            DType::I2 => Data::I2(b.iter().map(|&x| I2::wrapping(x as i8 as i128)).collect()),
            DType::U2 => Data::U2(b.iter().map(|&x| U2::wrapping(x as i128)).collect()),
        }
    }
}

/// Runs `$body` with `$v` bound to the typed vector inside a [`Data`],
/// whatever its dtype. The body is expanded once per dtype, so it may use
/// generic code that infers the element type from `$v`.
#[macro_export]
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::tensor::Data::F32($v) => $body,
            $crate::tensor::Data::F16($v) => $body,
            $crate::tensor::Data::BF16($v) => $body,
            $crate::tensor::Data::F64($v) => $body,
            $crate::tensor::Data::I8($v) => $body,
            $crate::tensor::Data::U8($v) => $body,
            $crate::tensor::Data::I16($v) => $body,
            $crate::tensor::Data::U16($v) => $body,
            $crate::tensor::Data::I32($v) => $body,
            $crate::tensor::Data::U32($v) => $body,
            $crate::tensor::Data::I64($v) => $body,
            $crate::tensor::Data::U64($v) => $body,
            $crate::tensor::Data::Bool($v) => $body,
            $crate::tensor::Data::I4($v) => $body,
            $crate::tensor::Data::U4($v) => $body,
            $crate::tensor::Data::I2($v) => $body,
            $crate::tensor::Data::U2($v) => $body,
        }
    };
}

/// Like [`with_data!`], but `$body` yields a `Vec` of the same element type
/// and the result is a [`Data`] of the same dtype.
#[macro_export]
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::tensor::Data::F32($v) => $crate::tensor::Data::F32($body),
            $crate::tensor::Data::F16($v) => $crate::tensor::Data::F16($body),
            $crate::tensor::Data::BF16($v) => $crate::tensor::Data::BF16($body),
            $crate::tensor::Data::F64($v) => $crate::tensor::Data::F64($body),
            $crate::tensor::Data::I8($v) => $crate::tensor::Data::I8($body),
            $crate::tensor::Data::U8($v) => $crate::tensor::Data::U8($body),
            $crate::tensor::Data::I16($v) => $crate::tensor::Data::I16($body),
            $crate::tensor::Data::U16($v) => $crate::tensor::Data::U16($body),
            $crate::tensor::Data::I32($v) => $crate::tensor::Data::I32($body),
            $crate::tensor::Data::U32($v) => $crate::tensor::Data::U32($body),
            $crate::tensor::Data::I64($v) => $crate::tensor::Data::I64($body),
            $crate::tensor::Data::U64($v) => $crate::tensor::Data::U64($body),
            $crate::tensor::Data::Bool($v) => $crate::tensor::Data::Bool($body),
            $crate::tensor::Data::I4($v) => $crate::tensor::Data::I4($body),
            $crate::tensor::Data::U4($v) => $crate::tensor::Data::U4($body),
            $crate::tensor::Data::I2($v) => $crate::tensor::Data::I2($body),
            $crate::tensor::Data::U2($v) => $crate::tensor::Data::U2($body),
        }
    };
}

/// Builds a [`Data`] of dtype `$dtype`, expanding `$body` once per element
/// type with `$t` naming that type.
#[macro_export]
macro_rules! build_data {
    ($dtype:expr, $t:ident => $body:expr) => {{
        use $crate::dtype::DType as D;
        use $crate::tensor::Data as X;
        match $dtype {
            D::F32 => {
                type $t = f32;
                X::F32($body)
            }
            D::F16 => {
                type $t = half::f16;
                X::F16($body)
            }
            D::BF16 => {
                type $t = half::bf16;
                X::BF16($body)
            }
            D::F64 => {
                type $t = f64;
                X::F64($body)
            }
            D::I8 => {
                type $t = i8;
                X::I8($body)
            }
            D::U8 => {
                type $t = u8;
                X::U8($body)
            }
            D::I16 => {
                type $t = i16;
                X::I16($body)
            }
            D::U16 => {
                type $t = u16;
                X::U16($body)
            }
            D::I32 => {
                type $t = i32;
                X::I32($body)
            }
            D::U32 => {
                type $t = u32;
                X::U32($body)
            }
            D::I64 => {
                type $t = i64;
                X::I64($body)
            }
            D::U64 => {
                type $t = u64;
                X::U64($body)
            }
            D::Bool => {
                type $t = bool;
                X::Bool($body)
            }
            D::I4 => {
                type $t = $crate::subbyte::I4;
                X::I4($body)
            }
            D::U4 => {
                type $t = $crate::subbyte::U4;
                X::U4($body)
            }
            D::I2 => {
                type $t = $crate::subbyte::I2;
                X::I2($body)
            }
            D::U2 => {
                type $t = $crate::subbyte::U2;
                X::U2($body)
            }
        }
    }};
}

/// Vectors that can become [`Data`].
pub trait IntoData {
    fn into_data(self) -> Data;
}

macro_rules! into_data {
    ($($t:ty => $d:ident),*) => {$(
        impl IntoData for Vec<$t> {
            fn into_data(self) -> Data { Data::$d(self) }
        }
    )*};
}
into_data!(f32 => F32, f16 => F16, bf16 => BF16, f64 => F64, i8 => I8, u8 => U8, i16 => I16,
    u16 => U16, i32 => I32, u32 => U32, i64 => I64, u64 => U64, bool => Bool, I4 => I4,
    U4 => U4, I2 => I2, U2 => U2);

impl Data {
    /// The element type.
    pub fn dtype(&self) -> DType {
        fn dt<T: Elem>(_: &[T]) -> DType {
            T::DTYPE
        }
        with_data!(self, v => dt(v))
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A dense row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Data,
}

impl Tensor {
    /// A tensor from its shape and data; the element count must match.
    pub fn new(shape: Vec<usize>, data: Data) -> Tensor {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "tensor shape {shape:?} does not match {} elements",
            data.len()
        );
        Tensor { shape, data }
    }

    /// A tensor from a typed vector.
    pub fn from_vec<T>(shape: Vec<usize>, v: Vec<T>) -> Tensor
    where
        Vec<T>: IntoData,
    {
        Tensor::new(shape, v.into_data())
    }

    /// A scalar (rank-0) tensor.
    pub fn scalar<T>(v: T) -> Tensor
    where
        Vec<T>: IntoData,
    {
        Tensor::from_vec(vec![], vec![v])
    }

    /// A tensor of `dtype` filled with zeros (false for bool).
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        Tensor::new(shape, build_data!(dtype, T => vec![T::default(); n]))
    }

    /// A tensor of `dtype` with every element converted from `f64`.
    pub fn from_f64s(dtype: DType, shape: Vec<usize>, v: impl IntoIterator<Item = f64>) -> Tensor {
        Tensor::new(
            shape,
            build_data!(dtype, T => v.into_iter().map(T::from_f64).collect()),
        )
    }

    /// A tensor of `dtype` with every element converted from `i128`.
    pub fn from_i128s(
        dtype: DType,
        shape: Vec<usize>,
        v: impl IntoIterator<Item = i128>,
    ) -> Tensor {
        Tensor::new(
            shape,
            build_data!(dtype, T => v.into_iter().map(T::from_i128).collect()),
        )
    }

    /// An `int64` tensor.
    pub fn i64s(shape: Vec<usize>, v: Vec<i64>) -> Tensor {
        Tensor::from_vec(shape, v)
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The elements' little-endian bytes (see [`Data::from_le_bytes`]).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(self.len() * self.dtype().size());
        crate::with_data!(self.data(), v => v.iter().for_each(|x| x.write_le(&mut raw)));
        raw
    }

    pub fn data(&self) -> &Data {
        &self.data
    }

    pub fn into_data(self) -> Data {
        self.data
    }

    /// The same elements under another shape with the same element count.
    pub fn reshaped(mut self, shape: Vec<usize>) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), self.len());
        self.shape = shape;
        self
    }

    /// Every element as `f64` (exact for all but the widest integers).
    pub fn to_f64s(&self) -> Vec<f64> {
        with_data!(&self.data, v => v.iter().map(|x| x.to_f64()).collect())
    }

    /// Every element as `i128`; floats are truncated.
    pub fn to_i128s(&self) -> Vec<i128> {
        with_data!(&self.data, v => v.iter().map(|x| x.to_i128()).collect())
    }

    /// Every element as `i64`, for index and shape inputs.
    pub fn to_i64s(&self) -> Vec<i64> {
        with_data!(&self.data, v => v.iter().map(|x| x.to_i128() as i64).collect())
    }

    /// Every element as `bool` (non-zero is true).
    pub fn to_bools(&self) -> Vec<bool> {
        match &self.data {
            Data::Bool(v) => v.clone(),
            _ => with_data!(&self.data, v => v.iter().map(|x| x.to_f64() != 0.0).collect()),
        }
    }

    /// The `f32` elements, converting from other types when needed.
    pub fn to_f32s(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            _ => self.to_f64s().into_iter().map(|x| x as f32).collect(),
        }
    }

    /// The tensor converted to `dtype` with ONNX `Cast` semantics.
    pub fn cast(&self, dtype: DType) -> Tensor {
        if dtype == self.dtype() {
            return self.clone();
        }
        // Float on either side goes through f64 (bool from float is x != 0,
        // NaN included); integer/bool pairs go through i128 exactly.
        let data = if dtype.is_float() || self.dtype().is_float() {
            build_data!(dtype, T => with_data!(&self.data, v => v.iter().map(|x| T::from_f64(x.to_f64())).collect()))
        } else {
            build_data!(dtype, T => with_data!(&self.data, v => v.iter().map(|x| T::from_i128(x.to_i128())).collect()))
        };
        Tensor::new(self.shape.clone(), data)
    }

    /// A new tensor whose element `i` is this tensor's element `indices[i]`.
    /// Every data-movement op (transpose, slice, gather, …) is an index map
    /// followed by this one dtype-agnostic copy.
    pub fn take(&self, shape: Vec<usize>, indices: &[usize]) -> Tensor {
        Tensor::new(
            shape,
            map_data!(&self.data, v => indices.iter().map(|&i| v[i]).collect()),
        )
    }

    /// The elements as a slice of `T`, when that is the dtype.
    pub fn as_slice<T: Elem>(&self) -> Option<&[T]> {
        T::slice(&self.data)
    }

    /// The first element as `f64`, for inputs that hold one value (a
    /// scalar or a one-element tensor); an empty tensor is an error.
    pub fn first_f64(&self) -> crate::error::Result<f64> {
        self.check_not_empty()?;
        Ok(self.get_f64(0))
    }

    /// The first element as `i64` (see [`Tensor::first_f64`]).
    pub fn first_i64(&self) -> crate::error::Result<i64> {
        self.check_not_empty()?;
        Ok(self.get_i64(0))
    }

    /// The first element as `bool` (see [`Tensor::first_f64`]).
    pub fn first_bool(&self) -> crate::error::Result<bool> {
        self.check_not_empty()?;
        Ok(self.get_f64(0) != 0.0)
    }

    fn check_not_empty(&self) -> crate::error::Result<()> {
        if self.is_empty() {
            return Err(crate::error::Error::invalid(format!(
                "expected a single value, got an empty tensor of shape {:?}",
                self.shape
            )));
        }
        Ok(())
    }

    /// Element `i` as `f64`.
    pub fn get_f64(&self, i: usize) -> f64 {
        with_data!(&self.data, v => v[i].to_f64())
    }

    /// Element `i` as `i64`.
    pub fn get_i64(&self, i: usize) -> i64 {
        with_data!(&self.data, v => v[i].to_i128() as i64)
    }
}

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cast_follows_onnx_semantics() {
        let t = Tensor::from_vec(vec![4], vec![-1.7f32, 2.5, 300.0, f32::NAN]);
        assert_eq!(t.cast(DType::I32).to_i64s(), vec![-1, 2, 300, 0]);
        assert_eq!(t.cast(DType::U8).to_i64s(), vec![0, 2, 255, 0]);
        assert_eq!(t.cast(DType::Bool).to_bools(), vec![true, true, true, true]);
        let big = Tensor::from_vec(vec![1], vec![u64::MAX]);
        assert_eq!(big.cast(DType::I64).to_i64s(), vec![-1]);
    }

    #[test]
    fn take_copies_by_index() {
        let t = Tensor::from_vec(vec![2, 2], vec![1i64, 2, 3, 4]);
        let tt = t.take(vec![2, 2], &[0, 2, 1, 3]);
        assert_eq!(tt.to_i64s(), vec![1, 3, 2, 4]);
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
    }
}
