//! Weight-only quantization: float32 weights of MatMul, Gemm, Conv and
//! embedding lookups (Gather over a constant table) become 2- to 8-bit
//! codes with a scale and zero point per group of values along the
//! reduction axis, in the ops users' quantized models already have:
//! `com.microsoft` `MatMulNBits` and `GatherBlockQuantized` (the storage
//! format is `wpc_ir::packed`; how codes are chosen, `wpc_ir::quantize`).
//! Activations stay float32; every backend dequantizes products' and
//! lookups' weights in registers. A Conv's weight is a packed table read
//! whole (every row, then reshaped) in front of the Conv: the bundle
//! holds the codes, and the float weight is a transient buffer of the
//! run.
//!
//! Which layer gets what is a [`Precision`]: a default and pattern rules
//! (a RON map, or `--weights`/`--group`). The report lists, per layer,
//! what it got, how it was chosen, its bytes and its relative weight error
//! `‖W − Ŵ‖ / ‖W‖` (with rounding's alongside, to show what the search
//! bought).

pub mod fit;
pub mod precision;
pub mod qdq;
pub mod rotate;
pub mod tables;

pub use precision::{Precision, Setting};
pub use rotate::Rotation;

use std::borrow::Cow;
use std::collections::HashMap;
use wpc_ir::ops::params::{self, Gemm};
use wpc_ir::ops::quant::MICROSOFT;
use wpc_ir::packed::{self, Layout};

use wpc_ir::quantize::{Hessian, Method, Quantized, Spec, gptq, quantize};
use wpc_ir::{
    Attr, Attrs, DType, Graph, Model, Node, NodeId, Result, Shape, Tensor, ValueId, ValueType,
};

/// What happened to one quantizable layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    pub node: String,
    pub op: String,
    /// `[rows, k]`: output features (or table rows) by reduction length.
    pub shape: [usize; 2],
    pub setting: Setting,
    /// The rule of the map that chose the setting (`None`: its default).
    pub rule: Option<usize>,
    /// Bytes as float32, and as stored (codes, scales, zero points).
    pub float_bytes: usize,
    pub bytes: usize,
    /// The relative error of what is stored, and of rounding to nearest
    /// (`None` when the layer was left in float or rounded anyway): of
    /// the layer's output on the sample inputs where there are samples
    /// (`‖(W − Ŵ)X‖ / ‖WX‖`, [`LayerReport::on_samples`]), else of the
    /// weight (`‖W − Ŵ‖ / ‖W‖`).
    pub error: Option<f64>,
    pub rounding_error: Option<f64>,
    /// Whether the errors are measured on sample inputs.
    pub on_samples: bool,
}

/// What [`quantize_weights`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantReport {
    pub layers: Vec<LayerReport>,
    /// What fitting to a budget chose, when asked ([`Precision::fit`]).
    pub fit: Option<fit::FitReport>,
    /// How the quantized model's outputs compare with the float model's
    /// on the calibration sample run ([`Calibration::keep_sample_run`]),
    /// one entry per graph output; empty without one.
    pub accuracy: Vec<OutputAccuracy>,
}

/// One graph output of the quantized model against the float model's,
/// on the same sample inputs, each taken as one flat vector.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputAccuracy {
    /// The graph output's name.
    pub output: String,
    /// `⟨y, ŷ⟩ / (‖y‖ ‖ŷ‖)`.
    pub cosine: f64,
    /// `‖y − ŷ‖ / ‖y‖`.
    pub relative_error: f64,
}

impl QuantReport {
    /// Bytes of the quantizable weights as float32 and as stored.
    pub fn bytes(&self) -> (usize, usize) {
        self.layers
            .iter()
            .fold((0, 0), |(f, s), l| (f + l.float_bytes, s + l.bytes))
    }
}

/// A layer the pass can quantize.
struct Layer {
    kind: Kind,
    weight: ValueId,
    /// The weight as `rows × k`, row-major (`k` the reduction axis).
    rows: usize,
    k: usize,
    w: Vec<f32>,
    /// Whether `w` is the stored tensor transposed (a MatMul's `[k, n]`).
    transposed: bool,
    /// A linear layer's input, by name (what calibration measured).
    input: Option<String>,
    /// How a linear layer's reduction axis can be rotated (`None`: it
    /// cannot; see [`rotate`]).
    rotation: Option<Rotation>,
}

