// End-to-end tests of runtime/js in headless Chromium (Debian's
// /usr/bin/chromium, WebGPU through SwiftShader), driven by playwright-core.
// A local static server serves compiled bundles and the models' stored
// inputs and onnxruntime outputs; each test imports the runtime copy that
// `wpc compile` put into the bundle, loads the bundle with `load()` in the
// page, runs it and compares outputs there.
//
//   WPC_E2E_BUNDLES=DIR WPC_MODELS_DIR=DIR node --test browser.test.mjs
//
// DIR holds <case>.wpc bundles and cases.json, and one bundle per dynamic
// group of the real-model set (dims left to run time; sizes the data
// decides) with dynamic.json, each bundle's cases at several sizes
// (written by scripts/browser_tests.sh, which is how CI runs this).

import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const RUNTIME = resolve(fileURLToPath(new URL('..', import.meta.url)));
const REPO = resolve(RUNTIME, '..', '..');
const BUNDLES = process.env.WPC_E2E_BUNDLES;
const MODELS = process.env.WPC_MODELS_DIR;
if (!BUNDLES || !MODELS) throw new Error('set WPC_E2E_BUNDLES and WPC_MODELS_DIR');
const CASES = JSON.parse(await readFile(join(BUNDLES, 'cases.json'), 'utf8'));
const DYNAMIC = JSON.parse(await readFile(join(BUNDLES, 'dynamic.json'), 'utf8'));

// The flags DESIGN.md §5 gives for WebGPU on SwiftShader, headless.
const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader',
  '--use-webgpu-adapter=swiftshader', '--use-angle=swiftshader', '--no-sandbox',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run', '--disable-quic',
];

const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json', '.wasm': 'application/wasm', '.html': 'text/html' };
const PAGE = '<!doctype html><meta charset="utf-8"><title>wpc e2e</title><body>wpc e2e</body>';

let server;
let origin;
let browser;
let page;
/** URL paths the server answered, for cache checks. */
const served = [];

/** Serves /rt/ (runtime/js), /repo/ (the repository, for examples/),
 * /bundles/, /models/; /tampered/ is /bundles/ with one byte of every
 * weight shard flipped. */
function start() {
  const roots = { rt: RUNTIME, repo: REPO, bundles: BUNDLES, models: MODELS, tampered: BUNDLES };
  server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    served.push(path);
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
      return;
    }
    const [, root, ...rest] = path.split('/');
    const base = roots[root];
    const file = base && normalize(join(base, ...rest));
    try {
      if (!file || !file.startsWith(base) || !(await stat(file)).isFile()) throw new Error('not found');
      const bytes = await readFile(file);
      if (root === 'tampered' && /weights-\d+\.bin$/.test(file)) bytes[bytes.length >> 1] ^= 1;
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(bytes);
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => {
    origin = `http://127.0.0.1:${server.address().port}`;
    ok();
  }));
}

before(async () => {
  await start();
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  page = await browser.newPage();
  page.on('pageerror', (e) => console.error('page error:', e));
  await page.goto(`${origin}/`);
});

after(async () => {
  await browser?.close();
  server?.close();
});

/**
 * In the page: loads `bundle` preferring `prefer`, runs it twice on the
 * case's inputs and compares every output with onnxruntime's
 * (|got - want| <= atol + rtol·|want|). Returns a summary.
 */
