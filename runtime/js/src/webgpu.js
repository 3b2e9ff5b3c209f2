// The WebGPU executor: creates every pipeline up front (in parallel, with
// createComputePipelineAsync), every buffer once (weights uploaded from the
// shards), one bind group per dispatch; each run writes the inputs,
// records all dispatches into one command encoder, copies the outputs to
// mappable buffers and reads them back. Tensors live on the device as
// 32-bit words (`f32`, `i32`, `u32`), as the compiler laid them out.
// Where the bundle's sizes are dynamic, buffers are made for the largest;
// each run writes the sizes each kernel reads into its uniform buffer and
// dispatches the workgroups those sizes need. A size only the data decides
// (NonZero's count) is left by its dispatch in a buffer the manifest names
// (`counts`): the run submits up to that dispatch, reads the count back and
// sizes the dispatches after it by it.

import { DisposedError, WpcError } from './errors.js';
import { checkRange, checkTensors, elementCount, evalSize, inconsistent, shapeAt } from './manifest.js';

/** Buffer sizes: WebGPU wants multiples of 4, and no empty bindings. */
const size4 = (bytes) => Math.max(4, Math.ceil(bytes / 4) * 4);

/**
 * An input as the device words of its slot (`elements` of them: all the
 * slot holds, or fewer at dynamic sizes).
 * @param {ArrayLike<number|bigint>} data
 * @param {{word: string, elements: number}} slot
 * @param {string} name
 * @param {number} [elements]
 */
export function toWords(data, slot, name, elements = slot.elements) {
  if (data.length !== elements || elements > slot.elements) {
    throw new WpcError('input', `input '${name}' has ${data.length} elements, the bundle takes ${elements} (its slot holds ${slot.elements})`);
  }
  const Words = { f32: Float32Array, i32: Int32Array, u32: Uint32Array }[slot.word];
  if (!Words) throw new WpcError('bad-bundle', `unknown device word '${slot.word}'`);
  const out = new Words(elements);
  const [lo, hi] = slot.word === 'i32' ? [-(2 ** 31), 2 ** 31 - 1] : [0, 2 ** 32 - 1];
  for (let i = 0; i < out.length; i++) {
    const v = Number(data[i]);
    if (slot.word !== 'f32' && !(v >= lo && v <= hi)) {
      throw new WpcError('input', `input '${name}': value ${data[i]} does not fit the 32-bit integers WebGPU computes with`);
    }
    out[i] = v;
  }
  return out;
}

/**
 * Device words back as the typed array of the output's dtype.
 * @param {ArrayBuffer} bytes
 * @param {string} word
 * @param {string} dtype
 */
export function fromWords(bytes, word, dtype) {
  const words = word === 'f32' ? new Float32Array(bytes) : word === 'i32' ? new Int32Array(bytes) : new Uint32Array(bytes);
  switch (dtype) {
    case 'float32': return new Float32Array(words);
    case 'float64': return Float64Array.from(words);
    case 'int64': return BigInt64Array.from(words, (v) => BigInt(v));
    case 'uint64': return BigUint64Array.from(words, (v) => BigInt(v));
    case 'int32': return Int32Array.from(words);
    case 'uint32': return Uint32Array.from(words);
    case 'int16': return Int16Array.from(words);
    case 'uint16': return Uint16Array.from(words);
    case 'int8': case 'int4': case 'int2': return Int8Array.from(words);
    case 'uint8': case 'uint4': case 'uint2': case 'bool': return Uint8Array.from(words);
    default: throw new WpcError('unsupported', `reading ${dtype} outputs from WebGPU is not supported yet`);
  }
}

/**
 * Checks that the variant's plan fits its buffers: every input and output
 * slot, and the weights each buffer starts with (before a device is asked
 * for).
 * @param {any} manifest
 * @param {any} variant
 */
function checkPlan(manifest, variant) {
  checkTensors(manifest, 'webgpu', variant, (slot) => {
    const buffer = variant.buffers[slot.buffer];
    if (!buffer) return `there is no buffer ${slot.buffer}`;
    return slot.elements * 4 > buffer.bytes ? `${slot.elements} words do not fit the ${buffer.bytes} bytes of buffer ${slot.buffer}` : null;
  });
  variant.buffers.forEach((b, i) => b.init && checkRange(manifest, b.init, b.bytes, `buffer ${i}`));
  const counts = variant.dispatches.flatMap((/** @type {any} */ d) => d.counts ?? []);
  for (const c of counts) {
    const counted = (manifest.dims ?? []).some((/** @type {any} */ d) => d.name === c.dim && d.counted_in);
    if (!counted || !variant.buffers[c.buffer]) throw inconsistent(`a dispatch counts '${c.dim}' into buffer ${c.buffer}, which is not a counted dim and a buffer`);
  }
  const uncounted = (manifest.dims ?? []).find((/** @type {any} */ d) => d.counted_in && !counts.some((/** @type {any} */ c) => c.dim === d.name));
  if (uncounted) throw inconsistent(`no dispatch of the WebGPU variant counts '${uncounted.name}'`);
}

