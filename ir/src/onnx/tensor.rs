//! Decoding `TensorProto`s: inline typed fields, `raw_data`, and external
//! data files (how large models store their weights beside the graph).

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use half::{bf16, f16};
use prost::Message;

use super::proto::{DATA_LOCATION_EXTERNAL, TensorProto};
use crate::dtype::DType;
use crate::error::{Error, ErrorKind, Result};
use crate::subbyte;
use crate::tensor::{Data, Tensor};

/// Decodes a tensor. `base_dir` is the model's directory, against which
/// external data locations are resolved; `None` forbids external data.
pub fn decode_tensor(t: &TensorProto, base_dir: Option<&Path>) -> Result<Tensor> {
    decode(t, base_dir).map(|(tensor, _)| tensor)
}

/// [`decode_tensor`], also returning the external data file the tensor
/// was read from, if any.
pub(crate) fn decode(
    t: &TensorProto,
    base_dir: Option<&Path>,
) -> Result<(Tensor, Option<PathBuf>)> {
    let dtype = DType::from_onnx(t.data_type).ok_or_else(|| {
        Error::unsupported(format!(
            "tensor element type {} (code {}) is not supported",
            DType::onnx_code_name(t.data_type),
            t.data_type
        ))
    })?;
    if t.segment.is_some() {
        return Err(Error::unsupported("segmented tensors are not supported"));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(Error::invalid(format!(
                "negative dimension {d} in tensor shape {:?}",
                t.dims
            )));
        }
        shape.push(d as usize);
    }
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            Error::invalid(format!(
                "tensor shape {:?} overflows the address space",
                t.dims
            ))
        })?;
    let external = external_path(t, base_dir)?;
    let from_bytes = |bytes: &[u8]| -> Result<Data> {
        let want = subbyte::onnx_bytes(dtype, numel);
        match subbyte::unpack(dtype, bytes, numel) {
            // Packed elements cannot be counted from their bytes alone.
            Some(_) if bytes.len() != want => Err(Error::invalid(format!(
                "tensor of shape {:?} ({dtype}) needs {want} packed bytes but holds {}",
                t.dims,
                bytes.len()
            ))),
            Some(data) => Ok(data),
            None => Ok(Data::from_le_bytes(dtype, bytes)),
        }
    };
    let data = if let Some(path) = &external {
        from_bytes(&read_external(t, path, subbyte::onnx_bytes(dtype, numel))?)?
    } else if !t.raw_data.is_empty() {
        from_bytes(&t.raw_data)?
    } else if dtype.packed_bits().is_some() {
        // One packed byte per `int32_data` entry.
        from_bytes(&t.int32_data.iter().map(|&x| x as u8).collect::<Vec<_>>())?
    } else {
        from_typed_fields(dtype, t)
    };
    if data.len() != numel {
        return Err(Error::invalid(format!(
            "tensor of shape {:?} ({dtype}) needs {numel} elements but holds {}",
            t.dims,
            data.len()
        )));
    }
    Ok((Tensor::new(shape, data), external))
}

/// Reads a `TensorProto` serialised on its own (the `.pb` files of ONNX test data).
pub fn load_tensor_file(path: &Path) -> Result<Tensor> {
    let bytes = fs::read(path).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot read: {e}")).within(path.display().to_string())
    })?;
    let proto = TensorProto::decode(bytes.as_slice()).map_err(|e| {
        Error::new(ErrorKind::Decode, format!("not a TensorProto: {e}"))
            .within(path.display().to_string())
    })?;
    decode_tensor(&proto, path.parent()).map_err(|e| e.within(path.display().to_string()))
}

