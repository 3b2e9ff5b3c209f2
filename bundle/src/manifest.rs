//! `manifest.json`: what a bundle holds and how to run each variant.
//!
//! Format version 3 (version 1 listed fallback nodes as bare names in
//! `reference_nodes`; version 2 lists them with reasons in `fallback`;
//! version 3 adds dynamic sizes: `dims`, `run_shape`, and a dispatch's
//! `params` and `groups`). Everything a runtime needs is here; files are
//! named relative to the bundle directory.
//!
//! Each tensor lists its declared (possibly symbolic) `shape` and the
//! `bound` sizes its buffers were made for. A bundle compiled for fixed
//! sizes runs at exactly those, and a runtime must reject inputs of any
//! other shape. A bundle with `dims` runs at any sizes of those symbols
//! within their ranges: an input's symbolic dims give each symbol its
//! size, `bound` holds the largest sizes, and every size that depends on
//! the symbols — a tensor's `run_shape`, a dispatch's workgroup counts
//! (`groups`) and the sizes its kernel reads from its uniform (`params`) —
//! is a [`SizeExpr`] the runtime evaluates per run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The value of `format` in every manifest.
pub const FORMAT: &str = "wpc-bundle";
/// The manifest version this crate reads and writes.
pub const VERSION: u32 = 3;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub model: ModelInfo,
    /// The target profile the bundle was compiled for.
    pub target: String,
    /// The symbols the bundle leaves to run time, with the sizes each may
    /// take; empty for a bundle compiled for fixed sizes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dims: Vec<DimRange>,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    /// Weight files, in load-priority order.
    pub shards: Vec<Shard>,
    /// Every other file (shaders, wasm modules), with its size and sha256,
    /// so loaders verify code as they verify weights.
    #[serde(default)]
    pub code: Vec<CodeFile>,
    /// Ways to run the model, in the target's preference order.
    pub variants: Vec<Variant>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// The source file's name (without directories).
    pub name: String,
    pub producer: String,
    /// sha256 of the source model file, so a bundle can be traced to it.
    pub sha256: String,
}

/// A symbol a bundle leaves to run time, and the sizes it may take
/// (`min` to `max` inclusive).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimRange {
    pub name: String,
    pub min: u64,
    pub max: u64,
    /// For a size only the data decides (NonZero's count of non-zeros):
    /// the tensor whose dim it is. No input gives it; the kernel computing
    /// that tensor writes it where the runtime reads it (wasm: the size
    /// table; WebGPU: the buffer its dispatch's `counts` names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_in: Option<String>,
}

/// A size computed from the bundle's symbols, written in JSON as an
/// integer, a symbol's name, or `[op, operand, ...]` with `op` one of
/// `+`, `*`, `floor_div`, `mod`, `max`, `min` (see
/// [`wpc_ir::sym::Term`]): `["+", ["*", 64, "seq"], 1]` is `64*seq + 1`.
#[derive(Clone, Debug, PartialEq)]
pub struct SizeExpr(pub wpc_ir::sym::Term);

impl SizeExpr {
    pub fn of(e: &wpc_ir::sym::Expr) -> SizeExpr {
        SizeExpr(e.term())
    }

    /// The value under the symbols' sizes `value`; `None` where one is
    /// missing, on a division by zero or on overflow.
    pub fn eval(&self, value: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        wpc_ir::sym::Expr::from_term(&self.0)?.eval(value)
    }

    /// The symbols it reads.
    pub fn symbols(&self) -> Vec<String> {
        wpc_ir::sym::Expr::from_term(&self.0)
            .map(|e| e.symbols().into_iter().collect())
            .unwrap_or_default()
    }

    fn to_json(t: &wpc_ir::sym::Term) -> serde_json::Value {
        use wpc_ir::sym::Term;
        match t {
            Term::Int(c) => serde_json::Value::from(*c),
            Term::Sym(s) => serde_json::Value::from(s.as_str()),
            Term::Op(op, args) => {
                let mut v = vec![serde_json::Value::from(*op)];
                v.extend(args.iter().map(SizeExpr::to_json));
                serde_json::Value::Array(v)
            }
        }
    }

