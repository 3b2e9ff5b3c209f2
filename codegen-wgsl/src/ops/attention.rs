//! ONNX `Attention` (opset 23/24): each query row's scores, masks,
//! softmax and weighted sum of values, in the order the reference
//! computes them (scale, softcap, mask, softmax). Where the row's scores
//! fit in workgroup memory, one workgroup computes a row (its lanes split
//! the keys, then the value columns); otherwise one thread does, with the
//! scores in a buffer. Keys and values are first laid out as (B, kv
//! heads, past + new, D), which is also the `present_key` /
//! `present_value` output.

use std::fmt::Write;

use wpc_bundle::device_data::Word;
use wpc_ir::{Error, Result};

use super::index::literal;
use crate::kernel::{Kernel, Params};
use crate::lower::{Arg, Ctx, Launch, Lowered, Tt};
use wpc_ir::sym::Expr;

/// Offset expression of element (b, h, s, d) of a Q/K/V input laid out
/// 3-D (B, S, H*D) or 4-D (B, H, S, D); a dynamic sequence length is
/// read from `params`.
fn layout(params: &mut Params, t: &Tt, heads: usize, b: &str, h: &str, s: &str, d: &str) -> String {
    if t.dims.len() == 3 {
        let (seq, hidden) = (&t.dims[1], t.shape[2]);
        let dh = hidden / heads;
        let batch_stride = params.size(&seq.scale(hidden as i64));
        format!("({b} * {batch_stride} + {s} * {hidden}u + {h} * {dh}u + {d})")
    } else {
        let (hh, dh) = (t.shape[1], t.shape[3]);
        let seq = params.size(&t.dims[2]);
        format!("((({b} * {hh}u + {h}) * {seq} + {s}) * {dh}u + {d})")
    }
}

/// A kernel writing (B, kvh, past + S, D) from `past` (binding `past`, if
/// any) and the new keys or values (binding `fresh`); the batch and the
/// new keys' count may be dynamic (then there is no past).
fn present(ctx: &Ctx, new: &Tt, kvh: usize, past: usize, total: &Expr, dim: usize) -> Kernel {
    let batch = &new.dims[0];
    let n = batch.mul(total).scale((kvh * dim) as i64);
    let mut k = Kernel::new(format!(
        "Attention present f32[{batch}, {kvh}, {total}, {dim}] past {past}"
    ));
    if past > 0 {
        k.input("past", Word::F32);
    }
    k.input("fresh", Word::F32).output("out0", Word::F32);
    let p = &mut k.params;
    let (total_u, head_stride, batch_stride) = (
        p.size(total),
        p.size(&total.scale(dim as i64)),
        p.size(&total.scale((dim * kvh) as i64)),
    );
    let mut body = format!(
        "    let d = i % {dim}u;\n    let j = (i / {dim}u) % {total_u};\n    let h = (i / {head_stride}) % {kvh}u;\n    let b = i / {batch_stride};\n"
    );
    let fresh = format!(
        "fresh[{}]",
        layout(p, new, kvh, "b", "h", &format!("(j - {past}u)"), "d")
    );
    if past > 0 {
        let _ = writeln!(
            body,
            "    if (j < {past}u) {{ out0[i] = past[((b * {kvh}u + h) * {past}u + j) * {dim}u + d]; }} else {{ out0[i] = {fresh}; }}"
        );
    } else {
        let _ = writeln!(body, "    out0[i] = {fresh};");
    }
    k.one_per_item_of(&n, ctx.tuning().elementwise, ctx.max_groups(), &body);
    k
}

