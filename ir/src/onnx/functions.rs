//! Inlining of model-local functions (`ModelProto.functions`), which
//! exporters such as `torch.onnx` use for every module: a call node is
//! replaced by the function's body with its names made unique, its formal
//! inputs and outputs bound to the call's, and `ref_attr_name` attributes
//! bound to the call's attributes (or the function's defaults).

use std::collections::HashMap;

use super::proto::{AttributeProto, FunctionProto, NodeProto, attribute_type};
use crate::error::{Error, Result};

/// Deeper nesting than this is taken to be recursion, which ONNX forbids.
const MAX_DEPTH: usize = 32;

/// The model's functions, by `(domain, name)`.
pub struct Functions<'a> {
    by_key: HashMap<(&'a str, &'a str), &'a FunctionProto>,
}

impl<'a> Functions<'a> {
    pub fn new(functions: &'a [FunctionProto]) -> Functions<'a> {
        Functions {
            by_key: functions
                .iter()
                .map(|f| ((f.domain.as_str(), f.name.as_str()), f))
                .collect(),
        }
    }

    /// `nodes` with every call of a model-local function expanded, recursively.
    pub fn expand(&self, nodes: &[NodeProto]) -> Result<Vec<NodeProto>> {
        let mut counter = 0;
        self.expand_at(nodes, 0, &mut counter)
    }

    fn expand_at(
        &self,
        nodes: &[NodeProto],
        depth: usize,
        counter: &mut usize,
    ) -> Result<Vec<NodeProto>> {
        let mut out = Vec::with_capacity(nodes.len());
        for call in nodes {
            let Some(f) = self
                .by_key
                .get(&(call.domain.as_str(), call.op_type.as_str()))
            else {
                out.push(call.clone());
                continue;
            };
            let ctx = || Error::node_context(&call.name, &call.op_type);
            if depth >= MAX_DEPTH {
                return Err(Error::invalid(format!(
                    "function calls nest deeper than {MAX_DEPTH} (recursion?)"
                ))
                .within(ctx()));
            }
            *counter += 1;
            let body = instantiate(call, f, *counter).map_err(|e| e.within(ctx()))?;
            out.extend(self.expand_at(&body, depth + 1, counter)?);
        }
        Ok(out)
    }
}

/// The body of `f` for one call: names bound and made unique.
fn instantiate(call: &NodeProto, f: &FunctionProto, serial: usize) -> Result<Vec<NodeProto>> {
    if call.input.len() > f.input.len() || call.output.len() > f.output.len() {
        return Err(Error::invalid(format!(
            "calls function {} with {} inputs and {} outputs; it takes {} and {}",
            f.name,
            call.input.len(),
            call.output.len(),
            f.input.len(),
            f.output.len()
        )));
    }
    let prefix = if call.name.is_empty() {
        format!("{}_{serial}", f.name)
    } else {
        call.name.clone()
    };
    let mut names: HashMap<&str, String> = HashMap::new();
    for (i, formal) in f.input.iter().enumerate() {
        names.insert(formal, call.input.get(i).cloned().unwrap_or_default());
    }
    for (i, formal) in f.output.iter().enumerate() {
        names.insert(formal, call.output.get(i).cloned().unwrap_or_default());
    }
    let rename = |n: &String| match n.as_str() {
        "" => String::new(),
        n => names
            .get(n)
            .cloned()
            .unwrap_or_else(|| format!("{prefix}/{n}")),
    };
    f.node
        .iter()
        .map(|n| {
            let mut attribute = Vec::with_capacity(n.attribute.len());
            for a in &n.attribute {
                if a.r#type == attribute_type::GRAPH || a.r#type == attribute_type::GRAPHS {
                    return Err(Error::unsupported(format!(
                        "subgraphs inside function {} are not supported",
                        f.name
                    )));
                }
                if let Some(bound) = bind_attribute(a, call, f) {
                    attribute.push(bound);
                }
            }
            Ok(NodeProto {
                input: n.input.iter().map(rename).collect(),
                output: n.output.iter().map(rename).collect(),
                name: format!("{prefix}/{}", n.name),
                attribute,
                ..n.clone()
            })
        })
        .collect()
}