enum Kind {
    /// MatMul or Gemm: `x · Wᵀ · alpha + bias`; `absorbed` is the Add
    /// whose constant operand became the bias.
    Linear {
        x: ValueId,
        y: ValueId,
        alpha: f32,
        bias: Option<Vec<f32>>,
        absorbed: Option<NodeId>,
    },
    /// Gather along axis 0 of a `[rows, k]` table.
    Table { indices: ValueId, y: ValueId },
    /// A Conv's weight, `[rows, k]` as `[M, C/group, kernel...]` (`shape`)
    /// flattened: `k` is what each output channel reduces over.
    Conv { shape: Vec<usize> },
}

/// A layer found, with what the precision map says of it.
struct Planned {
    id: NodeId,
    node: String,
    op: String,
    layer: Layer,
    setting: Setting,
    rule: Option<usize>,
    /// Whether a rule of the map fixed its bits (`--fit` leaves it).
    pinned: bool,
}

/// A layer's weight quantized at one setting, not yet in the graph.
struct Packed {
    spec: Spec,
    layout: Layout,
    q: Quantized,
    /// Bytes as stored: codes, scales and zero points.
    bytes: usize,
    /// As [`LayerReport::error`] and [`LayerReport::rounding_error`].
    error: f64,
    rounding_error: Option<f64>,
    on_samples: bool,
    /// The rotation the codes were made in (the layer's input is rotated
    /// the same way at run time).
    rotation: Option<Rotation>,
}

impl Packed {
    /// What the codes read back as: `layer`'s weight as quantized, in
    /// the layer's own basis (`rows × k`).
    fn dequantized(&self, layer: &Layer) -> Vec<f32> {
        let w = match self.rotation {
            Some(r) => r.rotated(&layer.w),
            None => layer.w.clone(),
        };
        let mut w: Vec<f64> = w
            .iter()
            .zip(self.q.difference(&w, layer.k))
            .map(|(&w, d)| f64::from(w) - d)
            .collect();
        // The rotation is its own inverse.
        if let Some(r) = self.rotation {
            r.rows(&mut w);
        }
        w.into_iter().map(|v| v as f32).collect()
    }
}

/// Quantizes every float32 weight `precision` gives bits to (or, with
/// [`Precision::fit`], the bits [`fit::choose`] picks). With
/// `calibration` (see [`Calibration::add_run`]), linear layers whose
/// input it measured are quantized by GPTQ against that input, and their
/// errors are measured on it.
pub fn quantize_weights(
    model: &mut Model,
    precision: &Precision,
    calibration: &Calibration,
) -> Result<QuantReport> {
    quantize_weights_reporting(model, precision, calibration, &|_, _, _| {})
}

/// How far long quantization work is: `(stage, done, total)`, called as
/// a stage starts (`done` 0) and after each of its steps.
pub type Progress<'a> = &'a dyn Fn(&str, usize, usize);

/// [`quantize_weights`], saying how far it is to `progress` (GPTQ and
/// `--fit` take minutes on a real model).
pub fn quantize_weights_reporting(
    model: &mut Model,
    precision: &Precision,
    calibration: &Calibration,
    progress: Progress,
) -> Result<QuantReport> {
    let planned = plan(&model.graph, precision)?;
    let (chosen, fit) = match precision.fit {
        Some(budget) => {
            let (chosen, report) = fit::choose(model, &planned, budget, calibration, progress)?;
            (chosen, Some(report))
        }
        None => {
            let stage = "quantizing layers";
            progress(stage, 0, planned.len());
            let chosen = planned
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let q = quantize_layer(&p.layer, p.setting, calibration);
                    progress(stage, i + 1, planned.len());
                    q
                })
                .collect();
            (chosen, None)
        }
    };
    let accuracy = accuracy(&model.graph, &planned, &chosen, calibration, progress)?;
    let mut report = QuantReport {
        layers: Vec::with_capacity(planned.len()),
        fit,
        accuracy,
    };
    let mut rotated = rotate::Rotations::default();
    for (p, packed) in planned.into_iter().zip(chosen) {
        report
            .layers
            .push(emit(&mut model.graph, p, packed, &mut rotated)?);
    }
    crate::dce::eliminate_dead_nodes(model);
    Ok(report)
}

