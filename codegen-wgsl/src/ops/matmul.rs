//! MatMul and Gemm, and the tiled GEMM template Conv also uses.
//!
//! A workgroup computes a `tile_m x tile_n` block of the output: each step
//! it stages a `tile_m x k_step` slice of A and a `k_step x tile_n` slice
//! of B in workgroup memory (B as vec4, loaded four at a time from global
//! memory when B's rows allow it), then every thread accumulates its
//! `per_thread` block in vec4 registers. Tile shapes come from the profile.

use std::fmt::Write;

use wpc_bundle::device_data::Word;
use wpc_ir::{Error, Result};
use wpc_targets::MatmulTile;

use super::index::{broadcast_row_major, broadcast_strides, literal, offset_of, size, unravel_of};
use super::require_f32;
use crate::kernel::Kernel;
use crate::kernel::Params;
use crate::lower::{Arg, Ctx, Lowered};
use wpc_ir::sym::Expr;

/// What one GEMM-shaped kernel computes. Code fragments see `bat` (the
/// batch index, `u32`) and, after `prelude`, the row `m`, column `n` and
/// depth `k` (all `u32`, in range).
pub struct GemmSpec {
    pub label: String,
    pub m: Expr,
    pub n: Expr,
    pub k: Expr,
    pub batch: Expr,
    /// The dynamic sizes the fragments below read (the kernel starts
    /// with these parameters).
    pub params: Params,
    /// Statements run once per thread, e.g. batch offsets.
    pub prelude: String,
    /// Statements assigning A[m, k] to `v`.
    pub load_a: String,
    /// Statements assigning B[k, n] to `v`.
    pub load_b: String,
    /// If set, an expression of B[k, 4*n4 .. 4*n4+3] as a `vec4<f32>`
    /// (requires a static `n` with `n % 4 == 0`), used instead of `load_b`.
    pub load_b4: Option<String>,
    /// Statements storing `v` as output [m, n].
    pub store: String,
}

