//! The lowering driver: an optimized graph becomes one wasm module. Each
//! node is one function with its static shapes and addresses baked in as
//! constants; the exported `run` calls them in order. Tensors live in the
//! exported linear memory at offsets fixed by the [`Planner`]; the host
//! writes inputs and weights there and reads outputs back. Every element
//! is stored little-endian at its dtype's natural width (a bool is one
//! byte). A node whose op has no generated kernel here ([`runs`]), or
//! whose kernel refuses its dtypes or attributes, runs the reference
//! kernel ([`crate::reference`]) and is listed, with the reason, in the
//! variant's `fallback`.
//!
//! Dims left to run time (the model's `dim_ranges`) are read from a size
//! table in memory that the host fills before each run ([`SizeTable`]);
//! the plan gives every tensor room for its largest shape. A node whose
//! shapes are dynamic runs a kernel that reads its sizes from the table
//! ([`crate::ops::handles_dynamic_sizes`]) or else the reference kernel,
//! which evaluates the shapes when it runs.

use std::collections::{HashMap, HashSet};

use walrus::{ConstExpr, DataKind, FunctionBuilder, FunctionId, MemoryId, Module, ModuleConfig};
use wpc_bundle::device_data::{bounded_type, static_type};
use wpc_bundle::manifest::Fallback;
use wpc_ir::sym::Expr;
use wpc_ir::{Attrs, DType, Error, ErrorKind, Graph, Model, Node, Result, Tensor, ValueId};
use wpc_passes::backend::Runs;

use crate::emit::{Fx, Isa};
use crate::math::Math;
use crate::plan::Planner;

/// Where a model input or output lives in linear memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub offset: u64,
    pub dtype: DType,
    pub elements: u64,
}

/// A compiled variant: the module, where its inputs and outputs live, and
/// the weights to write into memory before the first run.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub isa: Isa,
    pub wasm: Vec<u8>,
    pub inputs: Vec<Slot>,
    pub outputs: Vec<Slot>,
    /// (memory offset, bytes), in the order kernels first read them.
    pub weights: Vec<(u64, Vec<u8>)>,
    /// Bytes of linear memory the plan needs (the variant's peak memory).
    pub memory_bytes: u64,
    /// Of which activations (inputs, outputs, intermediates, scratch); the
    /// weights sit above them.
    pub activation_bytes: u64,
    /// The nodes that run the reference kernel, with the reason they have
    /// no generated one. Their scratch memory is not part of `memory_bytes`.
    pub fallback: Vec<Fallback>,
    /// Where the run's sizes go, when some dims are dynamic.
    pub sizes: Option<SizeTable>,
}

/// The table of the run's dim sizes in linear memory: one `u32` per dim
/// of `dims`, in order, from byte `addr`, written by the host before each
/// run.
#[derive(Clone, Debug, PartialEq)]
pub struct SizeTable {
    pub addr: u32,
    pub dims: Vec<String>,
}

impl SizeTable {
    /// The byte address of `dim`'s size.
    pub fn addr_of(&self, dim: &str) -> Option<u32> {
        let i = self.dims.iter().position(|d| d == dim)?;
        Some(self.addr + 4 * i as u32)
    }
}

/// A tensor as a kernel sees it: dtype, shape and address.
#[derive(Clone, Debug, PartialEq)]
pub struct Tt {
    pub dtype: DType,
    /// The largest shape it takes: the shape itself where it is static.
    pub shape: Vec<usize>,
    /// Each dim's size, computed from the run's dims where it is dynamic.
    pub dims: Vec<Expr>,
    /// Byte address in linear memory.
    pub addr: u32,
}

impl Tt {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether every dim is known at compile time.
    pub fn is_static(&self) -> bool {
        self.dims.iter().all(|d| d.as_const().is_some())
    }
}

/// Bytes of a tensor of `dtype` and `shape` in linear memory.
fn bytes_for(dtype: DType, shape: &[usize]) -> u64 {
    (dtype.size() * shape.iter().product::<usize>()) as u64
}

/// The signature of every op lowering: emit the node's code into `f`.
pub type LowerFn = fn(&mut Ctx, &mut FunctionBuilder) -> Result<()>;

