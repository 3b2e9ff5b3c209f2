//! Data movement: Concat as bulk `memory.copy` per contiguous block;
//! Transpose, Expand, Slice, Tile and Split as strided copies (nested
//! loops in output order, the input pointer walking permuted, broadcast
//! or sliced strides); Pad as row copies through per-axis tables; and
//! Gather as one copy per selected block. All of
//! them move elements of any width, so they serve every dtype.

use walrus::ir::{BinaryOp, ExtendedLoad, LoadKind, MemArg, StoreKind};
use walrus::{FunctionBuilder, InstrSeqBuilder, LocalId, MemoryId};
use wpc_ir::ops::params::{Pad, PadMode, PadView, SliceStrides, broadcast_row_major, row_major};
use wpc_ir::ops::util::broadcast_shapes;
use wpc_ir::tensor::strides;
use wpc_ir::{DType, Error, Result, Tensor};

use super::elementwise::Walk;
use crate::emit::{self, Fx};
use crate::lower::Ctx;
use crate::sizes::{Size, Sizes};
use wpc_ir::sym::Expr;

/// `Concat`: per input, `outer` blocks of `axis size · inner` elements,
/// each one `memory.copy`; any of those sizes may be dynamic.
pub fn concat(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let out = ctx.output(0)?;
    let axis = wpc_ir::ops::params::axis("Concat", ctx.attrs(), out.dims.len())?;
    let elem = out.dtype.size() as i64;
    let outer = Expr::product(&out.dims[..axis]);
    let inner = Expr::product(&out.dims[axis + 1..]).scale(elem);
    let row = out.dims[axis].mul(&inner);
    let mut placed = Expr::constant(0);
    let mut copies = Vec::new();
    for i in 0..ctx.node.inputs.len() {
        let t = ctx.input(i)?;
        let block = t
            .dims
            .get(axis)
            .map_or(Expr::constant(0), |d| d.mul(&inner));
        if block.as_const() != Some(0) {
            copies.push((t.addr, block.clone(), placed.clone()));
        }
        placed = placed.add(&block);
    }
    if placed != row && placed.as_const().is_some() && row.as_const().is_some() {
        return Err(Error::invalid("Concat inputs do not add up to the output"));
    }
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let (o, src, dst) = (fx.i32(), fx.i32(), fx.i32());
    let mem = fx.mem;
    let mut b = f.func_body();
    let mut sizes = Sizes::new(table);
    let [outer, row] = [outer, row].map(|e| sizes.of(&mut b, &mut fx, &e));
    let (outer, row) = (outer?, row?);
    for (addr, block, at) in copies {
        let (block, at) = (
            sizes.of(&mut b, &mut fx, &block)?,
            sizes.of(&mut b, &mut fx, &at)?,
        );
        b.i32_const(addr as i32).local_set(src);
        b.i32_const(out.addr as i32);
        at.push(&mut b);
        b.binop(BinaryOp::I32Add).local_set(dst);
        emit::for_size(&mut b, o, Size::Const(0), outer, 1, |b| {
            b.local_get(dst).local_get(src);
            block.push(b);
            b.memory_copy(mem, mem);
            emit::bump_size(b, src, block);
            emit::bump_size(b, dst, row);
        });
    }
    Ok(())
}

/// `Transpose`: output-order loops; the input pointer steps by the
/// permuted strides.
pub fn transpose(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let rank = x.shape.len();
    let perm = wpc_ir::ops::params::transpose_perm(ctx.attrs(), rank)?;
    let strides = row_major(&x.dims);
    let reads = perm.iter().map(|&p| strides[p].clone()).collect();
    strided_copy(ctx, f, (x.addr, Expr::constant(0)), &out, reads)
}

/// `Expand`: each output element from the input element it broadcasts
/// from (stride 0 along the axes the input has size 1 or lacks).
pub fn expand(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    // (At dynamic sizes `broadcast_row_major` refuses what it cannot map.)
    if x.is_static() && out.is_static() && broadcast_shapes(&[&x.shape, &out.shape])? != out.shape {
        return Err(Error::invalid(
            "Expand's input does not broadcast to its output",
        ));
    }
    let reads = broadcast_row_major(&x.dims, &out.dims)?;
    strided_copy(ctx, f, (x.addr, Expr::constant(0)), &out, reads)
}

