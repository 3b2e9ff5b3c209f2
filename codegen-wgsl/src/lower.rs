//! The lowering driver: graph + profile → kernels, buffers and dispatches.

use std::collections::{HashMap, HashSet};

use wpc_bundle::device_data::{Word, to_bytes};
use wpc_bundle::manifest::{Dispatch, Requirements, SizeExpr, WebGpuVariant};
use wpc_ir::sym::Expr;
use wpc_ir::{Attrs, DType, Error, Graph, Model, Node, Result, Tensor, ValueId};
use wpc_targets::{KernelTuning, Profile};

use crate::kernel::Kernel;
use crate::plan::{Planner, Slot};

/// Compiler switches that change what is accepted.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Compute float64 tensors as float32 instead of rejecting them.
    pub demote_f64: bool,
}

/// What the backend produces: the variant (without weights placed in
/// shards), the WGSL files, and the initial contents of weight buffers.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub variant: WebGpuVariant,
    /// (file name, WGSL), in `variant.shaders` order.
    pub shaders: Vec<(String, String)>,
    /// (buffer index, bytes) for every buffer filled at load time.
    pub weights: Vec<(usize, Vec<u8>)>,
}

/// A tensor as the kernels see it: its dtype, shape and device word. The
/// shape is `dims`, sizes that may be dynamic; `shape` holds them at
/// their largest (what buffers are made for), and is the shape itself
/// where every size is static.
#[derive(Clone, Debug, PartialEq)]
pub struct Tt {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub dims: Vec<Expr>,
    pub word: Word,
}

impl Tt {
    /// Elements at the largest sizes.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Elements, as a size that may be dynamic.
    pub fn numel_of(&self) -> Expr {
        Expr::product(&self.dims)
    }

    /// Whether every size is known at compile time.
    pub fn is_static(&self) -> bool {
        self.dims.iter().all(|d| d.as_const().is_some())
    }
}

/// A kernel argument: a node input, a node output or a scratch buffer of
/// the lowering's own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg {
    In(usize),
    Out(usize),
    Temp(usize),
    /// A constant the lowering made (e.g. one block of a split weight).
    Const(usize),
}

/// One dispatch of a kernel with its arguments, one per binding.
#[derive(Clone, Debug)]
pub struct Launch {
    pub kernel: Kernel,
    pub args: Vec<Arg>,
}

/// What an op lowers to.
#[derive(Clone, Debug)]
pub enum Lowered {
    /// Dispatches in order; `temps` are scratch sizes in 32-bit words.
    Launches {
        temps: Vec<usize>,
        launches: Vec<Launch>,
    },
    /// Dispatches that also read constants the lowering derived from its
    /// inputs (bound as [`Arg::Const`]), e.g. a weight split into blocks
    /// that each fit one storage binding.
    WithConsts {
        consts: Vec<Tensor>,
        temps: Vec<usize>,
        launches: Vec<Launch>,
    },
    /// Output 0 is input 0's buffer reinterpreted (Reshape and friends).
    Alias,
}

impl Lowered {
    pub fn one(kernel: Kernel, args: Vec<Arg>) -> Lowered {
        Lowered::Launches {
            temps: Vec::new(),
            launches: vec![Launch { kernel, args }],
        }
    }
}

/// What an op's lowering sees of its node.
pub struct Ctx<'a> {
    pub node: &'a Node,
    pub opset: u32,
    pub profile: &'a Profile,
    pub inputs: Vec<Option<Tt>>,
    pub outputs: Vec<Option<Tt>>,
    consts: Vec<Option<&'a Tensor>>,
    /// Inputs computed from dynamic sizes ([`wpc_ir::Graph::sizes`]).
    sizes: Vec<Option<&'a wpc_ir::ops::symbolic::SymValue>>,
    /// Float64 tensors are computed as float32 ([`Options::demote_f64`]).
    pub demote_f64: bool,
    /// The model's dim ranges (what dynamic sizes may be).
    pub ranges: &'a std::collections::BTreeMap<String, (usize, usize)>,
    /// The node is the anchor of a `FusedEpilogue`: its result passes
    /// through the WGSL function [`crate::ops::fused::EPILOGUE`] before
    /// it is stored (see [`Ctx::store`]).
    pub epilogue: bool,
}

