//! Parameters of the quantization ops.

use crate::attr::Attrs;
use crate::error::Result;

/// `QuantizeLinear` and `DequantizeLinear`.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantization {
    /// The axis of per-axis (or blocked) parameters; negative from the end.
    pub axis: i64,
    /// Elements per parameter along `axis` (0: per tensor or per axis).
    pub block_size: usize,
}

impl Quantization {
    pub fn of(a: &Attrs) -> Result<Quantization> {
        let block = a.int("block_size", 0)?;
        if block < 0 {
            bail!("block_size must not be negative, got {block}");
        }
        Ok(Quantization {
            axis: a.int("axis", 1)?,
            block_size: block as usize,
        })
    }
}
