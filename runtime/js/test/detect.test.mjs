// Detector and variant selection, on capability sets of real browsers
// (test/caps/*.json, each saying where its values come from).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { detect, parseUserAgent, select, wasmFeatures } from '../src/detect.js';
import { NoUsableVariantError } from '../src/errors.js';

const caps = (name) => JSON.parse(readFileSync(new URL(`./caps/${name}.json`, import.meta.url), 'utf8'));

/** A manifest's variants as `wpc compile` writes them (chrome profile). */
function manifest({ f16 = false, storage = 1048576, scalar = true } = {}) {
  const variants = [
    {
      backend: 'webgpu',
      requires: {
        features: f16 ? ['shader-f16'] : [],
        limits: { maxComputeInvocationsPerWorkgroup: 256, maxStorageBufferBindingSize: storage },
      },
    },
    { backend: 'wasm', name: 'wasm-relaxed', features: ['simd', 'relaxed-simd'] },
    { backend: 'wasm', name: 'wasm-simd', features: ['simd'] },
  ];
  if (scalar) variants.push({ backend: 'wasm', name: 'wasm-scalar', features: [] });
  return { variants };
}

test('Chrome with shader-f16 runs an f16 bundle on WebGPU', () => {
  const pick = select(manifest({ f16: true }), caps('chrome-134-windows-nvidia'));
  assert.equal(pick.name, 'webgpu');
  assert.deepEqual(pick.passedOver, []);
});

test('Chrome without shader-f16 falls back to relaxed SIMD for an f16 bundle, and says why', () => {
  const chrome = caps('chrome-120-linux-intel-no-f16');
  const pick = select(manifest({ f16: true }), chrome);
  assert.equal(pick.name, 'wasm-relaxed');
  assert.deepEqual(pick.passedOver, [{ variant: 'webgpu', reason: 'the adapter lacks feature shader-f16' }]);
  // An f32 bundle runs on its WebGPU.
  assert.equal(select(manifest(), chrome).name, 'webgpu');
});

test('recorded headless Chromium (SwiftShader, no shader-f16): WebGPU for f32, relaxed SIMD for f16', () => {
  const chromium = caps('chromium-148-linux-swiftshader');
  assert.equal(select(manifest(), chromium).name, 'webgpu');
  const pick = select(manifest({ f16: true }), chromium);
  assert.equal(pick.name, 'wasm-relaxed');
  assert.equal(pick.passedOver[0].reason, 'the adapter lacks feature shader-f16');
  // Until the WebGPU executor lands, the loader offers only wasm.
  assert.equal(select(manifest(), chromium, { backends: ['wasm'] }).passedOver[0].reason, 'this runtime has no webgpu executor');
});

test('a bundle needing larger limits than the adapter has is passed over, naming the limit', () => {
  const pick = select(manifest({ storage: 1 << 30 }), caps('chrome-120-linux-intel-no-f16'));
  assert.equal(pick.name, 'wasm-relaxed');
  assert.equal(
    pick.passedOver[0].reason,
    "the adapter's maxStorageBufferBindingSize is 134217728, the bundle needs 1073741824",
  );
});

test('Firefox: WebGPU for f32 bundles; SIMD without relaxed SIMD otherwise', () => {
  const firefox = caps('firefox-141-windows');
  assert.equal(select(manifest(), firefox).name, 'webgpu');
  const pick = select(manifest({ f16: true }), firefox);
  assert.equal(pick.name, 'wasm-simd');
  assert.deepEqual(pick.passedOver.map((p) => p.reason), [
    'the adapter lacks feature shader-f16',
    'the engine lacks wasm relaxed-simd',
  ]);
});

test('Safari without WebGPU runs the SIMD module', () => {
  const pick = select(manifest(), caps('safari-18-macos-no-webgpu'));
  assert.equal(pick.name, 'wasm-simd');
  assert.equal(pick.passedOver[0].reason, 'WebGPU is not available (navigator.gpu is missing)');
});

test('Chrome on Android with shader-f16 runs WebGPU', () => {
  assert.equal(select(manifest({ f16: true }), caps('chrome-android-130-mali')).name, 'webgpu');
});

