//! Element types of tensors and their ONNX codes.

use std::fmt;

/// The element type of a tensor.
///
/// Covers every type the reference interpreter computes with. The integer
/// types narrower than a byte (int4, uint4, int2, uint2) are held one element
/// per byte inside wpc, like int8 and uint8; only ONNX files pack them (see
/// [`crate::subbyte`]). wpc's own quantized weights use the packed formats of
/// [`crate::packed`] instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    Bool,
    I4,
    U4,
    I2,
    U2,
}

impl DType {
    /// Every dtype, in a stable order.
    pub const ALL: [DType; 17] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::F64,
        DType::I8,
        DType::U8,
        DType::I16,
        DType::U16,
        DType::I32,
        DType::U32,
        DType::I64,
        DType::U64,
        DType::Bool,
        DType::I4,
        DType::U4,
        DType::I2,
        DType::U2,
    ];

    /// The dtype with the given `TensorProto.DataType` code, if wpc supports it.
    pub fn from_onnx(code: i32) -> Option<DType> {
        Some(match code {
            1 => DType::F32,
            2 => DType::U8,
            3 => DType::I8,
            4 => DType::U16,
            5 => DType::I16,
            6 => DType::I32,
            7 => DType::I64,
            9 => DType::Bool,
            10 => DType::F16,
            11 => DType::F64,
            12 => DType::U32,
            13 => DType::U64,
            16 => DType::BF16,
            21 => DType::U4,
            22 => DType::I4,
            25 => DType::U2,
            26 => DType::I2,
            _ => return None,
        })
    }

    /// This dtype's `TensorProto.DataType` code.
    pub fn onnx_code(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::U8 => 2,
            DType::I8 => 3,
            DType::U16 => 4,
            DType::I16 => 5,
            DType::I32 => 6,
            DType::I64 => 7,
            DType::Bool => 9,
            DType::F16 => 10,
            DType::F64 => 11,
            DType::U32 => 12,
            DType::U64 => 13,
            DType::BF16 => 16,
            DType::U4 => 21,
            DType::I4 => 22,
            DType::U2 => 25,
            DType::I2 => 26,
        }
    }

    /// The ONNX name of a `TensorProto.DataType` code, for error messages
    /// about types wpc does not support.
    pub fn onnx_code_name(code: i32) -> &'static str {
        match code {
            0 => "undefined",
            8 => "string",
            14 => "complex64",
            15 => "complex128",
            17 => "float8e4m3fn",
            18 => "float8e4m3fnuz",
            19 => "float8e5m2",
            20 => "float8e5m2fnuz",
            23 => "float4e2m1",
            24 => "float8e8m0",
            27 => "float6e2m3",
            28 => "float6e3m2",
            c => DType::from_onnx(c).map_or("unknown", DType::name),
        }
    }

    /// The lower-case ONNX / numpy style name (`float32`, `int64`, …).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F64 => "float64",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::I16 => "int16",
            DType::U16 => "uint16",
            DType::I32 => "int32",
            DType::U32 => "uint32",
            DType::I64 => "int64",
            DType::U64 => "uint64",
            DType::Bool => "bool",
            DType::I4 => "int4",
            DType::U4 => "uint4",
            DType::I2 => "int2",
            DType::U2 => "uint2",
        }
    }

    /// Bytes per element as wpc holds it (one for the sub-byte types).
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::I8 | DType::U8 => 1,
            DType::I4 | DType::U4 | DType::I2 | DType::U2 => 1,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    /// True for the floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
    }

    /// True for the signed and unsigned integer types.
    pub fn is_int(self) -> bool {
        !self.is_float() && self != DType::Bool
    }

    /// True for the unsigned integer types.
    pub fn is_unsigned(self) -> bool {
        matches!(
            self,
            DType::U8 | DType::U16 | DType::U32 | DType::U64 | DType::U4 | DType::U2
        )
    }

    /// Bits per element where ONNX packs several into a byte (int4, uint4:
    /// 4; int2, uint2: 2); `None` for the types a byte or more wide.
    pub fn packed_bits(self) -> Option<u32> {
        match self {
            DType::I4 | DType::U4 => Some(4),
            DType::I2 | DType::U2 => Some(2),
            _ => None,
        }
    }

    /// The least and greatest value of an integer type: what quantizing to it
    /// saturates to. `None` for floats and bool. (64-bit bounds are rounded
    /// to the nearest `f64`.)
    pub fn int_range(self) -> Option<(f64, f64)> {
        let (lo, hi): (i64, u64) = match self {
            DType::I2 => (-2, 1),
            DType::U2 => (0, 3),
            DType::I4 => (-8, 7),
            DType::U4 => (0, 15),
            DType::I8 => (i8::MIN.into(), i8::MAX as u64),
            DType::U8 => (0, u8::MAX.into()),
            DType::I16 => (i16::MIN.into(), i16::MAX as u64),
            DType::U16 => (0, u16::MAX.into()),
            DType::I32 => (i32::MIN.into(), i32::MAX as u64),
            DType::U32 => (0, u32::MAX.into()),
            DType::I64 => (i64::MIN, i64::MAX as u64),
            DType::U64 => (0, u64::MAX),
            DType::F32 | DType::F16 | DType::BF16 | DType::F64 | DType::Bool => return None,
        };
        Some((lo as f64, hi as f64))
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
