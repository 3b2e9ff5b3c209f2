//! Packed low-bit weights (`MatMulNBits`, `GatherBlockQuantized`): codes,
//! scales and zero points stay packed on the device as `u32` words (the
//! format of `wpc_ir::packed`) and are dequantized in registers; no float
//! copy of a weight exists in device memory.

use std::fmt::Write;

use wpc_bundle::device_data::Word;
use wpc_ir::ops::params::{GatherBlockQuantized, MatMulNBits};
use wpc_ir::packed::{self, Layout};
use wpc_ir::sym::Expr;
use wpc_ir::{DType, Error, Result, Tensor};

use super::require_f32;
use crate::kernel::Kernel;
use crate::lower::{Arg, Ctx, Launch, Lowered};

/// Rows of the output one `MatMulNBits` thread computes, so each code is
/// unpacked once for that many rows of `A`; also the most rows the
/// matvec kernel takes.
const ROWS_PER_THREAD: usize = 4;

/// Lanes of a matvec workgroup that share one column: a warp of most
/// GPUs, so one warp reads one weight row.
const MATVEC_LANES: usize = 32;

/// The WGSL that reads a packed weight: `code_at(bit)`, `scale_of(group)`
/// and `zero_of(row, block)` over the bindings `codes`, `scales` and
/// `zeros`, and the derived constants (as `u32` words) they bind.
struct Reader {
    decls: String,
    consts: Vec<Tensor>,
    has_zeros: bool,
}

/// A `bits`-wide code at bit `at` of binding `array`: a 3-bit (5-, 6-,
/// 7-bit) code may straddle two words, which the padding word of
/// [`packed::words`] keeps in bounds.
fn extract(name: &str, array: &str, bits: u32) -> String {
    let mask = (1u32 << bits) - 1;
    let straddle = if 32u32.is_multiple_of(bits) {
        String::new()
    } else {
        format!(
            "    if (s > {}u) {{ v = v | ({array}[w + 1u] << (32u - s)); }}\n",
            32 - bits
        )
    };
    format!(
        "fn {name}(at: u32) -> u32 {{\n    let w = at >> 5u;\n    let s = at & 31u;\n    var v = {array}[w] >> s;\n{straddle}    return v & {mask}u;\n}}\n"
    )
}

fn words_of(bytes: &[u8]) -> Tensor {
    let w = packed::words(bytes);
    Tensor::from_vec(vec![w.len()], w)
}

impl Reader {
    /// For a weight whose codes, scales and zero points are the node's
    /// inputs `[codes, scales, zeros]`.
    fn new(ctx: &Ctx, layout: &Layout, [codes, scales, zeros]: [usize; 3]) -> Result<Reader> {
        let code_bytes = ctx.constant(codes)?;
        let code_bytes = code_bytes
            .as_slice::<u8>()
            .ok_or_else(|| Error::unsupported("packed codes that are not uint8"))?;
        layout.check(code_bytes.len())?;
        let s = ctx.constant(scales)?;
        let mut decls = extract("code_at", "codes", layout.bits);
        let scale = match s.dtype() {
            DType::F32 => "bitcast<f32>(scales[g])",
            DType::F16 => "unpack2x16float(scales[g >> 1u])[g & 1u]",
            other => return Err(Error::unsupported(format!("{other} scales"))),
        };
        let _ = writeln!(decls, "fn scale_of(g: u32) -> f32 {{ return {scale}; }}");
        let mut consts = vec![words_of(code_bytes), words_of(&s.to_le_bytes())];
        // The body of `zero_of(r, b)`.
        let zero = match ctx.opt_constant(zeros) {
            None if ctx.has_input(zeros) => {
                return Err(Error::unsupported("zero points that are not constants"));
            }
            None => format!("return {}.0;", layout.default_zero_point()),
            Some(z) if z.dtype() == DType::U8 => {
                decls.push_str(&extract("zero_code_at", "zeros", layout.bits));
                consts.push(words_of(z.as_slice::<u8>().expect("uint8")));
                format!(
                    "return f32(zero_code_at(r * {}u + b * {}u));",
                    layout.zero_point_row_bytes() * 8,
                    layout.bits
                )
            }
            Some(z) => {
                let read = match z.dtype() {
                    DType::F32 => "bitcast<f32>(zeros[g])",
                    DType::F16 => "unpack2x16float(zeros[g >> 1u])[g & 1u]",
                    other => return Err(Error::unsupported(format!("{other} zero points"))),
                };
                consts.push(words_of(&z.to_le_bytes()));
                format!("let g = r * {}u + b;\n    return {read};", layout.blocks())
            }
        };
        let _ = writeln!(
            decls,
            "fn zero_of(r: u32, b: u32) -> f32 {{\n    {zero}\n}}"
        );
        Ok(Reader {
            decls,
            has_zeros: consts.len() == 3,
            consts,
        })
    }

