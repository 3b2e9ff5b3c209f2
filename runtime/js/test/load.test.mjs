// load() end to end on the synthetic two-variant bundle of fixture.mjs: a
// fake WebGPU device (only what the executor calls) and a real, tiny wasm
// module.
// Covers what the browser tests cannot make happen on cue: the variant
// starting on its code while a shard is still in flight, the device being
// lost between runs, and model errors that must not trigger a fallback.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DisposedError, IntegrityError, UnsupportedBundleError, WpcError } from '../src/errors.js';
import { load } from '../src/loader.js';
import { loadWasm } from '../src/wasm.js';
import { loadWebGpu } from '../src/webgpu.js';
import { bundle, CAPS, fakeGpu, SHADER, WASM, WEIGHTS } from './fixture.mjs';

test('the variant starts on its code while its shard is still in flight', async () => {
  let open;
  const gate = new Promise((resolve) => { open = resolve; });
  const { fetch, log } = await bundle({ 'weights-000.bin': gate });
  const { gpu } = fakeGpu(log);
  // The shard is held until the pipeline exists (or 2 s pass, for a loader
  // that waits for every file first: the order below then fails).
  const timer = setTimeout(open, 2000);
  const watching = setInterval(() => log.includes('pipeline k0.wgsl') && open(), 1);
  let model;
  try {
    model = await load('https://models.example/m.wpc', { fetch, gpu, caps: CAPS, cache: null });
  } finally {
    clearTimeout(timer);
    clearInterval(watching);
  }
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
  // What the lost device held is freed.
  assert.equal(log.filter((l) => l === 'buffer destroyed').length, 3, log.join(', '));
  assert.ok(log.includes('destroyed'));
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

test('a bundle of another format or version is refused, naming both', async () => {
  for (const [change, message] of [
    [{ version: 1 }, "the manifest's version is 1; this runtime reads version 3"],
    [{ version: undefined }, "the manifest's version is missing; this runtime reads version 3"],
    [{ format: 'other-bundle' }, `the manifest's format is "other-bundle"; this runtime reads format "wpc-bundle"`],
  ]) {
    const { fetch, manifest } = await bundle();
    Object.assign(manifest, change);
    await assert.rejects(load('https://models.example/m.wpc', { fetch, caps: CAPS, cache: null }), (e) => {
      assert.ok(e instanceof UnsupportedBundleError && e.code === 'unsupported-bundle', String(e));
      assert.equal(e.message, `https://models.example/m.wpc/: ${message}`);
      return true;
    });
  }
});

test('a manifest whose plan contradicts its tensors is refused by either executor, naming the tensor', async () => {
  const webgpu = (m) => m.variants[0];
  const wasm = (m) => m.variants[1];
  for (const [prefer, tamper, message] of [
    ['webgpu', (m) => { m.outputs[0].bound = [3]; }, "output 'y' has shape [3] (3 elements), webgpu holds 2"],
    ['wasm-scalar', (m) => { m.outputs[0].bound = [3]; }, "output 'y' has shape [3] (3 elements), wasm-scalar holds 2"],
    ['wasm-scalar', (m) => { m.inputs[0].bound = [2, 2]; }, "input 'x' has shape [2, 2] (4 elements), wasm-scalar holds 2"],
    ['webgpu', (m) => { webgpu(m).outputs.pop(); }, 'the model has 1 outputs, webgpu has slots for 0'],
    ['webgpu', (m) => { webgpu(m).buffers[1].bytes = 4; }, "input 'x' in webgpu: 2 words do not fit the 4 bytes of buffer 1"],
    ['webgpu', (m) => { webgpu(m).outputs[0].buffer = 7; }, "output 'y' in webgpu: there is no buffer 7"],
    ['webgpu', (m) => { webgpu(m).buffers[0].init.bytes = 12; }, 'buffer 0 takes bytes 0..12 of shard 0, but weights-000.bin has 8 bytes'],
    ['webgpu', (m) => { webgpu(m).buffers[0].bytes = 4; }, 'buffer 0: 8 bytes of weights do not fit in 4'],
    ['wasm-scalar', (m) => { wasm(m).inputs[0].offset = 65532; }, "input 'x' in wasm-scalar: bytes 65532..65540 lie outside its 65536 bytes of memory"],
    ['wasm-scalar', (m) => { wasm(m).weights[0].offset = 65532; }, "wasm-scalar's weights at offset 65532: 8 bytes of weights do not fit in 4"],
    ['wasm-scalar', (m) => { wasm(m).memory_bytes = 131072; }, 'model-scalar.wasm has 65536 bytes of memory, wasm-scalar plans for 131072'],
  ]) {
    const { fetch, log, manifest } = await bundle();
    tamper(manifest);
    const { gpu } = fakeGpu(log);
    const fallbacks = [];
    await assert.rejects(
      load('https://models.example/m.wpc', { fetch, gpu, caps: CAPS, cache: null, prefer, onFallback: (e) => fallbacks.push(e) }),
      (e) => {
        assert.ok(e instanceof WpcError && e.code === 'bad-bundle', String(e));
        assert.equal(e.message, `the manifest is inconsistent: ${message}`);
        return true;
      },
    );
    // Checked before any device or pipeline is made; no fallback hides it.
    assert.ok(!log.some((l) => l.startsWith('pipeline')), log.join(', '));
    assert.deepEqual(fallbacks, []);
  }
});

test('dispose() destroys the WebGPU buffers and device; run() then rejects', async () => {
  const { fetch, log, files, manifest } = await bundle();
  const { gpu } = fakeGpu(log);
  const model = await load('https://models.example/m.wpc', { fetch, gpu, caps: CAPS, cache: null });
  assert.equal(model.variant, 'webgpu');
  model.dispose();
  model.dispose(); // a second call does nothing
  // Two buffers of the plan and one readback buffer.
  assert.equal(log.filter((l) => l === 'buffer destroyed').length, 3, log.join(', '));
  assert.equal(log.filter((l) => l === 'destroyed').length, 1, log.join(', '));
  await assert.rejects(model.run({ x: new Float32Array(2) }), (e) => e instanceof DisposedError && e.code === 'disposed');
  // The executor on its own, too.
  const executor = await loadWebGpu(manifest, manifest.variants[0], async (file) => files[file], { gpu });
  executor.dispose();
  await assert.rejects(executor.run({ x: new Float32Array(2) }), DisposedError);
});

test('dispose() drops the wasm instance; run() then rejects', async () => {
  const { fetch, files, manifest } = await bundle();
  const model = await load('https://models.example/m.wpc', { fetch, caps: CAPS, cache: null, prefer: 'wasm-scalar' });
  model.dispose();
  await assert.rejects(model.run({ x: new Float32Array(2) }), DisposedError);
  // The executor on its own, too.
  const executor = await loadWasm(manifest, 'wasm-scalar', async (file) => files[file]);
  assert.deepEqual([...executor.run({ x: new Float32Array(2) }).y], [1.5, -2]);
  executor.dispose();
  assert.throws(() => executor.run({ x: new Float32Array(2) }), DisposedError);
});

test('dispose() aborts a fallback still loading', async () => {
  let open;
  const gate = new Promise((resolve) => { open = resolve; });
  const { fetch, log } = await bundle({ 'model-scalar.wasm': gate });
  const { gpu, lose } = fakeGpu(log);
  const fallbacks = [];
  const model = await load('https://models.example/m.wpc', {
    fetch, gpu, caps: CAPS, cache: null, onFallback: (e) => fallbacks.push(e),
  });
  lose({ reason: 'unknown', message: 'the GPU process crashed' });
  await Promise.resolve();
  const running = model.run({ x: new Float32Array(2) });
  while (!log.includes('fetch model-scalar.wasm')) await new Promise((resolve) => setTimeout(resolve, 1));
  model.dispose();
  open();
  await assert.rejects(running, DisposedError);
  assert.deepEqual(fallbacks, []);
});

test('a load aborted after its files arrived, while its variant starts, frees what it made', async () => {
  const { fetch, log } = await bundle();
  const { gpu } = fakeGpu(log);
  let open;
  const gate = new Promise((resolve) => { open = resolve; });
  // Pipelines wait for the gate, which opens only once every file is in.
  const slow = {
    requestAdapter: async () => ({
      requestDevice: async () => {
        const device = await (await gpu.requestAdapter()).requestDevice();
        return { ...device, createComputePipelineAsync: async (d) => { await gate; return device.createComputePipelineAsync(d); } };
      },
    }),
  };
  const controller = new AbortController();
  // The shard is the last file; it is put in the cache once verified.
  const cache = {
    match: async () => undefined,
    put: async (url) => url.endsWith('.bin') && setTimeout(() => {
      controller.abort(new Error('user left'));
      open();
    }),
  };
  await assert.rejects(load('https://models.example/m.wpc', { fetch, gpu: slow, caps: CAPS, cache, signal: controller.signal }), /user left/);
  assert.ok(log.includes('pipeline k0.wgsl') && log.includes('destroyed'), log.join(', '));
});

test('the wasm executor writes a dynamic bundle\'s sizes into its size table and refuses sizes out of range', async () => {
  const { files, manifest } = await bundle();
  // One dim; x is n floats; the size table sits where output `n` is read
  // back from (the fixture's module runs nothing), so the output is the
  // size the executor wrote.
  manifest.dims = [{ name: 'n', min: 1, max: 2 }];
  manifest.inputs[0].run_shape = ['n'];
  manifest.outputs = [{ name: 'n', dtype: 'uint32', shape: [1], bound: [1] }];
  const wasm = manifest.variants[1];
  wasm.sizes = { offset: 32, dims: ['n'] };
  wasm.outputs = [{ offset: 32, elements: 1 }];
  const executor = await loadWasm(manifest, 'wasm-scalar', async (file) => files[file]);
  assert.deepEqual([...executor.run({ x: new Float32Array(1) }, { n: 1 }).n], [1]);
  assert.deepEqual([...executor.run({ x: new Float32Array(2) }, { n: 2 }).n], [2]);
  assert.throws(() => executor.run({ x: new Float32Array(3) }, { n: 3 }), /dim 'n' is 3, outside the sizes this bundle runs at, 1..2/);
  assert.throws(() => executor.run({ x: new Float32Array(2) }, {}), /dim 'n' is undefined/);
  assert.throws(() => executor.run({ x: new Float32Array(2) }, { n: 1 }), /input 'x' has 2 elements, the bundle takes 1 at these sizes/);
  // A table that does not cover every dim is refused before anything runs.
  wasm.sizes = { offset: 32, dims: [] };
  await assert.rejects(loadWasm(manifest, 'wasm-scalar', async (file) => files[file]), /wasm-scalar has no place for the size of dim 'n'/);
});

/** Like the fixture's module, but `run` stores 2 at byte 36, where the
 * test below puts the size table's slot of a counted dim:
 * (func (export "run") (i32.store (i32.const 36) (i32.const 2))). */
const COUNTING_WASM = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
  0x03, 0x02, 0x01, 0x00,
  0x05, 0x03, 0x01, 0x00, 0x01,
  0x07, 0x10, 0x02, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x03, 0x72, 0x75, 0x6e, 0x00, 0x00,
  0x0a, 0x0b, 0x01, 0x09, 0x00, 0x41, 0x24, 0x41, 0x02, 0x36, 0x02, 0x00, 0x0b,
]);