/// An attribute of a body node; a reference takes the call's value, else
/// the function's default, else it is left out (the op's default applies).
fn bind_attribute(
    a: &AttributeProto,
    call: &NodeProto,
    f: &FunctionProto,
) -> Option<AttributeProto> {
    if a.ref_attr_name.is_empty() {
        return Some(a.clone());
    }
    let source = call
        .attribute
        .iter()
        .chain(&f.attribute_proto)
        .find(|c| c.name == a.ref_attr_name)?;
    Some(AttributeProto {
        name: a.name.clone(),
        ref_attr_name: String::new(),
        ..source.clone()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use prost::Message;

    use super::super::proto::*;
    use crate::tensor::Tensor;

    fn node(
        op: &str,
        domain: &str,
        inputs: &[&str],
        outputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            op_type: op.into(),
            domain: domain.into(),
            attribute,
            ..Default::default()
        }
    }

    fn float_attr(name: &str, v: f32) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: attribute_type::FLOAT,
            f: v,
            ..Default::default()
        }
    }

    fn tensor_input(name: &str) -> ValueInfoProto {
        let tt = TensorTypeProto {
            elem_type: 1,
            shape: Some(TensorShapeProto {
                dim: vec![Dimension {
                    value: Some(DimensionValue::DimValue(3)),
                }],
            }),
        };
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(TypeValue::TensorType(tt)),
            }),
        }
    }

    #[test]
    fn calls_expand_with_bound_names_attributes_and_nesting() {
        // local.Leaky(X) = LeakyRelu(X, alpha = @slope), slope defaults to 0.5.
        let leaky = FunctionProto {
            name: "Leaky".into(),
            domain: "local".into(),
            input: vec!["X".into()],
            output: vec!["Y".into()],
            attribute_proto: vec![float_attr("slope", 0.5)],
            node: vec![node(
                "LeakyRelu",
                "",
                &["X"],
                &["Y"],
                vec![AttributeProto {
                    name: "alpha".into(),
                    ref_attr_name: "slope".into(),
                    r#type: attribute_type::FLOAT,
                    ..Default::default()
                }],
            )],
            ..Default::default()
        };
        // local.Twice(X) = Leaky(Leaky(X, slope = 0.1)) with an internal name `t`.
        let twice = FunctionProto {
            name: "Twice".into(),
            domain: "local".into(),
            input: vec!["X".into()],
            output: vec!["Y".into()],
            node: vec![
                node(
                    "Leaky",
                    "local",
                    &["X"],
                    &["t"],
                    vec![float_attr("slope", 0.1)],
                ),
                node("Leaky", "local", &["t"], &["Y"], vec![]),
            ],
            ..Default::default()
        };
        let graph = GraphProto {
            node: vec![
                node("Twice", "local", &["x"], &["a"], vec![]),
                node("Twice", "local", &["a"], &["y"], vec![]),
            ],
            input: vec![tensor_input("x")],
            output: vec![tensor_input("y")],
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: 10,
            opset_import: vec![
                OperatorSetIdProto {
                    domain: String::new(),
                    version: 21,
                },
                OperatorSetIdProto {
                    domain: "local".into(),
                    version: 1,
                },
            ],
            graph: Some(graph),
            functions: vec![leaky, twice],
            ..Default::default()
        };
        let m = super::super::load_model_bytes(&model.encode_to_vec(), None).unwrap();
        assert_eq!(m.graph.node_count(), 4, "two calls of two LeakyRelus each");
        let feeds = HashMap::from([(
            "x".to_string(),
            Tensor::from_vec(vec![3], vec![-100.0f32, 0.0, 2.0]),
        )]);
        let y = crate::interp::run_model(&m, &feeds).unwrap().remove(0).1;
        // Each Twice scales negatives by 0.1 * 0.5; two calls: 0.0025.
        let got = y.to_f64s();
        assert!((got[0] - (-0.25)).abs() < 1e-5, "{got:?}");
        assert_eq!(&got[1..], &[0.0, 2.0]);
    }
}