/// Ops whose output is their input's bytes under another shape (views,
/// and Dropout at inference when nothing reads its mask).
fn is_alias(g: &Graph, node: &Node) -> bool {
    let unread = |v: &Option<ValueId>| {
        v.is_none_or(|v| g.consumers(v).is_empty() && !g.outputs.contains(&v))
    };
    wpc_ir::ops::class_of(&node.domain, &node.op) == wpc_ir::ops::OpClass::View
        || (node.op == "Dropout"
            && node.outputs.get(1).is_none_or(unread)
            && node.inputs.get(2).copied().flatten().is_none())
}

/// The model's dim ranges: what each dynamic dim may be.
pub type Ranges = std::collections::BTreeMap<String, (usize, usize)>;

/// Whether a tensor `node` reads or writes has a dynamic size.
pub fn is_dynamic(g: &Graph, node: &Node) -> bool {
    node.inputs
        .iter()
        .chain(&node.outputs)
        .flatten()
        .any(|&v| g.value(v).ty.shape.concrete().is_none())
}

/// How the WebAssembly backend runs `node` of `g` under the dims'
/// `ranges`, judged before lowering (the contract's
/// [`wpc_passes::backend::Backend::runs`]); the lowering follows it.
pub fn runs(g: &Graph, ranges: &Ranges, node: &Node) -> Runs {
    for &v in node.outputs.iter().flatten() {
        if let Err(e) = bounded_type(g, ranges, v) {
            return Runs::No(e.reason);
        }
    }
    if is_alias(g, node) {
        return Runs::View;
    }
    if is_dynamic(g, node) && !crate::ops::handles_dynamic_sizes(&node.domain, &node.op) {
        return match crate::support(&node.domain, &node.op) {
            crate::Support::None => Runs::No(format!(
                "op {} carries subgraphs, which the wasm reference kernels cannot run",
                node.op
            )),
            _ => Runs::Fallback(format!(
                "no generated wasm kernel for op {} at dynamic sizes",
                node.op
            )),
        };
    }
    // The fusion pass made it only where `takes_epilogue` accepted it.
    if wpc_ir::ops::fused::is_fused_epilogue(node) {
        return Runs::Kernel;
    }
    match crate::support(&node.domain, &node.op) {
        crate::Support::Kernel => Runs::Kernel,
        crate::Support::View => Runs::View,
        crate::Support::Reference => {
            Runs::Fallback(format!("no generated wasm kernel for op {}", node.op))
        }
        crate::Support::None => Runs::No(format!(
            "op {} carries subgraphs, which the wasm reference kernels cannot run",
            node.op
        )),
    }
}

/// The lowering of `node`, which [`runs`] gave a kernel (for a
/// `FusedEpilogue`, `node` is its anchor).
fn kernel(node: &Node) -> Result<crate::LowerFn> {
    crate::ops::lowering(&node.domain, &node.op).ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            format!("op {} runs as a kernel but has no lowering", node.op),
        )
        .within(node.context())
    })
}

/// Weights sit above every activation: a bump allocator from `base`,
/// never freed, so nothing a kernel writes can clobber them. Weights are
/// written by the host (from the bundle's shards); `data` (small tables
/// the code reads) goes into the module's data segments.
struct WeightArena {
    base: u64,
    top: u64,
    placed: Vec<(u64, Vec<u8>)>,
    data: Vec<(u64, Vec<u8>)>,
}

impl WeightArena {
    fn reserve(&mut self, len: usize) -> u64 {
        let at = self.base + self.top;
        self.top += (len as u64).max(1).next_multiple_of(16);
        at
    }

    fn place(&mut self, bytes: Vec<u8>) -> u32 {
        let at = self.reserve(bytes.len());
        self.placed.push((at, bytes));
        at as u32
    }

    fn place_data(&mut self, bytes: Vec<u8>) -> u32 {
        let at = self.reserve(bytes.len());
        self.data.push((at, bytes));
        at as u32
    }
}

/// A `FusedEpilogue` node and its split, for the lowering of its anchor.
#[derive(Clone, Copy)]
pub struct Anchoring<'a> {
    pub fused: &'a Node,
    pub split: &'a wpc_ir::ops::fused::Epilogue<'a>,
}

