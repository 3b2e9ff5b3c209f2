#!/usr/bin/env node
// Runs a bundle's WebAssembly variant in Node's own WebAssembly engine
// (no wasmtime), through the same loader and executor the browser runtime
// uses: load() reads the bundle directory from disk and checks every
// file's sha256.
//
//   node runtime/js/node/run.mjs BUNDLE_DIR [--variant wasm-simd]
//        --input NAME=FILE.npy ... --output-dir DIR [--repeat N]
//
// Writes one NAME.npy per output (names sanitized as `wpc run` does) and
// prints the median time of `run` over --repeat runs.

import { readFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { load } from '../src/loader.js';
import { readNpy, writeNpy } from './npy.mjs';

const USAGE = `usage: run.mjs BUNDLE_DIR [--variant NAME] --input NAME=FILE.npy ... --output-dir DIR [--repeat N]

Runs the bundle's wasm variant NAME (default wasm-simd) on the .npy inputs
and writes one NAME.npy per output into DIR (-o DIR); prints the median
time of a run over N runs (default 1).`;

/** The command line, or null for --help. */
function parse(argv) {
  const args = { variant: 'wasm-simd', inputs: {}, repeat: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value\n${USAGE}`);
      return argv[++i];
    };
    if (a === '--help' || a === '-h') return null;
    if (a === '--variant') args.variant = value();
    else if (a === '--input') {
      const [name, file] = value().split(/=(.*)/s);
      args.inputs[name] = file;
    } else if (a === '--output-dir' || a === '-o') args.out = value();
    else if (a === '--repeat') args.repeat = Number(value());
    else if (a.startsWith('-')) throw new Error(`unknown option '${a}'\n${USAGE}`);
    else if (!args.bundle) args.bundle = a;
    else throw new Error(`unexpected argument '${a}'\n${USAGE}`);
  }
  if (!args.bundle || !args.out) throw new Error(USAGE);
  return args;
}

const sanitize = (name) => name.replace(/[^A-Za-z0-9\-_.]/g, '_');

async function main() {
  const args = parse(process.argv.slice(2));
  if (!args) {
    console.log(USAGE);
    return;
  }
  const model = await load(args.bundle, { prefer: args.variant, cache: null });
  if (model.variant !== args.variant) {
    const why = model.passedOver.find((p) => p.variant === args.variant)?.reason ?? 'not in the bundle';
    throw new Error(`${args.variant} cannot run here (${why}); ${model.variant} could`);
  }
  const { manifest } = model;
  const feeds = {};
  for (const info of manifest.inputs) {
    const file = args.inputs[info.name];
    if (!file) throw new Error(`missing --input ${info.name}=FILE.npy`);
    feeds[info.name] = readNpy(await readFile(file));
  }
  const times = [];
  let outputs;
  for (let r = 0; r < args.repeat; r++) {
    const t0 = performance.now();
    outputs = await model.run(feeds);
    times.push(performance.now() - t0);
  }
  await mkdir(args.out, { recursive: true });
  for (const info of manifest.outputs) {
    const { data, shape } = outputs[info.name];
    await writeFile(join(args.out, `${sanitize(info.name)}.npy`), writeNpy(data, shape));
  }
  times.sort((a, b) => a - b);
  console.log(`${args.variant}: median ${times[times.length >> 1].toFixed(3)} ms over ${args.repeat} runs`);
}

main().catch((e) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});
