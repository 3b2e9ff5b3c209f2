//! NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss: one thread per
//! (sample, position) computes its weighted loss; a second kernel reduces
//! them in order when the reduction is `mean` or `sum`.

use std::fmt::Write;

use wpc_bundle::device_data::Word;
use wpc_ir::Result;
use wpc_ir::ops::params::LossReduction;

use crate::kernel::Kernel;
use crate::lower::{Arg, Ctx, Launch, Lowered};

pub fn loss(ctx: &Ctx) -> Result<Lowered> {
    let (x, target) = (ctx.input(0)?, ctx.input(1)?);
    super::require_f32(ctx, x)?;
    let sce = ctx.node.op == "SoftmaxCrossEntropyLoss";
    let wpc_ir::ops::params::Loss {
        reduction,
        ignore_index: ignore,
    } = wpc_ir::ops::params::Loss::of(ctx.attrs())?;
    let (n, c) = (x.shape[0], x.shape[1]);
    let inner: usize = x.shape[2..].iter().product();
    let positions = n * inner;
    let weighted = ctx.has_input(2);
    let mut k = Kernel::new(format!(
        "{} f32{:?} reduction {}",
        ctx.node.op,
        x.shape,
        reduction.name()
    ));
    k.input("x", Word::F32).input("t", target.word);
    let mut args = vec![Arg::In(0), Arg::In(1)];
    if weighted {
        k.input("w", Word::F32);
        args.push(Arg::In(2));
    }
    let none = reduction == LossReduction::None;
    let (loss_arg, weight_arg, temps) = if none {
        (Arg::Out(0), Arg::Temp(0), vec![positions])
    } else {
        (Arg::Temp(0), Arg::Temp(1), vec![positions, positions])
    };
    k.output("loss", Word::F32).output("wsum", Word::F32);
    args.push(loss_arg);
    args.push(weight_arg);
    let log_prob = sce && ctx.wants_output(1);
    if log_prob {
        k.output("lp", Word::F32);
        args.push(Arg::Out(1));
    }
    let mut b = format!(
        "    let s = i / {inner}u;\n    let d = i % {inner}u;\n    let base = s * {}u + d;\n    let label = i32(t[i]);\n",
        c * inner
    );
    let skip = match ignore {
        Some(ig) => format!("label == {ig}"),
        None => "false".to_string(),
    };
    if sce {
        let _ = writeln!(
            b,
            "    var m = f32_bits(0xff800000u);\n    for (var j = 0u; j < {c}u; j = j + 1u) {{ m = max(m, x[base + j * {inner}u]); }}\n    var sum = 0.0;\n    for (var j = 0u; j < {c}u; j = j + 1u) {{ sum = sum + exp(x[base + j * {inner}u] - m); }}\n    let lse = m + log(sum);"
        );
        if log_prob {
            let _ = writeln!(
                b,
                "    for (var j = 0u; j < {c}u; j = j + 1u) {{ lp[base + j * {inner}u] = x[base + j * {inner}u] - lse; }}"
            );
        }
    }
    let value = if sce {
        format!("x[base + u32(label) * {inner}u] - lse")
    } else {
        format!("x[base + u32(label) * {inner}u]")
    };
    let weight = if weighted { "w[u32(label)]" } else { "1.0" };
    let _ = writeln!(
        b,
        "    if ({skip} || label < 0 || label >= {c}) {{ loss[i] = 0.0; wsum[i] = 0.0; return; }}\n    let wt = {weight};\n    loss[i] = -({value}) * wt;\n    wsum[i] = wt;"
    );
    k.one_per_item(positions, ctx.tuning().elementwise, ctx.max_groups(), &b);
    let mut launches = vec![Launch { kernel: k, args }];
    if !none {
        // Sums in index order, as the reference does, so rounding matches.
        let mut r = Kernel::new(format!(
            "{} reduce {} over {positions}",
            ctx.node.op,
            reduction.name()
        ));
        r.input("loss", Word::F32)
            .input("wsum", Word::F32)
            .output("out0", Word::F32);
        let fin = if reduction == LossReduction::Mean {
            "select(l / w, 0.0, w == 0.0)"
        } else {
            "l"
        };
        r.body = format!(
            "    var l = 0.0;\n    var w = 0.0;\n    for (var i = 0u; i < {positions}u; i = i + 1u) {{ l = l + loss[i]; w = w + wsum[i]; }}\n    out0[0] = {fin};\n"
        );
        launches.push(Launch {
            kernel: r,
            args: vec![Arg::Temp(0), Arg::Temp(1), Arg::Out(0)],
        });
    }
    Ok(Lowered::Launches { temps, launches })
}