pub fn attention(ctx: &Ctx) -> Result<Lowered> {
    let (q, kin, vin) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    super::require_f32(ctx, q)?;
    let p = wpc_ir::ops::params::Attention::of(ctx.attrs())?;
    let three_d = q.shape.len() == 3;
    let (qh, kvh) = if three_d {
        p.heads_3d()?
    } else {
        (q.shape[1], kin.shape[1])
    };
    if qh == 0 || kvh == 0 || qh % kvh != 0 {
        return Err(Error::invalid("Attention head counts do not divide"));
    }
    // The batch and the sequence lengths may be dynamic (`*_e`; the
    // plain names are their largest sizes); heads and head sizes are not.
    let dynamic = [q, kin, vin].iter().any(|t| !t.is_static());
    let fixed = |t: &Tt, dims: &[usize]| dims.iter().all(|&d| t.dims[d].as_const().is_some());
    let (head_dims, kv_dims): (&[usize], &[usize]) = if three_d {
        (&[2], &[2])
    } else {
        (&[1, 3], &[1, 3])
    };
    if !(fixed(q, head_dims) && fixed(kin, kv_dims) && fixed(vin, kv_dims))
        || (dynamic && ctx.has_input(4))
    {
        return Err(crate::lower::dynamic_size_refused("Attention", q));
    }
    let batch = q.shape[0];
    let seq_axis = if three_d { 1 } else { 2 };
    let (sq, sq_e) = (q.shape[seq_axis], q.dims[seq_axis].clone());
    let dh = if three_d { q.shape[2] / qh } else { q.shape[3] };
    let dv = if three_d {
        vin.shape[2] / kvh
    } else {
        vin.shape[3]
    };
    let (s_new, s_new_e) = (kin.shape[seq_axis], kin.dims[seq_axis].clone());
    let past = if ctx.has_input(4) {
        ctx.input(4)?.shape[2]
    } else {
        0
    };
    let (skv, skv_e) = (past + s_new, s_new_e.add(&Expr::constant(past as i64)));
    let batch_e = q.dims[0].clone();
    let reps = qh / kvh;
    let scale = p.scale_for(dh);
    let softcap = f64::from(p.softcap);
    let causal = p.is_causal;
    let mode = p.qk_matmul_output_mode;
    let lit = |v: f64| literal(v, Word::F32);

    // Keys and values in (B, kvh, skv, D): the present outputs, or scratch.
    let mut temps = Vec::new();
    let mut launches = Vec::new();
    let mut kv_args = Vec::new();
    for (which, new, dim) in [(0usize, kin, dh), (1, vin, dv)] {
        // 4-D keys or values without a past are already laid out so.
        if !three_d && past == 0 && !ctx.wants_output(1 + which) {
            kv_args.push(Arg::In(1 + which));
            continue;
        }
        let target = if ctx.wants_output(1 + which) {
            Arg::Out(1 + which)
        } else {
            temps.push(batch * kvh * skv * dim);
            Arg::Temp(temps.len() - 1)
        };
        let mut args = Vec::new();
        if past > 0 {
            args.push(Arg::In(4 + which));
        }
        args.push(Arg::In(1 + which));
        args.push(target);
        launches.push(Launch {
            kernel: present(ctx, new, kvh, past, &skv_e, dim),
            args,
        });
        kv_args.push(target);
    }
    let mut k = Kernel::new(format!(
        "Attention f32 B={batch} Hq={qh} Hkv={kvh} Sq={sq} Skv={skv} D={dh}/{dv} causal={causal} mode={mode}"
    ));
    k.input("q", Word::F32)
        .input("kk", Word::F32)
        .input("vv", Word::F32);
    let mut args = vec![Arg::In(0), kv_args[0], kv_args[1]];
    let mask = if ctx.has_input(3) {
        let m = ctx.input(3)?;
        k.input("mask", m.word);
        args.push(Arg::In(3));
        Some(m.clone())
    } else {
        None
    };
    let nonpad = ctx.has_input(6);
    if nonpad {
        k.input("nonpad", ctx.input(6)?.word);
        args.push(Arg::In(6));
    }
    let qk_out = ctx.wants_output(3);
    // One workgroup per query row where its scores fit in workgroup
    // memory (and no intermediate scores are asked for): the lanes split
    // the keys, then the value columns, so every query row keeps a
    // workgroup busy. Otherwise one thread per row, scores in a buffer.
    let lanes = ROW_LANES;
    let limits = &ctx.profile.webgpu.limits;
    let group_bytes = 4 * (dh + skv + lanes as usize);
    let per_group = !qk_out
        && dh > 0
        && skv > 0
        && group_bytes <= limits.max_compute_workgroup_storage_size as usize
        && lanes <= limits.max_compute_invocations_per_workgroup;
    let tile = Tile::fitting(dh, dv, limits.max_compute_workgroup_storage_size as usize)
        .filter(|_| !dynamic && !qk_out && skv >= TILED_FROM_KEYS && sq >= TILE_ROWS && dh > 0);
    if dynamic && !per_group {
        return Err(Error::unsupported(format!(
            "Attention over dynamic lengths whose {skv} keys do not fit one workgroup's memory"
        )));
    }
    if tile.is_none() && !per_group {
        temps.push(batch * qh * sq * skv);
        k.output("sc", Word::F32);
        args.push(Arg::Temp(temps.len() - 1));
    }
    k.output("y", Word::F32);
    args.push(Arg::Out(0));
    if qk_out {
        k.output("qk", Word::F32);
        args.push(Arg::Out(3));
    }
    k.helpers.insert("fmax");
    let neg_inf = "f32_bits(0xff800000u)";
    let sizes = &mut k.params;
    let (sq_u, skv_u, rows_per_item) = (
        sizes.size(&sq_e),
        sizes.size(&skv_e),
        sizes.size(&sq_e.scale(qh as i64)),
    );
    let offset = match (nonpad && past == 0, sq_e.as_const()) {
        (true, Some(n)) => format!("i32(nonpad[b]) - {n}"),
        (true, None) => format!("i32(nonpad[b]) - i32({sq_u})"),
        (false, _) => format!("{past}"),
    };
    let head = format!(
        "    let qi = row % {sq_u};\n    let h = (row / {sq_u}) % {qh}u;\n    let b = row / {rows_per_item};\n    let kh = h / {reps}u;\n    let pos = i32(qi) + {offset};\n",
    );
    // Key j's score `s` from the query row in `qrow(d)`, scaled and capped.
    let score = |qrow: &str| {
        let mut c = format!(
            "        var s = 0.0;\n        for (var d = 0u; d < {dh}u; d = d + 1u) {{ s = s + {qrow} * kk[((b * {kvh}u + kh) * {skv_u} + j) * {dh}u + d]; }}\n        s = s * {};\n",
            lit(scale)
        );
        if softcap > 0.0 {
            let _ = writeln!(
                c,
                "        s = tanh(clamp(s / {c}, -15.0, 15.0)) * {c};",
                c = lit(softcap)
            );
        }
        c
    };
    // Key j's bias `bj` for this row: the mask, then the causal, window
    // and padding frontiers.
    let mut bias = String::from("        var bj = 0.0;\n");
    if let Some(m) = &mask {
        let one = Expr::constant(1);
        let last = k.params.size(m.dims.last().unwrap_or(&one));
        let mut padded = m.dims.clone();
        *padded.last_mut().expect("rank >= 1") = skv_e.clone();
        // Broadcast strides of the mask over (B, Hq, Sq, Skv); along j they
        // index the mask's own (possibly shorter, padded) last dim.
        let own = super::index::row_major(&m.dims);
        let r = m.dims.len();
        let full = [
            batch_e.clone(),
            Expr::constant(qh as i64),
            sq_e.clone(),
            skv_e.clone(),
        ];
        let st: Vec<Expr> = (0..4)
            .map(|d| {
                let broadcast = d + r < 4
                    || padded[d + r - 4].as_const() == Some(1) && full[d].as_const() != Some(1);
                if broadcast {
                    Expr::constant(0)
                } else {
                    own[d + r - 4].clone()
                }
            })
            .collect();
        let st: Vec<String> = st.iter().map(|e| k.params.size(e)).collect();
        let off = format!(
            "b * {} + h * {} + qi * {} + j * {}",
            st[0], st[1], st[2], st[3]
        );
        let read = if m.word == Word::F32 {
            format!("mask[{off}]")
        } else {
            format!("select({neg_inf}, 0.0, mask[{off}] != 0u)")
        };
        let _ = writeln!(
            bias,
            "        if (j < {last}) {{ bj = {read}; }} else {{ bj = {neg_inf}; }}"
        );
    }
    if causal {
        let _ = writeln!(bias, "        if (i32(j) > pos) {{ bj = {neg_inf}; }}");
    }
    if let Some(left) = p.left_window {
        let _ = writeln!(
            bias,
            "        if (pos - i32(j) > {left}) {{ bj = {neg_inf}; }}"
        );
    }
    if let Some(right) = p.right_window {
        let _ = writeln!(
            bias,
            "        if (i32(j) - pos > {right}) {{ bj = {neg_inf}; }}"
        );
    }
    if nonpad {
        let _ = writeln!(
            bias,
            "        if (i32(j) >= i32(nonpad[b])) {{ bj = {neg_inf}; }}"
        );
    }
    let y_off = if three_d {
        format!("(b * {sq_u} + qi) * {}u + h * {dv}u + d", qh * dv)
    } else {
        format!("((b * {qh}u + h) * {sq_u} + qi) * {dv}u + d")
    };
    let v_at = format!("vv[((b * {kvh}u + kh) * {skv_u} + j) * {dv}u + d]");
    if let Some(tile) = tile {
        let shape = Shape {
            qh,
            kvh,
            reps,
            sq,
            skv,
            dh,
            dv,
        };
        let q_at = format!("q[{}]", layout(&mut k.params, q, qh, "b", "h", "qq", "d"));
        let mut scored = String::from("        var s = 0.0;\n");
        // Q and K rows in workgroup memory are padded by one word, so
        // lanes reading different rows hit different banks.
        let row = dh + 1;
        let _ = writeln!(
            scored,
            "        for (var d = 0u; d < {dh}u; d = d + 1u) {{ s = s + qs[r * {row}u + d] * ks[c * {row}u + d]; }}\n        s = s * {};",
            lit(scale)
        );
        if softcap > 0.0 {
            let _ = writeln!(
                scored,
                "        s = tanh(clamp(s / {c}, -15.0, 15.0)) * {c};",
                c = lit(softcap)
            );
        }
        let body = tiled(
            &mut k,
            &shape,
            tile,
            &offset,
            (&q_at, &scored, &bias, &y_off),
        );
        k.one_group_per_item(
            batch * qh * sq.div_ceil(TILE_ROWS),
            TILE_LANES,
            ctx.max_groups(),
            &body,
        );
    } else if per_group {
        super::workgroup_array(&mut k, "qs", "f32", dh as u32);
        super::workgroup_array(&mut k, "sc", "f32", skv as u32);
        super::workgroup_array(&mut k, "red", "f32", lanes);
        let mut b = head;
        let _ = writeln!(
            b,
            "    for (var d = lidx; d < {dh}u; d = d + {lanes}u) {{ qs[d] = q[{}]; }}\n    workgroupBarrier();\n    var m = {neg_inf};\n    var open = 0.0;\n    for (var j = lidx; j < {skv_u}; j = j + {lanes}u) {{",
            layout(&mut k.params, q, qh, "b", "h", "qi", "d")
        );
        b.push_str(&score("qs[d]"));
        b.push_str(&bias);
        let _ = writeln!(
            b,
            "        if (bj != {neg_inf}) {{ open = 1.0; s = s + bj; }} else {{ s = {neg_inf}; }}\n        sc[j] = s;\n        m = fmax(m, s);\n    }}"
        );
        b.push_str(&super::tree_reduce("m", "red", lanes, "fmax($a, $b)"));
        b.push_str(&super::tree_reduce("open", "red", lanes, "fmax($a, $b)"));
        let _ = writeln!(
            b,
            "    if (m == {neg_inf}) {{ m = 0.0; }}\n    var sum = 0.0;\n    for (var j = lidx; j < {skv_u}; j = j + {lanes}u) {{ let e = select(exp(sc[j] - m), 0.0, sc[j] == {neg_inf}); sc[j] = e; sum = sum + e; }}"
        );
        b.push_str(&super::tree_reduce("sum", "red", lanes, "$a + $b"));
        let _ = writeln!(
            b,
            "    let inv = select(1.0 / sum, 0.0, open == 0.0 || sum == 0.0);\n    for (var d = lidx; d < {dv}u; d = d + {lanes}u) {{\n        var acc = 0.0;\n        for (var j = 0u; j < {skv_u}; j = j + 1u) {{ acc = acc + sc[j] * {v_at}; }}\n        y[{y_off}] = acc * inv;\n    }}"
        );
        let rows = batch_e.mul(&sq_e).scale(qh as i64);
        k.one_group_per_item_of(&rows, lanes, ctx.max_groups(), &b);
    } else {
        let mut b = format!("{head}    let at = row * {skv}u;\n");
        let _ = writeln!(
            b,
            "    var m = {neg_inf};\n    var all_masked = true;\n    for (var j = 0u; j < {skv}u; j = j + 1u) {{"
        );
        let q_at = layout(&mut k.params, q, qh, "b", "h", "qi", "d");
        b.push_str(&score(&format!("q[{q_at}]")));
        if qk_out && mode <= 1 {
            b.push_str("        qk[at + j] = s;\n");
        }
        b.push_str(&bias);
        let _ = writeln!(
            b,
            "        if (bj != {neg_inf}) {{ all_masked = false; s = s + bj; }} else {{ s = {neg_inf}; }}"
        );
        if qk_out && mode == 2 {
            b.push_str("        qk[at + j] = s;\n");
        }
        let _ = writeln!(
            b,
            "        sc[at + j] = s;\n        m = fmax(m, s);\n    }}"
        );
        let _ = writeln!(
            b,
            "    if (m == {neg_inf}) {{ m = 0.0; }}\n    var sum = 0.0;\n    for (var j = 0u; j < {skv}u; j = j + 1u) {{ let e = select(exp(sc[at + j] - m), 0.0, sc[at + j] == {neg_inf}); sc[at + j] = e; sum = sum + e; }}"
        );
        let _ = writeln!(
            b,
            "    for (var j = 0u; j < {skv}u; j = j + 1u) {{ let p = select(sc[at + j] / sum, 0.0, all_masked || sum == 0.0); sc[at + j] = p;{} }}",
            if qk_out && mode == 3 {
                " qk[at + j] = p;"
            } else {
                ""
            }
        );
        let _ = writeln!(
            b,
            "    for (var d = 0u; d < {dv}u; d = d + 1u) {{\n        var acc = 0.0;\n        for (var j = 0u; j < {skv}u; j = j + 1u) {{ acc = acc + sc[at + j] * {v_at}; }}\n        y[{y_off}] = acc;\n    }}"
        );
        k.one_per_item(
            batch * qh * sq,
            ctx.tuning().elementwise,
            ctx.max_groups(),
            &format!("    let row = i;\n{b}"),
        );
    }
    launches.push(Launch { kernel: k, args });
    Ok(Lowered::Launches { temps, launches })
}

