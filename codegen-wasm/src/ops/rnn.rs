//! Recurrent layers (LSTM, GRU, RNN). Per direction, the input term
//! X·Wᵀ (+ biases) of every time step is one GEMM up front; each step
//! then multiplies the hidden state by Rᵀ (one GEMM over the batch rows)
//! and runs the cell — its gates' activations and the state update — as
//! elementwise [`Formula`]s over (batch item, hidden unit). W and R are
//! transposed and packed at compile time, so they, the biases, the
//! peepholes and the sequence lengths must be constants (other nodes run
//! the reference kernel). Items of different lengths step one by one,
//! and Y stays zero past an item's length. The batch and the sequence may
//! be dynamic (sizes from the run's table) in the time-major layout
//! without `sequence_lens`.

use walrus::ir::BinaryOp;
use walrus::{FunctionBuilder, InstrSeqBuilder, LocalId};
use wpc_ir::ops::params::{Cell, Direction, Recurrent};
use wpc_ir::{Error, ErrorKind, Result};

use super::elementwise::{Formula, Program, Regs, Term};
use super::gemm::{Gemm, Place, emit_gemm, pack_panels};
use crate::emit::{self, Arith, Fx};
use crate::lower::Ctx;
use crate::sizes::{Size, Sizes};

/// Where an operand of a cell pass lives: `base + row·stride + unit·4 +
/// offset` bytes, for batch row `row` and hidden unit `unit`.
#[derive(Clone, Copy)]
struct At {
    base: Base,
    stride: usize,
    offset: usize,
}

#[derive(Clone, Copy)]
enum Base {
    Addr(u32),
    /// A local holding the address (the current time step's rows).
    Local(LocalId),
}

impl At {
    fn rows(addr: u32, stride: usize) -> At {
        At {
            base: Base::Addr(addr),
            stride,
            offset: 0,
        }
    }

    /// Gate `g` of rows laid out gate after gate, `hidden` units each.
    fn gate(self, g: usize, hidden: usize) -> At {
        At {
            offset: self.offset + 4 * g * hidden,
            ..self
        }
    }
}

/// The shapes of one recurrent node (the steps and batch at their
/// largest where they are dynamic).
struct Dims {
    steps: usize,
    batch: usize,
    hidden: usize,
    dirs: usize,
}

/// The run's sizes a recurrent kernel steps by, computed when it starts
/// (constants where static).
struct RunSizes {
    /// Bytes of one step's rows of the input term (batch · gates · hidden).
    xw_step: Size,
    /// Bytes of one direction's state (batch · hidden).
    state: Size,
    /// Bytes of one step's rows of Y (directions · batch · hidden).
    y_step: Size,
}

/// One cell computation over every (batch row, hidden unit): its
/// program, the operands it reads and where the result goes.
struct Pass {
    program: Program,
    ins: Vec<At>,
    out: At,
}

/// Per direction, what the compile-time weights became.
struct Weights {
    /// Wᵀ packed (input × gates·hidden), and the input term's biases.
    w: u32,
    w_bias: u32,
    /// R's rows the step's first GEMM multiplies, transposed and packed.
    r: u32,
    /// Biases of that GEMM (GRU with linear_before_reset: R's).
    r_bias: Option<u32>,
    /// GRU's candidate rows of R (hidden × hidden), packed, when the
    /// candidate reads the reset-gated state.
    r_h: Option<u32>,
}