/// Renders `spec` with `tile` into a kernel; bindings are added by the caller.
pub fn gemm_kernel(spec: &GemmSpec, tile: &MatmulTile, max_groups: u32) -> Result<Kernel> {
    let [wx, wy] = tile.workgroup;
    let [tn, tm] = tile.per_thread;
    let (tile_m, tile_n, tk) = (tile.tile_m(), tile.tile_n(), tile.k_step);
    let threads = wx * wy;
    let mut k = Kernel::new(spec.label.clone());
    k.params = spec.params.clone();
    let (m, n, kk) = (
        k.params.size(&spec.m),
        k.params.size(&spec.n),
        k.params.size(&spec.k),
    );
    k.workgroup_size = [wx, wy, 1];
    let ceil = |e: &Expr, by: u32| {
        e.add(&Expr::constant(i64::from(by) - 1))
            .floor_div(&Expr::constant(i64::from(by)))
    };
    let groups = [
        ceil(&spec.n, tile_n),
        ceil(&spec.m, tile_m),
        spec.batch.clone(),
    ];
    match groups
        .iter()
        .map(Expr::as_const)
        .collect::<Option<Vec<i64>>>()
    {
        Some(g) => {
            if g.iter().any(|&g| g > i64::from(max_groups)) {
                return Err(Error::unsupported(format!(
                    "GEMM grid {g:?} exceeds the target's workgroup count limit"
                )));
            }
            k.workgroups = [g[0] as u32, g[1] as u32, g[2] as u32];
        }
        None => k.groups = Some(groups),
    }
    let _ = writeln!(
        k.decls,
        "var<workgroup> ta: array<f32, {}>;\nvar<workgroup> tb: array<vec4<f32>, {}>;",
        tile_m * tk,
        tk * tile_n / 4
    );
    k.workgroup_bytes = tile.workgroup_bytes();
    let vec_n = tn / 4;
    let mut b = String::new();
    let _ = writeln!(
        b,
        "    let bat = wid.z;\n    let m0 = wid.y * {tile_m}u;\n    let n0 = wid.x * {tile_n}u;\n{}",
        spec.prelude
    );
    for r in 0..tm {
        for c in 0..vec_n {
            let _ = writeln!(b, "    var acc{r}_{c} = vec4<f32>(0.0);");
        }
    }
    let _ = writeln!(b, "    for (var k0 = 0u; k0 < {kk}; k0 = k0 + {tk}u) {{");
    // Stage A: tile_m x k_step scalars.
    let _ = writeln!(
        b,
        "        for (var l = 0u; l < {}u; l = l + 1u) {{\n            let e = lidx + l * {threads}u;\n            let m = m0 + e / {tk}u;\n            let k = k0 + e % {tk}u;\n            var v = 0.0;\n            if (m < {m} && k < {kk}) {{\n{}            }}\n            ta[e] = v;\n        }}",
        tile_m * tk / threads,
        indent(&spec.load_a, 16)
    );
    // Stage B: k_step x tile_n, as vec4s.
    match &spec.load_b4 {
        Some(load4) => {
            let _ = writeln!(
                b,
                "        for (var l = 0u; l < {}u; l = l + 1u) {{\n            let e = lidx + l * {threads}u;\n            if (e < {}u) {{\n                let k = k0 + e / {}u;\n                let n4 = n0 / 4u + e % {}u;\n                var v4 = vec4<f32>(0.0);\n                if (k < {kk} && n4 < {}u) {{ v4 = {load4}; }}\n                tb[e] = v4;\n            }}\n        }}",
                (tk * tile_n / 4).div_ceil(threads),
                tk * tile_n / 4,
                tile_n / 4,
                tile_n / 4,
                spec.n.as_const().unwrap_or(0) / 4
            );
        }
        None => {
            let _ = writeln!(
                b,
                "        for (var l = 0u; l < {}u; l = l + 1u) {{\n            let e = lidx + l * {threads}u;\n            let k = k0 + e / {tile_n}u;\n            let n = n0 + e % {tile_n}u;\n            var v = 0.0;\n            if (k < {kk} && n < {n}) {{\n{}            }}\n            tb[e / 4u][e % 4u] = v;\n        }}",
                tk * tile_n / threads,
                indent(&spec.load_b, 16)
            );
        }
    }
    let _ = writeln!(
        b,
        "        workgroupBarrier();\n        for (var kk = 0u; kk < {tk}u; kk = kk + 1u) {{"
    );
    for c in 0..vec_n {
        let _ = writeln!(
            b,
            "            let b{c} = tb[kk * {}u + lid.x * {vec_n}u + {c}u];",
            tile_n / 4
        );
    }
    for r in 0..tm {
        let _ = writeln!(
            b,
            "            let a{r} = ta[(lid.y * {tm}u + {r}u) * {tk}u + kk];"
        );
        for c in 0..vec_n {
            let _ = writeln!(
                b,
                "            acc{r}_{c} = fma(vec4<f32>(a{r}), b{c}, acc{r}_{c});"
            );
        }
    }
    let _ = writeln!(b, "        }}\n        workgroupBarrier();\n    }}");
    for r in 0..tm {
        let _ = writeln!(b, "    {{\n        let m = m0 + lid.y * {tm}u + {r}u;");
        for c in 0..vec_n {
            for j in 0..4 {
                let _ = writeln!(
                    b,
                    "        {{\n            let n = n0 + lid.x * {tn}u + {}u;\n            if (m < {m} && n < {n}) {{\n                let v = acc{r}_{c}[{j}];\n{}            }}\n        }}",
                    c * 4 + j,
                    indent(&spec.store, 16)
                );
            }
        }
        let _ = writeln!(b, "    }}");
    }
    k.body = b;
    Ok(k)
}

fn indent(code: &str, by: usize) -> String {
    code.lines()
        .map(|l| format!("{}{}\n", " ".repeat(by), l.trim_start()))
        .collect()
}