    fn from_json(v: &serde_json::Value) -> std::result::Result<wpc_ir::sym::Term, String> {
        use wpc_ir::sym::Term;
        const OPS: [&str; 6] = ["+", "*", "floor_div", "mod", "max", "min"];
        match v {
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(Term::Int)
                .ok_or_else(|| format!("size {n} is not an integer")),
            serde_json::Value::String(s) => Ok(Term::Sym(s.clone())),
            serde_json::Value::Array(items) => {
                let (op, args) = items.split_first().ok_or("an empty size expression")?;
                let op = OPS
                    .into_iter()
                    .find(|o| op.as_str() == Some(*o))
                    .ok_or_else(|| format!("unknown size operation {op}"))?;
                let args = args
                    .iter()
                    .map(SizeExpr::from_json)
                    .collect::<Result<Vec<_>, _>>()?;
                let arity_ok = match op {
                    "+" | "*" => args.len() >= 2,
                    _ => args.len() == 2,
                };
                if !arity_ok {
                    return Err(format!("'{op}' with {} operands", args.len()));
                }
                Ok(Term::Op(op, args))
            }
            other => Err(format!("{other} is not a size expression")),
        }
    }
}

impl Serialize for SizeExpr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        SizeExpr::to_json(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SizeExpr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<SizeExpr, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        SizeExpr::from_json(&v)
            .map(SizeExpr)
            .map_err(serde::de::Error::custom)
    }
}