impl Anchoring<'_> {
    /// The fused node's input `j`.
    pub fn input(&self, j: usize) -> Result<ValueId> {
        self.fused
            .inputs
            .get(j)
            .copied()
            .flatten()
            .ok_or_else(|| Error::invalid(format!("a FusedEpilogue lacks input {j}")))
    }
}

/// What a lowering sees: the node, its tensors (placed in memory), and the
/// module being built.
pub struct Ctx<'a> {
    pub node: &'a Node,
    pub opset: u32,
    pub isa: Isa,
    /// The run's size table, where some dims are dynamic.
    pub sizes: Option<&'a SizeTable>,
    /// The `FusedEpilogue` this node is the anchor of, if it is one: its
    /// tail runs on each result before it is stored.
    pub epilogue: Option<Anchoring<'a>>,
    pub module: &'a mut Module,
    pub mem: MemoryId,
    pub math: &'a mut Math,
    graph: &'a Graph,
    /// The model's dim ranges (what dynamic sizes may be).
    pub ranges: &'a Ranges,
    /// The dims only the data decides ([`wpc_ir::Model::counted_dims`]).
    counted: &'a std::collections::BTreeMap<String, String>,
    addr: &'a mut HashMap<ValueId, u32>,
    planner: &'a mut Planner,
    weights: &'a mut WeightArena,
    scratch: Vec<(u64, u64)>,
}

