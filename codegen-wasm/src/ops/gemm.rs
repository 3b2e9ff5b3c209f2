//! The one matrix-multiply kernel behind MatMul, Gemm and Conv:
//! C = alpha · A·B (+ bias), A (M×K) and B (K×N) row-major with leading
//! dimensions. A register-blocked micro-kernel keeps a 4-row × 2-vector
//! tile of C in locals (4×8 floats: two vectors, or eight scalars), broadcasting
//! one A element per row against vectors of B for each k; remainder rows
//! and columns get narrower tiles of the same code. A constant B is packed
//! at compile time into column panels, each panel's K rows contiguous, so
//! the kernel streams it instead of jumping a row of B per k.

use walrus::ir::BinaryOp;
use walrus::{FunctionBuilder, InstrSeqBuilder, LocalId};
use wpc_ir::sym::Expr;
use wpc_ir::{DType, Error, Result};

use super::elementwise::{self, Program, Regs};
use super::nn::hw;
use crate::emit::{self, Arith, Fx};
use crate::lower::{Ctx, Tt};
use crate::sizes::{self, Size, Sizes};

/// Rows of C per micro-tile.
const MR: usize = 4;

/// Where a tensor read per element of C is: the bias, or an operand of
/// the epilogue. Each base address is a local, or an offset from C's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Place {
    /// `base[row]`.
    Row(LocalId),
    /// `base[col]`.
    Col(LocalId),
    /// A full M×N matrix with C's leading dimension.
    Full(LocalId),
    /// The element as far from this one as the tensor is from C, in
    /// bytes: a tensor shaped like the output, whatever the batch.
    Beside(i32),
}

/// A pointwise tail run on each element of C before it is stored (a
/// `FusedEpilogue`'s), with the locals it computes in.
pub struct Tail {
    program: Program,
    /// Where each program operand after the first (C's element) is.
    places: Vec<Place>,
    /// Row and column bases: (local, address); rows of a grouped Conv
    /// move on by the group's rows.
    bases: Vec<(Place, u32)>,
    wide: Regs,
    narrow: Regs,
    tmp: LocalId,
}

impl Tail {
    /// Sets the base locals, for group `group` of `rows` rows each where
    /// a Conv has groups.
    pub fn set_bases(&self, b: &mut InstrSeqBuilder, group: Option<(LocalId, usize)>) {
        for &(place, at) in &self.bases {
            match (place, group) {
                (Place::Row(l), Some((g, rows))) => {
                    emit::linear(b, &[(g, rows * 4)], 1, at);
                    b.local_set(l);
                }
                (Place::Row(l) | Place::Col(l) | Place::Full(l), _) => {
                    b.i32_const(at as i32).local_set(l);
                }
                (Place::Beside(_), _) => {}
            }
        }
    }
}

/// How an output's axes map onto its GEMM's rows and columns: `row` is
/// the axis of M, `cols` the axes N runs over (contiguous, innermost).
pub struct Geometry<'a> {
    pub out: &'a [usize],
    pub row: usize,
    pub cols: std::ops::Range<usize>,
}

impl Geometry<'_> {
    /// Where a tensor of `shape`, broadcast to the output, is read from
    /// per element of C: beside it (same shape), per row, or per column;
    /// `None` for other broadcasts.
    fn place(&self, shape: &[usize]) -> Option<PlaceKind> {
        let s = wpc_ir::ops::util::broadcast_strides(shape, self.out);
        let dense = wpc_ir::tensor::strides(self.out);
        let live: Vec<usize> = (0..self.out.len()).filter(|&d| self.out[d] > 1).collect();
        if live.iter().all(|&d| s[d] == dense[d]) {
            return Some(PlaceKind::Beside);
        }
        if live
            .iter()
            .all(|&d| if d == self.row { s[d] == 1 } else { s[d] == 0 })
        {
            return Some(PlaceKind::Row);
        }
        let col_dense = wpc_ir::tensor::strides(&self.out[self.cols.clone()]);
        let in_cols = |d: usize| self.cols.contains(&d);
        if live.iter().all(|&d| {
            if in_cols(d) {
                s[d] == col_dense[d - self.cols.start]
            } else {
                s[d] == 0
            }
        }) {
            return Some(PlaceKind::Col);
        }
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum PlaceKind {
    Beside,
    Row,
    Col,
}

/// The tail of the `FusedEpilogue` `ctx` anchors (none if it anchors
/// none), for an output laid out as `geo` at `out_addr`.
pub fn tail(ctx: &mut Ctx, geo: &Geometry, out_addr: u32) -> Result<Option<Tail>> {
    let Some(anchoring) = ctx.epilogue else {
        return Ok(None);
    };
    let (program, read) = elementwise::tail(ctx, anchoring.split)?;
    if ctx.isa.lanes() > 1 && !program.vectorizes() {
        return Err(Error::new(
            wpc_ir::ErrorKind::Internal,
            "an epilogue with a step that has no vector form reached the GEMM",
        ));
    }
    let mut places = Vec::new();
    let mut bases = Vec::new();
    for j in read {
        let t = ctx.tensor(anchoring.input(j)?)?;
        super::require_f32(ctx, &t)?;
        let kind = geo.place(&t.shape).ok_or_else(|| {
            Error::unsupported(format!(
                "an epilogue operand of shape {:?} broadcast to {:?}",
                t.shape, geo.out
            ))
        })?;
        let mut fx = ctx.fx();
        let place = match kind {
            PlaceKind::Beside => Place::Beside(t.addr.wrapping_sub(out_addr) as i32),
            PlaceKind::Row => Place::Row(fx.i32()),
            PlaceKind::Col => Place::Col(fx.i32()),
        };
        if kind != PlaceKind::Beside {
            bases.push((place, t.addr));
        }
        places.push(place);
    }
    let mut fx = ctx.fx();
    let lanes = fx.isa.lanes();
    let wide = program.regs(&mut fx, lanes);
    let narrow = program.regs(&mut fx, 1);
    Ok(Some(Tail {
        wide,
        narrow,
        tmp: fx.f32(),
        program,
        places,
        bases,
    }))
}

/// Whether the WebAssembly GEMM computes `node`, a `FusedEpilogue` over
/// values of `graph`: its anchor is a MatMul, Gemm or Conv the kernel
/// takes (the cases [`matmul`], [`gemm`] and [`conv`] refuse, refused),
/// its tail is float32 ops the elementwise kernel computes in vectors (a
/// step without a vector form, such as Erf, would run lane by lane on
/// every vector of C inside the tile: measured slower than its own
/// kernel; the three ISAs share one fused graph, so the scalar variant
/// follows the SIMD ones), and every tensor the tail reads is beside, per
/// row or per column of C.
pub fn takes_epilogue(graph: &wpc_ir::Graph, node: &wpc_ir::Node, opset: u32) -> bool {
    let Ok(e) = wpc_ir::ops::fused::epilogue(node) else {
        return false;
    };
    let ty = |v: Option<wpc_ir::ValueId>| {
        let t = &graph.value(v?).ty;
        Some((t.dtype?, t.shape.concrete()?))
    };
    let a = &e.anchor;
    let input = |i: usize| ty(a.inputs.get(i).copied().flatten());
    let Some((out_dtype, out)) = ty(node.outputs[0]) else {
        return false;
    };
    let constant = |i: usize| {
        a.inputs
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|v| graph.constants.contains_key(&v))
    };
    let f32_input = |i: usize| input(i).is_some_and(|(d, _)| d == DType::F32);
    let geo = match a.op.as_str() {
        "MatMul" => {
            let ranks = (input(0).map(|t| t.1.len()), input(1).map(|t| t.1.len()));
            let (Some(ra), Some(rb)) = ranks else {
                return false;
            };
            if !(f32_input(0) && f32_input(1) && ra >= 2 && rb >= 2) {
                return false;
            }
            Geometry {
                out: &out,
                row: out.len() - 2,
                cols: out.len() - 1..out.len(),
            }
        }
        "Gemm" => {
            let Ok(p) = wpc_ir::ops::params::Gemm::of(&a.attrs) else {
                return false;
            };
            let c_ok = match input(2) {
                Some(_) if p.beta != 0.0 => {
                    constant(2)
                        || p.beta == 1.0 && input(2).is_some_and(|(_, s)| s == out.as_slice())
                }
                _ => true,
            };
            if !(f32_input(0)
                && f32_input(1)
                && (!p.trans_a || constant(0))
                && (!p.trans_b || constant(1))
                && c_ok)
            {
                return false;
            }
            Geometry {
                out: &out,
                row: 0,
                cols: 1..2,
            }
        }
        "Conv" => {
            if !(f32_input(0) && (3..=4).contains(&out.len())) {
                return false;
            }
            Geometry {
                out: &out,
                row: 1,
                cols: 2..out.len(),
            }
        }
        _ => return false,
    };
    let operands_placed = elementwise::tail_inputs(&e).into_iter().all(|j| {
        ty(node.inputs[j]).is_some_and(|(d, s)| d == DType::F32 && geo.place(&s).is_some())
    });
    out_dtype == DType::F32
        && a.domain.is_empty()
        && operands_placed
        && e.tail
            .iter()
            .all(|&n| elementwise::vectorizes(e.body, n, opset))
}