/// `Slice`: one strided copy from the first element it selects, the
/// input pointer stepping by the sliced strides (backwards along an axis
/// with a negative step).
pub fn slice(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    if !x.is_static() {
        // Forward steps from starts that are constants or sizes.
        let view = SliceStrides::of_node(&x.dims, ctx.size_ints(1), |i| ctx.ints(i), &|s| {
            wpc_ir::graph::bounded_range(ctx.ranges, s)
        })?;
        return strided_copy(ctx, f, (x.addr, view.base), &out, view.strides);
    }
    // Ends known only at run time (a table sliced to a dynamic length)
    // move no start or stride: the output's dynamic shape says how far
    // the copy goes.
    let open_ends = ctx.has_input(2) && ctx.opt_constant(2).is_none();
    let steps = match open_ends {
        true => {
            let starts = ctx.ints(1)?.map_or(0, |s| s.len());
            Some(ctx.ints(4)?.unwrap_or_else(|| vec![1; starts]))
        }
        false => None,
    };
    let v = wpc_ir::ops::params::SliceView::of_node(&x.shape, |i| match (i, &steps) {
        (2, Some(steps)) => Ok(Some(
            steps
                .iter()
                .map(|&s| if s < 0 { i64::MIN } else { i64::MAX })
                .collect(),
        )),
        _ => ctx.ints(i),
    })?;
    let from = x.addr as isize + v.base * x.dtype.size() as isize;
    strided_copy(
        ctx,
        f,
        (from as u32, Expr::constant(0)),
        &out,
        constants(&v.strides),
    )
}

/// `Tile`: output dim `d` (`reps · n` long) walked as two, the repeat
/// (stride 0) outside the input's own dim, so the copy reads each
/// input row `reps` times.
pub fn tile(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let st = strides(&x.shape);
    let mut walked = crate::lower::Tt {
        shape: Vec::new(),
        ..out.clone()
    };
    let mut reads = Vec::new();
    for (d, &n) in x.shape.iter().enumerate() {
        walked.shape.extend([out.shape[d] / n.max(1), n]);
        reads.extend([0, st[d] as isize]);
    }
    walked.dims = walked
        .shape
        .iter()
        .map(|&d| Expr::constant(d as i64))
        .collect();
    strided_copy(
        ctx,
        f,
        (x.addr, Expr::constant(0)),
        &walked,
        constants(&reads),
    )
}

/// `Split`: per output, one strided copy of its block along the axis.
pub fn split(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let x = ctx.input(0)?;
    let axis = wpc_ir::ops::params::axis("Split", ctx.attrs(), x.shape.len())?;
    let st = row_major(&x.dims);
    let mut at = Expr::constant(0);
    for j in 0..ctx.node.outputs.len() {
        if !ctx.wants_output(j) {
            return Err(Error::unsupported("an omitted Split output"));
        }
        let out = ctx.output(j)?;
        let skip = at.mul(&st[axis]);
        strided_copy(ctx, f, (x.addr, skip), &out, st.clone())?;
        at = at.add(&out.dims[axis]);
    }
    Ok(())
}

