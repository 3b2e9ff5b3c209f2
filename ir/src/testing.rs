//! Small models for tests, snapshots and benchmarks: one node over f32
//! operands, each a model input or a constant.

use crate::graph::{Graph, Model, Node, ValueType};
use crate::{Attr, Attrs, DType, Shape, Tensor};

/// One operand of [`one_node`].
pub enum Operand<'a> {
    /// A model input of this shape.
    Input(&'a [usize]),
    /// A constant (an initializer).
    Constant(Tensor),
}

/// A model of one `op` node (opset 21) over `operands`, with one output
/// `out` whose type is left for shape inference.
pub fn one_node(op: &str, operands: Vec<Operand>, attrs: Attrs) -> Model {
    let mut g = Graph::new("one_node");
    let mut ids = Vec::new();
    for (i, operand) in operands.into_iter().enumerate() {
        let (ty, constant) = match operand {
            Operand::Input(shape) => (ValueType::new(DType::F32, Shape::known(shape)), None),
            Operand::Constant(t) => (ValueType::of(&t), Some(t)),
        };
        let v = g.add_value(format!("in{i}"), ty).expect("fresh names");
        match constant {
            Some(t) => {
                g.constants.insert(v, t);
            }
            None => g.inputs.push(v),
        }
        ids.push(Some(v));
    }
    let out = g
        .add_value("out", ValueType::default())
        .expect("fresh name");
    g.add_node(Node {
        name: op.to_lowercase(),
        op: op.into(),
        domain: String::new(),
        inputs: ids,
        outputs: vec![Some(out)],
        attrs,
    })
    .expect("one node");
    g.outputs.push(out);
    Model {
        graph: g,
        opsets: [(String::new(), 21)].into_iter().collect(),
        ir_version: 10,
        producer: "wpc-testing".into(),
        external_data: Vec::new(),
    }
}

/// Attributes of int lists.
pub fn ints(pairs: &[(&str, Vec<i64>)]) -> Attrs {
    let mut a = Attrs::default();
    for (k, v) in pairs {
        a.insert(*k, Attr::Ints(v.clone()));
    }
    a
}
