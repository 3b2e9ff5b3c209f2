//! Data movement: views (Transpose, Slice, Expand, Tile, Pad, DepthToSpace
//! and friends), Concat/Split, gathers and scatters, and generators
//! (Range, EyeLike, OneHot, Trilu). Each is one thread per output element
//! computing where its value comes from, with every shape a literal.

use std::fmt::Write;

use wpc_bundle::device_data::Word;
use wpc_ir::ops::params::SliceStrides;
use wpc_ir::ops::params::{PadMode, ScatterReduction};
use wpc_ir::{Error, Result};

use super::index::{
    broadcast_row_major, literal, offset_of, row_major, show, size, strides, unravel, unravel_of,
};
use crate::kernel::{Kernel, Params};
use crate::lower::{Arg, Ctx, Launch, Lowered, Tt};
use wpc_ir::sym::Expr;

/// Reshape, Flatten, Squeeze, Unsqueeze, Identity: same bytes, new shape.
pub fn alias(ctx: &Ctx) -> Result<Lowered> {
    let (x, y) = (ctx.input(0)?, ctx.output(0)?);
    if x.numel() != y.numel() || x.word != y.word {
        return Err(Error::invalid(format!(
            "cannot view {:?} as {:?}",
            x.shape, y.shape
        )));
    }
    Ok(Lowered::Alias)
}

/// One thread per element of `out`; `body` sees output coordinates
/// `o0..` and the flat index `i`, and must store `out0[i]`.
fn per_output(ctx: &Ctx, out: &Tt, inputs: &[(usize, Word)], body: &str, label: &str) -> Lowered {
    per_output_with(ctx, out, inputs, Params::default(), body, label)
}

/// [`per_output`] whose `body` reads dynamic sizes from `params`.
fn per_output_with(
    ctx: &Ctx,
    out: &Tt,
    inputs: &[(usize, Word)],
    params: Params,
    body: &str,
    label: &str,
) -> Lowered {
    let mut k = Kernel::new(format!("{label} {}{:?}", out.dtype.name(), out.shape));
    k.params = params;
    let mut args = Vec::new();
    for &(i, w) in inputs {
        k.input(&format!("in{}", args.len()), w);
        args.push(Arg::In(i));
    }
    k.output("out0", out.word);
    args.push(Arg::Out(0));
    let full = format!("{}{body}", unravel_of(&mut k.params, "i", &out.dims, "o"));
    k.one_per_item_of(
        &out.numel_of(),
        ctx.tuning().elementwise,
        ctx.max_groups(),
        &full,
    );
    Lowered::one(k, args)
}

/// Output element `i` = input 0 at offset `off` (a `u32` expression over `o0..`).
fn view(ctx: &Ctx, off: &str) -> Result<Lowered> {
    view_with(ctx, Params::default(), off)
}

/// [`view`] whose offset reads dynamic sizes from `params`.
fn view_with(ctx: &Ctx, params: Params, off: &str) -> Result<Lowered> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    Ok(per_output_with(
        ctx,
        out,
        &[(0, x.word)],
        params,
        &format!("    out0[i] = in0[{off}];\n"),
        &ctx.node.op,
    ))
}

/// `base + Σ o_d * step_d` with signed steps, as a `u32` expression.
fn signed_offset(base: i64, steps: &[i64]) -> String {
    let mut e = format!("{base}");
    for (d, &s) in steps.iter().enumerate() {
        if s != 0 {
            let _ = write!(e, " + i32(o{d}) * {s}");
        }
    }
    format!("u32({e})")
}

pub fn transpose(ctx: &Ctx) -> Result<Lowered> {
    let x = ctx.input(0)?;
    let rank = x.dims.len();
    let perm = wpc_ir::ops::params::transpose_perm(ctx.attrs(), rank)?;
    let st = row_major(&x.dims);
    let out_strides: Vec<Expr> = perm.iter().map(|&a| st[a].clone()).collect();
    let mut params = Params::default();
    let off = offset_of(&mut params, "o", &out_strides);
    view_with(ctx, params, &off)
}

pub fn slice(ctx: &Ctx) -> Result<Lowered> {
    let x = ctx.input(0)?;
    if !(x.is_static() && ctx.output(0)?.is_static()) {
        return slice_dynamic(ctx);
    }
    let v = wpc_ir::ops::params::SliceView::of_node(&x.shape, |i| ctx.ints(i))?;
    let steps: Vec<i64> = v.strides.iter().map(|&s| s as i64).collect();
    view(ctx, &signed_offset(v.base as i64, &steps))
}