pub fn recurrent(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let cell = Cell::of_op(&ctx.node.op).ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            format!("{} is not a recurrent op", ctx.node.op),
        )
    })?;
    let p = Recurrent::of(ctx.attrs())?;
    let x = ctx.input(0)?;
    super::require_f32(ctx, &x)?;
    let (w, r) = (ctx.constant(1)?, ctx.constant(2)?);
    let gates = cell.gates();
    let (dirs, gh, input) = match w.shape() {
        &[d, gh, i] => (d, gh, i),
        s => return Err(Error::invalid(format!("{} W of shape {s:?}", ctx.node.op))),
    };
    let hidden = gh / gates;
    if r.shape() != [dirs, gh, hidden] || dirs != p.directions() {
        return Err(Error::invalid(format!(
            "{} weights {:?} / {:?} do not match",
            ctx.node.op,
            w.shape(),
            r.shape()
        )));
    }
    let (steps, batch) = if p.batch_first {
        (x.shape[1], x.shape[0])
    } else {
        (x.shape[0], x.shape[1])
    };
    if !x.is_static() && (p.batch_first || ctx.has_input(4)) {
        return Err(Error::unsupported(format!(
            "{} at dynamic sizes in the batch-first layout or with sequence_lens",
            ctx.node.op
        )));
    }
    let (steps_e, batch_e) = match p.batch_first {
        true => (x.dims[1].clone(), x.dims[0].clone()),
        false => (x.dims[0].clone(), x.dims[1].clone()),
    };
    let dims = Dims {
        steps,
        batch,
        hidden,
        dirs,
    };
    let lens = lengths(ctx, steps, batch)?;
    let bias = match ctx.has_input(3) {
        true => ctx.constant(3)?.to_f32s(),
        false => vec![0.0; dirs * 2 * gh],
    };
    let peep = match ctx.has_input(7) {
        true => Some(ctx.constant(7)?.to_f32s()),
        false => None,
    };
    let linear_before_reset = cell == Cell::Gru && p.linear_before_reset;
    let reset_first = cell == Cell::Gru && !p.linear_before_reset;
    // The step's first GEMM: every gate, except GRU's default candidate,
    // which multiplies the reset-gated state by R_h in a second GEMM.
    let rec_n = if reset_first { 2 * hidden } else { gh };
    let lanes = ctx.isa.lanes();
    let (wv, rv) = (w.to_f32s(), r.to_f32s());
    let mut weights = Vec::new();
    for d in 0..dirs {
        let wd = &wv[d * gh * input..(d + 1) * gh * input];
        let rd = &rv[d * gh * hidden..(d + 1) * gh * hidden];
        let (wb, rb) = (
            &bias[d * 2 * gh..(d * 2 + 1) * gh],
            &bias[(d * 2 + 1) * gh..(d * 2 + 2) * gh],
        );
        // R's bias joins the input term's except where the reset gate
        // scales the recurrent term (linear_before_reset).
        let w_bias: Vec<f32> = match linear_before_reset {
            true => wb.to_vec(),
            false => wb.iter().zip(rb).map(|(a, b)| a + b).collect(),
        };
        weights.push(Weights {
            w: ctx.weight(&pack_panels(&transposed(wd, gh, input), input, gh, lanes)),
            w_bias: ctx.weight(&w_bias),
            r: ctx.weight(&pack_panels(
                &transposed(&rd[..rec_n * hidden], rec_n, hidden),
                hidden,
                rec_n,
                lanes,
            )),
            r_bias: linear_before_reset.then(|| ctx.weight(rb)),
            r_h: reset_first.then(|| {
                let rows = &rd[2 * hidden * hidden..];
                ctx.weight(&pack_panels(
                    &transposed(rows, hidden, hidden),
                    hidden,
                    hidden,
                    lanes,
                ))
            }),
        });
    }
    let peep_at = peep.map(|v| ctx.weight(&v));
    let state_bytes = 4 * batch * hidden;
    let xw = ctx.scratch(4 * steps * batch * gh);
    let hr = ctx.scratch(4 * batch * rec_n);
    let hs = ctx.scratch(state_bytes);
    let cs = (cell == Cell::Lstm).then(|| ctx.scratch(state_bytes));
    let (rh, hr2) = match reset_first {
        true => (
            Some(ctx.scratch(state_bytes)),
            Some(ctx.scratch(state_bytes)),
        ),
        false => (None, None),
    };
    let (h0, c0) = (state_in(ctx, 5)?, state_in(ctx, 6)?);
    let [y, y_h, y_c] = [out_at(ctx, 0)?, out_at(ctx, 1)?, out_at(ctx, 2)?];

    // The cell's passes per direction, built before the function's locals.
    let mut fx_xwt = Vec::new();
    let mut passes = Vec::new();
    for (d, acts) in p.activations_per_direction(cell)?.iter().enumerate() {
        let xwt = ctx.fx().i32();
        fx_xwt.push(xwt);
        let xw_rows = At {
            base: Base::Local(xwt),
            stride: 4 * gh,
            offset: 0,
        };
        let hr_rows = At::rows(hr, 4 * rec_n);
        let h = At::rows(hs, 4 * hidden);
        let peep_d = peep_at.map(|a| At::rows(a, 0).gate(3 * d, hidden));
        let mut list = Vec::new();
        let clip = p.clip;
        match cell {
            Cell::Rnn => {
                let mut fm = Formula::default();
                let (a, b) = (fm.input(), fm.input());
                let sum = fm.arith(Arith::Add, a, b);
                let pre = fm.clip(sum, clip);
                fm.unary(&acts[0], pre)?;
                list.push(Pass {
                    program: fm.program(ctx),
                    ins: vec![xw_rows, hr_rows],
                    out: h,
                });
            }
            Cell::Gru => {
                let hd = hidden;
                if let (Some(rh), Some(_)) = (rh, hr2) {
                    // r ⊙ h_prev, for the candidate's second GEMM.
                    let mut fm = Formula::default();
                    let (a, b, hp) = (fm.input(), fm.input(), fm.input());
                    let r = gate(&mut fm, &acts[0], a, b, clip)?;
                    fm.arith(Arith::Mul, r, hp);
                    list.push(Pass {
                        program: fm.program(ctx),
                        ins: vec![xw_rows.gate(1, hd), hr_rows.gate(1, hd), h],
                        out: At::rows(rh, 4 * hidden),
                    });
                }
                let mut fm = Formula::default();
                let (xz, hz, hp) = (fm.input(), fm.input(), fm.input());
                let z = gate(&mut fm, &acts[0], xz, hz, clip)?;
                let mut ins = vec![xw_rows.gate(0, hd), hr_rows.gate(0, hd), h];
                let pre = match hr2 {
                    // xw_h already holds both biases; hr2 = (r ⊙ h)·R_hᵀ.
                    Some(hr2) => {
                        let (xh, rec) = (fm.input(), fm.input());
                        ins.extend([xw_rows.gate(2, hd), At::rows(hr2, 4 * hidden)]);
                        fm.arith(Arith::Add, xh, rec)
                    }
                    // h̃ = xw_h + r ⊙ (h·R_hᵀ + Rb_h).
                    None => {
                        let (xr, hrr, xh, rech) = (fm.input(), fm.input(), fm.input(), fm.input());
                        ins.extend([
                            xw_rows.gate(1, hd),
                            hr_rows.gate(1, hd),
                            xw_rows.gate(2, hd),
                            hr_rows.gate(2, hd),
                        ]);
                        let r = gate(&mut fm, &acts[0], xr, hrr, clip)?;
                        let scaled = fm.arith(Arith::Mul, r, rech);
                        fm.arith(Arith::Add, xh, scaled)
                    }
                };
                let pre = fm.clip(pre, clip);
                let cand = fm.unary(&acts[1], pre)?;
                // h = h̃ + z·(h_prev − h̃)
                let diff = fm.arith(Arith::Sub, hp, cand);
                let kept = fm.arith(Arith::Mul, z, diff);
                fm.arith(Arith::Add, cand, kept);
                list.push(Pass {
                    program: fm.program(ctx),
                    ins,
                    out: h,
                });
            }
            Cell::Lstm => {
                let c = At::rows(cs.expect("an LSTM has a cell state"), 4 * hidden);
                // Gates i, o, f, c; peepholes i, o, f.
                let mut fm = Formula::default();
                let cp = fm.input();
                let mut ins = vec![c];
                let pre = |fm: &mut Formula, ins: &mut Vec<At>, g: usize, p: Option<usize>| {
                    let (a, b) = (fm.input(), fm.input());
                    ins.extend([xw_rows.gate(g, hidden), hr_rows.gate(g, hidden)]);
                    let sum = fm.arith(Arith::Add, a, b);
                    match (p, peep_d) {
                        (Some(p), Some(at)) => {
                            let w = fm.input();
                            ins.push(at.gate(p, hidden));
                            let term = fm.arith(Arith::Mul, w, cp);
                            fm.arith(Arith::Add, sum, term)
                        }
                        _ => sum,
                    }
                };
                let pi = pre(&mut fm, &mut ins, 0, Some(0));
                let pi = fm.clip(pi, clip);
                let i = fm.unary(&acts[0], pi)?;
                let f = if p.input_forget {
                    fm.arith(Arith::Sub, Formula::constant(1.0), i)
                } else {
                    let pf = pre(&mut fm, &mut ins, 2, Some(2));
                    let pf = fm.clip(pf, clip);
                    fm.unary(&acts[0], pf)?
                };
                let pc = pre(&mut fm, &mut ins, 3, None);
                let pc = fm.clip(pc, clip);
                let cc = fm.unary(&acts[1], pc)?;
                let kept = fm.arith(Arith::Mul, f, cp);
                let new = fm.arith(Arith::Mul, i, cc);
                fm.arith(Arith::Add, kept, new);
                list.push(Pass {
                    program: fm.program(ctx),
                    ins,
                    out: c,
                });
                // h = σ(o + p_o·c_new) · h(c_new), reading the new cell state.
                let mut fm = Formula::default();
                let cn = fm.input();
                let mut ins = vec![c];
                let (a, b) = (fm.input(), fm.input());
                ins.extend([xw_rows.gate(1, hidden), hr_rows.gate(1, hidden)]);
                let mut po = fm.arith(Arith::Add, a, b);
                if let Some(at) = peep_d {
                    let w = fm.input();
                    ins.push(at.gate(1, hidden));
                    let term = fm.arith(Arith::Mul, w, cn);
                    po = fm.arith(Arith::Add, po, term);
                }
                let po = fm.clip(po, clip);
                let o = fm.unary(&acts[0], po)?;
                let hc = fm.unary(&acts[2], cn)?;
                fm.arith(Arith::Mul, o, hc);
                list.push(Pass {
                    program: fm.program(ctx),
                    ins,
                    out: h,
                });
            }
        }
        passes.push(list);
    }

    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let mem = fx.mem;
    let l = Locals::new(&mut fx);
    let mut b = f.func_body();
    let mut sz = Sizes::new(table);
    let run = RunSizes {
        xw_step: sz.of(&mut b, &mut fx, &batch_e.scale(4 * gh as i64))?,
        state: sz.of(&mut b, &mut fx, &batch_e.scale(4 * hidden as i64))?,
        y_step: sz.of(&mut b, &mut fx, &batch_e.scale((4 * dirs * hidden) as i64))?,
    };
    let gx_rows = match p.batch_first {
        true => Size::Const(steps as i64),
        false => sz.of(&mut b, &mut fx, &steps_e.mul(&batch_e))?,
    };
    let groups = match &lens {
        Some(lens) => (0..batch)
            .map(|first| Group {
                first,
                rows: Size::Const(1),
                len: Size::Const(lens[first] as i64),
            })
            .collect(),
        None => vec![Group {
            first: 0,
            rows: sz.of(&mut b, &mut fx, &batch_e)?,
            len: sz.of(&mut b, &mut fx, &steps_e)?,
        }],
    };
    if let Some(y) = y
        && lens.is_some()
    {
        // Steps past an item's length stay zero.
        b.i32_const(y as i32)
            .i32_const(0)
            .i32_const((4 * steps * dirs * batch * hidden) as i32)
            .memory_fill(mem);
    }
    for d in 0..dirs {
        let wd = &weights[d];
        let backwards = d == 1 || p.direction == Direction::Reverse;
        // The input term of every step, rows in (step, batch) order.
        let gx = Gemm {
            m: gx_rows,
            n: gh,
            k: input,
            a: fx.i32(),
            lda: input,
            b: fx.i32(),
            ldb: gh,
            packed: true,
            c: fx.i32(),
            ldc: if p.batch_first { batch * gh } else { gh },
            alpha: 1.0,
            bias: Some(Place::Col(l.bias)),
            tail: None,
        };
        let blocks = if p.batch_first { batch } else { 1 };
        emit::for_range(&mut b, l.item, 0, blocks as i64, 1, |b| {
            emit::linear(b, &[(l.item, steps * input * 4)], 1, x.addr);
            b.local_set(gx.a);
            emit::linear(b, &[(l.item, gh * 4)], 1, xw);
            b.local_set(gx.c);
            b.i32_const(wd.w as i32).local_set(gx.b);
            b.i32_const(wd.w_bias as i32).local_set(l.bias);
            emit_gemm(b, &mut fx, &gx);
        });
        let layout = Layout {
            dims: &dims,
            run: &run,
            d,
            batch_first: p.batch_first,
        };
        init_state(&mut b, mem, &layout, h0, hs);
        if let Some(cs) = cs {
            init_state(&mut b, mem, &layout, c0, cs);
        }
        let gr = Gemm {
            // Each group's rows ([`Group::gemm`]).
            m: Size::Const(0),
            n: rec_n,
            k: hidden,
            a: fx.i32(),
            lda: hidden,
            b: fx.i32(),
            ldb: rec_n,
            packed: true,
            c: fx.i32(),
            ldc: rec_n,
            alpha: 1.0,
            bias: wd.r_bias.map(|_| Place::Col(l.bias)),
            tail: None,
        };
        let gh2 = Gemm {
            // Each group's rows ([`Group::gemm`]).
            m: Size::Const(0),
            n: hidden,
            k: hidden,
            a: fx.i32(),
            lda: hidden,
            b: fx.i32(),
            ldb: hidden,
            packed: true,
            c: fx.i32(),
            ldc: hidden,
            alpha: 1.0,
            bias: None,
            tail: None,
        };
        let regs: Vec<(Regs, Regs)> = passes[d]
            .iter()
            .map(|pass| {
                let wide = pass_lanes(&pass.program, lanes);
                (
                    pass.program.regs(&mut fx, wide),
                    pass.program.regs(&mut fx, 1),
                )
            })
            .collect();
        for group in &groups {
            emit::for_size(&mut b, l.step, Size::Const(0), group.len, 1, |b| {
                // t = the step's position in the item's sequence.
                if backwards {
                    group.len.push(b);
                    b.i32_const(1)
                        .binop(BinaryOp::I32Sub)
                        .local_get(l.step)
                        .binop(BinaryOp::I32Sub)
                        .local_set(l.t);
                } else {
                    b.local_get(l.step).local_set(l.t);
                }
                // This step's rows of the input term, from the group's first.
                emit::scaled(b, l.t, run.xw_step, xw + (group.first * gh * 4) as u32);
                b.local_set(fx_xwt[d]);
                b.i32_const((hs as usize + group.first * hidden * 4) as i32)
                    .local_set(gr.a);
                b.i32_const(wd.r as i32).local_set(gr.b);
                b.i32_const((hr as usize + group.first * rec_n * 4) as i32)
                    .local_set(gr.c);
                if let Some(at) = wd.r_bias {
                    b.i32_const(at as i32).local_set(l.bias);
                }
                emit_gemm(b, &mut fx, &group.gemm(&gr));
                for (k, (pass, (wide, narrow))) in passes[d].iter().zip(&regs).enumerate() {
                    run_pass(b, &mut fx, &l, pass, (wide, narrow), &dims, group);
                    // GRU: the reset-gated state is ready for the second GEMM.
                    if k == 0
                        && let (Some(rh), Some(hr2), Some(r_h)) = (rh, hr2, wd.r_h)
                    {
                        let row = group.first * hidden * 4;
                        b.i32_const((rh as usize + row) as i32).local_set(gh2.a);
                        b.i32_const(r_h as i32).local_set(gh2.b);
                        b.i32_const((hr2 as usize + row) as i32).local_set(gh2.c);
                        emit_gemm(b, &mut fx, &group.gemm(&gh2));
                    }
                }
                if let Some(y) = y {
                    write_step(b, mem, &layout, &l, group, (hs, y));
                }
            });
        }
        if let Some(y_h) = y_h {
            copy_state(&mut b, mem, &layout, (y_h, hs), false);
        }
        if let (Some(y_c), Some(cs)) = (y_c, cs) {
            copy_state(&mut b, mem, &layout, (y_c, cs), false);
        }
    }
    Ok(())
}

