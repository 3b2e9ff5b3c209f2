//! The rewrite rules, as a table: first the algebra that makes the many
//! ways exporters write a computation equal to one canonical form, then
//! the recognizers, each written once against that form.
//!
//! Equalities here are equalities of real numbers: `x / c` and
//! `x · (1/c)` differ in the last bit of a float. They decide which
//! written-out chains *are* a GELU or a LayerNorm; extraction
//! ([`super::KernelCount`]) never puts a rewritten product back in the
//! graph unless it saves a kernel, and a recognized op computes the same
//! function to within float rounding, with one exception: a softmax row
//! whose every key is masked by -inf is NaN as written and 0 in the
//! `Attention` that replaces it (torch's export of
//! `scaled_dot_product_attention` guards it to 0 itself). Every rule is
//! checked against the reference interpreter on random inputs
//! (`super::tests`).

use egg::{
    Applier, ConditionalApplier, Id, Pattern, PatternAst, Rewrite, Subst, Symbol, Var, rewrite,
};
use wpc_ir::{DType, Dim};

use super::lang::{EGraph, Expr, GraphFacts, Number};

pub type Rule = Rewrite<Expr, GraphFacts>;

/// Every rule the pass runs.
pub fn rules() -> Vec<Rule> {
    use std::f64::consts::{FRAC_1_SQRT_2, FRAC_2_PI};
    vec![
        // ── Canonical forms ───────────────────────────────────────────
        rewrite!("add-commutes"; "(Add ?a ?b)" => "(Add ?b ?a)"),
        rewrite!("mul-commutes"; "(Mul ?a ?b)" => "(Mul ?b ?a)"),
        rewrite!("mul-associates"; "(Mul (Mul ?a ?b) ?c)" => "(Mul ?a (Mul ?b ?c))"),
        rewrite!("mul-associates-back"; "(Mul ?a (Mul ?b ?c))" => "(Mul (Mul ?a ?b) ?c)"),
        rewrite!("div-by-constant"; "(Div ?x ?c)" => { TimesReciprocal::new("?x", "?c") }),
        rewrite!("times-reciprocal"; "(Mul ?a (Reciprocal ?b))" => "(Div ?a ?b)"),
        rewrite!("one-over"; "(Div ?one ?b)" => "(Reciprocal ?b)" if number("?one", 1.0, "?b")),
        rewrite!("square"; "(Mul ?a ?a)" => "(Pow ?a 2)"),
        rewrite!("cube"; "(Mul (Pow ?a ?two) ?a)" => "(Pow ?a 3)" if number("?two", 2.0, "?a")),
        // A scalar factor of either operand scales the product.
        rewrite!("scaled-matmul-left"; "(MatMul (Mul ?a ?s) ?b)" => "(Mul (MatMul ?a ?b) ?s)"
            if scales_product("?s", "?a", "?b")),
        rewrite!("scaled-matmul-right"; "(MatMul ?a (Mul ?b ?s))" => "(Mul (MatMul ?a ?b) ?s)"
            if scales_product("?s", "?b", "?a")),
        // ── Recognizers ───────────────────────────────────────────────
        // x · (1 + erf(x / √2)) · ½
        rewrite!("gelu-erf";
            "(Mul (Mul ?x (Add (Erf (Mul ?x ?r)) ?one)) ?half)" => "(Gelu ?x)"
            if float("?x")
            if number("?r", FRAC_1_SQRT_2, "?x")
            if number("?one", 1.0, "?x")
            if number("?half", 0.5, "?x")),
        // x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))) · ½
        rewrite!("gelu-tanh";
            "(Mul (Mul ?x (Add (Tanh (Mul (Add ?x (Mul (Pow ?x ?three) ?k)) ?s)) ?one)) ?half)"
                => "(GeluTanh ?x)"
            if float("?x")
            if number("?three", 3.0, "?x")
            if number("?k", 0.044715, "?x")
            if number("?s", FRAC_2_PI.sqrt(), "?x")
            if number("?one", 1.0, "?x")
            if number("?half", 0.5, "?x")),
        // x · σ(x)
        rewrite!("silu"; "(Mul ?x (Sigmoid ?x))" => "(Swish ?x)" if float("?x")),
        // SiLU(a) · b, both of one shape
        rewrite!("swiglu"; "(Mul (Swish ?a) ?b)" => "(SwiGLU ?a ?b)" if same_type("?a", "?b")),
        // clip(x + 3, 0, 6) / 6
        rewrite!("hard-sigmoid";
            "(Mul (Clip (Add ?x ?three) ?zero ?six) ?sixth)"
                => "(HardSigmoid ?x 0.16666666666666666 0.5)"
            if float("?x")
            if number("?three", 3.0, "?x")
            if number("?zero", 0.0, "?x")
            if number("?six", 6.0, "?x")
            if number("?sixth", 1.0 / 6.0, "?x")),
        // x · hardsigmoid(x) with torch's slope and offset
        rewrite!("hard-swish";
            "(Mul ?x (HardSigmoid ?x ?alpha ?beta))" => "(HardSwish ?x)"
            if float("?x")
            if number("?alpha", 1.0 / 6.0, "?x")
            if number("?beta", 0.5, "?x")),
        // (x - mean(x)) / √(mean((x - mean(x))²) + ε), over the last axis
        rewrite!("layer-norm";
            "(Div (Sub ?x (MeanLast ?x)) (Sqrt (Add (MeanLast (Pow (Sub ?x (MeanLast ?x)) ?two)) ?eps)))"
                => "(LayerNorm ?x ones none ?eps)"
            if float("?x")
            if number("?two", 2.0, "?x")
            if epsilon("?eps", "?x")),
        rewrite!("layer-norm-scale";
            "(Mul (LayerNorm ?x ones none ?eps) ?g)" => "(LayerNorm ?x ?g none ?eps)"
            if per_channel("?g", "?x")),
        rewrite!("layer-norm-bias";
            "(Add (LayerNorm ?x ?g none ?eps) ?b)" => "(LayerNorm ?x ?g ?b ?eps)"
            if per_channel("?b", "?x")),
        // x / √(mean(x²) + ε), over the last axis
        rewrite!("rms-norm";
            "(Div ?x (Sqrt (Add (MeanLast (Pow ?x ?two)) ?eps)))" => "(RmsNorm ?x ones ?eps)"
            if float("?x")
            if number("?two", 2.0, "?x")
            if epsilon("?eps", "?x")),
        rewrite!("rms-norm-scale";
            "(Mul (RmsNorm ?x ones ?eps) ?g)" => "(RmsNorm ?x ?g ?eps)"
            if per_channel("?g", "?x")),
        // Scaled dot-product attention as exporters write it: each of Q,
        // K and V a linear layer's `[B, S, H·D]` output split into heads
        // (Reshape, Transpose), `softmax(Q·Kᵀ · scale + mask) · V`, the
        // heads merged back.
        rewrite!("split-heads"; "(Transpose (Reshape ?x ?shape) p0.2.1.3)" => { SplitHeads::new(false) }),
        rewrite!("split-heads-transposed"; "(Transpose (Reshape ?x ?shape) p0.2.3.1)" => { SplitHeads::new(true) }),
        rewrite!("transposed-heads"; "(Transpose (Heads ?x ?h) p0.1.3.2)" => "(HeadsT ?x ?h)"),
        rewrite!("merge-heads"; "(Reshape (Transpose ?y p0.2.1.3) ?shape)" => "(MergeHeads ?y)"
            if merges_heads("?y")),
        rewrite!("guarded-softmax";
            "(Where (IsNaN (SoftmaxLast ?x)) ?zero (SoftmaxLast ?x))" => "(GuardedSoftmax ?x)"
            if number("?zero", 0.0, "?x")),
    ]
    .into_iter()
    .chain(attention_rules())
    .collect()
}

