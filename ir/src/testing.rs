//! Small models for tests, snapshots and benchmarks: one node over f32
//! operands, each a model input or a constant; and a pointwise chain as
//! exporters write one ([`exported_chain`]).

use crate::graph::{Graph, Model, Node, ValueId, ValueType};
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
/// `t = gelu(x) + y; t * clip(t + 3, 0, 6) / 6` over `x: [rows, cols]`,
/// `y: [cols]`, every op a node of its own and every constant a scalar,
/// as exporters write them: what fusion makes one kernel of. Types are
/// left for shape inference.
pub fn exported_chain(rows: usize, cols: usize) -> Model {
    let mut g = Graph::new("chain");
    let input = |g: &mut Graph, name: &str, shape: &[usize]| {
        let v = g
            .add_value(name, ValueType::new(DType::F32, Shape::known(shape)))
            .unwrap();
        g.inputs.push(v);
        v
    };
    let x = input(&mut g, "x", &[rows, cols]);
    let y = input(&mut g, "y", &[cols]);
    let scalar = |g: &mut Graph, v: f32| {
        let t = Tensor::scalar(v);
        let id = g.add_fresh_value("c", ValueType::of(&t));
        g.constants.insert(id, t);
        id
    };
    let node = |g: &mut Graph, op: &str, ins: &[ValueId]| {
        let out = g.add_fresh_value(&op.to_lowercase(), ValueType::default());
        let name = g.value(out).name.clone();
        g.add_node(Node {
            name,
            op: op.into(),
            domain: String::new(),
            inputs: ins.iter().map(|&v| Some(v)).collect(),
            outputs: vec![Some(out)],
            attrs: Attrs::default(),
        })
        .unwrap();
        out
    };
    let (sqrt2, one, half) = (
        scalar(&mut g, 2f32.sqrt()),
        scalar(&mut g, 1.0),
        scalar(&mut g, 0.5),
    );
    let d = node(&mut g, "Div", &[x, sqrt2]);
    let e = node(&mut g, "Erf", &[d]);
    let e = node(&mut g, "Add", &[e, one]);
    let m = node(&mut g, "Mul", &[x, e]);
    let gelu = node(&mut g, "Mul", &[m, half]);
    let t = node(&mut g, "Add", &[gelu, y]);
    let (three, zero, six) = (
        scalar(&mut g, 3.0),
        scalar(&mut g, 0.0),
        scalar(&mut g, 6.0),
    );
    let s = node(&mut g, "Add", &[t, three]);
    let c = node(&mut g, "Clip", &[s, zero, six]);
    let p = node(&mut g, "Mul", &[t, c]);
    let out = node(&mut g, "Div", &[p, six]);
    g.outputs = vec![out];
    Model {
        graph: g,
        opsets: std::collections::BTreeMap::from([(String::new(), 21)]),
        ir_version: 10,
        producer: "test".into(),
        external_data: Vec::new(),
    }
}
