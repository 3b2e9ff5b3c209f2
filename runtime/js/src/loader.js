// The progressive loader: fetches a bundle's manifest, picks the variant
// the browser can run, then fetches exactly the files that variant needs —
// code first, then weight shards in priority order — streaming each with
// byte-level progress, verifying its sha256 (SubtleCrypto) and keeping it
// in the Cache API so a second load is served locally. The variant starts
// as soon as its code has arrived: pipelines compile (or the module
// instantiates) while the shards are still streaming, and each shard is
// uploaded as soon as it is verified.

import { detect, select } from './detect.js';
import { DisposedError, IntegrityError, MemoryBudgetError, NoUsableVariantError, WpcError } from './errors.js';
import { bindSizes, checkFormat, elementCount, shapeAt } from './manifest.js';
import { loadWasm } from './wasm.js';
import { loadWebGpu } from './webgpu.js';

/** How each backend's variant starts from its fetched files. */
const EXECUTORS = {
  webgpu: (manifest, variant, files, options) => loadWebGpu(manifest, variant, files.read, options),
  wasm: (manifest, variant, files) => loadWasm(manifest, variant.name, files.read, { compile: files.compile }),
};

/** Failures that another variant could get around (the GPU's), as
 * opposed to the bundle's or the caller's, which are surfaced. */
function gpuFailure(variant, error) {
  return variant.backend === 'webgpu' && !(error instanceof IntegrityError) && error?.name !== 'AbortError'
    && !['input', 'bad-bundle', 'fetch'].includes(error?.code);
}

/** The Cache API bucket bundles are kept in. */
const CACHE_NAME = 'wpc-bundles-v1';

/** Whether this is Node (or a runtime that poses as it), where bundles
 * are also directories on disk. */
const NODE = typeof globalThis.process?.versions?.node === 'string';

/**
 * A Node built-in module, imported only when needed, so that the runtime
 * stays a plain ES module that browsers (and bundlers) take as it is.
 * @param {string} name e.g. 'fs/promises'
 * @returns {Promise<any>}
 */
const nodeModule = (name) => import(/* webpackIgnore: true */ /* @vite-ignore */ `node:${name}`);

/** A URL scheme, as opposed to a Windows drive (`C:`). */
const SCHEME = /^[a-z][a-z\d+.-]+:/i;

/**
 * @typedef {{file: string, bytes: number, sha256: string, kind: 'code'|'weights'}} BundleFile
 * @typedef {(loadedBytes: number, totalBytes: number, component: string) => void} ProgressFn
 */