/// `softmax(Q·Kᵀ · scale [+ mask]) · V` between split and merged heads →
/// one `Attention`, for the plain softmax and the guarded one, with and
/// without a mask: `attention`, `attention-unmasked`, `attention-guarded`
/// and `attention-guarded-unmasked`.
fn attention_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for (softmax, guarded) in [("SoftmaxLast", ""), ("GuardedSoftmax", "-guarded")] {
        for masked in [true, false] {
            let scores = "(Mul (MatMul (Heads ?q ?h) (HeadsT ?k ?h)) ?scale)";
            let (scores, mask, unmasked) = if masked {
                (format!("(Add {scores} ?mask)"), "?mask", "")
            } else {
                (scores.to_string(), "none", "-unmasked")
            };
            let lhs = format!("(MergeHeads (MatMul ({softmax} {scores}) (Heads ?v ?h)))");
            let rhs = format!("(Attention ?q ?k ?v {mask} ?scale ?h)");
            let shapes = attention("?q", "?k", "?v", "?scale");
            let mask_fits = attention_mask("?mask", "?q", "?k", "?h");
            let condition = move |egraph: &mut EGraph, id: Id, s: &Subst| {
                shapes(egraph, id, s) && (!masked || mask_fits(egraph, id, s))
            };
            let applier = ConditionalApplier {
                condition,
                applier: rhs.parse::<Pattern<Expr>>().expect("the rule parses"),
            };
            let name = format!("attention{guarded}{unmasked}");
            let lhs = lhs.parse::<Pattern<Expr>>().expect("the rule parses");
            rules.push(Rewrite::new(name, lhs, applier).expect("the rule is well formed"));
        }
    }
    rules
}