/// `Pad`, every mode: output rows are copied from the input rows
/// [`PadView::source`] maps them to, read from one table per padded axis
/// (the byte offset of each output coordinate's source, or -1 where a
/// constant pad puts its value, filled in first). Trailing axes that are
/// not padded are copied as whole rows. At static sizes the tables are
/// data; where sizes are dynamic (the pads are still constants) the
/// kernel first works them out for the run's sizes ([`source_table`]).
pub fn pad(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let params = Pad::of(ctx.attrs())?;
    let view = PadView::of_node(ctx.attrs(), &x.shape, |i| ctx.ints(i))?;
    let value = params.fill(ctx.has_input(2).then(|| ctx.opt_constant(2)))?;
    let size = x.dtype.size();
    let rank = x.shape.len();
    let dynamic = !(x.is_static() && out.is_static());
    // Axes `padded..` are copied whole, `row` bytes at a time.
    let padded = (0..rank)
        .rposition(|d| !view.unpadded(d))
        .map_or(0, |d| d + 1);
    let row = Expr::product(&x.dims[padded..]).scale(size as i64);
    let (tables, fills) = if dynamic {
        // Entries are -1 also where an axis is empty at run time.
        let tables: Vec<u32> = (0..padded).map(|d| ctx.scratch(4 * out.shape[d])).collect();
        (tables, true)
    } else {
        let xs = strides(&x.shape);
        let tables: Vec<Vec<i32>> = (0..padded)
            .map(|d| {
                (0..out.shape[d])
                    .map(|o| view.source(d, o).map_or(-1, |q| (q * xs[d] * size) as i32))
                    .collect()
            })
            .collect();
        let fills = tables.iter().flatten().any(|&t| t < 0);
        let tables = tables
            .into_iter()
            .map(|t| ctx.data(t.into_iter().flat_map(i32::to_le_bytes).collect()))
            .collect();
        (tables, fills)
    };
    let element = Tensor::from_f64s(out.dtype, vec![1], [value]).to_le_bytes();
    let access = element_access(size)?;
    let table_sizes = ctx.sizes;
    let mut fx = ctx.fx();
    let mem = fx.mem;
    let locals = RowLocals {
        dst: fx.i32(),
        t: fx.i32(),
        levels: (0..padded).map(|_| (fx.i32(), fx.i32())).collect(),
    };
    let mut b = f.func_body();
    let mut sizes = Sizes::new(table_sizes);
    let input_strides = row_major(&x.dims);
    if dynamic {
        for (d, &at) in tables.iter().enumerate() {
            let axis = Axis {
                input: sizes.of(&mut b, &mut fx, &x.dims[d])?,
                output: sizes.of(&mut b, &mut fx, &out.dims[d])?,
                stride: sizes.of(&mut b, &mut fx, &input_strides[d].scale(size as i64))?,
                before: view.before[d],
            };
            source_table(&mut b, &mut fx, view.mode, &axis, at);
        }
    }
    let walk = RowWalk {
        dims: sizes.all(&mut b, &mut fx, &out.dims[..padded])?,
        tables,
        // Output bytes under one coordinate of each axis (for skipped ones).
        under: (0..padded)
            .map(|d| {
                let e = Expr::product(&out.dims[d + 1..padded]).mul(&row);
                sizes.of(&mut b, &mut fx, &e)
            })
            .collect::<Result<_>>()?,
        row: sizes.of(&mut b, &mut fx, &row)?,
        size,
        access,
        base: x.addr,
        skips: fills,
    };
    if fills {
        let count = sizes.of(&mut b, &mut fx, &Expr::product(&out.dims))?;
        // (`dst` is free until the walk starts.)
        let walking = (locals.t, locals.dst);
        fill(&mut b, mem, walking, (out.addr, count), &element, access.1);
    }
    // (Rows may be empty at dynamic sizes: their copies move nothing.)
    b.i32_const(out.addr as i32).local_set(locals.dst);
    walk.level(&mut b, mem, &locals, 0, None);
    Ok(())
}

/// One padded axis at run time: the input's and output's sizes, the
/// input's stride in bytes, and the (constant) pad before it.
struct Axis {
    input: Size,
    output: Size,
    stride: Size,
    before: i64,
}

