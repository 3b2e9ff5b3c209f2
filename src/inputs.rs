//! Model inputs for `wpc run`: `.npy` files, or seeded random tensors of the
//! declared shape with symbolic dims bound by `--dim`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use wpc_ir::{DType, Dim, Model, Tensor, ValueType};

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

/// Parses `SYMBOL=VALUE`.
pub fn parse_dim(s: &str) -> Result<(String, usize)> {
    let (name, v) = s
        .split_once('=')
        .with_context(|| format!("--dim '{s}' must look like SYMBOL=VALUE"))?;
    Ok((
        name.to_string(),
        v.parse()
            .with_context(|| format!("--dim {name}: '{v}' is not a size"))?,
    ))
}

/// A random tensor of `ty` (floats uniform in [-1, 1), integers in [0, 10),
/// bools fair), with symbols bound from `dims`.
pub fn random_tensor(
    name: &str,
    ty: &ValueType,
    dims: &HashMap<String, usize>,
    rng: &mut ChaCha8Rng,
) -> Result<Tensor> {
    let dtype = ty
        .dtype
        .with_context(|| format!("input '{name}' has no declared element type"))?;
    let decl = ty
        .shape
        .dims()
        .with_context(|| format!("input '{name}' has no declared shape; pass a .npy file"))?;
    let shape: Vec<usize> = decl
        .iter()
        .map(|d| match d {
            Dim::Known(n) => Ok(*n),
            Dim::Symbol(s) => dims.get(s).copied().with_context(|| {
                format!("input '{name}' has symbolic dim '{s}': bind it with --dim {s}=N")
            }),
            Dim::Unknown => bail!("input '{name}' has a dim of unknown size; pass a .npy file"),
        })
        .collect::<Result<_>>()?;
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

/// The model's inputs with their declared types, in order.
pub fn declared_inputs(model: &Model) -> Vec<(String, ValueType)> {
    let g = &model.graph;
    g.inputs
        .iter()
        .map(|&i| (g.value(i).name.clone(), g.value(i).ty.clone()))
        .collect()
}

/// Builds every input in `declared` from the given sources; each needs one.
pub fn gather_inputs(
    declared: &[(String, ValueType)],
    given: &[(String, InputSource)],
    dims: &HashMap<String, usize>,
    seed: u64,
) -> Result<HashMap<String, Tensor>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = HashMap::new();
    for (name, src) in given {
        let (_, ty) = declared.iter().find(|(n, _)| n == name).with_context(|| {
            let names: Vec<_> = declared.iter().map(|(n, _)| n.as_str()).collect();
            format!(
                "the model has no input '{name}' (its inputs: {})",
                names.join(", ")
            )
        })?;
        let t = match src {
            InputSource::File(p) => crate::npy::read(p)?,
            InputSource::Random => random_tensor(name, ty, dims, &mut rng)?,
        };
        out.insert(name.clone(), t);
    }
    for (name, ty) in declared {
        if !out.contains_key(name) {
            bail!(
                "input '{name}' ({}) was not given: pass --input {name}=FILE.npy or --input {name}=random",
                ty.shape
            );
        }
    }
    Ok(out)
}
