#!/usr/bin/env node
// Writes the runtime's type declarations, src/*.d.ts, from the JSDoc of
// src/*.js with the options in tsconfig.types.json (`npm run types`). With
// --check it writes nothing and fails if the committed ones differ from
// what it would write (`npm run types:check`, in scripts/test.sh).
//
// Not plain `tsc -p tsconfig.types.json`: TypeScript resolves `./wasm.js`
// to the `wasm.d.ts` beside it, so tsc would read the committed
// declarations (and refuse to overwrite its inputs). The compiler is not
// shown them here, so the new ones come from the JavaScript alone.

import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, 'src');
const check = process.argv.includes('--check');

/** @param {readonly ts.Diagnostic[]} diagnostics */
function fail(diagnostics) {
  console.error(ts.formatDiagnostics(diagnostics, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => here, getNewLine: () => '\n' }));
  process.exit(1);
}

const config = ts.getParsedCommandLineOfConfigFile(join(here, 'tsconfig.types.json'), {}, {
  ...ts.sys,
  onUnRecoverableConfigFileDiagnostic: (d) => fail([d]),
});
if (config.errors.length) fail(config.errors);
const committed = (file) => file.endsWith('.d.ts') && resolve(dirname(file)) === src;
const host = ts.createCompilerHost(config.options);
const { fileExists } = host;
host.fileExists = (file) => !committed(file) && fileExists(file);
const program = ts.createProgram(config.fileNames, config.options, host);
/** @type {Map<string, string>} file name in src/ → declarations */
const written = new Map();
const { diagnostics } = program.emit(undefined, (file, text) => written.set(basename(file), text));
const errors = [...ts.getPreEmitDiagnostics(program), ...diagnostics];
if (errors.length) fail(errors);

const old = readdirSync(src).filter((name) => name.endsWith('.d.ts'));
const stale = [
  ...[...written].filter(([name, text]) => !old.includes(name) || readFileSync(join(src, name), 'utf8') !== text).map(([name]) => name),
  ...old.filter((name) => !written.has(name)),
];
if (check) {
  if (stale.length) {
    console.error(`runtime/js/src: ${stale.join(', ')} out of date with the JSDoc; run \`npm run types\` in runtime/js`);
    process.exit(1);
  }
} else {
  for (const name of stale) {
    if (written.has(name)) writeFileSync(join(src, name), written.get(name));
    else rmSync(join(src, name));
  }
  console.log(stale.length ? `wrote ${stale.join(', ')}` : 'src/*.d.ts are up to date');
}