/// Slice where sizes are dynamic (the input's, or an end computed from
/// them): forward steps from starts that are constants or sizes
/// ([`SliceStrides`]); the output's dims (from shape inference) give each
/// axis its length.
fn slice_dynamic(ctx: &Ctx) -> Result<Lowered> {
    let x = ctx.input(0)?;
    let view = SliceStrides::of_node(&x.dims, ctx.size_ints(1), |i| ctx.ints(i), &|s| {
        wpc_ir::graph::bounded_range(ctx.ranges, s)
    })?;
    let (base, step_strides) = (view.base, view.strides);
    let mut params = Params::default();
    let off = format!(
        "{} + {}",
        params.size(&base),
        offset_of(&mut params, "o", &step_strides)
    );
    view_with(ctx, params, &off)
}

pub fn expand(ctx: &Ctx) -> Result<Lowered> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let mut params = Params::default();
    let off = offset_of(&mut params, "o", &broadcast_row_major(&x.dims, &out.dims)?);
    view_with(ctx, params, &off)
}

pub fn tile(ctx: &Ctx) -> Result<Lowered> {
    let x = ctx.input(0)?;
    let st = strides(&x.shape);
    let terms: Vec<String> = (0..x.shape.len())
        .map(|d| format!("(o{d} % {}u) * {}u", x.shape[d].max(1), st[d]))
        .collect();
    view(
        ctx,
        &if terms.is_empty() {
            "0u".into()
        } else {
            terms.join(" + ")
        },
    )
}

/// A tensor's shape for a kernel's label: its sizes, symbolic where dynamic.
fn shown(t: &Tt) -> String {
    if t.is_static() {
        format!("{:?}", t.shape)
    } else {
        show(&t.dims)
    }
}

/// `Concat`: one copy per input into its place along the axis; sizes may
/// be dynamic.
pub fn concat(ctx: &Ctx) -> Result<Lowered> {
    let out = ctx.output(0)?;
    let axis = wpc_ir::ops::params::axis("Concat", ctx.attrs(), out.dims.len())?;
    let out_st = row_major(&out.dims);
    let mut launches = Vec::new();
    let mut at = Expr::constant(0);
    for i in 0..ctx.inputs.len() {
        let Ok(x) = ctx.input(i) else { continue };
        if x.numel() > 0 {
            let mut k = Kernel::new(format!(
                "Concat {}{} into {} at {at}",
                x.dtype.name(),
                shown(x),
                shown(out)
            ));
            k.input("in0", x.word).output("out0", out.word);
            let p = &mut k.params;
            let body = format!(
                "{}    out0[{} + {}] = in0[i];\n",
                unravel_of(p, "i", &x.dims, "o"),
                offset_of(p, "o", &out_st),
                p.size(&at.mul(&out_st[axis]))
            );
            k.one_per_item_of(
                &x.numel_of(),
                ctx.tuning().elementwise,
                ctx.max_groups(),
                &body,
            );
            launches.push(Launch {
                kernel: k,
                args: vec![Arg::In(i), Arg::Out(0)],
            });
        }
        at = at.add(&x.dims[axis]);
    }
    Ok(Lowered::Launches {
        temps: Vec::new(),
        launches,
    })
}

/// `Split`: one copy per output from its place along the axis; sizes may
/// be dynamic.
pub fn split(ctx: &Ctx) -> Result<Lowered> {
    let x = ctx.input(0)?;
    let axis = wpc_ir::ops::params::axis("Split", ctx.attrs(), x.dims.len())?;
    let st = row_major(&x.dims);
    let mut launches = Vec::new();
    let mut at = Expr::constant(0);
    for j in 0..ctx.outputs.len() {
        let Some(out) = ctx.outputs[j].as_ref() else {
            continue;
        };
        let mut k = Kernel::new(format!(
            "Split {}{} from {at}",
            out.dtype.name(),
            shown(out)
        ));
        k.input("in0", x.word).output("out0", out.word);
        let p = &mut k.params;
        let body = format!(
            "{}    out0[i] = in0[{} + {}];\n",
            unravel_of(p, "i", &out.dims, "o"),
            offset_of(p, "o", &st),
            p.size(&at.mul(&st[axis]))
        );
        k.one_per_item_of(
            &out.numel_of(),
            ctx.tuning().elementwise,
            ctx.max_groups(),
            &body,
        );
        launches.push(Launch {
            kernel: k,
            args: vec![Arg::In(0), Arg::Out(j)],
        });
        at = at.add(&out.dims[axis]);
    }
    Ok(Lowered::Launches {
        temps: Vec::new(),
        launches,
    })
}

