//! A compact binary form of one node call: the op, its attributes and the
//! dtype, shape and memory address of every input and output.
//!
//! The WebAssembly backend runs ops it has no hand-written kernel for
//! through this crate's reference kernels compiled to wasm32 (the
//! `wpc-wasm-reference` module). The generated code passes each such node
//! to it as a [`Call`] encoded here and stored in the module's data, so the
//! encoder (compile time) and the decoder (inside the module) are one
//! definition. All integers are little-endian; the first `u32` is the
//! call's length in bytes.
//!
//! A bundle compiled for dynamic sizes keeps the run's sizes in a table
//! in linear memory (one `u32` per dim, written by the host before each
//! run); a call then gives shapes as expressions over those dims
//! ([`Sizes`]), which the module evaluates when the node runs.

use crate::attr::{Attr, Attrs};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::sym::{Expr, Term};
use crate::tensor::{Data, Tensor};

/// A tensor argument: its dtype, its shape (each dim a size, or an
/// expression over the run's dims) and where its elements are.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub dtype: DType,
    pub shape: Vec<Expr>,
    pub at: Place,
}

/// Where an argument's elements come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Place {
    /// Linear memory at this byte address, little-endian at the dtype's
    /// natural width.
    Memory(u32),
    /// A shape value that only the run's sizes decide (e.g. the target
    /// shape of a Reshape over a dynamic batch): one expression per
    /// element, evaluated when the node runs.
    Values(Vec<Expr>),
}

/// Where the run's dim sizes are: one little-endian `u32` per dim of
/// `names`, in order, from byte address `addr`. Empty for a call whose
/// shapes are all static.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sizes {
    pub addr: u32,
    pub names: Vec<String>,
    /// The dims only the data decides that this call's outputs count
    /// (NonZero's): the module writes each one's size into the table,
    /// where later kernels and the host read it.
    pub counted: Vec<String>,
}

impl Arg {
    /// An argument of static `shape` in memory at `addr`.
    pub fn fixed(dtype: DType, shape: &[usize], addr: u32) -> Arg {
        Arg {
            dtype,
            shape: shape.iter().map(|&d| Expr::constant(d as i64)).collect(),
            at: Place::Memory(addr),
        }
    }
}

/// One node to evaluate: `inputs`/`outputs` are by position, `None` for an
/// omitted optional one.
#[derive(Clone, Debug)]
pub struct Call {
    /// The node's name, for error messages.
    pub name: String,
    pub op: String,
    pub domain: String,
    /// The model's default-domain opset.
    pub opset: u32,
    pub attrs: Attrs,
    pub inputs: Vec<Option<Arg>>,
    pub outputs: Vec<Option<Arg>>,
    /// The size table the shapes' dims are read from.
    pub sizes: Sizes,
}

// Attribute tags.
const FLOAT: u8 = 0;
const INT: u8 = 1;
const STRING: u8 = 2;
const TENSOR: u8 = 3;
const FLOATS: u8 = 4;
const INTS: u8 = 5;
const STRINGS: u8 = 6;
const TENSORS: u8 = 7;

impl Call {
    /// The call's bytes. Fails (unsupported) for graph attributes: the
    /// reference module runs single nodes, not subgraphs.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut w = Writer(vec![0; 4]);
        w.str(&self.name);
        w.str(&self.op);
        w.str(&self.domain);
        w.u32(self.opset);
        w.len(self.attrs.0.len());
        for (name, attr) in &self.attrs.0 {
            w.str(name);
            w.attr(name, attr)?;
        }
        for args in [&self.inputs, &self.outputs] {
            w.len(args.len());
            for arg in args {
                match arg {
                    None => w.0.push(0),
                    Some(a) => {
                        w.0.push(1);
                        w.u32(a.dtype.onnx_code() as u32);
                        w.exprs(&a.shape);
                        match &a.at {
                            Place::Memory(addr) => {
                                w.0.push(0);
                                w.u32(*addr);
                            }
                            Place::Values(values) => {
                                w.0.push(1);
                                w.exprs(values);
                            }
                        }
                    }
                }
            }
        }
        w.u32(self.sizes.addr);
        w.len(self.sizes.names.len());
        self.sizes.names.iter().for_each(|n| w.str(n));
        w.len(self.sizes.counted.len());
        self.sizes.counted.iter().for_each(|n| w.str(n));
        let len = w.0.len() as u32;
        w.0[..4].copy_from_slice(&len.to_le_bytes());
        Ok(w.0)
    }

    /// Reads a call back from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Call> {
        let mut r = Reader { bytes, at: 0 };
        let len = r.u32()? as usize;
        r.bytes = bytes
            .get(..len)
            .ok_or_else(|| Error::invalid("node call is truncated"))?;
        let name = r.str()?;
        let op = r.str()?;
        let domain = r.str()?;
        let opset = r.u32()?;
        let mut attrs = Attrs::default();
        for _ in 0..r.u32()? {
            let name = r.str()?;
            let attr = r.attr()?;
            attrs.0.push((name, attr));
        }
        let mut args = || -> Result<Vec<Option<Arg>>> {
            (0..r.u32()?)
                .map(|_| {
                    Ok(match r.u8()? {
                        0 => None,
                        _ => Some(Arg {
                            dtype: r.dtype()?,
                            shape: r.exprs()?,
                            at: match r.u8()? {
                                0 => Place::Memory(r.u32()?),
                                _ => Place::Values(r.exprs()?),
                            },
                        }),
                    })
                })
                .collect()
        };
        let inputs = args()?;
        let outputs = args()?;
        let sizes = Sizes {
            addr: r.u32()?,
            names: (0..r.u32()?).map(|_| r.str()).collect::<Result<_>>()?,
            counted: (0..r.u32()?).map(|_| r.str()).collect::<Result<_>>()?,
        };
        Ok(Call {
            name,
            op,
            domain,
            opset,
            attrs,
            inputs,
            outputs,
            sizes,
        })
    }
}

