//! The core of wpc: the graph IR, the ONNX importer, the op registry and the
//! reference interpreter.
//!
//! * [`onnx`] reads `.onnx` files (and external weight files) into a [`Model`].
//! * [`graph`] is the IR: a petgraph DAG of [`Node`]s over typed [`Value`]s.
//! * [`ops`] is the op registry: every op's shape/type inference and
//!   reference semantics, one module per op family.
//! * [`interp`] evaluates a graph with the registry; it is the oracle every
//!   backend is tested against, and the engine of constant folding.
//!
//! This crate never writes files and knows nothing of targets or backends.

// Declared first: their macros (`bail!`, `with_data!`, …) are used below.
#[macro_use]
pub mod error;
#[macro_use]
pub mod tensor;
pub mod attr;
pub mod dtype;
pub mod graph;
pub mod interp;
pub mod onnx;
pub mod ops;
pub mod packed;
pub mod quantize;
pub mod shape;
pub mod subbyte;
pub mod sym;
pub mod testing;
pub mod wire;

pub use attr::{Attr, Attrs};
pub use dtype::DType;
pub use error::{Error, ErrorKind, Result};
pub use graph::{Graph, Model, Node, NodeId, Value, ValueId, ValueType};
pub use shape::{Dim, Shape};
pub use tensor::{Data, Tensor};
