/**
 * The typed array constructor for `dtype`.
 * @param {string} dtype ONNX dtype name
 */
export function arrayType(dtype: string): any;
/**
 * An input's bytes as the module stores them.
 * @param {ArrayLike<number|bigint>} data
 * @param {MemoryTensor} slot
 * @param {{name: string, dtype: string}} info the manifest's input entry
 * @returns {Uint8Array}
 */
export function toBytes(data: ArrayLike<number | bigint>, slot: MemoryTensor, info: {
    name: string;
    dtype: string;
}): Uint8Array;
/**
 * Copies an output out of memory as the typed array of its dtype.
 * @param {ArrayBuffer} buffer memory
 * @param {MemoryTensor} slot
 * @param {string} dtype ONNX dtype name
 */
export function readOutput(buffer: ArrayBuffer, slot: MemoryTensor, dtype: string): any;
/**
 * Instantiates the wasm variant called `name` of a bundle.
 * @param {any} manifest the bundle's manifest.json
 * @param {string} name e.g. 'wasm-simd'
 * @param {(file: string) => Promise<Uint8Array<ArrayBuffer>>} readFile bundle file reader
 * @param {{compile?: (file: string) => Promise<WebAssembly.Module>}} [options]
 *   `compile` gives a module file compiled (the loader streams it);
 *   by default the file is read and compiled
 */
export function loadWasm(manifest: any, name: string, readFile: (file: string) => Promise<Uint8Array<ArrayBuffer>>, options?: {
    compile?: (file: string) => Promise<WebAssembly.Module>;
}): Promise<{
    variant: any;
    /**
     * Runs the model. `inputs` maps input names to typed arrays of the
     * shapes `sizes` give (the bundle's dims, as `bindSizes` finds them;
     * none for a bundle compiled for fixed sizes); returns output name →
     * array, each of its shape at those sizes. The sizes only the data
     * decides (the dims with `counted_in`) are added to `sizes` as the
     * kernels counted them.
     * @param {Record<string, ArrayLike<number|bigint>>} inputs
     * @param {Record<string, number>} [sizes]
     */
    run(inputs: Record<string, ArrayLike<number | bigint>>, sizes?: Record<string, number>): Record<string, ArrayLike<number | bigint>>;
    /** `run` without inputs or outputs (for benchmarks). */
    execute: () => void;
    /** Lets the instances and their memory go; `run` then throws
     * `DisposedError`. */
    dispose(): void;
}>;
/**
 * What wpc modules export: memory, and `run` (a variant) or the
 * `wpc_error_*` accessors (the reference module).
 */
export type WpcExports = {
    memory: WebAssembly.Memory;
    run?: () => void;
    wpc_error_ptr?: () => number;
    wpc_error_len?: () => number;
};
export type ShardRange = {
    shard: number;
    offset: number;
    bytes: number;
};
export type MemoryTensor = {
    offset: number;
    elements: number;
};