// Expression tags: an integer, a dim, an operation on operands.
const INT_TERM: u8 = 0;
const SYM_TERM: u8 = 1;
const OP_TERM: u8 = 2;

/// The operations a [`Term::Op`] names, as `&'static str` for decoding.
const TERM_OPS: [&str; 6] = ["+", "*", "floor_div", "mod", "max", "min"];

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn len(&mut self, n: usize) {
        self.u32(n as u32);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn dims(&mut self, dims: &[usize]) {
        self.len(dims.len());
        for &d in dims {
            self.0.extend_from_slice(&(d as u64).to_le_bytes());
        }
    }

    fn term(&mut self, t: &Term) {
        match t {
            Term::Int(v) => {
                self.0.push(INT_TERM);
                self.0.extend_from_slice(&v.to_le_bytes());
            }
            Term::Sym(s) => {
                self.0.push(SYM_TERM);
                self.str(s);
            }
            Term::Op(op, args) => {
                self.0.push(OP_TERM);
                self.str(op);
                self.len(args.len());
                args.iter().for_each(|a| self.term(a));
            }
        }
    }

    fn exprs(&mut self, exprs: &[Expr]) {
        self.len(exprs.len());
        exprs.iter().for_each(|e| self.term(&e.term()));
    }

    fn tensor(&mut self, t: &Tensor) {
        self.u32(t.dtype().onnx_code() as u32);
        self.dims(t.shape());
        self.bytes(&t.to_le_bytes());
    }

    fn attr(&mut self, name: &str, attr: &Attr) -> Result<()> {
        match attr {
            Attr::Float(v) => {
                self.0.push(FLOAT);
                self.0.extend_from_slice(&v.to_le_bytes());
            }
            Attr::Int(v) => {
                self.0.push(INT);
                self.0.extend_from_slice(&v.to_le_bytes());
            }
            Attr::String(s) => {
                self.0.push(STRING);
                self.str(s);
            }
            Attr::Tensor(t) => {
                self.0.push(TENSOR);
                self.tensor(t);
            }
            Attr::Floats(v) => {
                self.0.push(FLOATS);
                self.len(v.len());
                v.iter()
                    .for_each(|x| self.0.extend_from_slice(&x.to_le_bytes()));
            }
            Attr::Ints(v) => {
                self.0.push(INTS);
                self.len(v.len());
                v.iter()
                    .for_each(|x| self.0.extend_from_slice(&x.to_le_bytes()));
            }
            Attr::Strings(v) => {
                self.0.push(STRINGS);
                self.len(v.len());
                v.iter().for_each(|s| self.str(s));
            }
            Attr::Tensors(v) => {
                self.0.push(TENSORS);
                self.len(v.len());
                v.iter().for_each(|t| self.tensor(t));
            }
            Attr::Graph(_) | Attr::Graphs(_) => {
                return Err(Error::unsupported(format!(
                    "attribute '{name}' is a subgraph, which the WebAssembly backend cannot run yet"
                )));
            }
        }
        Ok(())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| Error::invalid("node call is truncated"))?;
        let b = &self.bytes[self.at..end];
        self.at = end;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn str(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| Error::invalid("node call holds a string that is not UTF-8"))
    }

    fn dtype(&mut self) -> Result<DType> {
        let code = self.u32()?;
        DType::from_onnx(code as i32)
            .ok_or_else(|| Error::invalid(format!("node call holds unknown dtype {code}")))
    }

    fn dims(&mut self) -> Result<Vec<usize>> {
        (0..self.u32()?)
            .map(|_| Ok(u64::from_le_bytes(self.array()?) as usize))
            .collect()
    }

    fn term(&mut self) -> Result<Term> {
        Ok(match self.u8()? {
            INT_TERM => Term::Int(i64::from_le_bytes(self.array()?)),
            SYM_TERM => Term::Sym(self.str()?),
            OP_TERM => {
                let name = self.str()?;
                let op = TERM_OPS
                    .into_iter()
                    .find(|o| *o == name)
                    .ok_or_else(|| Error::invalid(format!("node call holds size op '{name}'")))?;
                let args = (0..self.u32()?)
                    .map(|_| self.term())
                    .collect::<Result<_>>()?;
                Term::Op(op, args)
            }
            tag => return Err(Error::invalid(format!("node call holds size tag {tag}"))),
        })
    }

    fn exprs(&mut self) -> Result<Vec<Expr>> {
        (0..self.u32()?)
            .map(|_| {
                let t = self.term()?;
                Expr::from_term(&t)
                    .ok_or_else(|| Error::invalid("node call holds a malformed size"))
            })
            .collect()
    }

    fn tensor(&mut self) -> Result<Tensor> {
        let dtype = self.dtype()?;
        let shape = self.dims()?;
        let data = Data::from_le_bytes(dtype, self.bytes()?);
        if data.len() != shape.iter().product::<usize>() {
            return Err(Error::invalid("node call holds a tensor of the wrong size"));
        }
        Ok(Tensor::new(shape, data))
    }

    fn attr(&mut self) -> Result<Attr> {
        let tag = self.u8()?;
        let list = |r: &mut Self| r.u32().map(|n| 0..n);
        Ok(match tag {
            FLOAT => Attr::Float(f32::from_le_bytes(self.array()?)),
            INT => Attr::Int(i64::from_le_bytes(self.array()?)),
            STRING => Attr::String(self.str()?),
            TENSOR => Attr::Tensor(self.tensor()?),
            FLOATS => Attr::Floats(
                list(self)?
                    .map(|_| Ok(f32::from_le_bytes(self.array()?)))
                    .collect::<Result<_>>()?,
            ),
            INTS => Attr::Ints(
                list(self)?
                    .map(|_| Ok(i64::from_le_bytes(self.array()?)))
                    .collect::<Result<_>>()?,
            ),
            STRINGS => Attr::Strings(list(self)?.map(|_| self.str()).collect::<Result<_>>()?),
            TENSORS => Attr::Tensors(list(self)?.map(|_| self.tensor()).collect::<Result<_>>()?),
            _ => {
                return Err(Error::invalid(format!(
                    "node call holds attribute tag {tag}"
                )));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_round_trip_with_every_attribute_kind() {
        let mut attrs = Attrs::default();
        attrs.insert("f", Attr::Float(-1.5));
        attrs.insert("i", Attr::Int(i64::MIN));
        attrs.insert("s", Attr::String("µ".into()));
        attrs.insert("t", Attr::Tensor(Tensor::i64s(vec![2], vec![3, -4])));
        attrs.insert("fs", Attr::Floats(vec![0.25, f32::INFINITY]));
        attrs.insert("is", Attr::Ints(vec![]));
        attrs.insert("ss", Attr::Strings(vec!["a".into(), String::new()]));
        attrs.insert(
            "ts",
            Attr::Tensors(vec![Tensor::from_vec(vec![1, 1], vec![true])]),
        );
        let arg = |dtype, shape: &[usize], addr| Some(Arg::fixed(dtype, shape, addr));
        let seq = Expr::sym("seq");
        let dynamic = Arg {
            dtype: DType::I64,
            shape: vec![Expr::constant(3)],
            at: Place::Values(vec![
                seq.floor_div(&Expr::constant(2)),
                seq.scale(-4),
                seq.max_of(&Expr::sym("b")).rem(&Expr::constant(7)),
            ]),
        };
        let call = Call {
            name: "n1".into(),
            op: "Op".into(),
            domain: "com.example".into(),
            opset: 21,
            attrs,
            inputs: vec![arg(DType::F64, &[2, 0, 3], 64), None, Some(dynamic)],
            outputs: vec![None, arg(DType::Bool, &[], 1 << 31)],
            sizes: Sizes {
                addr: 1024,
                names: vec!["b".into(), "seq".into(), "nz.1".into()],
                counted: vec!["nz.1".into()],
            },
        };
        let bytes = call.encode().unwrap();
        // Trailing bytes after the call are not read.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[9, 9]);
        let back = Call::decode(&padded).unwrap();
        assert_eq!(back.name, "n1");
        assert_eq!(back.op, "Op");
        assert_eq!(back.domain, "com.example");
        assert_eq!(back.opset, 21);
        assert_eq!(back.inputs, call.inputs);
        assert_eq!(back.outputs, call.outputs);
        assert_eq!(back.sizes, call.sizes);
        assert_eq!(format!("{:?}", back.attrs), format!("{:?}", call.attrs));
        assert!(Call::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn subgraph_attributes_are_refused() {
        let mut attrs = Attrs::default();
        attrs.insert("body", Attr::Graph(Box::default()));
        let call = Call {
            name: String::new(),
            op: "Loop".into(),
            domain: String::new(),
            opset: 21,
            attrs,
            inputs: vec![],
            outputs: vec![],
            sizes: Sizes::default(),
        };
        let err = call.encode().unwrap_err().to_string();
        assert!(err.contains("'body' is a subgraph"), "{err}");
    }
}
