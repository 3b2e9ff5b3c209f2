//! Model inputs for `wpc run` and `wpc bench`: parsing the command line's
//! `NAME=…` flags (each name at most once), and building seeded random
//! tensors of a bound shape.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use wpc_ir::{DType, Tensor};

use crate::binding::Sizes;

/// Where one input comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum InputSource {
    File(PathBuf),
    Random,
}

/// Parses `NAME=FILE.npy` or `NAME=random`.
pub fn parse_input(s: &str) -> Result<(String, InputSource)> {
    let (name, src) = s
        .split_once('=')
        .with_context(|| format!("--input '{s}' must look like NAME=FILE.npy or NAME=random"))?;
    let src = if src == "random" {
        InputSource::Random
    } else {
        InputSource::File(PathBuf::from(src))
    };
    Ok((name.to_string(), src))
}

/// Parses `SYMBOL=N` or `SYMBOL=MIN..MAX`.
pub fn parse_dim(s: &str) -> Result<(String, Sizes)> {
    let (name, v) = s
        .split_once('=')
        .with_context(|| format!("--dim '{s}' must look like SYMBOL=N or SYMBOL=MIN..MAX"))?;
    let sizes = Sizes::parse(v).map_err(|why| anyhow::anyhow!("--dim {name}={v}: {why}"))?;
    Ok((name.to_string(), sizes))
}

/// Parses `NAME=D0xD1x...` (`NAME=` alone is a scalar).
pub fn parse_shape(s: &str) -> Result<(String, Vec<usize>)> {
    let (name, dims) = s
        .split_once('=')
        .with_context(|| format!("--input-shape '{s}': expected NAME=D0xD1..."))?;
    if dims.trim().is_empty() {
        return Ok((name.to_string(), Vec::new()));
    }
    let dims = dims
        .split('x')
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--input-shape '{s}': sizes must be integers, e.g. x=1x3x224"))?;
    Ok((name.to_string(), dims))
}

/// Parses every `flag` value with `parse`, refusing a name given twice
/// (the last would silently win otherwise).
pub fn parse_unique<T>(
    flag: &str,
    values: &[String],
    parse: impl Fn(&str) -> Result<(String, T)>,
) -> Result<Vec<(String, T)>> {
    let mut out: Vec<(String, T)> = Vec::with_capacity(values.len());
    for v in values {
        let (name, value) = parse(v)?;
        if out.iter().any(|(n, _)| *n == name) {
            bail!("{flag} {name} is given twice; give each name once");
        }
        out.push((name, value));
    }
    Ok(out)
}

/// `--dim` values as a map, each symbol at most once.
pub fn parse_dims(values: &[String]) -> Result<HashMap<String, Sizes>> {
    Ok(parse_unique("--dim", values, parse_dim)?
        .into_iter()
        .collect())
}

/// Bytes per element of the wide values a random tensor of `dtype` is
/// first made as.
fn staging_bytes(dtype: DType) -> usize {
    if dtype.is_float() || dtype == DType::Bool {
        std::mem::size_of::<f64>()
    } else {
        std::mem::size_of::<i128>()
    }
}

/// A random tensor of `dtype` and `shape` for input `name` (floats
/// uniform in [-1, 1), integers in [0, 10), bools fair); refused before
/// allocating when the machine lacks the memory.
pub fn random_tensor(
    name: &str,
    dtype: DType,
    shape: Vec<usize>,
    rng: &mut ChaCha8Rng,
) -> Result<Tensor> {
    crate::memory::check(
        &format!(
            "random input '{name}' of shape {shape:?} ({})",
            dtype.name()
        ),
        // The values are made as f64 (floats, bools) or i128 (integers)
        // and then converted: both copies are alive at the peak.
        crate::memory::tensor_bytes(&shape, dtype.size() + staging_bytes(dtype)),
    )?;
    let n: usize = shape.iter().product();
    let unit = |rng: &mut ChaCha8Rng| (rng.next_u32() >> 8) as f64 / (1u32 << 24) as f64;
    Ok(if dtype.is_float() {
        Tensor::from_f64s(
            dtype,
            shape,
            (0..n).map(|_| unit(rng) * 2.0 - 1.0).collect::<Vec<_>>(),
        )
    } else if dtype == DType::Bool {
        Tensor::from_f64s(
            dtype,
            shape,
            (0..n)
                .map(|_| f64::from(rng.next_u32() & 1))
                .collect::<Vec<_>>(),
        )
    } else {
        Tensor::from_i128s(
            dtype,
            shape,
            (0..n)
                .map(|_| i128::from(rng.next_u32() % 10))
                .collect::<Vec<_>>(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_given_twice_are_refused() {
        let e = parse_unique(
            "--input",
            &["x=a.npy".into(), "x=random".into()],
            parse_input,
        )
        .unwrap_err();
        assert!(e.to_string().contains("--input x is given twice"), "{e}");
        assert_eq!(parse_shape("x=1x3").unwrap().1, [1, 3]);
        assert_eq!(parse_shape("s=").unwrap().1, Vec::<usize>::new());
        assert!(parse_shape("x=1xa").is_err());
    }
}