/** Lower-case hex sha256 of `bytes`. */
export async function sha256Hex(bytes) {
  const digest = await globalThis.crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The files `variant` needs, in load order: its code, then the shards its
 * weights come from, by priority.
 * @param {any} manifest
 * @param {any} variant
 * @returns {BundleFile[]}
 */
export function filesFor(manifest, variant) {
  const code = new Map((manifest.code ?? []).map((c) => [c.file, c]));
  const codeFile = (file) => {
    const c = code.get(file);
    if (!c) throw new WpcError('bad-bundle', `the manifest lists no size or sha256 for ${file}`);
    return { ...c, kind: 'code' };
  };
  let names = [];
  let shardIds = [];
  if (variant.backend === 'wasm') {
    names = [variant.reference, variant.module].filter(Boolean);
    shardIds = variant.weights.map((w) => w.range.shard);
  } else if (variant.backend === 'webgpu') {
    names = variant.shaders;
    shardIds = variant.buffers.filter((b) => b.init).map((b) => b.init.shard);
  }
  const shards = [...new Set(shardIds)]
    .map((i) => manifest.shards[i])
    .sort((a, b) => a.priority - b.priority)
    .map((s) => ({ file: s.file, bytes: s.bytes, sha256: s.sha256, kind: 'weights' }));
  return [...names.map(codeFile), ...shards];
}

function abortError(signal) {
  return signal.reason ?? new DOMException('the load was aborted', 'AbortError');
}

/**
 * `fetch`, except for file: URLs in Node, whose fetch has no file scheme:
 * those are read from the file system.
 * @param {string} url
 * @param {RequestInit} [init]
 * @returns {Promise<Response>}
 */
async function fetchAny(url, init) {
  if (!NODE || !url.startsWith('file:')) return globalThis.fetch(url, init);
  const [{ readFile }, { fileURLToPath }] = await Promise.all([nodeModule('fs/promises'), nodeModule('url')]);
  try {
    return new Response(await readFile(fileURLToPath(url), { signal: init?.signal }));
  } catch (e) {
    if (init?.signal?.aborted) throw abortError(init.signal);
    throw new WpcError('fetch', e.message, { cause: e });
  }
}

/**
 * The bundle directory as a URL ending in '/'. A relative reference
 * resolves as the environment has it: in a page against the document's
 * base URL (in a worker, its location); in Node, which has neither, a
 * string that is not a URL is a file path, resolved against the working
 * directory.
 * @param {string | URL} bundleUrl
 */
async function bundleBase(bundleUrl) {
  const href = String(bundleUrl);
  const page = globalThis.document?.baseURI ?? globalThis.location?.href;
  let url;
  if (page || !NODE || SCHEME.test(href)) {
    url = new URL(href, page);
  } else {
    const [{ pathToFileURL }, { resolve }] = await Promise.all([nodeModule('url'), nodeModule('path')]);
    url = pathToFileURL(resolve(href));
  }
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

/**
 * Fetches `files` from `base` (a URL ending in '/'), verifying each, with
 * progress over all of them. Files whose cached copy still has the right
 * sha256 are not fetched again.
 * @param {URL} base
 * @param {BundleFile[]} files
 * @param {{
 *   onProgress?: ProgressFn, signal?: AbortSignal, fetch?: typeof fetch, cache?: Cache | null,
 *   onFile?: (file: string, bytes: Uint8Array<ArrayBuffer>) => void,
 *   onWasmStream?: (file: string, module: Promise<WebAssembly.Module>) => void,
 * }} [options] `onFile` hears of each file as soon as it is verified;
 *   `onWasmStream` gets the compilation of each fetched .wasm file,
 *   streamed as its bytes arrive (use it only once the file is verified)
 * @returns {Promise<Map<string, Uint8Array<ArrayBuffer>>>}
 */
export async function fetchFiles(base, files, options = {}) {
  const { onProgress = () => {}, signal, cache = null, onFile = () => {}, onWasmStream } = options;
  const fetchFn = options.fetch ?? fetchAny;
  const total = files.reduce((n, f) => n + f.bytes, 0);
  let loaded = 0;
  const out = new Map();
  onProgress(0, total, 'manifest.json');
  for (const f of files) {
    if (signal?.aborted) throw abortError(signal);
    const url = new URL(f.file, base).href;
    let bytes = null;
    const hit = cache && (await cache.match(url));
    if (hit) {
      const cached = new Uint8Array(await hit.arrayBuffer());
      if ((await sha256Hex(cached)) === f.sha256) bytes = cached;
    }
    if (bytes) {
      loaded += f.bytes;
      onProgress(loaded, total, f.file);
    } else {
      const response = await fetchFn(url, { signal });
      if (!response.ok) throw new WpcError('fetch', `${f.file}: HTTP ${response.status}`);
      bytes = new Uint8Array(f.bytes);
      let at = 0;
      let body = response.body;
      if (onWasmStream && f.file.endsWith('.wasm') && typeof WebAssembly.compileStreaming === 'function') {
        // Compile while downloading; the bytes are still hashed below.
        const [mine, compiler] = body.tee();
        body = mine;
        const compiling = WebAssembly.compileStreaming(new Response(compiler, { headers: { 'content-type': 'application/wasm' } }));
        compiling.catch(() => {}); // reported by whoever uses it
        onWasmStream(f.file, compiling);
      }
      const reader = body.getReader();
      for (;;) {
        if (signal?.aborted) {
          await reader.cancel();
          throw abortError(signal);
        }
        const { done, value } = await reader.read();
        if (done) break;
        if (at + value.length > bytes.length) {
          throw new IntegrityError(f.file, f.sha256, `more than the ${f.bytes} bytes listed`);
        }
        bytes.set(value, at);
        at += value.length;
        loaded += value.length;
        onProgress(loaded, total, f.file);
      }
      // A short file is caught by its hash.
      const got = await sha256Hex(bytes.subarray(0, at));
      if (got !== f.sha256) throw new IntegrityError(f.file, f.sha256, got);
      if (cache) await cache.put(url, new Response(bytes));
    }
    out.set(f.file, bytes);
    onFile(f.file, bytes);
  }
  return out;
}

/**
 * Starts fetching `wanted` into `files`. `read(file)` resolves as soon as
 * that file is there, so an executor can start on the code while the
 * shards stream; `compile(file)` gives a verified .wasm file's module,
 * compiled while it downloaded where the engine can. `done` settles when
 * every file has arrived (or at the first failure, which every pending
 * `read` also gets).
 * @param {Map<string, Uint8Array<ArrayBuffer>>} files
 * @param {URL} base
 * @param {BundleFile[]} wanted
 * @param {Parameters<typeof fetchFiles>[2]} options
 */
function streamFiles(files, base, wanted, options) {
  /** @type {Map<string, {arrived: Promise<Uint8Array<ArrayBuffer>>, resolve: (b: Uint8Array<ArrayBuffer>) => void, reject: (e: unknown) => void}>} */
  const waiting = new Map();
  /** @type {Map<string, Promise<WebAssembly.Module>>} */
  const streamed = new Map();
  for (const f of wanted) {
    const entry = {};
    entry.arrived = new Promise((resolve, reject) => Object.assign(entry, { resolve, reject }));
    entry.arrived.catch(() => {}); // a failure nobody reads is reported through `done`
    waiting.set(f.file, /** @type {any} */ (entry));
  }
  const done = fetchFiles(base, wanted, {
    ...options,
    onFile: (file, bytes) => {
      files.set(file, bytes);
      waiting.get(file)?.resolve(bytes);
    },
    onWasmStream: (file, module) => streamed.set(file, module),
  });
  done.catch((e) => { for (const w of waiting.values()) w.reject(e); });
  /** @param {string} file */
  const read = async (file) => {
    if (files.has(file)) return files.get(file);
    const w = waiting.get(file);
    if (!w) throw new WpcError('bad-bundle', `${file} is not one of the variant's files`);
    return w.arrived;
  };
  /** @param {string} file */
  const compile = async (file) => {
    const bytes = await read(file); // verified before it is used
    // A streamed compile that failed is redone from the bytes, for the error.
    return (await streamed.get(file)?.catch(() => null)) ?? WebAssembly.compile(bytes);
  };
  return { read, compile, done };
}

/** The Cache API bucket, where there is one. */
async function openCache(option) {
  if (option !== undefined) return option;
  if (typeof caches === 'undefined') return null;
  try {
    return await caches.open(CACHE_NAME);
  } catch {
    return null; // e.g. opaque origins
  }
}

/**
 * @typedef {{data: ArrayLike<number|bigint>, shape: number[], dtype: string}} Tensor
 */

/**
 * The caller's inputs as the flat arrays the executors take, checked
 * against the shapes the bundle takes, and the sizes of the bundle's
 * dynamic dims they give. An input given without a shape has its
 * compiled shape (where its dims are dynamic, its shape must be given).
 * @param {any} manifest
 * @param {Record<string, any>} inputs
 * @returns {{flat: Record<string, any>, sizes: Record<string, number>}}
 */
function flatInputs(manifest, inputs) {
  const flat = {};
  /** @type {Record<string, number[]>} */
  const shapes = {};
  for (const info of manifest.inputs) {
    const given = inputs?.[info.name];
    if (given === undefined || given === null) throw new WpcError('input', `missing input '${info.name}'`);
    const data = given.data ?? given;
    if (given.shape === undefined && info.run_shape) {
      throw new WpcError('input', `input '${info.name}' has dynamic dims: give it as {data, shape}`);
    }
    const shape = given.shape !== undefined ? [...given.shape].map(Number) : [...info.bound];
    const elements = elementCount(shape);
    if (data.length !== elements) {
      const want = given.shape === undefined
        ? `the bundle was compiled for ${elements} (shape [${shape.join(', ')}])`
        : `its shape [${shape.join(', ')}] has ${elements}`;
      throw new WpcError('input', `input '${info.name}' has ${data.length} elements, ${want}`);
    }
    shapes[info.name] = shape;
    flat[info.name] = data;
  }
  return { flat, sizes: bindSizes(manifest, shapes) };
}

/**
 * Loads a bundle: picks its variant, fetches and verifies what that
 * variant needs, and starts it. If the WebGPU variant cannot start (no
 * device, a pipeline that fails) or its device is lost later, the next
 * usable variant takes over and `onFallback({from, to, reason})` says so;
 * errors in the model or its inputs are surfaced, never masked.
 * @param {string | URL} bundleUrl the bundle directory: a URL, relative
 *   to the document's base URL in a page; in Node also a file path,
 *   relative to the working directory
 * @param {{
 *   onProgress?: ProgressFn, prefer?: string, signal?: AbortSignal,
 *   caps?: import('./detect.js').Capabilities, fetch?: typeof fetch,
 *   cache?: Cache | null, memoryBudget?: number, gpu?: GPU,
 *   onFallback?: (event: {from: string, to: string, reason: string}) => void,
 * }} [options]
 */
export async function load(bundleUrl, options = {}) {
  const { prefer, memoryBudget, onFallback = () => {} } = options;
  const fetchFn = options.fetch ?? fetchAny;
  // Everything the model fetches, now or in a later fallback, stops when
  // the caller's signal aborts or the model is disposed.
  const lifetime = new AbortController();
  const { signal } = lifetime;
  const follow = () => lifetime.abort(options.signal.reason);
  if (options.signal?.aborted) follow();
  else options.signal?.addEventListener('abort', follow, { once: true });
  const base = await bundleBase(bundleUrl);
  const response = await fetchFn(new URL('manifest.json', base).href, { signal });
  if (!response.ok) throw new WpcError('fetch', `manifest.json: HTTP ${response.status}`);
  const manifest = await response.json();
  checkFormat(manifest, base.href);
  const caps = options.caps ?? (await detect());
  const cache = await openCache(options.cache);
  const files = new Map();
  const failed = new Set();
  /** @type {{variant: string, reason: string}[]} */
  const passedOver = [];

  /** The best variant not yet failed (throws when none is left, with
   * why each was passed over or failed). */
  const choose = () => {
    try {
      return select(
        { ...manifest, variants: manifest.variants.filter((v) => !failed.has(v)) },
        caps,
        { prefer, backends: Object.keys(EXECUTORS) },
      );
    } catch (e) {
      if (!(e instanceof NoUsableVariantError)) throw e;
      throw new NoUsableVariantError([...passedOver, ...e.reasons]);
    }
  };

  /** Takes a variant that failed out of the running, saying why. */
  const retire = (pick, when, error) => {
    failed.add(pick.variant);
    passedOver.push({ variant: pick.name, reason: `${when}: ${error.message}` });
  };

  /** Starts the best variant not yet failed. */
  async function start() {
    for (;;) {
      if (signal.aborted) throw abortError(signal);
      const pick = choose();
      const needed = pick.variant.memory_bytes ?? pick.variant.peak_bytes ?? 0;
      if (memoryBudget !== undefined && needed > memoryBudget) {
        throw new MemoryBudgetError(pick.name, needed, memoryBudget);
      }
      const wanted = filesFor(manifest, pick.variant).filter((f) => !files.has(f.file));
      // After a fallback, progress goes on from what is loaded already;
      // the total grows by the new variant's files.
      const before = [...files.values()].reduce((n, bytes) => n + bytes.length, 0);
      const onProgress = (loaded, total, file) => options.onProgress?.(before + loaded, before + total, file);
      const streams = streamFiles(files, base, wanted, { ...options, onProgress, fetch: fetchFn, cache, signal });
      const { done } = streams;
      const starting = EXECUTORS[pick.variant.backend](manifest, pick.variant, streams, { gpu: options.gpu });
      let executor;
      try {
        // A fetch failure (integrity, abort) wins over what it made the
        // executor fail with.
        [executor] = await Promise.all([starting, done]);
      } catch (e) {
        // Let the fetch finish either way: the next variant needs the
        // same shards, and a fetch error is the one to report.
        await done;
        if (!gpuFailure(pick.variant, e)) throw e;
        retire(pick, 'failed to start', e);
        onFallback({ from: pick.name, to: choose().name, reason: e.message });
        continue;
      }
      if (signal.aborted) {
        // Aborted or disposed while the executor started: let it go.
        executor.dispose();
        throw abortError(signal);
      }
      for (const p of pick.passedOver) if (!passedOver.some((q) => q.variant === p.variant)) passedOver.push(p);
      return { executor, name: pick.name, variant: pick.variant };
    }
  }

  let current = await start();
  let disposed = false;
  const model = {
    manifest,
    caps,
    /** The variant running, and why the ones before it were passed over. */
    get variant() {
      return current.name;
    },
    passedOver,
    /**
     * Runs the model. Each input is a typed array in the shape the bundle
     * was compiled for (`manifest.inputs[i].bound`), or `{data, shape}`
     * to have the shape checked; an input with dynamic dims (the
     * bundle's `dims`) must be `{data, shape}`, any size within their
     * ranges, and the outputs come back in the shapes those sizes give.
     * Inputs the bundle does not take are ignored. Returns output name → `{data, shape, dtype}`. Rejects with
     * `DisposedError` once the model is disposed.
     * @param {Record<string, Tensor['data'] | {data: Tensor['data'], shape?: number[]}>} inputs
     * @returns {Promise<Record<string, Tensor>>}
     */
    async run(inputs) {
      if (disposed) throw new DisposedError();
      const { flat, sizes: given } = flatInputs(manifest, inputs);
      // The executors add the sizes the model counts as it runs.
      let sizes = { ...given };
      let outputs;
      try {
        outputs = await current.executor.run(flat, sizes);
      } catch (e) {
        if (!gpuFailure(current.variant, e)) throw e;
        const from = current.name;
        retire(current, 'failed while running', e);
        current.executor.dispose();
        // (Disposed meanwhile, this throws the DisposedError.)
        current = await start();
        onFallback({ from, to: current.name, reason: e.message });
        sizes = { ...given };
        outputs = await current.executor.run(flat, sizes);
      }
      return Object.fromEntries(manifest.outputs.map((info) => [
        info.name,
        { data: outputs[info.name], shape: shapeAt(info, sizes), dtype: info.dtype },
      ]));
    },
    /**
     * Frees what the model holds: the WebGPU buffers and the device the
     * runtime created, the wasm instances and their memory, the bundle's
     * files; stops a fallback that is still loading. `run` then rejects
     * with `DisposedError`. Calling it again does nothing.
     */
    dispose() {
      if (disposed) return;
      disposed = true;
      lifetime.abort(new DisposedError());
      current.executor.dispose();
      files.clear();
    },
  };
  return model;
}
