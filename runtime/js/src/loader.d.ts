/**
 * @typedef {{file: string, bytes: number, sha256: string, kind: 'code'|'weights'}} BundleFile
 * @typedef {(loadedBytes: number, totalBytes: number, component: string) => void} ProgressFn
 */
/** Lower-case hex sha256 of `bytes`. */
export function sha256Hex(bytes: any): Promise<string>;
/**
 * The files `variant` needs, in load order: its code, then the shards its
 * weights come from, by priority.
 * @param {any} manifest
 * @param {any} variant
 * @returns {BundleFile[]}
 */
export function filesFor(manifest: any, variant: any): BundleFile[];
/**
 * Fetches `files` from `base` (a URL ending in '/'), verifying each, with
 * progress over all of them. Files whose cached copy still has the right
 * sha256 are not fetched again.
 * @param {URL} base
 * @param {BundleFile[]} files
 * @param {{
 *   onProgress?: ProgressFn, signal?: AbortSignal, fetch?: typeof fetch, cache?: Cache | null,
 *   onFile?: (file: string, bytes: Uint8Array<ArrayBuffer>) => void,
 *   onWasmStream?: (file: string, module: Promise<WebAssembly.Module>) => void,
 * }} [options] `onFile` hears of each file as soon as it is verified;
 *   `onWasmStream` gets the compilation of each fetched .wasm file,
 *   streamed as its bytes arrive (use it only once the file is verified)
 * @returns {Promise<Map<string, Uint8Array<ArrayBuffer>>>}
 */
export function fetchFiles(base: URL, files: BundleFile[], options?: {
    onProgress?: ProgressFn;
    signal?: AbortSignal;
    fetch?: typeof fetch;
    cache?: Cache | null;
    onFile?: (file: string, bytes: Uint8Array<ArrayBuffer>) => void;
    onWasmStream?: (file: string, module: Promise<WebAssembly.Module>) => void;
}): Promise<Map<string, Uint8Array<ArrayBuffer>>>;
/**
 * Loads a bundle: picks its variant, fetches and verifies what that
 * variant needs, and starts it. If the WebGPU variant cannot start (no
 * device, a pipeline that fails) or its device is lost later, the next
 * usable variant takes over and `onFallback({from, to, reason})` says so;
 * errors in the model or its inputs are surfaced, never masked.
 * @param {string | URL} bundleUrl the bundle directory: a URL, relative
 *   to the document's base URL in a page; in Node also a file path,
 *   relative to the working directory
 * @param {{
 *   onProgress?: ProgressFn, prefer?: string, signal?: AbortSignal,
 *   caps?: import('./detect.js').Capabilities, fetch?: typeof fetch,
 *   cache?: Cache | null, memoryBudget?: number, gpu?: GPU,
 *   onFallback?: (event: {from: string, to: string, reason: string}) => void,
 * }} [options]
 */
export function load(bundleUrl: string | URL, options?: {
    onProgress?: ProgressFn;
    prefer?: string;
    signal?: AbortSignal;
    caps?: import("./detect.js").Capabilities;
    fetch?: typeof fetch;
    cache?: Cache | null;
    memoryBudget?: number;
    gpu?: GPU;
    onFallback?: (event: {
        from: string;
        to: string;
        reason: string;
    }) => void;
}): Promise<{
    manifest: any;
    caps: import("./detect.js").Capabilities;
    /** The variant running, and why the ones before it were passed over. */
    readonly variant: string;
    passedOver: {
        variant: string;
        reason: string;
    }[];
    /**
     * Runs the model. Each input is a typed array in the shape the bundle
     * was compiled for (`manifest.inputs[i].bound`), or `{data, shape}`
     * to have the shape checked; an input with dynamic dims (the
     * bundle's `dims`) must be `{data, shape}`, any size within their
     * ranges, and the outputs come back in the shapes those sizes give.
     * Inputs the bundle does not take are ignored. Returns output name → `{data, shape, dtype}`. Rejects with
     * `DisposedError` once the model is disposed.
     * @param {Record<string, Tensor['data'] | {data: Tensor['data'], shape?: number[]}>} inputs
     * @returns {Promise<Record<string, Tensor>>}
     */
    run(inputs: Record<string, Tensor["data"] | {
        data: Tensor["data"];
        shape?: number[];
    }>): Promise<Record<string, Tensor>>;
    /**
     * Frees what the model holds: the WebGPU buffers and the device the
     * runtime created, the wasm instances and their memory, the bundle's
     * files; stops a fallback that is still loading. `run` then rejects
     * with `DisposedError`. Calling it again does nothing.
     */
    dispose(): void;
}>;
export type BundleFile = {
    file: string;
    bytes: number;
    sha256: string;
    kind: "code" | "weights";
};
export type ProgressFn = (loadedBytes: number, totalBytes: number, component: string) => void;
export type Tensor = {
    data: ArrayLike<number | bigint>;
    shape: number[];
    dtype: string;
};
