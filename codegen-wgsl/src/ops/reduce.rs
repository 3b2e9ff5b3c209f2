//! Reductions (ReduceX, ArgMax/ArgMin), softmax-like row ops and
//! cumulative sums. Reductions and softmax give each output (or row) one
//! workgroup: threads stride over the reduced elements, then combine
//! through workgroup memory in a tree.

use std::fmt::Write;

use wpc_bundle::device_data::Word;
use wpc_ir::Result;
use wpc_ir::ops::util::norm_axis;

use super::index::{literal, offset, offset_of, row_major, strides, unravel, unravel_of};
use super::{require_f32, tree_reduce, workgroup_array};
use crate::kernel::Kernel;
use crate::lower::{Arg, Ctx, Lowered};
use wpc_ir::sym::Expr;

/// How each ReduceX op starts, maps, combines and finishes.
struct Reducer {
    init: f64,
    pre: &'static str,
    comb: &'static str,
    post: &'static str,
}

fn reducer(op: &str, w: Word) -> Reducer {
    let (lo, hi) = match w {
        Word::F32 => (f64::NEG_INFINITY, f64::INFINITY),
        Word::I32 => (i32::MIN as f64, i32::MAX as f64),
        Word::U32 => (0.0, u32::MAX as f64),
    };
    let r = |init, pre, comb, post| Reducer {
        init,
        pre,
        comb,
        post,
    };
    match op {
        "ReduceMax" => r(lo, "$x", "max($a, $b)", "$v"),
        "ReduceMin" => r(hi, "$x", "min($a, $b)", "$v"),
        "ReduceProd" => r(1.0, "$x", "$a * $b", "$v"),
        "ReduceMean" => r(0.0, "$x", "$a + $b", "$v / $N"),
        "ReduceL1" => r(0.0, "abs($x)", "$a + $b", "$v"),
        "ReduceL2" => r(0.0, "$x * $x", "$a + $b", "sqrt($v)"),
        "ReduceSumSquare" => r(0.0, "$x * $x", "$a + $b", "$v"),
        "ReduceLogSum" => r(0.0, "$x", "$a + $b", "log($v)"),
        "ReduceLogSumExp" => r(0.0, "exp($x)", "$a + $b", "log($v)"),
        _ => r(0.0, "$x", "$a + $b", "$v"),
    }
}

pub fn reduce(ctx: &Ctx) -> Result<Lowered> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let rank = x.shape.len();
    let p = wpc_ir::ops::params::Reduce::of(ctx.attrs())?;
    let Some(axes) = p.axes(ctx.ints(1)?, rank)? else {
        let k = super::copy_kernel(&x.numel_of(), ctx);
        return Ok(Lowered::one(k, vec![Arg::In(0), Arg::Out(0)]));
    };
    let st = row_major(&x.dims);
    let kept: Vec<usize> = (0..rank).filter(|d| !axes.contains(d)).collect();
    let kept_shape: Vec<Expr> = kept.iter().map(|&d| x.dims[d].clone()).collect();
    let red_shape: Vec<Expr> = axes.iter().map(|&d| x.dims[d].clone()).collect();
    let (n_red, rows) = (Expr::product(&red_shape), Expr::product(&kept_shape));
    let r = reducer(&ctx.node.op, x.word);
    let wg = ctx.tuning().reduction;
    let ty = x.word.wgsl();
    let lit = |v: f64| literal(v, x.word);
    let mut k = Kernel::new(format!(
        "{} {}{:?} axes {:?}",
        ctx.node.op,
        x.dtype.name(),
        x.shape,
        axes
    ));
    k.input("in0", x.word).output("out0", out.word);
    workgroup_array(&mut k, "part", ty, wg);
    let p = &mut k.params;
    let mut body = unravel_of(p, "row", &kept_shape, "o");
    let base = offset_of(
        p,
        "o",
        &kept.iter().map(|&d| st[d].clone()).collect::<Vec<_>>(),
    );
    let _ = writeln!(body, "    let base = {base};\n    var v = {};", lit(r.init));
    let _ = writeln!(
        body,
        "    for (var j = lidx; j < {}; j = j + {wg}u) {{",
        p.size(&n_red)
    );
    body.push_str(&unravel_of(p, "j", &red_shape, "r").replace("    let", "        let"));
    let red_off = offset_of(
        p,
        "r",
        &axes.iter().map(|&d| st[d].clone()).collect::<Vec<_>>(),
    );
    let pre = r.pre.replace("$x", &format!("in0[base + {red_off}]"));
    let comb_v = r.comb.replace("$a", "v").replace("$b", "y");
    let _ = writeln!(
        body,
        "        let y = {pre};\n        v = {comb_v};\n    }}"
    );
    body.push_str(&tree_reduce("v", "part", wg, r.comb));
    let count = match n_red.as_const() {
        Some(n) => lit(n as f64),
        None => format!("{ty}({})", p.size(&n_red)),
    };
    let post = r.post.replace("$v", "v").replace("$N", &count);
    let _ = writeln!(body, "    if (lidx == 0u) {{ out0[row] = {post}; }}");
    k.one_group_per_item_of(&rows, wg, ctx.max_groups(), &body);
    Ok(Lowered::one(k, vec![Arg::In(0), Arg::Out(0)]))
}