/// One C = tail(alpha·A·B + bias). Base addresses are locals, so the
/// caller can loop over batches and groups around one copy of the code.
pub struct Gemm<'t> {
    /// Rows of C: known at compile time, or (MatMul over dynamic sizes)
    /// computed when the kernel starts.
    pub m: Size,
    pub n: usize,
    pub k: usize,
    pub a: LocalId,
    pub lda: usize,
    pub b: LocalId,
    /// B's leading dimension; unused when `packed`.
    pub ldb: usize,
    /// B is laid out by [`pack_panels`].
    pub packed: bool,
    pub c: LocalId,
    pub ldc: usize,
    pub alpha: f32,
    pub bias: Option<Place>,
    /// The epilogue, run after the bias.
    pub tail: Option<&'t Tail>,
}

impl<'t> Gemm<'t> {
    /// C (m×n) = alpha·A (m×k)·B (k×n) + bias, all densely row-major, with
    /// fresh locals for the three base addresses.
    fn dense(
        fx: &mut Fx,
        [m, n, k]: [usize; 3],
        packed: bool,
        alpha: f32,
        bias: Option<Place>,
        tail: Option<&'t Tail>,
    ) -> Gemm<'t> {
        Gemm {
            m: Size::Const(m as i64),
            n,
            k,
            a: fx.i32(),
            lda: k,
            b: fx.i32(),
            ldb: n,
            packed,
            c: fx.i32(),
            ldc: n,
            alpha,
            bias,
            tail,
        }
    }
}

struct Tile {
    rows: usize,
    vectors: usize,
    lanes: usize,
}

/// Locals shared by every tile of one GEMM.
struct Cursor {
    i: LocalId,
    j: LocalId,
    pa: LocalId,
    pb: LocalId,
    pc: LocalId,
    end: LocalId,
    /// Rows in full tiles, where M is dynamic.
    full: LocalId,
    av: [LocalId; 2],
}

pub fn emit_gemm(b: &mut InstrSeqBuilder, fx: &mut Fx, g: &Gemm) {
    let cur = Cursor {
        i: fx.i32(),
        j: fx.i32(),
        pa: fx.i32(),
        pb: fx.i32(),
        pc: fx.i32(),
        end: fx.i32(),
        full: fx.i32(),
        av: [fx.vec(4), fx.f32()],
    };
    if let Some(t) = g.tail {
        t.program.set_consts(b, &t.wide, fx.isa.lanes());
        t.program.set_consts(b, &t.narrow, 1);
    }
    // Columns outermost: one panel of B (K × tile width) stays in cache
    // while every block of rows of A passes over it.
    let p = Panels::new(g.n, fx.isa.lanes());
    emit::for_range(b, cur.j, 0, p.main as i64, p.width() as i64, |b| {
        column_panel(b, fx, g, &cur, p.vectors, p.lanes);
    });
    for &(j, vectors, lanes) in &p.tail {
        b.i32_const(j as i32).local_set(cur.j);
        column_panel(b, fx, g, &cur, vectors, lanes);
    }
}

/// Columns of a full panel of B.
const PANEL: usize = 8;

/// How the N columns of C split into panels, one tile wide each: full
/// panels of `vectors × lanes` columns over `0..main`, then the narrower
/// `tail` panels `(first column, vectors, lanes)`.
struct Panels {
    vectors: usize,
    lanes: usize,
    main: usize,
    tail: Vec<(usize, usize, usize)>,
}

impl Panels {
    /// Panels are [`PANEL`] columns wide, then one of 4, then the rest,
    /// whatever the ISA (2 vectors of 4 lanes, or 8 scalars): every wasm
    /// variant packs B the same way, so a bundle stores it once for all.
    fn new(n: usize, lanes: usize) -> Panels {
        debug_assert!(
            PANEL.is_multiple_of(lanes) && 4usize.is_multiple_of(lanes),
            "panels of {PANEL} and 4 columns are whole vectors of {lanes} lanes"
        );
        let vectors = PANEL / lanes;
        let main = n / PANEL * PANEL;
        let mut tail = Vec::new();
        let mut j = main;
        if n - j >= 4 {
            tail.push((j, 4 / lanes, lanes));
            j += 4;
        }
        if j < n {
            tail.push((j, n - j, 1));
        }
        Panels {
            vectors,
            lanes,
            main,
            tail,
        }
    }

    fn width(&self) -> usize {
        self.vectors * self.lanes
    }

    /// Every panel as (first column, width).
    fn spans(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.main)
            .step_by(self.width().max(1))
            .map(|j| (j, self.width()))
            .chain(self.tail.iter().map(|&(j, v, l)| (j, v * l)))
    }
}

