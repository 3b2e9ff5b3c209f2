//! Declarative precision: which layers get how many bits.
//!
//! A precision map is a RON file (examples in `examples/precision/`):
//!
//! ```ron
//! (
//!     // Every quantizable layer no rule matches.
//!     default: (bits: 4, group: 64),
//!     // First match wins. A pattern matches a layer's node name, its
//!     // weight's name, or its op (`MatMul`, `Gemm`, `Conv`, `Gather`); `*` is
//!     // any run of characters, `?` any one.
//!     layers: [
//!         ("Gather", (bits: 8)),
//!         ("*attention/self/query*", (bits: 3)),
//!         ("*intermediate*", (bits: 2, group: 32)),
//!         ("*classifier*", (bits: 32)), // 32: keep float32
//!     ],
//! )
//! ```
//!
//! A setting's fields: `bits` (2 to 8, or 32 to leave the layer in
//! float32), `group` (values per scale along the reduction axis: a power
//! of two from 16 to 1024), `symmetric` (zero points fixed at the middle
//! code and not stored), `scales` (`f16` or `f32`), `method`
//! (`search` or `rounding`, see `wpc_ir::quantize`) and `rotate` (a
//! Hadamard rotation of a linear layer's reduction axis before its
//! weight is quantized, see [`super::rotate`]; only MatMul and Gemm
//! layers whose reduction axis has a power-of-two factor of 16 or more
//! are, never tables or Conv). A rule's setting
//! overrides only the fields it gives; the rest come from `default`,
//! whose own missing fields are wpc's defaults ([`Setting::DEFAULT`]).
//! Unknown fields, bits or groups out of range, and a pattern that
//! matches no layer of the model are errors naming the line.

use serde::Deserialize;
use wpc_ir::quantize::{Method, Spec};
use wpc_ir::{Error, Result};

/// A layer's precision, every field given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// `None`: left in float32.
    pub bits: Option<u32>,
    pub group: usize,
    pub symmetric: bool,
    pub f16_scales: bool,
    pub method: Method,
    /// Rotate the reduction axis first ([`super::rotate`]): more accurate
    /// below 4 bits, for a small float MatMul per input at run time.
    pub rotate: bool,
}

impl Setting {
    /// What a layer gets when nothing says otherwise: 4 bits in groups of
    /// 64 (with float16 scales and packed zero points, 4.31 bits a
    /// weight: 0.27 of float16), asymmetric, chosen by search.
    pub const DEFAULT: Setting = Setting {
        bits: Some(4),
        group: 64,
        symmetric: false,
        f16_scales: true,
        method: Method::Search,
        rotate: false,
    };

    /// The quantizer's spec, when the layer is quantized.
    pub fn spec(&self) -> Option<Spec> {
        Some(Spec {
            bits: self.bits?,
            block: self.group,
            symmetric: self.symmetric,
            f16_scales: self.f16_scales,
            method: self.method,
        })
    }
}

/// A parsed precision map: a default and rules, first match wins.
#[derive(Clone, Debug, PartialEq)]
pub struct Precision {
    pub default: Setting,
    pub rules: Vec<Rule>,
    /// Where the map came from, for errors (`None`: built from flags).
    pub source: Option<String>,
    /// Fit the weights into this many bytes: the bits of every layer no
    /// rule sets `bits` for are chosen by [`super::fit`].
    pub fit: Option<u64>,
}

/// One rule of a map.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub pattern: String,
    /// The fields it sets; the others are the map's default.
    given: Partial,
    /// The rule's line in its file (1-based), for errors.
    pub line: usize,
}

impl Rule {
    /// Whether the rule sets `bits` (which `--fit` then leaves alone).
    pub fn sets_bits(&self) -> bool {
        self.given.bits.is_some()
    }
}

/// A setting as written: only the fields given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Partial {
    bits: Option<Bits>,
    group: Option<Group>,
    symmetric: Option<bool>,
    scales: Option<ScaleType>,
    method: Option<MethodName>,
    rotate: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    default: Partial,
    #[serde(default)]
    layers: Vec<(String, Partial)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Bits(u32);