    /// Binds the packed weight to `k` (after its other inputs).
    fn bind(&self, k: &mut Kernel, args: &mut Vec<Arg>) {
        k.input("codes", Word::U32).input("scales", Word::U32);
        args.extend([Arg::Const(0), Arg::Const(1)]);
        if self.has_zeros {
            k.input("zeros", Word::U32);
            args.push(Arg::Const(2));
        }
        k.decls.push_str(&self.decls);
    }
}

/// `Y[m, n] = Σₖ A[m, k] · W[n, k] (+ bias[n])`, `W` dequantized block by
/// block: per block the kernel sums `A·(q − z)` and applies the scale
/// once. (Summing `A·q` and `A` apart, `s·(Σ A·q − z·Σ A)`, saves a
/// subtraction per code but cancels catastrophically over long blocks:
/// a QDQ weight's one block per column of 1,024 8-bit codes lost 2e-2.)
///
/// Two kernels: where `A` has at most [`ROWS_PER_THREAD`] rows (a decoder's
/// token-by-token matvec), [`matvec`] spreads each column's code words
/// over the lanes of a workgroup, so a weight row is read by neighbouring
/// lanes at once and the sums meet in workgroup memory; otherwise each
/// thread computes [`ROWS_PER_THREAD`] rows of one column ([`rows`]).
pub fn matmul_nbits(ctx: &Ctx) -> Result<Lowered> {
    let p = MatMulNBits::of(ctx.attrs())?;
    let a = ctx.input(0)?;
    require_f32(ctx, a)?;
    if ctx.has_input(4) {
        return Err(Error::unsupported(
            "MatMulNBits with g_idx (act-order block indices)",
        ));
    }
    let layout = p.layout();
    let reader = Reader::new(ctx, &layout, [1, 2, 3])?;
    let mut k = Kernel::new(format!(
        "MatMulNBits {}-bit {:?}x{}",
        layout.bits, a.shape, p.n
    ));
    let mut args = vec![Arg::In(0)];
    k.input("in0", Word::F32);
    reader.bind(&mut k, &mut args);
    let bias = ctx.has_input(5);
    if bias {
        k.input("bias", Word::F32);
        args.push(Arg::In(5));
    }
    k.output("out0", Word::F32);
    args.push(Arg::Out(0));
    let m = Expr::product(&a.dims[..a.dims.len() - 1]);
    let most_rows: usize = a.shape[..a.shape.len() - 1].iter().product();
    let product = Product {
        layout,
        n: p.n,
        bias: if bias { " + bias[n]" } else { "" },
    };
    if most_rows <= ROWS_PER_THREAD {
        matvec(ctx, &mut k, &product, &m, most_rows)
    } else {
        rows(ctx, &mut k, &product, &m)
    }
    Ok(Lowered::WithConsts {
        consts: reader.consts,
        temps: Vec::new(),
        launches: vec![Launch { kernel: k, args }],
    })
}

/// What both `MatMulNBits` kernels are written from.
struct Product {
    layout: Layout,
    n: usize,
    /// The bias term of a stored value (`" + bias[n]"`), or empty.
    bias: &'static str,
}