/// The gate `act(clip(a + b))`.
fn gate(fm: &mut Formula, act: &str, a: Term, b: Term, clip: Option<f32>) -> Result<Term> {
    let sum = fm.arith(Arith::Add, a, b);
    let pre = fm.clip(sum, clip);
    fm.unary(act, pre)
}

/// `rows × cols` row-major `m`, transposed.
fn transposed(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = m[i * cols + j];
        }
    }
    t
}

/// The address of initial-state input `i`, if the node has it.
fn state_in(ctx: &mut Ctx, i: usize) -> Result<Option<u32>> {
    match ctx.has_input(i) {
        true => Ok(Some(ctx.input(i)?.addr)),
        false => Ok(None),
    }
}

/// The address of output `i`, if the node's consumers want it.
fn out_at(ctx: &Ctx, i: usize) -> Result<Option<u32>> {
    match ctx.wants_output(i) {
        true => Ok(Some(ctx.output(i)?.addr)),
        false => Ok(None),
    }
}

/// The locals every direction shares.
struct Locals {
    item: LocalId,
    step: LocalId,
    t: LocalId,
    bias: LocalId,
    row: LocalId,
    unit: LocalId,
    ptrs: Vec<LocalId>,
    tmp: LocalId,
}

/// The most operands a cell pass reads (LSTM's cell-state pass), plus
/// its output.
const MAX_OPERANDS: usize = 12;