/// Lanes of a workgroup that computes one query row of `Attention`.
const ROW_LANES: u32 = 64;

/// Query rows per workgroup of the tiled kernel, and its lanes: a row's
/// lanes split its keys' scores and its output columns.
const TILE_ROWS: usize = 16;
const TILE_LANES: u32 = 64;
const LANES_PER_ROW: usize = TILE_LANES as usize / TILE_ROWS;

/// Keys from which the tiled kernel runs: with fewer, each query row's
/// own workgroup keeps more of the GPU busy and K and V stay in cache.
/// Measured on an H200 (12 heads of 64, tiled / per-row): 1.36 at 512
/// keys, 1.02 at 1024, 0.80 at 2048, 0.42 at 4096.
const TILED_FROM_KEYS: usize = 2048;

/// Keys per tile of the tiled kernel: the most of these whose K and V
/// tiles fit in workgroup memory beside the query rows and scores.
#[derive(Clone, Copy, Debug)]
struct Tile {
    keys: usize,
}

impl Tile {
    fn fitting(dh: usize, dv: usize, limit: usize) -> Option<Tile> {
        [32, 16, 8]
            .into_iter()
            .find(|&keys| {
                4 * (TILE_ROWS * (dh + 1) + keys * (dh + 1 + dv) + TILE_ROWS * (keys + 1)) <= limit
            })
            .map(|keys| Tile { keys })
    }
}

