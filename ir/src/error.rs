//! The error type of the IR crate: what went wrong, where, and why.

use std::fmt;

/// What class of problem an [`Error`] reports; scripts and the conformance
/// runner tell "the model is bad" from "wpc does not do this yet" by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file could not be read.
    Io,
    /// The bytes are not an ONNX protobuf.
    Decode,
    /// The model breaks the ONNX spec (dangling names, bad attributes, shape mismatches).
    Invalid,
    /// Valid ONNX that wpc does not support (yet): an op, a dtype, a construct.
    Unsupported,
    /// A bug in wpc (a kernel panicked); the context says where.
    Internal,
}

/// An error with its context: the file, node and op it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// Where: `model.onnx`, `node 'conv1' (Conv)`, `initializer 'w'`, outermost first.
    pub context: Vec<String>,
    /// Why, in words a user can act on.
    pub reason: String,
}

impl Error {
    pub fn new(kind: ErrorKind, reason: impl Into<String>) -> Error {
        Error {
            kind,
            context: Vec::new(),
            reason: reason.into(),
        }
    }

    pub fn invalid(reason: impl Into<String>) -> Error {
        Error::new(ErrorKind::Invalid, reason)
    }

    pub fn unsupported(reason: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unsupported, reason)
    }

    /// Adds an outer context (`in model.onnx`, `in node 'x'`).
    pub fn within(mut self, context: impl Into<String>) -> Error {
        self.context.insert(0, context.into());
        self
    }

    /// The short description of a node used as error context.
    pub fn node_context(name: &str, op: &str) -> String {
        if name.is_empty() {
            format!("node of op {op}")
        } else {
            format!("node '{name}' (op {op})")
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.context {
            write!(f, "{c}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Error {}

/// Result alias of the IR crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns early with an [`ErrorKind::Invalid`] error built by `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::error::Error::invalid(format!($($arg)*))) };
}

/// Returns early with an [`ErrorKind::Unsupported`] error built by `format!`.
#[macro_export]
macro_rules! unsupported {
    ($($arg:tt)*) => { return Err($crate::error::Error::unsupported(format!($($arg)*))) };
}
