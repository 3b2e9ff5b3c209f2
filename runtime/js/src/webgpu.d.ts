/**
 * An input as the device words of its slot (`elements` of them: all the
 * slot holds, or fewer at dynamic sizes).
 * @param {ArrayLike<number|bigint>} data
 * @param {{word: string, elements: number}} slot
 * @param {string} name
 * @param {number} [elements]
 */
export function toWords(data: ArrayLike<number | bigint>, slot: {
    word: string;
    elements: number;
}, name: string, elements?: number): any;
/**
 * Device words back as the typed array of the output's dtype.
 * @param {ArrayBuffer} bytes
 * @param {string} word
 * @param {string} dtype
 */
export function fromWords(bytes: ArrayBuffer, word: string, dtype: string): Int8Array<ArrayBuffer> | Uint8Array<ArrayBuffer> | Int16Array<ArrayBuffer> | Uint16Array<ArrayBuffer> | Int32Array<ArrayBuffer> | Uint32Array<ArrayBuffer> | Float32Array<ArrayBuffer> | Float64Array<ArrayBuffer> | BigInt64Array<ArrayBuffer> | BigUint64Array<ArrayBuffer>;
/**
 * Creates the WebGPU variant's device, pipelines and buffers.
 * @param {any} manifest
 * @param {any} variant the manifest's WebGPU variant
 * @param {(file: string) => Promise<Uint8Array<ArrayBuffer>>} readFile
 * @param {{gpu?: GPU, onDeviceLost?: (info: GPUDeviceLostInfo) => void}} [options]
 */
export function loadWebGpu(manifest: any, variant: any, readFile: (file: string) => Promise<Uint8Array<ArrayBuffer>>, options?: {
    gpu?: GPU;
    onDeviceLost?: (info: GPUDeviceLostInfo) => void;
}): Promise<{
    device: GPUDevice;
    /** Why the device is gone, or null. */
    readonly lost: GPUDeviceLostInfo;
    /**
     * @param {Record<string, any>} inputs flat arrays by input name
     * @param {Record<string, number>} [sizes] the dynamic dims' sizes; the
     *   sizes the model counts as it runs are added to it
     */
    run(inputs: Record<string, any>, sizes?: Record<string, number>): Promise<{}>;
    /** Destroys the buffers and the device; `run` then throws
     * `DisposedError`. */
    dispose(): void;
}>;