/// The sample run's outputs with every chosen layer's weight replaced
/// by what its codes read back as, against the float model's (see
/// [`QuantReport::accuracy`]); empty without a sample run or with
/// nothing quantized. A layer whose weight the sample run's model lacks
/// (prepared for other sizes, folding may differ) stays float there.
fn accuracy(
    g: &Graph,
    planned: &[Planned],
    chosen: &[Option<Packed>],
    calibration: &Calibration,
    progress: Progress,
) -> Result<Vec<OutputAccuracy>> {
    let Some(sample) = calibration.sample_run.as_deref() else {
        return Ok(Vec::new());
    };
    if chosen.iter().all(Option::is_none) {
        return Ok(Vec::new());
    }
    let stage = "measuring the quantized model on the samples";
    progress(stage, 0, 1);
    let mut quantized = sample.model.clone();
    for (p, q) in planned.iter().zip(chosen) {
        if let Some(q) = q {
            substitute_dequantized(&mut quantized, g, p, q);
        }
    }
    let outputs = wpc_ir::interp::run_model(&quantized, &sample.feeds).map_err(|e| {
        e.within("measuring the quantized model's accuracy on the calibration samples")
    })?;
    progress(stage, 1, 1);
    Ok(sample
        .float
        .iter()
        .zip(outputs)
        .map(|((output, y), (_, yq))| {
            let (output, y, yq) = (output.clone(), y.to_f32s(), yq.to_f32s());
            let (mut dot, mut yy, mut qq, mut dd) = (0f64, 0f64, 0f64, 0f64);
            for (&a, &b) in y.iter().zip(&yq) {
                let (a, b) = (f64::from(a), f64::from(b));
                dot += a * b;
                yy += a * a;
                qq += b * b;
                dd += (a - b) * (a - b);
            }
            // Two all-zero outputs are the same output.
            let cosine = match (yy, qq) {
                (0.0, 0.0) => 1.0,
                _ => dot / (yy.sqrt() * qq.sqrt()).max(f64::MIN_POSITIVE),
            };
            OutputAccuracy {
                output,
                cosine,
                relative_error: dd.sqrt() / yy.sqrt().max(f64::MIN_POSITIVE),
            }
        })
        .collect())
}

/// Puts what `q`'s codes read back as in place of layer `p`'s weight in
/// `probe` (a copy of the model `g` belongs to, prepared for other
/// sizes), returning the weight it replaced; `None` (and `probe` left
/// as it was) where the probe has no such weight of that shape.
fn substitute_dequantized(
    probe: &mut Model,
    g: &Graph,
    p: &Planned,
    q: &Packed,
) -> Option<(ValueId, Tensor)> {
    let v = probe.graph.find_value(&g.value(p.layer.weight).name)?;
    let original = probe.graph.constants.get(&v)?;
    if original.shape() != g.constants[&p.layer.weight].shape() {
        return None;
    }
    let shape = original.shape().to_vec();
    let w = q.dequantized(&p.layer);
    let w = if p.layer.transposed {
        transposed(&w, p.layer.rows, p.layer.k)
    } else {
        w
    };
    probe
        .graph
        .constants
        .insert(v, Tensor::from_vec(shape, w))
        .map(|original| (v, original))
}

/// Bytes of `model`'s float32 weights that quantization can shrink (the
/// weights of the layers it takes: MatMul, Gemm, Conv and embedding tables).
pub fn quantizable_bytes(model: &Model) -> Result<u64> {
    let planned = plan(&model.graph, &Precision::uniform(Setting::DEFAULT))?;
    let mut weights: Vec<ValueId> = planned.iter().map(|p| p.layer.weight).collect();
    weights.sort();
    weights.dedup();
    Ok(weights
        .iter()
        .map(|w| model.graph.constants[w].len() as u64 * 4)
        .sum())
}