impl Locals {
    fn new(fx: &mut Fx) -> Locals {
        Locals {
            item: fx.i32(),
            step: fx.i32(),
            t: fx.i32(),
            bias: fx.i32(),
            row: fx.i32(),
            unit: fx.i32(),
            ptrs: (0..MAX_OPERANDS).map(|_| fx.i32()).collect(),
            tmp: fx.f32(),
        }
    }
}

/// Lanes a pass computes in: the ISA's where the program has vectors.
fn pass_lanes(program: &Program, lanes: usize) -> usize {
    if program.vectorizes() { lanes } else { 1 }
}

/// Runs `pass` at every (batch row, hidden unit): per row, one pointer
/// per operand and the output; per unit (vectors where the program has
/// them), loads, the program, a store.
fn run_pass(
    b: &mut InstrSeqBuilder,
    fx: &mut Fx,
    l: &Locals,
    pass: &Pass,
    (wide, narrow): (&Regs, &Regs),
    dims: &Dims,
    group: &Group,
) {
    let lanes = pass_lanes(&pass.program, fx.isa.lanes());
    let places: Vec<At> = pass.ins.iter().copied().chain([pass.out]).collect();
    assert!(
        places.len() <= MAX_OPERANDS,
        "a cell pass has too many operands"
    );
    pass.program.set_consts(b, wide, lanes);
    pass.program.set_consts(b, narrow, 1);
    let width = 4 * dims.hidden;
    let main = if lanes == 4 { width / 16 * 16 } else { 0 };
    emit::for_size(b, l.row, Size::Const(0), group.rows, 1, |b| {
        for (at, &ptr) in places.iter().zip(&l.ptrs) {
            b.local_get(l.row)
                .i32_const(at.stride as i32)
                .binop(BinaryOp::I32Mul);
            match at.base {
                // Fixed rows start at the group's first; a local already does.
                Base::Addr(a) => {
                    b.i32_const((a as usize + group.first * at.stride + at.offset) as i32)
                }
                Base::Local(local) => b
                    .local_get(local)
                    .i32_const(at.offset as i32)
                    .binop(BinaryOp::I32Add),
            };
            b.binop(BinaryOp::I32Add).local_set(ptr);
        }
        let out = l.ptrs[pass.ins.len()];
        let body = |b: &mut InstrSeqBuilder, fx: &Fx, n: usize, regs: &Regs| {
            for (j, v) in regs.inputs.iter().enumerate() {
                b.local_get(l.ptrs[j])
                    .local_get(l.unit)
                    .binop(BinaryOp::I32Add);
                emit::load(b, fx, n, 0);
                b.local_set(*v);
            }
            pass.program.emit(b, n, regs, l.tmp, |b| {
                b.local_get(out).local_get(l.unit).binop(BinaryOp::I32Add);
            });
            emit::store(b, fx, n, 0);
        };
        if main > 0 {
            emit::for_range(b, l.unit, 0, main as i64, 16, |b| body(b, fx, 4, wide));
        }
        if main < width {
            emit::for_range(b, l.unit, main as i64, width as i64, 4, |b| {
                body(b, fx, 1, narrow)
            });
        }
    });
}