/// A rule's condition on the variables of its match.
type Condition = Box<dyn Fn(&mut EGraph, Id, &Subst) -> bool + Send + Sync>;

fn var(name: &str) -> Var {
    name.parse().expect("rule variables are written ?name")
}

/// Whether `a` is `b` to within the rounding of a float32 constant.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs()
}

/// Whether broadcasting `c` against `x` leaves `x`'s shape as it is: `c`
/// has no more dims than `x` (both known).
fn fits(egraph: &EGraph, x: Id, c: Id) -> bool {
    matches!((egraph[x].data.rank(), egraph[c].data.rank()), (Some(rx), Some(rc)) if rc <= rx)
}

/// `?c` is `value` everywhere, and broadcasting it against `?x` changes
/// no shape.
fn number(c: &str, value: f64, x: &str) -> Condition {
    let (c, x) = (var(c), var(x));
    Box::new(move |egraph, _, s| {
        egraph[s[c]].data.scalar.is_some_and(|v| close(v, value)) && fits(egraph, s[x], s[c])
    })
}

/// `?c` is one number everywhere, and broadcasting it changes the shape
/// neither of the operand `?x` it scales nor of the product (the matched
/// class, or where its type is not known, a product of operands of rank
/// 2 or more, whose rank is theirs), so it may move from one to the
/// other.
fn scales_product(c: &str, x: &str, other: &str) -> Condition {
    let (c, x, other) = (var(c), var(x), var(other));
    Box::new(move |egraph, product, s| {
        let matrices = [s[x], s[other]]
            .iter()
            .all(|&m| egraph[m].data.rank().is_some_and(|r| r >= 2));
        let widens_product = match egraph[product].data.rank() {
            Some(_) => !fits(egraph, product, s[c]),
            None => !matrices,
        };
        egraph[s[c]].data.scalar.is_some() && fits(egraph, s[x], s[c]) && !widens_product
    })
}

/// `?x` is a floating-point tensor of known rank.
fn float(x: &str) -> Condition {
    let x = var(x);
    Box::new(move |egraph, _, s| {
        let facts = &egraph[s[x]].data;
        facts.rank().is_some()
            && facts
                .ty
                .as_ref()
                .and_then(|t| t.dtype)
                .is_some_and(DType::is_float)
    })
}

/// `?eps` is a positive number no wider than `?x`, whose last axis has a
/// known size (a norm's scale is made of that many ones).
fn epsilon(eps: &str, x: &str) -> Condition {
    let (eps, x) = (var(eps), var(x));
    Box::new(move |egraph, _, s| {
        let last = egraph[s[x]]
            .data
            .known_type()
            .and_then(|(_, s)| s.last().and_then(Dim::known));
        egraph[s[eps]].data.scalar.is_some_and(|e| e > 0.0)
            && fits(egraph, s[x], s[eps])
            && last.is_some_and(|c| c > 0)
    })
}

