//! Recurrent layers: `LSTM`, `GRU` and `RNN`, sharing the sequence loop
//! (directions, layouts, sequence lengths) and differing only in the cell.

use super::elementwise::float_unary_fn;
use super::params::Cell;
use super::{EvalCtx, OpDef, op};
use crate::attr::Attrs;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub(super) fn ops() -> Vec<OpDef> {
    vec![
        // Data inputs: X, sequence_lens and the initial states; weights
        // must be constants for shapes to be inferred.
        // The sequence length and batch pass through to the outputs:
        // dynamic ones are found by probing.
        op!("LSTM", |c| eval_recurrent(c, Cell::Lstm), |c| {
            super::infer::by_probing(c, &[0, 4, 5, 6])
        }),
        op!("GRU", |c| eval_recurrent(c, Cell::Gru), |c| {
            super::infer::by_probing(c, &[0, 4, 5])
        }),
        op!("RNN", |c| eval_recurrent(c, Cell::Rnn), |c| {
            super::infer::by_probing(c, &[0, 4, 5])
        }),
    ]
}

type Act = Box<dyn Fn(f64) -> f64>;

/// `out[g] = bias[g] + Σ_k x[k] · w[g, k]` for a row-major `w` of `n × x.len()`.
fn affine(x: &[f64], w: &[f64], bias: &[f64], out: &mut [f64]) {
    let k = x.len();
    for (g, o) in out.iter_mut().enumerate() {
        *o = bias[g]
            + w[g * k..(g + 1) * k]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum::<f64>();
    }
}