/// B (k×n, row-major) rearranged for the kernel of `lanes`: panel by
/// panel, each panel's k rows of its width contiguous. A panel starting at
/// column j starts at element j·k, so the kernel finds it without a table.
pub fn pack_panels(b: &[f32], k: usize, n: usize, lanes: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(k * n);
    for (j, w) in Panels::new(n, lanes).spans() {
        for row in b.chunks_exact(n).take(k) {
            out.extend_from_slice(&row[j..j + w]);
        }
    }
    out
}

/// Every row block of columns j..j+vectors·lanes: full MR-row tiles, then
/// the remainder rows (one tile of them where M is static, single-row
/// tiles where it is known only at run time).
fn column_panel(
    b: &mut InstrSeqBuilder,
    fx: &mut Fx,
    g: &Gemm,
    cur: &Cursor,
    vectors: usize,
    lanes: usize,
) {
    let m = match g.m {
        Size::Const(m) => m as usize,
        Size::Local(m) => {
            // full = m rounded down to whole tiles (MR is a power of two).
            b.local_get(m)
                .i32_const(-(MR as i32))
                .binop(BinaryOp::I32And)
                .local_set(cur.full);
            let row_tiles = |rows| Tile {
                rows,
                vectors,
                lanes,
            };
            emit::for_size(
                b,
                cur.i,
                Size::Const(0),
                Size::Local(cur.full),
                MR as i64,
                |b| tile(b, fx, g, cur, &row_tiles(MR)),
            );
            emit::for_size(b, cur.i, Size::Local(cur.full), g.m, 1, |b| {
                tile(b, fx, g, cur, &row_tiles(1))
            });
            return;
        }
    };
    let full_rows = m / MR * MR;
    emit::for_range(b, cur.i, 0, full_rows as i64, MR as i64, |b| {
        tile(
            b,
            fx,
            g,
            cur,
            &Tile {
                rows: MR,
                vectors,
                lanes,
            },
        );
    });
    if full_rows < m {
        b.i32_const(full_rows as i32).local_set(cur.i);
        tile(
            b,
            fx,
            g,
            cur,
            &Tile {
                rows: m - full_rows,
                vectors,
                lanes,
            },
        );
    }
}

/// C[i..i+rows, j..j+vectors·lanes] over all of K.
fn tile(b: &mut InstrSeqBuilder, fx: &mut Fx, g: &Gemm, cur: &Cursor, t: &Tile) {
    let acc: Vec<Vec<LocalId>> = (0..t.rows)
        .map(|_| (0..t.vectors).map(|_| fx.vec(t.lanes)).collect())
        .collect();
    let bv: Vec<LocalId> = (0..t.vectors).map(|_| fx.vec(t.lanes)).collect();
    let av = if t.lanes == 4 { cur.av[0] } else { cur.av[1] };
    for row in &acc {
        for &a in row {
            emit::zero(b, t.lanes, a);
        }
    }
    // pa = A + i·lda·4, pb = B + j·4, end = pa + k·4
    b.local_get(cur.i)
        .i32_const((g.lda * 4) as i32)
        .binop(BinaryOp::I32Mul)
        .local_get(g.a)
        .binop(BinaryOp::I32Add)
        .local_tee(cur.pa)
        .i32_const((g.k * 4) as i32)
        .binop(BinaryOp::I32Add)
        .local_set(cur.end);
    // pb = B + j·4 (row-major) or B + j·k·4 (panels), stepping one row
    // of B or of the panel per k.
    let (col_bytes, b_step) = if g.packed {
        (g.k * 4, t.vectors * t.lanes * 4)
    } else {
        (4, g.ldb * 4)
    };
    b.local_get(cur.j)
        .i32_const(col_bytes as i32)
        .binop(BinaryOp::I32Mul)
        .local_get(g.b)
        .binop(BinaryOp::I32Add)
        .local_set(cur.pb);
    // With K = 0 the product is all zeros; the loop (which runs at least
    // once) would read A and B past their ends.
    if g.k > 0 {
        b.loop_(None, |lp| {
            let top = lp.id();
            for (v, &x) in bv.iter().enumerate() {
                lp.local_get(cur.pb);
                emit::load(lp, fx, t.lanes, (v * t.lanes * 4) as u64);
                lp.local_set(x);
            }
            for (r, row) in acc.iter().enumerate() {
                lp.local_get(cur.pa);
                emit::load(lp, fx, 1, (r * g.lda * 4) as u64);
                emit::splat(lp, t.lanes);
                lp.local_set(av);
                for (v, &a) in row.iter().enumerate() {
                    lp.local_get(av).local_get(bv[v]);
                    emit::madd(lp, fx, t.lanes, a);
                }
            }
            emit::bump(lp, cur.pb, b_step as i64);
            lp.local_get(cur.pa)
                .i32_const(4)
                .binop(BinaryOp::I32Add)
                .local_tee(cur.pa)
                .local_get(cur.end)
                .binop(BinaryOp::I32LtU)
                .br_if(top);
        });
    }
    // pc = C + (i·ldc + j)·4
    b.local_get(cur.i)
        .i32_const(g.ldc as i32)
        .binop(BinaryOp::I32Mul)
        .local_get(cur.j)
        .binop(BinaryOp::I32Add)
        .i32_const(4)
        .binop(BinaryOp::I32Mul)
        .local_get(g.c)
        .binop(BinaryOp::I32Add)
        .local_set(cur.pc);
    for (r, row) in acc.iter().enumerate() {
        for (v, &a) in row.iter().enumerate() {
            let col = (v * t.lanes * 4) as u64;
            let at = (r * g.ldc * 4) as u64 + col;
            // C's element(s): alpha·acc + bias.
            let value = |b: &mut InstrSeqBuilder| {
                b.local_get(a);
                if g.alpha != 1.0 {
                    emit::constant(b, t.lanes, g.alpha);
                    emit::arith(b, t.lanes, Arith::Mul);
                }
                if let Some(place) = g.bias {
                    load_place(b, fx, g, cur, place, r, col, t.lanes);
                    emit::arith(b, t.lanes, Arith::Add);
                }
            };
            match g.tail {
                None => {
                    b.local_get(cur.pc);
                    value(b);
                    emit::store(b, fx, t.lanes, at);
                }
                // `takes_epilogue` admits only tails with vector forms.
                Some(tail) => {
                    let regs = if t.lanes == 1 {
                        &tail.narrow
                    } else {
                        &tail.wide
                    };
                    value(b);
                    b.local_set(regs.inputs[0]);
                    epilogue(b, fx, g, cur, tail, regs, r, col, t.lanes);
                    emit::store(b, fx, t.lanes, at);
                }
            }
        }
    }
}

