//! Ops whose output size only the data decides (NonZero,
//! NonMaxSuppression). Each writes its output at the size the run needs,
//! within a buffer made for the most it can be, and the size itself into
//! a buffer of its own that the dispatch's `counts` names: the runtime
//! reads it back after that dispatch and sizes every later one by it
//! (see ARCHITECTURE.md, data-dependent shapes).

use std::fmt::Write;

use wpc_bundle::device_data::Word;
use wpc_ir::{Error, Result};

use super::index::{show, unravel_of};
use crate::kernel::Kernel;
use crate::lower::{Arg, Ctx, Launch, Lowered, Tt};

/// Threads of the one workgroup that compacts a tensor.
const THREADS: u32 = 64;

/// The symbol of dim `axis` of `t`, a size the data decides.
fn counted_dim(t: &Tt, axis: usize, op: &str) -> Result<String> {
    t.dims
        .get(axis)
        .and_then(|d| d.as_sym())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::invalid(format!(
                "{op}'s output {} has no counted size at dim {axis}",
                show(&t.dims)
            ))
        })
}

/// `NonZero`: one workgroup; each thread counts the non-zeros of its
/// stretch of the input, a scan over the threads gives each its first
/// output column, and a second walk writes the coordinates of each
/// non-zero, in row-major order, as the columns of `[rank, count]`.
pub fn non_zero(ctx: &Ctx) -> Result<Lowered> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let rank = x.dims.len();
    if rank == 0 {
        return Err(Error::unsupported("NonZero of a scalar"));
    }
    let dim = counted_dim(out, 1, "NonZero")?;
    let mut k = Kernel::new(format!("NonZero {}{}", x.dtype.name(), show(&x.dims)));
    k.input("in0", x.word)
        .output("out0", out.word)
        .output("count", Word::U32);
    k.workgroup_size = [THREADS, 1, 1];
    k.workgroup_bytes = 4 * (THREADS + 1);
    k.decls = format!("var<workgroup> first: array<u32, {THREADS}>;\nvar<workgroup> total: u32;\n");
    k.counts.push((dim, 2));
    let n = k.params.size(&x.numel_of());
    let coords = unravel_of(&mut k.params, "i", &x.dims, "c");
    let zero = format!("{}(0)", x.word.wgsl());
    let word = out.word.wgsl();
    let mut stores = String::new();
    for d in 0..rank {
        let _ = writeln!(stores, "            out0[{d}u * n_out + p] = {word}(c{d});");
    }
    k.body = format!(
        "    let n = {n};
    let chunk = (n + {last}u) / {THREADS}u;
    let lo = min(lidx * chunk, n);
    let hi = min(lo + chunk, n);
    var found = 0u;
    for (var i = lo; i < hi; i = i + 1u) {{
        if (in0[i] != {zero}) {{ found = found + 1u; }}
    }}
    first[lidx] = found;
    workgroupBarrier();
    if (lidx == 0u) {{
        var sum = 0u;
        for (var t = 0u; t < {THREADS}u; t = t + 1u) {{
            let here = first[t];
            first[t] = sum;
            sum = sum + here;
        }}
        total = sum;
        count[0] = sum;
    }}
    workgroupBarrier();
    let n_out = total;
    var p = first[lidx];
    for (var i = lo; i < hi; i = i + 1u) {{
        if (in0[i] != {zero}) {{
{coords}{stores}            p = p + 1u;
        }}
    }}
",
        last = THREADS - 1,
        coords = coords.replace("    let", "            let"),
    );
    Ok(Lowered::Launches {
        temps: vec![1],
        launches: vec![Launch {
            kernel: k,
            args: vec![Arg::In(0), Arg::Out(0), Arg::Temp(0)],
        }],
    })
}