impl Manifest {
    /// Each symbol's largest size, for evaluating a [`SizeExpr`] at the
    /// bounds.
    pub fn largest(&self, name: &str) -> Option<i64> {
        self.dims
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| i64::try_from(d.max).ok())
    }

    /// Checks that the manifest is consistent with itself, so that every
    /// runtime may trust it: each tensor's bound shape has the element
    /// count its slots hold in every variant, every index, offset and
    /// range points inside what it indexes, and every size expression
    /// reads only the bundle's symbols and stays within what was made for
    /// it at their largest sizes. An edited or corrupt manifest is refused
    /// here, before it could produce a wrong-shaped output.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for d in &self.dims {
            if d.min > d.max {
                return Err(format!(
                    "dim '{}' has the empty range {}..{}",
                    d.name, d.min, d.max
                ));
            }
        }
        let known = |e: &SizeExpr, what: &str| -> std::result::Result<(), String> {
            match e.symbols().into_iter().find(|s| self.largest(s).is_none()) {
                Some(s) => Err(format!(
                    "{what} reads '{s}', which is not one of the bundle's dims"
                )),
                None => Ok(()),
            }
        };
        for t in self.inputs.iter().chain(&self.outputs) {
            if let Some(run) = &t.run_shape {
                if run.len() != t.bound.len() {
                    return Err(format!(
                        "'{}' has a run shape of another rank than its bound",
                        t.name
                    ));
                }
                for (e, &b) in run.iter().zip(&t.bound) {
                    known(e, &format!("the shape of '{}'", t.name))?;
                    if e.eval(&|s| self.largest(s)) != i64::try_from(b).ok() {
                        return Err(format!(
                            "the shape of '{}' at the largest sizes is not its bound {:?}",
                            t.name, t.bound
                        ));
                    }
                }
            }
        }
        for v in &self.variants {
            match v {
                Variant::WebGpu(w) => {
                    for d in &w.dispatches {
                        for e in d.params.iter().chain(d.groups.iter().flatten()) {
                            known(e, &format!("the dispatch of node {}", d.node))?;
                        }
                        for c in &d.counts {
                            let counted = self
                                .dims
                                .iter()
                                .any(|r| r.name == c.dim && r.counted_in.is_some());
                            if !counted || c.buffer >= w.buffers.len() {
                                return Err(format!(
                                    "the dispatch of node {} counts '{}' into buffer {}, which is not a counted dim and a buffer",
                                    d.node, c.dim, c.buffer
                                ));
                            }
                        }
                    }
                    let counts = |r: &DimRange| {
                        w.dispatches
                            .iter()
                            .flat_map(|d| &d.counts)
                            .any(|c| c.dim == r.name)
                    };
                    if let Some(r) = self
                        .dims
                        .iter()
                        .find(|r| r.counted_in.is_some() && !counts(r))
                    {
                        return Err(format!(
                            "no dispatch of the WebGPU variant counts '{}'",
                            r.name
                        ));
                    }
                }
                Variant::Wasm(w) => {
                    for d in w.sizes.iter().flat_map(|t| &t.dims) {
                        known(
                            &SizeExpr(wpc_ir::sym::Term::Sym(d.clone())),
                            &format!("variant {}'s size table", w.name),
                        )?;
                    }
                    let tabled = |d: &DimRange| w.sizes.iter().any(|t| t.dims.contains(&d.name));
                    if let Some(d) = self.dims.iter().find(|d| !tabled(d)) {
                        return Err(format!(
                            "variant {} has no place for the size of dim '{}'",
                            w.name, d.name
                        ));
                    }
                }
            }
        }
        // (role, name, elements, bytes per element) of every input, then
        // every output: the order of each variant's slots.
        let mut tensors = Vec::new();
        for (role, infos) in [("input", &self.inputs), ("output", &self.outputs)] {
            for t in infos {
                let elements = t.validate(role)?;
                let size = t.dtype().map_err(|e| e.to_string())?.size() as u64;
                tensors.push((role, t.name.as_str(), elements, size));
            }
        }
        let counts = (self.inputs.len(), self.outputs.len());
        for v in &self.variants {
            let (name, slots) = v.slots();
            if (slots.0.len(), slots.1.len()) != counts {
                return Err(format!(
                    "variant {name} has {} inputs and {} outputs; the model has {} and {}",
                    slots.0.len(),
                    slots.1.len(),
                    counts.0,
                    counts.1
                ));
            }
            for (&(role, tensor, elements, _), slot) in
                tensors.iter().zip(slots.0.iter().chain(&slots.1))
            {
                if elements != *slot {
                    return Err(format!(
                        "{role} '{tensor}' is bound to {elements} elements, but variant {name} holds {slot}"
                    ));
                }
            }
            match v {
                Variant::Wasm(w) => w.validate(&tensors, &self.shards)?,
                Variant::WebGpu(w) => w.validate(&self.shards)?,
            }
        }
        Ok(())
    }
}

impl Variant {
    /// The variant's name: `webgpu`, or the wasm variant's (`wasm-simd`...).
    pub fn name(&self) -> &str {
        self.slots().0
    }

    /// Every shard range the variant's weights are read from.
    pub fn shard_ranges_mut(&mut self) -> Vec<&mut ShardRange> {
        match self {
            Variant::Wasm(w) => w.weights.iter_mut().map(|p| &mut p.range).collect(),
            Variant::WebGpu(w) => w
                .buffers
                .iter_mut()
                .filter_map(|b| b.init.as_mut())
                .collect(),
        }
    }

    /// The variant's name and its input and output element counts.
    fn slots(&self) -> (&str, (Vec<u64>, Vec<u64>)) {
        fn counts<'a>(ts: impl Iterator<Item = &'a u64>) -> Vec<u64> {
            ts.copied().collect()
        }
        match self {
            Variant::Wasm(w) => (
                &w.name,
                (
                    counts(w.inputs.iter().map(|t| &t.elements)),
                    counts(w.outputs.iter().map(|t| &t.elements)),
                ),
            ),
            Variant::WebGpu(w) => (
                "webgpu",
                (
                    counts(w.inputs.iter().map(|t| &t.elements)),
                    counts(w.outputs.iter().map(|t| &t.elements)),
                ),
            ),
        }
    }
}