impl Product {
    /// `text` with the weight's sizes in place of `KK`, `NN`, `BLOCKS`,
    /// `BLOCK`, `ROWBITS` and `BITS`.
    fn sized(&self, text: &str) -> String {
        let l = &self.layout;
        text.replace("NN", &self.n.to_string())
            .replace("KK", &l.k.to_string())
            .replace("BLOCKS", &l.blocks().to_string())
            .replace("BLOCK", &l.block.to_string())
            .replace("ROWBITS", &(l.row_bytes * 8).to_string())
            .replace("BITS", &l.bits.to_string())
    }

    /// WGSL adding block `b` of column `n`, zero point `z`, into `aq[j]`
    /// (`Σ A·(q − z)`) for the `rows` rows of `A` starting at word
    /// `arow[j]`. Where codes fill whole words (2, 4 and 8 bits), each
    /// word is loaded once and split in registers; other widths read
    /// code by code.
    fn block_sums(&self, rows: usize) -> String {
        let l = &self.layout;
        if 32 % l.bits != 0 {
            return format!(
                "        let k1 = min(k0 + BLOCKu, KKu);
        var at = n * ROWBITSu + k0 * BITSu;
        for (var kk = k0; kk < k1; kk++) {{
            let q = f32(code_at(at)) - z;
            at += BITSu;
            for (var j = 0u; j < {rows}u; j++) {{
                aq[j] += in0[arow[j] + kk] * q;
            }}
        }}
"
            );
        }
        let per_word = 32 / l.bits;
        // A last, partial block reads zeros past K (its padding codes are
        // not the zero point, so they must not count).
        let x = if l.k.is_multiple_of(l.block) {
            "in0[arow[j] + kk]"
        } else {
            "select(0.0, in0[arow[j] + min(kk, KKu - 1u)], kk < KKu)"
        };
        format!(
            "        let w0 = (n * ROWBITSu + k0 * BITSu) >> 5u;
        for (var w = 0u; w < {words}u; w++) {{
            let word = codes[w0 + w];
            for (var c = 0u; c < {per_word}u; c++) {{
                let kk = k0 + w * {per_word}u + c;
                let q = f32((word >> (c * BITSu)) & {mask}u) - z;
                for (var j = 0u; j < {rows}u; j++) {{
                    aq[j] += {x} * q;
                }}
            }}
        }}
",
            words = l.block / per_word as usize,
            mask = l.max_code(),
        )
    }
}

/// One thread per column and [`ROWS_PER_THREAD`] rows of `A`, so each code
/// is unpacked once for that many rows.
fn rows(ctx: &Ctx, k: &mut Kernel, p: &Product, m: &Expr) {
    let r = ROWS_PER_THREAD;
    let items = m
        .add(&Expr::constant(r as i64 - 1))
        .floor_div(&Expr::constant(r as i64))
        .scale(p.n as i64);
    let mm = k.params.size(m);
    let store = ctx.store("(m0 + j) * NNu + n", &format!("acc[j]{}", p.bias));
    let body = format!(
        "    let n = i % NNu;
    let m0 = (i / NNu) * {r}u;
    let rows = min({r}u, {mm} - m0);
    var arow: array<u32, {r}>;
    for (var j = 0u; j < {r}u; j++) {{ arow[j] = min(m0 + j, {mm} - 1u) * KKu; }}
    var acc: array<f32, {r}>;
    for (var b = 0u; b < BLOCKSu; b++) {{
        let s = scale_of(n * BLOCKSu + b);
        let z = zero_of(n, b);
        let k0 = b * BLOCKu;
        var aq: array<f32, {r}>;
{sums}        for (var j = 0u; j < {r}u; j++) {{ acc[j] += s * aq[j]; }}
    }}
    for (var j = 0u; j < rows; j++) {{
        {store}
    }}
",
        sums = p.block_sums(r),
    );
    let body = p.sized(&body);
    k.one_per_item_of(&items, ctx.tuning().elementwise, ctx.max_groups(), &body);
}

