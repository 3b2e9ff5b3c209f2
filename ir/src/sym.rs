//! Symbolic sizes: integer expressions over the named dims a model leaves
//! open (`batch`, `seq`), such as `batch*seq`, `seq + 1` or
//! `floor((w - 1) / 2) + 1`.
//!
//! An [`Expr`] is kept in one normal form — a sum of terms, each an integer
//! coefficient times a product of atoms (symbols, or the floor divisions,
//! remainders, maxima and minima that do not simplify) — so two ways of
//! writing a size compare equal when they are the same polynomial:
//! `seq*768 / 12` and `64*seq` are one expression, which is what lets a
//! `Reshape` by a computed shape keep a known size. Division, remainder,
//! `max` and `min` simplify where the result is exact and stay atoms
//! otherwise; nothing here rounds or guesses.
//!
//! Every size a model leaves open is non-negative; [`Expr::bounds`] gives
//! an expression's range from its symbols' ranges (what a buffer must hold
//! at the largest sizes), and [`Expr::eval`] its value once the symbols are
//! known (what the runtimes do per run).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A factor of a term that is not a plain integer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Atom {
    /// A named dim.
    Sym(String),
    /// `floor(a / b)`, where it does not divide exactly.
    Div(Box<Expr>, Box<Expr>),
    /// `a - b * floor(a / b)`, where it is not known.
    Mod(Box<Expr>, Box<Expr>),
    Max(Box<Expr>, Box<Expr>),
    Min(Box<Expr>, Box<Expr>),
}

/// A product of atoms with their powers, sorted by atom (the empty
/// product is the constant term's).
type Monomial = Vec<(Atom, u32)>;

/// An integer expression over named dims, in normal form (see the module
/// documentation). `Expr::default()` is 0.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Expr {
    /// Coefficient of each monomial; none is zero.
    terms: BTreeMap<Monomial, i64>,
}

impl From<i64> for Expr {
    fn from(c: i64) -> Expr {
        Expr::constant(c)
    }
}

impl Expr {
    /// The integer `c`.
    pub fn constant(c: i64) -> Expr {
        let mut terms = BTreeMap::new();
        if c != 0 {
            terms.insert(Vec::new(), c);
        }
        Expr { terms }
    }

    /// The dim named `name`.
    pub fn sym(name: &str) -> Expr {
        Expr::atom(Atom::Sym(name.to_string()))
    }

    fn atom(a: Atom) -> Expr {
        Expr {
            terms: BTreeMap::from([(vec![(a, 1)], 1)]),
        }
    }

    /// The value, when the expression is an integer.
    pub fn as_const(&self) -> Option<i64> {
        match self.terms.len() {
            0 => Some(0),
            1 => self.terms.get(&Vec::new()).copied(),
            _ => None,
        }
    }

    /// The name, when the expression is one dim.
    pub fn as_sym(&self) -> Option<&str> {
        match self.single_term()? {
            ([(Atom::Sym(s), 1)], 1) => Some(s),
            _ => None,
        }
    }

    fn single_term(&self) -> Option<(&[(Atom, u32)], i64)> {
        match self.terms.iter().next() {
            Some((m, c)) if self.terms.len() == 1 => Some((m, *c)),
            _ => None,
        }
    }

    /// `self + other`.
    pub fn add(&self, other: &Expr) -> Expr {
        let mut terms = self.terms.clone();
        for (m, c) in &other.terms {
            let sum = terms.get(m).copied().unwrap_or(0).wrapping_add(*c);
            if sum == 0 {
                terms.remove(m);
            } else {
                terms.insert(m.clone(), sum);
            }
        }
        Expr { terms }
    }

    /// `self - other`.
    pub fn sub(&self, other: &Expr) -> Expr {
        self.add(&other.scale(-1))
    }

    /// `k * self`.
    pub fn scale(&self, k: i64) -> Expr {
        if k == 0 {
            return Expr::default();
        }
        Expr {
            terms: self
                .terms
                .iter()
                .map(|(m, c)| (m.clone(), c.wrapping_mul(k)))
                .collect(),
        }
    }