/// `NonMaxSuppression`, in two dispatches: one thread per (batch, class)
/// greedily keeps, from the highest score down, each box that overlaps
/// no kept one by more than the IoU threshold (ties to the lower index,
/// as a stable sort gives); then one thread concatenates the kept boxes
/// of every pair, in order, as `[count, 3]` (batch, class, box) rows.
pub fn non_max_suppression(ctx: &Ctx) -> Result<Lowered> {
    let (boxes, scores, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    let ([batches, n, _], [_, classes, _]) = (&boxes.dims[..], &scores.dims[..]) else {
        return Err(Error::invalid(format!(
            "NonMaxSuppression expects boxes [B, N, 4] and scores [B, C, N], got {} and {}",
            show(&boxes.dims),
            show(&scores.dims)
        )));
    };
    let dim = counted_dim(out, 0, "NonMaxSuppression")?;
    let p = wpc_ir::ops::params::NonMaxSuppression::of(
        ctx.attrs(),
        ctx.opt_constant(2),
        ctx.opt_constant(3),
        ctx.opt_constant(4),
    )?;
    let (iou_max, min_score, center) = (p.iou_threshold, p.score_threshold, p.center_point_box);
    let per_class = usize::try_from(p.per_class).unwrap_or(usize::MAX);
    // Scratch is laid out for the largest sizes; indices use the run's.
    let (most_boxes, most_pairs) = (boxes.shape[1], boxes.shape[0] * scores.shape[1]);
    // No pair keeps more boxes than it has (exports ask for up to
    // i64::MAX), so the limit is at most the largest box count.
    let per_class = most_boxes.min(per_class);
    let keep_stride = per_class;
    let pairs = batches.mul(classes);
    let label = format!(
        "NonMaxSuppression boxes{} scores{} k={per_class}",
        show(&boxes.dims),
        show(&scores.dims)
    );

    let mut select = Kernel::new(format!("{label} select"));
    select
        .input("boxes", boxes.word)
        .input("scores", scores.word)
        .output("kept", Word::U32)
        .output("kept_n", Word::U32)
        .output("seen", Word::U32);
    select.decls = iou_fn(center);
    let nb = select.params.size(n);
    let c = select.params.size(classes);
    let above = match min_score {
        Some(m) => format!(" && s > {}", super::index::literal(m, Word::F32)),
        None => String::new(),
    };
    let body = format!(
        "    let pair = i;
    let nb = {nb};
    let at = (pair / {c}) * nb;
    for (var j = 0u; j < nb; j = j + 1u) {{ seen[pair * nb + j] = 0u; }}
    var kept_here = 0u;
    loop {{
        if (kept_here >= {per_class}u) {{ break; }}
        var best = nb;
        var best_s = 0.0;
        for (var j = 0u; j < nb; j = j + 1u) {{
            let s = scores[pair * nb + j];
            if (seen[pair * nb + j] == 0u{above} && (best == nb || s > best_s)) {{ best = j; best_s = s; }}
        }}
        if (best == nb) {{ break; }}
        seen[pair * nb + best] = 1u;
        let b = (at + best) * 4u;
        let cand = vec4<f32>(boxes[b], boxes[b + 1u], boxes[b + 2u], boxes[b + 3u]);
        var keep = true;
        for (var q = 0u; q < kept_here; q = q + 1u) {{
            let o = (at + kept[pair * {keep_stride}u + q]) * 4u;
            let other = vec4<f32>(boxes[o], boxes[o + 1u], boxes[o + 2u], boxes[o + 3u]);
            if (nms_iou(other, cand) > {iou}) {{ keep = false; break; }}
        }}
        if (keep) {{
            kept[pair * {keep_stride}u + kept_here] = best;
            kept_here = kept_here + 1u;
        }}
    }}
    kept_n[pair] = kept_here;
",
        iou = super::index::literal(iou_max, Word::F32),
    );
    select.one_per_item_of(&pairs, ctx.tuning().elementwise, ctx.max_groups(), &body);

    let mut gather = Kernel::new(format!("{label} gather"));
    gather
        .input("kept", Word::U32)
        .input("kept_n", Word::U32)
        .output("out0", out.word)
        .output("count", Word::U32);
    gather.counts.push((dim, 3));
    let np = gather.params.size(&pairs);
    let c = gather.params.size(classes);
    let word = out.word.wgsl();
    gather.body = format!(
        "    if (lidx != 0u) {{ return; }}
    var rows = 0u;
    for (var pair = 0u; pair < {np}; pair = pair + 1u) {{
        let here = kept_n[pair];
        for (var q = 0u; q < here; q = q + 1u) {{
            let r = (rows + q) * 3u;
            out0[r] = {word}(pair / {c});
            out0[r + 1u] = {word}(pair % {c});
            out0[r + 2u] = {word}(kept[pair * {keep_stride}u + q]);
        }}
        rows = rows + here;
    }}
    count[0] = rows;
"
    );
    Ok(Lowered::Launches {
        temps: vec![
            (most_pairs * keep_stride).max(1),
            most_pairs.max(1),
            (most_pairs * most_boxes).max(1),
            1,
        ],
        launches: vec![
            Launch {
                kernel: select,
                args: vec![
                    Arg::In(0),
                    Arg::In(1),
                    Arg::Temp(0),
                    Arg::Temp(1),
                    Arg::Temp(2),
                ],
            },
            Launch {
                kernel: gather,
                args: vec![Arg::Temp(0), Arg::Temp(1), Arg::Out(0), Arg::Temp(3)],
            },
        ],
    })
}

/// `nms_iou(a, b)`: intersection over union of two boxes, as corners
/// (y1, x1, y2, x2) in any order or, with `center`, as (x centre,
/// y centre, width, height) — the reference kernel's formula in f32.
fn iou_fn(center: bool) -> String {
    let corners = if center {
        "vec4<f32>(v.y - v.w / 2.0, v.x - v.z / 2.0, v.y + v.w / 2.0, v.x + v.z / 2.0)"
    } else {
        "vec4<f32>(min(v.x, v.z), min(v.y, v.w), max(v.x, v.z), max(v.y, v.w))"
    };
    format!(
        "fn nms_corners(v: vec4<f32>) -> vec4<f32> {{ return {corners}; }}
fn nms_iou(p: vec4<f32>, q: vec4<f32>) -> f32 {{
    let a = nms_corners(p);
    let b = nms_corners(q);
    let inter = max(min(a.z, b.z) - max(a.x, b.x), 0.0) * max(min(a.w, b.w) - max(a.y, b.y), 0.0);
    let both = (a.z - a.x) * (a.w - a.y) + (b.z - b.x) * (b.w - b.y) - inter;
    if (both <= 0.0) {{ return 0.0; }}
    return inter / both;
}}
"
    )
}