/// A product by at most [`ROWS_PER_THREAD`] rows (`most_rows`), where
/// reading the weight is the whole cost: each workgroup takes a few
/// columns, and the lanes of one column take its code words in turn (a
/// block each at widths that straddle words), so a warp reads one weight
/// row in whole cache lines and `A` in runs; each column's partial sums
/// then meet in workgroup memory.
fn matvec(ctx: &Ctx, k: &mut Kernel, p: &Product, m: &Expr, most_rows: usize) {
    let l = &p.layout;
    let threads = ctx.tuning().reduction;
    let by_word = 32 % l.bits == 0;
    // What one lane takes at a time: a code word, or a block.
    let units = if by_word { l.row_bytes / 4 } else { l.blocks() };
    // Lanes per column: up to a warp, no more than the column has units.
    let lanes = (threads as usize).min(MATVEC_LANES).min(1 << units.ilog2()) as u32;
    let columns = threads / lanes;
    let groups = (p.n as u32).div_ceil(columns);
    let rows = 0..most_rows;
    k.label.push_str(" matvec");
    let mm = k.params.size(m);
    super::workgroup_array(k, "sums", "f32", threads);
    let each = |f: &dyn Fn(usize) -> String| rows.clone().map(f).collect::<String>();
    // Where K is whole blocks (so a multiple of 4), words read A as vec4s.
    let vec4 = by_word && l.k.is_multiple_of(l.block);
    if vec4 {
        k.vec4_bindings.push("in0".into());
    }
    let unit = if by_word {
        word_sums(p, most_rows, vec4)
    } else {
        format!(
            "        let k0 = b * BLOCKu;
        var arow: array<u32, {r}>;
{arows}        var aq: array<f32, {r}>;
{sums}{aqs}",
            r = most_rows,
            arows = each(&|j| format!("        arow[{j}] = a{j};\n")),
            sums = p.block_sums(most_rows),
            aqs = each(&|j| format!("        let aq{j} = aq[{j}];\n")),
        )
    };
    let reduce = (1..lanes)
        .rev()
        .filter(|s| s.is_power_of_two())
        .map(|s| {
            format!(
                "    if (lane < {s}u) {{ sums[lidx] += sums[lidx + {s}u]; }}\n    workgroupBarrier();\n"
            )
        })
        .collect::<String>();
    // A row of `A` in the words `in0` is read in.
    let row = if vec4 { l.k / 4 } else { l.k };
    let body = format!(
        "    let lane = lidx % {lanes}u;
    let n = row * {columns}u + lidx / {lanes}u;
{arows}{accs}    if (n < NNu) {{
    for (var u = lane; u < {units}u; u += {lanes}u) {{
        let b = {block_of};
        let s = scale_of(n * BLOCKSu + b);
        let z = zero_of(n, b);
{unit}{add}    }}
    }}
{stores}",
        arows = each(&|j| format!("    let a{j} = min({j}u, {mm} - 1u) * {row}u;\n")),
        accs = each(&|j| format!("    var acc{j} = 0.0;\n")),
        block_of = if by_word {
            format!("u / {}u", l.block * l.bits as usize / 32)
        } else {
            "u".to_string()
        },
        add = each(&|j| format!("        acc{j} += s * aq{j};\n")),
        stores = each(&|j| {
            let store = ctx.store(&format!("{j}u * NNu + n"), &format!("sums[lidx]{}", p.bias));
            format!(
                "    sums[lidx] = acc{j};\n    workgroupBarrier();\n{reduce}    if (lane == 0u && n < NNu && {j}u < {mm}) {{\n        {store}\n    }}\n    workgroupBarrier();\n"
            )
        }),
    );
    let body = p.sized(&body);
    k.one_group_per_item(groups as usize, threads, ctx.max_groups(), &body);
}

