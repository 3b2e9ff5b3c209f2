//! The ONNX front end: decoding `.onnx` files into the graph IR.

mod functions;
pub mod import;
pub mod proto;
pub mod tensor;

pub use import::{MAX_OPSET, MIN_OPSET, load_model, load_model_bytes};
pub use tensor::{decode_tensor, load_tensor_file};