/// Sizes of a (broadcast-)batched product of matrices `a` (.., M, K) and
/// `b` (.., K, N), which may be dynamic: `(M, K, N, batch count,
/// prelude)`, where the prelude sets `abase`, `bbase` and `obase` from
/// the batch index `bat`, reading dynamic sizes from `params`.
fn batched(
    params: &mut Params,
    a_shape: &[Expr],
    b_shape: &[Expr],
) -> Result<(Expr, Expr, Expr, Expr, String)> {
    let (m, kk) = (
        a_shape[a_shape.len() - 2].clone(),
        a_shape[a_shape.len() - 1].clone(),
    );
    let n = b_shape[b_shape.len() - 1].clone();
    let a_batch = &a_shape[..a_shape.len() - 2];
    let b_batch = &b_shape[..b_shape.len() - 2];
    let batch_shape = broadcast_dims(a_batch, b_batch)?;
    let batch = Expr::product(&batch_shape);
    let a_bs: Vec<Expr> = broadcast_row_major(a_batch, &batch_shape)?
        .iter()
        .map(|s| s.mul(&m).mul(&kk))
        .collect();
    let b_bs: Vec<Expr> = broadcast_row_major(b_batch, &batch_shape)?
        .iter()
        .map(|s| s.mul(&kk).mul(&n))
        .collect();
    let prelude = format!(
        "{}    let abase = {};\n    let bbase = {};\n    let obase = bat * {};\n",
        unravel_of(params, "bat", &batch_shape, "q"),
        offset_of(params, "q", &a_bs),
        offset_of(params, "q", &b_bs),
        params.size(&m.mul(&n))
    );
    Ok((m, kk, n, batch, prelude))
}

/// The broadcast of two batch shapes whose sizes may be dynamic: a 1
/// takes the other's size; dynamic sizes must be equal.
fn broadcast_dims(a: &[Expr], b: &[Expr]) -> Result<Vec<Expr>> {
    let rank = a.len().max(b.len());
    let at = |s: &[Expr], i: usize| {
        (i + s.len())
            .checked_sub(rank)
            .map_or(Expr::constant(1), |j| s[j].clone())
    };
    (0..rank)
        .map(|i| {
            let (x, y) = (at(a, i), at(b, i));
            match (x.as_const(), y.as_const()) {
                (Some(1), _) => Ok(y),
                (_, Some(1)) => Ok(x),
                _ if x == y => Ok(x),
                _ => Err(Error::unsupported(format!(
                    "MatMul batch dims {x} and {y} that may differ at run time"
                ))),
            }
        })
        .collect()
}