    /// `self * other`.
    pub fn mul(&self, other: &Expr) -> Expr {
        let mut out = Expr::default();
        for (ma, ca) in &self.terms {
            for (mb, cb) in &other.terms {
                let term = Expr {
                    terms: BTreeMap::from([(multiply(ma, mb), ca.wrapping_mul(*cb))]),
                };
                out = out.add(&term);
            }
        }
        out
    }

    /// `floor(self / d)`: exact where `d` divides every term, an atom
    /// otherwise. Division by zero is an atom too (the runtime's
    /// evaluation refuses it), never a panic.
    pub fn floor_div(&self, d: &Expr) -> Expr {
        if let (Some(a), Some(b)) = (self.as_const(), d.as_const())
            && b != 0
        {
            return Expr::constant(floor_div(a, b));
        }
        if let Some(q) = self.exact_div(d) {
            return q;
        }
        Expr::atom(Atom::Div(Box::new(self.clone()), Box::new(d.clone())))
    }

    /// The quotient when `d` is one term dividing every term of `self`
    /// (or `self` is a multiple of `d`).
    fn exact_div(&self, d: &Expr) -> Option<Expr> {
        if self.terms.is_empty() {
            return (!d.terms.is_empty()).then(Expr::default);
        }
        if let Some((dm, dc)) = d.single_term() {
            let mut terms = BTreeMap::new();
            for (m, c) in &self.terms {
                if c % dc != 0 {
                    return None;
                }
                terms.insert(divide(m, dm)?, c / dc);
            }
            return Some(Expr { terms });
        }
        // A constant multiple of a sum: `2*a + 2*b` over `a + b`.
        let (m0, c0) = d.terms.iter().next()?;
        let k = self.terms.get(m0)? / c0;
        (k != 0 && d.scale(k) == *self).then(|| Expr::constant(k))
    }

    /// `self mod d` with the sign of `d` (Python's `%`; sizes are never
    /// negative, where it is C's too).
    pub fn rem(&self, d: &Expr) -> Expr {
        if let (Some(a), Some(b)) = (self.as_const(), d.as_const())
            && b != 0
        {
            return Expr::constant(a - b * floor_div(a, b));
        }
        if self.exact_div(d).is_some() {
            return Expr::default();
        }
        Expr::atom(Atom::Mod(Box::new(self.clone()), Box::new(d.clone())))
    }

    /// The larger of two sizes: decided where they differ by a constant.
    pub fn max_of(&self, other: &Expr) -> Expr {
        match self.sub(other).as_const() {
            Some(d) if d >= 0 => self.clone(),
            Some(_) => other.clone(),
            None => Expr::atom(ordered(Atom::Max, self, other)),
        }
    }

    /// The smaller of two sizes: decided where they differ by a constant.
    pub fn min_of(&self, other: &Expr) -> Expr {
        match self.sub(other).as_const() {
            Some(d) if d <= 0 => self.clone(),
            Some(_) => other.clone(),
            None => Expr::atom(ordered(Atom::Min, self, other)),
        }
    }

    /// The names of the dims the expression reads.
    pub fn symbols(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect_symbols(&mut out);
        out
    }

    fn collect_symbols(&self, out: &mut BTreeSet<String>) {
        for m in self.terms.keys() {
            for (a, _) in m {
                match a {
                    Atom::Sym(s) => {
                        out.insert(s.clone());
                    }
                    Atom::Div(x, y) | Atom::Mod(x, y) | Atom::Max(x, y) | Atom::Min(x, y) => {
                        x.collect_symbols(out);
                        y.collect_symbols(out);
                    }
                }
            }
        }
    }

    /// Replaces each dim `value` knows by its size (the rest stay
    /// symbols), and simplifies.
    pub fn substitute(&self, value: &dyn Fn(&str) -> Option<i64>) -> Expr {
        self.map_atoms(&|a| match a {
            Atom::Sym(s) => value(s).map_or_else(|| Expr::sym(s), Expr::constant),
            Atom::Div(x, y) => x.substitute(value).floor_div(&y.substitute(value)),
            Atom::Mod(x, y) => x.substitute(value).rem(&y.substitute(value)),
            Atom::Max(x, y) => x.substitute(value).max_of(&y.substitute(value)),
            Atom::Min(x, y) => x.substitute(value).min_of(&y.substitute(value)),
        })
    }