pub fn pad(ctx: &Ctx) -> Result<Lowered> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let params = wpc_ir::ops::params::Pad::of(ctx.attrs())?;
    let view = wpc_ir::ops::params::PadView::of_node(ctx.attrs(), &x.shape, |i| ctx.ints(i))?;
    let value = params.fill(ctx.has_input(2).then(|| ctx.opt_constant(2)))?;
    shifted(ctx, x, out, &view.before, view.mode, value, "Pad")
}

/// `CenterCropPad`: a constant-zero pad with per-axis shifts, negative
/// where an axis is cropped.
pub fn center_crop_pad(ctx: &Ctx) -> Result<Lowered> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let target = ctx
        .constant(1)?
        .to_i64s()
        .iter()
        .map(|&d| {
            usize::try_from(d)
                .map_err(|_| Error::invalid(format!("CenterCropPad to a negative size {d}")))
        })
        .collect::<Result<Vec<usize>>>()?;
    let (_, begin) = wpc_ir::ops::center_crop_pad_window(&x.shape, &target, ctx.attrs())?;
    shifted(ctx, x, out, &begin, PadMode::Constant, 0.0, "CenterCropPad")
}

/// Output element `o` reads input `o - begin` (per axis); coordinates
/// outside the input are `value` (mode "constant") or folded back in by
/// `mode` (edge, reflect, wrap), as in `Pad`.
fn shifted(
    ctx: &Ctx,
    x: &Tt,
    out: &Tt,
    begin: &[i64],
    mode: PadMode,
    value: f64,
    label: &str,
) -> Result<Lowered> {
    let rank = x.dims.len();
    let st = row_major(&x.dims);
    let mut params = Params::default();
    let mut body = String::new();
    let mut inside = Vec::new();
    for d in 0..rank {
        let n = &x.dims[d];
        let _ = writeln!(body, "    var c{d} = i32(o{d}) - {};", begin[d]);
        match mode {
            PadMode::Constant => inside.push(format!("c{d} >= 0 && c{d} < {}", params.signed(n))),
            PadMode::Edge => {
                let last = params.signed(&n.add(&Expr::constant(-1)));
                let _ = writeln!(body, "    c{d} = clamp(c{d}, 0, {last});");
            }
            PadMode::Reflect => {
                let (n, fold) = (
                    params.signed(n),
                    params.signed(&n.scale(2).add(&Expr::constant(-2))),
                );
                let _ = writeln!(
                    body,
                    "    if (c{d} < 0) {{ c{d} = -c{d}; }}\n    if (c{d} >= {n}) {{ c{d} = {fold} - c{d}; }}"
                );
            }
            PadMode::Wrap => {
                let n = params.signed(n);
                let _ = writeln!(body, "    c{d} = ((c{d} % {n}) + {n}) % {n};");
            }
        }
    }
    let off: Vec<String> = (0..rank)
        .map(|d| format!("c{d} * {}", params.signed(&st[d])))
        .collect();
    let off = if off.is_empty() {
        "0".into()
    } else {
        off.join(" + ")
    };
    let empty = x.dims.iter().any(|d| d.as_const() == Some(0));
    if inside.is_empty() || empty {
        if empty {
            let _ = writeln!(body, "    out0[i] = {};", literal(value, out.word));
        } else {
            let _ = writeln!(body, "    out0[i] = in0[u32({off})];");
        }
    } else {
        let _ = writeln!(
            body,
            "    if ({}) {{ out0[i] = in0[u32({off})]; }} else {{ out0[i] = {}; }}",
            inside.join(" && "),
            literal(value, out.word)
        );
    }
    Ok(per_output_with(
        ctx,
        out,
        &[(0, x.word)],
        params,
        &body,
        label,
    ))
}

pub fn depth_to_space(ctx: &Ctx) -> Result<Lowered> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let blocks = wpc_ir::ops::params::Blocks::of(ctx.attrs())?;
    let b = blocks.blocksize;
    let c_out = out.shape[1];
    let st = strides(&x.shape);
    let ic = if blocks.crd {
        format!("o1 * {}u + (o2 % {b}u) * {b}u + (o3 % {b}u)", b * b)
    } else {
        format!("((o2 % {b}u) * {b}u + (o3 % {b}u)) * {c_out}u + o1")
    };
    view(
        ctx,
        &format!(
            "o0 * {}u + ({ic}) * {}u + (o2 / {b}u) * {}u + (o3 / {b}u)",
            st[0], st[1], st[2]
        ),
    )
}