/// Fills the table at `at` for the run's sizes: for each output
/// coordinate o, the byte offset of the input coordinate q that
/// [`PadView::source`] maps it to (q · stride), or -1 where q is outside
/// the input (a constant pad, or an empty axis).
fn source_table(b: &mut InstrSeqBuilder, fx: &mut Fx, mode: PadMode, axis: &Axis, at: u32) {
    let [o, p, q, k] = [(); 4].map(|_| fx.i32());
    let n = |b: &mut InstrSeqBuilder| axis.input.push(b);
    // q = p mod k, flooring (k at least 1): r + k where r < 0, else r.
    let rem_euclid = |b: &mut InstrSeqBuilder| {
        b.local_get(p)
            .local_get(k)
            .binop(BinaryOp::I32RemS)
            .local_tee(q)
            .local_get(k)
            .binop(BinaryOp::I32Add)
            .local_get(q)
            .local_get(q)
            .i32_const(0)
            .binop(BinaryOp::I32LtS)
            .select(None)
            .local_set(q);
    };
    let at_least_one = |b: &mut InstrSeqBuilder| {
        b.local_tee(k)
            .i32_const(1)
            .local_get(k)
            .i32_const(1)
            .binop(BinaryOp::I32GtS)
            .select(None)
            .local_set(k);
    };
    emit::for_size(b, o, Size::Const(0), axis.output, 1, |b| {
        b.local_get(o)
            .i32_const(axis.before as i32)
            .binop(BinaryOp::I32Sub)
            .local_set(p);
        match mode {
            PadMode::Constant => {
                b.local_get(p).local_set(q);
            }
            PadMode::Edge => {
                // q = max(0, min(p, n - 1))
                n(b);
                b.i32_const(1).binop(BinaryOp::I32Sub).local_set(k);
                b.local_get(p)
                    .local_get(k)
                    .local_get(p)
                    .local_get(k)
                    .binop(BinaryOp::I32LtS)
                    .select(None)
                    .local_tee(q)
                    .i32_const(0)
                    .local_get(q)
                    .i32_const(0)
                    .binop(BinaryOp::I32GtS)
                    .select(None)
                    .local_set(q);
            }
            PadMode::Reflect => {
                // m = p mod 2(n - 1); q = m < n ? m : 2(n - 1) - m (q = 0
                // where n is 1).
                n(b);
                b.i32_const(1)
                    .binop(BinaryOp::I32Sub)
                    .i32_const(2)
                    .binop(BinaryOp::I32Mul);
                at_least_one(b);
                rem_euclid(b);
                b.local_get(q);
                b.local_get(k).local_get(q).binop(BinaryOp::I32Sub);
                b.local_get(q);
                n(b);
                b.binop(BinaryOp::I32LtS).select(None).local_set(q);
            }
            PadMode::Wrap => {
                n(b);
                at_least_one(b);
                rem_euclid(b);
            }
        }
        // table[o] = 0 <= q < n ? q · stride : -1
        b.local_get(o).i32_const(4).binop(BinaryOp::I32Mul);
        b.local_get(q);
        axis.stride.push(b);
        b.binop(BinaryOp::I32Mul).i32_const(-1);
        b.local_get(q);
        n(b);
        b.binop(BinaryOp::I32LtU).select(None);
        b.store(
            fx.mem,
            StoreKind::I32 { atomic: false },
            MemArg {
                align: 2,
                offset: at as u64,
            },
        );
    });
}

/// Output rows copied from input rows found through per-axis tables of
/// byte offsets (a negative entry skips the row: it keeps the fill).
struct RowWalk {
    dims: Vec<Size>,
    tables: Vec<u32>,
    under: Vec<Size>,
    row: Size,
    size: usize,
    access: (LoadKind, StoreKind),
    base: u32,
    skips: bool,
}

/// The locals of a [`RowWalk`]: the output pointer, a table entry, and
/// per level its counter and source pointer.
struct RowLocals {
    dst: LocalId,
    t: LocalId,
    levels: Vec<(LocalId, LocalId)>,
}

impl RowWalk {
    fn level(
        &self,
        b: &mut InstrSeqBuilder,
        mem: MemoryId,
        l: &RowLocals,
        d: usize,
        parent: Option<LocalId>,
    ) {
        if d == self.dims.len() {
            self.copy_row(b, mem, l, parent);
            return;
        }
        let (o, src) = l.levels[d];
        emit::for_size(b, o, Size::Const(0), self.dims[d], 1, |b| {
            let table = MemArg {
                align: 2,
                offset: self.tables[d] as u64,
            };
            b.local_get(o)
                .i32_const(4)
                .binop(BinaryOp::I32Mul)
                .load(mem, LoadKind::I32 { atomic: false }, table)
                .local_tee(l.t);
            match parent {
                Some(p) => b.local_get(p),
                None => b.i32_const(self.base as i32),
            };
            b.binop(BinaryOp::I32Add).local_set(src);
            if self.skips {
                b.local_get(l.t)
                    .i32_const(0)
                    .binop(BinaryOp::I32LtS)
                    .if_else(
                        None,
                        |skip| emit::bump_size(skip, l.dst, self.under[d]),
                        |copy| self.level(copy, mem, l, d + 1, Some(src)),
                    );
            } else {
                self.level(b, mem, l, d + 1, Some(src));
            }
        });
    }