impl<'de> Deserialize<'de> for Bits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Bits, D::Error> {
        let b = u32::deserialize(d)?;
        if (2..=8).contains(&b) || b == 32 {
            Ok(Bits(b))
        } else {
            Err(serde::de::Error::custom(format!(
                "bits must be 2 to 8, or 32 to keep float32; got {b}"
            )))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Group(usize);

impl<'de> Deserialize<'de> for Group {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Group, D::Error> {
        let g = usize::deserialize(d)?;
        check_group(g)
            .map(|()| Group(g))
            .map_err(|e| serde::de::Error::custom(e.reason))
    }
}

/// Groups the kernels take: a power of two from 16 to 1024.
pub fn check_group(g: usize) -> Result<()> {
    if (16..=1024).contains(&g) && g.is_power_of_two() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "group must be a power of two from 16 to 1024; got {g}"
        )))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ScaleType {
    F16,
    F32,
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum MethodName {
    Search,
    Rounding,
}

impl Partial {
    fn over(self, base: Setting) -> Setting {
        Setting {
            bits: match self.bits {
                Some(Bits(32)) => None,
                Some(Bits(b)) => Some(b),
                None => base.bits,
            },
            group: self.group.map_or(base.group, |g| g.0),
            symmetric: self.symmetric.unwrap_or(base.symmetric),
            f16_scales: self
                .scales
                .map_or(base.f16_scales, |s| matches!(s, ScaleType::F16)),
            method: match self.method {
                Some(MethodName::Search) => Method::Search,
                Some(MethodName::Rounding) => Method::Rounding,
                None => base.method,
            },
            rotate: self.rotate.unwrap_or(base.rotate),
        }
    }
}

impl Precision {
    /// Every layer at `setting`.
    pub fn uniform(setting: Setting) -> Precision {
        Precision {
            default: setting,
            rules: Vec::new(),
            source: None,
            fit: None,
        }
    }

    /// Parses a map; `source` names it in errors (a file path).
    pub fn parse(text: &str, source: &str) -> Result<Precision> {
        // Fields are optional without `Some(..)` around each value.
        let options = ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let file: File = options.from_str(text).map_err(|e| {
            Error::invalid(format!(
                "{source}:{}:{}: {}",
                e.span.start.line, e.span.start.col, e.code
            ))
        })?;
        let default = file.default.over(Setting::DEFAULT);
        let mut from = 0;
        let rules = file
            .layers
            .into_iter()
            .map(|(pattern, given)| {
                let line = line_of(text, &pattern, &mut from);
                Rule {
                    given,
                    pattern,
                    line,
                }
            })
            .collect();
        Ok(Precision {
            default,
            rules,
            source: Some(source.to_string()),
            fit: None,
        })
    }

    /// This map with its default's bits and group replaced where given
    /// (the `--weights` and `--group` flags), and rotation turned on for
    /// it with `rotate` (`--rotate`); rules keep what they set.
    pub fn with_overrides(
        mut self,
        bits: Option<Option<u32>>,
        group: Option<usize>,
        rotate: bool,
    ) -> Precision {
        if let Some(b) = bits {
            self.default.bits = b;
        }
        if let Some(g) = group {
            self.default.group = g;
        }
        self.default.rotate |= rotate;
        self
    }

    /// The setting of a layer and the index of the rule that gave it
    /// (`None`: the default). `names` are what patterns match: the node's
    /// name, its weight's name and its op.
    pub fn setting_for(&self, names: &[&str]) -> (Setting, Option<usize>) {
        for (i, r) in self.rules.iter().enumerate() {
            if names.iter().any(|n| glob(&r.pattern, n)) {
                return (r.given.over(self.default), Some(i));
            }
        }
        (self.default, None)
    }

    /// Fails naming every rule that matched no layer (a misspelt pattern
    /// would otherwise quietly leave its layers at the default).
    pub fn check_all_used(&self, used: &[bool]) -> Result<()> {
        let unused: Vec<String> = self
            .rules
            .iter()
            .zip(used)
            .filter(|(_, u)| !**u)
            .map(|(r, _)| {
                format!(
                    "{}:{}: pattern \"{}\" matches no quantizable layer (MatMul, Gemm, Conv or Gather over a constant weight)",
                    self.source.as_deref().unwrap_or("precision map"),
                    r.line,
                    r.pattern
                )
            })
            .collect();
        if unused.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "{}; `wpc inspect MODEL --nodes` lists the node names",
                unused.join("; ")
            )))
        }
    }
}

