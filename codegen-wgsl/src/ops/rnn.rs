//! Recurrent layers (LSTM, GRU, RNN): one workgroup per (direction, batch
//! item) walks the sequence; each thread owns hidden units, the previous
//! hidden state is shared through workgroup memory, and barriers separate
//! the time steps. The three share the sequence loop, weights layout,
//! bindings and outputs, and differ only in the cell ([`Cell`]).

use std::fmt::Write;

use wpc_bundle::device_data::Word;
use wpc_ir::ops::params::{Cell, Recurrent};
use wpc_ir::{Error, Result};

use super::index::literal;
use crate::kernel::Kernel;
use crate::lower::{Arg, Ctx, Launch, Lowered};
use wpc_ir::sym::Expr;

pub fn lstm(ctx: &Ctx) -> Result<Lowered> {
    let p = Recurrent::of(ctx.attrs())?;
    if p.input_forget {
        return Err(Error::unsupported("LSTM with input_forget on WebGPU"));
    }
    recurrent(ctx, Cell::Lstm, &p)
}

pub fn gru(ctx: &Ctx) -> Result<Lowered> {
    recurrent(ctx, Cell::Gru, &Recurrent::of(ctx.attrs())?)
}

pub fn rnn(ctx: &Ctx) -> Result<Lowered> {
    recurrent(ctx, Cell::Rnn, &Recurrent::of(ctx.attrs())?)
}

/// The cell's activations as WGSL functions `act0`, `act1`, ... (declared
/// in `k`). Every direction must use the same ones, each parameterless.
fn activations(ctx: &Ctx, cell: Cell, p: &Recurrent, k: &mut Kernel) -> Result<()> {
    let names = p.activations_per_direction(cell)?;
    if names.iter().any(|n| n != &names[0]) {
        return Err(Error::unsupported(format!(
            "{} with activations {names:?} on WebGPU (each direction must use the same ones)",
            ctx.node.op
        )));
    }
    for (i, name) in names[0].iter().enumerate() {
        let expr = match name.as_str() {
            "Relu" => "max(a, 0.0)",
            other => super::elementwise::unary_float(other).ok_or_else(|| {
                Error::unsupported(format!("{} with activation {other} on WebGPU", ctx.node.op))
            })?,
        };
        if name == "Erf" {
            k.helpers.insert("erf");
        }
        let _ = writeln!(k.decls, "fn act{i}(a: f32) -> f32 {{ return {expr}; }}");
    }
    Ok(())
}