/// Pushes `lanes` elements of the tensor at `place` for row `r` of the
/// tile and byte offset `col` into its columns.
#[allow(clippy::too_many_arguments)]
fn load_place(
    b: &mut InstrSeqBuilder,
    fx: &Fx,
    g: &Gemm,
    cur: &Cursor,
    place: Place,
    r: usize,
    col: u64,
    lanes: usize,
) {
    let beside = (r * g.ldc * 4) as u64 + col;
    match place {
        Place::Row(at) => {
            b.local_get(cur.i)
                .i32_const(4)
                .binop(BinaryOp::I32Mul)
                .local_get(at)
                .binop(BinaryOp::I32Add);
            emit::load(b, fx, 1, (r * 4) as u64);
            emit::splat(b, lanes);
        }
        Place::Col(at) => {
            b.local_get(cur.j)
                .i32_const(4)
                .binop(BinaryOp::I32Mul)
                .local_get(at)
                .binop(BinaryOp::I32Add);
            emit::load(b, fx, lanes, col);
        }
        Place::Full(at) => {
            // Same offset from C's origin as this element.
            b.local_get(cur.pc)
                .local_get(g.c)
                .binop(BinaryOp::I32Sub)
                .local_get(at)
                .binop(BinaryOp::I32Add);
            emit::load(b, fx, lanes, beside);
        }
        Place::Beside(delta) => {
            b.local_get(cur.pc).i32_const(delta).binop(BinaryOp::I32Add);
            emit::load(b, fx, lanes, beside);
        }
    }
}

/// Runs `tail` on C's element(s) in `regs.inputs[0]`, loading its other
/// operands first; leaves the store's address and the result on the stack.
#[allow(clippy::too_many_arguments)]
fn epilogue(
    b: &mut InstrSeqBuilder,
    fx: &Fx,
    g: &Gemm,
    cur: &Cursor,
    tail: &Tail,
    regs: &Regs,
    r: usize,
    col: u64,
    lanes: usize,
) {
    for (k, &place) in tail.places.iter().enumerate() {
        load_place(b, fx, g, cur, place, r, col, lanes);
        b.local_set(regs.inputs[k + 1]);
    }
    tail.program.emit(b, lanes, regs, tail.tmp, |b| {
        b.local_get(cur.pc);
    });
}

/// `MatMul` (numpy semantics): batched over broadcast leading dims, one
/// GEMM per batch. Batch offsets are a table in memory, walked at run
/// time, so the code exists once whatever the batch count.
pub fn matmul(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (a, out) = (ctx.input(0)?, ctx.output(0)?);
    super::require_f32(ctx, &a)?;
    if !(a.is_static() && out.is_static()) {
        return matmul_rows(ctx, f, &a, &out);
    }
    let (bdt, b_shape) = ctx.input_type(1)?;
    if bdt != DType::F32 {
        return Err(Error::unsupported(format!("MatMul on {bdt}")));
    }
    let (mut ash, mut bsh) = (a.shape.clone(), b_shape.clone());
    if ash.len() == 1 {
        ash.insert(0, 1);
    }
    if bsh.len() == 1 {
        bsh.push(1);
    }
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (k2, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    if k != k2 {
        return Err(Error::invalid(format!(
            "MatMul of {:?} and {:?}: inner dimensions differ",
            a.shape, b_shape
        )));
    }
    // A constant matrix B (the weights of a linear layer) is packed.
    let lanes = ctx.isa.lanes();
    let packed = ctx
        .opt_constant(1)
        .filter(|_| b_shape.len() <= 2)
        .map(|t| pack_panels(&t.to_f32s(), k, n, lanes));
    let b_addr = match &packed {
        Some(p) => ctx.weight(p),
        None => ctx.input(1)?.addr,
    };
    let batch =
        wpc_ir::ops::util::broadcast_shapes(&[&ash[..ash.len() - 2], &bsh[..bsh.len() - 2]])?;
    let offsets = batch_offsets(
        &batch,
        &ash[..ash.len() - 2],
        &bsh[..bsh.len() - 2],
        m * k,
        k * n,
        m * n,
    );
    let addrs: Vec<[u32; 3]> = offsets
        .iter()
        .map(|&(ao, bo, co)| {
            [
                a.addr + 4 * ao as u32,
                b_addr + 4 * bo as u32,
                out.addr + 4 * co as u32,
            ]
        })
        .collect();
    let packed = packed.is_some();
    let r = out.shape.len();
    let geo = Geometry {
        out: &out.shape,
        row: r.saturating_sub(2),
        cols: r.saturating_sub(1)..r,
    };
    let tail = tail(ctx, &geo, out.addr)?;
    let spec = |fx: &mut Fx| Gemm::dense(fx, [m, n, k], packed, 1.0, None, tail.as_ref());
    batched(ctx, f, &addrs, tail.as_ref(), spec)
}

/// `MatMul` of an A whose leading sizes are dynamic by a constant matrix
/// B (a linear layer over a dynamic batch or sequence): every row of A in
/// one GEMM, its M computed when the kernel starts.
fn matmul_rows(ctx: &mut Ctx, f: &mut FunctionBuilder, a: &Tt, out: &Tt) -> Result<()> {
    let w = ctx
        .opt_constant(1)
        .filter(|w| w.shape().len() == 2 && w.dtype() == DType::F32)
        .ok_or_else(|| {
            Error::unsupported(
                "MatMul at dynamic sizes with a B that is not a float32 constant matrix",
            )
        })?;
    let (k, n) = (w.shape()[0], w.shape()[1]);
    let Some((last, rows)) = a.dims.split_last() else {
        return Err(Error::unsupported("MatMul of a vector at dynamic sizes"));
    };
    if rows.is_empty() || last.as_const() != Some(k as i64) {
        return Err(Error::unsupported(
            "MatMul at dynamic sizes with A not a matrix of K columns",
        ));
    }
    if ctx.epilogue.is_some() {
        return Err(Error::unsupported("an epilogue at dynamic sizes"));
    }
    let b_addr = ctx.weight(&pack_panels(&w.to_f32s(), k, n, ctx.isa.lanes()));
    let rows = Expr::product(rows);
    emit_rows(ctx, f, &rows, [a.addr, b_addr, out.addr], |fx| {
        Gemm::dense(fx, [0, n, k], true, 1.0, None, None)
    })
}

/// Emits `spec`'s GEMM on the (a, b, c) addresses `at` with its M the
/// dynamic size `rows`, computed when the kernel starts.
fn emit_rows<'t>(
    ctx: &mut Ctx,
    f: &mut FunctionBuilder,
    rows: &Expr,
    at: [u32; 3],
    spec: impl FnOnce(&mut Fx) -> Gemm<'t>,
) -> Result<()> {
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let mut g = spec(&mut fx);
    let mut b = f.func_body();
    g.m = Sizes::new(table).of(&mut b, &mut fx, rows)?;
    for (l, at) in [g.a, g.b, g.c].into_iter().zip(at) {
        b.i32_const(at as i32).local_set(l);
    }
    emit_gemm(&mut b, &mut fx, &g);
    Ok(())
}

