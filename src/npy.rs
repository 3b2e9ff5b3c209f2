//! Reading and writing NumPy `.npy` files (format versions 1–3), the tensor
//! interchange format of `wpc run`.
//!
//! Written by hand rather than with a crate because the format is a short
//! header plus raw little-endian data, and wpc needs bool and float16, which
//! the available crates handle awkwardly.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use wpc_ir::tensor::Elem;
use wpc_ir::{DType, Tensor};

const MAGIC: &[u8] = b"\x93NUMPY";

fn descr(dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::F16 => "<f2",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::I16 => "<i2",
        DType::U16 => "<u2",
        DType::I32 => "<i4",
        DType::U32 => "<u4",
        DType::I64 => "<i8",
        DType::U64 => "<u8",
        DType::Bool => "|b1",
        DType::BF16 => bail!("NumPy has no bfloat16 dtype; cast the tensor to float32 first"),
        DType::I4 | DType::U4 | DType::I2 | DType::U2 => {
            bail!("NumPy has no {dtype} dtype; cast the tensor to int8 or uint8 (or float32) first")
        }
    })
}

fn dtype_of(descr: &str) -> Result<DType> {
    let d = descr.trim_start_matches(['<', '|', '=']);
    Ok(match d {
        "f4" => DType::F32,
        "f8" => DType::F64,
        "f2" => DType::F16,
        "i1" => DType::I8,
        "u1" => DType::U8,
        "i2" => DType::I16,
        "u2" => DType::U16,
        "i4" => DType::I32,
        "u4" => DType::U32,
        "i8" => DType::I64,
        "u8" => DType::U64,
        "b1" => DType::Bool,
        _ => bail!(
            "unsupported .npy dtype '{descr}' (big-endian, strings and objects are not supported)"
        ),
    })
}

/// The value of `key` in the header's Python dict literal.
fn header_field<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .with_context(|| format!("header has no '{key}'"))?;
    let rest = header[at + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')
        .context("malformed header")?
        .trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else {
        rest.find([',', '}'])
    };
    Ok(rest[..end.context("malformed header")?].trim())
}

/// Reads a `.npy` file into a tensor.
pub fn read(path: &Path) -> Result<Tensor> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&bytes).with_context(|| format!("{} is not a valid .npy file", path.display()))
}

fn parse(bytes: &[u8]) -> Result<Tensor> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        bail!("missing the NumPy magic bytes");
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                bail!("truncated header");
            }
            (u32::from_le_bytes(bytes[8..12].try_into()?) as usize, 12)
        }
        v => bail!("unsupported format version {v}"),
    };
    let header = std::str::from_utf8(bytes.get(start..start + hlen).context("truncated header")?)?;
    let dtype = dtype_of(header_field(header, "descr")?.trim_matches(['\'', '"']))?;
    if header_field(header, "fortran_order")? != "False" {
        bail!("Fortran-ordered arrays are not supported");
    }
    let shape: Vec<usize> = header_field(header, "shape")?
        .trim_matches(['(', ')'])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .with_context(|| format!("bad dimension '{s}'"))
        })
        .collect::<Result<_>>()?;
    let data = &bytes[start + hlen..];
    let n: usize = shape.iter().product();
    if data.len() != n * dtype.size() {
        bail!(
            "holds {} data bytes, shape {shape:?} of {dtype} needs {}",
            data.len(),
            n * dtype.size()
        );
    }
    let proto = wpc_ir::onnx::proto::TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: dtype.onnx_code(),
        raw_data: data.to_vec(),
        ..Default::default()
    };
    Ok(wpc_ir::onnx::decode_tensor(&proto, None)?)
}

/// Writes a tensor as a version-1 `.npy` file.
pub fn write(path: &Path, t: &Tensor) -> Result<()> {
    let shape = match t.shape() {
        [d] => format!("({d},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        descr(t.dtype())?
    );
    // Pad so the data starts on a 64-byte boundary, ending with a newline.
    let total = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    header.push('\n');
    let mut out = Vec::with_capacity(total + 64 + t.len() * t.dtype().size());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    wpc_ir::with_data!(t.data(), v => v.iter().for_each(|x| x.write_le(&mut out)));
    fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_numpy_dtype() {
        let dir = tempfile::tempdir().unwrap();
        for dt in DType::ALL {
            let t = Tensor::from_f64s(dt, vec![2, 3], (0..6).map(|i| i as f64 % 2.0));
            let p = dir.path().join(format!("{dt}.npy"));
            if dt == DType::BF16 || dt.packed_bits().is_some() {
                let err = write(&p, &t).unwrap_err().to_string();
                assert!(err.contains("NumPy has no"), "{err}");
                assert!(!p.exists());
                continue;
            }
            write(&p, &t).unwrap();
            assert_eq!(read(&p).unwrap(), t, "{dt}");
        }
        let scalar = Tensor::scalar(3.5f32);
        write(&dir.path().join("s.npy"), &scalar).unwrap();
        assert_eq!(read(&dir.path().join("s.npy")).unwrap(), scalar);
        assert!(parse(b"not numpy at all").is_err());
    }
}
