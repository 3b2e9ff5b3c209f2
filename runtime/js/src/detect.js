// What the browser offers, and which of a bundle's variants it can run.
//
// `detect()` probes the environment once (WebGPU adapter, WebNN, wasm
// features, browser); `select()` is pure: given a manifest and a
// capability set it picks the first variant, in the manifest's preference
// order (the target profile's), whose requirements are met, and says why
// each other one was passed over. Tests feed `select()` recorded
// capability sets of real browsers.

import { NoUsableVariantError } from './errors.js';

/**
 * @typedef {{name: string, version: string, mobile: boolean}} BrowserInfo
 * @typedef {{
 *   adapter: {vendor: string, architecture: string, device: string, description: string},
 *   features: string[],
 *   limits: Record<string, number>,
 *   isFallbackAdapter: boolean,
 * }} WebGpuCaps
 * @typedef {{api: boolean, context: boolean, reason?: string}} WebNnCaps
 * @typedef {{simd: boolean, relaxedSimd: boolean, threads: boolean}} WasmCaps
 * @typedef {{browser: BrowserInfo, webgpu: WebGpuCaps | null, webgpuReason?: string,
 *   webnn: WebNnCaps, wasm: WasmCaps}} Capabilities
 */

// Tiny modules that validate only where a wasm feature exists: a function
// returning `i32x4.splat(0)` (SIMD128), one computing
// `f32x4.relaxed_madd` (relaxed SIMD), and a shared memory (threads).
const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
const RETURNS_V128 = [0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, 0x03, 0x02, 0x01, 0x00];
const SPLAT_ZERO = [0x41, 0x00, 0xfd, 0x11];
const SIMD_MODULE = [...HEADER, ...RETURNS_V128, 0x0a, 0x08, 0x01, 0x06, 0x00, ...SPLAT_ZERO, 0x0b];
const RELAXED_MODULE = [
  ...HEADER, ...RETURNS_V128, 0x0a, 0x13, 0x01, 0x11, 0x00,
  ...SPLAT_ZERO, ...SPLAT_ZERO, ...SPLAT_ZERO, 0xfd, 0x85, 0x02, 0x0b,
];
const SHARED_MEMORY_MODULE = [...HEADER, 0x05, 0x04, 0x01, 0x03, 0x01, 0x01];

/**
 * Which wasm features the engine validates.
 * @param {typeof WebAssembly | undefined} wasm
 * @param {boolean} isolated whether `crossOriginIsolated` (threads need
 *   SharedArrayBuffer, which needs it in browsers)
 * @returns {WasmCaps}
 */
export function wasmFeatures(wasm = globalThis.WebAssembly, isolated = globalThis.crossOriginIsolated ?? false) {
  const ok = (bytes) => {
    try {
      return Boolean(wasm) && wasm.validate(new Uint8Array(bytes));
    } catch {
      return false;
    }
  };
  return {
    simd: ok(SIMD_MODULE),
    relaxedSimd: ok(RELAXED_MODULE),
    threads: ok(SHARED_MEMORY_MODULE) && typeof SharedArrayBuffer !== 'undefined' && isolated,
  };
}

/**
 * The browser and its major version from a user-agent string (Edge and
 * Opera before Chrome, which they also claim to be; Safari by `Version/`).
 * @param {string} ua
 * @returns {BrowserInfo}
 */
export function parseUserAgent(ua) {
  const mobile = /Android|iPhone|iPad|Mobile/.test(ua);
  /** @type {[string, RegExp][]} */
  const rules = [
    ['Edge', /Edg(?:e|A|iOS)?\/(\d+)/],
    ['Opera', /OPR\/(\d+)/],
    ['Firefox', /(?:Firefox|FxiOS)\/(\d+)/],
    ['Chrome', /(?:Chrome|CriOS)\/(\d+)/],
    ['Safari', /Version\/(\d+(?:\.\d+)?).*Safari\//],
    ['Node', /^Node\.js\/v?(\d+)/],
  ];
  for (const [name, re] of rules) {
    const m = ua.match(re);
    if (m) return { name, version: m[1], mobile };
  }
  return { name: 'unknown', version: '', mobile };
}

/**
 * Every numeric limit of a `GPUSupportedLimits`: its members are getters on
 * the prototype (enumerable per WebIDL, but not in every implementation).
 * @param {object} limits
 * @returns {Record<string, number>}
 */
function readLimits(limits) {
  const names = new Set();
  for (const name in limits) names.add(name);
  for (let o = limits; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const name of Object.getOwnPropertyNames(o)) names.add(name);
  }
  /** @type {Record<string, number>} */
  const out = {};
  for (const name of [...names].sort()) {
    const v = limits[name];
    if (typeof v === 'number') out[name] = v;
  }
  return out;
}