/// `?p` is a constant holding one value per element of `?x`'s last axis,
/// laid along its own last axis (a norm's scale or bias), of `?x`'s dtype.
fn per_channel(p: &str, x: &str) -> Condition {
    let (p, x) = (var(p), var(x));
    Box::new(move |egraph, _, s| {
        let (param, data) = (&egraph[s[p]].data, &egraph[s[x]].data);
        let (Some((pt, ps)), Some((xt, xs))) = (param.known_type(), data.known_type()) else {
            return false;
        };
        let channels = xs.last().and_then(Dim::known);
        let sizes: Option<Vec<usize>> = ps.iter().map(Dim::known).collect();
        param.constant
            && pt == xt
            && ps.len() <= xs.len()
            && ps.last().and_then(Dim::known) == channels
            && sizes.is_some_and(|p| p.iter().product::<usize>() == channels.unwrap_or(0))
    })
}

/// `?a` and `?b` have one known type.
fn same_type(a: &str, b: &str) -> Condition {
    let (a, b) = (var(a), var(b));
    Box::new(move |egraph, _, s| {
        let ta = egraph[s[a]].data.known_type();
        ta.is_some() && ta == egraph[s[b]].data.known_type()
    })
}

/// The shape of `?v`'s class, where every dim is known.
fn shape_of(egraph: &EGraph, v: Id) -> Option<Vec<Dim>> {
    egraph[v].data.known_type().map(|(_, s)| s)
}

/// Whether `e` is `h · d` (sizes that may be symbolic).
fn is_product(e: &Dim, h: &Dim, d: &Dim) -> bool {
    match (e.expr(), h.expr(), d.expr()) {
        (Some(e), Some(h), Some(d)) => e == h.mul(&d),
        _ => false,
    }
}

/// The matched class (a `[B, S, H·D]` reshape of a transpose) merges the
/// heads of `?y: [B, H, S, D]`.
fn merges_heads(y: &str) -> Condition {
    let y = var(y);
    Box::new(move |egraph, eclass, s| {
        match (
            shape_of(egraph, eclass).as_deref(),
            shape_of(egraph, s[y]).as_deref(),
        ) {
            (Some([b, sq, e]), Some([yb, h, ys, d])) => b == yb && sq == ys && is_product(e, h, d),
            _ => false,
        }
    })
}

/// Q, K and V are float `[B, S, E]` tensors of one batch, K and V of one
/// length, Q and K of one width; the scale is a number.
fn attention(q: &str, k: &str, v: &str, scale: &str) -> Condition {
    let (q, k, v, scale) = (var(q), var(k), var(v), var(scale));
    Box::new(move |egraph, _, s| {
        let ty = |x: Var| egraph[s[x]].data.known_type();
        let (Some((tq, sq)), Some((tk, sk)), Some((tv, sv))) = (ty(q), ty(k), ty(v)) else {
            return false;
        };
        let float = tq.is_float() && tq == tk && tq == tv;
        let shapes = sq.len() == 3
            && sk.len() == 3
            && sv.len() == 3
            && sq[0] == sk[0]
            && sq[0] == sv[0]
            && sk[1] == sv[1]
            && sq[2] == sk[2];
        float && shapes && egraph[s[scale]].data.scalar.is_some() && fits(egraph, s[q], s[scale])
    })
}

