// node/run.mjs, the Node runner tests/models.rs checks real models with:
// its usage, and what it does with the fixture bundle on disk.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { readNpy, writeNpy } from '../node/npy.mjs';
import { bundle, writeBundle } from './fixture.mjs';

const RUN = fileURLToPath(new URL('../node/run.mjs', import.meta.url));
const run = (...args) => spawnSync(process.execPath, [RUN, ...args], { encoding: 'utf8' });

test('--help prints the usage and succeeds; an unknown option fails, saying so', () => {
  for (const flag of ['--help', '-h']) {
    const r = run(flag);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^usage: run\.mjs BUNDLE_DIR/);
  }
  const unknown = run('some.wpc', '--bogus');
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /^error: unknown option '--bogus'\nusage: /);
  const noValue = run('some.wpc', '--variant');
  assert.equal(noValue.status, 1);
  assert.match(noValue.stderr, /^error: --variant needs a value/);
});

test('runs a bundle to .npy outputs, and refuses one whose output bound was tampered with', async () => {
  const root = await mkdtemp(join(tmpdir(), 'wpc-run-'));
  try {
    const b = await bundle();
    await writeBundle(join(root, 'ok.wpc'), b);
    b.manifest.outputs[0].bound = [3];
    await writeBundle(join(root, 'tampered.wpc'), b);
    const x = join(root, 'x.npy');
    await writeFile(x, writeNpy(new Float32Array(2), [2]));
    const args = (dir, out) => [join(root, dir), '--variant', 'wasm-scalar', '--input', `x=${x}`, '-o', join(root, out)];

    const ok = run(...args('ok.wpc', 'out'));
    assert.equal(ok.status, 0, ok.stderr);
    const y = readNpy(await readFile(join(root, 'out', 'y.npy')));
    assert.deepEqual([...y.data], [1.5, -2]);
    assert.deepEqual(y.shape, [2]);

    const tampered = run(...args('tampered.wpc', 'bad'));
    assert.equal(tampered.status, 1);
    assert.match(tampered.stderr, /output 'y' has shape \[3\] \(3 elements\), wasm-scalar holds 2/);
    assert.ok(!existsSync(join(root, 'bad', 'y.npy')));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