/**
 * Probes the environment. Every probe is guarded: a missing API is a
 * capability absent, never an exception.
 * @param {{navigator?: any, WebAssembly?: typeof WebAssembly, crossOriginIsolated?: boolean}} [env]
 * @returns {Promise<Capabilities>}
 */
export async function detect(env = {}) {
  const nav = env.navigator ?? globalThis.navigator;
  const ua = nav?.userAgent ?? (globalThis.process?.versions?.node ? `Node.js/v${globalThis.process.versions.node}` : '');
  const caps = {
    browser: parseUserAgent(ua),
    webgpu: null,
    webnn: { api: false, context: false },
    wasm: wasmFeatures(env.WebAssembly ?? globalThis.WebAssembly, env.crossOriginIsolated ?? globalThis.crossOriginIsolated ?? false),
  };
  if (!nav?.gpu) {
    caps.webgpuReason = 'navigator.gpu is missing';
  } else {
    try {
      const adapter = await nav.gpu.requestAdapter();
      if (adapter) {
        const info = adapter.info ?? {};
        const limits = readLimits(adapter.limits);
        caps.webgpu = {
          adapter: {
            vendor: info.vendor ?? '',
            architecture: info.architecture ?? '',
            device: info.device ?? '',
            description: info.description ?? '',
          },
          features: [...adapter.features].sort(),
          limits,
          isFallbackAdapter: Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter),
        };
      } else {
        caps.webgpuReason = 'requestAdapter() returned no adapter';
      }
    } catch (e) {
      caps.webgpuReason = `requestAdapter() failed: ${e?.message ?? e}`;
    }
  }
  if (nav?.ml) {
    caps.webnn.api = true;
    try {
      await nav.ml.createContext();
      caps.webnn.context = true;
    } catch (e) {
      caps.webnn.reason = `navigator.ml.createContext() failed: ${e?.message ?? e}`;
    }
  }
  return caps;
}

/** wasm feature names in manifests → capability flags. */
const WASM_FEATURES = { simd: 'simd', 'relaxed-simd': 'relaxedSimd', threads: 'threads' };

/**
 * Why `variant` cannot run with `caps`, or null when it can.
 * @param {any} variant a manifest variant
 * @param {Capabilities} caps
 * @returns {string | null}
 */
export function unmet(variant, caps, backends = ['webgpu', 'wasm']) {
  if (!backends.includes(variant.backend)) {
    return `this runtime has no ${variant.backend} executor`;
  }
  if (variant.backend === 'webgpu') {
    if (!caps.webgpu) return `WebGPU is not available (${caps.webgpuReason ?? 'no adapter'})`;
    const missing = (variant.requires?.features ?? []).filter((f) => !caps.webgpu.features.includes(f));
    if (missing.length) return `the adapter lacks feature${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`;
    for (const [name, need] of Object.entries(variant.requires?.limits ?? {})) {
      const have = caps.webgpu.limits[name];
      if (have === undefined || have < need) {
        return `the adapter's ${name} is ${have ?? 'unknown'}, the bundle needs ${need}`;
      }
    }
    return null;
  }
  if (variant.backend === 'wasm') {
    for (const f of variant.features ?? []) {
      const flag = WASM_FEATURES[f];
      if (!flag) return `unknown wasm feature '${f}'`;
      if (!caps.wasm[flag]) return `the engine lacks wasm ${f}`;
    }
    return null;
  }
  return `this runtime has no executor for backend '${variant.backend}'`;
}

/** A variant's name for messages: wasm variants are named, WebGPU is one. */
export function variantName(variant) {
  return variant.name ?? variant.backend;
}

/**
 * Picks the variant to run: the first usable one in the manifest's order
 * (the target profile's preference), after those matching `prefer` (a
 * backend such as 'wasm', or a variant name such as 'wasm-scalar').
 * `backends` lists the executors the caller has.
 * @param {any} manifest
 * @param {Capabilities} caps
 * @param {{prefer?: string, backends?: string[]}} [options]
 * @returns {{variant: any, name: string, passedOver: {variant: string, reason: string}[]}}
 * @throws {NoUsableVariantError} when none can run, with every reason
 */
export function select(manifest, caps, options = {}) {
  const { prefer, backends } = options;
  const matches = (v) => prefer !== undefined && (v.backend === prefer || variantName(v) === prefer);
  const ordered = [...manifest.variants.filter(matches), ...manifest.variants.filter((v) => !matches(v))];
  const passedOver = [];
  for (const variant of ordered) {
    const reason = unmet(variant, caps, backends);
    if (reason === null) return { variant, name: variantName(variant), passedOver };
    passedOver.push({ variant: variantName(variant), reason });
  }
  throw new NoUsableVariantError(passedOver);
}