/// The 1-based line of the first `"pattern"` literal at or after byte
/// `from`, moving `from` past it (rules are in file order).
fn line_of(text: &str, pattern: &str, from: &mut usize) -> usize {
    let literal = format!("\"{pattern}\"");
    match text[*from..].find(&literal) {
        Some(at) => {
            *from += at + literal.len();
            text[..*from].lines().count()
        }
        None => 0,
    }
}

/// Whether `name` matches `pattern`: `*` any run of characters, `?` any
/// one, everything else itself.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names_as_shells_do() {
        assert!(glob(
            "*query*",
            "/encoder/layer.0/attention/self/query/MatMul"
        ));
        assert!(glob("Gather", "Gather"));
        assert!(!glob("Gather", "GatherND"));
        assert!(glob("l?_ff*", "l3_ff1_mm"));
        assert!(!glob("*key", "key_proj"));
        assert!(glob("**", ""));
    }

    #[test]
    fn rules_override_the_default_and_the_first_match_wins() {
        let text = r#"(
    default: (bits: 4, group: 32, scales: f32),
    layers: [
        ("Gather", (bits: 8)),
        ("*ff*", (bits: 2, method: rounding, rotate: true)),
        ("*ff2*", (bits: 3)),
        ("head", (bits: 32)),
    ],
)"#;
        let p = Precision::parse(text, "map.ron").unwrap();
        let (s, rule) = p.setting_for(&["l0_ff2_mm", "w", "MatMul"]);
        assert_eq!(rule, Some(1));
        assert_eq!(
            (s.bits, s.group, s.f16_scales, s.method, s.rotate),
            (Some(2), 32, false, Method::Rounding, true)
        );
        let emb = p.setting_for(&["emb", "t", "Gather"]).0;
        assert_eq!((emb.bits, emb.rotate), (Some(8), false));
        let flags = p.clone().with_overrides(None, None, true);
        assert!(flags.default.rotate && flags.setting_for(&["emb", "t", "Gather"]).0.rotate);
        assert_eq!(p.setting_for(&["head", "w", "MatMul"]).0.bits, None);
        assert_eq!(p.setting_for(&["l0_q", "w", "MatMul"]), (p.default, None));
        assert_eq!(
            p.rules.iter().map(|r| r.line).collect::<Vec<_>>(),
            [4, 5, 6, 7]
        );
        let err = p
            .check_all_used(&[true, true, false, true])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("map.ron:6: pattern \"*ff2*\" matches no"),
            "{err}"
        );
    }

    #[test]
    fn the_shipped_example_maps_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/precision");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let p = Precision::parse(&text, &path.display().to_string()).unwrap();
            assert!(p.rules.iter().all(|r| r.line > 0), "{}", path.display());
            seen += 1;
        }
        assert!(seen >= 3);
    }

    #[test]
    fn bad_maps_name_the_line() {
        for (text, expect) in [
            ("(layers: [(\"a\", (bitz: 3))])", "map.ron:1:"),
            ("(\n  default: (bits: 9),\n)", "map.ron:2:"),
            ("(\n layers: [\n  (\"a\", (group: 48)),\n ])", "map.ron:3:"),
            ("(speed: 1)", "map.ron:1:"),
        ] {
            let err = Precision::parse(text, "map.ron").unwrap_err().to_string();
            assert!(err.contains(expect), "{text}: {err}");
        }
        let err = Precision::parse("(default: (bits: 9))", "m")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bits must be 2 to 8, or 32"), "{err}");
    }
}
