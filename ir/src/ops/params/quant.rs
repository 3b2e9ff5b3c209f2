//! Parameters of the quantization ops.

use crate::attr::{Attr, Attrs};
use crate::error::Result;

/// `QuantizeLinear` and `DequantizeLinear`.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantization {
    /// The axis of per-axis (or blocked) parameters; negative from the end.
    pub axis: i64,
    /// Elements per parameter along `axis` (0: per tensor or per axis).
    pub block_size: usize,
    /// The `output_dtype` attribute (opset 21; 0 where absent): the
    /// ONNX element type of the output.
    pub output_dtype: i64,
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
            output_dtype: a.int("output_dtype", 0)?,
        })
    }
}

/// `com.microsoft` `MatMulNBits`: `A · Bᵀ` with `B` (`[N, K]`) stored as
/// packed codes (see [`crate::packed`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatMulNBits {
    pub k: usize,
    pub n: usize,
    pub bits: u32,
    pub block_size: usize,
}

impl MatMulNBits {
    pub fn of(a: &Attrs) -> Result<MatMulNBits> {
        let (k, n) = (a.int("K", 0)?, a.int("N", 0)?);
        if k <= 0 || n <= 0 {
            bail!("MatMulNBits needs positive K and N attributes, got K={k}, N={n}");
        }
        let p = MatMulNBits {
            k: k as usize,
            n: n as usize,
            bits: checked_bits(a.int("bits", 4)?)?,
            block_size: checked_block(a.int("block_size", 0)?)?,
        };
        Ok(p)
    }

    /// Where its codes are.
    pub fn layout(&self) -> crate::packed::Layout {
        crate::packed::Layout::blocked(self.n, self.k, self.bits, self.block_size)
    }

    /// The attributes a node of these parameters carries.
    pub fn attrs(&self) -> Attrs {
        let mut a = Attrs::default();
        a.insert("K", Attr::Int(self.k as i64));
        a.insert("N", Attr::Int(self.n as i64));
        a.insert("bits", Attr::Int(i64::from(self.bits)));
        a.insert("block_size", Attr::Int(self.block_size as i64));
        a
    }
}

/// `com.microsoft` `GatherBlockQuantized`: rows of a packed table
/// gathered and dequantized (embedding lookups). wpc takes the form
/// embeddings use: a 2-D `uint8` table gathered along axis 0, quantized
/// along its rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GatherBlockQuantized {
    pub bits: u32,
    pub block_size: usize,
}

impl GatherBlockQuantized {
    pub fn of(a: &Attrs) -> Result<GatherBlockQuantized> {
        let (gather, quantize) = (a.int("gather_axis", 0)?, a.int("quantize_axis", 1)?);
        if gather != 0 || !(quantize == 1 || quantize == -1) {
            return Err(crate::Error::unsupported(format!(
                "GatherBlockQuantized with gather_axis {gather} and quantize_axis {quantize} \
                 (wpc takes a 2-D table gathered along axis 0 and quantized along axis 1)"
            )));
        }
        Ok(GatherBlockQuantized {
            bits: checked_bits(a.int("bits", 4)?)?,
            block_size: checked_block(a.int("block_size", 128)?)?,
        })
    }

    /// The attributes a node of these parameters carries (the axes
    /// wpc takes are the defaults).
    pub fn attrs(&self) -> Attrs {
        let mut a = Attrs::default();
        a.insert("bits", Attr::Int(i64::from(self.bits)));
        a.insert("block_size", Attr::Int(self.block_size as i64));
        a
    }

    /// Where the codes of a `[rows, row_bytes]` table are.
    pub fn layout(&self, rows: usize, row_bytes: usize) -> Result<crate::packed::Layout> {
        let bits = self.bits as usize;
        if !(row_bytes * 8).is_multiple_of(bits) {
            bail!("a row of {row_bytes} bytes is not a whole number of {bits}-bit codes");
        }
        Ok(crate::packed::Layout {
            rows,
            k: row_bytes * 8 / bits,
            bits: self.bits,
            block: self.block_size,
            row_bytes,
        })
    }
}

fn checked_bits(bits: i64) -> Result<u32> {
    if !(2..=8).contains(&bits) {
        bail!("bits must be 2 to 8, got {bits}");
    }
    Ok(bits as u32)
}

fn checked_block(block: i64) -> Result<usize> {
    if block < 16 || (block as u64).count_ones() != 1 {
        bail!("block_size must be a power of two of 16 or more, got {block}");
    }
    Ok(block as usize)
}
