// Times wpc's wasm-simd variants (one or more bundles, e.g. fused and
// unfused) and onnxruntime-web's wasm backend (one thread, SIMD) side by
// side in this Node process, on the same inputs. The engines run
// interleaved, one run each per round in an order that rotates, so
// machine noise hits them alike; ratios are the median of the per-round
// ratios, not a ratio of two medians.
//
//   node scripts/bench/bench.mjs RUNS LABEL MODEL.onnx BUNDLES INPUT_NAME=FILE.npy... [-- LABEL ...]
//
// BUNDLES is NAME:DIR[,NAME:DIR...] ("fused:a.wpc,unfused:b.wpc"), or ""
// to time onnxruntime-web alone.
//
// Prints one JSON line per model and engine ({model, engine, median_ms,
// runs}) and one per ratio ({model, ratio, median, min, max, runs}).

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-web';
import { bindSizes } from '../../runtime/js/src/manifest.js';
import { loadWasm } from '../../runtime/js/src/wasm.js';
import { readNpy } from '../../runtime/js/node/npy.mjs';

ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

const WARMUP = 3;
const PEER = 'onnxruntime-web wasm (Node)';

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** Runs every engine `runs` times, interleaved; returns each one's times. */
async function race(runs, engines) {
  for (const e of engines) for (let i = 0; i < WARMUP; i++) await e.run();
  const times = engines.map(() => []);
  for (let r = 0; r < runs; r++) {
    for (let j = 0; j < engines.length; j++) {
      const k = (r + j) % engines.length;
      const t0 = performance.now();
      await engines[k].run();
      times[k].push(performance.now() - t0);
    }
  }
  return times;
}

async function benchModel(runs, label, onnx, bundles, inputSpecs) {
  const inputs = {};
  for (const spec of inputSpecs) {
    const [name, file] = spec.split(/=(.*)/s);
    inputs[name] = readNpy(await readFile(file));
  }
  const engines = [];
  for (const entry of bundles ? bundles.split(',') : []) {
    const [name, dir] = entry.split(/:(.*)/s);
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
    const ours = await loadWasm(manifest, 'wasm-simd', async (f) => new Uint8Array(await readFile(join(dir, f))));
    const fed = new Set(manifest.inputs.map((i) => i.name));
    const feeds = Object.fromEntries(Object.entries(inputs).filter(([k]) => fed.has(k)).map(([k, v]) => [k, v.data]));
    // A bundle with dynamic dims runs at the sizes the inputs give.
    const sizes = bindSizes(manifest, Object.fromEntries(manifest.inputs.map((i) => [i.name, inputs[i.name].shape])));
    engines.push({ name: `wpc wasm-simd ${name} (Node)`, run: () => ours.run(feeds, sizes) });
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
  engines.push({ name: PEER, run: () => session.run(ortFeeds) });
  const times = await race(runs, engines);
  engines.forEach((e, k) => {
    console.log(JSON.stringify({ model: label, engine: e.name, median_ms: median(times[k]), runs }));
  });
  // Each of ours against the peer, and against each other in order.
  const last = engines.length - 1;
  const pairs = [];
  for (let a = 0; a < last; a++) {
    pairs.push([a, last]);
    for (let b = a + 1; b < last; b++) pairs.push([a, b]);
  }
  for (const [a, b] of pairs) {
    const ratios = times[a].map((t, i) => t / times[b][i]);
    console.log(JSON.stringify({
      model: label,
      ratio: `${engines[a].name} / ${engines[b].name}`,
      median: median(ratios),
      min: Math.min(...ratios),
      max: Math.max(...ratios),
      runs,
    }));
  }
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
