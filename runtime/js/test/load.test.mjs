// load() end to end on a synthetic two-variant bundle: a fake WebGPU
// device (only what the executor calls) and a real, tiny wasm module.
// Covers what the browser tests cannot make happen on cue: the variant
// starting on its code while a shard is still in flight, the device being
// lost between runs, and model errors that must not trigger a fallback.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';

import { IntegrityError, WpcError } from '../src/errors.js';
import { load, sha256Hex } from '../src/loader.js';

globalThis.GPUBufferUsage ??= { MAP_READ: 1, COPY_SRC: 4, COPY_DST: 8, STORAGE: 128 };
globalThis.GPUMapMode ??= { READ: 1 };

const CAPS = JSON.parse(await readFile(new URL('caps/chromium-148-linux-swiftshader.json', import.meta.url), 'utf8'));

/** (memory (export "memory") 1) (func (export "run")): outputs are
 * whatever the loader put in memory, i.e. the weights. */
const WASM = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
  0x03, 0x02, 0x01, 0x00,
  0x05, 0x03, 0x01, 0x00, 0x01,
  0x07, 0x10, 0x02, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x03, 0x72, 0x75, 0x6e, 0x00, 0x00,
  0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b,
]);
const WEIGHTS = new Uint8Array(new Float32Array([1.5, -2]).buffer);
const SHADER = new TextEncoder().encode('@compute @workgroup_size(1) fn main() {}');

/** The bundle's files, its manifest, and a fetch serving them that logs
 * each request and holds the shard until `release` resolves. */
async function bundle(release = Promise.resolve()) {
  const files = { 'k0.wgsl': SHADER, 'model-scalar.wasm': WASM, 'weights-000.bin': WEIGHTS };
  const listing = async (file) => ({ file, bytes: files[file].length, sha256: await sha256Hex(files[file]) });
  const slot = { elements: 2 };
  const manifest = {
    format: 'wpc-bundle',
    inputs: [{ name: 'x', dtype: 'float32', shape: [2], bound: [2] }],
    outputs: [{ name: 'y', dtype: 'float32', shape: [2], bound: [2] }],
    shards: [{ ...(await listing('weights-000.bin')), priority: 0 }],
    code: [await listing('k0.wgsl'), await listing('model-scalar.wasm')],
    variants: [
      {
        backend: 'webgpu', requires: { features: [], limits: {} }, shaders: ['k0.wgsl'],
        buffers: [{ bytes: 8, init: { shard: 0, offset: 0, bytes: 8 } }, { bytes: 8 }],
        dispatches: [{ shader: 0, bindings: [0, 1], workgroups: [1, 1, 1] }],
        inputs: [{ buffer: 1, word: 'f32', ...slot }], outputs: [{ buffer: 1, word: 'f32', ...slot }], peak_bytes: 16,
      },
      {
        backend: 'wasm', name: 'wasm-scalar', features: [], module: 'model-scalar.wasm', memory_bytes: 65536,
        weights: [{ range: { shard: 0, offset: 0, bytes: 8 }, offset: 0 }],
        inputs: [{ offset: 16, ...slot }], outputs: [{ offset: 0, ...slot }],
      },
    ],
  };
  const log = [];
  const fetch = async (url) => {
    const file = new URL(url).pathname.split('/').pop();
    log.push(`fetch ${file}`);
    if (file === 'manifest.json') return new Response(JSON.stringify(manifest));
    if (file.endsWith('.bin')) {
      await release;
      log.push(`sent ${file}`);
    }
    return new Response(files[file]);
  };
  return { fetch, log, files };
}

/** A WebGPU device that logs what the executor asks of it; `lose()`
 * resolves its `lost` promise. Outputs read back as zeros. */
function fakeGpu(log) {
  let lose;
  const device = {
    lost: new Promise((resolve) => { lose = resolve; }),
    pushErrorScope() {},
    popErrorScope: async () => null,
    createShaderModule: ({ label }) => ({ getCompilationInfo: async () => ({ messages: [], label }) }),
    createComputePipelineAsync: async ({ label }) => {
      log.push(`pipeline ${label}`);
      return { getBindGroupLayout: () => ({}) };
    },
    createBuffer: ({ size }) => ({ mapAsync: async () => {}, getMappedRange: () => new ArrayBuffer(size), unmap() {} }),
    queue: { writeBuffer: (buffer, offset, data) => log.push(`upload ${data.byteLength} bytes`), submit() {} },
    createBindGroup: () => ({}),
    createCommandEncoder: () => ({
      beginComputePass: () => ({ setPipeline() {}, setBindGroup() {}, dispatchWorkgroups() {}, end() {} }),
      copyBufferToBuffer() {},
      finish: () => ({}),
    }),
    destroy: () => log.push('destroyed'),
  };
  return { gpu: { requestAdapter: async () => ({ requestDevice: async () => device }) }, lose };
}

test('the variant starts on its code while its shard is still in flight', async () => {
  let open;
  const gate = new Promise((resolve) => { open = resolve; });
  const { fetch, log } = await bundle(gate);
  const { gpu } = fakeGpu(log);
  // The shard is held until the pipeline exists (or 2 s pass, for a loader
  // that waits for every file first: the order below then fails).
  const timer = setTimeout(open, 2000);
  const watching = setInterval(() => log.includes('pipeline k0.wgsl') && open(), 1);
  const model = await load('https://models.example/m.wpc', { fetch, gpu, caps: CAPS, cache: null });
  clearTimeout(timer);
  clearInterval(watching);
  assert.equal(model.variant, 'webgpu');
  const at = (entry) => log.indexOf(entry);
  assert.ok(at('pipeline k0.wgsl') >= 0 && at('pipeline k0.wgsl') < at('sent weights-000.bin'), log.join(', '));
  assert.ok(at('upload 8 bytes') > at('sent weights-000.bin'), log.join(', '));
});

