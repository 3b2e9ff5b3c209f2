//! Integer types narrower than a byte: int4, uint4, int2 and uint2.
//!
//! wpc holds each element in a byte of its own ([`I4`] wraps an `i8` that
//! stays within -8..=7), so every kernel indexes them like int8 and a backend
//! stores them in the same words. Only ONNX files pack them: two int4 or four
//! int2 to a byte, the first element in the lowest bits, in `raw_data`, in
//! external data and in `int32_data` (one packed byte per entry). [`unpack`]
//! and [`pack`] convert between the two.
//!
//! Arithmetic wraps to the type's width like the wider integer types;
//! `Cast` from a float truncates toward zero, saturates at int32's range
//! (NaN to 0) and then wraps (ONNX's test data casts -9.0 to int4 as 7),
//! while quantization saturates to [`DType::int_range`].

use crate::dtype::DType;
use crate::tensor::{Data, Elem};

macro_rules! sub_byte {
    ($(#[$doc:meta] $name:ident($repr:ty), $bits:expr;)*) => {$(
        #[$doc]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $repr);

        impl $name {
            /// The value of `v`'s low bits, as two's complement for the
            /// signed types.
            pub fn wrapping(v: i128) -> $name {
                let unused = <$repr>::BITS - $bits;
                $name(((v as $repr) << unused) >> unused)
            }
        }

        impl Elem for $name {
            const DTYPE: DType = DType::$name;
            fn to_f64(self) -> f64 {
                self.0.into()
            }
            fn from_f64(v: f64) -> Self {
                // `as` truncates toward zero, saturates and takes NaN to
                // 0; int32's range is what every backend can saturate to.
                $name::wrapping((v as i32).into())
            }
            fn to_i128(self) -> i128 {
                self.0.into()
            }
            fn from_i128(v: i128) -> Self {
                $name::wrapping(v)
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.push(self.0 as u8)
            }
            fn slice(d: &Data) -> Option<&[Self]> {
                if let Data::$name(v) = d { Some(v) } else { None }
            }
            fn wrap(v: Vec<Self>) -> Data {
                Data::$name(v)
            }
        }
    )*};
}

sub_byte! {
    /// A signed 4-bit integer, -8..=7.
    I4(i8), 4;
    /// An unsigned 4-bit integer, 0..=15.
    U4(u8), 4;
    /// A signed 2-bit integer, -2..=1.
    I2(i8), 2;
    /// An unsigned 2-bit integer, 0..=3.
    U2(u8), 2;
}

/// The `numel` elements of a sub-byte `dtype` packed in `bytes` (ONNX's
/// layout), one byte each as wpc holds them; `None` when `dtype` is a byte
/// or wider. Bytes past the last element are ignored; missing ones read as
/// zero (the caller checks the element count against the shape).
pub fn unpack(dtype: DType, bytes: &[u8], numel: usize) -> Option<Data> {
    let bits = dtype.packed_bits()? as usize;
    let per_byte = 8 / bits;
    let codes = (0..numel.min(bytes.len() * per_byte))
        .map(|i| ((bytes[i / per_byte] >> (i % per_byte * bits)) & ((1 << bits) - 1)) as i128);
    Some(match dtype {
        DType::I4 => Data::I4(codes.map(I4::wrapping).collect()),
        DType::U4 => Data::U4(codes.map(U4::wrapping).collect()),
        DType::I2 => Data::I2(codes.map(I2::wrapping).collect()),
        DType::U2 => Data::U2(codes.map(U2::wrapping).collect()),
        _ => unreachable!("packed_bits is only set for the sub-byte types"),
    })
}

/// The bytes ONNX stores `data` of a sub-byte type in (the inverse of
/// [`unpack`]); `None` for the types a byte or wider.
pub fn pack(data: &Data) -> Option<Vec<u8>> {
    let bits = data.dtype().packed_bits()? as usize;
    let per_byte = 8 / bits;
    let mut codes = Vec::with_capacity(data.len());
    crate::with_data!(data, v => v.iter().for_each(|x| x.write_le(&mut codes)));
    let mask = (1u8 << bits) - 1;
    Some(
        codes
            .chunks(per_byte)
            .map(|chunk| {
                chunk
                    .iter()
                    .enumerate()
                    .fold(0u8, |byte, (k, &c)| byte | (c & mask) << (k * bits))
            })
            .collect(),
    )
}

/// Bytes ONNX needs for `numel` elements of `dtype`.
pub fn onnx_bytes(dtype: DType, numel: usize) -> usize {
    match dtype.packed_bits() {
        Some(bits) => (numel * bits as usize).div_ceil(8),
        None => numel * dtype.size(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_the_low_bits_as_twos_complement() {
        assert_eq!(I4::wrapping(-9), I4(7));
        assert_eq!(I4::wrapping(8), I4(-8));
        assert_eq!(U4::wrapping(-1), U4(15));
        assert_eq!(I2::wrapping(2), I2(-2));
        assert_eq!(U2::wrapping(5), U2(1));
        assert_eq!(I4::from_f64(-9.7), I4(7));
        assert_eq!(U4::from_f64(f64::NAN), U4(0));
    }

    #[test]
    fn pack_and_unpack_are_inverse_with_the_first_element_lowest() {
        let data = Data::I4(vec![I4(1), I4(-1), I4(-8)]);
        let bytes = pack(&data).unwrap();
        assert_eq!(bytes, vec![0xf1, 0x08]);
        assert_eq!(unpack(DType::I4, &bytes, 3), Some(data));
        let data = Data::U2(vec![U2(0), U2(1), U2(2), U2(3), U2(3)]);
        let bytes = pack(&data).unwrap();
        assert_eq!(bytes, vec![0b1110_0100, 0b11]);
        assert_eq!(unpack(DType::U2, &bytes, 5), Some(data));
        assert_eq!(onnx_bytes(DType::U2, 5), 2);
        assert_eq!(pack(&Data::U8(vec![1])), None);
    }
}
