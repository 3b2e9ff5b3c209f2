//! Ops without a hand-written kernel run the reference interpreter's kernel,
//! compiled to wasm32 (`codegen-wasm/reference`, built by `build.rs`).
//!
//! That module ships once per bundle ([`MODULE`], `reference.wasm`) and is
//! instantiated first; a variant that needs it imports its memory and its
//! `wpc_eval` from import module `wpc`, and its static plan starts above
//! the reference module's data (`__heap_base`). Each such node becomes a
//! call of `wpc_eval` with a [`Call`] stored in the variant's data. Rust's
//! allocator takes the kernels' scratch memory from pages it grows above
//! the plan, so that part of the peak is not known at compile time.
//!
//! Sharing one instance keeps the 1.3 MB of reference code out of every
//! variant: it is downloaded and compiled once, and cached by engines.

use std::sync::OnceLock;

use walrus::ir::Value;
use walrus::{
    ConstExpr, ExportItem, FunctionBuilder, FunctionId, GlobalKind, MemoryId, Module, ValType,
};
use wpc_ir::sym::Expr;
use wpc_ir::wire::{Arg, Call, Place, Sizes};
use wpc_ir::{Error, ErrorKind, Result};

use crate::lower::{Ctx, Tt};

/// The reference kernel module's bytes.
pub static MODULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/reference.wasm"));

/// The import module name under which a variant sees the reference
/// instance's exports.
pub const IMPORT: &str = "wpc";

fn internal(what: &str) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("the embedded reference kernel module is malformed: {what}"),
    )
}

/// Where the reference module's data ends: the first address a variant's
/// plan may use (16-aligned).
pub fn heap_base() -> Result<u64> {
    static BASE: OnceLock<std::result::Result<u64, String>> = OnceLock::new();
    BASE.get_or_init(|| {
        let module = Module::from_buffer(MODULE).map_err(|e| e.to_string())?;
        let global = module
            .exports
            .iter()
            .find_map(|e| match e.item {
                ExportItem::Global(g) if e.name == "__heap_base" => Some(g),
                _ => None,
            })
            .ok_or("no __heap_base export")?;
        match module.globals.get(global).kind {
            GlobalKind::Local(ConstExpr::Value(Value::I32(base))) => {
                Ok((base as u32 as u64).next_multiple_of(16))
            }
            _ => Err("__heap_base is not a constant".into()),
        }
    })
    .clone()
    .map_err(|e| internal(&e))
}

/// Declares the imports a variant built on the reference instance needs:
/// its memory (re-exported as `memory`, so hosts find it in one place) and
/// `wpc_eval`.
pub fn import(module: &mut Module) -> (MemoryId, FunctionId) {
    let (mem, _) = module.add_import_memory(IMPORT, "memory", false, false, 1, None, None);
    module.exports.add("memory", mem);
    let ty = module.types.add(&[ValType::I32], &[ValType::I32]);
    let (eval, _) = module.add_import_func(IMPORT, "wpc_eval", ty);
    (mem, eval)
}

fn arg(t: Tt) -> Arg {
    Arg {
        dtype: t.dtype,
        shape: t.dims,
        at: Place::Memory(t.addr),
    }
}

/// Input `i` of the node: in memory, or computed from the run's sizes.
fn input(ctx: &mut Ctx, i: usize) -> Result<Arg> {
    let v = ctx.input_id(i)?;
    if let Some(s) = ctx.size_values(v) {
        return Ok(Arg {
            dtype: ctx.value_dtype(v)?,
            shape: s.shape.iter().map(|&d| Expr::constant(d as i64)).collect(),
            at: Place::Values(s.elems.clone()),
        });
    }
    ctx.input(i).map(arg)
}

/// Lowers the node to a `wpc_eval` call; a failing kernel traps (the host
/// reads the reason through `wpc_error_ptr`/`wpc_error_len`).
pub fn lower(ctx: &mut Ctx, f: &mut FunctionBuilder, eval: FunctionId) -> Result<()> {
    // Each slot of the node: its tensor, or None where it is omitted.
    let slots = |ctx: &mut Ctx, outputs: bool| -> Result<Vec<Option<Arg>>> {
        let n = if outputs {
            ctx.node.outputs.len()
        } else {
            ctx.node.inputs.len()
        };
        (0..n)
            .map(|i| match outputs {
                false if ctx.has_input(i) => input(ctx, i).map(Some),
                true if ctx.wants_output(i) => ctx.output(i).map(|t| Some(arg(t))),
                _ => Ok(None),
            })
            .collect()
    };
    let inputs = slots(ctx, false)?;
    let outputs = slots(ctx, true)?;
    let call = Call {
        name: ctx.node.name.clone(),
        op: ctx.node.op.clone(),
        domain: ctx.node.domain.clone(),
        opset: ctx.opset,
        attrs: ctx.node.attrs.clone(),
        inputs,
        outputs,
        sizes: ctx.sizes.map_or_else(Sizes::default, |t| Sizes {
            addr: t.addr,
            names: t.dims.clone(),
            counted: ctx.counted_by_outputs(),
        }),
    };
    let at = ctx.data(call.encode()?);
    f.func_body().i32_const(at as i32).call(eval).if_else(
        None,
        |failed| {
            failed.unreachable();
        },
        |_| {},
    );
    Ok(())
}
