// Where load() finds a bundle: in Node, a relative or absolute path or a
// file: URL, read from disk with no fetch option (Node's fetch has no file
// scheme); in a page, a URL relative to the document's base URL.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { WpcError } from '../src/errors.js';
import { load } from '../src/loader.js';
import { bundle, CAPS, writeBundle } from './fixture.mjs';

/** Runs `body` in a fresh directory holding the fixture as model.wpc. */
async function inBundleDir(body) {
  const root = await mkdtemp(join(tmpdir(), 'wpc-paths-'));
  try {
    await writeBundle(join(root, 'model.wpc'), await bundle());
    await body(root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

test('in Node, load() reads a bundle from a path or a file: URL', async () => {
  await inBundleDir(async (root) => {
    const cwd = process.cwd();
    process.chdir(root);
    try {
      const dir = join(root, 'model.wpc');
      for (const where of ['./model.wpc', 'model.wpc/', dir, pathToFileURL(dir), pathToFileURL(dir).href]) {
        const model = await load(where);
        assert.equal(model.variant, 'wasm-scalar', String(where));
        assert.deepEqual([...(await model.run({ x: new Float32Array(2) })).y.data], [1.5, -2]);
      }
      await assert.rejects(load('./missing.wpc'), (e) => {
        assert.ok(e instanceof WpcError && e.code === 'fetch', String(e));
        assert.match(e.message, /ENOENT.*missing\.wpc[/\\]manifest\.json/);
        return true;
      });
    } finally {
      process.chdir(cwd);
    }
  });
});

test('the README example runs as written in Node, on the runtime copy in the bundle', async () => {
  await inBundleDir(async (root) => {
    await writeFile(join(root, 'main.mjs'), [
      "import { load } from './model.wpc/runtime/index.js';",
      "const model = await load('./model.wpc');",
      'const outputs = await model.run({ x: new Float32Array(2) });',
      'console.log(JSON.stringify([...outputs.y.data]));',
    ].join('\n'));
    const node = spawnSync(process.execPath, ['main.mjs'], { cwd: root, encoding: 'utf8' });
    assert.equal(node.status, 0, node.stderr);
    assert.equal(node.stdout.trim(), '[1.5,-2]');
  });
});

test('in a page, a relative bundle URL resolves against the document base URL', async () => {
  const { fetch, urls } = await bundle();
  globalThis.document = /** @type {any} */ ({ baseURI: 'https://site.example/app/index.html' });
  try {
    await load('models/m.wpc', { fetch, caps: CAPS, cache: null, prefer: 'wasm-scalar' });
  } finally {
    delete globalThis.document;
  }
  assert.equal(urls[0], 'https://site.example/app/models/m.wpc/manifest.json');
  assert.ok(urls.every((u) => u.startsWith('https://site.example/app/models/m.wpc/')), urls.join(', '));
});