/// The sizes one Attention kernel is specialized for.
struct Shape {
    qh: usize,
    kvh: usize,
    reps: usize,
    sq: usize,
    skv: usize,
    dh: usize,
    dv: usize,
}

/// The tiled, flash-attention-style kernel: a workgroup takes
/// `TILE_ROWS` query rows of one head and walks the keys a tile at a
/// time, K and V tiles shared in workgroup memory by every row. Each row
/// keeps an online softmax (running max `m` and sum `l`, earlier terms
/// rescaled when the max grows) and its output columns in registers, so
/// the scores never leave the chip. `code` gives the query read (of row
/// `qq`), the score of (`r`, key `c`), the mask bias and the output
/// offset, written for the variables this body defines. Declares the
/// workgroup arrays in `k` and returns the body.
fn tiled(
    k: &mut Kernel,
    sh: &Shape,
    tile: Tile,
    offset: &str,
    code: (&str, &str, &str, &str),
) -> String {
    let (q_at, scored, bias, y_off) = code;
    let Shape {
        qh,
        kvh,
        reps,
        sq,
        skv,
        dh,
        dv,
    } = *sh;
    let (rows, keys, lanes) = (TILE_ROWS, tile.keys, TILE_LANES);
    let per = LANES_PER_ROW;
    let cols = dv.div_ceil(per);
    let blocks = sq.div_ceil(rows);
    // Rows of Q, K and the scores padded by one word (no bank conflicts
    // between lanes of different rows).
    let (qk_row, sc_row) = (dh + 1, keys + 1);
    super::workgroup_array(k, "qs", "f32", (rows * qk_row) as u32);
    super::workgroup_array(k, "ks", "f32", (keys * qk_row) as u32);
    super::workgroup_array(k, "vs", "f32", (keys * dv.max(1)) as u32);
    super::workgroup_array(k, "sc", "f32", (rows * sc_row) as u32);
    k.label.push_str(&format!(" tiled {rows}x{keys}"));
    let neg_inf = "f32_bits(0xff800000u)";
    let mut b = format!(
        "    let qb = row % {blocks}u;\n    let h = (row / {blocks}u) % {qh}u;\n    let b = row / {};\n    let kh = h / {reps}u;\n    let r = lidx / {per}u;\n    let t = lidx % {per}u;\n    let qi = qb * {rows}u + r;\n    let pos = i32(qi) + {offset};\n",
        blocks * qh
    );
    let _ = writeln!(
        b,
        "    for (var e = lidx; e < {n}u; e = e + {lanes}u) {{\n        let qq = qb * {rows}u + e / {dh}u;\n        let d = e % {dh}u;\n        var x = 0.0;\n        if (qq < {sq}u) {{ x = {q_at}; }}\n        qs[(e / {dh}u) * {qk_row}u + d] = x;\n    }}",
        n = rows * dh
    );
    let _ = writeln!(
        b,
        "    var m = {neg_inf};\n    var l = 0.0;\n    var acc: array<f32, {cols}>;\n    for (var j0 = 0u; j0 < {skv}u; j0 = j0 + {keys}u) {{\n        workgroupBarrier();"
    );
    for (name, dim, stride) in [("ks", dh, qk_row), ("vs", dv, dv)] {
        let src = if name == "ks" { "kk" } else { "vv" };
        let _ = writeln!(
            b,
            "        for (var e = lidx; e < {n}u; e = e + {lanes}u) {{\n            let j = j0 + e / {dim}u;\n            var x = 0.0;\n            if (j < {skv}u) {{ x = {src}[((b * {kvh}u + kh) * {skv}u + j) * {dim}u + e % {dim}u]; }}\n            {name}[(e / {dim}u) * {stride}u + e % {dim}u] = x;\n        }}",
            n = keys * dim
        );
    }
    let _ = writeln!(
        b,
        "        workgroupBarrier();\n        for (var c = t; c < {keys}u; c = c + {per}u) {{\n        let j = j0 + c;"
    );
    b.push_str(scored);
    b.push_str(bias);
    let _ = writeln!(
        b,
        "        if (j >= {skv}u || bj == {neg_inf}) {{ s = {neg_inf}; }} else {{ s = s + bj; }}\n        sc[r * {sc_row}u + c] = s;\n        }}\n        workgroupBarrier();"
    );
    // The row's online softmax: every lane of the row finds the new max,
    // each exponentiates its own keys' scores in place, and every lane
    // sums the row and rescales its output columns.
    let _ = writeln!(
        b,
        "        var top = {neg_inf};\n        for (var c = 0u; c < {keys}u; c = c + 1u) {{ top = fmax(top, sc[r * {sc_row}u + c]); }}\n        let mn = fmax(m, top);\n        let safe = select(mn, 0.0, mn == {neg_inf});\n        let scale_old = select(exp(m - safe), 0.0, m == {neg_inf});\n        m = mn;\n        workgroupBarrier();\n        for (var c = t; c < {keys}u; c = c + {per}u) {{\n            let s = sc[r * {sc_row}u + c];\n            sc[r * {sc_row}u + c] = select(exp(s - safe), 0.0, s == {neg_inf});\n        }}\n        workgroupBarrier();\n        var sum = 0.0;\n        for (var c = 0u; c < {keys}u; c = c + 1u) {{ sum = sum + sc[r * {sc_row}u + c]; }}\n        l = l * scale_old + sum;"
    );
    let _ = writeln!(
        b,
        "        for (var u = 0u; u < {cols}u; u = u + 1u) {{\n            let d = t + u * {per}u;\n            if (d < {dv}u) {{\n                var a = acc[u] * scale_old;\n                for (var c = 0u; c < {keys}u; c = c + 1u) {{ a = a + sc[r * {sc_row}u + c] * vs[c * {dv}u + d]; }}\n                acc[u] = a;\n            }}\n        }}\n    }}"
    );
    let _ = writeln!(
        b,
        "    if (qi < {sq}u) {{\n        let inv = select(1.0 / l, 0.0, l == 0.0);\n        for (var u = 0u; u < {cols}u; u = u + 1u) {{\n            let d = t + u * {per}u;\n            if (d < {dv}u) {{ y[{y_off}] = acc[u] * inv; }}\n        }}\n    }}"
    );
    b
}