fn eval_recurrent(c: &EvalCtx, cell: Cell) -> Result<Vec<Tensor>> {
    let p = super::params::Recurrent::of(c.attrs())?;
    let (x, w, r) = (c.input(0)?, c.input(1)?, c.input(2)?);
    let hidden = p
        .hidden_size
        .unwrap_or(r.shape().get(2).copied().unwrap_or(0));
    let layout = usize::from(p.batch_first);
    let dirs = p.directions();
    let reverse_only = p.direction == super::params::Direction::Reverse;
    let g = cell.gates();
    let acts: Vec<Vec<Act>> = p
        .activations_per_direction(cell)?
        .iter()
        .map(|names| {
            names
                .iter()
                .map(|n| float_unary_fn(n, &Attrs::default()))
                .collect::<Result<_>>()
        })
        .collect::<Result<_>>()?;
    let clip = p.clip.map(f64::from);
    let clipf = |v: f64| clip.map_or(v, |cl| v.clamp(-cl, cl));
    let (seq, batch, input) = match (layout, x.shape()) {
        (0, [s, b, i]) => (*s, *b, *i),
        (_, [b, s, i]) => (*s, *b, *i),
        _ => bail!("{} expects a 3-D input, got {:?}", c.node.op, x.shape()),
    };
    let xv = x.to_f64s();
    let xat = |t: usize, b: usize| {
        if layout == 0 {
            (t * batch + b) * input
        } else {
            (b * seq + t) * input
        }
    };
    let (wv, rv) = (w.to_f64s(), r.to_f64s());
    if wv.len() != dirs * g * hidden * input || rv.len() != dirs * g * hidden * hidden {
        return Err(Error::invalid(format!(
            "{} weights {:?} / {:?} do not match hidden size {hidden}",
            c.node.op,
            w.shape(),
            r.shape()
        )));
    }
    let bv = c
        .opt_input(3)
        .map_or_else(|| vec![0.0; dirs * 2 * g * hidden], Tensor::to_f64s);
    let lens: Vec<usize> = match c.opt_input(4) {
        Some(t) => t
            .to_i64s()
            .iter()
            .map(|&l| super::params::sequence_length(l, seq))
            .collect::<Result<_>>()?,
        None => vec![seq; batch],
    };
    // Initial states are (dirs, batch, H), or (batch, dirs, H) with layout 1.
    let state_at = |d: usize, b: usize| {
        if layout == 0 {
            (d * batch + b) * hidden
        } else {
            (b * dirs + d) * hidden
        }
    };
    let init = |i: usize| {
        c.opt_input(i)
            .map_or_else(|| vec![0.0; dirs * batch * hidden], Tensor::to_f64s)
    };
    let (mut h, mut cst) = (init(5), init(6));
    let peep = c
        .opt_input(7)
        .map_or_else(|| vec![0.0; dirs * 3 * hidden], Tensor::to_f64s);
    let (lbr, input_forget) = (p.linear_before_reset, p.input_forget);
    let mut y = vec![0.0; seq * dirs * batch * hidden];
    let yat = |t: usize, d: usize, b: usize| {
        if layout == 0 {
            ((t * dirs + d) * batch + b) * hidden
        } else {
            ((b * seq + t) * dirs + d) * hidden
        }
    };
    let (mut xw, mut hr) = (vec![0.0; g * hidden], vec![0.0; g * hidden]);
    for d in 0..dirs {
        let act = &acts[d];
        let wd = &wv[d * g * hidden * input..(d + 1) * g * hidden * input];
        let rd = &rv[d * g * hidden * hidden..(d + 1) * g * hidden * hidden];
        let (wb, rb) = (
            &bv[d * 2 * g * hidden..(d * 2 + 1) * g * hidden],
            &bv[(d * 2 + 1) * g * hidden..(d * 2 + 2) * g * hidden],
        );
        let p = &peep[d * 3 * hidden..(d + 1) * 3 * hidden];
        let backwards = d == 1 || reverse_only;
        for b in 0..batch {
            let len = lens[b];
            let s0 = state_at(d, b);
            for step in 0..len {
                let t = if backwards { len - 1 - step } else { step };
                let hprev = h[s0..s0 + hidden].to_vec();
                affine(&xv[xat(t, b)..xat(t, b) + input], wd, wb, &mut xw);
                affine(&hprev, rd, rb, &mut hr);
                // GRU's default candidate reads the reset-gated previous
                // state r ⊙ h_prev of every unit, so the reset gates of all
                // units come first.
                let reset_state: Vec<f64> = if cell == Cell::Gru && !lbr {
                    (0..hidden)
                        .map(|q| {
                            let r = act[0](clipf(xw[hidden + q] + hr[hidden + q]));
                            r * hprev[q]
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                for k in 0..hidden {
                    let gate = |i: usize| xw[i * hidden + k] + hr[i * hidden + k];
                    let hn = match cell {
                        Cell::Rnn => act[0](clipf(gate(0))),
                        Cell::Lstm => {
                            let cp = cst[s0 + k];
                            let i = act[0](clipf(gate(0) + p[k] * cp));
                            let f = if input_forget {
                                1.0 - i
                            } else {
                                act[0](clipf(gate(2) + p[2 * hidden + k] * cp))
                            };
                            let cc = act[1](clipf(gate(3)));
                            let cn = f * cp + i * cc;
                            let o = act[0](clipf(gate(1) + p[hidden + k] * cn));
                            cst[s0 + k] = cn;
                            o * act[2](cn)
                        }
                        Cell::Gru => {
                            let z = act[0](clipf(gate(0)));
                            let rg = act[0](clipf(gate(1)));
                            let hh = if lbr {
                                xw[2 * hidden + k] + rg * hr[2 * hidden + k]
                            } else {
                                // (r ⊙ h_prev) · R_hᵀ + Rb_h.
                                let row =
                                    &rd[(2 * hidden + k) * hidden..(2 * hidden + k + 1) * hidden];
                                xw[2 * hidden + k]
                                    + rb[2 * hidden + k]
                                    + row
                                        .iter()
                                        .zip(&reset_state)
                                        .map(|(wr, rh)| wr * rh)
                                        .sum::<f64>()
                            };
                            let hc = act[1](clipf(hh));
                            (1.0 - z) * hc + z * hprev[k]
                        }
                    };
                    h[s0 + k] = hn;
                }
                let yo = yat(t, d, b);
                y[yo..yo + hidden].copy_from_slice(&h[s0..s0 + hidden]);
            }
        }
    }
    let dt = x.dtype();
    let (yshape, sshape) = if layout == 0 {
        (vec![seq, dirs, batch, hidden], vec![dirs, batch, hidden])
    } else {
        (vec![batch, seq, dirs, hidden], vec![batch, dirs, hidden])
    };
    let mut outs = vec![
        Tensor::from_f64s(dt, yshape, y),
        Tensor::from_f64s(dt, sshape.clone(), h),
    ];
    if cell == Cell::Lstm {
        outs.push(Tensor::from_f64s(dt, sshape, cst));
    }
    Ok(outs)
}