impl<'a> Ctx<'a> {
    /// The context `anchor` (a node over this node's values) is lowered
    /// in: its input slot `i` is this node's input `inputs[i]`, its
    /// output this node's, and its stores go through the epilogue.
    pub fn for_anchor<'b>(&'b self, anchor: &'b Node, inputs: &[Option<usize>]) -> Ctx<'b> {
        let pick = |j: &Option<usize>| j.and_then(|j| self.inputs.get(j).cloned().flatten());
        Ctx {
            node: anchor,
            opset: self.opset,
            profile: self.profile,
            inputs: inputs.iter().map(pick).collect(),
            outputs: self.outputs.clone(),
            consts: inputs
                .iter()
                .map(|j| j.and_then(|j| self.consts.get(j).copied().flatten()))
                .collect(),
            sizes: inputs
                .iter()
                .map(|j| j.and_then(|j| self.sizes.get(j).copied().flatten()))
                .collect(),
            demote_f64: self.demote_f64,
            ranges: self.ranges,
            epilogue: true,
        }
    }

    /// The statement storing the f32 `value` as element `index` of
    /// `out0`: as it is, or through the epilogue when there is one (which
    /// also reads the other tensors at that element).
    pub fn store(&self, index: &str, value: &str) -> String {
        if self.epilogue {
            format!(
                "let o = {index};\nout0[o] = {}({value}, o);",
                crate::ops::fused::EPILOGUE
            )
        } else {
            format!("out0[{index}] = {value};")
        }
    }

    /// Refuses a node touching a tensor of dynamic size unless `op`'s
    /// lowering reads its sizes at run time
    /// ([`crate::ops::handles_dynamic_sizes`]).
    pub fn check_dynamic(&self, domain: &str, op: &str) -> Result<()> {
        let dynamic = self
            .inputs
            .iter()
            .chain(&self.outputs)
            .flatten()
            .find(|t| !t.is_static());
        match dynamic {
            Some(t) if !crate::ops::handles_dynamic_sizes(domain, op) => {
                Err(dynamic_size_refused(op, t))
            }
            _ => Ok(()),
        }
    }

    pub fn attrs(&self) -> &'a Attrs {
        &self.node.attrs
    }

    pub fn tuning(&self) -> &'a KernelTuning {
        &self.profile.webgpu.kernels
    }

    pub fn max_groups(&self) -> u32 {
        self.profile
            .webgpu
            .limits
            .max_compute_workgroups_per_dimension
    }

    pub fn has_input(&self, i: usize) -> bool {
        self.inputs.get(i).is_some_and(Option::is_some)
    }

    pub fn input(&self, i: usize) -> Result<&Tt> {
        self.inputs
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::invalid(format!("missing input {i}")))
    }

    pub fn output(&self, i: usize) -> Result<&Tt> {
        self.outputs
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::invalid(format!("missing output {i}")))
    }

    pub fn wants_output(&self, i: usize) -> bool {
        self.outputs.get(i).is_some_and(Option::is_some)
    }

    /// Input `i`'s value, which this lowering needs at compile time.
    pub fn constant(&self, i: usize) -> Result<&'a Tensor> {
        self.opt_constant(i).ok_or_else(|| {
            Error::unsupported(format!(
                "input {i} must be a constant for WebGPU (it sizes or steers the kernel)"
            ))
        })
    }

    pub fn opt_constant(&self, i: usize) -> Option<&'a Tensor> {
        self.consts.get(i).copied().flatten()
    }

    /// The elements of integer input `i` as sizes: a constant's, or those
    /// computed from dynamic sizes ([`wpc_ir::Graph::sizes`]).
    pub fn size_ints(&self, i: usize) -> Option<Vec<Expr>> {
        if let Some(v) = self.sizes.get(i).copied().flatten() {
            return Some(v.elems.clone());
        }
        let t = self.opt_constant(i)?;
        Some(t.to_i64s().into_iter().map(Expr::constant).collect())
    }

    /// Integer list from constant input `i` if present, else (older
    /// opsets) the attribute it replaced.
    pub fn ints(&self, i: usize) -> Result<Option<Vec<i64>>> {
        let given = match self.has_input(i) {
            true => Some(self.constant(i)?.to_i64s()),
            false => None,
        };
        wpc_ir::ops::params::ints_input(&self.node.op, self.attrs(), i, given)
    }
}