/// The matvec's sum over code word `u` of column `n`, zero point `z`:
/// `aq{j}` (`Σ A·(q − z)`) for each row `j` of `A` (which starts at `a{j}`).
/// The word's codes split in registers; with `vec4`, `A` is read four
/// values to a load (`in0` bound as `vec4`s).
fn word_sums(p: &Product, rows: usize, vec4: bool) -> String {
    let l = &p.layout;
    let per_word = (32 / l.bits) as usize;
    let code = |c: usize| {
        format!(
            "f32((word >> {}u) & {}u)",
            c * l.bits as usize,
            l.max_code()
        )
    };
    let mut s = format!("        let word = codes[n * {}u + u];\n", l.row_bytes / 4);
    for j in 0..rows {
        s.push_str(&format!("        var aq{j} = 0.0;\n"));
    }
    if vec4 {
        for v in 0..per_word / 4 {
            let q: Vec<String> = (0..4).map(|c| code(4 * v + c)).collect();
            s.push_str(&format!(
                "        let q{v} = vec4<f32>({}) - z;\n",
                q.join(", ")
            ));
            for j in 0..rows {
                s.push_str(&format!(
                    "        aq{j} += dot(in0[a{j} + u * {}u + {v}u], q{v});\n",
                    per_word / 4
                ));
            }
        }
    } else {
        // The last block runs past K: its padding codes are not the zero
        // point, so A reads 0 there.
        s.push_str(&format!("        let first = u * {per_word}u;\n"));
        for c in 0..per_word {
            s.push_str(&format!(
                "        let q{c} = {} - z;\n        let k{c} = first + {c}u;\n",
                code(c)
            ));
            for j in 0..rows {
                s.push_str(&format!(
                    "        aq{j} += select(0.0, in0[a{j} + min(k{c}, KKu - 1u)], k{c} < KKu) * q{c};\n"
                ));
            }
        }
    }
    s
}

/// Rows of a packed table at the given indices, dequantized; float16
/// output (float16 scales) is rounded to float16 as the reference does.
pub fn gather_block_quantized(ctx: &Ctx) -> Result<Lowered> {
    let p = GatherBlockQuantized::of(ctx.attrs())?;
    let (data, ix, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    let [rows, row_bytes] = data.shape[..] else {
        return Err(Error::unsupported(
            "GatherBlockQuantized of a table that is not 2-D",
        ));
    };
    let layout = p.layout(rows, row_bytes)?;
    let reader = Reader::new(ctx, &layout, [0, 2, 3])?;
    let mut k = Kernel::new(format!(
        "GatherBlockQuantized {}-bit {:?}",
        layout.bits, out.shape
    ));
    let mut args = vec![Arg::In(1)];
    k.input("in1", ix.word);
    reader.bind(&mut k, &mut args);
    k.output("out0", Word::F32);
    args.push(Arg::Out(0));
    let index = match ix.word {
        Word::I32 => "in1[p]",
        _ => "i32(in1[p])",
    };
    let value =
        "(f32(code_at(r * ROWBITSu + kk * BITSu)) - zero_of(r, b)) * scale_of(r * BLOCKSu + b)";
    let value = if out.dtype == DType::F16 {
        format!("unpack2x16float(pack2x16float(vec2<f32>({value}, 0.0))).x")
    } else {
        value.to_string()
    };
    let body = format!(
        "    let p = i / KKu;
    let kk = i % KKu;
    var idx = {index};
    if (idx < 0) {{ idx = idx + ROWS; }}
    let r = u32(clamp(idx, 0, ROWS - 1));
    let b = kk / BLOCKu;
    out0[i] = {value};
"
    )
    .replace("KK", &layout.k.to_string())
    .replace("ROWBITS", &(layout.row_bytes * 8).to_string())
    .replace("ROWS", &rows.to_string())
    .replace("BLOCKS", &layout.blocks().to_string())
    .replace("BLOCK", &layout.block.to_string())
    .replace("BITS", &layout.bits.to_string());
    k.one_per_item_of(
        &out.numel_of(),
        ctx.tuning().elementwise,
        ctx.max_groups(),
        &body,
    );
    Ok(Lowered::WithConsts {
        consts: reader.consts,
        temps: Vec::new(),
        launches: vec![Launch { kernel: k, args }],
    })
}