/// Every quantizable layer of `g` in topological order, with its setting.
fn plan(g: &Graph, precision: &Precision) -> Result<Vec<Planned>> {
    let mut used = vec![false; precision.rules.len()];
    let mut planned = Vec::new();
    for id in g.topo_order()? {
        if !matches!(
            g.node(id).op.as_str(),
            "MatMul" | "Gemm" | "Conv" | "Gather"
        ) {
            continue;
        }
        let Some(layer) = layer_at(g, id)? else {
            continue;
        };
        let node = g.node(id);
        let names = [
            node.name.as_str(),
            g.value(layer.weight).name.as_str(),
            node.op.as_str(),
        ];
        let (setting, rule) = precision.setting_for(&names);
        if let Some(r) = rule {
            used[r] = true;
        }
        planned.push(Planned {
            id,
            node: node.name.clone(),
            op: node.op.clone(),
            pinned: rule.is_some_and(|r| precision.rules[r].sets_bits()),
            layer,
            setting,
            rule,
        });
    }
    precision.check_all_used(&used)?;
    Ok(planned)
}

/// `layer` quantized at `setting` (GPTQ where `calibration` measured its
/// input; rotated first where the setting asks and the layer can be), or
/// `None` where the setting keeps it float or its rows cannot be packed.
fn quantize_layer(layer: &Layer, setting: Setting, calibration: &Calibration) -> Option<Packed> {
    let mut spec = setting.spec()?;
    // A group longer than the rows is one group per row.
    spec.block = spec.block.min(layer.k.next_power_of_two()).max(16);
    let layout = match layer.kind {
        Kind::Linear { .. } => Layout::blocked(layer.rows, layer.k, spec.bits, spec.block),
        Kind::Table { .. } | Kind::Conv { .. } => {
            // GatherBlockQuantized rows are whole bytes.
            if !(layer.k * spec.bits as usize).is_multiple_of(8) {
                return None;
            }
            Layout {
                rows: layer.rows,
                k: layer.k,
                bits: spec.bits,
                block: spec.block,
                row_bytes: layer.k * spec.bits as usize / 8,
            }
        }
    };
    let h = layer.input.as_ref().and_then(|x| calibration.inputs.get(x));
    let rotation = layer.rotation.filter(|_| setting.rotate);
    // The weight and input statistics the codes are made in.
    let (w, h_codes) = match rotation {
        Some(r) => (
            Cow::Owned(r.rotated(&layer.w)),
            h.map(|h| Cow::Owned(r.hessian(h))),
        ),
        None => (Cow::Borrowed(&layer.w[..]), h.map(Cow::Borrowed)),
    };
    let q = match &h_codes {
        Some(h) if spec.method == Method::Search => {
            spec.method = Method::Gptq;
            gptq(&w, layer.rows, layer.k, &spec, h)
        }
        _ => quantize(&w, layer.rows, layer.k, &spec),
    };
    // Rotation keeps both norms, so errors compare across bases.
    let error_of = |q: &Quantized, w: &[f32], h: Option<&Hessian>| match h {
        Some(h) => {
            let total = h.output_error(&w.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
            (h.output_error(&q.difference(w, layer.k)) / total.max(f64::MIN_POSITIVE)).sqrt()
        }
        None => q.relative_error(),
    };
    // Plain rounding of the weight as it is: what search, GPTQ and
    // rotation bought together.
    let rounding_error = (spec.method != Method::Rounding || rotation.is_some()).then(|| {
        let rounded = Spec {
            method: Method::Rounding,
            ..spec
        };
        error_of(
            &quantize(&layer.w, layer.rows, layer.k, &rounded),
            &layer.w,
            h,
        )
    });
    let scale_bytes = if spec.f16_scales { 2 } else { 4 };
    let bytes = layout.rows * layout.row_bytes
        + layout.rows * layout.blocks() * scale_bytes
        + if spec.symmetric {
            0
        } else {
            layout.rows * layout.zero_point_row_bytes()
        };
    Some(Packed {
        error: error_of(&q, &w, h_codes.as_deref()),
        rounding_error,
        on_samples: h.is_some(),
        rotation,
        spec,
        layout,
        q,
        bytes,
    })
}

/// Puts `packed` into the graph in place of the planned layer (or leaves
/// the layer as it is when there is nothing packed) and reports it.
/// `rotated` holds the inputs already rotated, which layers that read
/// one input share.
fn emit(
    g: &mut Graph,
    p: Planned,
    packed: Option<Packed>,
    rotated: &mut rotate::Rotations,
) -> Result<LayerReport> {
    let Planned {
        id,
        node,
        op,
        layer,
        mut setting,
        rule,
        ..
    } = p;
    let float_bytes = layer.rows * layer.k * 4;
    setting.rotate = packed.as_ref().is_some_and(|p| p.rotation.is_some());
    let Some(packed) = packed else {
        setting.bits = None;
        return Ok(LayerReport {
            node,
            op,
            shape: [layer.rows, layer.k],
            setting,
            rule,
            float_bytes,
            bytes: float_bytes,
            error: None,
            rounding_error: None,
            on_samples: false,
        });
    };
    let Packed {
        spec,
        layout,
        q,
        bytes,
        error,
        rounding_error,
        on_samples,
        rotation,
    } = packed;
    setting.bits = Some(spec.bits);
    setting.group = spec.block;
    setting.method = spec.method;
    let entry = LayerReport {
        node: node.clone(),
        op,
        shape: [layer.rows, layer.k],
        setting,
        rule,
        float_bytes,
        bytes,
        error: Some(error),
        rounding_error,
        on_samples,
    };
    let codes = packed::pack_codes(&layout, &q.codes);
    let blocks = layout.blocks();
    let scale_dtype = if spec.f16_scales {
        DType::F16
    } else {
        DType::F32
    };
    let scales = Tensor::from_f64s(
        scale_dtype,
        vec![layout.rows, blocks],
        q.scales.iter().map(|&s| f64::from(s)),
    );
    let zeros = (!spec.symmetric).then(|| {
        let z = packed::pack_zero_points(&layout, &q.zeros);
        Tensor::from_vec(vec![layout.rows, layout.zero_point_row_bytes()], z)
    });
    let codes = match layer.kind {
        Kind::Linear { .. } => {
            Tensor::from_vec(vec![layout.rows, blocks, layout.row_bytes / blocks], codes)
        }
        Kind::Table { .. } | Kind::Conv { .. } => {
            Tensor::from_vec(vec![layout.rows, layout.row_bytes], codes)
        }
    };
    let name = node;
    let constant =
        |g: &mut Graph, what: &str, t: Tensor| g.add_constant(&format!("{name}_{what}"), t);
    let (codes, scales) = (constant(g, "codes", codes), constant(g, "scales", scales));
    let zeros = zeros.map(|z| constant(g, "zero_points", z));
    // What tables and Conv weights read their rows from.
    let lookup = Lookup {
        codes,
        scales,
        zeros,
        spec,
    };
    match layer.kind {
        Kind::Linear {
            x,
            y,
            alpha,
            bias,
            absorbed,
        } => {
            if alpha != 1.0 {
                let s = g.constants.get_mut(&scales).expect("just added");
                *s = Tensor::from_f64s(
                    scale_dtype,
                    s.shape().to_vec(),
                    s.to_f64s().iter().map(|v| v * f64::from(alpha)),
                );
            }
            let bias = bias.map(|b| constant(g, "bias", Tensor::from_vec(vec![b.len()], b)));
            let x = match rotation {
                Some(r) => rotated.input(g, r, x, layer.k, &format!("{name}_input"))?,
                None => x,
            };
            g.remove_node(id);
            if let Some(add) = absorbed {
                g.remove_node(add);
            }
            let attrs = params::MatMulNBits {
                k: layer.k,
                n: layer.rows,
                bits: spec.bits,
                block_size: spec.block,
            }
            .attrs();
            g.add_node(Node {
                name,
                op: "MatMulNBits".into(),
                domain: MICROSOFT.into(),
                inputs: vec![Some(x), Some(codes), Some(scales), zeros, None, bias],
                outputs: vec![Some(y)],
                attrs,
            })?;
        }
        Kind::Table { indices, y } => {
            g.remove_node(id);
            lookup.emit(g, &name, indices, y)?;
        }
        Kind::Conv { shape } => {
            // Every row of the table, in order: the whole weight.
            let rows = layout.rows;
            let indices = Tensor::i64s(vec![rows], (0..rows as i64).collect());
            let indices = constant(g, "row_indices", indices);
            let flat = ValueType::new(DType::F32, Shape::known(&[rows, layout.k]));
            let flat = g.add_fresh_value(&format!("{name}_weight_rows"), flat);
            lookup.emit(g, &format!("{name}_weight"), indices, flat)?;
            let dims = Tensor::i64s(vec![shape.len()], shape.iter().map(|&d| d as i64).collect());
            let dims = constant(g, "weight_shape", dims);
            let weight = ValueType::new(DType::F32, Shape::known(&shape));
            let weight = g.add_fresh_value(&format!("{name}_weight"), weight);
            g.add_node(Node {
                name: format!("{name}_weight_reshape"),
                op: "Reshape".into(),
                domain: String::new(),
                inputs: vec![Some(flat), Some(dims)],
                outputs: vec![Some(weight)],
                attrs: Attrs::default(),
            })?;
            g.node_mut(id).inputs[1] = Some(weight);
            g.rewire(id);
        }
    }
    Ok(entry)
}

/// A packed table's constants, as `emit` added them.
struct Lookup {
    codes: ValueId,
    scales: ValueId,
    zeros: Option<ValueId>,
    spec: Spec,
}

impl Lookup {
    /// Adds the `GatherBlockQuantized` of rows `indices` of the table,
    /// as float32 `y`.
    fn emit(&self, g: &mut Graph, name: &str, indices: ValueId, y: ValueId) -> Result<()> {
        let attrs = params::GatherBlockQuantized {
            bits: self.spec.bits,
            block_size: self.spec.block,
        }
        .attrs();
        // Its output has its scales' type: float16 scales give float16
        // rows, cast back for the graph.
        let out = if self.spec.f16_scales {
            let ty = ValueType {
                dtype: Some(DType::F16),
                shape: g.value(y).ty.shape.clone(),
            };
            g.add_fresh_value(&format!("{name}_f16"), ty)
        } else {
            y
        };
        g.add_node(Node {
            name: name.to_string(),
            op: "GatherBlockQuantized".into(),
            domain: MICROSOFT.into(),
            inputs: vec![
                Some(self.codes),
                Some(indices),
                Some(self.scales),
                self.zeros,
            ],
            outputs: vec![Some(out)],
            attrs,
        })?;
        if out != y {
            let mut attrs = Attrs::default();
            attrs.insert("to", Attr::Int(i64::from(DType::F32.onnx_code())));
            g.add_node(Node {
                name: format!("{name}_cast"),
                op: "Cast".into(),
                domain: String::new(),
                inputs: vec![Some(out)],
                outputs: vec![Some(y)],
                attrs,
            })?;
        }
        Ok(())
    }
}

/// Rows of sample activations a layer's statistics take from one run,
/// at most: enough for `k × k` second moments of the widest layers, few
/// enough to keep them seconds.
const SAMPLE_ROWS: usize = 4096;

/// What sample inputs say about each linear layer's input: its second
/// moments, by the name of the value (so a model prepared for the
/// samples' shapes can calibrate one prepared for other sizes).
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    pub inputs: HashMap<String, Hessian>,
    /// One run's model and feeds, which [`fit`] measures each layer's
    /// sensitivity on and the report the whole model's accuracy
    /// ([`QuantReport::accuracy`]).
    pub sample_run: Option<Box<SampleRun>>,
}