pub fn matmul(ctx: &Ctx) -> Result<Lowered> {
    let (a, bt, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    require_f32(ctx, a)?;
    require_f32(ctx, bt)?;
    let one = Expr::constant(1);
    let a_shape = if a.dims.len() == 1 {
        vec![one.clone(), a.dims[0].clone()]
    } else {
        a.dims.clone()
    };
    let b_shape = if bt.dims.len() == 1 {
        vec![bt.dims[0].clone(), one]
    } else {
        bt.dims.clone()
    };
    let mut params = Params::default();
    let (m, kk, n, batch, prelude) = batched(&mut params, &a_shape, &b_shape)?;
    let (k_size, n_size) = (params.size(&kk), params.size(&n));
    let store = ctx.store(&format!("obase + m * {n_size} + n"), "v");
    let spec = GemmSpec {
        label: format!("MatMul f32 [{batch}x{m}x{kk}] x [{kk}x{n}]"),
        m,
        n: n.clone(),
        k: kk,
        batch,
        params,
        prelude,
        load_a: format!("v = a[abase + m * {k_size} + k];"),
        load_b: format!("v = b[bbase + k * {n_size} + n];"),
        load_b4: None,
        store,
    };
    let n4 = n.as_const().filter(|n| n % 4 == 0);
    let spec = match n4 {
        Some(n) => GemmSpec {
            load_b4: Some(format!("b[bbase / 4u + k * {}u + n4]", n / 4)),
            ..spec
        },
        None => spec,
    };
    let mut k = gemm_kernel(&spec, &ctx.tuning().matmul, ctx.max_groups())?;
    k.input("a", Word::F32)
        .input("b", Word::F32)
        .output("out0", out.word);
    if n4.is_some() {
        k.vec4_bindings.push("b".into());
    }
    Ok(Lowered::one(k, vec![Arg::In(0), Arg::In(1), Arg::Out(0)]))
}

pub fn gemm(ctx: &Ctx) -> Result<Lowered> {
    let (a, bt, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    require_f32(ctx, a)?;
    let p = wpc_ir::ops::params::Gemm::of(ctx.attrs())?;
    let (ta, tb) = (p.trans_a, p.trans_b);
    let (alpha, beta) = (f64::from(p.alpha), f64::from(p.beta));
    let (m, kk) = if ta {
        (a.shape[1], a.shape[0])
    } else {
        (a.shape[0], a.shape[1])
    };
    // M (a dynamic batch) may be dynamic when A is not transposed; the
    // rest is compiled in.
    let rows = if ta { &a.dims[1] } else { &a.dims[0] };
    let inner = if ta { &a.dims[0] } else { &a.dims[1] };
    if !bt.is_static() {
        return Err(crate::lower::dynamic_size_refused("Gemm", bt));
    }
    if (ta && !a.is_static()) || inner.as_const().is_none() {
        return Err(crate::lower::dynamic_size_refused("Gemm", a));
    }
    let n = if tb { bt.shape[0] } else { bt.shape[1] };
    let has_c = ctx.has_input(2) && beta != 0.0;
    let limits = &ctx.profile.webgpu.limits;
    let limit = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    // A weight over the binding limit is split into column blocks, each its
    // own buffer and dispatch.
    let blocks: Vec<(usize, usize)> = if (bt.numel() as u64) * 4 <= limit {
        vec![(0, n)]
    } else {
        let cols = ((limit / (kk as u64 * 4)) as usize / 4 * 4).max(4);
        (0..n)
            .step_by(cols)
            .map(|n0| (n0, cols.min(n - n0)))
            .collect()
    };
    let split = blocks.len() > 1;
    let weight = if split {
        let b = ctx.constant(1).map_err(|_| {
            Error::unsupported(format!(
                "Gemm weight of {} bytes exceeds the target's storage binding limit and is not a constant that could be split",
                bt.numel() * 4
            ))
        })?;
        Some(b.to_f32s())
    } else {
        None
    };
    let mut consts = Vec::new();
    let mut launches = Vec::new();
    for &(n0, nb) in &blocks {
        let load_a = if ta {
            format!("v = a[k * {m}u + m];")
        } else {
            format!("v = a[m * {kk}u + k];")
        };
        let load_b = if tb {
            format!("v = b[n * {kk}u + k];")
        } else {
            format!("v = b[k * {nb}u + n];")
        };
        let alpha_l = literal(alpha, Word::F32);
        let col = if n0 == 0 {
            "n".to_string()
        } else {
            format!("(n + {n0}u)")
        };
        let index = format!("m * {n}u + {col}");
        let store = if has_c {
            let c = ctx.input(2)?;
            let cs = broadcast_strides(&c.shape, &[m, n]);
            let value = format!(
                "{alpha_l} * v + {} * c[m * {}u + {col} * {}u]",
                literal(beta, Word::F32),
                cs[0],
                cs[1]
            );
            ctx.store(&index, &value)
        } else {
            ctx.store(&index, &format!("{alpha_l} * v"))
        };
        let spec = GemmSpec {
            label: format!(
                "Gemm f32 [{rows}x{kk}] x [{kk}x{nb}] of {n} at {n0} transA={ta} transB={tb}"
            ),
            m: rows.clone(),
            n: size(nb),
            k: size(kk),
            batch: size(1),
            params: Params::default(),
            prelude: String::new(),
            load_a,
            load_b,
            load_b4: (!tb && nb % 4 == 0).then(|| format!("b[k * {}u + n4]", nb / 4)),
            store,
        };
        let mut k = gemm_kernel(&spec, &ctx.tuning().matmul, ctx.max_groups())?;
        k.input("a", Word::F32).input("b", Word::F32);
        let b_arg = match &weight {
            Some(w) => {
                let block: Vec<f32> = if tb {
                    w[n0 * kk..(n0 + nb) * kk].to_vec()
                } else {
                    (0..kk)
                        .flat_map(|r| w[r * n + n0..r * n + n0 + nb].iter().copied())
                        .collect()
                };
                let shape = if tb { vec![nb, kk] } else { vec![kk, nb] };
                consts.push(wpc_ir::Tensor::from_vec(shape, block));
                Arg::Const(consts.len() - 1)
            }
            None => Arg::In(1),
        };
        let mut args = vec![Arg::In(0), b_arg];
        if has_c {
            k.input("c", Word::F32);
            args.push(Arg::In(2));
        }
        k.output("out0", out.word);
        args.push(Arg::Out(0));
        if spec.load_b4.is_some() {
            k.vec4_bindings.push("b".into());
        }
        launches.push(crate::lower::Launch { kernel: k, args });
    }
    Ok(if split {
        Lowered::WithConsts {
            consts,
            temps: Vec::new(),
            launches,
        }
    } else {
        Lowered::Launches {
            temps: Vec::new(),
            launches,
        }
    })
}

/// QLinearMatMul (2-D, per-tensor parameters): dequantizes A and B while
/// staging tiles, accumulates in f32 on the GEMM template, and requantizes
/// on store (round half to even, saturate).
pub fn qlinear_matmul(ctx: &Ctx) -> Result<Lowered> {
    let (a, b, out) = (ctx.input(0)?, ctx.input(3)?, ctx.output(0)?);
    if a.shape.len() < 2 || b.shape.len() < 2 {
        return Err(Error::unsupported(
            "QLinearMatMul on WebGPU takes operands of rank 2 or more",
        ));
    }
    for i in [1, 2, 4, 5, 6, 7] {
        if ctx.input(i)?.numel() != 1 {
            return Err(Error::unsupported(
                "QLinearMatMul with per-axis parameters on WebGPU",
            ));
        }
    }
    let (lo, hi) = match out.dtype {
        wpc_ir::DType::U8 | wpc_ir::DType::I8 => out.dtype.int_range().expect("an integer type"),
        other => {
            return Err(Error::unsupported(format!(
                "QLinearMatMul to {other} on WebGPU"
            )));
        }
    };
    if !(a.is_static() && b.is_static()) {
        return Err(crate::lower::dynamic_size_refused("QLinearMatMul", a));
    }
    let mut params = Params::default();
    let (m, kk, n, batch, prelude) = batched(&mut params, &a.dims, &b.dims)?;
    // The six scalar parameters are gathered into one f32 buffer first, so
    // the GEMM binds four buffers instead of nine.
    let names = ["asc", "azp", "bsc", "bzp", "ysc", "yzp"];
    let mut gather = Kernel::new("QLinearMatMul parameters");
    let mut body = String::new();
    for (j, (name, i)) in names.iter().zip([1, 2, 4, 5, 6, 7]).enumerate() {
        gather.input(name, ctx.input(i)?.word);
        body.push_str(&format!("    p[{j}] = f32({name}[0]);\n"));
    }
    gather.output("p", Word::F32);
    gather.body = body;
    let spec = GemmSpec {
        label: format!(
            "QLinearMatMul [{batch}x{m}x{kk}] x [{kk}x{n}] -> {}",
            out.dtype.name()
        ),
        m: m.clone(),
        n: n.clone(),
        k: kk.clone(),
        batch,
        params,
        prelude,
        load_a: format!("v = (f32(a[abase + m * {kk}u + k]) - p[1]) * p[0];"),
        load_b: format!("v = (f32(b[bbase + k * {n}u + n]) - p[3]) * p[2];"),
        load_b4: None,
        store: format!(
            "out0[obase + m * {n}u + n] = {}(clamp(round(v / p[4]) + p[5], {lo:?}, {hi:?}));",
            out.word.wgsl()
        ),
    };
    let mut k = gemm_kernel(&spec, &ctx.tuning().matmul, ctx.max_groups())?;
    k.input("a", a.word)
        .input("b", b.word)
        .input("p", Word::F32)
        .output("out0", out.word);
    let mut gather_args: Vec<Arg> = [1, 2, 4, 5, 6, 7].into_iter().map(Arg::In).collect();
    gather_args.push(Arg::Temp(0));
    Ok(Lowered::Launches {
        temps: vec![6],
        launches: vec![
            crate::lower::Launch {
                kernel: gather,
                args: gather_args,
            },
            crate::lower::Launch {
                kernel: k,
                args: vec![Arg::In(0), Arg::In(3), Arg::Temp(0), Arg::Out(0)],
            },
        ],
    })
}
