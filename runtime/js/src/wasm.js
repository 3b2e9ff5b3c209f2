// The WebAssembly executor: instantiates a bundle's wasm variant, copies
// its weights from the shards straight into linear memory at the offsets
// the compiler planned, and runs it on typed arrays. Works in browsers and
// in Node (only the standard WebAssembly API is used).

import { DisposedError, WpcError } from './errors.js';
import { checkRange, checkTensors, inconsistent, shapeAt } from './manifest.js';

/** @typedef {{shard: number, offset: number, bytes: number}} ShardRange */
/** @typedef {{offset: number, elements: number}} MemoryTensor */

/** The typed array holding each ONNX dtype as the module stores it:
 * little-endian at its natural width; 16-bit floats as raw bits, bools as
 * one byte each. */
const ARRAYS = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
  bool: Uint8Array,
  // One element a byte, as the bundle holds them (sign-extended for int4, int2).
  int4: Int8Array,
  uint4: Uint8Array,
  int2: Int8Array,
  uint2: Uint8Array,
};

/**
 * The typed array constructor for `dtype`.
 * @param {string} dtype ONNX dtype name
 */
export function arrayType(dtype) {
  const Array = ARRAYS[dtype];
  if (!Array) throw new Error(`unknown dtype '${dtype}'`);
  return Array;
}

/**
 * An input's bytes as the module stores them.
 * @param {ArrayLike<number|bigint>} data
 * @param {MemoryTensor} slot
 * @param {{name: string, dtype: string}} info the manifest's input entry
 * @returns {Uint8Array}
 */
export function toBytes(data, slot, info) {
  if (data.length !== slot.elements) {
    throw new Error(`input '${info.name}' has ${data.length} elements, the bundle takes ${slot.elements} at these sizes`);
  }
  const Array = arrayType(info.dtype);
  const typed = data instanceof Array ? data : Array.from(data, (v) => {
    const big = Array === BigInt64Array || Array === BigUint64Array;
    return big ? BigInt(v) : Number(v);
  });
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
}

/**
 * Copies an output out of memory as the typed array of its dtype.
 * @param {ArrayBuffer} buffer memory
 * @param {MemoryTensor} slot
 * @param {string} dtype ONNX dtype name
 */
export function readOutput(buffer, slot, dtype) {
  const Array = arrayType(dtype);
  const bytes = buffer.slice(slot.offset, slot.offset + Array.BYTES_PER_ELEMENT * slot.elements);
  return new Array(bytes);
}

/**
 * What wpc modules export: memory, and `run` (a variant) or the
 * `wpc_error_*` accessors (the reference module).
 * @typedef {{
 *   memory: WebAssembly.Memory, run?: () => void,
 *   wpc_error_ptr?: () => number, wpc_error_len?: () => number,
 * }} WpcExports
 */

/**
 * The message a failed reference kernel left in the module, if any.
 * @param {WpcExports} exports
 */
function kernelError(exports) {
  const { wpc_error_ptr: ptr, wpc_error_len: len, memory } = exports;
  if (typeof ptr !== 'function' || typeof len !== 'function') return '';
  return new TextDecoder().decode(new Uint8Array(memory.buffer, ptr(), len()));
}

/**
 * Checks that the variant's plan fits its memory: every input, output and
 * weight range lies inside its `memory_bytes` (the module is only
 * instantiated, and its memory written, once this holds).
 * @param {any} manifest
 * @param {any} variant
 */
function checkPlan(manifest, variant) {
  const memory = variant.memory_bytes;
  checkTensors(manifest, variant.name, variant, (slot, info) => {
    const end = slot.offset + slot.elements * arrayType(info.dtype).BYTES_PER_ELEMENT;
    return end > memory ? `bytes ${slot.offset}..${end} lie outside its ${memory} bytes of memory` : null;
  });
  for (const w of variant.weights) {
    checkRange(manifest, w.range, memory - w.offset, `${variant.name}'s weights at offset ${w.offset}`);
  }
  const { offset, dims } = variant.sizes ?? { offset: 0, dims: [] };
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + 4 * dims.length > memory) {
    throw inconsistent(`${variant.name}'s size table lies outside its ${memory} bytes of memory`);
  }
  const known = new Set((manifest.dims ?? []).map((/** @type {any} */ d) => d.name));
  const unknown = dims.find((/** @type {string} */ d) => !known.has(d));
  if (unknown !== undefined) throw inconsistent(`${variant.name}'s size table names '${unknown}', which is not one of the bundle's dims`);
  const untabled = [...known].find((d) => !dims.includes(d));
  if (untabled !== undefined) throw inconsistent(`${variant.name} has no place for the size of dim '${untabled}'`);
}

/**
 * Instantiates the wasm variant called `name` of a bundle.
 * @param {any} manifest the bundle's manifest.json
 * @param {string} name e.g. 'wasm-simd'
 * @param {(file: string) => Promise<Uint8Array<ArrayBuffer>>} readFile bundle file reader
 * @param {{compile?: (file: string) => Promise<WebAssembly.Module>}} [options]
 *   `compile` gives a module file compiled (the loader streams it);
 *   by default the file is read and compiled
 */