/// The signature of every op lowering.
pub type LowerFn = fn(&Ctx) -> Result<Lowered>;

/// The kernels' view of value `v` of `model`: its sizes as expressions,
/// and at their largest under the model's dim ranges.
pub fn tensor_type(model: &Model, v: ValueId, demote_f64: bool) -> Result<Tt> {
    tensor_type_in(&model.graph, &model.dim_ranges, v, demote_f64)
}

/// [`tensor_type`] of a value of graph `g` (a fused node's body) under
/// the model's dim ranges.
pub fn tensor_type_in(
    g: &Graph,
    ranges: &std::collections::BTreeMap<String, (usize, usize)>,
    v: ValueId,
    demote_f64: bool,
) -> Result<Tt> {
    let (dtype, dims, shape) = wpc_bundle::device_data::bounded_type(g, ranges, v)?;
    let word = wpc_bundle::device_data::word_of(dtype, &g.value(v).name, demote_f64)?;
    Ok(Tt {
        dtype,
        shape,
        dims,
        word,
    })
}

fn static_word(t: &Tensor, opts: &Options) -> Result<Word> {
    Word::for_dtype(t.dtype(), opts.demote_f64).ok_or_else(|| {
        Error::unsupported(format!(
            "a {} constant cannot live on the device",
            t.dtype()
        ))
    })
}