pub fn space_to_depth(ctx: &Ctx) -> Result<Lowered> {
    let x = ctx.input(0)?;
    let blocks = wpc_ir::ops::params::Blocks::of(ctx.attrs())?;
    let b = blocks.blocksize;
    let c = x.shape[1];
    let st = strides(&x.shape);
    // Which input channel and block offset an output channel holds.
    let (ch, blk) = if blocks.crd {
        (format!("(o1 / {}u)", b * b), format!("(o1 % {}u)", b * b))
    } else {
        (format!("(o1 % {c}u)"), format!("(o1 / {c}u)"))
    };
    view(
        ctx,
        &format!(
            "o0 * {}u + {ch} * {}u + (o2 * {b}u + {blk} / {b}u) * {}u + (o3 * {b}u + {blk} % {b}u)",
            st[0], st[1], st[2]
        ),
    )
}

/// `let k = <index word read from in1 at off>` normalised for negatives.
/// Reads index `k` (an `i32`) from binding `in1` at `off`, counting a
/// negative one from the end of an axis (`n` elements, `last` its last
/// index: WGSL `i32` expressions, see [`axis_size`]) and clamping it into
/// the axis.
fn read_index(ix: &Tt, off: &str, (n, last): (String, String)) -> String {
    let raw = match ix.word {
        Word::I32 => format!("in1[{off}]"),
        _ => format!("i32(in1[{off}])"),
    };
    format!("    var k = {raw};\n    if (k < 0) {{ k = k + {n}; }}\n    k = clamp(k, 0, {last});\n")
}

/// An axis of `n` elements as [`read_index`] takes it: its size and its
/// last index, literals where static.
fn axis_size(params: &mut Params, n: &Expr) -> (String, String) {
    match n.as_const() {
        Some(n) => (n.to_string(), (n.max(1) - 1).to_string()),
        None => {
            let n = params.signed(n);
            (n.clone(), format!("max({n}, 1) - 1"))
        }
    }
}

