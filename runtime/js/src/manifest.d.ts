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
export const VERSION: 2;
export function elementCount(dims: number[]): number;
export function inconsistent(why: string): WpcError;
import { WpcError } from './errors.js';