/// Where one direction's states and outputs lie.
struct Layout<'a> {
    dims: &'a Dims,
    run: &'a RunSizes,
    d: usize,
    batch_first: bool,
}

/// Byte offset of direction `d`, item `item`'s state in a (batch, dirs,
/// hidden) state tensor (batch-first, whose sizes are static).
fn batch_first_offset(dims: &Dims, d: usize, item: usize) -> usize {
    4 * (item * dims.dirs + d) * dims.hidden
}

/// Copies direction `d`'s rows between a state tensor at `tensor` and the
/// working state at `state` (`into_state`: from the tensor). Time-major,
/// they are one block of the run's batch rows at direction `d`'s.
fn copy_state(
    b: &mut InstrSeqBuilder,
    mem: walrus::MemoryId,
    at: &Layout,
    (tensor, state): (u32, u32),
    into_state: bool,
) {
    let row = 4 * at.dims.hidden;
    if !at.batch_first {
        // The tensor's block starts d states in; the working state's at 0.
        let tensor_at = |b: &mut InstrSeqBuilder| emit::times(b, at.d, at.run.state, tensor);
        if into_state {
            b.i32_const(state as i32);
            tensor_at(b);
        } else {
            tensor_at(b);
            b.i32_const(state as i32);
        }
        at.run.state.push(b);
        b.memory_copy(mem, mem);
        return;
    }
    for item in 0..at.dims.batch {
        let t = tensor as usize + batch_first_offset(at.dims, at.d, item);
        let here = state as usize + item * row;
        let (dst, src) = if into_state { (here, t) } else { (t, here) };
        b.i32_const(dst as i32)
            .i32_const(src as i32)
            .i32_const(row as i32)
            .memory_copy(mem, mem);
    }
}

