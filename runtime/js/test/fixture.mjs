// The synthetic two-variant bundle the load() and Node tests share: a
// WebGPU variant for a fake device (only what the executor calls) and a
// wasm variant with a real, tiny module whose outputs are its weights.

import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { sha256Hex } from '../src/loader.js';

globalThis.GPUBufferUsage ??= { MAP_READ: 1, COPY_SRC: 4, COPY_DST: 8, STORAGE: 128 };
globalThis.GPUMapMode ??= { READ: 1 };

export const CAPS = JSON.parse(await readFile(new URL('caps/chromium-148-linux-swiftshader.json', import.meta.url), 'utf8'));

/** (memory (export "memory") 1) (func (export "run")): outputs are
 * whatever the loader put in memory, i.e. the weights. */
export const WASM = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
  0x03, 0x02, 0x01, 0x00,
  0x05, 0x03, 0x01, 0x00, 0x01,
  0x07, 0x10, 0x02, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x03, 0x72, 0x75, 0x6e, 0x00, 0x00,
  0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b,
]);
export const WEIGHTS = new Uint8Array(new Float32Array([1.5, -2]).buffer);
export const SHADER = new TextEncoder().encode('@compute @workgroup_size(1) fn main() {}');

/** The bundle's files, its manifest, and a fetch serving them that logs
 * each request (`urls`: in full) and holds each file of `hold` until its
 * promise resolves. */
export async function bundle(hold = {}) {
  const files = { 'k0.wgsl': SHADER, 'model-scalar.wasm': WASM, 'weights-000.bin': WEIGHTS };
  const listing = async (file) => ({ file, bytes: files[file].length, sha256: await sha256Hex(files[file]) });
  const slot = { elements: 2 };
  const manifest = {
    format: 'wpc-bundle',
    version: 3,
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
  const urls = [];
  const fetch = async (url) => {
    urls.push(url);
    const file = new URL(url).pathname.split('/').pop();
    log.push(`fetch ${file}`);
    if (file === 'manifest.json') return new Response(JSON.stringify(manifest));
    if (hold[file]) {
      await hold[file];
      log.push(`sent ${file}`);
    }
    return new Response(files[file]);
  };
  return { fetch, log, urls, files, manifest };
}

/** A WebGPU device that logs what the executor asks of it; `lose()`
 * resolves its `lost` promise. Outputs read back as zeros. */
export function fakeGpu(log) {
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
    createBuffer: ({ size }) => ({
      mapAsync: async () => {},
      getMappedRange: () => new ArrayBuffer(size),
      unmap() {},
      destroy: () => log.push('buffer destroyed'),
    }),
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

/**
 * Writes `b` (from `bundle()`) into the directory `dir` as `wpc compile`
 * would, with a copy of the runtime in its runtime/ folder.
 * @param {string} dir
 */
export async function writeBundle(dir, b) {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(b.manifest));
  for (const [file, bytes] of Object.entries(b.files)) await writeFile(join(dir, file), bytes);
  await cp(new URL('../src', import.meta.url), join(dir, 'runtime'), { recursive: true });
}