/// Whether `r` lies inside one of `shards`.
/// Whether `r` lies inside a shard that `variant` reads (a shard listing
/// no readers, as manifests before `variants` existed, is read by all).
fn in_shards(r: &ShardRange, shards: &[Shard], variant: &str) -> bool {
    shards.get(r.shard).is_some_and(|s| {
        (s.variants.is_empty() || s.variants.iter().any(|v| v == variant))
            && r.offset
                .checked_add(r.bytes)
                .is_some_and(|end| end <= s.bytes)
    })
}

impl WasmVariant {
    /// Every tensor slot and weight placement lies inside linear memory.
    fn validate(
        &self,
        tensors: &[(&str, &str, u64, u64)],
        shards: &[Shard],
    ) -> std::result::Result<(), String> {
        let fits = |offset: u64, bytes: u64| {
            offset
                .checked_add(bytes)
                .is_some_and(|end| end <= self.memory_bytes)
        };
        let slots = self.inputs.iter().chain(&self.outputs);
        for (&(role, tensor, elements, size), slot) in tensors.iter().zip(slots) {
            if !elements
                .checked_mul(size)
                .is_some_and(|bytes| fits(slot.offset, bytes))
            {
                return Err(format!(
                    "{role} '{tensor}' lies outside variant {}'s {} bytes of memory",
                    self.name, self.memory_bytes
                ));
            }
        }
        if let Some(t) = &self.sizes
            && !fits(t.offset, 4 * t.dims.len() as u64)
        {
            return Err(format!(
                "variant {}'s size table lies outside its memory",
                self.name
            ));
        }
        if self
            .weights
            .iter()
            .any(|p| !in_shards(&p.range, shards, &self.name) || !fits(p.offset, p.range.bytes))
        {
            return Err(format!(
                "variant {} places weights outside its shards or its memory",
                self.name
            ));
        }
        Ok(())
    }
}

impl WebGpuVariant {
    /// Every tensor fits its buffer, every weight range its shard and
    /// buffer, and every dispatch names shaders and buffers that exist.
    fn validate(&self, shards: &[Shard]) -> std::result::Result<(), String> {
        let fits = |t: &DeviceTensor| {
            self.buffers
                .get(t.buffer)
                .is_some_and(|b| t.elements.checked_mul(4).is_some_and(|n| n <= b.bytes))
        };
        if !self.inputs.iter().chain(&self.outputs).all(fits) {
            return Err("the webgpu variant's inputs or outputs do not fit their buffers".into());
        }
        let init_ok = |b: &BufferDecl| {
            b.init
                .as_ref()
                .is_none_or(|r| in_shards(r, shards, "webgpu") && r.bytes <= b.bytes)
        };
        if !self.buffers.iter().all(init_ok) {
            return Err("the webgpu variant's weights lie outside its shards or buffers".into());
        }
        for d in &self.dispatches {
            if d.shader >= self.shaders.len() || d.bindings.iter().any(|&b| b >= self.buffers.len())
            {
                return Err(format!(
                    "the dispatch of node {} names a shader or buffer that does not exist",
                    d.node
                ));
            }
        }
        Ok(())
    }
}

/// A model input or output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorInfo {
    pub name: String,
    /// ONNX element type name (`float32`, `int64`, ...).
    pub dtype: String,
    /// Declared shape: sizes, or symbol names for symbolic dims.
    pub shape: Vec<DimInfo>,
    /// The sizes this bundle was compiled for (its largest, where sizes
    /// are dynamic).
    pub bound: Vec<u64>,
    /// Where some size is dynamic: the shape at run time, over the
    /// bundle's `dims`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_shape: Option<Vec<SizeExpr>>,
}