/**
 * Creates the WebGPU variant's device, pipelines and buffers.
 * @param {any} manifest
 * @param {any} variant the manifest's WebGPU variant
 * @param {(file: string) => Promise<Uint8Array<ArrayBuffer>>} readFile
 * @param {{gpu?: GPU, onDeviceLost?: (info: GPUDeviceLostInfo) => void}} [options]
 */
export async function loadWebGpu(manifest, variant, readFile, options = {}) {
  checkPlan(manifest, variant);
  const gpu = options.gpu ?? globalThis.navigator?.gpu;
  if (!gpu) throw new WpcError('webgpu', 'WebGPU is not available');
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new WpcError('webgpu', 'requestAdapter() returned no adapter');
  const device = await adapter.requestDevice({
    requiredFeatures: variant.requires.features,
    requiredLimits: variant.requires.limits,
  });
  let lost = null;
  device.lost.then((info) => {
    lost = info;
    options.onDeviceLost?.(info);
  });
  try {
    return await setUp(device, manifest, variant, readFile, () => lost);
  } catch (e) {
    device.destroy(); // free what was made before the failure
    throw e;
  }
}

/**
 * Pipelines, buffers (weights uploaded as their shards arrive) and bind
 * groups on `device`; returns the executor.
 * @param {GPUDevice} device
 * @param {any} manifest
 * @param {any} variant
 * @param {(file: string) => Promise<Uint8Array<ArrayBuffer>>} readFile
 * @param {() => GPUDeviceLostInfo | null} lostInfo
 */
