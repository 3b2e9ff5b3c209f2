//! Hadamard rotation of a linear layer's reduction axis before its
//! weight is quantized (the incoherence processing of QuIP and QuaRot).
//!
//! A few input columns with large weights set the scale of every group
//! they sit in, and the other values of those groups get few codes. With
//! `H` orthogonal, `x · Wᵀ = (x · H) · (W · H)ᵀ`: rotating the rows of
//! `W` by a Hadamard matrix spreads each column's weight over its block,
//! so groups hold values of like size and rounding loses less. The
//! layer's input is rotated the same way at run time, by a small float
//! MatMul the graph gains in front of the quantized product (one per
//! input, shared by the layers that read it, such as attention's query,
//! key and value).
//!
//! `H` is block-diagonal: Sylvester–Hadamard blocks of [`MAX_BLOCK`]
//! values or fewer, scaled by `1/√block`, so it is symmetric and its own
//! inverse, and the run-time cost is `block` multiply-adds per input
//! value (128 against the 384–1536 of each weight column of a
//! MiniLM-sized layer). Random signs, as QuIP adds, bought nothing on
//! MiniLM (3-bit cosine 0.9623 without, 0.9618 with) and would cost an
//! elementwise pass, so there are none.

use std::collections::HashMap;

use wpc_ir::quantize::Hessian;
use wpc_ir::{Attrs, DType, Dim, Graph, Node, Result, Shape, Tensor, ValueId, ValueType};

/// The largest Hadamard block: past it, a block costs more run time than
/// it buys in accuracy (on MiniLM, 3-bit cosine 0.9623 at 128 against
/// 0.9614 for the whole 384-wide axis).
pub const MAX_BLOCK: usize = 128;

/// Blocks narrower than this spread too little to be worth a MatMul.
const MIN_BLOCK: usize = 16;

/// A block-diagonal Hadamard rotation of a `k`-wide reduction axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Values per Hadamard block: a power of two dividing `k`.
    pub block: usize,
}

impl Rotation {
    /// The rotation of a `k`-wide axis: blocks of the largest power of
    /// two up to [`MAX_BLOCK`] that divides `k`; `None` where that is
    /// under 16.
    pub fn for_width(k: usize) -> Option<Rotation> {
        let block = (1usize << k.trailing_zeros().min(usize::BITS - 1)).min(MAX_BLOCK);
        (block >= MIN_BLOCK && k > 0).then_some(Rotation { block })
    }

    /// Rotates each `k`-value row of `rows` in place (`x ↦ x · H`): a
    /// fast Walsh–Hadamard transform per block. Applying it twice gives
    /// the rows back.
    pub fn rows(&self, rows: &mut [f64]) {
        let b = self.block;
        debug_assert!(rows.len().is_multiple_of(b), "rows of whole blocks");
        let norm = 1.0 / (b as f64).sqrt();
        for block in rows.chunks_exact_mut(b) {
            let mut half = 1;
            while half < b {
                for pair in block.chunks_exact_mut(2 * half) {
                    let (lo, hi) = pair.split_at_mut(half);
                    for (a, c) in lo.iter_mut().zip(hi) {
                        (*a, *c) = (*a + *c, *a - *c);
                    }
                }
                half *= 2;
            }
            block.iter_mut().for_each(|v| *v *= norm);
        }
    }

    /// [`Rotation::rows`] of a float32 weight, computed in float64.
    pub fn rotated(&self, w: &[f32]) -> Vec<f32> {
        let mut w: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
        self.rows(&mut w);
        w.into_iter().map(|v| v as f32).collect()
    }