/// Lowers `model` (already optimized, with static shapes) for `profile`.
pub fn compile(model: &Model, profile: &Profile, opts: &Options) -> Result<Compiled> {
    let g = &model.graph;
    let order = g.topo_order()?;
    // Report the first node whose outputs have no static type, so the
    // error names where shapes stop being known.
    for &n in &order {
        let node = g.node(n);
        for v in node.outputs.iter().flatten() {
            tensor_type(model, *v, opts.demote_f64).map_err(|e| e.within(node.context()))?;
        }
    }
    let mut planner = Planner::new(profile);
    let mut slot_of: HashMap<ValueId, Slot> = HashMap::new();
    // Inputs, outputs and constants have buffers of their own for the whole run.
    let mut weights = Vec::new();
    for &v in g.inputs.iter().chain(&g.outputs) {
        if !slot_of.contains_key(&v) && !g.constants.contains_key(&v) {
            let t = tensor_type(model, v, opts.demote_f64)?;
            slot_of.insert(v, planner.pinned(t.numel(), &g.value(v).name)?);
        }
    }
    let constant_slot = |v: ValueId,
                         planner: &mut Planner,
                         slot_of: &mut HashMap<ValueId, Slot>,
                         weights: &mut Vec<(Slot, Vec<u8>)>|
     -> Result<Slot> {
        if let Some(&s) = slot_of.get(&v) {
            return Ok(s);
        }
        let t = &g.constants[&v];
        let name = &g.value(v).name;
        let word = Word::for_dtype(t.dtype(), opts.demote_f64).ok_or_else(|| {
            Error::unsupported(format!(
                "constant '{name}' is {}, which WGSL cannot hold",
                t.dtype()
            ))
        })?;
        let bytes = to_bytes(t, word, &format!("constant '{name}'"))
            .map_err(|e| Error::unsupported(e.to_string()))?;
        let slot = planner.pinned(t.len(), name)?;
        weights.push((slot, bytes));
        slot_of.insert(v, slot);
        Ok(slot)
    };
    for &v in &g.outputs {
        if g.constants.contains_key(&v) {
            constant_slot(v, &mut planner, &mut slot_of, &mut weights)?;
        }
    }

    // Remaining reads of each value, so scratch buffers free after their last use.
    let mut reads_left: HashMap<ValueId, usize> = HashMap::new();
    for &n in &order {
        for v in g.node(n).inputs.iter().flatten() {
            *reads_left.entry(*v).or_default() += 1;
        }
    }
    // Values sharing a buffer with another (aliases) count as reads of it.
    let mut root: HashMap<ValueId, ValueId> = HashMap::new();
    // Values whose buffer an elementwise output took over (in place).
    let mut donated: HashSet<ValueId> = HashSet::new();
    let mut program = Program {
        ranges: model.dim_ranges.clone(),
        ..Program::default()
    };

    for &n in &order {
        let node = g.node(n);
        let within = |e: Error| e.within(node.context());
        let lower = crate::ops::lowering(&node.domain, &node.op).ok_or_else(|| {
            within(Error::unsupported(format!(
                "op {} has no WebGPU kernel yet",
                node.op
            )))
        })?;
        let types = |vs: &[Option<ValueId>]| -> Result<Vec<Option<Tt>>> {
            vs.iter()
                .map(|v| {
                    v.map(|v| tensor_type(model, v, opts.demote_f64))
                        .transpose()
                })
                .collect()
        };
        let ctx = Ctx {
            node,
            opset: model.opset(),
            profile,
            inputs: types(&node.inputs).map_err(within)?,
            outputs: types(&node.outputs).map_err(within)?,
            consts: node
                .inputs
                .iter()
                .map(|v| v.and_then(|v| g.constants.get(&v)))
                .collect(),
            sizes: node
                .inputs
                .iter()
                .map(|v| v.and_then(|v| g.sizes.get(&v)))
                .collect(),
            demote_f64: opts.demote_f64,
            ranges: &model.dim_ranges,
            epilogue: false,
        };
        ctx.check_dynamic(&node.domain, &node.op).map_err(within)?;
        // Nothing to compute for empty outputs (their buffers still exist).
        let empty = ctx.outputs.iter().flatten().all(|t| t.numel() == 0);
        let lowered = if empty {
            Lowered::Launches {
                temps: Vec::new(),
                launches: Vec::new(),
            }
        } else {
            lower(&ctx).map_err(within)?
        };
        // Constant inputs get device buffers only if a kernel reads them
        // (a Slice's bounds or a Reshape's shape never reach the device).
        let read: Vec<usize> = match &lowered {
            Lowered::Alias => vec![0],
            Lowered::Launches { launches, .. } | Lowered::WithConsts { launches, .. } => launches
                .iter()
                .flat_map(|l| l.args.iter())
                .filter_map(|a| match a {
                    Arg::In(i) => Some(*i),
                    _ => None,
                })
                .collect(),
        };
        let mut in_slots = Vec::new();
        for (i, v) in node.inputs.iter().enumerate() {
            in_slots.push(match v {
                Some(v) if g.constants.contains_key(v) => {
                    if read.contains(&i) {
                        Some(
                            constant_slot(*v, &mut planner, &mut slot_of, &mut weights)
                                .map_err(within)?,
                        )
                    } else {
                        None
                    }
                }
                // Computed from dynamic sizes: read as parameters, never a buffer.
                Some(v) if g.sizes.contains_key(v) => None,
                Some(v) => {
                    Some(*slot_of.get(v).ok_or_else(|| {
                        within(Error::invalid("input read before it is computed"))
                    })?)
                }
                None => None,
            });
        }
        match lowered {
            Lowered::Alias => {
                let (Some(src), Some(dst)) =
                    (node.inputs[0], node.outputs.first().copied().flatten())
                else {
                    return Err(within(Error::invalid("alias needs an input and an output")));
                };
                let r = *root.get(&src).unwrap_or(&src);
                if let Some(&pinned) = slot_of.get(&dst) {
                    // A graph output that is a view of another value: copy it.
                    let words = tensor_type(model, dst, opts.demote_f64)
                        .map_err(within)?
                        .numel_of();
                    let k = crate::ops::copy_kernel(&words, &ctx);
                    program.emit(
                        &node.name,
                        &k,
                        vec![in_slots[0].expect("checked"), pinned],
                        &planner,
                    )?;
                } else {
                    slot_of.insert(dst, in_slots[0].expect("checked"));
                    root.insert(dst, r);
                    *reads_left.entry(r).or_default() += reads_left.get(&dst).copied().unwrap_or(0);
                }
            }
            Lowered::Launches { .. } | Lowered::WithConsts { .. } => {
                let (temps, mut launches, consts) = match lowered {
                    Lowered::Launches { temps, launches } => (temps, launches, Vec::new()),
                    Lowered::WithConsts {
                        consts,
                        temps,
                        launches,
                    } => (temps, launches, consts),
                    Lowered::Alias => unreachable!("matched above"),
                };
                let mut const_slots = Vec::new();
                for (i, t) in consts.iter().enumerate() {
                    let what = format!("{} constant {i}", node.name);
                    let bytes = to_bytes(t, static_word(t, opts)?, &what)
                        .map_err(|e| within(Error::unsupported(e.to_string())))?;
                    let slot = planner.pinned(t.len(), &what).map_err(within)?;
                    weights.push((slot, bytes));
                    const_slots.push(slot);
                }
                // An elementwise kernel writes over an input that dies here.
                let root_of = |v: ValueId| *root.get(&v).unwrap_or(&v);
                let dies = |v: ValueId| {
                    let r = root_of(v);
                    let here = node.inputs.iter().flatten();
                    let reads = here.filter(|&&x| root_of(x) == r).count();
                    reads_left.get(&r) == Some(&reads) && !g.constants.contains_key(&r)
                };
                // (A model output keeps the buffer it was given.)
                let planned = node.outputs.first().copied().flatten();
                if let Some(y) = planned.filter(|y| !slot_of.contains_key(y))
                    && let Some((v, slot)) =
                        in_place(node, &ctx, &mut launches, &in_slots, &planner, &dies)
                {
                    donated.insert(root_of(v));
                    slot_of.insert(y, slot);
                }
                let mut out_slots = Vec::new();
                for (i, v) in node.outputs.iter().enumerate() {
                    out_slots.push(match v {
                        Some(v) => Some(match slot_of.get(v) {
                            Some(&s) => s,
                            None => {
                                let words = ctx.outputs[i].as_ref().expect("typed").numel();
                                let s = planner.scratch(words, &g.value(*v).name)?;
                                slot_of.insert(*v, s);
                                s
                            }
                        }),
                        None => None,
                    });
                }
                let temp_slots = temps
                    .iter()
                    .map(|&w| planner.scratch(w, &format!("{} scratch", node.name)))
                    .collect::<Result<Vec<_>>>()?;
                for launch in &launches {
                    let slots = launch
                        .args
                        .iter()
                        .map(|a| match *a {
                            Arg::In(i) => in_slots.get(i).copied().flatten(),
                            Arg::Out(i) => out_slots.get(i).copied().flatten(),
                            Arg::Temp(i) => temp_slots.get(i).copied(),
                            Arg::Const(i) => const_slots.get(i).copied(),
                        })
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            within(Error::new(
                                wpc_ir::ErrorKind::Internal,
                                "kernel argument out of range",
                            ))
                        })?;
                    program
                        .emit(&node.name, &launch.kernel, slots, &planner)
                        .map_err(within)?;
                }
                for s in temp_slots {
                    planner.release(s);
                }
                // Outputs nobody reads die at once (unless they are model outputs).
                for v in node.outputs.iter().flatten() {
                    if reads_left.get(v).copied().unwrap_or(0) == 0 {
                        planner.release(slot_of[v]);
                    }
                }
            }
        }
        for v in node.inputs.iter().flatten() {
            let r = *root.get(v).unwrap_or(v);
            let keys = if r == *v { vec![r] } else { vec![*v, r] };
            for key in keys {
                if let Some(left) = reads_left.get_mut(&key) {
                    *left = left.saturating_sub(1);
                }
            }
            if reads_left.get(&r).copied().unwrap_or(0) == 0
                && !g.constants.contains_key(&r)
                && !donated.contains(&r)
                && let Some(&slot) = slot_of.get(&r)
            {
                planner.release(slot);
            }
        }
    }

    let io = |vs: &[ValueId]| -> Result<Vec<wpc_bundle::manifest::DeviceTensor>> {
        vs.iter()
            .map(|v| {
                let word = match g.constants.get(v) {
                    Some(t) => Word::for_dtype(t.dtype(), opts.demote_f64),
                    None => Some(tensor_type(model, *v, opts.demote_f64)?.word),
                }
                .ok_or_else(|| Error::unsupported("output dtype WGSL cannot hold"))?;
                let elements = match g.constants.get(v) {
                    Some(t) => t.len(),
                    None => tensor_type(model, *v, opts.demote_f64)?.numel(),
                } as u64;
                Ok(wpc_bundle::manifest::DeviceTensor {
                    buffer: planner.buffer_of(slot_of[v]),
                    word: word.wgsl().to_string(),
                    elements,
                })
            })
            .collect()
    };
    let inputs = io(&g.inputs)?;
    let outputs = io(&g.outputs)?;
    let buffers = planner.buffers();
    program.usage.max_buffer = buffers.iter().map(|b| b.bytes).max().unwrap_or(0);
    let peak_bytes = buffers.iter().map(|b| b.bytes).sum();
    let weights = weights
        .into_iter()
        .map(|(slot, bytes)| (planner.buffer_of(slot), bytes))
        .collect();
    Ok(Compiled {
        variant: WebGpuVariant {
            requires: program.usage.requirements(profile),
            shaders: program.shaders.iter().map(|(f, _)| f.clone()).collect(),
            buffers,
            inputs,
            outputs,
            dispatches: program.dispatches,
            peak_bytes,
        },
        shaders: program.shaders,
        weights,
    })
}

