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
export const VERSION = 2;

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
