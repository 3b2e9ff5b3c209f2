// Times wpc's wasm-simd variant and onnxruntime-web's wasm backend (one
// thread, SIMD) side by side in this Node process, on the same inputs.
//
//   node scripts/bench/bench.mjs RUNS LABEL MODEL.onnx BUNDLE_DIR INPUT_NAME=FILE.npy... [-- LABEL ...]
//
// BUNDLE_DIR may be "" to time onnxruntime-web alone.
//
// Prints one JSON line per model and engine: {model, engine, median_ms, runs}.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-web';
import { loadWasm } from '../../runtime/js/src/wasm.js';
import { readNpy } from '../../runtime/js/node/npy.mjs';

ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

const WARMUP = 3;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

async function time(runs, fn) {
  for (let i = 0; i < WARMUP; i++) await fn();
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return median(times);
}

async function benchModel(runs, label, onnx, bundle, inputSpecs) {
  const inputs = {};
  for (const spec of inputSpecs) {
    const [name, file] = spec.split(/=(.*)/s);
    inputs[name] = readNpy(await readFile(file));
  }
  // An empty bundle path: wpc cannot build this model's wasm variant yet;
  // time the peer alone.
  if (bundle) {
    const manifest = JSON.parse(await readFile(join(bundle, 'manifest.json'), 'utf8'));
    const ours = await loadWasm(manifest, 'wasm-simd', async (f) => new Uint8Array(await readFile(join(bundle, f))));
    const fed = new Set(manifest.inputs.map((i) => i.name));
    const feeds = Object.fromEntries(Object.entries(inputs).filter(([k]) => fed.has(k)).map(([k, v]) => [k, v.data]));
    const wpcMs = await time(runs, () => ours.run(feeds));
    console.log(JSON.stringify({ model: label, engine: 'wpc wasm-simd (Node)', median_ms: wpcMs, runs }));
  }

  const session = await ort.InferenceSession.create(await readFile(onnx), {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
  });
  const ortFeeds = {};
  for (const [k, v] of Object.entries(inputs)) {
    const type = v.data instanceof BigInt64Array ? 'int64' : v.data instanceof Int32Array ? 'int32' : 'float32';
    ortFeeds[k] = new ort.Tensor(type, v.data, v.shape);
  }
  const ortMs = await time(runs, () => session.run(ortFeeds));
  console.log(JSON.stringify({ model: label, engine: 'onnxruntime-web wasm (Node)', median_ms: ortMs, runs }));
  await session.release();
}

async function main() {
  const argv = process.argv.slice(2);
  const runs = Number(argv.shift());
  const groups = [];
  let cur = [];
  for (const a of argv) {
    if (a === '--') {
      groups.push(cur);
      cur = [];
    } else cur.push(a);
  }
  if (cur.length) groups.push(cur);
  for (const [label, onnx, bundle, ...specs] of groups) {
    await benchModel(runs, label, onnx, bundle, specs);
  }
}

main().catch((e) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});