impl TensorInfo {
    /// The element type, from its ONNX name.
    pub fn dtype(&self) -> crate::Result<wpc_ir::DType> {
        wpc_ir::DType::ALL
            .into_iter()
            .find(|d| d.name() == self.dtype)
            .ok_or_else(|| crate::Error::Format {
                path: "manifest.json".into(),
                reason: format!("tensor '{}' has unknown dtype '{}'", self.name, self.dtype),
            })
    }

    /// Checks that `bound` fits the declared `shape` (rank, fixed sizes);
    /// returns its element count.
    fn validate(&self, role: &str) -> std::result::Result<u64, String> {
        let fits = self.bound.len() == self.shape.len()
            && self
                .shape
                .iter()
                .zip(&self.bound)
                .all(|(d, &b)| !matches!(d, DimInfo::Size(n) if *n != b));
        if !fits {
            return Err(format!(
                "{role} '{}' declares shape {:?} but is bound to {:?}",
                self.name, self.shape, self.bound
            ));
        }
        self.bound
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("{role} '{}' is too large", self.name))
    }

    /// The compiled-for sizes (the largest, where sizes are dynamic).
    pub fn dims(&self) -> Vec<usize> {
        self.bound.iter().map(|&d| d as usize).collect()
    }

    /// Its shape at the symbols' sizes `sizes`.
    pub fn shape_at(&self, sizes: &RunSizes) -> crate::Result<Vec<usize>> {
        match &self.run_shape {
            None => Ok(self.dims()),
            Some(run) => run
                .iter()
                .map(|e| {
                    sizes
                        .eval(e)
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            crate::Error::Input(format!(
                                "the shape of '{}' has no size at {sizes}",
                                self.name
                            ))
                        })
                })
                .collect(),
        }
    }
}

/// The sizes of a bundle's dynamic dims in one run, found from the
/// shapes of its inputs ([`bind_inputs`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSizes(pub BTreeMap<String, i64>);

impl RunSizes {
    /// The value of a size expression at these sizes.
    pub fn eval(&self, e: &SizeExpr) -> Option<i64> {
        e.eval(&|s| self.0.get(s).copied())
    }
}

