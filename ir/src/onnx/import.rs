//! `ModelProto` → [`Model`]: names resolved to values, attributes typed,
//! initializers decoded, symbolic dims kept as symbols.
//!
//! The importer checks structure (every name defined once, types it can
//! hold) but not op semantics: an unknown op imports fine and is reported by
//! [`crate::ops::check_model`], so `wpc inspect` can list every such node.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use prost::Message;

use super::functions::Functions;
use super::proto::{
    self, AttributeProto, GraphProto, ModelProto, TensorProto, TypeProto, TypeValue,
    attribute_type as at,
};
use super::tensor::decode;
use crate::attr::{Attr, Attrs};
use crate::dtype::DType;
use crate::error::{Error, ErrorKind, Result};
use crate::graph::{Graph, Model, Node, ValueType};
use crate::shape::{Dim, Shape};
use crate::tensor::Tensor;

/// The oldest default-domain opset wpc accepts.
pub const MIN_OPSET: u32 = 7;
/// The newest default-domain opset wpc knows (ONNX 1.23 defines up to 28).
pub const MAX_OPSET: u32 = 28;

/// Reads and imports an `.onnx` file; external data is resolved next to it.
pub fn load_model(path: &Path) -> Result<Model> {
    let label = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot read: {e}")).within(label.clone())
    })?;
    load_model_bytes(&bytes, path.parent()).map_err(|e| e.within(label))
}

/// Imports a serialised model. `base_dir` resolves external data.
pub fn load_model_bytes(bytes: &[u8], base_dir: Option<&Path>) -> Result<Model> {
    let proto = ModelProto::decode(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("not an ONNX model (the protobuf does not decode: {e})"),
        )
    })?;
    let graph_proto = proto.graph.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Decode,
            "not an ONNX model (it has no graph)".to_string(),
        )
    })?;
    if proto.ir_version <= 0 {
        return Err(Error::new(
            ErrorKind::Decode,
            "not an ONNX model (ir_version is missing)",
        ));
    }
    let mut opsets = BTreeMap::new();
    for o in &proto.opset_import {
        let domain = if o.domain == "ai.onnx" {
            String::new()
        } else {
            o.domain.clone()
        };
        let version = u32::try_from(o.version).map_err(|_| {
            Error::invalid(format!(
                "opset version {} of domain '{}' is out of range",
                o.version, o.domain
            ))
        })?;
        opsets.insert(domain, version);
    }
    let opset = *opsets.get("").unwrap_or(&0);
    if proto.opset_import.is_empty() {
        // IR version 1-2 models predate opset_import; they meant opset 1.
        return Err(Error::unsupported(
            "model has no opset_import (ONNX before IR version 3)",
        ));
    }
    if opset != 0 && !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(Error::unsupported(format!(
            "default-domain opset {opset} is outside the supported range {MIN_OPSET}..={MAX_OPSET}"
        )));
    }
    let importer = Importer {
        base_dir,
        functions: Functions::new(&proto.functions),
        external_data: RefCell::default(),
    };
    let mut graph = importer.graph(graph_proto, false)?;
    name_unnamed_input_dims(&mut graph);
    Ok(Model {
        graph,
        opsets,
        ir_version: proto.ir_version,
        producer: proto.producer_name,
        external_data: importer.external_data.into_inner().into_iter().collect(),
        dim_ranges: Default::default(),
        counted_dims: Default::default(),
    })
}

/// Gives each unnamed dim of a model input (ONNX's `?`: a size of its
/// own, known at run time) the stable name `INPUT.AXIS` (`input.1`), so
/// `wpc inspect` can show it and `--dim input.1=512` can size it like a
/// named one. A name a dim of the model already uses is primed until it
/// is not.
fn name_unnamed_input_dims(graph: &mut Graph) {
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for v in graph.inputs.iter() {
        for d in graph.value(*v).ty.shape.dims().unwrap_or_default() {
            if let Dim::Symbol(s) = d {
                taken.insert(s.clone());
            }
        }
    }
    for v in graph.inputs.clone() {
        if graph.constants.contains_key(&v) {
            continue;
        }
        let input = graph.value(v).name.clone();
        let Some(dims) = graph.value_mut(v).ty.shape.0.as_mut() else {
            continue;
        };
        for (axis, d) in dims.iter_mut().enumerate() {
            if *d == Dim::Unknown {
                let mut name = format!("{input}.{axis}");
                while taken.contains(&name) {
                    name.push('\'');
                }
                taken.insert(name.clone());
                *d = Dim::Symbol(name);
            }
        }
    }
}