/// The working state at `state` starts from the initial state tensor, or
/// zeros without one.
fn init_state(
    b: &mut InstrSeqBuilder,
    mem: walrus::MemoryId,
    at: &Layout,
    initial: Option<u32>,
    state: u32,
) {
    match initial {
        Some(t) => copy_state(b, mem, at, (t, state), true),
        None => {
            b.i32_const(state as i32).i32_const(0);
            at.run.state.push(b);
            b.memory_fill(mem);
        }
    }
}

/// Step `l.t`'s hidden state of `group`'s items into Y: (steps, dirs,
/// batch, hidden), or (batch, steps, dirs, hidden) when batch-first.
fn write_step(
    b: &mut InstrSeqBuilder,
    mem: walrus::MemoryId,
    at: &Layout,
    l: &Locals,
    group: &Group,
    (state, y): (u32, u32),
) {
    let (dims, d) = (at.dims, at.d);
    let row = 4 * dims.hidden;
    if !at.batch_first {
        // The group's rows of Y at (t, d): t·y_step + d·state + first·row.
        emit::scaled(
            b,
            l.t,
            at.run.y_step,
            (y as usize + group.first * row) as u32,
        );
        emit::times(b, d, at.run.state, 0);
        b.binop(BinaryOp::I32Add)
            .i32_const((state as usize + group.first * row) as i32);
        group.rows_bytes(b, row);
        b.memory_copy(mem, mem);
        return;
    }
    for item in group.first..group.first + group.count() {
        // Y's row for (t, d, item), as t times a stride plus a constant.
        emit::linear(
            b,
            &[(l.t, dims.dirs * row)],
            1,
            (y as usize + (item * dims.steps * dims.dirs + d) * row) as u32,
        );
        b.i32_const((state as usize + item * row) as i32)
            .i32_const(row as i32)
            .memory_copy(mem, mem);
    }
}

