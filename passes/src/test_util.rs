//! A small builder for test graphs.

use std::collections::BTreeMap;

use wpc_ir::{Attrs, DType, Dim, Graph, Model, Node, Shape, Tensor, ValueId, ValueType};

pub struct GraphBuilder {
    graph: Graph,
    counter: usize,
}

impl GraphBuilder {
    pub fn new() -> Self {
        GraphBuilder {
            graph: Graph::new("test"),
            counter: 0,
        }
    }

    /// A builder whose generated names start after `n`, so graphs built
    /// to be nested do not reuse each other's names.
    pub fn numbered_from(n: usize) -> Self {
        GraphBuilder {
            counter: n,
            ..GraphBuilder::new()
        }
    }

    pub fn input(&mut self, name: &str, dtype: DType, dims: Vec<Dim>) -> ValueId {
        let id = self
            .graph
            .add_value(name, ValueType::new(dtype, Shape(Some(dims))))
            .unwrap();
        self.graph.inputs.push(id);
        id
    }

    /// A value read from an enclosing graph.
    pub fn outer(&mut self, name: &str) -> ValueId {
        let id = self.graph.add_value(name, ValueType::default()).unwrap();
        self.graph.value_mut(id).outer = true;
        id
    }

    pub fn constant(&mut self, name: &str, t: Tensor) -> ValueId {
        let id = self.graph.add_value(name, ValueType::of(&t)).unwrap();
        self.graph.constants.insert(id, t);
        id
    }

    pub fn node(&mut self, op: &str, inputs: &[ValueId]) -> ValueId {
        self.node_with(op, inputs, Attrs::default())
    }

    pub fn node_with(&mut self, op: &str, inputs: &[ValueId], attrs: Attrs) -> ValueId {
        self.counter += 1;
        let out = self.graph.add_fresh_value(
            &format!("{}_{}", op.to_lowercase(), self.counter),
            ValueType::default(),
        );
        let node = Node {
            name: format!("n{}", self.counter),
            op: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|&i| Some(i)).collect(),
            outputs: vec![Some(out)],
            attrs,
        };
        self.graph.add_node(node).unwrap();
        out
    }

    pub fn finish(mut self, outputs: &[ValueId]) -> Model {
        self.graph.outputs = outputs.to_vec();
        Model {
            graph: self.graph,
            opsets: BTreeMap::from([(String::new(), 21)]),
            ir_version: 10,
            producer: "test".into(),
            external_data: Vec::new(),
            dim_ranges: Default::default(),
            counted_dims: Default::default(),
        }
    }
}