pub fn arg(ctx: &Ctx) -> Result<Lowered> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let rank = x.shape.len();
    let p = wpc_ir::ops::params::ArgReduce::of(ctx.attrs())?;
    let (axis, last) = (p.axis(rank)?, p.select_last_index);
    let better = match (ctx.node.op.as_str(), last) {
        ("ArgMax", false) => ">",
        ("ArgMax", true) => ">=",
        (_, false) => "<",
        (_, true) => "<=",
    };
    let st = strides(&x.shape);
    let outer: Vec<usize> = (0..rank).filter(|&d| d != axis).collect();
    let outer_shape: Vec<usize> = outer.iter().map(|&d| x.shape[d]).collect();
    let mut body = unravel("i", &outer_shape, "o");
    let base = offset("o", &outer.iter().map(|&d| st[d]).collect::<Vec<_>>());
    let s = st[axis];
    let _ = write!(
        body,
        "    let base = {base};\n    var best = in0[base];\n    var at = 0u;\n    for (var j = 1u; j < {}u; j = j + 1u) {{\n        let y = in0[base + j * {s}u];\n        if (y {better} best) {{ best = y; at = j; }}\n    }}\n    out0[i] = {}(at);\n",
        x.shape[axis],
        out.word.wgsl()
    );
    let mut k = Kernel::new(format!(
        "{} {}{:?} axis {axis}",
        ctx.node.op,
        x.dtype.name(),
        x.shape
    ));
    k.input("in0", x.word).output("out0", out.word);
    k.one_per_item(
        outer_shape.iter().product(),
        ctx.tuning().elementwise,
        ctx.max_groups(),
        &body,
    );
    Ok(Lowered::one(k, vec![Arg::In(0), Arg::Out(0)]))
}

/// Softmax, LogSoftmax and Hardmax over one axis (or, before opset 13, over
/// everything from `axis` on): one workgroup per row.
pub fn softmax(ctx: &Ctx) -> Result<Lowered> {
    let x = ctx.input(0)?;
    require_f32(ctx, x)?;
    let one = [Expr::constant(1)];
    let dims = if x.dims.is_empty() {
        &one[..]
    } else {
        &x.dims[..]
    };
    let (axis, [outer, len, inner]) =
        wpc_ir::ops::params::SoftmaxRows::extents(ctx.attrs(), ctx.opset, dims, |d| {
            Expr::product(d)
        })?;
    let rows = outer.mul(&inner);
    let wg = ctx.tuning().reduction;
    let mut k = Kernel::new(format!(
        "{} {}{:?} axis {axis}",
        ctx.node.op,
        x.dtype.name(),
        x.shape
    ));
    k.input("in0", Word::F32).output("out0", Word::F32);
    k.helpers.insert("fmax");
    workgroup_array(&mut k, "part", "f32", wg);
    let p = &mut k.params;
    let (row_len, inner, len) = (p.size(&len.mul(&inner)), p.size(&inner), p.size(&len));
    let mut body = format!(
        "    let base = (row / {inner}) * {row_len} + row % {inner};\n    var m = f32_bits(0xff800000u);\n    for (var j = lidx; j < {len}; j = j + {wg}u) {{ m = fmax(m, in0[base + j * {inner}]); }}\n",
    );
    body.push_str(&tree_reduce("m", "part", wg, "fmax($a, $b)"));
    match ctx.node.op.as_str() {
        "Hardmax" => {
            workgroup_array(&mut k, "first", "u32", wg);
            let _ = write!(
                body,
                "    var f = {len};\n    for (var j = lidx; j < {len}; j = j + {wg}u) {{ if (in0[base + j * {inner}] == m) {{ f = min(f, j); }} }}\n{}    for (var j = lidx; j < {len}; j = j + {wg}u) {{ out0[base + j * {inner}] = select(0.0, 1.0, j == f); }}\n",
                tree_reduce("f", "first", wg, "min($a, $b)")
            );
        }
        op => {
            let _ = write!(
                body,
                "    var s = 0.0;\n    for (var j = lidx; j < {len}; j = j + {wg}u) {{ s = s + exp(in0[base + j * {inner}] - m); }}\n{}",
                tree_reduce("s", "part", wg, "$a + $b")
            );
            let value = if op == "LogSoftmax" {
                "x - m - log(s)"
            } else {
                "exp(x - m) / s"
            };
            let _ = writeln!(
                body,
                "    for (var j = lidx; j < {len}; j = j + {wg}u) {{ let x = in0[base + j * {inner}]; out0[base + j * {inner}] = {value}; }}"
            );
        }
    }
    k.one_group_per_item_of(&rows, wg, ctx.max_groups(), &body);
    Ok(Lowered::one(k, vec![Arg::In(0), Arg::Out(0)]))
}