/// `Gemm` whose A has a dynamic number of rows (a dynamic batch): one
/// GEMM with M computed when the kernel starts. A is not transposed, B
/// is static, and C (if any) is a constant bias per column.
fn gemm_rows(ctx: &mut Ctx, f: &mut FunctionBuilder, p: &wpc_ir::ops::params::Gemm) -> Result<()> {
    let (a, out) = (ctx.input(0)?, ctx.output(0)?);
    super::require_f32(ctx, &a)?;
    let (bdt, bsh) = ctx.input_type(1)?;
    let refuse = |what: &str| Err(Error::unsupported(format!("Gemm at dynamic sizes {what}")));
    if p.trans_a || bdt != DType::F32 || a.dims.len() != 2 {
        return refuse("with a transposed A or a B that is not float32");
    }
    if ctx.epilogue.is_some() {
        return refuse("with an epilogue");
    }
    let k = sizes::fixed(&a.dims[1], "a Gemm of K")?;
    let n = if p.trans_b { bsh[0] } else { bsh[1] };
    let packed = ctx.opt_constant(1).is_some();
    let b_addr = operand(ctx, 1, p.trans_b, packed.then_some([k, n]))?;
    let bias = match ctx.has_input(2) && p.beta != 0.0 {
        false => None,
        true => {
            // A scalar, or one value per column: [], [1], [n], [1, n], [1, 1].
            let per_column = |c: &&wpc_ir::Tensor| {
                let s = c.shape();
                s.iter().product::<usize>() <= 1 || matches!(s, [m] | [1, m] if *m == n)
            };
            let c = ctx.opt_constant(2).filter(per_column).map(|c| c.to_f32s());
            let Some(c) = c else {
                return refuse("with a C that is not a constant per column");
            };
            let v: Vec<f32> = (0..n).map(|j| c[j % c.len()] * p.beta).collect();
            Some(ctx.weight(&v))
        }
    };
    let bias_local = ctx.fx().i32();
    if let Some(at) = bias {
        f.func_body().i32_const(at as i32).local_set(bias_local);
    }
    let bias = bias.map(|_| Place::Col(bias_local));
    let alpha = p.alpha;
    emit_rows(ctx, f, &a.dims[0], [a.addr, b_addr, out.addr], |fx| {
        Gemm::dense(fx, [0, n, k], packed, alpha, bias, None)
    })
}

/// Runs `spec`'s GEMM once per (a, b, c) address triple (with `tail`'s
/// bases set first).
pub fn batched<'t>(
    ctx: &mut Ctx,
    f: &mut FunctionBuilder,
    addrs: &[[u32; 3]],
    tail: Option<&'t Tail>,
    spec: impl FnOnce(&mut Fx) -> Gemm<'t>,
) -> Result<()> {
    let table = if addrs.len() > 1 {
        let words: Vec<f32> = addrs.iter().flatten().map(|&w| f32::from_bits(w)).collect();
        Some(ctx.weight(&words))
    } else {
        None
    };
    let mut fx = ctx.fx();
    let g = spec(&mut fx);
    let mut b = f.func_body();
    if let Some(t) = tail {
        t.set_bases(&mut b, None);
    }
    match table {
        None => {
            for (l, at) in [g.a, g.b, g.c].into_iter().zip(addrs[0]) {
                b.i32_const(at as i32).local_set(l);
            }
            emit_gemm(&mut b, &mut fx, &g);
        }
        Some(table) => {
            let p = fx.i32();
            emit::for_range(
                &mut b,
                p,
                table as i64,
                table as i64 + 12 * addrs.len() as i64,
                12,
                |b| {
                    for (s, l) in [g.a, g.b, g.c].into_iter().enumerate() {
                        b.local_get(p);
                        emit::load_i32(b, &fx, 4 * s as u64);
                        b.local_set(l);
                    }
                    emit_gemm(b, &mut fx, &g);
                },
            );
        }
    }
    Ok(())
}

/// Element offsets of A, B and C for each batch index of a broadcast batch.
fn batch_offsets(
    batch: &[usize],
    a: &[usize],
    b: &[usize],
    a_mat: usize,
    b_mat: usize,
    c_mat: usize,
) -> Vec<(usize, usize, usize)> {
    let count: usize = batch.iter().product();
    let index = |shape: &[usize], coords: &[usize]| {
        // Right-aligned broadcast: size-1 dims repeat.
        let skip = coords.len() - shape.len();
        shape.iter().enumerate().fold(0, |acc, (d, &s)| {
            acc * s + if s == 1 { 0 } else { coords[skip + d] }
        })
    };
    let mut coords = vec![0; batch.len()];
    (0..count)
        .map(|flat| {
            let mut r = flat;
            for d in (0..batch.len()).rev() {
                coords[d] = r % batch[d];
                r /= batch[d];
            }
            (
                index(a, &coords) * a_mat,
                index(b, &coords) * b_mat,
                flat * c_mat,
            )
        })
        .collect()
}

/// `Gemm`: alpha·op(A)·op(B) + beta·C. Transposed constant operands are
/// packed row-major at compile time; C folds into a row, column or full
/// bias.
pub fn gemm(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let params = wpc_ir::ops::params::Gemm::of(ctx.attrs())?;
    if ctx.is_dynamic() {
        return gemm_rows(ctx, f, &params);
    }
    let wpc_ir::ops::params::Gemm {
        alpha,
        beta,
        trans_a,
        trans_b,
    } = params;
    let (adt, ash) = ctx.input_type(0)?;
    let (bdt, bsh) = ctx.input_type(1)?;
    if adt != DType::F32 || bdt != DType::F32 {
        return Err(Error::unsupported(format!("Gemm on {adt} × {bdt}")));
    }
    let (m, k) = if trans_a {
        (ash[1], ash[0])
    } else {
        (ash[0], ash[1])
    };
    let n = if trans_b { bsh[0] } else { bsh[1] };
    let a_addr = operand(ctx, 0, trans_a, None)?;
    let packed = ctx.opt_constant(1).is_some();
    let b_addr = operand(ctx, 1, trans_b, packed.then_some([k, n]))?;
    // C folded into a bias: (kind, address).
    let bias = if ctx.has_input(2) && beta != 0.0 {
        let (_, csh) = ctx.input_type(2)?;
        match ctx.opt_constant(2) {
            Some(c) => {
                let v: Vec<f32> = c.to_f32s().iter().map(|x| x * beta).collect();
                let numel = v.len();
                if numel == 1 {
                    Some((
                        Place::Col as fn(LocalId) -> Place,
                        ctx.weight(&vec![v[0]; n]),
                    ))
                } else if numel == n && csh.last() == Some(&n) {
                    Some((Place::Col as fn(LocalId) -> Place, ctx.weight(&v)))
                } else if numel == m {
                    Some((Place::Row as fn(LocalId) -> Place, ctx.weight(&v)))
                } else {
                    Some((Place::Full as fn(LocalId) -> Place, ctx.weight(&v)))
                }
            }
            None if beta == 1.0 && csh == [m, n] => {
                Some((Place::Full as fn(LocalId) -> Place, ctx.input(2)?.addr))
            }
            None => {
                return Err(Error::unsupported(
                    "Gemm with a computed C that is broadcast or scaled",
                ));
            }
        }
    } else {
        None
    };
    let out = ctx.output(0)?;
    let geo = Geometry {
        out: &out.shape,
        row: 0,
        cols: 1..2,
    };
    let tail = tail(ctx, &geo, out.addr)?;
    let bias_local = ctx.fx().i32();
    if let Some((_, at)) = bias {
        f.func_body().i32_const(at as i32).local_set(bias_local);
    }
    let bias = bias.map(|(kind, _)| kind(bias_local));
    let spec = |fx: &mut Fx| Gemm::dense(fx, [m, n, k], packed, alpha, bias, tail.as_ref());
    batched(ctx, f, &[[a_addr, b_addr, out.addr]], tail.as_ref(), spec)
}