struct Importer<'a> {
    base_dir: Option<&'a Path>,
    functions: Functions<'a>,
    /// The external data files tensors were read from so far.
    external_data: RefCell<BTreeSet<PathBuf>>,
}

impl Importer<'_> {
    /// Decodes a tensor, noting the external data file it came from.
    fn tensor(&self, t: &TensorProto) -> Result<Tensor> {
        let (tensor, file) = decode(t, self.base_dir)?;
        self.external_data.borrow_mut().extend(file);
        Ok(tensor)
    }

    fn graph(&self, g: &GraphProto, is_subgraph: bool) -> Result<Graph> {
        let mut graph = Graph::new(g.name.clone());
        let value_info: BTreeMap<&str, &TypeProto> = g
            .value_info
            .iter()
            .chain(&g.output)
            .filter_map(|v| Some((v.name.as_str(), v.r#type.as_ref()?)))
            .collect();
        if !g.sparse_initializer.is_empty() {
            return Err(Error::unsupported("sparse initializers are not supported"));
        }
        for init in &g.initializer {
            let ctx = || format!("initializer '{}'", init.name);
            let t = self.tensor(init).map_err(|e| e.within(ctx()))?;
            let id = graph
                .add_value(init.name.clone(), ValueType::of(&t))
                .map_err(|e| e.within(ctx()))?;
            graph.constants.insert(id, t);
        }
        for input in &g.input {
            let ctx = || format!("graph input '{}'", input.name);
            let ty = value_type(input.r#type.as_ref()).map_err(|e| e.within(ctx()))?;
            if let Some(id) = graph.find_value(&input.name) {
                // Before IR 4 initializers are also listed as inputs; they stay constants.
                if graph.constants.contains_key(&id) {
                    continue;
                }
            }
            let id = graph
                .add_value(input.name.clone(), ty)
                .map_err(|e| e.within(ctx()))?;
            graph.inputs.push(id);
        }
        // A computed value's declared dim named by no graph input (the
        // `unk__N` that ONNX shape inference writes into value_info, as
        // onnxruntime's quantization tools save it) says nothing the
        // inputs can give: it is left to shape inference.
        let input_symbols: BTreeSet<String> = graph
            .inputs
            .iter()
            .flat_map(|&id| graph.value(id).ty.shape.dims().unwrap_or(&[]).to_vec())
            .filter_map(|d| match d {
                Dim::Symbol(s) => Some(s),
                _ => None,
            })
            .collect();
        let nodes = self.functions.expand(&g.node)?;
        for n in &nodes {
            for out in n.output.iter().filter(|o| !o.is_empty()) {
                let ctx = || Error::node_context(&n.name, &n.op_type);
                let mut ty = match value_info.get(out.as_str()) {
                    Some(t) => value_type(Some(t))
                        .map_err(|e| e.within(format!("value '{out}'")).within(ctx()))?,
                    None => ValueType::default(),
                };
                if !is_subgraph && let Some(dims) = ty.shape.0.as_mut() {
                    for d in dims {
                        if matches!(d, Dim::Symbol(s) if !input_symbols.contains(s)) {
                            *d = Dim::Unknown;
                        }
                    }
                }
                graph
                    .add_value(out.clone(), ty)
                    .map_err(|e| e.within(ctx()))?;
            }
        }
        for n in &nodes {
            let node = self
                .node(&mut graph, n, is_subgraph)
                .map_err(|e| e.within(Error::node_context(&n.name, &n.op_type)))?;
            graph.add_node(node)?;
        }
        for out in &g.output {
            let id = match graph.find_value(&out.name) {
                Some(id) => id,
                None if is_subgraph => outer_value(&mut graph, &out.name),
                None => bail!(
                    "graph output '{}' is not produced by any node, input or initializer",
                    out.name
                ),
            };
            graph.outputs.push(id);
        }
        graph.topo_order().map(|_| graph)
    }

    fn node(&self, graph: &mut Graph, n: &proto::NodeProto, is_subgraph: bool) -> Result<Node> {
        let mut inputs = Vec::with_capacity(n.input.len());
        for name in &n.input {
            inputs.push(match name.as_str() {
                "" => None,
                name => Some(match graph.find_value(name) {
                    Some(id) => id,
                    None if is_subgraph => outer_value(graph, name),
                    None => {
                        bail!("input '{name}' is not produced by any node, input or initializer")
                    }
                }),
            });
        }
        let outputs = n
            .output
            .iter()
            .map(|o| {
                if o.is_empty() {
                    None
                } else {
                    graph.find_value(o)
                }
            })
            .collect();
        let mut attrs = Attrs::default();
        for a in &n.attribute {
            attrs.insert(
                a.name.clone(),
                self.attr(a)
                    .map_err(|e| e.within(format!("attribute '{}'", a.name)))?,
            );
        }
        let domain = if n.domain == "ai.onnx" {
            String::new()
        } else {
            n.domain.clone()
        };
        Ok(Node {
            name: n.name.clone(),
            op: n.op_type.clone(),
            domain,
            inputs,
            outputs,
            attrs,
        })
    }

    fn attr(&self, a: &AttributeProto) -> Result<Attr> {
        if !a.ref_attr_name.is_empty() {
            bail!(
                "refers to function attribute '{}' outside a function",
                a.ref_attr_name
            );
        }
        let tensor = |t| self.tensor(t);
        Ok(match a.r#type {
            at::FLOAT => Attr::Float(a.f),
            at::INT => Attr::Int(a.i),
            at::STRING => Attr::String(String::from_utf8_lossy(&a.s).into_owned()),
            at::TENSOR => {
                Attr::Tensor(tensor(a.t.as_ref().ok_or_else(|| {
                    Error::invalid("tensor attribute without a tensor")
                })?)?)
            }
            at::GRAPH => Attr::Graph(Box::new(
                self.graph(
                    a.g.as_ref()
                        .ok_or_else(|| Error::invalid("graph attribute without a graph"))?,
                    true,
                )?,
            )),
            at::FLOATS => Attr::Floats(a.floats.clone()),
            at::INTS => Attr::Ints(a.ints.clone()),
            at::STRINGS => Attr::Strings(
                a.strings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            at::TENSORS => Attr::Tensors(a.tensors.iter().map(tensor).collect::<Result<_>>()?),
            at::GRAPHS => Attr::Graphs(
                a.graphs
                    .iter()
                    .map(|g| self.graph(g, true))
                    .collect::<Result<_>>()?,
            ),
            at::SPARSE_TENSOR | at::SPARSE_TENSORS => {
                unsupported!("sparse tensor attributes are not supported")
            }
            at::TYPE_PROTO | at::TYPE_PROTOS => unsupported!("type attributes are not supported"),
            t => bail!("unknown attribute type {t}"),
        })
    }
}

fn outer_value(graph: &mut Graph, name: &str) -> crate::graph::ValueId {
    let id = graph
        .add_value(name, ValueType::default())
        .expect("name was not defined");
    graph.value_mut(id).outer = true;
    id
}

/// The IR type of a `TypeProto`; non-tensor types are rejected.
fn value_type(t: Option<&TypeProto>) -> Result<ValueType> {
    let Some(t) = t else {
        return Ok(ValueType::default());
    };
    match &t.value {
        None => Ok(ValueType::default()),
        Some(TypeValue::TensorType(tt)) => {
            let dtype = match tt.elem_type {
                0 => None,
                code => Some(DType::from_onnx(code).ok_or_else(|| {
                    Error::unsupported(format!(
                        "element type {} is not supported",
                        DType::onnx_code_name(code)
                    ))
                })?),
            };
            let shape = match &tt.shape {
                None => Shape::unknown(),
                Some(s) => Shape(Some(
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(proto::DimensionValue::DimValue(v)) if *v >= 0 => {
                                Dim::Known(*v as usize)
                            }
                            Some(proto::DimensionValue::DimParam(p)) if !p.is_empty() => {
                                Dim::Symbol(p.clone())
                            }
                            _ => Dim::Unknown,
                        })
                        .collect(),
                )),
            };
            Ok(ValueType { dtype, shape })
        }
        Some(TypeValue::SequenceType(_)) => unsupported!("sequence types are not supported"),
        Some(TypeValue::MapType(_)) => unsupported!("map types are not supported"),
        Some(TypeValue::OptionalType(_)) => unsupported!("optional types are not supported"),
        Some(TypeValue::SparseTensorType(_)) => {
            unsupported!("sparse tensor types are not supported")
        }
        Some(TypeValue::OpaqueType(_)) => unsupported!("opaque types are not supported"),
    }
}
