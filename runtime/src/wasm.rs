//! Runs a bundle's WebAssembly variant natively through wasmtime
//! (Cranelift). The module is compiled and instantiated once, the weights
//! copied from the shards straight into its linear memory at their planned
//! offsets; each run writes the inputs, calls `run` and reads the outputs.
//! Tensors sit in memory as their little-endian bytes. A variant with
//! nodes that run the reference kernels is linked to an instance of the
//! bundle's reference module, which is compiled once per process and
//! kept compiled on disk (see [`compile_shared`]) for the next one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use wasmtime::{Config, Engine, Instance, Linker, Memory, Module, Store, TypedFunc};
use wpc_ir::{Data, Tensor};

use crate::bundle::Bundle;
use crate::manifest::{DimRange, MemoryTensor, SizeTable, TensorInfo, Variant, WasmVariant};
use crate::{BundleError, Error, Result};

/// A loaded wasm variant, ready to run.
pub struct Session {
    store: Store<()>,
    /// The instance that keeps kernel error messages: the reference
    /// instance when there is one.
    errors: Instance,
    memory: Memory,
    run: TypedFunc<(), ()>,
    /// The bundle's dynamic dims and where the run's sizes go.
    dims: Vec<DimRange>,
    sizes: Option<SizeTable>,
    inputs: Vec<(TensorInfo, MemoryTensor)>,
    outputs: Vec<(TensorInfo, MemoryTensor)>,
}

fn engine_error(what: &str) -> impl Fn(wasmtime::Error) -> Error + '_ {
    move |e| Error::Wasm(format!("{what}: {e:#}"))
}

/// One engine per process, so compiled modules can be shared.
fn engine() -> Result<&'static Engine> {
    static ENGINE: OnceLock<std::result::Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config
                .wasm_simd(true)
                .wasm_relaxed_simd(true)
                .cranelift_opt_level(wasmtime::OptLevel::Speed);
            Engine::new(&config).map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(|e| Error::Wasm(format!("starting wasmtime: {e}")))
}

/// Compiles `bytes`, reusing an earlier compilation of the same bytes in
/// this process, and across processes through the on-disk cache (the
/// reference kernel module is the same in every bundle of this wpc, and
/// compiling it costs seconds; a `wpc run` should not pay that each time).
fn compile_shared(bytes: &[u8], what: &str) -> Result<Module> {
    static CACHE: OnceLock<Mutex<HashMap<Arc<[u8]>, Module>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(m) = cache.get(bytes) {
        return Ok(m.clone());
    }
    let engine = engine()?;
    let file = cache_dir().map(|dir| dir.join(format!("{}.cwasm", cache_key(engine, bytes))));
    // SAFETY: `deserialize_file` trusts the file to be wasmtime's own
    // output for this engine's configuration: it is read only from a
    // directory that is this user's and writable by no one else
    // (`trusted`), written only by `serialize` below under a key that
    // includes the module's hash and the engine's compatibility hash, and
    // wasmtime checks the header and version before using it.
    let cached = file
        .as_ref()
        .filter(|f| trusted(f))
        .and_then(|f| unsafe { Module::deserialize_file(engine, f) }.ok());
    let module = match cached {
        Some(m) => m,
        None => {
            let m = Module::new(engine, bytes).map_err(engine_error(what))?;
            if let (Some(file), Ok(compiled)) = (&file, m.serialize()) {
                // A cache that cannot be written only costs time later.
                if write_atomically(file, &compiled).is_ok() {
                    prune(file.parent().expect("cache files live in a directory"));
                }
            }
            m
        }
    };
    cache.insert(Arc::from(bytes), module.clone());
    Ok(module)
}

/// Where compiled modules are kept: `$WPC_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/wpc/wasmtime`, else `~/.cache/wpc/wasmtime`; `None`
/// (no disk cache) when none is set or `WPC_CACHE_DIR` is empty.
fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = std::env::var_os("WPC_CACHE_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let base = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wpc").join("wasmtime"))
}

/// The module's sha256 and the engine's compatibility hash: a cached
/// file is only ever read by an engine that can run it.
fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!(
        "{}-{:016x}",
        &crate::bundle::sha256_hex(bytes)[..32],
        h.finish()
    )
}