/// The address of Gemm operand `i` laid out row-major: as it is, or
/// transposed at compile time (constants) or into scratch (computed). A
/// constant given `panels` ([rows, cols] once row-major) is also packed
/// into column panels.
fn operand(ctx: &mut Ctx, i: usize, transposed: bool, panels: Option<[usize; 2]>) -> Result<u32> {
    let (_, shape) = ctx.input_type(i)?;
    let (r, c) = (shape[0], shape[1]);
    if let Some(t) = ctx.opt_constant(i)
        && (transposed || panels.is_some())
    {
        let v = t.to_f32s();
        let mut rows = if transposed {
            (0..c * r).map(|e| v[(e % r) * c + e / r]).collect()
        } else {
            v
        };
        if let Some([k, n]) = panels {
            rows = pack_panels(&rows, k, n, ctx.isa.lanes());
        }
        return Ok(ctx.weight(&rows));
    }
    if !transposed {
        return Ok(ctx.input(i)?.addr);
    }
    Err(Error::unsupported(format!(
        "Gemm with a computed transposed input {i} ({r}x{c}) on WebAssembly"
    )))
}

/// `Conv` (2-D and 1-D, groups, pads, strides, dilations) as GEMMs: per
/// batch item and group, weights (M/g × K) times an im2col matrix of the
/// input (K × output pixels), K = C/g · kernel area. 1×1 stride-1
/// unpadded convolutions read the input directly.
pub fn conv(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, w, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    super::require_f32(ctx, &x)?;
    if !(x.is_static() && out.is_static()) {
        return conv_chunks(ctx, f, [&x, &w, &out]);
    }
    let spatial = x.shape.len() - 2;
    if !(1..=2).contains(&spatial) {
        return Err(Error::unsupported(format!(
            "Conv over {spatial} spatial dims on WebAssembly"
        )));
    }
    let win = wpc_ir::ops::Window::new(ctx.attrs(), &x.shape[2..], &w.shape[2..])?;
    let groups = wpc_ir::ops::params::conv_group(ctx.attrs())?;
    // Treat 1-D as 2-D with height 1.
    let dims = |v: &[usize], fill: usize| -> [usize; 2] {
        if v.len() == 1 {
            [fill, v[0]]
        } else {
            [v[0], v[1]]
        }
    };
    let [ih, iw] = dims(&x.shape[2..], 1);
    let [kh, kw] = dims(&w.shape[2..], 1);
    let [oh, ow] = dims(&out.shape[2..], 1);
    let [sh, sw] = dims(&win.strides, 1);
    let [dh, dw] = dims(&win.dilations, 1);
    let [ph, pw] = dims(&win.pads[..spatial], 0);
    let (batch, cin, cout) = (x.shape[0], x.shape[1], w.shape[0]);
    let (cg, mg) = (cin / groups, cout / groups);
    let kk = cg * kh * kw;
    let pixels = oh * ow;
    let direct =
        kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && oh == ih && ow == iw;
    let bias_at = if ctx.has_input(2) {
        Some(ctx.input(2)?.addr)
    } else {
        None
    };
    // The im2col buffer, and where each tap of each pixel reads.
    let (col, offsets) = if direct {
        (0, 0)
    } else {
        (
            ctx.scratch(4 * kk * pixels),
            ctx.scratch(4 * kh * kw * pixels),
        )
    };
    let geo = Geometry {
        out: &out.shape,
        row: 1,
        cols: 2..out.shape.len(),
    };
    let tail = tail(ctx, &geo, out.addr)?;
    let mut fx = ctx.fx();
    let bias_local = fx.i32();
    let bias = bias_at.map(|_| Place::Row(bias_local));
    let g = Gemm::dense(&mut fx, [mg, pixels, kk], false, 1.0, bias, tail.as_ref());
    let (n_i, g_i, xg, first) = (fx.i32(), fx.i32(), fx.i32(), fx.i32());
    let taps_at = TapGeometry {
        kernel: [kh, kw],
        stride: [sh, sw],
        dilation: [dh, dw],
        pad: [ph, pw],
        input: [ih, iw].map(|n| Size::Const(n as i64)),
        out_width: Size::Const(ow as i64),
        pixels: Size::Const(pixels as i64),
        table: offsets,
    };
    let mut b = f.func_body();
    if !direct {
        // Every batch item and group reads the same taps.
        b.i32_const(0).local_set(first);
        tap_offsets(&mut b, &mut fx, &taps_at, first, pixels);
    }
    emit::for_range(&mut b, n_i, 0, batch as i64, 1, |b| {
        emit::for_range(b, g_i, 0, groups as i64, 1, |b| {
            // xg = x + (n·C + g·cg)·H·W·4
            emit::linear(b, &[(n_i, cin), (g_i, cg)], ih * iw * 4, x.addr);
            b.local_set(xg);
            if direct {
                b.local_get(xg).local_set(g.b);
            } else {
                let plane4 = Size::Const((ih * iw * 4) as i64);
                im2col_by_offsets(b, &mut fx, &taps_at, pixels, cg, plane4, xg, col);
                b.i32_const(col as i32).local_set(g.b);
            }
            // a = W + g·mg·K·4; c = out + (n·M + g·mg)·P·4
            emit::linear(b, &[(g_i, mg * kk * 4)], 1, w.addr);
            b.local_set(g.a);
            emit::linear(b, &[(n_i, cout), (g_i, mg)], pixels * 4, out.addr);
            b.local_set(g.c);
            if let Some(at) = bias_at {
                // This group's biases start at bias + g·mg·4.
                emit::linear(b, &[(g_i, mg * 4)], 1, at);
                b.local_set(bias_local);
            }
            if let Some(t) = &tail {
                t.set_bases(b, Some((g_i, mg)));
            }
            emit_gemm(b, &mut fx, &g);
        });
    });
    Ok(())
}

/// Output pixels per GEMM of a Conv whose sizes are dynamic, at most.
const CHUNK: usize = 64;