impl<'a> Ctx<'a> {
    pub fn attrs(&self) -> &'a Attrs {
        &self.node.attrs
    }

    pub fn has_input(&self, i: usize) -> bool {
        self.node.inputs.get(i).is_some_and(Option::is_some)
    }

    pub fn wants_output(&self, i: usize) -> bool {
        self.node.outputs.get(i).is_some_and(Option::is_some)
    }

    fn value(&self, i: usize, outputs: bool) -> Result<ValueId> {
        let (list, what) = if outputs {
            (&self.node.outputs, "output")
        } else {
            (&self.node.inputs, "input")
        };
        list.get(i)
            .copied()
            .flatten()
            .ok_or_else(|| Error::invalid(format!("{} needs {what} {i}", self.node.op)))
    }

    /// Input `i`, placed in memory (a constant is placed on first read).
    pub fn input(&mut self, i: usize) -> Result<Tt> {
        let v = self.value(i, false)?;
        self.tensor(v)
    }

    /// Value `v` of the graph, placed in memory (a constant is placed on
    /// first read).
    pub fn tensor(&mut self, v: ValueId) -> Result<Tt> {
        let (dtype, dims, shape) = bounded_type(self.graph, self.ranges, v)?;
        if !self.addr.contains_key(&v) {
            if self.graph.sizes.contains_key(&v) {
                return Err(Error::unsupported(format!(
                    "'{}' is computed from the run's sizes",
                    self.graph.value(v).name
                )));
            }
            let t = self.graph.constants.get(&v).ok_or_else(|| {
                Error::invalid(format!(
                    "'{}' is read before it is computed",
                    self.graph.value(v).name
                ))
            })?;
            let at = self.weights.place(t.to_le_bytes());
            self.addr.insert(v, at);
        }
        Ok(Tt {
            dtype,
            shape,
            dims,
            addr: self.addr[&v],
        })
    }

    /// Where value `v` is computed from the run's sizes alone (a shape
    /// that only dynamic dims decide), its elements.
    pub fn size_values(&self, v: ValueId) -> Option<&'a wpc_ir::ops::symbolic::SymValue> {
        self.graph.sizes.get(&v)
    }

    /// The dims only the data decides that the node's outputs count: the
    /// kernel writes their sizes into the size table.
    pub fn counted_by_outputs(&self) -> Vec<String> {
        let outputs: Vec<&str> = (self.node.outputs.iter().flatten())
            .map(|&v| self.graph.value(v).name.as_str())
            .collect();
        (self.counted.iter())
            .filter(|(_, of)| outputs.contains(&of.as_str()))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Whether a tensor the node reads or writes has a dynamic size
    /// (nothing is placed in memory to find out).
    pub fn is_dynamic(&self) -> bool {
        is_dynamic(self.graph, self.node)
    }

    /// The dtype of value `v`.
    pub fn value_dtype(&self, v: ValueId) -> Result<DType> {
        self.graph.value(v).ty.dtype.ok_or_else(|| {
            Error::unsupported(format!(
                "the dtype of '{}' is not known at compile time",
                self.graph.value(v).name
            ))
        })
    }

    /// Input `i`'s value id, for a lowering that reads it by value.
    pub fn input_id(&self, i: usize) -> Result<ValueId> {
        self.value(i, false)
    }

    /// The static type of input `i`, without placing it in memory.
    pub fn input_type(&self, i: usize) -> Result<(DType, Vec<usize>)> {
        static_type(self.graph, self.value(i, false)?)
    }

    pub fn output(&self, i: usize) -> Result<Tt> {
        let v = self.value(i, true)?;
        let (dtype, dims, shape) = bounded_type(self.graph, self.ranges, v)?;
        Ok(Tt {
            dtype,
            shape,
            dims,
            addr: self.addr[&v],
        })
    }

    /// Input `i`'s value, which must be known at compile time.
    pub fn constant(&self, i: usize) -> Result<&'a Tensor> {
        self.opt_constant(i).ok_or_else(|| {
            Error::unsupported(format!(
                "{} input {i} must be a constant for the WebAssembly backend",
                self.node.op
            ))
        })
    }

    pub fn opt_constant(&self, i: usize) -> Option<&'a Tensor> {
        let v = self.node.inputs.get(i).copied().flatten()?;
        self.graph.constants.get(&v)
    }

    /// The elements of integer input `i` as sizes: computed from the
    /// run's dims alone (a start taken from a dynamic shape), or a
    /// constant's.
    pub fn size_ints(&self, i: usize) -> Option<Vec<Expr>> {
        let v = self.node.inputs.get(i).copied().flatten()?;
        if let Some(s) = self.size_values(v) {
            return Some(s.elems.clone());
        }
        let t = self.opt_constant(i)?;
        Some(t.to_i64s().into_iter().map(Expr::constant).collect())
    }

    /// Ints from constant input `i`, or else (older opsets) from the
    /// attribute it replaced.
    pub fn ints(&self, i: usize) -> Result<Option<Vec<i64>>> {
        let given = match self.has_input(i) {
            true => Some(self.constant(i)?.to_i64s()),
            false => None,
        };
        wpc_ir::ops::params::ints_input(&self.node.op, self.attrs(), i, given)
    }

    /// Scratch memory for this node only.
    pub fn scratch(&mut self, bytes: usize) -> u32 {
        let at = self.planner.alloc(bytes as u64);
        self.scratch.push((at, bytes as u64));
        at as u32
    }

    /// Floats laid out at compile time (packed weights), placed for good.
    pub fn weight(&mut self, data: &[f32]) -> u32 {
        self.weights
            .place(data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// Bytes laid out at compile time (packed low-bit codes), placed for
    /// good beside the float weights.
    pub fn weight_bytes(&mut self, bytes: Vec<u8>) -> u32 {
        self.weights.place(bytes)
    }

    /// Bytes the code reads (tables, descriptors), stored in the module.
    pub fn data(&mut self, bytes: Vec<u8>) -> u32 {
        self.weights.place_data(bytes)
    }

    /// The function-building view: locals, memory and ISA.
    pub fn fx(&mut self) -> Fx<'_> {
        Fx {
            locals: &mut self.module.locals,
            mem: self.mem,
            isa: self.isa,
        }
    }

    pub fn exp(&mut self) -> FunctionId {
        self.math.exp(self.module)
    }

    pub fn log(&mut self) -> FunctionId {
        self.math.log(self.module)
    }
}

