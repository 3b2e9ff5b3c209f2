//! Binding model inputs to shapes: the one place where what the user
//! says about sizes (`--dim`, `--input-shape`, the shapes of the tensors
//! they pass) meets what the model declares. Every fact is checked against
//! the model and against every other fact, so a size the model cannot
//! take, or two facts that disagree, is an error naming both — never a
//! silently different shape. A symbolic dim is bound to one size
//! (`--dim seq=128`) or to a range (`--dim seq=1..512`), which a bundle
//! then runs at any size within.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use wpc_ir::{Dim, Error, Result, ValueType};

/// The sizes a symbolic dim may take, `lo` to `hi` inclusive: one size
/// when they are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub lo: usize,
    pub hi: usize,
}

impl Sizes {
    /// Exactly `n`.
    pub fn fixed(n: usize) -> Sizes {
        Sizes { lo: n, hi: n }
    }

    /// The size, when there is one.
    pub fn one(&self) -> Option<usize> {
        (self.lo == self.hi).then_some(self.lo)
    }

    pub fn contains(&self, n: usize) -> bool {
        (self.lo..=self.hi).contains(&n)
    }

    /// Parses `N` or `LO..HI` (the value of `--dim SYMBOL=...`).
    pub fn parse(v: &str) -> std::result::Result<Sizes, String> {
        let size = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{t}' is not a size"))
        };
        match v.split_once("..") {
            None => size(v).map(Sizes::fixed),
            Some((lo, hi)) => {
                let (lo, hi) = (size(lo)?, size(hi.strip_prefix('=').unwrap_or(hi))?);
                if lo > hi {
                    return Err(format!("the range {lo}..{hi} is empty"));
                }
                Ok(Sizes { lo, hi })
            }
        }
    }
}

impl fmt::Display for Sizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.one() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "{}..{}", self.lo, self.hi),
        }
    }
}

/// One statement about the size of a symbolic dim, and who made it (for
/// messages: `--dim batch=2`, `input 'x' (a.npy)`, `the bundle`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Said {
    pub sizes: Sizes,
    pub by: String,
}

/// A concrete shape given for one input, and where it came from
/// (`--input-shape`, or the file the tensor was read from).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GivenShape {
    pub input: String,
    pub shape: Vec<usize>,
    pub by: String,
}

/// What `--dim SYMBOL=N` (or `=LO..HI`) flags say, as facts for
/// [`resolve`].
pub fn said_by_dim_flags(dims: &HashMap<String, Sizes>) -> HashMap<String, Said> {
    dims.iter()
        .map(|(s, &sizes)| {
            let by = format!("--dim {s}={sizes}");
            (s.clone(), Said { sizes, by })
        })
        .collect()
}

/// What `--input-shape NAME=D0xD1...` flags say, as facts for
/// [`resolve`], in input-name order (so messages do not depend on hash
/// order).
pub fn given_by_shape_flags<'a>(
    shapes: impl IntoIterator<Item = (&'a String, &'a Vec<usize>)>,
) -> Vec<GivenShape> {
    let mut given: Vec<GivenShape> = shapes
        .into_iter()
        .map(|(input, shape)| GivenShape {
            input: input.clone(),
            shape: shape.clone(),
            by: "--input-shape".into(),
        })
        .collect();
    given.sort_by(|a, b| a.input.cmp(&b.input));
    given
}

/// The model's inputs that take a value at run time (not initializers,
/// not frozen), with their declared types, in model order.
pub fn declared_inputs(model: &wpc_ir::Model) -> Vec<(String, ValueType)> {
    let g = &model.graph;
    g.inputs
        .iter()
        .filter(|v| !g.constants.contains_key(v))
        .map(|&v| (g.value(v).name.clone(), g.value(v).ty.clone()))
        .collect()
}