/// `Conv` whose batch or image size is dynamic: the output pixels of each
/// batch item and group go by chunks of [`CHUNK`] (or of the most pixels
/// the bounds allow, rounded up to 8, where that is fewer: a GEMM over
/// columns no size fills is wasted work), each an im2col of the
/// chunk's pixels (zeros past the last) and a GEMM of static shape into
/// a chunk buffer, whose rows are then copied to the output. Channels,
/// kernel, strides, dilations and pads are compiled in. Where each tap of
/// each pixel of a chunk reads (its offset in a channel's plane, or -1
/// outside the image) is worked out once per chunk, for every channel and
/// group: the im2col then only loads, tests and copies.
fn conv_chunks(ctx: &mut Ctx, f: &mut FunctionBuilder, [x, w, out]: [&Tt; 3]) -> Result<()> {
    let spatial = x.dims.len() - 2;
    if !(1..=2).contains(&spatial) || !w.is_static() {
        return Err(Error::unsupported(
            "Conv at dynamic sizes over other than 1 or 2 spatial dims, or with computed weights",
        ));
    }
    wpc_ir::ops::params::pads_fixed_for_dynamic_sizes("Conv", ctx.attrs())?;
    if ctx.epilogue.is_some() {
        return Err(Error::unsupported("a Conv epilogue at dynamic sizes"));
    }
    let win = wpc_ir::ops::Window::new(ctx.attrs(), &x.shape[2..], &w.shape[2..])?;
    let groups = wpc_ir::ops::params::conv_group(ctx.attrs())?;
    // Treat 1-D as 2-D with height 1.
    let [ih, iw] = hw(&x.dims[2..], Expr::constant(1));
    let [oh, ow] = hw(&out.dims[2..], Expr::constant(1));
    let [kh, kw] = hw(&w.shape[2..], 1);
    let [sh, sw] = hw(&win.strides, 1);
    let [dh, dw] = hw(&win.dilations, 1);
    let [ph, pw] = hw(&win.pads[..spatial], 0);
    let cin = sizes::fixed(&x.dims[1], "Conv input channels")?;
    let cout = w.shape[0];
    let (cg, mg) = (cin / groups, cout / groups);
    let kk = cg * kh * kw;
    let bias_at = if ctx.has_input(2) {
        Some(ctx.input(2)?.addr)
    } else {
        None
    };
    let most: usize = out.shape[2..].iter().product();
    let chunk = CHUNK.min(most.max(1).next_multiple_of(8));
    let col = ctx.scratch(4 * kk * chunk);
    let buf = ctx.scratch(4 * mg * chunk);
    // Per tap and chunk pixel: the byte offset it reads in a channel's
    // plane, or -1 outside the image (or past the last pixel).
    let taps = kh * kw;
    let offsets = ctx.scratch(4 * taps * chunk);
    let plane = ih.mul(&iw);
    let pixels = oh.mul(&ow);
    // 1×1, stride 1, unpadded: the input's channels are B's rows.
    let direct = [kh, kw, sh, sw] == [1; 4] && [ph, pw] == [0; 2] && out.dims[2..] == x.dims[2..];
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let bias_local = fx.i32();
    let bias = bias_at.map(|_| Place::Row(bias_local));
    let g = Gemm::dense(&mut fx, [mg, chunk, kk], false, 1.0, bias, None);
    let [n_i, g_i, p0, valid, m_i, xg, c] = [(); 7].map(|_| fx.i32());
    let mut b = f.func_body();
    let mut sz = Sizes::new(table);
    let [batch, ih, iw, ow, plane4, pixels, pixels4] = [
        x.dims[0].clone(),
        ih,
        iw,
        ow,
        plane.scale(4),
        pixels.clone(),
        pixels.scale(4),
    ]
    .map(|e| sz.of(&mut b, &mut fx, &e));
    let (batch, ih, iw, ow, plane4, pixels, pixels4) =
        (batch?, ih?, iw?, ow?, plane4?, pixels?, pixels4?);
    let taps_at = TapGeometry {
        kernel: [kh, kw],
        stride: [sh, sw],
        dilation: [dh, dw],
        pad: [ph, pw],
        input: [ih, iw],
        out_width: ow,
        pixels,
        table: offsets,
    };
    emit::for_size(&mut b, n_i, Size::Const(0), batch, 1, |b| {
        emit::for_size(b, p0, Size::Const(0), pixels, chunk as i64, |b| {
            // valid = min(p0 + chunk, P) − p0, in bytes.
            b.local_get(p0)
                .i32_const(chunk as i32)
                .binop(BinaryOp::I32Add)
                .local_tee(valid);
            pixels.push(b);
            b.local_get(valid);
            pixels.push(b);
            b.binop(BinaryOp::I32LtU)
                .select(None)
                .local_get(p0)
                .binop(BinaryOp::I32Sub)
                .i32_const(4)
                .binop(BinaryOp::I32Mul)
                .local_set(valid);
            if !direct {
                tap_offsets(b, &mut fx, &taps_at, p0, chunk);
            }
            emit::for_range(b, g_i, 0, groups as i64, 1, |b| {
                // xg = x + (n·C + g·cg)·H·W·4
                emit::linear(b, &[(n_i, cin), (g_i, cg)], 1, 0);
                plane4.push(b);
                b.binop(BinaryOp::I32Mul)
                    .i32_const(x.addr as i32)
                    .binop(BinaryOp::I32Add)
                    .local_set(xg);
                emit::linear(b, &[(g_i, mg * kk * 4)], 1, w.addr);
                b.local_set(g.a);
                if let Some(at) = bias_at {
                    emit::linear(b, &[(g_i, mg * 4)], 1, at);
                    b.local_set(bias_local);
                }
                if direct {
                    // B's rows are the input's channels: copy the chunk of
                    // each (columns past `valid` keep stale values, whose
                    // products are never copied out).
                    emit::for_range(b, c, 0, cg as i64, 1, |b| {
                        emit::linear(b, &[(c, chunk * 4)], 1, col);
                        b.local_get(c);
                        plane4.push(b);
                        b.binop(BinaryOp::I32Mul)
                            .local_get(xg)
                            .binop(BinaryOp::I32Add);
                        emit::linear(b, &[(p0, 4)], 1, 0);
                        b.binop(BinaryOp::I32Add)
                            .local_get(valid)
                            .memory_copy(fx.mem, fx.mem);
                    });
                } else {
                    im2col_by_offsets(b, &mut fx, &taps_at, chunk, cg, plane4, xg, col);
                }
                b.i32_const(col as i32).local_set(g.b);
                b.i32_const(buf as i32).local_set(g.c);
                emit_gemm(b, &mut fx, &g);
                // Copy each row's valid pixels to
                // out + ((n·M + g·mg + m)·P + p0)·4.
                emit::for_range(b, m_i, 0, mg as i64, 1, |b| {
                    emit::linear(b, &[(n_i, cout), (g_i, mg), (m_i, 1)], 1, 0);
                    pixels4.push(b);
                    b.binop(BinaryOp::I32Mul);
                    emit::linear(b, &[(p0, 4)], 1, 0);
                    b.binop(BinaryOp::I32Add)
                        .i32_const(out.addr as i32)
                        .binop(BinaryOp::I32Add);
                    emit::linear(b, &[(m_i, chunk * 4)], 1, buf);
                    b.local_get(valid).memory_copy(fx.mem, fx.mem);
                });
            });
        });
    });
    Ok(())
}
/// Where a Conv's taps read, for [`tap_offsets`]: the window (compiled
/// in), the input's height and width and the output's width and pixel
/// count (sizes that may be dynamic), and the table's address.
struct TapGeometry {
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: [usize; 2],
    input: [Size; 2],
    out_width: Size,
    pixels: Size,
    table: u32,
}