async function runCase(c, prefer, options = {}) {
  return page.evaluate(async ({ c, prefer, options }) => {
    const root = `/${options.root ?? 'bundles'}/${options.bundle ?? c.name}.wpc`;
    const rt = await import(`${root}/runtime/index.js`);
    const { readNpy } = await import('/rt/node/npy.mjs');
    const npy = async (path) => readNpy(new Uint8Array(await (await fetch(path)).arrayBuffer()));
    const progress = [];
    const fallbacks = [];
    // A GPU whose device cannot be created: the WebGPU variant must fail
    // over to wasm.
    const broken = { requestAdapter: async () => ({ requestDevice: async () => { throw new Error('forced device failure'); } }) };
    // The real GPU, keeping the device it makes (to lose it on cue).
    const devices = [];
    const keeping = {
      requestAdapter: async (o) => {
        const adapter = await navigator.gpu.requestAdapter(o);
        return { requestDevice: async (d) => devices[devices.push(await adapter.requestDevice(d)) - 1] };
      },
    };
    const t0 = performance.now();
    const model = await rt.load(root, {
      prefer,
      cache: options.cache ? await caches.open('wpc-e2e') : null,
      onProgress: (loaded, total) => progress.push([loaded, total]),
      onFallback: (e) => fallbacks.push(e),
      gpu: options.brokenGpu ? broken : keeping,
    });
    const inputs = {};
    for (const info of model.manifest.inputs) inputs[info.name] = await npy(`/models/${c.name}/${c.inputs[info.name]}`);
    const t1 = performance.now();
    const first = await model.run(inputs);
    const t2 = performance.now();
    await model.run(inputs);
    const t3 = performance.now();
    let outputs = first;
    if (options.loseDevice) {
      // The GPU goes away between runs: the next run must hand over.
      devices[0].destroy();
      await devices[0].lost;
      outputs = await model.run(inputs);
    }
    const errors = {};
    for (const info of model.manifest.outputs) {
      const expected = await npy(`/models/${c.name}/${c.outputs[info.name]}`);
      const want = expected.data;
      const got = outputs[info.name].data;
      if (String(outputs[info.name].shape) !== String(expected.shape)) {
        throw new Error(`${info.name}: shape ${outputs[info.name].shape}, onnxruntime's is ${expected.shape}`);
      }
      let maxAbs = 0;
      let maxRel = 0;
      let bad = 0;
      for (let i = 0; i < want.length; i++) {
        const d = Math.abs(Number(got[i]) - Number(want[i]));
        maxAbs = Math.max(maxAbs, d);
        if (d > 0) maxRel = Math.max(maxRel, d / Math.max(Math.abs(Number(want[i])), 1e-30));
        if (!(d <= 1e-4 + 1e-3 * Math.abs(Number(want[i])))) bad++;
      }
      errors[info.name] = { maxAbs, maxRel, bad, length: got.length, expected: want.length };
    }
    return {
      fallbacks,
      variant: model.variant,
      passedOver: model.passedOver,
      loadMs: t1 - t0,
      firstRunMs: t2 - t1,
      steadyRunMs: t3 - t2,
      loadToFirstResultMs: t2 - t0,
      progress,
      errors,
    };
  }, { c, prefer, options });
}

test('wpc compile put the runtime into every bundle', async () => {
  for (const c of CASES) {
    const exports = await page.evaluate(async (name) => Object.keys(await import(`/bundles/${name}.wpc/runtime/index.js`)), c.name);
    for (const name of ['detect', 'select', 'load']) assert.ok(exports.includes(name), `${c.name}: ${exports}`);
  }
});

test('detect() in real Chromium', async () => {
  const caps = await page.evaluate(async () => (await import('/rt/src/index.js')).detect());
  console.log(`chromium capabilities: ${JSON.stringify(caps)}`);
  assert.equal(caps.browser.name, 'Chrome');
  assert.equal(caps.wasm.simd, true);
  assert.equal(caps.wasm.relaxedSimd, true);
});

for (const c of CASES) {
  for (const prefer of ['webgpu', 'wasm-relaxed', 'wasm-simd', 'wasm-scalar']) {
    test(`${c.name} on ${prefer} matches onnxruntime`, async () => {
      const r = await runCase(c, prefer);
      assert.equal(r.variant, prefer, JSON.stringify(r.passedOver));
      for (const [name, e] of Object.entries(r.errors)) {
        assert.equal(e.length, e.expected, `${name}: length`);
        assert.equal(e.bad, 0, `${name}: ${e.bad} elements out of tolerance (max abs error ${e.maxAbs})`);
      }
      // The first output is the model's; the others are intermediates.
      const [first] = Object.values(r.errors);
      const maxRel = Math.max(...Object.values(r.errors).map((e) => e.maxRel));
      console.log(`${c.name} ${prefer}: output max abs error ${first.maxAbs.toExponential(2)}, max rel error (all outputs) ${maxRel.toExponential(2)}, load ${r.loadMs.toFixed(0)} ms, first run ${r.firstRunMs.toFixed(1)} ms, steady ${r.steadyRunMs.toFixed(1)} ms`);
      // Progress never goes back and ends at the total.
      for (let i = 1; i < r.progress.length; i++) assert.ok(r.progress[i][0] >= r.progress[i - 1][0]);
      const [loaded, total] = r.progress.at(-1);
      assert.equal(loaded, total);
      assert.ok(total > 0);
    });
  }
}