pub fn gather(ctx: &Ctx) -> Result<Lowered> {
    let (x, ix, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    let axis = wpc_ir::ops::params::axis("Gather", ctx.attrs(), x.dims.len())?;
    let q = ix.dims.len();
    let mut params = Params::default();
    let st = row_major(&x.dims);
    let ist = row_major(&ix.dims);
    let idx_off: Vec<String> = (0..q)
        .map(|j| format!("o{} * {}", axis + j, params.size(&ist[j])))
        .collect();
    let idx_off = if idx_off.is_empty() {
        "0u".into()
    } else {
        idx_off.join(" + ")
    };
    let mut terms: Vec<String> = (0..axis)
        .map(|d| format!("o{d} * {}", params.size(&st[d])))
        .collect();
    terms.push(format!("u32(k) * {}", params.size(&st[axis])));
    for d in axis + 1..x.dims.len() {
        terms.push(format!("o{} * {}", d - 1 + q, params.size(&st[d])));
    }
    let n = axis_size(&mut params, &x.dims[axis]);
    let body = format!(
        "{}    out0[i] = in0[{}];\n",
        read_index(ix, &idx_off, n),
        terms.join(" + ")
    );
    Ok(per_output_with(
        ctx,
        out,
        &[(0, x.word), (1, ix.word)],
        params,
        &body,
        "Gather",
    ))
}

pub fn gather_elements(ctx: &Ctx) -> Result<Lowered> {
    let (x, ix, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    let axis = wpc_ir::ops::params::axis("GatherElements", ctx.attrs(), x.shape.len())?;
    let st = strides(&x.shape);
    let terms: Vec<String> = (0..x.shape.len())
        .map(|d| {
            if d == axis {
                format!("u32(k) * {}u", st[d])
            } else {
                format!("o{d} * {}u", st[d])
            }
        })
        .collect();
    let body = format!(
        "{}    out0[i] = in0[{}];\n",
        read_index(
            ix,
            "i",
            axis_size(&mut Params::default(), &size(x.shape[axis]))
        ),
        terms.join(" + ")
    );
    Ok(per_output(
        ctx,
        out,
        &[(0, x.word), (1, ix.word)],
        &body,
        "GatherElements",
    ))
}

pub fn gather_nd(ctx: &Ctx) -> Result<Lowered> {
    let (x, ix, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    let b = wpc_ir::ops::params::gather_nd_batch_dims(ctx.attrs())?;
    let q = ix.dims.len();
    let r = ix.shape[q - 1];
    let mut params = Params::default();
    let st = row_major(&x.dims);
    let ist = row_major(&ix.dims[..q - 1]);
    // Output coords: o0..o{q-2} index the tuples; the rest index the slice.
    let tuple = offset_of(&mut params, "o", &ist);
    let mut body = format!("    let t = ({tuple}) * {r}u;\n");
    let mut terms: Vec<String> = (0..b)
        .map(|d| format!("o{d} * {}", params.size(&st[d])))
        .collect();
    for j in 0..r {
        let (n, last) = axis_size(&mut params, &x.dims[b + j]);
        let raw = if ix.word == Word::I32 {
            format!("in1[t + {j}u]")
        } else {
            format!("i32(in1[t + {j}u])")
        };
        let _ = writeln!(
            body,
            "    var k{j} = {raw};\n    if (k{j} < 0) {{ k{j} = k{j} + {n}; }}"
        );
        terms.push(format!(
            "u32(clamp(k{j}, 0, {last})) * {}",
            params.size(&st[b + j])
        ));
    }
    for d in b + r..x.dims.len() {
        terms.push(format!("o{} * {}", q - 1 + d - b - r, params.size(&st[d])));
    }
    let _ = writeln!(body, "    out0[i] = in0[{}];", terms.join(" + "));
    Ok(per_output_with(
        ctx,
        out,
        &[(0, x.word), (1, ix.word)],
        params,
        &body,
        "GatherND",
    ))
}

/// The WGSL statement combining `u` into `dst` under a scatter reduction.
fn combine(dst: &str, u: &str, reduction: ScatterReduction) -> String {
    match reduction {
        ScatterReduction::None => format!("{dst} = {u};"),
        ScatterReduction::Add => format!("{dst} = {dst} + {u};"),
        ScatterReduction::Mul => format!("{dst} = {dst} * {u};"),
        ScatterReduction::Max => format!("{dst} = max({dst}, {u});"),
        ScatterReduction::Min => format!("{dst} = min({dst}, {u});"),
    }
}

/// Copy `data` to the output, then apply the updates in one invocation, in
/// order, so duplicate indices combine exactly as the reference does.
fn scatter(ctx: &Ctx, loop_body: String, updates: usize) -> Result<Lowered> {
    let (x, ix, up, out) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?, ctx.output(0)?);
    let copy = super::copy_kernel(&x.numel_of(), ctx);
    let mut k = Kernel::new(format!(
        "{} {}{:?} updates {}",
        ctx.node.op,
        out.dtype.name(),
        out.shape,
        updates
    ));
    k.input("in1", ix.word)
        .input("in2", up.word)
        .output("out0", out.word);
    k.workgroup_size = [1, 1, 1];
    k.workgroups = [1, 1, 1];
    k.body = format!("    for (var i = 0u; i < {updates}u; i = i + 1u) {{\n{loop_body}    }}\n");
    Ok(Lowered::Launches {
        temps: Vec::new(),
        launches: vec![
            Launch {
                kernel: copy,
                args: vec![Arg::In(0), Arg::Out(0)],
            },
            Launch {
                kernel: k,
                args: vec![Arg::In(1), Arg::In(2), Arg::Out(0)],
            },
        ],
    })
}

pub fn scatter_nd(ctx: &Ctx) -> Result<Lowered> {
    let (x, ix, up) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let q = ix.shape.len();
    let r = ix.shape[q - 1];
    let slice: usize = x.shape[r..].iter().product();
    let st = strides(&x.shape);
    let mut b =
        format!("        let t = (i / {slice}u) * {r}u;\n        var off = i % {slice}u;\n");
    for j in 0..r {
        let n = x.shape[j];
        let raw = if ix.word == Word::I32 {
            format!("in1[t + {j}u]")
        } else {
            format!("i32(in1[t + {j}u])")
        };
        let _ = writeln!(
            b,
            "        var k{j} = {raw};\n        if (k{j} < 0) {{ k{j} = k{j} + {n}; }}\n        off = off + u32(k{j}) * {}u;",
            st[j]
        );
    }
    let reduction = wpc_ir::ops::params::ScatterReduction::of(ctx.attrs())?;
    let _ = writeln!(b, "        {}", combine("out0[off]", "in2[i]", reduction));
    scatter(ctx, b, up.numel())
}

pub fn scatter_elements(ctx: &Ctx) -> Result<Lowered> {
    let (x, ix) = (ctx.input(0)?, ctx.input(1)?);
    let axis = wpc_ir::ops::params::axis("ScatterElements", ctx.attrs(), x.shape.len())?;
    let st = strides(&x.shape);
    let mut b = unravel("i", &ix.shape, "u").replace("    let", "        let");
    let raw = if ix.word == Word::I32 {
        "in1[i]".to_string()
    } else {
        "i32(in1[i])".to_string()
    };
    let _ = writeln!(
        b,
        "        var k = {raw};\n        if (k < 0) {{ k = k + {}; }}",
        x.shape[axis]
    );
    let terms: Vec<String> = (0..x.shape.len())
        .map(|d| {
            if d == axis {
                format!("u32(k) * {}u", st[d])
            } else {
                format!("u{d} * {}u", st[d])
            }
        })
        .collect();
    let reduction = wpc_ir::ops::params::ScatterReduction::of(ctx.attrs())?;
    let _ = writeln!(
        b,
        "        let off = {};\n        {}",
        terms.join(" + "),
        combine("out0[off]", "in2[i]", reduction)
    );
    scatter(ctx, b, ix.numel())
}

pub fn trilu(ctx: &Ctx) -> Result<Lowered> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let k = ctx
        .opt_constant(1)
        .map(|t| t.first_i64())
        .transpose()?
        .unwrap_or(0);
    if ctx.has_input(1) && ctx.opt_constant(1).is_none() {
        return Err(Error::unsupported("Trilu with a non-constant k"));
    }
    let r = x.shape.len();
    let upper = wpc_ir::ops::params::trilu_upper(ctx.attrs())?;
    let keep = if upper {
        format!("i32(o{}) - i32(o{}) >= {k}", r - 1, r - 2)
    } else {
        format!("i32(o{}) - i32(o{}) <= {k}", r - 1, r - 2)
    };
    let body = format!(
        "    out0[i] = select({}, in0[i], {keep});\n",
        literal(0.0, out.word)
    );
    Ok(per_output(ctx, out, &[(0, x.word)], &body, "Trilu"))
}

pub fn range(ctx: &Ctx) -> Result<Lowered> {
    let out = ctx.output(0)?;
    let w = out.word.wgsl();
    let body = format!("    out0[i] = in0[0] + {w}(i) * in1[0];\n");
    let mut k = Kernel::new(format!("Range {}{:?}", out.dtype.name(), out.shape));
    k.input("in0", out.word)
        .input("in1", out.word)
        .output("out0", out.word);
    k.one_per_item(
        out.numel(),
        ctx.tuning().elementwise,
        ctx.max_groups(),
        &body,
    );
    Ok(Lowered::one(k, vec![Arg::In(0), Arg::In(2), Arg::Out(0)]))
}

pub fn eye_like(ctx: &Ctx) -> Result<Lowered> {
    let out = ctx.output(0)?;
    let k = wpc_ir::ops::params::eye_like_diagonal(ctx.attrs())?;
    let body = format!(
        "    out0[i] = select({}, {}, i32(o1) - i32(o0) == {k});\n",
        literal(0.0, out.word),
        literal(1.0, out.word)
    );
    Ok(per_output(ctx, out, &[], &body, "EyeLike"))
}

pub fn one_hot(ctx: &Ctx) -> Result<Lowered> {
    let (ix, vals, out) = (ctx.input(0)?, ctx.input(2)?, ctx.output(0)?);
    let rank = out.shape.len();
    let axis = wpc_ir::ops::params::axis("OneHot", ctx.attrs(), rank)?;
    let depth = out.shape[axis];
    let ist = strides(&ix.shape);
    let terms: Vec<String> = (0..rank)
        .filter(|&d| d != axis)
        .enumerate()
        .map(|(j, d)| format!("o{d} * {}u", ist[j]))
        .collect();
    let off = if terms.is_empty() {
        "0u".into()
    } else {
        terms.join(" + ")
    };
    let raw = match ix.word {
        Word::F32 => format!("i32(trunc(in0[{off}]))"),
        Word::I32 => format!("in0[{off}]"),
        Word::U32 => format!("i32(in0[{off}])"),
    };
    let body = format!(
        "    var k = {raw};\n    if (k < 0) {{ k = k + {depth}; }}\n    out0[i] = select(in1[0], in1[1], k == i32(o{axis}));\n"
    );
    Ok(per_output(
        ctx,
        out,
        &[(0, ix.word), (2, vals.word)],
        &body,
        "OneHot",
    ))
}