/// Compiled modules kept on disk; beyond this, the least recently
/// written are removed.
const CACHE_ENTRIES: usize = 64;

/// Whether `file` may be loaded as compiled code: it and its directory
/// are regular (no symbolic links), owned by this user and writable by no
/// one else, so no other user can have put machine code there.
fn trusted(file: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let ours = |p: &Path, dir: bool| {
            std::fs::symlink_metadata(p).is_ok_and(|m| {
                (if dir { m.is_dir() } else { m.is_file() })
                    && m.uid() == me
                    && m.mode() & 0o022 == 0
            })
        };
        file.parent().is_some_and(|d| ours(d, true)) && ours(file, false)
    }
    #[cfg(not(unix))]
    {
        file.is_file()
    }
}

/// Keeps the newest [`CACHE_ENTRIES`] compiled modules in `dir` (old
/// wpc versions' and old bundles' entries are never read again).
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    for (_, old) in files.into_iter().skip(CACHE_ENTRIES) {
        let _ = std::fs::remove_file(old);
    }
}

/// Writes `bytes` to `file` through a temporary sibling and a rename, so
/// a concurrent reader never sees half a file. The directory is made
/// private to this user.
fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().expect("cache files live in a directory");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&tmp)?, bytes)?;
    std::fs::rename(&tmp, file).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
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
        let engine = engine()?;
        let module = Module::new(engine, bundle.file(&variant.module)?)
            .map_err(engine_error(&variant.module))?;
        let mut store = Store::new(engine, ());
        let mut linker = Linker::new(engine);
        let mut errors = None;
        if let Some(file) = &variant.reference {
            let reference = compile_shared(bundle.file(file)?, file)?;
            let instance =
                Instance::new(&mut store, &reference, &[]).map_err(engine_error(file))?;
            // The variant's plan needs `memory_bytes` of the shared memory.
            let memory = instance
                .get_memory(&mut store, "memory")
                .ok_or_else(|| Error::Wasm(format!("{file} exports no memory")))?;
            let have = memory.data_size(&store) as u64;
            if variant.memory_bytes > have {
                let pages = (variant.memory_bytes - have).div_ceil(65_536);
                memory
                    .grow(&mut store, pages)
                    .map_err(engine_error("growing memory"))?;
            }
            linker
                .instance(&mut store, "wpc", instance)
                .map_err(engine_error(file))?;
            errors = Some(instance);
        }
        let instance = linker
            .instantiate(&mut store, &module)
            .map_err(engine_error(&variant.module))?;
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
            let src = bytes.get(start..end).ok_or_else(|| {
                Error::format(
                    shard.file.clone(),
                    format!("range {start}..{end} is past the shard's end"),
                )
            })?;
            memory
                .write(&mut store, w.offset as usize, src)
                .map_err(|e| Error::Wasm(format!("placing weights: {e}")))?;
        }
        Ok(Session {
            store,
            errors: errors.unwrap_or(instance),
            memory,
            run,
            dims: m.dims.clone(),
            sizes: variant.sizes.clone(),
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

    /// Runs the model on `inputs` (in the manifest's order), of any sizes
    /// within the bundle's dims.
    pub fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let infos: Vec<TensorInfo> = self.inputs.iter().map(|(i, _)| i.clone()).collect();
        let mut sizes = crate::manifest::bind_inputs(&self.dims, &infos, inputs)?;
        let counted: Vec<String> = (self.dims.iter())
            .filter(|r| r.counted_in.is_some())
            .map(|r| r.name.clone())
            .collect();
        let counted = |d: &str| counted.iter().any(|c| c == d);
        if let Some(table) = &self.sizes {
            let mut bytes = Vec::with_capacity(4 * table.dims.len());
            for d in &table.dims {
                // A size the data decides is written by its kernel.
                if counted(d) {
                    bytes.extend_from_slice(&0u32.to_le_bytes());
                    continue;
                }
                let v = sizes.0.get(d).copied().ok_or_else(|| {
                    Error::Bundle(BundleError::Input(format!(
                        "no input gives the size of dim '{d}'"
                    )))
                })?;
                bytes.extend_from_slice(&(v as u32).to_le_bytes());
            }
            self.memory
                .write(&mut self.store, table.offset as usize, &bytes)
                .map_err(|e| Error::Wasm(format!("writing the run's sizes: {e}")))?;
        }
        for (t, (info, slot)) in inputs.iter().zip(&self.inputs) {
            self.memory
                .write(&mut self.store, slot.offset as usize, &t.to_le_bytes())
                .map_err(|e| Error::Wasm(format!("writing input '{}': {e}", info.name)))?;
        }
        self.execute()?;
        if let Some(table) = &self.sizes {
            for (i, d) in table.dims.iter().enumerate().filter(|(_, d)| counted(d)) {
                let mut word = [0u8; 4];
                self.memory
                    .read(&self.store, table.offset as usize + 4 * i, &mut word)
                    .map_err(|e| Error::Wasm(format!("reading the size of '{d}': {e}")))?;
                sizes
                    .0
                    .insert(d.clone(), i64::from(u32::from_le_bytes(word)));
            }
        }
        self.outputs
            .iter()
            .map(|(info, slot)| {
                let dtype = info.dtype()?;
                let shape = info.shape_at(&sizes)?;
                let mut bytes = vec![0u8; dtype.size() * shape.iter().product::<usize>()];
                self.memory
                    .read(&self.store, slot.offset as usize, &mut bytes)
                    .map_err(|e| Error::Wasm(format!("reading output '{}': {e}", info.name)))?;
                Ok(Tensor::new(shape, Data::from_le_bytes(dtype, &bytes)))
            })
            .collect()
    }

    /// Calls `run` on whatever the memory holds (for benchmarks).
    pub fn execute(&mut self) -> Result<()> {
        match self.run.call(&mut self.store, ()) {
            Ok(()) => Ok(()),
            Err(e) => Err(match self.kernel_error() {
                Some((2, reason)) => Error::Unsupported(reason),
                Some((_, reason)) => Error::Wasm(format!("running the model: {reason}")),
                None => Error::Wasm(format!("running the model: {e:#}")),
            }),
        }
    }

    /// Why a reference kernel failed, when one did: the module keeps the
    /// message (see `wpc-wasm-reference`).
    fn kernel_error(&mut self) -> Option<(u32, String)> {
        let mut get = |name: &str| {
            let f = self
                .errors
                .get_typed_func::<(), u32>(&mut self.store, name)
                .ok()?;
            f.call(&mut self.store, ()).ok()
        };
        let (kind, ptr, len) = (
            get("wpc_error_kind")?,
            get("wpc_error_ptr")?,
            get("wpc_error_len")?,
        );
        let mut bytes = vec![0u8; len as usize];
        self.memory
            .read(&self.store, ptr as usize, &mut bytes)
            .ok()?;
        let message = String::from_utf8(bytes).ok()?;
        (kind != 0).then_some((kind, message))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wpc-wasm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("cache")
    }

    #[test]
    fn only_private_files_of_this_user_are_loaded_as_compiled_code() {
        let dir = scratch("trust");
        let file = dir.join("a.cwasm");
        write_atomically(&file, b"code").unwrap();
        assert!(trusted(&file), "what wpc writes is trusted");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!trusted(&file), "a file others may write is not");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!trusted(&file), "nor one in a directory others may write");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = dir.join("b.cwasm");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(!trusted(&link), "nor a symbolic link");
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn the_cache_keeps_its_newest_entries() {
        let dir = scratch("prune");
        for i in 0..CACHE_ENTRIES + 3 {
            let file = dir.join(format!("{i:03}.cwasm"));
            write_atomically(&file, b"code").unwrap();
            let at = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(i as u64);
            std::fs::File::options()
                .write(true)
                .open(&file)
                .unwrap()
                .set_modified(at)
                .unwrap();
        }
        prune(&dir);
        let left = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(left, CACHE_ENTRIES);
        assert!(
            !dir.join("000.cwasm").exists()
                && dir.join(format!("{:03}.cwasm", CACHE_ENTRIES + 2)).exists()
        );
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }
}