test('the wasm executor reads back the sizes the model counted and shapes outputs by them', async () => {
  const { files, manifest } = await bundle();
  files['model-scalar.wasm'] = COUNTING_WASM;
  // `c` is counted by the model (no input gives it): the executor leaves
  // its slot to the module, then reads it back into the run's sizes.
  manifest.dims = [{ name: 'n', min: 1, max: 2 }, { name: 'c', min: 0, max: 2, counted_in: 'y' }];
  manifest.inputs[0].run_shape = ['n'];
  manifest.outputs[0].run_shape = ['c'];
  const wasm = manifest.variants[1];
  wasm.sizes = { offset: 32, dims: ['n', 'c'] };
  const executor = await loadWasm(manifest, 'wasm-scalar', async (file) => files[file]);
  const sizes = { n: 1 };
  const out = executor.run({ x: new Float32Array(1) }, sizes);
  assert.deepEqual(sizes, { n: 1, c: 2 });
  assert.deepEqual([...out.y], [1.5, -2], 'y has the counted size: both of its planned elements');
});

test('a WebGPU variant in which no dispatch counts a counted dim is refused before a device is asked for', async () => {
  const { files, manifest } = await bundle();
  manifest.dims = [{ name: 'c', min: 0, max: 2, counted_in: 'y' }];
  manifest.outputs[0].run_shape = ['c'];
  const gpu = { requestAdapter: () => assert.fail('no device before the plan is checked') };
  const webgpu = manifest.variants[0];
  await assert.rejects(loadWebGpu(manifest, webgpu, async (file) => files[file], { gpu }), /no dispatch of the WebGPU variant counts 'c'/);
  webgpu.dispatches[0].counts = [{ dim: 'c', buffer: 7 }];
  await assert.rejects(loadWebGpu(manifest, webgpu, async (file) => files[file], { gpu }), /counts 'c' into buffer 7, which is not a counted dim and a buffer/);
});