/// The calibration run quantization is measured on, end to end.
#[derive(Clone, Debug)]
pub struct SampleRun {
    /// The model as prepared for it: the model being quantized where
    /// that takes the run's sizes, else one prepared for the run's own
    /// (a layer folded away there stays float in what is measured).
    pub model: Model,
    /// One sample's inputs, by name.
    pub feeds: HashMap<String, Tensor>,
    /// The float model's outputs on them, computed once for every
    /// measure that compares against them.
    pub float: Vec<(String, Tensor)>,
}

impl Calibration {
    /// Keeps `model` and `feeds` as the run sensitivity and accuracy are
    /// measured on, with the float model's outputs on it (run here, once).
    pub fn keep_sample_run(&mut self, model: Model, feeds: HashMap<String, Tensor>) -> Result<()> {
        let float = wpc_ir::interp::run_model(&model, &feeds)
            .map_err(|e| e.within("running the float model on the calibration samples"))?;
        self.sample_run = Some(Box::new(SampleRun {
            model,
            feeds,
            float,
        }));
        Ok(())
    }

    /// Runs `model` on `feeds` (one run's inputs) on the reference
    /// interpreter, with the input of every linear layer made an output,
    /// and adds their second moments to what earlier runs measured. Runs
    /// may be of models prepared for different shapes.
    pub fn add_run(&mut self, model: &Model, feeds: &HashMap<String, Tensor>) -> Result<()> {
        let g = &model.graph;
        let mut wanted = Vec::new();
        for id in g.topo_order()? {
            if let Some(Layer {
                kind: Kind::Linear { x, .. },
                k,
                ..
            }) = layer_at(g, id)?
                && !wanted.iter().any(|&(v, _)| v == x)
            {
                wanted.push((x, k));
            }
        }
        let mut probe = model.clone();
        for &(v, _) in &wanted {
            if !probe.graph.outputs.contains(&v) {
                probe.graph.outputs.push(v);
            }
        }
        let outs = wpc_ir::interp::run_model(&probe, feeds)
            .map_err(|e| e.within("running the calibration samples"))?;
        for (v, k) in wanted {
            let name = &g.value(v).name;
            let Some((_, t)) = outs.iter().find(|(n, _)| n == name) else {
                continue;
            };
            let h = Hessian::of_rows(&t.to_f32s(), k, SAMPLE_ROWS);
            match self.inputs.get_mut(name) {
                Some(sum) => sum.add(&h),
                None => {
                    self.inputs.insert(name.clone(), h);
                }
            }
        }
        Ok(())
    }