export async function loadWasm(manifest, name, readFile, options = {}) {
  const compile = options.compile ?? (async (file) => WebAssembly.compile(await readFile(file)));
  const variant = manifest.variants.find((v) => v.backend === 'wasm' && v.name === name);
  if (!variant) {
    const have = manifest.variants.map((v) => v.name ?? v.backend).join(', ');
    throw new Error(`the bundle has no '${name}' variant (it has: ${have})`);
  }
  checkPlan(manifest, variant);
  // Nodes without a generated kernel run in the shared reference module:
  // instantiate it first and give its exports (memory included) to the
  // variant, after growing the memory to what the variant's plan needs.
  const compiling = compile(variant.module); // alongside the reference module
  compiling.catch(() => {}); // awaited below
  /** @type {WebAssembly.Imports} */
  let imports = {};
  let errors = null;
  if (variant.reference) {
    const reference = await WebAssembly.instantiate(await compile(variant.reference), {});
    const exports = /** @type {WpcExports} */ (reference.exports);
    const shared = exports.memory;
    const missing = variant.memory_bytes - shared.buffer.byteLength;
    if (missing > 0) shared.grow(Math.ceil(missing / 65536));
    imports = { wpc: exports };
    errors = exports;
  }
  const instance = await WebAssembly.instantiate(await compiling, imports);
  const { memory, run } = /** @type {WpcExports} */ (instance.exports);
  if (memory.buffer.byteLength < variant.memory_bytes) {
    throw inconsistent(`${variant.module} has ${memory.buffer.byteLength} bytes of memory, ${name} plans for ${variant.memory_bytes}`);
  }
  const shards = new Map();
  for (const w of variant.weights) {
    const shard = manifest.shards[w.range.shard];
    if (!shards.has(shard.file)) shards.set(shard.file, await readFile(shard.file));
    const bytes = shards.get(shard.file).subarray(w.range.offset, w.range.offset + w.range.bytes);
    new Uint8Array(memory.buffer).set(bytes, w.offset);
  }
  /** The instances, until `dispose()` lets them (and their memory) go. */
  let live = { memory, run, errors };
  const alive = () => {
    if (!live) throw new DisposedError();
    return live;
  };
  /** Calls `run` on whatever memory holds. */
  const execute = () => {
    const { run, errors } = alive();
    try {
      run();
    } catch (e) {
      const reason = errors ? kernelError(errors) : '';
      if (reason) throw new Error(`running the model: ${reason}`, { cause: e });
      throw e;
    }
  };
  return {
    variant,
    /**
     * Runs the model. `inputs` maps input names to typed arrays of the
     * shapes `sizes` give (the bundle's dims, as `bindSizes` finds them;
     * none for a bundle compiled for fixed sizes); returns output name →
     * array, each of its shape at those sizes. The sizes only the data
     * decides (the dims with `counted_in`) are added to `sizes` as the
     * kernels counted them.
     * @param {Record<string, ArrayLike<number|bigint>>} inputs
     * @param {Record<string, number>} [sizes]
     */
    run(inputs, sizes = {}) {
      // `memory.buffer` is read afresh each time: reference kernels grow it.
      const { memory } = alive();
      // The slot of a tensor at these sizes: the start of its planned
      // room, which a size within the dims' ranges never overflows.
      /** @param {MemoryTensor} slot @param {any} info */
      const at = (slot, info) => {
        const elements = shapeAt(info, sizes).reduce((a, b) => a * b, 1);
        if (!(elements <= slot.elements)) {
          throw new WpcError('input', `'${info.name}' would have ${elements} elements at sizes ${JSON.stringify(sizes)}, more than the ${slot.elements} the bundle holds`);
        }
        return { offset: slot.offset, elements };
      };
      if (variant.sizes) {
        const table = new DataView(memory.buffer, variant.sizes.offset, 4 * variant.sizes.dims.length);
        variant.sizes.dims.forEach((/** @type {string} */ d, /** @type {number} */ i) => {
          const range = manifest.dims.find((/** @type {any} */ r) => r.name === d);
          // Its kernel writes a size the data decides.
          if (range.counted_in) return table.setUint32(4 * i, 0, true);
          const v = sizes[d];
          if (!Number.isSafeInteger(v) || v < range.min || v > range.max) {
            throw new WpcError('input', `dim '${d}' is ${v}, outside the sizes this bundle runs at, ${range.min}..${range.max}`);
          }
          table.setUint32(4 * i, v, true);
        });
      }
      manifest.inputs.forEach((info, i) => {
        const data = inputs[info.name];
        if (data === undefined) throw new Error(`missing input '${info.name}'`);
        const slot = at(variant.inputs[i], info);
        new Uint8Array(memory.buffer).set(toBytes(data, slot, info), slot.offset);
      });
      execute();
      if (variant.sizes) {
        const table = new DataView(alive().memory.buffer, variant.sizes.offset, 4 * variant.sizes.dims.length);
        variant.sizes.dims.forEach((/** @type {string} */ d, /** @type {number} */ i) => {
          if (manifest.dims.find((/** @type {any} */ r) => r.name === d).counted_in) sizes[d] = table.getUint32(4 * i, true);
        });
      }
      /** @type {Record<string, ArrayLike<number|bigint>>} */
      const outputs = {};
      manifest.outputs.forEach((info, i) => {
        outputs[info.name] = readOutput(memory.buffer, at(variant.outputs[i], info), info.dtype);
      });
      return outputs;
    },
    /** `run` without inputs or outputs (for benchmarks). */
    execute,
    /** Lets the instances and their memory go; `run` then throws
     * `DisposedError`. */
    dispose() {
      live = null;
    },
  };
}