/// Why a node with a dynamic size cannot be lowered: its op's kernel is
/// compiled for static shapes only.
pub fn dynamic_size_refused(op: &str, t: &Tt) -> Error {
    let dims: Vec<String> = t.dims.iter().map(|d| d.to_string()).collect();
    Error::unsupported(format!(
        "{op} on a tensor of dynamic size [{}] has no WebGPU kernel yet; compile for one size with --dim SYMBOL=N",
        dims.join(", ")
    ))
}

/// The largest resources the kernels use, turned into the variant's requirements.
#[derive(Default)]
struct Usage {
    workgroup_x: u32,
    workgroup_y: u32,
    invocations: u32,
    groups_per_dim: u32,
    bindings: u32,
    workgroup_bytes: u32,
    max_buffer: u64,
}

impl Usage {
    fn add(&mut self, k: &Kernel) {
        let [x, y, z] = k.workgroup_size;
        self.workgroup_x = self.workgroup_x.max(x);
        self.workgroup_y = self.workgroup_y.max(y);
        self.invocations = self.invocations.max(x * y * z);
        self.groups_per_dim = self
            .groups_per_dim
            .max(*k.workgroups.iter().max().unwrap_or(&1));
        self.bindings = self.bindings.max(k.bindings.len() as u32);
        self.workgroup_bytes = self.workgroup_bytes.max(k.workgroup_bytes);
    }

