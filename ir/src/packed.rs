//! Packed low-bit weights: the one definition of how wpc stores 2- to
//! 8-bit integer codes, for every op that reads them (`MatMulNBits`,
//! `GatherBlockQuantized`), every backend and the quantization pass.
//!
//! # The format
//!
//! A quantized weight is `rows` rows of `k` values. Along a row, values
//! are grouped in blocks of `block` consecutive values; each (row, block)
//! has a scale `s` and a zero point `z`, and a value is `(q - z) · s` for
//! its code `q` in `0 .. 2^bits`.
//!
//! * **Codes** are a little-endian bit stream: the code of value `j` of
//!   row `r` occupies bits `[r·row_bytes·8 + j·bits, … + bits)` of the
//!   byte array, where bit `i` is bit `i mod 8` of byte `i / 8`. So at 4
//!   bits the low nibble of a byte is the even value (ONNX Runtime's
//!   `MatMulNBits` and `GatherBlockQuantized` layout), at 2 bits a byte
//!   holds four values from its low bits up, and at 3 bits codes run on
//!   across byte boundaries with no bit wasted (what makes 3-bit weights
//!   3 bits: a layout aligned to bytes or words would spend 3.2 or 4).
//!   `MatMulNBits` rows are `ceil(k / block)` blocks of
//!   `block · bits / 8` bytes (its `B` input, `[N, blocks, blob]`);
//!   `GatherBlockQuantized` rows are the data's last dim.
//! * **Scales** are one per (row, block), row-major `[rows, blocks]`, in
//!   float32 or float16.
//! * **Zero points** are either codes packed the same way, one row of
//!   `ceil(blocks · bits / 8)` bytes per weight row, or absent, meaning
//!   the middle code `2^(bits-1)` (symmetric quantization).
//!
//! WebGPU binds these bytes as `array<u32>` words (little-endian, so the
//! bit stream reads the same), with one word of padding after the codes so
//! a 3-bit code that straddles the last word boundary can always load the
//! next word; wasm reads them in place as bytes. No backend widens codes
//! to floats in memory: each dequantizes in registers as it computes.

use crate::error::Result;

/// Where the codes of a quantized weight are: `rows` rows of `k` values
/// in blocks of `block`, `bits` per code, each row `row_bytes` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub rows: usize,
    pub k: usize,
    pub bits: u32,
    pub block: usize,
    pub row_bytes: usize,
}

impl Layout {
    /// The `MatMulNBits` layout: each row whole blocks of
    /// `block · bits / 8` bytes.
    pub fn blocked(rows: usize, k: usize, bits: u32, block: usize) -> Layout {
        let blocks = k.div_ceil(block);
        Layout {
            rows,
            k,
            bits,
            block,
            row_bytes: blocks * block * bits as usize / 8,
        }
    }

    /// Blocks per row (the last one may be partial).
    pub fn blocks(&self) -> usize {
        self.k.div_ceil(self.block)
    }

    /// Bytes of all codes.
    pub fn code_bytes(&self) -> usize {
        self.rows * self.row_bytes
    }

    /// Bytes of one row of packed zero points.
    pub fn zero_point_row_bytes(&self) -> usize {
        (self.blocks() * self.bits as usize).div_ceil(8)
    }

    /// The zero point blocks take when none is given.
    pub fn default_zero_point(&self) -> u8 {
        1 << (self.bits - 1)
    }

    /// The largest code.
    pub fn max_code(&self) -> u8 {
        ((1u32 << self.bits) - 1) as u8
    }

    /// Checks that `codes` holds the codes this layout describes.
    pub fn check(&self, codes: usize) -> Result<()> {
        if !(2..=8).contains(&self.bits) {
            bail!("bits must be 2 to 8, got {}", self.bits);
        }
        if self.block < 16 || !self.block.is_power_of_two() {
            bail!(
                "block_size must be a power of two of 16 or more, got {}",
                self.block
            );
        }
        if self.row_bytes * 8 < self.k * self.bits as usize {
            bail!(
                "rows of {} bytes cannot hold {} codes of {} bits",
                self.row_bytes,
                self.k,
                self.bits
            );
        }
        if codes != self.code_bytes() {
            bail!(
                "packed codes have {codes} bytes, expected {} ({} rows of {} bytes)",
                self.code_bytes(),
                self.rows,
                self.row_bytes
            );
        }
        Ok(())
    }
}

/// Reads the `bits`-wide code at bit `at` of `bytes`.
pub fn code_at(bytes: &[u8], at: usize, bits: u32) -> u8 {
    let byte = at / 8;
    let lo = u16::from(bytes[byte]);
    let hi = bytes.get(byte + 1).map_or(0, |&b| u16::from(b));
    (((lo | hi << 8) >> (at % 8)) & ((1 << bits) - 1)) as u8
}

/// Writes `code` (`bits` wide) at bit `at` of `bytes`, which are zero there.
pub fn put_code(bytes: &mut [u8], at: usize, bits: u32, code: u8) {
    let v = u16::from(code) << (at % 8);
    bytes[at / 8] |= v as u8;
    if (at % 8) as u32 + bits > 8 {
        bytes[at / 8 + 1] |= (v >> 8) as u8;
    }
}

/// Packs one code per value, row-major `[rows, k]`, into `layout`'s bytes.
pub fn pack_codes(layout: &Layout, codes: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; layout.code_bytes()];
    for r in 0..layout.rows {
        for j in 0..layout.k {
            let at = r * layout.row_bytes * 8 + j * layout.bits as usize;
            put_code(&mut out, at, layout.bits, codes[r * layout.k + j]);
        }
    }
    out
}