pub fn cumulative(ctx: &Ctx) -> Result<Lowered> {
    let (x, out) = (ctx.input(0)?, ctx.output(0)?);
    let axis = norm_axis(ctx.constant(1)?.first_i64()?, x.shape.len())?;
    let wpc_ir::ops::params::Cumulative { exclusive, reverse } =
        wpc_ir::ops::params::Cumulative::of(ctx.attrs())?;
    let (n, s) = (x.shape[axis], strides(&x.shape)[axis]);
    let (init, op) = if ctx.node.op == "CumProd" {
        (1.0, "*")
    } else {
        (0.0, "+")
    };
    let (from, to) = match (reverse, exclusive) {
        (false, false) => ("0u".to_string(), "p + 1u".to_string()),
        (false, true) => ("0u".to_string(), "p".to_string()),
        (true, false) => ("p".to_string(), format!("{n}u")),
        (true, true) => ("p + 1u".to_string(), format!("{n}u")),
    };
    let body = format!(
        "    let p = (i / {s}u) % {n}u;\n    let base = i - p * {s}u;\n    var v = {};\n    for (var q = {from}; q < {to}; q = q + 1u) {{ v = v {op} in0[base + q * {s}u]; }}\n    out0[i] = v;\n",
        literal(init, x.word)
    );
    let mut k = Kernel::new(format!(
        "{} {}{:?} axis {axis}",
        ctx.node.op,
        x.dtype.name(),
        x.shape
    ));
    k.input("in0", x.word).output("out0", out.word);
    k.one_per_item(
        out.numel(),
        ctx.tuning().elementwise,
        ctx.max_groups(),
        &body,
    );
    Ok(Lowered::one(k, vec![Arg::In(0), Arg::Out(0)]))
}

/// TopK: one thread per row selects the k best by repeated scans (ties go
/// to the lower index, as in the reference), writing values and indices.
pub fn top_k(ctx: &Ctx) -> Result<Lowered> {
    let (x, vals) = (ctx.input(0)?, ctx.output(0)?);
    let rank = x.shape.len();
    let axis = wpc_ir::ops::params::axis("TopK", ctx.attrs(), rank)?;
    let k = vals.shape[axis];
    let largest = wpc_ir::ops::params::TopK::of(ctx.attrs())?.largest;
    let n = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let rows = x.numel() / n.max(1);
    let better = if largest { ">" } else { "<" };
    let idx_word = ctx.output(1)?.word;
    let nan_guard = if x.word == Word::F32 {
        " || (y != y && !(best != best))"
    } else {
        ""
    };
    let body = format!(
        "    let base = (i / {inner}u) * {n}u * {inner}u + i % {inner}u;\n    let obase = (i / {inner}u) * {k}u * {inner}u + i % {inner}u;\n    var last = 0u;\n    for (var r = 0u; r < {k}u; r = r + 1u) {{\n        var at = {n}u;\n        var best = in0[base];\n        for (var j = 0u; j < {n}u; j = j + 1u) {{\n            var taken = false;\n            for (var q = 0u; q < r; q = q + 1u) {{ if (u32(out1[obase + q * {inner}u]) == j) {{ taken = true; }} }}\n            if (taken) {{ continue; }}\n            let y = in0[base + j * {inner}u];\n            if (at == {n}u || y {better} best{nan_guard}) {{ best = y; at = j; }}\n        }}\n        out0[obase + r * {inner}u] = best;\n        out1[obase + r * {inner}u] = {}(at);\n    }}\n",
        idx_word.wgsl()
    );
    let mut kernel = Kernel::new(format!(
        "TopK {}{:?} k={k} axis {axis}",
        x.dtype.name(),
        x.shape
    ));
    kernel
        .input("in0", x.word)
        .output("out0", vals.word)
        .output("out1", idx_word);
    kernel.one_per_item(rows, ctx.tuning().elementwise, ctx.max_groups(), &body);
    Ok(Lowered::one(
        kernel,
        vec![Arg::In(0), Arg::Out(0), Arg::Out(1)],
    ))
}