impl std::fmt::Display for RunSizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(s, v)| format!("{s}={v}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// Checks the count, dtype and shape of each of `inputs` against what the
/// bundle takes, and finds the size of each of its dynamic dims: an
/// input's dim that is a symbol gives the symbol its size, which must lie
/// within the symbol's range and agree with every other input's. Fixed
/// sizes must match exactly. Every refusal names the input, the dim, the
/// size and what was expected.
pub fn bind_inputs(
    dims: &[DimRange],
    infos: &[TensorInfo],
    inputs: &[wpc_ir::Tensor],
) -> crate::Result<RunSizes> {
    if inputs.len() != infos.len() {
        return Err(crate::Error::Input(format!(
            "the model takes {} inputs, {} given",
            infos.len(),
            inputs.len()
        )));
    }
    let mut sizes = RunSizes::default();
    // Who gave each symbol its size, for a disagreement's message.
    let mut given_by: BTreeMap<String, String> = BTreeMap::new();
    for (info, t) in infos.iter().zip(inputs) {
        if t.dtype() != info.dtype()? {
            return Err(crate::Error::Input(format!(
                "input '{}' is {}, the model takes {}",
                info.name,
                t.dtype(),
                info.dtype
            )));
        }
        let Some(run) = &info.run_shape else {
            if t.shape() != info.dims().as_slice() {
                return Err(crate::Error::Input(format!(
                    "input '{}' has shape {:?}; this bundle was compiled for {:?} (recompile with --dim to change it, or with --dim SYMBOL=MIN..MAX to run at any size within)",
                    info.name,
                    t.shape(),
                    info.dims()
                )));
            }
            continue;
        };
        if t.rank() != run.len() {
            return Err(crate::Error::Input(format!(
                "input '{}' has shape {:?}; the model takes {} dims",
                info.name,
                t.shape(),
                run.len()
            )));
        }
        for (axis, (e, &n)) in run.iter().zip(t.shape()).enumerate() {
            let n = n as i64;
            match &e.0 {
                wpc_ir::sym::Term::Sym(s) => {
                    let range =
                        dims.iter()
                            .find(|d| d.name == *s)
                            .ok_or_else(|| crate::Error::Format {
                                path: "manifest.json".into(),
                                reason: format!("input '{}' reads unknown dim '{s}'", info.name),
                            })?;
                    if !(range.min as i64..=range.max as i64).contains(&n) {
                        return Err(crate::Error::Input(format!(
                            "input '{}' has shape {:?}: its dim {axis} ('{s}') is {n}, outside the sizes this bundle runs at, {}..{}",
                            info.name,
                            t.shape(),
                            range.min,
                            range.max
                        )));
                    }
                    let here = format!("dim {axis} of input '{}'", info.name);
                    if let Some(&before) = sizes.0.get(s)
                        && before != n
                    {
                        return Err(crate::Error::Input(format!(
                            "'{s}' is {before} by {} but {n} by {here}: inputs sharing a dim must agree",
                            given_by[s]
                        )));
                    }
                    sizes.0.insert(s.clone(), n);
                    given_by.insert(s.clone(), here);
                }
                _ => {
                    let want = sizes.eval(e);
                    if want != Some(n) {
                        return Err(crate::Error::Input(format!(
                            "input '{}' has shape {:?}: its dim {axis} must be {}",
                            info.name,
                            t.shape(),
                            want.map_or_else(|| format!("{:?}", e.0), |w| w.to_string())
                        )));
                    }
                }
            }
        }
    }
    Ok(sizes)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DimInfo {
    Size(u64),
    Symbol(String),
}

/// One file of weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    /// Lower loads first.
    pub priority: u32,
    /// The variants that read this shard. A weight whose layout is the
    /// same for several variants is stored once, in a shard they share;
    /// one a backend lays out its own way (wasm's packed GEMM panels) is
    /// in a shard of that backend's variants only, which loaders of the
    /// other variants never fetch.
    #[serde(default)]
    pub variants: Vec<String>,
}

/// A code file of the bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeFile {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Where a tensor's bytes lie in the shards.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardRange {
    pub shard: usize,
    pub offset: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum Variant {
    #[serde(rename = "webgpu")]
    WebGpu(WebGpuVariant),
    #[serde(rename = "wasm")]
    Wasm(WasmVariant),
}

/// A WebAssembly variant: one module (exporting `memory` and `run`) whose
/// tensors sit at offsets of its linear memory fixed at compile time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmVariant {
    /// `wasm-simd`, `wasm-relaxed` or `wasm-scalar`.
    pub name: String,
    /// wasm features the engine must support (`simd`, `relaxed-simd`).
    pub features: Vec<String>,
    /// The module file.
    pub module: String,
    /// Bytes of linear memory the module declares: its peak memory, unless
    /// `fallback` is not empty (the reference kernels allocate above it).
    pub memory_bytes: u64,
    /// The reference kernel module, when `fallback` is not empty:
    /// instantiated first, its exports are the module's imports `wpc.*`
    /// (its memory is the variant's memory, grown to `memory_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The nodes without a generated kernel in this variant, which run the
    /// reference interpreter's kernel compiled to wasm32 (scalar,
    /// allocating), each with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<Fallback>,
    /// Shard ranges copied into memory before the first run.
    pub weights: Vec<Placement>,
    /// Where the host writes the run's sizes, where some are dynamic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizes: Option<SizeTable>,
    /// Each input's and output's place, sized for the largest sizes; a
    /// run at smaller sizes uses the start of it (the tensor's shape at
    /// the run's sizes, contiguous).
    pub inputs: Vec<MemoryTensor>,
    pub outputs: Vec<MemoryTensor>,
}