    /// [`Calibration::add_run`] for each of `samples` on `model`.
    pub fn measure(model: &Model, samples: &[HashMap<String, Tensor>]) -> Result<Calibration> {
        let mut calibration = Calibration::default();
        for feeds in samples {
            calibration.add_run(model, feeds)?;
        }
        Ok(calibration)
    }
}

/// The float32 constant of `v` when it has `rank` dims.
fn float_constant(g: &Graph, v: Option<ValueId>, rank: usize) -> Option<&Tensor> {
    let t = g.constants.get(&v?)?;
    (t.dtype() == DType::F32 && t.rank() == rank).then_some(t)
}

/// `w` (`[k, n]`, row-major) as `[n, k]`.
fn transposed(w: &[f32], k: usize, n: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for i in 0..k {
        for j in 0..n {
            t[j * k + i] = w[i * n + j];
        }
    }
    t
}

/// The layer node `id` is, if the pass can quantize it.
fn layer_at(g: &Graph, id: NodeId) -> Result<Option<Layer>> {
    let node = g.node(id);
    if !node.domain.is_empty() && node.domain != "ai.onnx" {
        return Ok(None);
    }
    let input = |i: usize| node.inputs.get(i).copied().flatten();
    let Some(y) = node.outputs.first().copied().flatten() else {
        return Ok(None);
    };
    let layer = match node.op.as_str() {
        "MatMul" => {
            let (Some(x), Some(wv)) = (input(0), input(1)) else {
                return Ok(None);
            };
            let Some(w) = float_constant(g, Some(wv), 2) else {
                return Ok(None);
            };
            let [k, n] = [w.shape()[0], w.shape()[1]];
            let (bias, absorbed, y) = match bias_add(g, y, n) {
                Some((b, add, out)) => (Some(b), Some(add), out),
                None => (None, None, y),
            };
            Layer {
                kind: Kind::Linear {
                    x,
                    y,
                    alpha: 1.0,
                    bias,
                    absorbed,
                },
                weight: wv,
                rows: n,
                k,
                w: transposed(&w.to_f32s(), k, n),
                transposed: true,
                input: Some(g.value(x).name.clone()),
                rotation: rotation_of(g, x, k),
            }
        }
        "Gemm" => {
            let p = Gemm::of(&node.attrs)?;
            let (Some(x), Some(wv)) = (input(0), input(1)) else {
                return Ok(None);
            };
            let Some(w) = float_constant(g, Some(wv), 2) else {
                return Ok(None);
            };
            if p.trans_a {
                return Ok(None);
            }
            let (k, n) = match p.trans_b {
                true => (w.shape()[1], w.shape()[0]),
                false => (w.shape()[0], w.shape()[1]),
            };
            let bias = match input(2) {
                None => None,
                Some(c) => {
                    let Some(c) = g.constants.get(&c).filter(|c| c.dtype() == DType::F32) else {
                        return Ok(None);
                    };
                    let v = c.to_f32s();
                    let per_column =
                        c.rank() <= 2 && c.shape().iter().rev().skip(1).all(|&d| d == 1);
                    match v.len() {
                        1 => Some(vec![v[0] * p.beta; n]),
                        len if len == n && per_column => {
                            Some(v.iter().map(|b| b * p.beta).collect())
                        }
                        _ => return Ok(None),
                    }
                }
            };
            let w = w.to_f32s();
            Layer {
                kind: Kind::Linear {
                    x,
                    y,
                    alpha: p.alpha,
                    bias,
                    absorbed: None,
                },
                weight: wv,
                rows: n,
                k,
                w: if p.trans_b { w } else { transposed(&w, k, n) },
                transposed: !p.trans_b,
                input: Some(g.value(x).name.clone()),
                rotation: rotation_of(g, x, k),
            }
        }
        "Conv" => {
            let Some(wv) = input(1) else {
                return Ok(None);
            };
            let Some(w) = g
                .constants
                .get(&wv)
                .filter(|w| w.dtype() == DType::F32 && w.rank() >= 3)
            else {
                return Ok(None);
            };
            let shape = w.shape().to_vec();
            Layer {
                rows: shape[0],
                k: shape[1..].iter().product(),
                w: w.to_f32s(),
                kind: Kind::Conv { shape },
                weight: wv,
                transposed: false,
                // Its samples would be image patches: quantized by search.
                input: None,
                rotation: None,
            }
        }
        "Gather" => {
            let (Some(tv), Some(indices)) = (input(0), input(1)) else {
                return Ok(None);
            };
            let Some(t) = float_constant(g, Some(tv), 2) else {
                return Ok(None);
            };
            if wpc_ir::ops::params::axis("Gather", &node.attrs, 2)? != 0 {
                return Ok(None);
            }
            Layer {
                kind: Kind::Table { indices, y },
                weight: tv,
                rows: t.shape()[0],
                k: t.shape()[1],
                w: t.to_f32s(),
                transposed: false,
                input: None,
                rotation: None,
            }
        }
        _ => return Ok(None),
    };
    Ok((layer.rows > 0 && layer.k >= 16).then_some(layer))
}