/// Packs one zero point per (row, block), row-major, into rows of
/// [`Layout::zero_point_row_bytes`].
pub fn pack_zero_points(layout: &Layout, zeros: &[u8]) -> Vec<u8> {
    let (blocks, row) = (layout.blocks(), layout.zero_point_row_bytes());
    let mut out = vec![0u8; layout.rows * row];
    for (i, &z) in zeros.iter().enumerate() {
        let at = (i / blocks) * row * 8 + (i % blocks) * layout.bits as usize;
        put_code(&mut out, at, layout.bits, z);
    }
    out
}

/// How a weight's zero points are given.
#[derive(Clone, Copy, Debug)]
pub enum ZeroPoints<'a> {
    /// None: every block's is [`Layout::default_zero_point`].
    Default,
    /// Codes packed as [`pack_zero_points`] writes them.
    Packed(&'a [u8]),
    /// One float per (row, block), row-major.
    Float(&'a [f32]),
}

/// A quantized weight as the reference reads it: codes, scales and zero
/// points in the format above.
pub struct Weight<'a> {
    pub layout: Layout,
    pub codes: &'a [u8],
    pub scales: Vec<f32>,
    pub zero_points: ZeroPoints<'a>,
    /// The block of each of the `k` values where it is not `j / block`
    /// (`MatMulNBits`' `g_idx`, from act-order quantizers).
    pub groups: Option<Vec<usize>>,
}

impl Weight<'_> {
    /// The zero point of (row `r`, block `b`), as a float.
    pub fn zero_point(&self, r: usize, b: usize) -> f32 {
        let blocks = self.layout.blocks();
        match self.zero_points {
            ZeroPoints::Default => f32::from(self.layout.default_zero_point()),
            ZeroPoints::Packed(z) => {
                let at = r * self.layout.zero_point_row_bytes() * 8 + b * self.layout.bits as usize;
                f32::from(code_at(z, at, self.layout.bits))
            }
            ZeroPoints::Float(z) => z[r * blocks + b],
        }
    }

    /// Row `r` dequantized into `out` (`k` floats): one row at a time, so
    /// the reference never holds the whole weight in float.
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let l = &self.layout;
        let base = r * l.row_bytes * 8;
        for (j, v) in out[..l.k].iter_mut().enumerate() {
            let b = self.groups.as_ref().map_or(j / l.block, |g| g[j]);
            let (s, z) = (self.scales[r * l.blocks() + b], self.zero_point(r, b));
            let q = code_at(self.codes, base + j * l.bits as usize, l.bits);
            *v = (f32::from(q) - z) * s;
        }
    }
}

/// `bytes` as little-endian 32-bit words with one word of padding after
/// them: how WebGPU binds packed codes (see the module docs).
pub fn words(bytes: &[u8]) -> Vec<u32> {
    let mut w: Vec<u32> = bytes
        .chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(b)
        })
        .collect();
    w.push(0);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_at_every_width() {
        for bits in 2..=8u32 {
            let layout = Layout::blocked(3, 40, bits, 16);
            let codes: Vec<u8> = (0..3 * 40).map(|i| (i * 7 % (1 << bits)) as u8).collect();
            let packed = pack_codes(&layout, &codes);
            assert_eq!(packed.len(), 3 * 3 * 16 * bits as usize / 8);
            for r in 0..3 {
                for j in 0..40 {
                    let at = r * layout.row_bytes * 8 + j * bits as usize;
                    assert_eq!(code_at(&packed, at, bits), codes[r * 40 + j], "bits {bits}");
                }
            }
        }
    }

    #[test]
    fn four_bits_put_the_even_value_in_the_low_nibble() {
        let layout = Layout::blocked(1, 16, 4, 16);
        let codes: Vec<u8> = (0..16).collect();
        assert_eq!(pack_codes(&layout, &codes)[..2], [0x10, 0x32]);
    }

    #[test]
    fn three_bit_codes_straddle_bytes_without_waste() {
        let layout = Layout::blocked(1, 16, 3, 16);
        assert_eq!(layout.row_bytes, 6);
        let codes = vec![7u8; 16];
        assert!(pack_codes(&layout, &codes).iter().all(|&b| b == 0xff));
    }

    #[test]
    fn rows_dequantize_with_each_kind_of_zero_point() {
        let layout = Layout::blocked(1, 32, 4, 16);
        let codes = pack_codes(&layout, &[3u8; 32]);
        let zeros = pack_zero_points(&layout, &[1, 5]);
        let mut out = vec![0.0; 32];
        for (zp, expect) in [
            (ZeroPoints::Default, [-10.0, -5.0]),
            (ZeroPoints::Packed(&zeros), [4.0, -2.0]),
            (ZeroPoints::Float(&[2.5, 3.0]), [1.0, 0.0]),
        ] {
            let w = Weight {
                layout,
                codes: &codes,
                scales: vec![2.0, 1.0],
                zero_points: zp,
                groups: None,
            };
            w.row_into(0, &mut out);
            assert_eq!([out[0], out[16]], expect);
        }
    }

    #[test]
    fn words_are_little_endian_and_padded() {
        assert_eq!(words(&[1, 2, 3, 4, 5]), vec![0x0403_0201, 5, 0]);
    }
}
