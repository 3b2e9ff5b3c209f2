// What the runtime checks in a manifest before trusting it (as
// runtime/src/manifest.rs does for the native runtimes): that it is a
// bundle of the one version this runtime reads, and that a variant's plan
// agrees with the tensors the manifest declares. Without these checks a
// tampered or mismatched manifest still runs, and returns wrong data: an
// output read with the wrong number of elements, weights cut short or
// copied past their buffer.

import { UnsupportedBundleError, WpcError } from './errors.js';

/** The `format` of every bundle. */
export const FORMAT = 'wpc-bundle';
/** The manifest version this runtime reads. */
export const VERSION = 3;

/**
 * The number of elements of a tensor of shape `dims`.
 * @param {number[]} dims
 */
export const elementCount = (dims) => dims.reduce((n, d) => n * d, 1);

/**
 * Throws `UnsupportedBundleError` unless `manifest` is a bundle this
 * runtime reads.
 * @param {any} manifest
 * @param {string} bundle where it was loaded from, for the message
 */
export function checkFormat(manifest, bundle) {
  for (const [field, reads] of /** @type {const} */ ([['format', FORMAT], ['version', VERSION]])) {
    if (manifest?.[field] !== reads) throw new UnsupportedBundleError(bundle, field, manifest?.[field], reads);
  }
}

/**
 * The error for a manifest that contradicts itself.
 * @param {string} why
 */
export const inconsistent = (why) => new WpcError('bad-bundle', `the manifest is inconsistent: ${why}`);

/**
 * Checks a variant's plan against the model's tensors: one slot per input
 * and output, holding exactly the elements of the tensor's compiled shape
 * (`bound`), and lying where the variant has room for it.
 * @param {any} manifest
 * @param {string} name the variant, for messages
 * @param {{inputs: {elements: number}[], outputs: {elements: number}[]}} plan the variant's slots
 * @param {(slot: any, info: any) => string | null} misplaced why a tensor's
 *   slot does not fit where it lies, or null
 */
export function checkTensors(manifest, name, plan, misplaced) {
  for (const [kind, what] of [['inputs', 'input'], ['outputs', 'output']]) {
    if (plan[kind].length !== manifest[kind].length) {
      throw inconsistent(`the model has ${manifest[kind].length} ${kind}, ${name} has slots for ${plan[kind].length}`);
    }
    manifest[kind].forEach((info, i) => {
      const slot = plan[kind][i];
      const elements = elementCount(info.bound);
      if (slot.elements !== elements) {
        throw inconsistent(`${what} '${info.name}' has shape [${info.bound.join(', ')}] (${elements} elements), ${name} holds ${slot.elements}`);
      }
      const why = misplaced(slot, info);
      if (why) throw inconsistent(`${what} '${info.name}' in ${name}: ${why}`);
    });
  }
}

/**
 * The value of a size expression (the manifest's `SizeExpr`: an integer,
 * a dim's name, or `[op, operand, ...]` with `op` one of `+`, `*`,
 * `floor_div`, `mod`, `max`, `min`) at the dims' sizes `sizes`.
 * @param {any} expr
 * @param {Record<string, number>} sizes
 * @returns {number}
 */
export function evalSize(expr, sizes) {
  if (typeof expr === 'number') return expr;
  if (typeof expr === 'string') {
    const v = sizes[expr];
    if (v === undefined) throw inconsistent(`a size reads the unknown dim '${expr}'`);
    return v;
  }
  const [op, ...args] = expr;
  const v = args.map((a) => evalSize(a, sizes));
  const floorDiv = (a, b) => {
    if (b === 0) throw new WpcError('input', 'a size divides by zero at these sizes');
    return Math.floor(a / b);
  };
  switch (op) {
    case '+': return v.reduce((a, b) => a + b, 0);
    case '*': return v.reduce((a, b) => a * b, 1);
    case 'floor_div': return floorDiv(v[0], v[1]);
    case 'mod': return v[0] - v[1] * floorDiv(v[0], v[1]);
    case 'max': return Math.max(v[0], v[1]);
    case 'min': return Math.min(v[0], v[1]);
    default: throw inconsistent(`unknown size operation '${op}'`);
  }
}

/**
 * The shape tensor `info` has at the dims' sizes `sizes`: its compiled
 * shape, or its run shape where sizes are dynamic.
 * @param {any} info
 * @param {Record<string, number>} sizes
 * @returns {number[]}
 */
export function shapeAt(info, sizes) {
  return info.run_shape ? info.run_shape.map((e) => evalSize(e, sizes)) : [...info.bound];
}

/**
 * Checks each input's shape against what the bundle takes and finds the
 * size of each of its dynamic dims (as runtime/src's `bind_inputs`
 * does): a dim that is a symbol gives the symbol its size, which must lie
 * within the symbol's range and agree with every other input's; fixed
 * sizes must match.
 * @param {any} manifest
 * @param {Record<string, number[]>} shapes each input's shape
 * @returns {Record<string, number>}
 */
export function bindSizes(manifest, shapes) {
  /** @type {Record<string, number>} */
  const sizes = {};
  /** @type {Record<string, string>} */
  const givenBy = {};
  for (const info of manifest.inputs) {
    const shape = shapes[info.name];
    const show = `[${shape.join(', ')}]`;
    if (!info.run_shape) {
      if (show !== `[${info.bound.join(', ')}]`) {
        throw new WpcError('input', `input '${info.name}' has shape ${show}, the bundle was compiled for [${info.bound.join(', ')}]`);
      }
      continue;
    }
    if (shape.length !== info.run_shape.length) {
      throw new WpcError('input', `input '${info.name}' has shape ${show}; the model takes ${info.run_shape.length} dims`);
    }
    info.run_shape.forEach((e, axis) => {
      const n = shape[axis];
      if (typeof e !== 'string') {
        const want = evalSize(e, sizes);
        if (want !== n) throw new WpcError('input', `input '${info.name}' has shape ${show}: its dim ${axis} must be ${want}`);
        return;
      }
      const range = (manifest.dims ?? []).find((d) => d.name === e);
      if (!range) throw inconsistent(`input '${info.name}' reads the unknown dim '${e}'`);
      if (!(n >= range.min && n <= range.max)) {
        throw new WpcError('input', `input '${info.name}' has shape ${show}: its dim ${axis} ('${e}') is ${n}, outside the sizes this bundle runs at, ${range.min}..${range.max}`);
      }
      const here = `dim ${axis} of input '${info.name}'`;
      if (sizes[e] !== undefined && sizes[e] !== n) {
        throw new WpcError('input', `'${e}' is ${sizes[e]} by ${givenBy[e]} but ${n} by ${here}: inputs sharing a dim must agree`);
      }
      sizes[e] = n;
      givenBy[e] = here;
    });
  }
  return sizes;
}

/**
 * Checks that weights taken from a shard lie inside it and fit the `room`
 * bytes they are copied into.
 * @param {any} manifest
 * @param {{shard: number, offset: number, bytes: number}} range
 * @param {number} room
 * @param {string} what where they go, for messages
 */
export function checkRange(manifest, range, room, what) {
  const shard = manifest.shards[range.shard];
  const end = range.offset + range.bytes;
  if (!shard || end > shard.bytes) {
    const has = shard ? `${shard.file} has ${shard.bytes} bytes` : 'there is no such shard';
    throw inconsistent(`${what} takes bytes ${range.offset}..${end} of shard ${range.shard}, but ${has}`);
  }
  if (range.bytes > room) throw inconsistent(`${what}: ${range.bytes} bytes of weights do not fit in ${room}`);
}