fn show(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// Concrete shapes for every input in `declared` (name and declared
/// type, in model order), from symbol sizes (`symbols`, e.g. `--dim`) and
/// shapes given per input. Checks that:
///
/// - every symbol in `symbols` names a dim of some input (a typo is not
///   ignored);
/// - every given shape names an input, has its rank, and matches each dim
///   the model fixes;
/// - a symbol gets one size, whoever gives it (two inputs sharing `batch`
///   agree, and agree with `--dim batch=`);
///
/// - a given size lies within the range a symbol is bound to (and then
///   fixes it);
///
/// and fails on the first input whose shape stays open, saying which flag
/// closes it. Symbols bound to a range stay symbols in the shapes.
pub fn resolve(
    declared: &[(String, ValueType)],
    symbols: &HashMap<String, Said>,
    given: &[GivenShape],
) -> Result<Resolved> {
    resolve_with(declared, symbols, given, false)
}

/// [`resolve`], where `open` leaves a symbol nothing sizes to run time
/// without a bound (listed in [`Resolved::open`]) instead of refusing it.
pub fn resolve_with(
    declared: &[(String, ValueType)],
    symbols: &HashMap<String, Said>,
    given: &[GivenShape],
    open: bool,
) -> Result<Resolved> {
    let dims_of = |ty: &ValueType| ty.shape.dims().map(<[Dim]>::to_vec);
    let mut known_symbols: Vec<&str> = declared
        .iter()
        .filter_map(|(_, ty)| ty.shape.dims())
        .flatten()
        .filter_map(|d| match d {
            Dim::Symbol(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    known_symbols.sort_unstable();
    known_symbols.dedup();
    let mut sorted: Vec<_> = symbols.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (symbol, said) in sorted {
        if !known_symbols.contains(&symbol.as_str()) {
            return Err(Error::invalid(format!(
                "{}: no input of the model has a dim named '{symbol}' ({})",
                said.by,
                if known_symbols.is_empty() {
                    "it has no symbolic dims".to_string()
                } else {
                    format!("its symbolic dims: {}", known_symbols.join(", "))
                }
            )));
        }
    }
    let mut bound: HashMap<String, Said> = symbols.clone();
    for (i, g) in given.iter().enumerate() {
        // Two facts about one input's whole shape agree axis by axis,
        // whatever the model declares (an unnamed dim, no shape at all).
        if let Some(other) = given[..i]
            .iter()
            .find(|o| o.input == g.input && o.shape != g.shape)
        {
            return Err(Error::invalid(format!(
                "input '{}' is given as {} ({}) and as {} ({})",
                g.input,
                show(&other.shape),
                other.by,
                show(&g.shape),
                g.by
            )));
        }
        let (_, ty) = declared
            .iter()
            .find(|(n, _)| *n == g.input)
            .ok_or_else(|| {
                let names: Vec<_> = declared.iter().map(|(n, _)| n.as_str()).collect();
                Error::invalid(format!(
                    "{}: the model has no input '{}' (its inputs: {})",
                    g.by,
                    g.input,
                    names.join(", ")
                ))
            })?;
        let Some(decl) = dims_of(ty) else { continue };
        let mismatch = |why: String| {
            Error::invalid(format!(
                "input '{}' is given as {} ({}), but {why}",
                g.input,
                show(&g.shape),
                g.by
            ))
        };
        if decl.len() != g.shape.len() {
            return Err(mismatch(format!(
                "the model declares {} dims: {}",
                decl.len(),
                ty.shape
            )));
        }
        for (axis, (d, &n)) in decl.iter().zip(&g.shape).enumerate() {
            match d {
                Dim::Known(k) if *k != n => {
                    return Err(mismatch(format!(
                        "the model fixes dim {axis} to {k} (declared {})",
                        ty.shape
                    )));
                }
                Dim::Symbol(s) => match bound.get(s) {
                    Some(said) if !said.sizes.contains(n) => {
                        let verb = if said.sizes.one().is_some() {
                            "is"
                        } else {
                            "is bounded to"
                        };
                        return Err(mismatch(format!(
                            "its dim {axis} is '{s}', which {verb} {} by {}",
                            said.sizes, said.by
                        )));
                    }
                    Some(said) if said.sizes.one().is_some() => {}
                    _ => {
                        bound.insert(
                            s.clone(),
                            Said {
                                sizes: Sizes::fixed(n),
                                by: format!("input '{}' ({})", g.input, g.by),
                            },
                        );
                    }
                },
                Dim::Known(_) | Dim::Unknown | Dim::Expr(_) => {}
            }
        }
    }
    let mut shapes = HashMap::new();
    let mut ranges = BTreeMap::new();
    let mut unbounded = Vec::new();
    for (name, ty) in declared {
        if let Some(g) = given.iter().find(|g| g.input == *name) {
            shapes.insert(
                name.clone(),
                g.shape.iter().map(|&n| Dim::Known(n)).collect(),
            );
            continue;
        }
        let decl = dims_of(ty).ok_or_else(|| {
            Error::invalid(format!(
                "input '{name}' has no declared shape: give it with --input-shape {name}=D0xD1..."
            ))
        })?;
        let shape = decl
            .iter()
            .enumerate()
            .map(|(axis, d)| match d {
                Dim::Known(n) => Ok(Dim::Known(*n)),
                Dim::Symbol(s) => match bound.get(s).map(|said| said.sizes) {
                    Some(sizes) => Ok(match sizes.one() {
                        Some(n) => Dim::Known(n),
                        None => {
                            ranges.insert(s.clone(), sizes);
                            d.clone()
                        }
                    }),
                    None if open => {
                        if !unbounded.contains(s) {
                            unbounded.push(s.clone());
                        }
                        Ok(d.clone())
                    }
                    None => Err(Error::invalid(format!(
                        "input '{name}' has symbolic dim '{s}' ({}): give its size with --dim {s}=N, \
                         or the sizes it may take with --dim {s}=MIN..MAX",
                        ty.shape
                    ))),
                },
                Dim::Unknown | Dim::Expr(_) => Err(Error::invalid(format!(
                    "input '{name}' has an unnamed dim {axis} of unknown size ({}): give the \
                     input's shape with --input-shape {name}=D0xD1...",
                    ty.shape
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        shapes.insert(name.clone(), shape);
    }
    unbounded.sort();
    Ok(Resolved {
        shapes,
        ranges,
        open: unbounded,
    })
}

/// What [`resolve`] decided: each input's shape (sizes, and symbols where
/// a range is left), and the range of each symbol left.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub shapes: HashMap<String, Vec<Dim>>,
    pub ranges: BTreeMap<String, Sizes>,
    /// Symbols left to run time with no bound given ([`resolve_with`]).
    pub open: Vec<String>,
}

impl Resolved {
    /// Every input's concrete shape: for running, where each size must be
    /// one (a random input needs its size given).
    pub fn concrete(&self) -> Result<HashMap<String, Vec<usize>>> {
        let mut names: Vec<&String> = self.shapes.keys().collect();
        names.sort();
        let mut out = HashMap::new();
        for name in names {
            let dims = &self.shapes[name];
            let sizes = dims
                .iter()
                .map(|d| match d {
                    Dim::Known(n) => Ok(*n),
                    Dim::Symbol(s) => Err(Error::invalid(format!(
                        "input '{name}': its dim '{s}' may be {} but needs one size here: give it \
                         with --dim {s}=N or a tensor for the input",
                        self.ranges
                            .get(s)
                            .map_or("any size".to_string(), Sizes::to_string)
                    ))),
                    d => Err(Error::invalid(format!(
                        "input '{name}': dim {d} has no size"
                    ))),
                })
                .collect::<Result<Vec<usize>>>()?;
            out.insert(name.clone(), sizes);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wpc_ir::{DType, Shape};

    fn input(name: &str, dims: Vec<Dim>) -> (String, ValueType) {
        (
            name.into(),
            ValueType {
                dtype: Some(DType::F32),
                shape: Shape(Some(dims)),
            },
        )
    }

    fn sym(s: &str) -> Dim {
        Dim::Symbol(s.into())
    }

    fn dim(symbol: &str, size: usize) -> HashMap<String, Said> {
        said_by_dim_flags(&HashMap::from([(symbol.to_string(), Sizes::fixed(size))]))
    }

    fn shape(input: &str, shape: &[usize]) -> GivenShape {
        GivenShape {
            input: input.into(),
            shape: shape.to_vec(),
            by: "--input-shape".into(),
        }
    }

    fn err(r: Result<Resolved>) -> String {
        r.and_then(|r| r.concrete()).unwrap_err().to_string()
    }

    #[test]
    fn shapes_follow_from_dims_given_shapes_and_shared_symbols() {
        let declared = [
            input("x", vec![sym("batch"), Dim::Known(3), Dim::Unknown]),
            input("m", vec![sym("batch"), sym("seq")]),
        ];
        let shapes = resolve(&declared, &dim("seq", 7), &[shape("x", &[2, 3, 5])])
            .unwrap()
            .concrete()
            .unwrap();
        assert_eq!(shapes["x"], [2, 3, 5]);
        assert_eq!(shapes["m"], [2, 7], "batch is shared with x");
    }

    #[test]
    fn every_disagreement_with_the_model_or_another_fact_is_an_error() {
        let declared = [input("x", vec![sym("batch"), Dim::Known(3)])];
        let e = err(resolve(&declared, &HashMap::new(), &[shape("x", &[1, 4])]));
        assert!(e.contains("fixes dim 1 to 3"), "{e}");
        let e = err(resolve(
            &declared,
            &HashMap::new(),
            &[shape("x", &[1, 3, 1])],
        ));
        assert!(e.contains("declares 2 dims"), "{e}");
        let e = err(resolve(&declared, &dim("batch", 2), &[shape("x", &[1, 3])]));
        assert!(e.contains("'batch', which is 2 by --dim batch=2"), "{e}");
        let e = err(resolve(&declared, &dim("btach", 2), &[]));
        assert!(
            e.contains("no input of the model has a dim named 'btach'"),
            "{e}"
        );
        let e = err(resolve(&declared, &HashMap::new(), &[shape("y", &[1])]));
        assert!(e.contains("no input 'y'"), "{e}");
        // Unnamed dims and undeclared shapes are compared too.
        for dims in [Some(vec![Dim::Unknown, Dim::Known(3)]), None] {
            let declared = [(
                "x".to_string(),
                ValueType {
                    dtype: Some(DType::F32),
                    shape: Shape(dims),
                },
            )];
            let npy = GivenShape {
                by: "a.npy".into(),
                ..shape("x", &[2, 3])
            };
            let e = err(resolve(
                &declared,
                &HashMap::new(),
                &[shape("x", &[1, 3]), npy],
            ));
            assert!(
                e.contains("given as [1, 3] (--input-shape) and as [2, 3] (a.npy)"),
                "{e}"
            );
        }
    }

    #[test]
    fn open_dims_name_the_flag_that_closes_them() {
        let e = err(resolve(
            &[input("x", vec![sym("batch")])],
            &HashMap::new(),
            &[],
        ));
        assert!(e.contains("--dim batch=N"), "{e}");
        let e = err(resolve(
            &[input("x", vec![Dim::Unknown])],
            &HashMap::new(),
            &[],
        ));
        assert!(e.contains("--input-shape x="), "{e}");
    }

    #[test]
    fn ranges_stay_symbolic_and_a_given_size_must_lie_within() {
        let declared = [
            input("ids", vec![sym("batch"), sym("seq")]),
            input("mask", vec![sym("batch"), sym("seq")]),
        ];
        let ranged = said_by_dim_flags(&HashMap::from([
            ("seq".to_string(), Sizes::parse("1..512").unwrap()),
            ("batch".to_string(), Sizes::parse("2").unwrap()),
        ]));
        let r = resolve(&declared, &ranged, &[]).unwrap();
        assert_eq!(r.shapes["ids"], [Dim::Known(2), sym("seq")]);
        assert_eq!(r.ranges["seq"], Sizes { lo: 1, hi: 512 });
        let e = r.concrete().unwrap_err().to_string();
        assert!(e.contains("'seq' may be 1..512 but needs one size"), "{e}");
        // A tensor's size within the range fixes the symbol for every input.
        let r = resolve(&declared, &ranged, &[shape("ids", &[2, 7])]).unwrap();
        assert_eq!(r.concrete().unwrap()["mask"], [2, 7]);
        assert!(r.ranges.is_empty());
        let e = err(resolve(&declared, &ranged, &[shape("ids", &[2, 513])]));
        assert!(
            e.contains("its dim 1 is 'seq', which is bounded to 1..512 by --dim seq=1..512"),
            "{e}"
        );
        // The flag's syntax.
        assert_eq!(Sizes::parse("0..=4"), Ok(Sizes { lo: 0, hi: 4 }));
        assert!(Sizes::parse("5..4").unwrap_err().contains("empty"));
        assert!(
            Sizes::parse("a..4")
                .unwrap_err()
                .contains("'a' is not a size")
        );
    }
}