    fn requirements(&self, profile: &Profile) -> Requirements {
        let mut limits = std::collections::BTreeMap::new();
        for (name, v) in [
            ("maxComputeWorkgroupSizeX", u64::from(self.workgroup_x)),
            ("maxComputeWorkgroupSizeY", u64::from(self.workgroup_y)),
            (
                "maxComputeInvocationsPerWorkgroup",
                u64::from(self.invocations),
            ),
            (
                "maxComputeWorkgroupsPerDimension",
                u64::from(self.groups_per_dim),
            ),
            ("maxStorageBuffersPerShaderStage", u64::from(self.bindings)),
            (
                "maxComputeWorkgroupStorageSize",
                u64::from(self.workgroup_bytes),
            ),
            ("maxStorageBufferBindingSize", self.max_buffer),
            ("maxBufferSize", self.max_buffer),
        ] {
            limits.insert(name.to_string(), v);
        }
        Requirements {
            features: profile
                .webgpu
                .features
                .iter()
                .filter(|_| false) // no kernel uses optional features yet
                .map(|f| f.webgpu_name().to_string())
                .collect(),
            limits,
        }
    }
}

/// The input whose buffer an elementwise node (plain or fused) can write
/// its output into, and that buffer: a scratch buffer of an input that
/// dies at this node (`dies`, given its root) and has the output's shape
/// and word, read by the node's one kernel as `in[i]`. The kernel is
/// rewritten to read that input from its output binding, and the launch
/// loses the input's argument.
fn in_place(
    node: &Node,
    ctx: &Ctx,
    launches: &mut [Launch],
    in_slots: &[Option<Slot>],
    planner: &Planner,
    dies: &dyn Fn(ValueId) -> bool,
) -> Option<(ValueId, Slot)> {
    let class = wpc_ir::ops::class_of(&node.domain, &node.op);
    let fused = wpc_ir::ops::fused::is_fused_elementwise(node);
    let [launch] = launches else {
        return None;
    };
    if !(fused || class == wpc_ir::ops::OpClass::Pointwise) || node.outputs.len() != 1 {
        return None;
    }
    let out = ctx.outputs[0].as_ref()?;
    for b in 0..launch.args.len() {
        let Arg::In(j) = launch.args[b] else { continue };
        let (Some(v), Some(t), Some(slot)) = (node.inputs[j], ctx.inputs[j].as_ref(), in_slots[j])
        else {
            continue;
        };
        if t.dims != out.dims || t.word != out.word || !planner.is_scratch(slot) || !dies(v) {
            continue;
        }
        let name = launch.kernel.bindings[b].name.clone();
        if let Some(at) = launch.kernel.read_from_output(&name, "out0") {
            launch.args.remove(at);
            return Some((v, slot));
        }
    }
    None
}