/// The items' lengths where `sequence_lens` makes some shorter than the
/// sequence (they then step one by one), else `None`: every item runs
/// every step.
fn lengths(ctx: &Ctx, steps: usize, batch: usize) -> Result<Option<Vec<usize>>> {
    if !ctx.has_input(4) {
        return Ok(None);
    }
    let lens: Vec<usize> = ctx
        .constant(4)?
        .to_i64s()
        .iter()
        .map(|&l| wpc_ir::ops::params::sequence_length(l, steps))
        .collect::<Result<_>>()?;
    if lens.len() != batch {
        return Err(Error::invalid(format!(
            "{} sequence_lens has {} items for a batch of {batch}",
            ctx.node.op,
            lens.len()
        )));
    }
    Ok((!lens.iter().all(|&l| l == steps)).then_some(lens))
}

/// Batch items that step together: `rows` items from `first`, all `len`
/// steps long: every item of the run, or one item of its own length.
struct Group {
    first: usize,
    rows: Size,
    len: Size,
}

impl Group {
    /// The number of items, where it is static (batch-first layouts).
    fn count(&self) -> usize {
        match self.rows {
            Size::Const(n) => n as usize,
            Size::Local(_) => unreachable!("dynamic batches are time-major"),
        }
    }

    /// Pushes the bytes of the group's rows, `row` bytes each.
    fn rows_bytes(&self, b: &mut InstrSeqBuilder, row: usize) {
        match self.rows {
            Size::Const(n) => {
                b.i32_const((n as usize * row) as i32);
            }
            Size::Local(n) => {
                b.local_get(n).i32_const(row as i32).binop(BinaryOp::I32Mul);
            }
        }
    }

    /// `g` over this group's rows only.
    fn gemm<'t>(&self, g: &Gemm<'t>) -> Gemm<'t> {
        Gemm { m: self.rows, ..*g }
    }
}