/// Where an external-data tensor's bytes are: its `location`, resolved
/// against the model's directory; `None` for a tensor held inline.
fn external_path(t: &TensorProto, base_dir: Option<&Path>) -> Result<Option<PathBuf>> {
    if t.data_location != DATA_LOCATION_EXTERNAL {
        return Ok(None);
    }
    let base = base_dir.ok_or_else(|| {
        Error::invalid("external data can only be read from a model loaded from a file")
    })?;
    let location = t
        .external_data
        .iter()
        .rfind(|e| e.key == "location")
        .ok_or_else(|| Error::invalid("external data has no 'location'"))?;
    let location = &location.value;
    let rel = Path::new(location);
    // A model must not read files outside its own directory.
    if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(Error::invalid(format!(
            "external data location '{location}' leaves the model's directory"
        )));
    }
    Ok(Some(base.join(rel)))
}

/// Reads the `want` bytes of an external-data tensor from `path`.
fn read_external(t: &TensorProto, path: &Path, want: usize) -> Result<Vec<u8>> {
    let (mut offset, mut length) = (0u64, None);
    for e in &t.external_data {
        let parse = |v: &str| {
            v.parse::<u64>().map_err(|_| {
                Error::invalid(format!("external data {} '{v}' is not a number", e.key))
            })
        };
        match e.key.as_str() {
            "offset" => offset = parse(&e.value)?,
            "length" => length = Some(parse(&e.value)?),
            _ => {}
        }
    }
    let io_err = |e: std::io::Error| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read external data file '{}': {e}", path.display()),
        )
    };
    let mut file = fs::File::open(path).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    let length = length.unwrap_or(want as u64);
    if length != want as u64 {
        return Err(Error::invalid(format!(
            "external data length {length} does not match the tensor's {want} bytes"
        )));
    }
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(Error::invalid(format!(
            "external data range {offset}..{} is past the end of '{}' ({size} bytes)",
            offset + length,
            path.display()
        )));
    }
    file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
    let mut buf = vec![0u8; length as usize];
    file.read_exact(&mut buf).map_err(io_err)?;
    Ok(buf)
}

/// The typed fields: ONNX stores all narrow integer types, bool and the
/// 16-bit floats (as raw bits) in `int32_data`.
fn from_typed_fields(dtype: DType, t: &TensorProto) -> Data {
    let i32s = &t.int32_data;
    match dtype {
        DType::F32 => Data::F32(t.float_data.clone()),
        DType::F64 => Data::F64(t.double_data.clone()),
        DType::F16 => Data::F16(i32s.iter().map(|&x| f16::from_bits(x as u16)).collect()),
        DType::BF16 => Data::BF16(i32s.iter().map(|&x| bf16::from_bits(x as u16)).collect()),
        DType::I8 => Data::I8(i32s.iter().map(|&x| x as i8).collect()),
        DType::U8 => Data::U8(i32s.iter().map(|&x| x as u8).collect()),
        DType::I16 => Data::I16(i32s.iter().map(|&x| x as i16).collect()),
        DType::U16 => Data::U16(i32s.iter().map(|&x| x as u16).collect()),
        DType::I32 => Data::I32(i32s.clone()),
        DType::Bool => Data::Bool(i32s.iter().map(|&x| x != 0).collect()),
        DType::I64 => Data::I64(t.int64_data.clone()),
        DType::U32 => Data::U32(t.uint64_data.iter().map(|&x| x as u32).collect()),
        DType::U64 => Data::U64(t.uint64_data.clone()),
        DType::I4 | DType::U4 | DType::I2 | DType::U2 => {
            unreachable!("sub-byte types are unpacked by `decode`")
        }
    }
}

/// Serialises a tensor as a `TensorProto` with `raw_data` (for writing test
/// data); sub-byte types are packed as ONNX stores them.
pub fn encode_tensor(name: &str, t: &Tensor) -> TensorProto {
    let raw = subbyte::pack(t.data()).unwrap_or_else(|| t.to_le_bytes());
    TensorProto {
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: t.dtype().onnx_code(),
        name: name.to_string(),
        raw_data: raw,
        ..TensorProto::default()
    }
}
