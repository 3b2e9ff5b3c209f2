/**
 * Throws `UnsupportedBundleError` unless `manifest` is a bundle this
 * runtime reads.
 * @param {any} manifest
 * @param {string} bundle where it was loaded from, for the message
 */
export function checkFormat(manifest: any, bundle: string): void;
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
export function checkTensors(manifest: any, name: string, plan: {
    inputs: {
        elements: number;
    }[];
    outputs: {
        elements: number;
    }[];
}, misplaced: (slot: any, info: any) => string | null): void;
/**
 * The value of a size expression (the manifest's `SizeExpr`: an integer,
 * a dim's name, or `[op, operand, ...]` with `op` one of `+`, `*`,
 * `floor_div`, `mod`, `max`, `min`) at the dims' sizes `sizes`.
 * @param {any} expr
 * @param {Record<string, number>} sizes
 * @returns {number}
 */
export function evalSize(expr: any, sizes: Record<string, number>): number;
/**
 * The shape tensor `info` has at the dims' sizes `sizes`: its compiled
 * shape, or its run shape where sizes are dynamic.
 * @param {any} info
 * @param {Record<string, number>} sizes
 * @returns {number[]}
 */
export function shapeAt(info: any, sizes: Record<string, number>): number[];
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
export function bindSizes(manifest: any, shapes: Record<string, number[]>): Record<string, number>;
/**
 * Checks that weights taken from a shard lie inside it and fit the `room`
 * bytes they are copied into.
 * @param {any} manifest
 * @param {{shard: number, offset: number, bytes: number}} range
 * @param {number} room
 * @param {string} what where they go, for messages
 */
export function checkRange(manifest: any, range: {
    shard: number;
    offset: number;
    bytes: number;
}, room: number, what: string): void;
/** The `format` of every bundle. */
export const FORMAT: "wpc-bundle";
/** The manifest version this runtime reads. */
export const VERSION: 3;
export function elementCount(dims: number[]): number;
export function inconsistent(why: string): WpcError;
import { WpcError } from './errors.js';
