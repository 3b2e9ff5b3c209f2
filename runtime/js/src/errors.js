// Typed errors: every failure a page can act on has its own class and a
// stable `code`, and says what went wrong in words a developer can use.

/** The base of every error the runtime throws. */
export class WpcError extends Error {
  /**
   * @param {string} code stable, machine-readable
   * @param {string} message
   * @param {ErrorOptions} [options]
   */
  constructor(code, message, options) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * No variant of the bundle can run here. `reasons` says, per variant, why.
 */
export class NoUsableVariantError extends WpcError {
  /** @param {{variant: string, reason: string}[]} reasons */
  constructor(reasons) {
    const lines = reasons.map((r) => `  ${r.variant}: ${r.reason}`).join('\n');
    super('no-usable-variant', `no variant of this bundle can run in this browser:\n${lines}`);
    this.reasons = reasons;
  }
}

/** A downloaded file does not match the sha256 the manifest lists. */
export class IntegrityError extends WpcError {
  /**
   * @param {string} file
   * @param {string} expected hex sha256
   * @param {string} actual hex sha256
   */
  constructor(file, expected, actual) {
    super('integrity', `${file} is corrupt or was tampered with: sha256 ${actual}, the manifest says ${expected}`);
    this.file = file;
    this.expected = expected;
    this.actual = actual;
  }
}

/** The variant needs more memory than the page allows. */
export class MemoryBudgetError extends WpcError {
  /**
   * @param {string} variant
   * @param {number} needed bytes
   * @param {number} budget bytes
   */
  constructor(variant, needed, budget) {
    super('memory-budget', `${variant} needs ${needed} bytes of memory, over the budget of ${budget}`);
    this.variant = variant;
    this.needed = needed;
    this.budget = budget;
  }
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
  constructor(bundle, field, found, reads) {
    const shown = found === undefined ? 'missing' : JSON.stringify(found);
    super('unsupported-bundle', `${bundle}: the manifest's ${field} is ${shown}; this runtime reads ${field} ${JSON.stringify(reads)}`);
    this.bundle = bundle;
    this.field = field;
    this.found = found;
    this.reads = reads;
  }
}

/** The model was disposed: it cannot run any more. */
export class DisposedError extends WpcError {
  /** @param {ErrorOptions} [options] */
  constructor(options) {
    super('disposed', 'the model was disposed', options);
  }
}