/// The input whose bytes an elementwise node (plain or fused) can write
/// its output over: read last by this node (the `k`-th), not a model
/// input or output, computed by an earlier node (not a weight), and of
/// the output's own shape and dtype, so each element is loaded before
/// the store that replaces it (the kernels load every operand of an
/// element, or vector, before storing it).
fn in_place_donor(
    g: &Graph,
    node: &Node,
    k: usize,
    last_read: &HashMap<ValueId, usize>,
    pinned: &HashSet<ValueId>,
    bytes_of: &HashMap<ValueId, u64>,
    root_of: &dyn Fn(ValueId) -> ValueId,
) -> Option<ValueId> {
    let fused = wpc_ir::ops::fused::is_fused_elementwise(node);
    let elementwise = (node.domain.is_empty() || node.domain == "ai.onnx")
        && crate::ops::elementwise::is_elementwise(&node.op);
    let [Some(y)] = node.outputs[..] else {
        return None;
    };
    if !(fused || elementwise) {
        return None;
    }
    let ty = |v| wpc_bundle::device_data::symbolic_type(g, v).ok();
    let out = ty(y)?;
    node.inputs.iter().flatten().find_map(|&x| {
        let r = root_of(x);
        let dies_here = last_read.get(&r) == Some(&k) && !pinned.contains(&r);
        (dies_here && bytes_of.contains_key(&r) && ty(x)? == out).then_some(r)
    })
}

/// wasm32 addresses are 32-bit; the plan must fit in 4 GiB.
const MAX_MEMORY: u64 = 1 << 32;

/// Where the plan starts and the module it is built in.
struct Layout {
    /// The first address the static plan may use.
    arena_base: u64,
    /// Where the weights start (above the activations' peak).
    weights_base: u64,
    /// Import the reference kernels, for nodes without a hand-written one;
    /// otherwise the module is generated code only, with its own memory.
    reference: bool,
}

/// Lowers `model` (already optimized; sizes static or within its dim
/// ranges) to one module.
///
/// Two passes: the activation plan does not depend on where weights go,
/// so the first pass measures its peak and the second places the weights
/// right above it. The first pass also finds out whether any node needs
/// the reference kernels; only then is the module built on top of them.
pub fn compile(model: &Model, isa: Isa) -> Result<Compiled> {
    let heap_base = crate::reference::heap_base()?;
    let (_, first) = lower_at(
        model,
        isa,
        Layout {
            arena_base: heap_base,
            weights_base: heap_base,
            reference: true,
        },
    )?;
    let reference = !first.fallback.is_empty();
    let arena_base = if reference { heap_base } else { 0 };
    let layout = Layout {
        arena_base,
        weights_base: arena_base + first.activation_bytes,
        reference,
    };
    let (module, mut compiled) = lower_at(model, isa, layout)?;
    compiled.wasm = emit(module, isa)?;
    Ok(compiled)
}

/// The module's bytes, validated: an invalid module is a compiler bug, to
/// fail here rather than in a browser.
fn emit(mut module: Module, isa: Isa) -> Result<Vec<u8>> {
    let wasm = module.emit_wasm();
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&wasm)
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("wpc generated an invalid {} module: {e}", isa.name()),
            )
        })?;
    Ok(wasm)
}