fn recurrent(ctx: &Ctx, cell: Cell, p: &Recurrent) -> Result<Lowered> {
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    super::require_f32(ctx, x)?;
    let op = &ctx.node.op;
    let gates = cell.gates();
    let layout = usize::from(p.batch_first);
    let dirs = w.shape[0];
    let hidden = w.shape[1] / gates;
    let input = w.shape[2];
    // The sequence length and the batch may be dynamic (read from the
    // parameters); sizes, weights and directions are compiled in.
    let (steps_e, batch_e) = if layout == 0 {
        (x.dims[0].clone(), x.dims[1].clone())
    } else {
        (x.dims[1].clone(), x.dims[0].clone())
    };
    let reverse_only = p.direction == wpc_ir::ops::params::Direction::Reverse;
    let clip = p.clip.map(f64::from);
    let reset_first = cell == Cell::Gru && !p.linear_before_reset;
    let limits = &ctx.profile.webgpu.limits;
    let wg = (hidden.next_power_of_two() as u32)
        .min(ctx.tuning().reduction.max(64))
        .min(limits.max_compute_invocations_per_workgroup);
    let per_thread = hidden.div_ceil(wg as usize);
    let shared_arrays = if reset_first { 2 } else { 1 };
    let workgroup_bytes = hidden * 4 * shared_arrays;
    if workgroup_bytes > limits.max_compute_workgroup_storage_size as usize {
        return Err(Error::unsupported(format!(
            "{op} hidden size {hidden} exceeds the target's workgroup memory"
        )));
    }
    let mut k = Kernel::new(format!(
        "{op} f32 T={steps_e} B={batch_e} I={input} H={hidden} dirs={dirs}"
    ));
    let (steps, batch) = (k.params.size(&steps_e), k.params.size(&batch_e));
    activations(ctx, cell, p, &mut k)?;

    // Constant weights, recurrence weights and biases share one buffer, so
    // the kernel fits the 8 storage buffers every target offers.
    let packed = match (ctx.opt_constant(1), ctx.opt_constant(2)) {
        (Some(wt), Some(rt)) if !ctx.has_input(3) || ctx.opt_constant(3).is_some() => {
            let mut all = wt.to_f32s();
            all.extend(rt.to_f32s());
            if let Some(bt) = ctx.opt_constant(3) {
                all.extend(bt.to_f32s());
            }
            Some(wpc_ir::Tensor::from_vec(vec![all.len()], all))
        }
        _ => None,
    };
    let (w_len, r_len) = (w.numel(), ctx.input(2)?.numel());
    let (wn, rn, bn, ro, bo) = if packed.is_some() {
        ("wrb", "wrb", "wrb", w_len, w_len + r_len)
    } else {
        ("w", "r", "bias", 0, 0)
    };
    k.input("x", Word::F32);
    let mut args = vec![Arg::In(0)];
    if packed.is_some() {
        k.input("wrb", Word::F32);
        args.push(Arg::Const(0));
    } else {
        k.input("w", Word::F32).input("r", Word::F32);
        args.extend([Arg::In(1), Arg::In(2)]);
    }
    let optional = [
        (3, "bias"),
        (4, "seqlens"),
        (5, "h0"),
        (6, "c0"),
        (7, "peep"),
    ];
    for (i, name) in optional {
        if (i == 3 && packed.is_some()) || (i >= 6 && cell != Cell::Lstm) {
            continue;
        }
        if ctx.has_input(i) {
            k.input(name, ctx.input(i)?.word);
            args.push(Arg::In(i));
        }
    }
    for (i, name) in [(0, "y"), (1, "yh"), (2, "yc")] {
        if ctx.wants_output(i) {
            k.output(name, Word::F32);
            args.push(Arg::Out(i));
        }
    }
    let _ = writeln!(k.decls, "var<workgroup> hs: array<f32, {hidden}>;");
    if reset_first {
        let _ = writeln!(k.decls, "var<workgroup> rs: array<f32, {hidden}>;");
    }
    k.workgroup_bytes = workgroup_bytes as u32;

    let x_at = |idx: &str| {
        if layout == 0 {
            format!("x[(s * {batch} + b) * {input}u + {idx}]")
        } else {
            format!("x[(b * {steps} + s) * {input}u + {idx}]")
        }
    };
    // States are (dirs, batch, H), or (batch, dirs, H) with layout 1.
    let state = if layout == 0 {
        format!("(d * {batch} + b) * {hidden}u + j")
    } else {
        format!("(b * {dirs}u + d) * {hidden}u + j")
    };
    // `var name` = gate g's pre-activation: the input term (with W's bias)
    // and/or the recurrent term over the shared array `recur` (with R's).
    let gate = |name: &str, g: usize, with_input: bool, recur: Option<&str>| {
        let row = format!("(d * {}u + {}u + j)", gates * hidden, g * hidden);
        let bias = |which: usize| {
            format!(
                "{bn}[{bo}u + d * {}u + {}u + j]",
                2 * gates * hidden,
                (which * gates + g) * hidden
            )
        };
        let mut init = Vec::new();
        if ctx.has_input(3) {
            if with_input {
                init.push(bias(0));
            }
            if recur.is_some() {
                init.push(bias(1));
            }
        }
        let init = if init.is_empty() {
            "0.0".to_string()
        } else {
            init.join(" + ")
        };
        let mut s = format!("                var {name} = {init};\n");
        if with_input {
            let _ = writeln!(
                s,
                "                for (var q = 0u; q < {input}u; q = q + 1u) {{ {name} = {name} + {wn}[{row} * {input}u + q] * {}; }}",
                x_at("q")
            );
        }
        if let Some(arr) = recur {
            let _ = writeln!(
                s,
                "                for (var q = 0u; q < {hidden}u; q = q + 1u) {{ {name} = {name} + {rn}[{ro}u + {row} * {hidden}u + q] * {arr}[q]; }}"
            );
        }
        s
    };
    let clipped = |e: &str| match clip {
        Some(cl) => format!(
            "clamp({e}, {}, {})",
            literal(-cl, Word::F32),
            literal(cl, Word::F32)
        ),
        None => e.to_string(),
    };
    let peep = |p: usize, c: &str| {
        if ctx.has_input(7) {
            format!(" + peep[d * {}u + {}u + j] * {c}", 3 * hidden, p * hidden)
        } else {
            String::new()
        }
    };
    let units = |body: &mut String, indent: &str, cond: &str| {
        let _ = writeln!(
            body,
            "{indent}for (var u = 0u; u < {per_thread}u; u = u + 1u) {{\n{indent}    let j = lidx + u * {wg}u;\n{indent}    if (j < {hidden}u{cond}) {{"
        );
    };

    let mut body = format!("    let d = wid.x / {batch};\n    let b = wid.x % {batch};\n");
    if cell == Cell::Lstm {
        let _ = writeln!(body, "    var c: array<f32, {per_thread}>;");
    }
    let len = if ctx.has_input(4) {
        "u32(seqlens[b])".to_string()
    } else {
        steps.clone()
    };
    let _ = writeln!(body, "    let len = {len};");
    units(&mut body, "    ", "");
    let init = |i: usize, name: &str| {
        if ctx.has_input(i) {
            format!("{name}[{state}]")
        } else {
            "0.0".into()
        }
    };
    let _ = writeln!(body, "            hs[j] = {};", init(5, "h0"));
    if cell == Cell::Lstm {
        let _ = writeln!(body, "            c[u] = {};", init(6, "c0"));
    }
    let _ = writeln!(body, "        }}\n    }}\n    workgroupBarrier();");
    let reverse = if reverse_only { "true" } else { "d == 1u" };
    let _ = writeln!(
        body,
        "    for (var t = 0u; t < {steps}; t = t + 1u) {{\n        let live = t < len;\n        let s = select(t, len - 1u - t, {reverse} && live);"
    );
    if reset_first {
        // GRU's candidate reads r ⊙ h_prev of every unit: reset gates first.
        units(&mut body, "        ", " && live");
        body.push_str(&gate("gr", 1, true, Some("hs")));
        let _ = writeln!(
            body,
            "                rs[j] = act0({}) * hs[j];\n            }}\n        }}\n        workgroupBarrier();",
            clipped("gr")
        );
    }
    let _ = writeln!(body, "        var hn: array<f32, {per_thread}>;");
    units(&mut body, "        ", " && live");
    match cell {
        Cell::Rnn => {
            body.push_str(&gate("gh", 0, true, Some("hs")));
            let _ = writeln!(body, "                hn[u] = act0({});", clipped("gh"));
        }
        Cell::Lstm => {
            // Gates in ONNX order i, o, f, c; peepholes in order i, o, f.
            for (g, name) in ["gi", "go", "gf", "gc"].iter().enumerate() {
                body.push_str(&gate(name, g, true, Some("hs")));
            }
            let _ = writeln!(
                body,
                "                let cp = c[u];\n                let i_g = act0({});\n                let f_g = act0({});\n                let c_g = act1({});\n                let cn = f_g * cp + i_g * c_g;\n                let o_g = act0({});\n                c[u] = cn;\n                hn[u] = o_g * act2(cn);",
                clipped(&format!("gi{}", peep(0, "cp"))),
                clipped(&format!("gf{}", peep(2, "cp"))),
                clipped("gc"),
                clipped(&format!("go{}", peep(1, "cn"))),
            );
        }
        Cell::Gru => {
            let linear_before_reset = p.linear_before_reset;
            // Gates in ONNX order z, r, h.
            body.push_str(&gate("gz", 0, true, Some("hs")));
            if linear_before_reset {
                body.push_str(&gate("gr", 1, true, Some("hs")));
                body.push_str(&gate("gh", 2, true, None));
                body.push_str(&gate("rh", 2, false, Some("hs")));
                let _ = writeln!(
                    body,
                    "                let hh = gh + act0({}) * rh;",
                    clipped("gr")
                );
            } else {
                body.push_str(&gate("hh", 2, true, Some("rs")));
            }
            let _ = writeln!(
                body,
                "                let z = act0({});\n                hn[u] = (1.0 - z) * act1({}) + z * hs[j];",
                clipped("gz"),
                clipped("hh")
            );
        }
    }
    let _ = writeln!(
        body,
        "            }}\n        }}\n        workgroupBarrier();"
    );
    units(&mut body, "        ", "");
    let _ = writeln!(body, "                if (live) {{ hs[j] = hn[u]; }}");
    if ctx.wants_output(0) {
        let y = if layout == 0 {
            format!("((t2 * {dirs}u + d) * {batch} + b) * {hidden}u + j")
        } else {
            format!("((b * {steps} + t2) * {dirs}u + d) * {hidden}u + j")
        };
        let _ = writeln!(
            body,
            "                let t2 = select(t, s, live);\n                y[{y}] = select(0.0, hn[u], live);"
        );
    }
    let _ = writeln!(
        body,
        "            }}\n        }}\n        workgroupBarrier();\n    }}"
    );
    units(&mut body, "    ", "");
    if ctx.wants_output(1) {
        let _ = writeln!(body, "            yh[{state}] = hs[j];");
    }
    if ctx.wants_output(2) {
        let _ = writeln!(body, "            yc[{state}] = c[u];");
    }
    let _ = writeln!(body, "        }}\n    }}");
    k.workgroup_size = [wg, 1, 1];
    let groups = batch_e.scale(dirs as i64);
    match groups.as_const() {
        Some(g) => k.workgroups = [g as u32, 1, 1],
        None => k.groups = Some([groups, Expr::constant(1), Expr::constant(1)]),
    }
    k.body = body;
    Ok(match packed {
        Some(t) => Lowered::WithConsts {
            consts: vec![t],
            temps: Vec::new(),
            launches: vec![Launch { kernel: k, args }],
        },
        None => Lowered::one(k, args),
    })
}