async function setUp(device, manifest, variant, readFile, lostInfo) {
  device.pushErrorScope('validation');
  device.pushErrorScope('out-of-memory');
  const decoder = new TextDecoder();
  const pipelines = await Promise.all(variant.shaders.map(async (file) => {
    const module = device.createShaderModule({ label: file, code: decoder.decode(await readFile(file)) });
    // The browser's WGSL compiler may reject what naga accepted: name the
    // file, line and reason.
    const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error');
    if (errors.length) {
      const why = errors.map((m) => `${file}:${m.lineNum}:${m.linePos}: ${m.message}`).join('; ');
      throw new WpcError('webgpu', `the browser rejects a shader: ${why}`);
    }
    return device.createComputePipelineAsync({ label: file, layout: 'auto', compute: { module, entryPoint: 'main' } });
  }));
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const buffers = variant.buffers.map((b) => device.createBuffer({ size: size4(b.bytes), usage }));
  for (const [i, b] of variant.buffers.entries()) {
    if (!b.init) continue;
    const shard = await readFile(manifest.shards[b.init.shard].file);
    device.queue.writeBuffer(buffers[i], 0, shard.subarray(b.init.offset, b.init.offset + b.init.bytes));
  }
  const steps = variant.dispatches.map((d) => {
    const entries = d.bindings.map((b, i) => ({ binding: i, resource: { buffer: buffers[b] } }));
    // The sizes the kernel reads: one u32 each, in vec4s.
    const params = d.params?.length
      ? device.createBuffer({ size: Math.ceil(d.params.length / 4) * 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST })
      : null;
    if (params) entries.push({ binding: d.bindings.length, resource: { buffer: params } });
    return {
      pipeline: pipelines[d.shader],
      group: device.createBindGroup({ layout: pipelines[d.shader].getBindGroupLayout(0), entries }),
      workgroups: d.workgroups,
      groups: d.groups,
      params,
      exprs: d.params ?? [],
      counts: d.counts ?? [],
      node: d.node,
    };
  });
  const mostCounts = Math.max(0, ...steps.map((s) => s.counts.length));
  const countReadback = mostCounts > 0
    ? device.createBuffer({ size: 4 * mostCounts, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
    : null;
  /**
   * A size as a u32, or an error naming the dispatch.
   * @param {any} e
   * @param {Record<string, number>} sizes
   * @param {string} node
   */
  const u32 = (e, sizes, node) => {
    const v = evalSize(e, sizes);
    if (!(v >= 0 && v <= 0xffffffff)) throw new WpcError('input', `these sizes give the dispatch of '${node}' the size ${v}, which is not a u32`);
    return v;
  };
  const readback = variant.outputs.map((o) => device.createBuffer({
    size: size4(o.elements * 4),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  }));
  for (const scope of ['out of memory', 'validation']) {
    const error = await device.popErrorScope();
    if (error) throw new WpcError('webgpu', `setting up the WebGPU variant failed (${scope}): ${error.message}`);
  }
  let disposed = false;
  return {
    device,
    /** Why the device is gone, or null. */
    get lost() {
      return lostInfo();
    },
    /**
     * @param {Record<string, any>} inputs flat arrays by input name
     * @param {Record<string, number>} [sizes] the dynamic dims' sizes; the
     *   sizes the model counts as it runs are added to it
     */
    async run(inputs, sizes = {}) {
      if (disposed) throw new DisposedError();
      const lost = lostInfo();
      if (lost) throw new WpcError('device-lost', `the WebGPU device was lost: ${lost.message}`);
      manifest.inputs.forEach((info, i) => {
        const data = inputs[info.name];
        if (data === undefined) throw new WpcError('input', `missing input '${info.name}'`);
        const slot = variant.inputs[i];
        const elements = elementCount(shapeAt(info, sizes));
        if (elements > 0) device.queue.writeBuffer(buffers[slot.buffer], 0, toWords(data, slot, info.name, elements));
      });
      device.pushErrorScope('validation');
      // Submits up to each dispatch that counts a size, then reads it back.
      for (let from = 0; from < steps.length;) {
        const stop = steps.findIndex((s, i) => i >= from && s.counts.length > 0);
        const to = stop < 0 ? steps.length : stop + 1;
        const segment = steps.slice(from, to);
        const encoder = device.createCommandEncoder();
        const pass = encoder.beginComputePass();
        for (const s of segment) {
          if (s.params) device.queue.writeBuffer(s.params, 0, Uint32Array.from(s.exprs, (/** @type {any} */ e) => u32(e, sizes, s.node)));
          const [x, y, z] = s.groups ? s.groups.map((/** @type {any} */ e) => u32(e, sizes, s.node)) : s.workgroups;
          // A dynamic size of 0 leaves a kernel nothing to do.
          if (x * y * z === 0) continue;
          pass.setPipeline(s.pipeline);
          pass.setBindGroup(0, s.group);
          pass.dispatchWorkgroups(x, y, z);
        }
        pass.end();
        const counted = segment[segment.length - 1].counts;
        counted.forEach((/** @type {any} */ c, /** @type {number} */ k) => encoder.copyBufferToBuffer(buffers[c.buffer], 0, countReadback, 4 * k, 4));
        device.queue.submit([encoder.finish()]);
        if (counted.length > 0) {
          await countReadback.mapAsync(GPUMapMode.READ);
          const got = new Uint32Array(countReadback.getMappedRange(0, 4 * counted.length).slice(0));
          countReadback.unmap();
          counted.forEach((/** @type {any} */ c, /** @type {number} */ k) => {
            const range = manifest.dims.find((/** @type {any} */ d) => d.name === c.dim);
            if (!range || got[k] > range.max) throw new WpcError('webgpu', `the kernel counting '${c.dim}' gave ${got[k]}, outside its range`);
            sizes[c.dim] = got[k];
          });
        }
        from = to;
      }
      const words = manifest.outputs.map((/** @type {any} */ info) => elementCount(shapeAt(info, sizes)));
      const encoder = device.createCommandEncoder();
      variant.outputs.forEach((o, i) => {
        if (words[i] > 0) encoder.copyBufferToBuffer(buffers[o.buffer], 0, readback[i], 0, words[i] * 4);
      });
      device.queue.submit([encoder.finish()]);
      const error = await device.popErrorScope();
      if (error) throw new WpcError('webgpu', `running the model failed: ${error.message}`);
      const outputs = {};
      await Promise.all(manifest.outputs.map(async (info, i) => {
        const o = variant.outputs[i];
        await readback[i].mapAsync(GPUMapMode.READ);
        const bytes = readback[i].getMappedRange(0, size4(o.elements * 4)).slice(0, words[i] * 4);
        readback[i].unmap();
        outputs[info.name] = fromWords(bytes, o.word, info.dtype);
      }));
      return outputs;
    },
    /** Destroys the buffers and the device; `run` then throws
     * `DisposedError`. */
    dispose() {
      disposed = true;
      for (const buffer of [...buffers, ...readback]) buffer.destroy();
      countReadback?.destroy();
      for (const s of steps) s.params?.destroy();
      device.destroy();
    },
  };
}