/// Lowers every node into the module `layout` gives: the module (not yet
/// emitted) and the plan (`wasm` left empty).
fn lower_at(model: &Model, isa: Isa, layout: Layout) -> Result<(Module, Compiled)> {
    let g = &model.graph;
    let order = g.topo_order()?;
    let mut module = Module::with_config(ModuleConfig::new());
    let (mem, eval) = if layout.reference {
        let (mem, eval) = crate::reference::import(&mut module);
        (mem, Some(eval))
    } else {
        let mem = module.memories.add_local(false, false, 1, None, None);
        module.exports.add("memory", mem);
        (mem, None)
    };
    let mut math = Math::default();
    let mut planner = Planner::starting_at(layout.arena_base);
    let mut addr: HashMap<ValueId, u32> = HashMap::new();
    let mut weights = WeightArena {
        base: layout.weights_base.next_multiple_of(16),
        top: 0,
        placed: Vec::new(),
        data: Vec::new(),
    };
    let mut fallback = Vec::new();
    let ranges = &model.dim_ranges;
    // The run's sizes, where some dims are dynamic.
    let table = (!ranges.is_empty()).then(|| SizeTable {
        addr: weights.place_data(vec![0; 4 * ranges.len()]),
        dims: ranges.keys().cloned().collect(),
    });
    let largest = |v: ValueId| -> Result<(DType, Vec<usize>)> {
        let (dtype, _, shape) = bounded_type(g, ranges, v)?;
        Ok((dtype, shape))
    };

    // An alias shares its input's bytes: both live as long as either is read.
    let mut root: HashMap<ValueId, ValueId> = HashMap::new();
    for &n in &order {
        let node = g.node(n);
        if is_alias(g, node)
            && let (Some(Some(x)), Some(Some(y))) = (node.inputs.first(), node.outputs.first())
        {
            let r = *root.get(x).unwrap_or(x);
            root.insert(*y, r);
        }
    }
    let root_of = |v: ValueId| *root.get(&v).unwrap_or(&v);
    let mut last_read: HashMap<ValueId, usize> = HashMap::new();
    for (k, &n) in order.iter().enumerate() {
        for v in g.node(n).inputs.iter().flatten() {
            last_read.insert(root_of(*v), k);
        }
    }
    let pinned: HashSet<ValueId> = g
        .inputs
        .iter()
        .chain(&g.outputs)
        .map(|&v| root_of(v))
        .collect();
    let mut bytes_of = HashMap::new();
    for &v in &g.inputs {
        if g.constants.contains_key(&v) {
            continue;
        }
        let (dtype, shape) = largest(v)?;
        addr.insert(v, planner.alloc(bytes_for(dtype, &shape)) as u32);
    }

    let mut calls = Vec::new();
    for (k, &n) in order.iter().enumerate() {
        let node = g.node(n);
        let within = |e: Error| e.within(node.context());
        let runs = runs(g, ranges, node);
        if let Runs::No(why) = &runs {
            return Err(within(Error::unsupported(why.clone())));
        }
        let alias = runs == Runs::View;
        if !alias {
            // An elementwise kernel may write over an input that dies here.
            let mut donor = (runs == Runs::Kernel)
                .then(|| in_place_donor(g, node, k, &last_read, &pinned, &bytes_of, &root_of))
                .flatten();
            for v in node.outputs.iter().flatten() {
                let (dtype, shape) = largest(*v).map_err(within)?;
                let bytes = bytes_for(dtype, &shape);
                let at = match donor.take() {
                    Some(x) => {
                        bytes_of.remove(&x);
                        addr[&x]
                    }
                    None => planner.alloc(bytes) as u32,
                };
                addr.insert(*v, at);
                bytes_of.insert(*v, bytes);
            }
        }
        let first_output = node.outputs.first().copied().flatten();
        // A FusedEpilogue is lowered as its anchor, with the tail.
        let split = if wpc_ir::ops::fused::is_fused_epilogue(node) {
            Some(wpc_ir::ops::fused::epilogue(node).map_err(within)?)
        } else {
            None
        };
        let lowered = split.as_ref().map_or(node, |e| &e.anchor);
        let mut ctx = Ctx {
            node: lowered,
            opset: model.opset(),
            isa,
            sizes: table.as_ref(),
            epilogue: split.as_ref().map(|split| Anchoring { fused: node, split }),
            module: &mut module,
            mem,
            math: &mut math,
            graph: g,
            ranges,
            counted: &model.counted_dims,
            addr: &mut addr,
            planner: &mut planner,
            weights: &mut weights,
            scratch: Vec::new(),
        };
        if alias {
            // An alias shares its input's bytes.
            let at = ctx.input(0).map_err(within)?.addr;
            let y = first_output.ok_or_else(|| within(Error::invalid("no output")))?;
            addr.insert(y, at);
            continue;
        }
        let new_function = |ctx: &mut Ctx, how: &str| {
            let mut f = FunctionBuilder::new(&mut ctx.module.types, &[], &[]);
            f.name(format!("{} {}{how}", node.op, node.name));
            f
        };
        let mut f = new_function(&mut ctx, "");
        let empty = node.outputs.iter().flatten().all(|&v| bytes_of[&v] == 0);
        if !empty {
            // The generated kernel, unless it has none or refuses this
            // node (a dtype or attribute it does not cover).
            let refused = match &runs {
                Runs::Fallback(why) => Some(why.clone()),
                _ => match kernel(lowered)?(&mut ctx, &mut f) {
                    Ok(()) => None,
                    // The fusion pass asked the backend first
                    // (`takes_epilogue`): refusing now is a bug, and the
                    // reference kernels do not take fused nodes.
                    Err(e) if split.is_some() => {
                        return Err(within(Error::new(
                            ErrorKind::Internal,
                            format!("the accepted epilogue of {} failed: {e}", lowered.op),
                        )));
                    }
                    Err(e) if e.kind == ErrorKind::Unsupported && eval.is_some() => {
                        Some(format!("the {} kernel refused it: {}", node.op, e.reason))
                    }
                    Err(e) => return Err(within(e)),
                },
            };
            if let Some(why) = refused {
                let eval = eval.ok_or_else(|| {
                    within(Error::new(
                        ErrorKind::Internal,
                        "the first pass found no node for the reference kernels",
                    ))
                })?;
                f = new_function(&mut ctx, " (reference)");
                crate::reference::lower(&mut ctx, &mut f, eval).map_err(within)?;
                fallback.push(Fallback::new(node, &why));
            }
        }
        let scratch = std::mem::take(&mut ctx.scratch);
        calls.push(f.finish(Vec::new(), &mut ctx.module.funcs));
        for (at, bytes) in scratch {
            planner.release(at, bytes);
        }
        // Free what this node read last (or computed and nobody reads).
        let done = node
            .inputs
            .iter()
            .flatten()
            .chain(node.outputs.iter().flatten())
            .map(|&v| root_of(v))
            .collect::<HashSet<_>>();
        for v in done {
            let unread = last_read.get(&v).is_none_or(|&r| r <= k);
            if unread
                && !pinned.contains(&v)
                && let Some(bytes) = bytes_of.remove(&v)
            {
                planner.release(addr[&v] as u64, bytes);
            }
        }
    }

    // Outputs that are constants or inputs need a place too.
    let mut slots = |vs: &[ValueId], addr: &mut HashMap<ValueId, u32>| -> Result<Vec<Slot>> {
        vs.iter()
            .map(|&v| {
                let (dtype, shape) = largest(v)?;
                if let std::collections::hash_map::Entry::Vacant(e) = addr.entry(v) {
                    e.insert(weights.place(g.constants[&v].to_le_bytes()));
                }
                Ok(Slot {
                    offset: addr[&v] as u64,
                    dtype,
                    elements: shape.iter().product::<usize>() as u64,
                })
            })
            .collect()
    };
    let inputs = slots(
        &g.inputs
            .iter()
            .copied()
            .filter(|v| !g.constants.contains_key(v))
            .collect::<Vec<_>>(),
        &mut addr,
    )?;
    let outputs = slots(&g.outputs, &mut addr)?;

    let activation_bytes = planner.peak() - layout.arena_base;
    let memory_bytes = weights.base + weights.top;
    if memory_bytes > MAX_MEMORY {
        return Err(Error::unsupported(format!(
            "the model needs {memory_bytes} bytes of linear memory, over wasm32's 4 GiB"
        )));
    }
    let pages = memory_bytes.div_ceil(65_536).max(1);
    let memory = module.memories.get_mut(mem);
    memory.initial = pages;
    // The reference kernels' allocator grows memory above the plan.
    memory.maximum = eval.is_none().then_some(pages);
    for (at, bytes) in weights.data {
        module.data.add(
            DataKind::Active {
                memory: mem,
                offset: ConstExpr::Value(walrus::ir::Value::I32(at as i32)),
            },
            bytes,
        );
    }
    let mut run = FunctionBuilder::new(&mut module.types, &[], &[]);
    run.name("run".into());
    let mut body = run.func_body();
    for c in calls {
        body.call(c);
    }
    let run = run.finish(Vec::new(), &mut module.funcs);
    module.exports.add("run", run);
    let plan = Compiled {
        isa,
        wasm: Vec::new(),
        inputs,
        outputs,
        weights: weights.placed,
        memory_bytes,
        activation_bytes,
        fallback,
        sizes: table,
    };
    Ok((module, plan))
}