/// How the `k`-wide last axis of a linear layer's input `x` can be
/// rotated: where `k` has a Hadamard block and `x`'s rank is known (the
/// run-time rotation reshapes it).
fn rotation_of(g: &Graph, x: ValueId, k: usize) -> Option<Rotation> {
    let dims = g.value(x).ty.shape.dims()?;
    (!dims.is_empty()).then_some(())?;
    Rotation::for_width(k)
}

/// Where `y` (a product with `n` columns) is read only by an `Add` of a
/// float32 constant of `n` values along its last axis: that constant, the
/// Add and its output, so the bias joins the quantized product.
fn bias_add(g: &Graph, y: ValueId, n: usize) -> Option<(Vec<f32>, NodeId, ValueId)> {
    if g.outputs.contains(&y) {
        return None;
    }
    let [add] = g.consumers(y)[..] else {
        return None;
    };
    let node = g.node(add);
    if node.op != "Add" || !node.domain.is_empty() || node.inputs.len() != 2 {
        return None;
    }
    let other = node.inputs.iter().flatten().find(|&&v| v != y)?;
    let b = float_constant(g, Some(*other), 1)?;
    let out = node.outputs.first().copied().flatten()?;
    // The sum must keep the product's shape (the bias only broadcasts).
    (b.len() == n && g.value(out).ty.shape == g.value(y).ty.shape).then(|| (b.to_f32s(), add, out))
}

#[cfg(test)]
mod tests;