/// A wasm variant's table of the run's sizes: before each run the host
/// writes one little-endian `u32` per dim of `dims` (names of the
/// manifest's `dims`), in that order, from byte `offset` of memory. The
/// kernels read their loop counts from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeTable {
    pub offset: u64,
    pub dims: Vec<String>,
}

/// A node a variant runs on its fallback path instead of a kernel of its
/// own: a partition decision of the backend, recorded so a user (and
/// `wpc compile`'s report) can see what runs slowly and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    /// The node's name in the model.
    pub node: String,
    /// Its op, `domain:Op` outside the default domain.
    pub op: String,
    /// Why it has no kernel here.
    pub reason: String,
}

impl Fallback {
    pub fn new(node: &wpc_ir::Node, reason: &str) -> Fallback {
        Fallback {
            node: node.name.clone(),
            op: if node.domain.is_empty() || node.domain == "ai.onnx" {
                node.op.clone()
            } else {
                format!("{}:{}", node.domain, node.op)
            },
            reason: reason.to_string(),
        }
    }
}

/// Where weights go: bytes of a shard, written at a memory offset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    pub range: ShardRange,
    pub offset: u64,
}

/// A model input or output in linear memory: `elements` of its dtype at
/// `offset`, little-endian at their natural width (a bool is one byte).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryTensor {
    pub offset: u64,
    pub elements: u64,
}

/// The WebGPU variant: requirements and a static execution plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebGpuVariant {
    pub requires: Requirements,
    /// WGSL files, one per distinct kernel (pipelines index into this).
    pub shaders: Vec<String>,
    /// Device buffers. Scratch buffers are shared by values whose lifetimes
    /// do not overlap.
    pub buffers: Vec<BufferDecl>,
    /// Per model input, in order: the buffer it is written to.
    pub inputs: Vec<DeviceTensor>,
    /// Per model output, in order: the buffer it is read from.
    pub outputs: Vec<DeviceTensor>,
    /// Dispatches, in execution order.
    pub dispatches: Vec<Dispatch>,
    /// Bytes of all buffers together: the variant's peak device memory.
    pub peak_bytes: u64,
}

/// What an adapter must offer to run the variant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// `GPUFeatureName`s.
    pub features: Vec<String>,
    /// `GPUSupportedLimits` names (camelCase, as in the spec) → minimum value.
    pub limits: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferDecl {
    pub bytes: u64,
    /// Filled from the shards at load time, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<ShardRange>,
}

/// How a host tensor lives on the device: every element widened or narrowed
/// to one 32-bit word (`f32`, `i32` or `u32`), since WGSL has no 64-bit or
/// sub-word storage types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceTensor {
    pub buffer: usize,
    /// `f32`, `i32` or `u32`.
    pub word: String,
    pub elements: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dispatch {
    /// Index into `shaders`; entry point `main`.
    pub shader: usize,
    /// Buffers bound at `@group(0) @binding(i)`, in order.
    pub bindings: Vec<usize>,
    /// Workgroup counts (at the largest sizes, where `groups` is set).
    pub workgroups: [u32; 3],
    /// Workgroup counts at run time, where they depend on the bundle's
    /// dims (a count of 0 skips the dispatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<[SizeExpr; 3]>,
    /// The sizes the kernel reads from its uniform buffer (bound after
    /// `bindings`, at `@binding(bindings.len())`), one `u32` each in
    /// order, evaluated per run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<SizeExpr>,
    /// The node this dispatch computes, for profiles and errors.
    pub node: String,
    /// The sizes only the data decides that this dispatch counts: after
    /// it, the runtime reads each from its buffer and sizes the
    /// dispatches that follow by it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<Count>,
}

/// Where a dispatch leaves a size only the data decides (a dim of the
/// bundle's `dims` with `counted_in` set): a `u32` at word 0 of buffer
/// `buffer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Count {
    pub dim: String,
    pub buffer: usize,
}
