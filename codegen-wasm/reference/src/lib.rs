//! The reference interpreter's op kernels, built for `wasm32-unknown-unknown`
//! and merged into every WebAssembly variant that has a node without a
//! hand-written kernel (see `wpc-codegen-wasm`'s `reference` module).
//!
//! Generated code calls [`wpc_eval`] with the address of a
//! [`wpc_ir::wire::Call`] in its data; the call names the op, its
//! attributes and where each input and output lives in linear memory. The
//! inputs are copied into tensors, the registry's `eval` runs, and the
//! outputs are checked against the compiled shapes and written back.
//! Where sizes are dynamic, the call's shapes are expressions over the
//! run's dims, read from the size table the host wrote.
//! Memory the kernels allocate comes from Rust's allocator, which grows
//! linear memory above everything the static plan placed.

use std::cell::RefCell;

use wpc_ir::ops::{EvalCtx, SubgraphRunner, lookup};
use wpc_ir::wire::{Arg, Call, Place, Sizes};
use wpc_ir::{Data, Error, ErrorKind, Graph, Node, Result, Tensor, ValueId};

thread_local! {
    /// The last failure's message, for the host to read after a trap.
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
    /// The last failure's kind: see [`wpc_error_kind`].
    static LAST_KIND: RefCell<u32> = const { RefCell::new(0) };
}

/// Evaluates the node call at `call` (an address in linear memory).
/// Returns 0 on success; otherwise 1, with the message available through
/// [`wpc_error_ptr`] and [`wpc_error_len`].
#[unsafe(no_mangle)]
pub extern "C" fn wpc_eval(call: u32) -> u32 {
    match eval(call) {
        Ok(()) => 0,
        Err(e) => {
            LAST_ERROR.with(|m| *m.borrow_mut() = e.to_string());
            let kind = if e.kind == ErrorKind::Unsupported {
                2
            } else {
                1
            };
            LAST_KIND.with(|k| *k.borrow_mut() = kind);
            1
        }
    }
}

/// What the last failure was: 0 none, 1 an error in the model or its
/// inputs, 2 something the reference kernels do not support.
#[unsafe(no_mangle)]
pub extern "C" fn wpc_error_kind() -> u32 {
    LAST_KIND.with(|k| *k.borrow())
}

/// The address of the last error's UTF-8 message.
#[unsafe(no_mangle)]
pub extern "C" fn wpc_error_ptr() -> u32 {
    LAST_ERROR.with(|m| m.borrow().as_ptr() as usize as u32)
}

/// The length in bytes of the last error's message.
#[unsafe(no_mangle)]
pub extern "C" fn wpc_error_len() -> u32 {
    LAST_ERROR.with(|m| m.borrow().len() as u32)
}

/// `len` bytes of linear memory at `addr`.
fn memory(addr: u32, len: usize) -> &'static mut [u8] {
    // SAFETY: in a wasm32 module an address is a pointer into the one linear
    // memory. The compiler placed every call and tensor inside the static
    // plan, below the heap, so nothing Rust owns aliases these bytes.
    unsafe { std::slice::from_raw_parts_mut(addr as usize as *mut u8, len) }
}

/// The run's value of each dim of `sizes`, read from its table.
fn dims(sizes: &Sizes) -> Vec<(String, i64)> {
    sizes
        .names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let at = sizes.addr + 4 * i as u32;
            let v = u32::from_le_bytes(memory(at, 4).try_into().expect("4 bytes"));
            (name.clone(), i64::from(v))
        })
        .collect()
}

/// Evaluates sizes at the run's dims.
struct At(Vec<(String, i64)>);

impl At {
    fn eval(&self, e: &wpc_ir::sym::Expr) -> Result<i64> {
        e.eval(&|s| self.0.iter().find(|(n, _)| n == s).map(|(_, v)| *v))
            .ok_or_else(|| Error::invalid(format!("size {e} has no value at this run's sizes")))
    }

    fn shape(&self, arg: &Arg) -> Result<Vec<usize>> {
        arg.shape
            .iter()
            .map(|d| {
                let v = self.eval(d)?;
                usize::try_from(v).map_err(|_| Error::invalid(format!("size {d} is {v}")))
            })
            .collect()
    }