test('a browser with neither WebGPU nor SIMD runs the scalar module, or gets every reason', () => {
  const old = caps('safari-16-ios-no-webgpu-no-simd');
  assert.equal(select(manifest(), old).name, 'wasm-scalar');
  assert.throws(
    () => select(manifest({ scalar: false }), old),
    (e) => {
      assert.ok(e instanceof NoUsableVariantError);
      assert.equal(e.code, 'no-usable-variant');
      assert.deepEqual(e.reasons.map((r) => r.variant), ['webgpu', 'wasm-relaxed', 'wasm-simd']);
      assert.match(e.message, /wasm-simd: the engine lacks wasm simd/);
      return true;
    },
  );
});

test('prefer puts a backend or a named variant first, if it can run', () => {
  const chrome = caps('chrome-134-windows-nvidia');
  assert.equal(select(manifest(), chrome, { prefer: 'wasm' }).name, 'wasm-relaxed');
  assert.equal(select(manifest(), chrome, { prefer: 'wasm-scalar' }).name, 'wasm-scalar');
  const safari = caps('safari-18-macos-no-webgpu');
  assert.equal(select(manifest(), safari, { prefer: 'webgpu' }).name, 'wasm-simd');
});

test('user agents of real browsers', () => {
  const cases = [
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 Safari/537.36', 'Chrome', '134', false],
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 Safari/537.36 Edg/134.0.0.0', 'Edge', '134', false],
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:141.0) Gecko/20100101 Firefox/141.0', 'Firefox', '141', false],
    ['Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.3 Safari/605.1.15', 'Safari', '18.3', false],
    ['Mozilla/5.0 (iPhone; CPU iPhone OS 16_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.3 Mobile/15E148 Safari/604.1', 'Safari', '16.3', true],
    ['Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36', 'Chrome', '130', true],
    ['curl/8.5.0', 'unknown', '', false],
  ];
  for (const [ua, name, version, mobile] of cases) {
    assert.deepEqual(parseUserAgent(ua), { name, version, mobile }, ua);
  }
});

test('wasm features are found by validating tiny modules', () => {
  // Node 20's V8 validates SIMD128; relaxed SIMD is behind a flag there,
  // and Node is not cross-origin isolated.
  const here = wasmFeatures(WebAssembly, false);
  assert.equal(here.simd, true);
  assert.equal(here.threads, false);
  const none = { validate: () => false };
  assert.deepEqual(wasmFeatures(none, true), { simd: false, relaxedSimd: false, threads: false });
  assert.deepEqual(wasmFeatures(null, true), { simd: false, relaxedSimd: false, threads: false });
  // An engine that accepts every module and is isolated has all three.
  assert.deepEqual(wasmFeatures({ validate: () => true }, true), { simd: true, relaxedSimd: true, threads: true });
});

test('detect reads the adapter and reports a WebNN context that cannot be created', async () => {
  class Limits {
    get maxComputeInvocationsPerWorkgroup() { return 256; }
    get maxStorageBufferBindingSize() { return 134217728; }
  }
  const navigator = {
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36',
    gpu: {
      requestAdapter: async () => ({
        info: { vendor: 'google', architecture: 'swiftshader', device: '', description: 'SwiftShader', isFallbackAdapter: true },
        features: new Set(['shader-f16', 'float32-filterable']),
        limits: new Limits(),
      }),
    },
    ml: { createContext: async () => { throw new Error('WebNN is not supported on this platform'); } },
  };
  const got = await detect({ navigator, WebAssembly, crossOriginIsolated: false });
  assert.deepEqual(got.browser, { name: 'Chrome', version: '142', mobile: false });
  assert.deepEqual(got.webgpu.features, ['float32-filterable', 'shader-f16']);
  assert.deepEqual(got.webgpu.limits, { maxComputeInvocationsPerWorkgroup: 256, maxStorageBufferBindingSize: 134217728 });
  assert.equal(got.webgpu.isFallbackAdapter, true);
  assert.deepEqual(got.webnn, { api: true, context: false, reason: 'navigator.ml.createContext() failed: WebNN is not supported on this platform' });

  const noAdapter = await detect({ navigator: { userAgent: '', gpu: { requestAdapter: async () => null } }, WebAssembly });
  assert.equal(noAdapter.webgpu, null);
  assert.equal(noAdapter.webgpuReason, 'requestAdapter() returned no adapter');
});