test('a device lost between runs hands over to wasm, and says so', async () => {
  const { fetch, log } = await bundle();
  const { gpu, lose } = fakeGpu(log);
  const fallbacks = [];
  const model = await load('https://models.example/m.wpc', {
    fetch, gpu, caps: CAPS, cache: null, onFallback: (e) => fallbacks.push(e),
  });
  const x = new Float32Array([3, 4]);
  assert.deepEqual([...(await model.run({ x })).y.data], [0, 0]); // the fake device's readback
  lose({ reason: 'unknown', message: 'the GPU process crashed' });
  await Promise.resolve();
  const fetchesBefore = log.filter((l) => l.startsWith('fetch')).length;
  assert.deepEqual([...(await model.run({ x })).y.data], [1.5, -2]); // the wasm module's memory
  assert.equal(model.variant, 'wasm-scalar');
  assert.deepEqual(fallbacks, [{ from: 'webgpu', to: 'wasm-scalar', reason: 'the WebGPU device was lost: the GPU process crashed' }]);
  assert.deepEqual(model.passedOver.at(-1), { variant: 'webgpu', reason: 'failed while running: the WebGPU device was lost: the GPU process crashed' });
  // The shard was not fetched again; only the module was.
  assert.deepEqual(log.filter((l) => l.startsWith('fetch')).slice(fetchesBefore), ['fetch model-scalar.wasm']);
});

test('a model or input error is surfaced, not masked by a fallback', async () => {
  const { fetch, log } = await bundle();
  const { gpu } = fakeGpu(log);
  const fallbacks = [];
  const model = await load('https://models.example/m.wpc', {
    fetch, gpu, caps: CAPS, cache: null, onFallback: (e) => fallbacks.push(e),
  });
  await assert.rejects(model.run({}), (e) => e instanceof WpcError && e.code === 'input' && /missing input 'x'/.test(e.message));
  await assert.rejects(model.run({ x: new Float32Array(3) }), /input 'x' has 3 elements, the bundle was compiled for 2 \(shape \[2\]\)/);
  await assert.rejects(model.run({ x: { data: new Float32Array(2), shape: [1, 2] } }), /input 'x' has shape \[1, 2\], the bundle was compiled for \[2\]/);
  // A tensor with the right shape runs, and outputs come with theirs.
  assert.deepEqual(await model.run({ x: { data: new Float32Array(2), shape: [2] } }), {
    y: { data: new Float32Array(2), shape: [2], dtype: 'float32' },
  });
  assert.equal(model.variant, 'webgpu');
  assert.deepEqual(fallbacks, []);
});

test('a pipeline that fails to start frees its device and falls back', async () => {
  const { fetch, log } = await bundle();
  const { gpu } = fakeGpu(log);
  const broken = {
    requestAdapter: async () => ({
      requestDevice: async () => {
        const device = await (await gpu.requestAdapter()).requestDevice();
        return { ...device, createComputePipelineAsync: async () => { throw new Error('pipeline creation failed'); } };
      },
    }),
  };
  const fallbacks = [];
  const progress = [];
  const model = await load('https://models.example/m.wpc', {
    fetch, gpu: broken, caps: CAPS, cache: null, onFallback: (e) => fallbacks.push(e),
    onProgress: (loaded, total) => progress.push([loaded, total]),
  });
  assert.equal(model.variant, 'wasm-scalar');
  assert.ok(log.includes('destroyed'));
  // Progress never goes back across the fallback; the total grows by the
  // module the wasm variant adds (the shard is not fetched twice).
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i][0] >= progress[i - 1][0], JSON.stringify(progress));
  const gpuFiles = SHADER.length + WEIGHTS.length;
  assert.deepEqual(progress.at(-1), [gpuFiles + WASM.length, gpuFiles + WASM.length]);
  assert.deepEqual(fallbacks, [{ from: 'webgpu', to: 'wasm-scalar', reason: 'pipeline creation failed' }]);
  assert.deepEqual([...(await model.run({ x: new Float32Array(2) })).y.data], [1.5, -2]);
});

test('the wasm module compiles while it downloads, and is used only once verified', async () => {
  const streamed = [];
  const compileStreaming = WebAssembly.compileStreaming;
  WebAssembly.compileStreaming = (source) => {
    streamed.push(source);
    return compileStreaming(source);
  };
  try {
    const { fetch } = await bundle();
    const model = await load('https://models.example/m.wpc', { fetch, caps: CAPS, cache: null, prefer: 'wasm-scalar' });
    assert.equal(streamed.length, 1);
    assert.deepEqual([...(await model.run({ x: new Float32Array(2) })).y.data], [1.5, -2]);
    // A module that compiles but is not the one listed is refused.
    const other = await bundle();
    const module = Uint8Array.from(WASM);
    module[22] = 2; // one more page of memory: still valid wasm
    other.files['model-scalar.wasm'] = module;
    await assert.rejects(
      load('https://models.example/m.wpc', { fetch: other.fetch, caps: CAPS, cache: null, prefer: 'wasm-scalar' }),
      (e) => e instanceof IntegrityError && e.file === 'model-scalar.wasm',
    );
    assert.equal(streamed.length, 2);
  } finally {
    WebAssembly.compileStreaming = compileStreaming;
  }
});