    /// The second moments of the rotated input, `Hᵀ · S · H`, from those
    /// of the input.
    pub fn hessian(&self, s: &Hessian) -> Hessian {
        let k = s.k;
        let mut h = s.h.clone();
        // Rows, then (S is symmetric, and so is the result) columns.
        self.rows(&mut h);
        let mut t = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                t[j * k + i] = h[i * k + j];
            }
        }
        self.rows(&mut t);
        Hessian {
            k,
            h: t,
            rows: s.rows,
        }
    }

    /// The block as a `[block, block]` float32 matrix.
    fn matrix(&self) -> Tensor {
        let b = self.block;
        let norm = 1.0 / (b as f32).sqrt();
        // Sylvester's H[i][j] = (-1)^popcount(i & j).
        let h = (0..b * b)
            .map(|e| match ((e / b) & (e % b)).count_ones() % 2 {
                0 => norm,
                _ => -norm,
            })
            .collect();
        Tensor::from_vec(vec![b, b], h)
    }

    /// Adds to `g` the run-time rotation of `x` (a float32 value whose
    /// last axis is the `k`-wide reduction axis, of known rank): reshaped
    /// to blocks, multiplied by `matrix` (this rotation's block, a
    /// constant of `g`), reshaped back. Returns the rotated value; `name`
    /// prefixes the new nodes and values.
    fn insert(
        &self,
        g: &mut Graph,
        x: ValueId,
        k: usize,
        matrix: ValueId,
        name: &str,
    ) -> Result<ValueId> {
        let ty = g.value(x).ty.clone();
        let Some(dims) = ty
            .shape
            .dims()
            .filter(|d| !d.is_empty())
            .map(<[Dim]>::to_vec)
        else {
            return Err(wpc_ir::Error::new(
                wpc_ir::ErrorKind::Internal,
                format!("rotating '{}': its rank is unknown", g.value(x).name),
            ));
        };
        let lead = dims.len() - 1;
        let blocks = (k / self.block) as i64;
        // Reshape's 0 copies the input's dim, so leading dims may be symbolic.
        let spec = |last: &[i64]| {
            let v: Vec<i64> = std::iter::repeat_n(0, lead)
                .chain(last.iter().copied())
                .collect();
            Tensor::from_vec(vec![v.len()], v)
        };
        let split_shape = g.add_constant(
            &format!("{name}_blocks_shape"),
            spec(&[blocks, self.block as i64]),
        );
        let join_shape = g.add_constant(&format!("{name}_shape"), spec(&[k as i64]));
        let mut split_dims = dims[..lead].to_vec();
        split_dims.extend([Dim::Known(k / self.block), Dim::Known(self.block)]);
        let split_ty = ValueType::new(DType::F32, Shape(Some(split_dims)));
        let split = g.add_fresh_value(&format!("{name}_blocks"), split_ty.clone());
        let turned = g.add_fresh_value(&format!("{name}_blocks_rotated"), split_ty);
        let rotated = g.add_fresh_value(&format!("{name}_rotated"), ty);
        let node = |op: &str, suffix: &str, inputs: [ValueId; 2], output: ValueId| Node {
            name: format!("{name}_{suffix}"),
            op: op.into(),
            domain: String::new(),
            inputs: inputs.into_iter().map(Some).collect(),
            outputs: vec![Some(output)],
            attrs: Attrs::default(),
        };
        g.add_node(node("Reshape", "split", [x, split_shape], split))?;
        g.add_node(node("MatMul", "hadamard", [split, matrix], turned))?;
        g.add_node(node("Reshape", "join", [turned, join_shape], rotated))?;
        Ok(rotated)
    }
}

/// The run-time rotations one graph has gained: each input is rotated
/// once however many layers read it, and each block size has one matrix.
#[derive(Default)]
pub struct Rotations {
    inputs: HashMap<ValueId, ValueId>,
    matrices: HashMap<usize, ValueId>,
}

impl Rotations {
    /// `x` rotated by `r` (its last axis `k` wide), added to `g` the first
    /// time it is asked for; `name` names what is added.
    pub fn input(
        &mut self,
        g: &mut Graph,
        r: Rotation,
        x: ValueId,
        k: usize,
        name: &str,
    ) -> Result<ValueId> {
        if let Some(&rotated) = self.inputs.get(&x) {
            return Ok(rotated);
        }
        let matrix = *self
            .matrices
            .entry(r.block)
            .or_insert_with(|| g.add_constant(&format!("hadamard_{}", r.block), r.matrix()));
        let rotated = r.insert(g, x, k, matrix, name)?;
        self.inputs.insert(x, rotated);
        Ok(rotated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_the_largest_power_of_two_dividing_the_axis() {
        let block = |k| Rotation::for_width(k).map(|r| r.block);
        assert_eq!(block(384), Some(128));
        assert_eq!(block(1536), Some(128));
        assert_eq!(block(96), Some(32));
        assert_eq!(block(16), Some(16));
        assert_eq!(block(100), None);
        assert_eq!(block(24), None);
    }

    #[test]
    fn the_rotation_is_orthogonal_and_its_own_inverse() {
        let r = Rotation { block: 32 };
        let x: Vec<f64> = (0..96).map(|i| ((i * 37 % 11) as f64) - 4.5).collect();
        let mut y = x.clone();
        r.rows(&mut y);
        let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>();
        assert!((norm(&x) - norm(&y)).abs() < 1e-9 * norm(&x));
        assert!(x.iter().zip(&y).any(|(a, b)| (a - b).abs() > 0.1));
        r.rows(&mut y);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        // The fast transform is the matrix's product.
        let m = r.matrix().to_f32s();
        let mut e = vec![0.0; 32];
        e[5] = 1.0;
        r.rows(&mut e);
        for j in 0..32 {
            assert!((e[j] - f64::from(m[5 * 32 + j])).abs() < 1e-6);
        }
    }

    #[test]
    fn rotated_second_moments_are_those_of_rotated_rows() {
        let (k, n) = (32, 7);
        let x: Vec<f32> = (0..k * n)
            .map(|i| ((i * 53 % 17) as f32) * 0.25 - 2.0)
            .collect();
        let r = Rotation::for_width(k).unwrap();
        let direct = Hessian::of_rows(&r.rotated(&x), k, usize::MAX);
        let turned = r.hessian(&Hessian::of_rows(&x, k, usize::MAX));
        for (a, b) in direct.h.iter().zip(&turned.h) {
            assert!((a - b).abs() < 1e-3 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }
}
