//! Parameters of `Attention` and `RotaryEmbedding`.

use crate::attr::Attrs;
use crate::error::Result;

/// ONNX `Attention` (opset 23/24).
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    /// Head counts of Q and of K/V, given for 3-D inputs (B, S, H·D).
    pub q_num_heads: Option<usize>,
    pub kv_num_heads: Option<usize>,
    /// The scale of Q·Kᵀ; `None`: 1/√(head size).
    pub scale: Option<f32>,
    /// Scores become softcap · tanh(score / softcap) when positive.
    pub softcap: f32,
    pub is_causal: bool,
    /// Which intermediate scores the optional `qk_matmul_output` holds,
    /// 0 to 3 (before and after masking and softcap, or the softmax).
    pub qk_matmul_output_mode: u8,
    /// Keys visible before and after each query (`None`: unlimited).
    pub left_window: Option<usize>,
    pub right_window: Option<usize>,
}

impl Attention {
    pub fn of(a: &Attrs) -> Result<Attention> {
        let heads = |name: &str| -> Result<Option<usize>> {
            match a.opt_int(name)? {
                Some(n) if n < 1 => bail!("Attention's {name} must be positive, got {n}"),
                n => Ok(n.map(|n| n as usize)),
            }
        };
        let window = |name: &str| -> Result<Option<usize>> {
            match a.int(name, -1)? {
                n if n < -1 => bail!("Attention's {name} must be -1 (unlimited) or more, got {n}"),
                -1 => Ok(None),
                n => Ok(Some(n as usize)),
            }
        };
        let mode = a.int("qk_matmul_output_mode", 0)?;
        if !(0..=3).contains(&mode) {
            bail!("Attention's qk_matmul_output_mode must be 0 to 3, got {mode}");
        }
        Ok(Attention {
            q_num_heads: heads("q_num_heads")?,
            kv_num_heads: heads("kv_num_heads")?,
            scale: a.opt_float("scale")?,
            softcap: a.float("softcap", 0.0)?,
            is_causal: a.int("is_causal", 0)? != 0,
            qk_matmul_output_mode: mode as u8,
            left_window: window("left_window_size")?,
            right_window: window("right_window_size")?,
        })
    }

    /// The head counts of 3-D Q and K/V, which the attributes must give.
    pub fn heads_3d(&self) -> Result<(usize, usize)> {
        match (self.q_num_heads, self.kv_num_heads) {
            (Some(q), Some(kv)) => Ok((q, kv)),
            _ => bail!("3-D Attention needs q_num_heads and kv_num_heads"),
        }
    }

    /// The scale of Q·Kᵀ for heads of `head_size`.
    pub fn scale_for(&self, head_size: usize) -> f64 {
        self.scale
            .map_or(1.0 / (head_size as f64).sqrt(), f64::from)
    }
}

/// `RotaryEmbedding`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rotary {
    /// Rotate (even, odd) pairs (else the two halves).
    pub interleaved: bool,
    /// Heads of a 3-D input (B, S, heads · head size).
    pub num_heads: Option<usize>,
    /// The rotated part of each head; `None`: all of it.
    pub rotary_dim: Option<usize>,
}

impl Rotary {
    pub fn of(a: &Attrs) -> Result<Rotary> {
        let positive = |name: &str| -> Result<Option<usize>> {
            match a.int(name, 0)? {
                0 => Ok(None),
                n if n < 0 => bail!("RotaryEmbedding's {name} must not be negative, got {n}"),
                n => Ok(Some(n as usize)),
            }
        };
        Ok(Rotary {
            interleaved: a.int("interleaved", 0)? != 0,
            num_heads: positive("num_heads")?,
            rotary_dim: positive("rotary_embedding_dim")?,
        })
    }
}