    /// The argument as a tensor: read from memory, or computed from sizes.
    fn tensor(&self, arg: &Arg) -> Result<Tensor> {
        let shape = self.shape(arg)?;
        let data = match &arg.at {
            Place::Memory(addr) => {
                let len = shape.iter().product::<usize>() * arg.dtype.size();
                Data::from_le_bytes(arg.dtype, memory(*addr, len))
            }
            Place::Values(values) => {
                let ints = values
                    .iter()
                    .map(|v| self.eval(v))
                    .collect::<Result<Vec<i64>>>()?;
                Tensor::i64s(vec![ints.len()], ints)
                    .cast(arg.dtype)
                    .data()
                    .clone()
            }
        };
        Ok(Tensor::new(shape, data))
    }
}

/// Writes the sizes of the dims `want`'s shape counts (those only the
/// data decides) from what the kernel computed, into the run's table and
/// into `at`. Memory was planned for each at its most, so the output fits.
fn count(sizes: &Sizes, at: &mut At, want: &Arg, got: &Tensor) -> Result<()> {
    for (d, &n) in want.shape.iter().zip(got.shape()) {
        let Some(name) = d.as_sym().filter(|s| sizes.counted.iter().any(|c| c == s)) else {
            continue;
        };
        let slot =
            sizes.names.iter().position(|s| s == name).ok_or_else(|| {
                Error::invalid(format!("the size table has no place for '{name}'"))
            })?;
        let n32 = u32::try_from(n)
            .map_err(|_| Error::invalid(format!("'{name}' is {n}, over 32 bits")))?;
        memory(sizes.addr + 4 * slot as u32, 4).copy_from_slice(&n32.to_le_bytes());
        match at.0.iter_mut().find(|(s, _)| s == name) {
            Some((_, v)) => *v = i64::from(n32),
            None => at.0.push((name.to_string(), i64::from(n32))),
        }
    }
    Ok(())
}

struct NoSubgraphs;

impl SubgraphRunner for NoSubgraphs {
    fn run(&self, _: &Graph, _: Vec<Tensor>) -> Result<Vec<Tensor>> {
        Err(Error::unsupported("subgraphs do not run in WebAssembly"))
    }
}

fn eval(addr: u32) -> Result<()> {
    let len = u32::from_le_bytes(memory(addr, 4).try_into().expect("4 bytes"));
    let call = Call::decode(memory(addr, len as usize))?;
    let context = Error::node_context(&call.name, &call.op);
    eval_call(call).map_err(|e| e.within(context))
}

fn eval_call(call: Call) -> Result<()> {
    let def = lookup(&call.domain, &call.op)
        .ok_or_else(|| Error::unsupported(format!("op {} is not supported", call.op)))?;
    let at = At(dims(&call.sizes));
    let inputs: Vec<Option<Tensor>> = call
        .inputs
        .iter()
        .map(|a| a.as_ref().map(|a| at.tensor(a)).transpose())
        .collect::<Result<_>>()?;
    // The node refers to its values by position; `eval` reads only the
    // presence of each and its tensor.
    let present = |args: &[Option<Arg>]| {
        args.iter()
            .enumerate()
            .map(|(i, a)| a.as_ref().map(|_| ValueId::from_index(i)))
            .collect()
    };
    let node = Node {
        name: call.name,
        op: call.op.clone(),
        domain: call.domain.clone(),
        inputs: present(&call.inputs),
        outputs: present(&call.outputs),
        attrs: call.attrs,
    };
    let ctx = EvalCtx {
        node: &node,
        inputs: inputs.iter().map(Option::as_ref).collect(),
        opset: call.opset,
        subgraphs: &NoSubgraphs,
    };
    let results = (def.eval)(&ctx)?;
    let mut at = at;
    for (i, want) in call.outputs.iter().enumerate() {
        let Some(want) = want else { continue };
        let got = results
            .get(i)
            .ok_or_else(|| Error::invalid(format!("the kernel gave no output {i}")))?;
        count(&call.sizes, &mut at, want, got)?;
        let shape = at.shape(want)?;
        if got.dtype() != want.dtype || got.shape() != shape.as_slice() {
            return Err(Error::invalid(format!(
                "output {i} is {} {:?}, but it was compiled as {} {:?}",
                got.dtype(),
                got.shape(),
                want.dtype,
                shape
            )));
        }
        let Place::Memory(addr) = want.at else {
            return Err(Error::invalid(format!("output {i} has no place in memory")));
        };
        let bytes = got.to_le_bytes();
        memory(addr, bytes.len()).copy_from_slice(&bytes);
    }
    Ok(())
}
