export { detect, parseUserAgent, select, unmet, variantName, wasmFeatures } from "./detect.js";
export { DisposedError, IntegrityError, MemoryBudgetError, NoUsableVariantError, UnsupportedBundleError, WpcError } from "./errors.js";
export { fetchFiles, filesFor, load, sha256Hex } from "./loader.js";
export { arrayType, loadWasm, readOutput, toBytes } from "./wasm.js";
export { fromWords, loadWebGpu, toWords } from "./webgpu.js";