/// What compilation has emitted so far: dispatches in order, the distinct
/// shaders they use, and the largest resources any kernel needs.
#[derive(Default)]
struct Program {
    dispatches: Vec<Dispatch>,
    /// (file name, WGSL), in first-use order.
    shaders: Vec<(String, String)>,
    /// WGSL text → index in `shaders`, so identical kernels share a file.
    ids: HashMap<String, usize>,
    usage: Usage,
    /// The model's dim ranges: dynamic workgroup counts and parameters
    /// are simplified by them, and evaluated at their largest.
    ranges: std::collections::BTreeMap<String, (usize, usize)>,
}

impl Program {
    /// Checks a kernel against the profile, renders and validates it (once per
    /// distinct text) and appends its dispatch.
    fn emit(&mut self, node: &str, k: &Kernel, slots: Vec<Slot>, planner: &Planner) -> Result<()> {
        let range = |s: &str| wpc_ir::graph::dim_range(&self.ranges, s);
        let groups = k
            .groups
            .as_ref()
            .map(|g| g.clone().map(|e| e.simplify(&range)));
        let mut k = k.clone();
        if let Some(g) = &groups {
            for (w, e) in k.workgroups.iter_mut().zip(g) {
                *w = wpc_bundle::device_data::largest(e, &self.ranges)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        Error::unsupported(format!("the workgroup count {e} has no bound"))
                    })?;
            }
        }
        let params: Vec<Expr> = k.params.0.iter().map(|e| e.simplify(&range)).collect();
        let limits = &planner.profile().webgpu.limits;
        if k.bindings.len() as u32 > limits.max_storage_buffers_per_shader_stage {
            return Err(Error::unsupported(format!(
                "the kernel needs {} storage buffers, over the target's maxStorageBuffersPerShaderStage {}",
                k.bindings.len(),
                limits.max_storage_buffers_per_shader_stage
            )));
        }
        if k.workgroups
            .iter()
            .any(|&g| g > limits.max_compute_workgroups_per_dimension)
        {
            return Err(Error::unsupported(format!(
                "the kernel needs {:?} workgroups, over the target's maxComputeWorkgroupsPerDimension",
                k.workgroups
            )));
        }
        if k.workgroups.contains(&0) {
            return Ok(());
        }
        self.usage.add(&k);
        let text = k.render();
        let next = self.shaders.len();
        let id = match self.ids.get(&text) {
            Some(&id) => id,
            None => {
                crate::validate::validate(&k.label, &text)?;
                let op: String = k
                    .label
                    .split_whitespace()
                    .next()
                    .unwrap_or("kernel")
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .collect();
                self.shaders.push((
                    format!("k{next:03}_{}.wgsl", op.to_lowercase()),
                    text.clone(),
                ));
                self.ids.insert(text, next);
                next
            }
        };
        self.dispatches.push(Dispatch {
            shader: id,
            bindings: slots.iter().map(|&s| planner.buffer_of(s)).collect(),
            workgroups: k.workgroups,
            groups: groups.map(|g| g.map(|e| SizeExpr::of(&e))),
            params: params.iter().map(SizeExpr::of).collect(),
            node: node.to_string(),
            counts: (k.counts.iter())
                .map(|(dim, binding)| wpc_bundle::manifest::Count {
                    dim: dim.clone(),
                    buffer: planner.buffer_of(slots[*binding]),
                })
                .collect(),
        });
        Ok(())
    }
}
