//! Typed node attributes.

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::tensor::Tensor;

/// One attribute value, typed as in ONNX's `AttributeProto`.
#[derive(Clone, Debug)]
pub enum Attr {
    Float(f32),
    Int(i64),
    String(String),
    Tensor(Tensor),
    Graph(Box<Graph>),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<String>),
    Tensors(Vec<Tensor>),
    Graphs(Vec<Graph>),
}

impl Attr {
    fn kind(&self) -> &'static str {
        match self {
            Attr::Float(_) => "float",
            Attr::Int(_) => "int",
            Attr::String(_) => "string",
            Attr::Tensor(_) => "tensor",
            Attr::Graph(_) => "graph",
            Attr::Floats(_) => "floats",
            Attr::Ints(_) => "ints",
            Attr::Strings(_) => "strings",
            Attr::Tensors(_) => "tensors",
            Attr::Graphs(_) => "graphs",
        }
    }
}

/// A node's attributes, looked up by name with typed accessors that return
/// clear errors when a model stores the wrong type.
#[derive(Clone, Debug, Default)]
pub struct Attrs(pub Vec<(String, Attr)>);

fn wrong_type(name: &str, want: &str, got: &Attr) -> Error {
    Error::invalid(format!(
        "attribute '{name}' should be {want} but is {}",
        got.kind()
    ))
}

impl Attrs {
    pub fn get(&self, name: &str) -> Option<&Attr> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn insert(&mut self, name: impl Into<String>, attr: Attr) {
        let name = name.into();
        self.0.retain(|(n, _)| *n != name);
        self.0.push((name, attr));
    }

    pub fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Int(i)) => Ok(Some(*i)),
            Some(a) => Err(wrong_type(name, "an int", a)),
        }
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.opt_int(name)?.unwrap_or(default))
    }

    pub fn opt_float(&self, name: &str) -> Result<Option<f32>> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Float(f)) => Ok(Some(*f)),
            Some(Attr::Int(i)) => Ok(Some(*i as f32)),
            Some(a) => Err(wrong_type(name, "a float", a)),
        }
    }

    pub fn float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.opt_float(name)?.unwrap_or(default))
    }

    pub fn opt_string(&self, name: &str) -> Result<Option<&str>> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::String(s)) => Ok(Some(s)),
            Some(a) => Err(wrong_type(name, "a string", a)),
        }
    }

    pub fn string<'a>(&'a self, name: &str, default: &'a str) -> Result<&'a str> {
        Ok(self.opt_string(name)?.unwrap_or(default))
    }

    pub fn opt_ints(&self, name: &str) -> Result<Option<&[i64]>> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v)),
            Some(a) => Err(wrong_type(name, "a list of ints", a)),
        }
    }

    pub fn opt_floats(&self, name: &str) -> Result<Option<&[f32]>> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Floats(v)) => Ok(Some(v)),
            Some(a) => Err(wrong_type(name, "a list of floats", a)),
        }
    }

    pub fn opt_strings(&self, name: &str) -> Result<Option<&[String]>> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Strings(v)) => Ok(Some(v)),
            Some(a) => Err(wrong_type(name, "a list of strings", a)),
        }
    }

    pub fn opt_tensor(&self, name: &str) -> Result<Option<&Tensor>> {
        match self.get(name) {
            None => Ok(None),
            Some(Attr::Tensor(t)) => Ok(Some(t)),
            Some(a) => Err(wrong_type(name, "a tensor", a)),
        }
    }

    pub fn graph(&self, name: &str) -> Result<&Graph> {
        match self.get(name) {
            None => Err(Error::invalid(format!(
                "missing required graph attribute '{name}'"
            ))),
            Some(Attr::Graph(g)) => Ok(g),
            Some(a) => Err(wrong_type(name, "a graph", a)),
        }
    }

    /// Every subgraph held by these attributes.
    pub fn subgraphs(&self) -> impl Iterator<Item = &Graph> {
        self.0.iter().flat_map(|(_, a)| match a {
            Attr::Graph(g) => std::slice::from_ref(g.as_ref()).iter(),
            Attr::Graphs(gs) => gs.iter(),
            _ => [].iter(),
        })
    }
}