/// The mask is a float tensor that broadcasts to the scores
/// `[B, H, S, S_kv]`.
fn attention_mask(mask: &str, q: &str, k: &str, heads: &str) -> Condition {
    let (mask, q, k, heads) = (var(mask), var(q), var(k), var(heads));
    Box::new(move |egraph, _, s| {
        let (Some((tm, m)), Some(sq), Some(sk), Some(h)) = (
            egraph[s[mask]].data.known_type(),
            shape_of(egraph, s[q]),
            shape_of(egraph, s[k]),
            egraph[s[heads]].data.scalar,
        ) else {
            return false;
        };
        let full = [
            sq[0].clone(),
            Dim::Known(h as usize),
            sq[1].clone(),
            sk[1].clone(),
        ];
        // A mask shorter along the keys than the scores is padded with
        // -inf by Attention, not broadcast as by Add: only one of the
        // keys' own length is the same.
        tm.is_float()
            && (1..=4).contains(&m.len())
            && m.last() == Some(&sk[1])
            && m.iter()
                .rev()
                .zip(full.iter().rev())
                .all(|(d, f)| *d == Dim::Known(1) || d == f)
    })
}

/// Adds `e` to the class `eclass` (what an applier does with the form it
/// made); the changed class, if the union changed one.
fn join(egraph: &mut EGraph, eclass: Id, e: Expr) -> Vec<Id> {
    let id = egraph.add(e);
    if egraph.union(eclass, id) {
        vec![id]
    } else {
        Vec::new()
    }
}

/// `Transpose(Reshape(x))` with `x: [B, S, H·D]` and the transpose
/// `[B, H, S, D]` (or, `transposed`, `[B, H, D, S]`): `x` split into `H`
/// heads, as `(Heads x H)` (or `(HeadsT x H)`).
struct SplitHeads {
    x: Var,
    transposed: bool,
}

impl SplitHeads {
    fn new(transposed: bool) -> SplitHeads {
        SplitHeads {
            x: var("?x"),
            transposed,
        }
    }
}

impl Applier<Expr, GraphFacts> for SplitHeads {
    fn apply_one(
        &self,
        egraph: &mut EGraph,
        eclass: Id,
        subst: &Subst,
        _: Option<&PatternAst<Expr>>,
        _: Symbol,
    ) -> Vec<Id> {
        let x = subst[self.x];
        let (Some(split), Some(whole)) = (shape_of(egraph, eclass), shape_of(egraph, x)) else {
            return Vec::new();
        };
        let ([b, h, rows, cols], [xb, xs, e]) = (&split[..], &whole[..]) else {
            return Vec::new();
        };
        let (s, d) = if self.transposed {
            (cols, rows)
        } else {
            (rows, cols)
        };
        let Some(h) = h.known() else {
            return Vec::new();
        };
        if b != xb || s != xs || !is_product(e, &Dim::Known(h), d) {
            return Vec::new();
        }
        let heads = egraph.add(Expr::Num(Number::new(h as f64)));
        let view = if self.transposed {
            Expr::HeadsT([x, heads])
        } else {
            Expr::Heads([x, heads])
        };
        join(egraph, eclass, view)
    }

    fn vars(&self) -> Vec<Var> {
        vec![self.x]
    }
}

/// `x / c` → `x · (1/c)` for a scalar constant `c`, the reciprocal made
/// as a number: the recognizers then see one form of scaling.
struct TimesReciprocal {
    x: Var,
    c: Var,
}

impl TimesReciprocal {
    fn new(x: &str, c: &str) -> TimesReciprocal {
        TimesReciprocal {
            x: var(x),
            c: var(c),
        }
    }
}

impl Applier<Expr, GraphFacts> for TimesReciprocal {
    fn apply_one(
        &self,
        egraph: &mut EGraph,
        eclass: Id,
        subst: &Subst,
        _: Option<&PatternAst<Expr>>,
        _: Symbol,
    ) -> Vec<Id> {
        let (x, c) = (subst[self.x], subst[self.c]);
        let Some(value) = egraph[c].data.scalar else {
            return Vec::new();
        };
        let reciprocal = 1.0 / value;
        if !reciprocal.is_finite() || !fits(egraph, x, c) {
            return Vec::new();
        }
        let r = egraph.add(Expr::Num(Number::new(reciprocal)));
        join(egraph, eclass, Expr::Mul([x, r]))
    }

    fn vars(&self) -> Vec<Var> {
        vec![self.x, self.c]
    }
}

/// The rule names, for reports and tests.
#[cfg(test)]
pub fn names() -> Vec<String> {
    rules().iter().map(|r| r.name.to_string()).collect()
}