    /// The expression with each atom replaced by `f` of it, rebuilt (so
    /// normalized) from its terms.
    fn map_atoms(&self, f: &dyn Fn(&Atom) -> Expr) -> Expr {
        let mut out = Expr::default();
        for (m, c) in &self.terms {
            let mut term = Expr::constant(*c);
            for (a, p) in m {
                let factor = f(a);
                for _ in 0..*p {
                    term = term.mul(&factor);
                }
            }
            out = out.add(&term);
        }
        out
    }

    /// The product of `factors` (1 for none): a shape's element count.
    pub fn product<'a>(factors: impl IntoIterator<Item = &'a Expr>) -> Expr {
        factors.into_iter().fold(Expr::constant(1), |p, f| p.mul(f))
    }

    /// The expression with each `max`, `min`, remainder and quotient that
    /// the dims' ranges decide replaced by its value: `min(seq, 512)` is
    /// `seq` when `seq` is at most 512.
    pub fn simplify(&self, range: &dyn Fn(&str) -> Option<(i64, i64)>) -> Expr {
        // Each atom rebuilt from its simplified operands (which may decide
        // it outright), then decided by the ranges where they can.
        let atom = |a: &Atom| -> Expr {
            let (x, y) = match a {
                Atom::Sym(_) => return Expr::atom(a.clone()),
                Atom::Div(x, y) | Atom::Mod(x, y) | Atom::Max(x, y) | Atom::Min(x, y) => {
                    (x.simplify(range), y.simplify(range))
                }
            };
            let sign = || x.sub(&y).bounds(range);
            // The quotient by a positive constant, where the dividend's
            // range holds one value of it.
            let quotient = || {
                let d = y.as_const().filter(|d| *d > 0)?;
                let (lo, hi) = x.bounds(range)?;
                let q = floor_div(lo, d);
                (q == floor_div(hi, d)).then_some(q)
            };
            match a {
                Atom::Max(..) => match sign() {
                    Some((lo, _)) if lo >= 0 => x,
                    Some((_, hi)) if hi <= 0 => y,
                    _ => x.max_of(&y),
                },
                Atom::Min(..) => match sign() {
                    Some((lo, _)) if lo >= 0 => y,
                    Some((_, hi)) if hi <= 0 => x,
                    _ => x.min_of(&y),
                },
                Atom::Div(..) => match quotient() {
                    Some(q) => Expr::constant(q),
                    None => x.floor_div(&y),
                },
                _ => match quotient() {
                    Some(q) => x.sub(&y.scale(q)),
                    None => x.rem(&y),
                },
            }
        };
        self.map_atoms(&atom)
    }

    /// The value once every dim is known; `None` if one is not, on a
    /// division by zero, or on overflow.
    pub fn eval(&self, value: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        let mut sum: i64 = 0;
        for (m, c) in &self.terms {
            let mut term = *c;
            for (a, p) in m {
                let f = match a {
                    Atom::Sym(s) => value(s)?,
                    Atom::Div(x, y) => {
                        let (x, y) = (x.eval(value)?, y.eval(value)?);
                        (y != 0).then(|| floor_div(x, y))?
                    }
                    Atom::Mod(x, y) => {
                        let (x, y) = (x.eval(value)?, y.eval(value)?);
                        (y != 0).then(|| x - y * floor_div(x, y))?
                    }
                    Atom::Max(x, y) => x.eval(value)?.max(y.eval(value)?),
                    Atom::Min(x, y) => x.eval(value)?.min(y.eval(value)?),
                };
                term = term.checked_mul(f.checked_pow(*p)?)?;
            }
            sum = sum.checked_add(term)?;
        }
        Some(sum)
    }

    /// The range `[lo, hi]` the expression takes when each dim lies in the
    /// range `range` gives it (interval arithmetic: the bounds hold, and
    /// are exact for sums and products of non-negative sizes). `None` if a
    /// dim has no range or a divisor may be zero.
    pub fn bounds(&self, range: &dyn Fn(&str) -> Option<(i64, i64)>) -> Option<(i64, i64)> {
        let (mut lo, mut hi) = (0i64, 0i64);
        for (m, c) in &self.terms {
            let mut t = (*c, *c);
            for (a, p) in m {
                let f = atom_bounds(a, range)?;
                for _ in 0..*p {
                    t = interval_mul(t, f)?;
                }
            }
            lo = lo.checked_add(t.0)?;
            hi = hi.checked_add(t.1)?;
        }
        Some((lo, hi))
    }
}

