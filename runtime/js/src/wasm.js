// The WebAssembly executor: instantiates a bundle's wasm variant, copies
// its weights from the shards straight into linear memory at the offsets
// the compiler planned, and runs it on typed arrays. Works in browsers and
// in Node (only the standard WebAssembly API is used).

/** @typedef {{shard: number, offset: number, bytes: number}} ShardRange */
/** @typedef {{offset: number, word: 'f32'|'i32'|'u32', elements: number}} MemoryTensor */

/**
 * Converts a typed array to the 32-bit words the module computes with:
 * floats as f32, signed integers as i32 (int64 values must fit), unsigned
 * integers and bools as u32.
 * @param {ArrayLike<number|bigint>} data
 * @param {MemoryTensor} slot
 * @param {string} name
 * @returns {Uint8Array}
 */
export function toWords(data, slot, name) {
  if (data.length !== slot.elements) {
    throw new Error(`input '${name}' has ${data.length} elements, the bundle was compiled for ${slot.elements}`);
  }
  const out = slot.word === 'f32' ? new Float32Array(slot.elements)
    : slot.word === 'i32' ? new Int32Array(slot.elements) : new Uint32Array(slot.elements);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (typeof v === 'bigint') {
      if (v < -2147483648n || v > 4294967295n || (slot.word === 'i32' && v > 2147483647n)) {
        throw new Error(`input '${name}': value ${v} does not fit the 32-bit integers the kernels use`);
      }
      out[i] = Number(v);
    } else {
      out[i] = v;
    }
  }
  return new Uint8Array(out.buffer);
}

/**
 * Reads an output's words back as the typed array of its ONNX dtype.
 * @param {ArrayBuffer} buffer memory
 * @param {MemoryTensor} slot
 * @param {string} dtype ONNX dtype name
 */
export function fromWords(buffer, slot, dtype) {
  const bytes = buffer.slice(slot.offset, slot.offset + 4 * slot.elements);
  const words = slot.word === 'f32' ? new Float32Array(bytes)
    : slot.word === 'i32' ? new Int32Array(bytes) : new Uint32Array(bytes);
  switch (dtype) {
    case 'int64': return BigInt64Array.from(words, (v) => BigInt(v));
    case 'uint64': return BigUint64Array.from(words, (v) => BigInt(v));
    case 'bool': return Uint8Array.from(words);
    default: return words;
  }
}

/**
 * Instantiates the wasm variant called `name` of a bundle.
 * @param {any} manifest the bundle's manifest.json
 * @param {string} name e.g. 'wasm-simd'
 * @param {(file: string) => Promise<Uint8Array>} readFile bundle file reader
 */
export async function loadWasm(manifest, name, readFile) {
  const variant = manifest.variants.find((v) => v.backend === 'wasm' && v.name === name);
  if (!variant) {
    const have = manifest.variants.map((v) => v.name ?? v.backend).join(', ');
    throw new Error(`the bundle has no '${name}' variant (it has: ${have})`);
  }
  const { instance } = await WebAssembly.instantiate(await readFile(variant.module), {});
  const { memory, run } = instance.exports;
  const shards = new Map();
  for (const w of variant.weights) {
    const shard = manifest.shards[w.range.shard];
    if (!shards.has(shard.file)) shards.set(shard.file, await readFile(shard.file));
    const bytes = shards.get(shard.file).subarray(w.range.offset, w.range.offset + w.range.bytes);
    new Uint8Array(memory.buffer).set(bytes, w.offset);
  }
  return {
    variant,
    /**
     * Runs the model. `inputs` maps input names to typed arrays (shapes
     * are those the bundle was compiled for); returns output name → array.
     * @param {Record<string, ArrayLike<number|bigint>>} inputs
     */
    run(inputs) {
      manifest.inputs.forEach((info, i) => {
        const data = inputs[info.name];
        if (data === undefined) throw new Error(`missing input '${info.name}'`);
        const slot = variant.inputs[i];
        new Uint8Array(memory.buffer).set(toWords(data, slot, info.name), slot.offset);
      });
      run();
      const outputs = {};
      manifest.outputs.forEach((info, i) => {
        outputs[info.name] = fromWords(memory.buffer, variant.outputs[i], info.dtype);
      });
      return outputs;
    },
    /** Calls `run` on whatever memory holds (for benchmarks). */
    execute() {
      run();
    },
  };
}
