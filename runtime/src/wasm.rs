//! Runs a bundle's WebAssembly variant natively through wasmtime
//! (Cranelift). The module is compiled and instantiated once, the weights
//! copied from the shards straight into its linear memory at their planned
//! offsets; each run writes the inputs, calls `run` and reads the outputs.

use wasmtime::{Config, Engine, Instance, Memory, Module, Store, TypedFunc};
use wpc_ir::Tensor;

use crate::bundle::Bundle;
use crate::device_data::{Word, from_words, to_bytes};
use crate::manifest::{MemoryTensor, TensorInfo, Variant, WasmVariant};
use crate::{Error, Result};

/// A loaded wasm variant, ready to run.
pub struct Session {
    store: Store<()>,
    memory: Memory,
    run: TypedFunc<(), ()>,
    inputs: Vec<(TensorInfo, MemoryTensor)>,
    outputs: Vec<(TensorInfo, MemoryTensor)>,
}

fn word_of(t: &MemoryTensor) -> Result<Word> {
    Word::parse(&t.word).ok_or_else(|| Error::Format {
        path: "manifest.json".into(),
        reason: format!("unknown word type '{}'", t.word),
    })
}

fn engine_error(what: &str) -> impl Fn(wasmtime::Error) -> Error + '_ {
    move |e| Error::Wasm(format!("{what}: {e:#}"))
}

/// The names of the bundle's wasm variants, in preference order.
pub fn variants(bundle: &Bundle) -> Vec<&str> {
    bundle
        .manifest
        .variants
        .iter()
        .filter_map(|v| match v {
            Variant::Wasm(w) => Some(w.name.as_str()),
            _ => None,
        })
        .collect()
}

impl Session {
    /// Compiles and instantiates the variant called `name` (e.g.
    /// `wasm-simd`) and writes its weights into memory.
    pub fn load(bundle: &Bundle, name: &str) -> Result<Session> {
        let m = &bundle.manifest;
        let variant: &WasmVariant = m
            .variants
            .iter()
            .find_map(|v| match v {
                Variant::Wasm(w) if w.name == name => Some(w),
                _ => None,
            })
            .ok_or_else(|| {
                Error::Unsatisfied(format!(
                    "the bundle has no '{name}' variant (it has: {})",
                    variants(bundle).join(", ")
                ))
            })?;
        let mut config = Config::new();
        config
            .wasm_simd(true)
            .wasm_relaxed_simd(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(engine_error("starting wasmtime"))?;
        let module = Module::new(&engine, bundle.file(&variant.module)?)
            .map_err(engine_error(&variant.module))?;
        let mut store = Store::new(&engine, ());
        let instance =
            Instance::new(&mut store, &module, &[]).map_err(engine_error(&variant.module))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| Error::Wasm(format!("{} exports no memory", variant.module)))?;
        let run = instance
            .get_typed_func::<(), ()>(&mut store, "run")
            .map_err(engine_error(&variant.module))?;
        for w in &variant.weights {
            let shard = &m.shards[w.range.shard];
            let bytes = bundle.file(&shard.file)?;
            let (start, end) = (
                w.range.offset as usize,
                (w.range.offset + w.range.bytes) as usize,
            );
            let src = bytes.get(start..end).ok_or_else(|| Error::Format {
                path: shard.file.clone(),
                reason: format!("range {start}..{end} is past the shard's end"),
            })?;
            memory
                .write(&mut store, w.offset as usize, src)
                .map_err(|e| Error::Wasm(format!("placing weights: {e}")))?;
        }
        Ok(Session {
            store,
            memory,
            run,
            inputs: m
                .inputs
                .iter()
                .cloned()
                .zip(variant.inputs.clone())
                .collect(),
            outputs: m
                .outputs
                .iter()
                .cloned()
                .zip(variant.outputs.clone())
                .collect(),
        })
    }

    /// Runs the model on `inputs` (in the manifest's order).
    pub fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let infos: Vec<TensorInfo> = self.inputs.iter().map(|(i, _)| i.clone()).collect();
        crate::manifest::check_inputs(&infos, inputs)?;
        for (t, (info, slot)) in inputs.iter().zip(&self.inputs) {
            let bytes = to_bytes(t, word_of(slot)?, &format!("input '{}'", info.name))?;
            self.memory
                .write(&mut self.store, slot.offset as usize, &bytes)
                .map_err(|e| Error::Wasm(format!("writing input '{}': {e}", info.name)))?;
        }
        self.execute()?;
        self.outputs
            .iter()
            .map(|(info, slot)| {
                let mut bytes = vec![0u8; 4 * slot.elements as usize];
                self.memory
                    .read(&self.store, slot.offset as usize, &mut bytes)
                    .map_err(|e| Error::Wasm(format!("reading output '{}': {e}", info.name)))?;
                let words: Vec<u32> = bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Ok(from_words(
                    &words,
                    word_of(slot)?,
                    info.dtype()?,
                    info.dims(),
                ))
            })
            .collect()
    }

    /// Calls `run` on whatever the memory holds (for benchmarks).
    pub fn execute(&mut self) -> Result<()> {
        self.run
            .call(&mut self.store, ())
            .map_err(engine_error("running the model"))
    }
}
