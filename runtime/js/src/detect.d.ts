/**
 * Which wasm features the engine validates.
 * @param {typeof WebAssembly | undefined} wasm
 * @param {boolean} isolated whether `crossOriginIsolated` (threads need
 *   SharedArrayBuffer, which needs it in browsers)
 * @returns {WasmCaps}
 */
export function wasmFeatures(wasm?: typeof WebAssembly | undefined, isolated?: boolean): WasmCaps;
/**
 * The browser and its major version from a user-agent string (Edge and
 * Opera before Chrome, which they also claim to be; Safari by `Version/`).
 * @param {string} ua
 * @returns {BrowserInfo}
 */
export function parseUserAgent(ua: string): BrowserInfo;
/**
 * Probes the environment. Every probe is guarded: a missing API is a
 * capability absent, never an exception.
 * @param {{navigator?: any, WebAssembly?: typeof WebAssembly, crossOriginIsolated?: boolean}} [env]
 * @returns {Promise<Capabilities>}
 */
export function detect(env?: {
    navigator?: any;
    WebAssembly?: typeof WebAssembly;
    crossOriginIsolated?: boolean;
}): Promise<Capabilities>;
/**
 * Why `variant` cannot run with `caps`, or null when it can.
 * @param {any} variant a manifest variant
 * @param {Capabilities} caps
 * @returns {string | null}
 */
export function unmet(variant: any, caps: Capabilities, backends?: string[]): string | null;
/** A variant's name for messages: wasm variants are named, WebGPU is one. */
export function variantName(variant: any): any;
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
export function select(manifest: any, caps: Capabilities, options?: {
    prefer?: string;
    backends?: string[];
}): {
    variant: any;
    name: string;
    passedOver: {
        variant: string;
        reason: string;
    }[];
};
export type BrowserInfo = {
    name: string;
    version: string;
    mobile: boolean;
};
export type WebGpuCaps = {
    adapter: {
        vendor: string;
        architecture: string;
        device: string;
        description: string;
    };
    features: string[];
    limits: Record<string, number>;
    isFallbackAdapter: boolean;
};
export type WebNnCaps = {
    api: boolean;
    context: boolean;
    reason?: string;
};
export type WasmCaps = {
    simd: boolean;
    relaxedSimd: boolean;
    threads: boolean;
};
export type Capabilities = {
    browser: BrowserInfo;
    webgpu: WebGpuCaps | null;
    webgpuReason?: string;
    webnn: WebNnCaps;
    wasm: WasmCaps;
};