fn atom_bounds(a: &Atom, range: &dyn Fn(&str) -> Option<(i64, i64)>) -> Option<(i64, i64)> {
    Some(match a {
        Atom::Sym(s) => range(s)?,
        Atom::Div(x, y) => {
            let (xl, xh) = x.bounds(range)?;
            let (yl, yh) = y.bounds(range)?;
            if yl <= 0 && yh >= 0 {
                return None;
            }
            let q = floor_div;
            let c = [q(xl, yl), q(xl, yh), q(xh, yl), q(xh, yh)];
            (*c.iter().min()?, *c.iter().max()?)
        }
        Atom::Mod(x, y) => {
            let (yl, yh) = y.bounds(range)?;
            let (xl, _) = x.bounds(range)?;
            if yl > 0 && xl >= 0 {
                (0, yh - 1)
            } else if yh < 0 {
                (yl + 1, 0)
            } else {
                return None;
            }
        }
        Atom::Max(x, y) => {
            let (a, b) = (x.bounds(range)?, y.bounds(range)?);
            (a.0.max(b.0), a.1.max(b.1))
        }
        Atom::Min(x, y) => {
            let (a, b) = (x.bounds(range)?, y.bounds(range)?);
            (a.0.min(b.0), a.1.min(b.1))
        }
    })
}

