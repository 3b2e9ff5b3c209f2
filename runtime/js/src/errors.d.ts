/** The base of every error the runtime throws. */
export class WpcError extends Error {
    /**
     * @param {string} code stable, machine-readable
     * @param {string} message
     * @param {ErrorOptions} [options]
     */
    constructor(code: string, message: string, options?: ErrorOptions);
    code: string;
}
/**
 * No variant of the bundle can run here. `reasons` says, per variant, why.
 */
export class NoUsableVariantError extends WpcError {
    /** @param {{variant: string, reason: string}[]} reasons */
    constructor(reasons: {
        variant: string;
        reason: string;
    }[]);
    reasons: {
        variant: string;
        reason: string;
    }[];
}
/** A downloaded file does not match the sha256 the manifest lists. */
export class IntegrityError extends WpcError {
    /**
     * @param {string} file
     * @param {string} expected hex sha256
     * @param {string} actual hex sha256
     */
    constructor(file: string, expected: string, actual: string);
    file: string;
    expected: string;
    actual: string;
}
/** The variant needs more memory than the page allows. */
export class MemoryBudgetError extends WpcError {
    /**
     * @param {string} variant
     * @param {number} needed bytes
     * @param {number} budget bytes
     */
    constructor(variant: string, needed: number, budget: number);
    variant: string;
    needed: number;
    budget: number;
}
/** The bundle is not one this runtime reads: another `format`, or a
 * manifest `version` other than the one it was written for. */
export class UnsupportedBundleError extends WpcError {
    /**
     * @param {string} bundle where it was loaded from
     * @param {'format' | 'version'} field
     * @param {unknown} found the manifest's value
     * @param {string | number} reads this runtime's value
     */
    constructor(bundle: string, field: "format" | "version", found: unknown, reads: string | number);
    bundle: string;
    field: "format" | "version";
    found: unknown;
    reads: string | number;
}
/** The model was disposed: it cannot run any more. */
export class DisposedError extends WpcError {
    /** @param {ErrorOptions} [options] */
    constructor(options?: ErrorOptions);
}