/// `RotaryEmbedding`: one thread per element; a rotated channel reads its
/// partner (the other half, or the neighbour when interleaved) and the
/// cos/sin cache row of its (batch, position).
pub fn rotary_embedding(ctx: &Ctx) -> Result<Lowered> {
    let (x, cos, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    super::require_f32(ctx, x)?;
    let p = wpc_ir::ops::params::Rotary::of(ctx.attrs())?;
    let interleaved = p.interleaved;
    // (batch, seq, heads, head dim) and the WGSL naming each coordinate of
    // element `i` in x's own layout: 4-D (B, H, S, D) or 3-D (B, S, H*D).
    let (seq, dim, coords) = match x.shape[..] {
        [_, h, s, d] => (
            s,
            d,
            format!(
                "    let dd = i % {d}u;\n    let si = (i / {d}u) % {s}u;\n    let bi = i / {};\n",
                h * s * d
            ),
        ),
        [_, s, hidden] => {
            let heads = p.num_heads.unwrap_or(0);
            if heads == 0 || hidden % heads != 0 {
                return Err(Error::invalid(format!(
                    "RotaryEmbedding on 3-D input needs num_heads dividing {hidden}"
                )));
            }
            let d = hidden / heads;
            (
                s,
                d,
                format!(
                    "    let dd = i % {d}u;\n    let si = (i / {hidden}u) % {s}u;\n    let bi = i / {};\n",
                    s * hidden
                ),
            )
        }
        _ => {
            return Err(Error::invalid(format!(
                "RotaryEmbedding expects a 3-D or 4-D input, got {:?}",
                x.shape
            )));
        }
    };
    let rotary = p.rotary_dim.unwrap_or(dim);
    let half = rotary / 2;
    if rotary > dim || cos.shape.last() != Some(&half) {
        return Err(Error::invalid(format!(
            "cos/sin caches {:?} do not match rotary_embedding_dim/2 = {half}",
            cos.shape
        )));
    }
    let mut k = Kernel::new(format!("RotaryEmbedding f32{:?} rotary {rotary}", x.shape));
    k.input("x", Word::F32)
        .input("cos_cache", Word::F32)
        .input("sin_cache", Word::F32);
    let mut args = vec![Arg::In(0), Arg::In(1), Arg::In(2)];
    let row = if ctx.has_input(3) {
        k.input("position_ids", Word::I32);
        args.push(Arg::In(3));
        format!("u32(position_ids[bi * {seq}u + si])")
    } else {
        format!("bi * {seq}u + si")
    };
    k.output("y", Word::F32);
    args.push(Arg::Out(0));
    // Which cache column a channel uses, whether it is the first of its
    // pair, and where its partner sits.
    let (pair, first, step) = if interleaved {
        ("dd / 2u".to_string(), "dd % 2u == 0u".to_string(), 1)
    } else {
        (format!("dd % {half}u"), format!("dd < {half}u"), half)
    };
    let mut body = coords;
    let _ = write!(
        body,
        "    if (dd >= {rotary}u) {{ y[i] = x[i]; return; }}
    let kk = {pair};
    let first = {first};
    let other = x[select(i - {step}u, i + {step}u, first)];
    let c = cos_cache[({row}) * {half}u + kk];
    let s = sin_cache[({row}) * {half}u + kk];
    y[i] = select(s * other + c * x[i], c * x[i] - s * other, first);
"
    );
    k.one_per_item(
        out.numel(),
        ctx.tuning().elementwise,
        ctx.max_groups(),
        &body,
    );
    Ok(Lowered::one(k, args))
}