/// `floor(a / b)` for `b != 0` (Rust's `/` truncates toward zero).
fn floor_div(a: i64, b: i64) -> i64 {
    let q = a.wrapping_div(b);
    if a.wrapping_rem(b) != 0 && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

fn interval_mul(a: (i64, i64), b: (i64, i64)) -> Option<(i64, i64)> {
    let c = [
        a.0.checked_mul(b.0)?,
        a.0.checked_mul(b.1)?,
        a.1.checked_mul(b.0)?,
        a.1.checked_mul(b.1)?,
    ];
    Some((*c.iter().min()?, *c.iter().max()?))
}

fn ordered(f: fn(Box<Expr>, Box<Expr>) -> Atom, a: &Expr, b: &Expr) -> Atom {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    f(Box::new(a.clone()), Box::new(b.clone()))
}

fn multiply(a: &[(Atom, u32)], b: &[(Atom, u32)]) -> Monomial {
    let mut powers: BTreeMap<Atom, u32> = a.iter().cloned().collect();
    for (atom, p) in b {
        *powers.entry(atom.clone()).or_insert(0) += p;
    }
    powers.into_iter().collect()
}

/// `a / b` when every factor of `b` divides `a`.
fn divide(a: &[(Atom, u32)], b: &[(Atom, u32)]) -> Option<Monomial> {
    let mut powers: BTreeMap<Atom, u32> = a.iter().cloned().collect();
    for (atom, p) in b {
        let have = powers.get_mut(atom)?;
        *have = have.checked_sub(*p)?;
        if *have == 0 {
            powers.remove(atom);
        }
    }
    Some(powers.into_iter().collect())
}

impl fmt::Display for Expr {
    /// `2*seq + 1`, `batch*seq`, `floor(w / 2) + 1`: terms of higher
    /// degree first, the constant last.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        let mut terms: Vec<_> = self.terms.iter().collect();
        terms.sort_by_key(|(m, _)| std::cmp::Reverse(m.iter().map(|(_, p)| p).sum::<u32>()));
        for (i, (m, c)) in terms.into_iter().enumerate() {
            let c = *c;
            match (i, c < 0) {
                (0, true) => f.write_str("-")?,
                (0, false) => {}
                (_, true) => f.write_str(" - ")?,
                (_, false) => f.write_str(" + ")?,
            }
            let k = c.unsigned_abs();
            if m.is_empty() {
                write!(f, "{k}")?;
                continue;
            }
            if k != 1 {
                write!(f, "{k}*")?;
            }
            for (j, (a, p)) in m.iter().enumerate() {
                if j > 0 {
                    f.write_str("*")?;
                }
                write!(f, "{a}")?;
                if *p > 1 {
                    write!(f, "^{p}")?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Sym(s) => f.write_str(s),
            Atom::Div(a, b) => write!(f, "floor({} / {})", Grouped(a), Grouped(b)),
            Atom::Mod(a, b) => write!(f, "mod({a}, {b})"),
            Atom::Max(a, b) => write!(f, "max({a}, {b})"),
            Atom::Min(a, b) => write!(f, "min({a}, {b})"),
        }
    }
}

/// An operand, in parentheses when it is a sum.
struct Grouped<'a>(&'a Expr);

impl fmt::Display for Grouped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.terms.len() > 1 {
            write!(f, "({})", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// The structure of an expression, for writing it where the normal form's
/// types are not available (the manifest's JSON, a shader): an integer, a
/// dim, or an operation on operands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Term {
    Int(i64),
    Sym(String),
    /// `op` is one of `+`, `*`, `floor_div`, `mod`, `max`, `min`, each
    /// over the listed operands (`+` and `*` over two or more).
    Op(&'static str, Vec<Term>),
}

impl Expr {
    /// The expression as a tree of [`Term`]s.
    pub fn term(&self) -> Term {
        let mut sum: Vec<Term> = Vec::new();
        for (m, c) in &self.terms {
            let mut product: Vec<Term> = Vec::new();
            if *c != 1 || m.is_empty() {
                product.push(Term::Int(*c));
            }
            for (a, p) in m {
                let t = match a {
                    Atom::Sym(s) => Term::Sym(s.clone()),
                    Atom::Div(x, y) => Term::Op("floor_div", vec![x.term(), y.term()]),
                    Atom::Mod(x, y) => Term::Op("mod", vec![x.term(), y.term()]),
                    Atom::Max(x, y) => Term::Op("max", vec![x.term(), y.term()]),
                    Atom::Min(x, y) => Term::Op("min", vec![x.term(), y.term()]),
                };
                product.extend(std::iter::repeat_n(t, *p as usize));
            }
            sum.push(if product.len() == 1 {
                product.pop().unwrap_or(Term::Int(0))
            } else {
                Term::Op("*", product)
            });
        }
        match sum.len() {
            0 => Term::Int(0),
            1 => sum.pop().unwrap_or(Term::Int(0)),
            _ => Term::Op("+", sum),
        }
    }

    /// The expression a [`Term`] describes (`None` for an unknown op).
    pub fn from_term(t: &Term) -> Option<Expr> {
        Some(match t {
            Term::Int(c) => Expr::constant(*c),
            Term::Sym(s) => Expr::sym(s),
            Term::Op(op, args) => {
                let args: Vec<Expr> = args.iter().map(Expr::from_term).collect::<Option<_>>()?;
                let (first, rest) = args.split_first()?;
                let binary = |f: fn(&Expr, &Expr) -> Expr| match rest {
                    [b] => Some(f(first, b)),
                    _ => None,
                };
                match *op {
                    "+" => rest.iter().fold(first.clone(), |a, b| a.add(b)),
                    "*" => rest.iter().fold(first.clone(), |a, b| a.mul(b)),
                    "floor_div" => binary(Expr::floor_div)?,
                    "mod" => binary(Expr::rem)?,
                    "max" => binary(Expr::max_of)?,
                    "min" => binary(Expr::min_of)?,
                    _ => return None,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: &str) -> Expr {
        Expr::sym(n)
    }

    fn c(v: i64) -> Expr {
        Expr::constant(v)
    }

    #[test]
    fn equal_polynomials_are_equal_expressions() {
        let seq = s("seq");
        // seq*768 / 12 is 64*seq, however it was written.
        let a = seq.mul(&c(768)).floor_div(&c(12));
        assert_eq!(a, seq.scale(64));
        // batch*seq*768 / (batch*seq*12) = 64: Reshape's -1.
        let bs = s("batch").mul(&seq);
        assert_eq!(bs.scale(768).floor_div(&bs.scale(12)), c(64));
        assert_eq!(seq.add(&c(1)).sub(&c(1)), seq);
        assert_eq!(seq.sub(&seq), c(0));
        assert_eq!(a.to_string(), "64*seq");
        assert_eq!(bs.add(&c(-3)).to_string(), "batch*seq - 3");
    }

    #[test]
    fn inexact_division_stays_and_evaluates_with_floor() {
        let w = s("w");
        // A stride-2 convolution's output width: floor((w - 1) / 2) + 1.
        let out = w.sub(&c(1)).floor_div(&c(2)).add(&c(1));
        assert_eq!(out.to_string(), "floor((w - 1) / 2) + 1");
        for (wv, want) in [(1, 1), (2, 1), (3, 2), (224, 112), (225, 113)] {
            assert_eq!(
                out.eval(&|n| (n == "w").then_some(wv)),
                Some(want),
                "w={wv}"
            );
        }
        assert_eq!(out.bounds(&|_| Some((1, 512))), Some((1, 256)));
        assert_eq!(out.substitute(&|_| Some(225)), c(113));
        assert_eq!(c(-7).floor_div(&c(2)), c(-4));
        assert_eq!(c(-7).rem(&c(2)), c(1));
        assert_eq!(w.scale(4).add(&c(2)).rem(&c(2)), c(0));
        assert_eq!(w.add(&c(1)).rem(&c(2)).to_string(), "mod(w + 1, 2)");
        assert_eq!(w.add(&c(1)).rem(&c(2)).eval(&|_| Some(4)), Some(1));
    }

    #[test]
    fn max_and_min_decide_what_a_constant_difference_decides() {
        let n = s("n");
        assert_eq!(n.add(&c(2)).max_of(&n), n.add(&c(2)));
        assert_eq!(n.add(&c(2)).min_of(&n), n);
        let m = n.max_of(&s("k"));
        assert_eq!(m, s("k").max_of(&n), "operands are ordered");
        assert_eq!(m.eval(&|x| Some(if x == "n" { 3 } else { 5 })), Some(5));
    }

    #[test]
    fn ranges_decide_what_they_can() {
        let seq = s("seq");
        let range = |n: &str| (n == "seq").then_some((1, 512));
        assert_eq!(seq.min_of(&c(512)).simplify(&range), seq);
        assert_eq!(
            seq.max_of(&c(1)).add(&c(1)).simplify(&range),
            seq.add(&c(1))
        );
        assert_eq!(seq.min_of(&c(100)).simplify(&range), seq.min_of(&c(100)));
        assert_eq!(seq.rem(&c(1024)).simplify(&range), seq);
        assert_eq!(seq.floor_div(&c(1024)).simplify(&range), c(0));
        // A grid's second dimension: one row of workgroups up to 65535.
        let groups = seq.add(&c(63)).floor_div(&c(64));
        assert_eq!(
            groups.add(&c(65534)).floor_div(&c(65535)).simplify(&range),
            c(1)
        );
        assert_eq!(seq.add(&c(1024)).rem(&c(1024)).simplify(&range), seq);
        // Nested: Slice's clamp of an end past the dim, max(min(end, seq), 0).
        let end = c(i64::MAX).min_of(&seq).max_of(&c(0));
        assert_eq!(end.simplify(&|_| Some((0, i64::MAX))), seq);
    }

    #[test]
    fn eval_needs_every_symbol_and_refuses_overflow_and_zero_divisors() {
        let e = s("a").mul(&s("b"));
        assert_eq!(e.eval(&|x| (x == "a").then_some(2)), None);
        assert_eq!(e.eval(&|_| Some(i64::MAX)), None);
        assert_eq!(c(4).floor_div(&s("z")).eval(&|_| Some(0)), None);
        assert_eq!(e.symbols().into_iter().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn terms_round_trip() {
        let w = s("w");
        let exprs = [
            c(0),
            c(-5),
            w.clone(),
            w.mul(&w).scale(3).add(&s("b")).sub(&c(7)),
            w.sub(&c(3)).floor_div(&c(2)).add(&c(1)),
            w.rem(&c(5)).max_of(&s("h")).min_of(&c(9).add(&s("h"))),
        ];
        for e in exprs {
            assert_eq!(Expr::from_term(&e.term()), Some(e.clone()), "{e}");
        }
    }
}