/// Fills `geo.table` for output pixels `p0..p0 + count`: for tap
/// (ky, kx) and pixel p, `table[(ky·kw + kx)·count + p]` is the byte
/// offset of x[iy][ix] in a channel's plane, iy = oy·sh − ph + ky·dh and
/// ix likewise, or -1 where that is outside the image or the pixel past
/// the last. Worked out once for every channel, group and batch item that
/// reads the same pixels, it leaves the im2col ([`im2col_by_offsets`])
/// only loads, tests and copies.
fn tap_offsets(b: &mut InstrSeqBuilder, fx: &mut Fx, geo: &TapGeometry, p0: LocalId, count: usize) {
    let [kh, kw] = geo.kernel;
    let [ih, iw] = geo.input;
    let [p, q, oy0, ox0, ky, kx, iy, ix] = [(); 8].map(|_| fx.i32());
    emit::for_range(b, p, 0, count as i64, 1, |b| {
        b.local_get(p0)
            .local_get(p)
            .binop(BinaryOp::I32Add)
            .local_set(q);
        for (corner, op, k) in [(oy0, BinaryOp::I32DivU, 0), (ox0, BinaryOp::I32RemU, 1)] {
            b.local_get(q);
            geo.out_width.push(b);
            b.binop(op)
                .i32_const(geo.stride[k] as i32)
                .binop(BinaryOp::I32Mul)
                .i32_const(geo.pad[k] as i32)
                .binop(BinaryOp::I32Sub)
                .local_set(corner);
        }
        emit::for_range(b, ky, 0, kh as i64, 1, |b| {
            emit::for_range(b, kx, 0, kw as i64, 1, |b| {
                for (at, corner, tap, dil) in [
                    (iy, oy0, ky, geo.dilation[0]),
                    (ix, ox0, kx, geo.dilation[1]),
                ] {
                    b.local_get(tap)
                        .i32_const(dil as i32)
                        .binop(BinaryOp::I32Mul)
                        .local_get(corner)
                        .binop(BinaryOp::I32Add)
                        .local_set(at);
                }
                // &table[(ky·kw + kx)·count + p]
                b.local_get(ky)
                    .i32_const(kw as i32)
                    .binop(BinaryOp::I32Mul)
                    .local_get(kx)
                    .binop(BinaryOp::I32Add)
                    .i32_const(count as i32)
                    .binop(BinaryOp::I32Mul)
                    .local_get(p)
                    .binop(BinaryOp::I32Add)
                    .i32_const(4)
                    .binop(BinaryOp::I32Mul)
                    .i32_const(geo.table as i32)
                    .binop(BinaryOp::I32Add);
                // (iy·W + ix)·4 where iy < H, ix < W (unsigned) and q < P;
                // else -1.
                b.local_get(iy);
                iw.push(b);
                b.binop(BinaryOp::I32Mul)
                    .local_get(ix)
                    .binop(BinaryOp::I32Add)
                    .i32_const(4)
                    .binop(BinaryOp::I32Mul)
                    .i32_const(-1)
                    .local_get(iy);
                ih.push(b);
                b.binop(BinaryOp::I32LtU).local_get(ix);
                iw.push(b);
                b.binop(BinaryOp::I32LtU)
                    .binop(BinaryOp::I32And)
                    .local_get(q);
                geo.pixels.push(b);
                b.binop(BinaryOp::I32LtU)
                    .binop(BinaryOp::I32And)
                    .select(None);
                emit::store_i32(b, fx, 0);
            });
        });
    });
}

/// The im2col of `count` pixels by the offsets [`tap_offsets`] left in
/// `geo.table`, for `channels` channels of planes `plane4` bytes apart
/// from address `x`: col[(c·kh + ky)·kw + kx][p] = x[c] at the tap's
/// offset, 0 where it is -1.
#[allow(clippy::too_many_arguments)]
fn im2col_by_offsets(
    b: &mut InstrSeqBuilder,
    fx: &mut Fx,
    geo: &TapGeometry,
    count: usize,
    channels: usize,
    plane4: Size,
    x: LocalId,
    col: u32,
) {
    let [c, t, dst, src, plane, off, ok] = [(); 7].map(|_| fx.i32());
    let taps = geo.kernel[0] * geo.kernel[1];
    b.i32_const(col as i32).local_set(dst);
    emit::for_range(b, c, 0, channels as i64, 1, |b| {
        // plane = x + c·H·W·4
        b.local_get(c);
        plane4.push(b);
        b.binop(BinaryOp::I32Mul)
            .local_get(x)
            .binop(BinaryOp::I32Add)
            .local_set(plane);
        b.i32_const(geo.table as i32).local_set(src);
        emit::for_range(b, t, 0, (taps * count) as i64, 1, |b| {
            b.local_get(src);
            emit::load_i32(b, fx, 0);
            b.local_tee(off)
                .i32_const(0)
                .binop(BinaryOp::I32GeS)
                .local_set(ok);
            b.local_get(dst)
                .local_get(plane)
                .local_get(off)
                .binop(BinaryOp::I32Add)
                .local_get(plane)
                .local_get(ok)
                .select(None);
            emit::load(b, fx, 1, 0);
            b.f32_const(0.0).local_get(ok).select(None);
            emit::store(b, fx, 1, 0);
            emit::bump(b, dst, 4);
            emit::bump(b, src, 4);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_cover_every_column_once_in_order_for_every_isa() {
        for lanes in [1, 4] {
            for n in 0..40 {
                let p = Panels::new(n, lanes);
                let mut next = 0;
                for (j, w) in p.spans() {
                    assert_eq!(j, next, "n={n} lanes={lanes}");
                    assert!(w > 0, "n={n} lanes={lanes}: an empty panel");
                    next = j + w;
                }
                assert_eq!(next, n, "lanes={lanes}");
                // Same packing whatever the ISA: the bundle stores it once.
                assert_eq!(
                    p.spans().collect::<Vec<_>>(),
                    Panels::new(n, 1).spans().collect::<Vec<_>>()
                );
            }
        }
        let b: Vec<f32> = (0..3 * 13).map(|x| x as f32).collect();
        let packed = pack_panels(&b, 3, 13, 4);
        assert_eq!(packed.len(), b.len());
        // The 4-wide panel at column 8 starts at element 8·k.
        assert_eq!(&packed[24..28], &[8.0, 9.0, 10.0, 11.0]);
    }
}
