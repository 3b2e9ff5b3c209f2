//! LSTM: one workgroup per (direction, batch item) walks the sequence;
//! each thread owns hidden units, the previous hidden state is shared
//! through workgroup memory, and barriers separate the time steps.

use std::fmt::Write;

use wpc_ir::{Error, Result};
use wpc_runtime::device_data::Word;

use super::index::literal;
use crate::kernel::Kernel;
use crate::lower::{Arg, Ctx, Lowered};

pub fn lstm(ctx: &Ctx) -> Result<Lowered> {
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    super::require_f32(ctx, x)?;
    let a = ctx.attrs();
    if a.opt_strings("activations")?
        .is_some_and(|acts| acts.chunks(3).any(|c| c != ["Sigmoid", "Tanh", "Tanh"]))
    {
        return Err(Error::unsupported(
            "LSTM with non-default activations on WebGPU",
        ));
    }
    if a.int("input_forget", 0)? != 0 {
        return Err(Error::unsupported("LSTM with input_forget on WebGPU"));
    }
    let layout = a.int("layout", 0)?;
    let dirs = w.shape[0];
    let hidden = w.shape[1] / 4;
    let input = w.shape[2];
    let (steps, batch) = if layout == 0 {
        (x.shape[0], x.shape[1])
    } else {
        (x.shape[1], x.shape[0])
    };
    let reverse_only = a.string("direction", "forward")? == "reverse";
    let clip = a.opt_float("clip")?.map(f64::from);
    let limits = &ctx.profile.webgpu.limits;
    let wg = (hidden.next_power_of_two() as u32)
        .min(ctx.tuning().reduction.max(64))
        .min(limits.max_compute_invocations_per_workgroup);
    let per_thread = hidden.div_ceil(wg as usize);
    if hidden * 4 > limits.max_compute_workgroup_storage_size as usize {
        return Err(Error::unsupported(format!(
            "LSTM hidden size {hidden} exceeds the target's workgroup memory"
        )));
    }
    let lit = |v: f64| literal(v, Word::F32);
    let mut k = Kernel::new(format!(
        "LSTM f32 T={steps} B={batch} I={input} H={hidden} dirs={dirs}"
    ));
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
        if i == 3 && packed.is_some() {
            continue;
        }
        if ctx.has_input(i) {
            let word = ctx.input(i)?.word;
            k.input(name, word);
            args.push(Arg::In(i));
        }
    }
    let outs = [(0, "y"), (1, "yh"), (2, "yc")];
    for (i, name) in outs {
        if ctx.wants_output(i) {
            k.output(name, Word::F32);
            args.push(Arg::Out(i));
        }
    }
    let _ = writeln!(k.decls, "var<workgroup> hs: array<f32, {hidden}>;");
    k.workgroup_bytes = (hidden * 4) as u32;
    let x_at = |s: &str, idx: &str| {
        if layout == 0 {
            format!("x[({s} * {batch}u + b) * {input}u + {idx}]")
        } else {
            format!("x[(b * {steps}u + {s}) * {input}u + {idx}]")
        }
    };
    let state = |_: &str| format!("(d * {batch}u + b) * {hidden}u + j");
    let mut body = format!(
        "    let d = wid.x / {batch}u;\n    let b = wid.x % {batch}u;\n    var c: array<f32, {per_thread}>;\n"
    );
    let len = if ctx.has_input(4) {
        "u32(seqlens[b])".to_string()
    } else {
        format!("{steps}u")
    };
    let _ = writeln!(body, "    let len = {len};");
    // Initial states.
    let _ = writeln!(
        body,
        "    for (var u = 0u; u < {per_thread}u; u = u + 1u) {{\n        let j = lidx + u * {wg}u;\n        if (j < {hidden}u) {{"
    );
    let _ = writeln!(
        body,
        "            hs[j] = {};",
        if ctx.has_input(5) {
            format!("h0[{}]", state("h0"))
        } else {
            "0.0".into()
        }
    );
    let _ = writeln!(
        body,
        "            c[u] = {};\n        }}\n    }}\n    workgroupBarrier();",
        if ctx.has_input(6) {
            format!("c0[{}]", state("c0"))
        } else {
            "0.0".into()
        }
    );
    let reverse = if reverse_only {
        "true".to_string()
    } else {
        "d == 1u".to_string()
    };
    let _ = writeln!(
        body,
        "    for (var t = 0u; t < {steps}u; t = t + 1u) {{\n        let live = t < len;\n        let s = select(t, len - 1u - t, {reverse} && live);\n        var hn: array<f32, {per_thread}>;"
    );
    let _ = writeln!(
        body,
        "        for (var u = 0u; u < {per_thread}u; u = u + 1u) {{\n            let j = lidx + u * {wg}u;\n            hn[u] = 0.0;\n            if (j < {hidden}u && live) {{"
    );
    // Gate pre-activations in ONNX order i, o, f, c.
    for (g, name) in ["gi", "go", "gf", "gc"].iter().enumerate() {
        let row = format!("(d * {}u + {}u + j)", 4 * hidden, g * hidden);
        let mut e = "0.0".to_string();
        if ctx.has_input(3) {
            e = format!(
                "{bn}[{bo}u + d * {}u + {}u + j] + {bn}[{bo}u + d * {}u + {}u + j]",
                8 * hidden,
                g * hidden,
                8 * hidden,
                (4 + g) * hidden
            );
        }
        let _ = writeln!(
            body,
            "                var {name} = {e};\n                for (var q = 0u; q < {input}u; q = q + 1u) {{ {name} = {name} + {wn}[{row} * {input}u + q] * {}; }}\n                for (var q = 0u; q < {hidden}u; q = q + 1u) {{ {name} = {name} + {rn}[{ro}u + {row} * {hidden}u + q] * hs[q]; }}",
            x_at("s", "q")
        );
        if let Some(cl) = clip {
            let _ = writeln!(
                body,
                "                {name} = clamp({name}, {}, {});",
                lit(-cl),
                lit(cl)
            );
        }
    }
    let peep = |p: usize, cexpr: &str| {
        if ctx.has_input(7) {
            format!(
                " + peep[d * {}u + {}u + j] * {cexpr}",
                3 * hidden,
                p * hidden
            )
        } else {
            String::new()
        }
    };
    let _ = writeln!(
        body,
        "                let i_g = 1.0 / (1.0 + exp(-(gi{})));\n                let f_g = 1.0 / (1.0 + exp(-(gf{})));\n                let c_g = tanh(clamp(gc, -15.0, 15.0));\n                c[u] = f_g * c[u] + i_g * c_g;\n                let o_g = 1.0 / (1.0 + exp(-(go{})));\n                hn[u] = o_g * tanh(clamp(c[u], -15.0, 15.0));",
        peep(0, "c[u]"),
        peep(2, "c[u]"),
        peep(1, "c[u]")
    );
    let _ = writeln!(
        body,
        "            }}\n        }}\n        workgroupBarrier();"
    );
    let _ = writeln!(
        body,
        "        for (var u = 0u; u < {per_thread}u; u = u + 1u) {{\n            let j = lidx + u * {wg}u;\n            if (j < {hidden}u) {{"
    );
    let _ = writeln!(body, "                if (live) {{ hs[j] = hn[u]; }}");
    if ctx.wants_output(0) {
        let y = if layout == 0 {
            format!("((t2 * {dirs}u + d) * {batch}u + b) * {hidden}u + j")
        } else {
            format!("((b * {steps}u + t2) * {dirs}u + d) * {hidden}u + j")
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
    let _ = writeln!(
        body,
        "    for (var u = 0u; u < {per_thread}u; u = u + 1u) {{\n        let j = lidx + u * {wg}u;\n        if (j < {hidden}u) {{"
    );
    if ctx.wants_output(1) {
        let _ = writeln!(body, "            yh[{}] = hs[j];", state("yh"));
    }
    if ctx.wants_output(2) {
        let _ = writeln!(body, "            yc[{}] = c[u];", state("yc"));
    }
    let _ = writeln!(body, "        }}\n    }}");
    k.workgroup_size = [wg, 1, 1];
    k.workgroups = [(dirs * batch) as u32, 1, 1];
    k.body = body;
    Ok(match packed {
        Some(t) => Lowered::WithConsts {
            consts: vec![t],
            temps: Vec::new(),
            launches: vec![crate::lower::Launch { kernel: k, args }],
        },
        None => Lowered::one(k, args),
    })
}