test('one bundle runs at every size of its cases on webgpu and wasm and matches onnxruntime (dynamic sequences, batches, image sizes, unnamed dims; sizes the data decides)', async () => {
  // Every dynamic group of the real-model set, each at two sizes or more.
  assert.ok(DYNAMIC.length >= 8, `${DYNAMIC.length} dynamic groups`);
  for (const g of DYNAMIC) assert.ok(g.cases.length >= 2, `${g.bundle}: ${g.cases.length} cases`);
  for (const variant of ['webgpu', 'wasm-relaxed']) {
    for (const { bundle, cases } of DYNAMIC) for (const c of cases) {
      const r = await runCase(c, variant, { bundle });
      assert.equal(r.variant, variant, JSON.stringify(r.passedOver));
      for (const [name, e] of Object.entries(r.errors)) {
        assert.equal(e.length, e.expected, `${c.name} ${variant} ${name}: length`);
        assert.equal(e.bad, 0, `${c.name} ${variant} ${name}: ${e.bad} elements out of tolerance (max abs error ${e.maxAbs})`);
      }
      const shapes = Object.values(r.errors).map((e) => e.expected).join(', ');
      console.log(`${c.name} ${variant} (one dynamic bundle): max abs error ${Object.values(r.errors)[0].maxAbs.toExponential(2)} (output lengths ${shapes}), steady ${r.steadyRunMs.toFixed(1)} ms`);
    }
  }
});

test('when WebGPU fails, the runtime falls back to wasm and says so', async () => {
  const c = CASES[0];
  const r = await runCase(c, undefined, { brokenGpu: true });
  assert.equal(r.variant, 'wasm-relaxed');
  assert.deepEqual(r.fallbacks, [{ from: 'webgpu', to: 'wasm-relaxed', reason: 'forced device failure' }]);
  assert.equal(r.passedOver[0].reason, 'failed to start: forced device failure');
  for (const e of Object.values(r.errors)) assert.equal(e.bad, 0);
});

test('when the WebGPU device is lost between runs, the next run falls back to wasm', async () => {
  const c = CASES.find((x) => x.name === 'light_squeezenet') ?? CASES[0];
  const r = await runCase(c, 'webgpu', { loseDevice: true });
  assert.equal(r.variant, 'wasm-relaxed');
  assert.equal(r.fallbacks.length, 1, JSON.stringify(r.fallbacks));
  assert.deepEqual([r.fallbacks[0].from, r.fallbacks[0].to], ['webgpu', 'wasm-relaxed']);
  assert.match(r.fallbacks[0].reason, /^the WebGPU device was lost/);
  // The outputs checked are those of the run after the loss.
  for (const e of Object.values(r.errors)) assert.equal(e.bad, 0);
  console.log(`device lost: ${JSON.stringify(r.fallbacks[0])}`);
});

test('a second load is served by the Cache API, without fetching weights', async () => {
  const c = CASES.find((x) => x.name === 'light_resnet50') ?? CASES[0];
  await page.evaluate(() => caches.delete('wpc-e2e'));
  const cold = await runCase(c, 'wasm-relaxed', { cache: true });
  const before = served.length;
  const warm = await runCase(c, 'wasm-relaxed', { cache: true });
  const fetched = served.slice(before).filter((p) => p.startsWith('/bundles/'));
  assert.deepEqual(fetched, [`/bundles/${c.name}.wpc/manifest.json`]);
  console.log(`${c.name} load() to first result: cold ${cold.loadToFirstResultMs.toFixed(0)} ms, warm cache ${warm.loadToFirstResultMs.toFixed(0)} ms`);
});

test('the demo page shows the chosen variant, progress and a result', async () => {
  const c = CASES.find((x) => x.name === 'light_squeezenet') ?? CASES[0];
  const demo = await browser.newPage();
  await demo.goto(`${origin}/repo/examples/demo/index.html?bundle=/bundles/${c.name}.wpc&prefer=wasm-relaxed&auto=1`);
  await demo.waitForSelector('#result[data-done="true"]', { timeout: 60000 });
  const text = await demo.innerText('body');
  const shot = join(BUNDLES, 'demo.png');
  await demo.screenshot({ path: shot, fullPage: true });
  console.log(`demo page screenshot: ${(await stat(shot)).size} bytes`);
  assert.match(text, /variant: wasm-relaxed/);
  assert.match(text, /first run [\d.]+ ms, second run [\d.]+ ms/);
  assert.match(text, /softmaxout_1: 1000 values, argmax \d+/);
  const progress = await demo.$eval('#progress', (p) => [p.value, p.max]);
  assert.ok(progress[1] > 0 && progress[0] === progress[1], `progress ${progress}`);
  await demo.close();
});

test('a tampered shard is rejected, naming it', async () => {
  const c = CASES[0];
  const err = await page.evaluate(async (name) => {
    const rt = await import(`/bundles/${name}.wpc/runtime/index.js`);
    try {
      await rt.load(`/tampered/${name}.wpc`, { prefer: 'wasm-simd', cache: null });
      return null;
    } catch (e) {
      return { name: e.name, code: e.code, file: e.file, message: e.message };
    }
  }, c.name);
  assert.ok(err, 'the load succeeded');
  assert.equal(err.code, 'integrity');
  assert.match(err.file, /^weights-\d+\.bin$/);
});