    fn copy_row(
        &self,
        b: &mut InstrSeqBuilder,
        mem: MemoryId,
        l: &RowLocals,
        src: Option<LocalId>,
    ) {
        b.local_get(l.dst);
        match src {
            Some(s) => b.local_get(s),
            None => b.i32_const(self.base as i32),
        };
        if self.row == Size::Const(self.size as i64) {
            let arg = MemArg {
                align: self.size.trailing_zeros(),
                offset: 0,
            };
            b.load(mem, self.access.0, arg)
                .store(mem, self.access.1, arg);
        } else {
            self.row.push(b);
            b.memory_copy(mem, mem);
        }
        emit::bump_size(b, l.dst, self.row);
    }
}

/// Sets `count` elements from `at` to `element` (its little-endian
/// bytes): `memory.fill` for a repeated byte, else a store per element,
/// `p` walking the addresses up to `end` (where the count is dynamic).
fn fill(
    b: &mut InstrSeqBuilder,
    mem: MemoryId,
    (p, end): (LocalId, LocalId),
    (at, count): (u32, Size),
    element: &[u8],
    store: StoreKind,
) {
    let size = element.len();
    let push_bytes = |b: &mut InstrSeqBuilder| match count {
        Size::Const(n) => {
            b.i32_const((n as usize * size) as i32);
        }
        Size::Local(n) => {
            b.local_get(n)
                .i32_const(size as i32)
                .binop(BinaryOp::I32Mul);
        }
    };
    if element.iter().all(|&x| x == element[0]) {
        b.i32_const(at as i32).i32_const(i32::from(element[0]));
        push_bytes(b);
        b.memory_fill(mem);
        return;
    }
    let mut word = [0u8; 8];
    word[..size].copy_from_slice(element);
    let word = i64::from_le_bytes(word);
    let arg = MemArg {
        align: size.trailing_zeros(),
        offset: 0,
    };
    let end = match count {
        Size::Const(n) => Size::Const(i64::from(at) + n * size as i64),
        Size::Local(_) => {
            push_bytes(b);
            b.i32_const(at as i32)
                .binop(BinaryOp::I32Add)
                .local_set(end);
            Size::Local(end)
        }
    };
    emit::for_size(b, p, Size::Const(i64::from(at)), end, size as i64, |b| {
        b.local_get(p);
        if size == 8 {
            b.i64_const(word);
        } else {
            b.i32_const(word as i32);
        }
        b.store(mem, store, arg);
    });
}

fn constants(strides: &[isize]) -> Vec<Expr> {
    strides.iter().map(|&s| Expr::constant(s as i64)).collect()
}

/// The load and store that move one element of `size` bytes (any dtype
/// of that width) through an integer of the same width.
fn element_access(size: usize) -> Result<(LoadKind, StoreKind)> {
    Ok(match size {
        1 => (
            LoadKind::I32_8 {
                kind: ExtendedLoad::ZeroExtend,
            },
            StoreKind::I32_8 { atomic: false },
        ),
        2 => (
            LoadKind::I32_16 {
                kind: ExtendedLoad::ZeroExtend,
            },
            StoreKind::I32_16 { atomic: false },
        ),
        4 => (
            LoadKind::I32 { atomic: false },
            StoreKind::I32 { atomic: false },
        ),
        8 => (
            LoadKind::I64 { atomic: false },
            StoreKind::I64 { atomic: false },
        ),
        other => return Err(Error::unsupported(format!("copying {other}-byte elements"))),
    })
}

/// Copies into `out`, in its order, the elements of the tensor at `from`
/// (an address, then a count of elements to skip, a size) whose element
/// strides per output dim are `reads` (sizes too; negative ones walk
/// backwards): nested loops with a pointer per tensor, one load and store
/// of the element's width (any dtype) per element.
fn strided_copy(
    ctx: &mut Ctx,
    f: &mut FunctionBuilder,
    (from, skip): (u32, Expr),
    out: &crate::lower::Tt,
    reads: Vec<Expr>,
) -> Result<()> {
    let size = out.dtype.size();
    let (load, store) = element_access(size)?;
    let rank = out.dims.len();
    // Element strides per dim of the input (as read) and the output; the
    // output's sizes may be dynamic.
    let (dims, steps) = if rank == 0 {
        (vec![Expr::constant(1)], vec![vec![Expr::constant(0)]; 2])
    } else {
        (out.dims.clone(), vec![reads, row_major(&out.dims)])
    };
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let ptrs = [fx.i32(), fx.i32()];
    let idx: Vec<_> = dims.iter().map(|_| fx.i32()).collect();
    let mem = fx.mem;
    let mut b = f.func_body();
    let mut sizes = Sizes::new(table);
    let first = sizes.of(&mut b, &mut fx, &skip.scale(size as i64))?;
    let step = sizes.of(
        &mut b,
        &mut fx,
        &steps[0][dims.len() - 1].scale(size as i64),
    )?;
    match first {
        Size::Const(c) => b.i32_const(from as i32 + c as i32),
        dynamic => {
            b.i32_const(from as i32);
            dynamic.push(&mut b);
            b.binop(BinaryOp::I32Add)
        }
    };
    b.local_set(ptrs[0])
        .i32_const(out.addr as i32)
        .local_set(ptrs[1]);
    let walk = Walk::new(
        &mut b, &mut fx, &mut sizes, size, &dims, &steps, &ptrs, &idx,
    )?;
    let n = *walk.dims.last().expect("at least one dim");
    let align = size.trailing_zeros();
    let arg = MemArg { align, offset: 0 };
    walk.level(&mut b, &mut fx, 0, &mut |b, _, i| {
        emit::for_size(b, i, Size::Const(0), n, 1, |b| {
            b.local_get(ptrs[1])
                .local_get(ptrs[0])
                .load(mem, load, arg)
                .store(mem, store, arg);
            emit::bump_size(b, ptrs[0], step);
            emit::bump(b, ptrs[1], size as i64);
        });
    });
    Ok(())
}

/// `Gather`: for each outer index and each (run-time) index, one bulk copy
/// of the `inner` elements it selects; negative indices count from the end.
pub fn gather(ctx: &mut Ctx, f: &mut FunctionBuilder) -> Result<()> {
    let (data, idx, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    let axis = wpc_ir::ops::params::axis("Gather", ctx.attrs(), data.shape.len())?;
    // The indices' count may be dynamic (token ids of a dynamic sequence),
    // and so may the data's dims other than the gathered one.
    let outer = Expr::product(&data.dims[..axis]);
    let dim = crate::sizes::fixed(&data.dims[axis], "Gather along an axis of")?;
    let block = Expr::product(&data.dims[axis + 1..]).scale(data.dtype.size() as i64);
    let count = Expr::product(&idx.dims);
    let wide = match idx.dtype {
        DType::I64 => true,
        DType::I32 => false,
        other => return Err(Error::invalid(format!("Gather indices are {other}"))),
    };
    let table = ctx.sizes;
    let mut fx = ctx.fx();
    let mem = fx.mem;
    let (o, t, i, dst) = (fx.i32(), fx.i32(), fx.i32(), fx.i32());
    let mut b = f.func_body();
    let mut sizes = Sizes::new(table);
    let [count, outer, block] = [count, outer, block].map(|e| sizes.of(&mut b, &mut fx, &e));
    let (count, outer, block) = (count?, outer?, block?);
    b.i32_const(out.addr as i32).local_set(dst);
    emit::for_size(&mut b, o, Size::Const(0), outer, 1, |b| {
        emit::for_size(b, t, Size::Const(0), count, 1, |b| {
            emit::load_axis_index(b, &fx, (idx.addr as u64, wide), t, i, dim);
            b.local_get(dst);
            b.local_get(o)
                .i32_const(dim as i32)
                .binop(BinaryOp::I32Mul)
                .local_get(i)
                .binop(BinaryOp::I32Add);
            block.push(b);
            b.binop(BinaryOp::I32Mul)
                .i32_const(data.addr as i32)
                .binop(BinaryOp::I32Add);
            block.push(b);
            b.memory_copy(mem, mem);
            emit::bump_size(b, dst, block);
        });
    });
    Ok(())
}
