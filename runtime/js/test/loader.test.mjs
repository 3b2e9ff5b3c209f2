// The loader's fetching: progress, integrity, caching and abort, on a
// synthetic bundle served by an in-memory fetch (the real bundles go
// through it in tests/models.rs, via node/run.mjs).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { IntegrityError } from '../src/errors.js';
import { fetchFiles, filesFor, sha256Hex } from '../src/loader.js';

const BASE = new URL('https://models.example/m.wpc/');

/** Files of `sizes` bytes, their listing and a fetch that serves them in
 * 1000-byte chunks, counting requests. */
async function served(sizes) {
  const contents = new Map();
  const listing = [];
  for (const [i, n] of sizes.entries()) {
    const bytes = Uint8Array.from({ length: n }, (_, k) => (k * 7 + i) & 255);
    const file = `weights-${String(i).padStart(3, '0')}.bin`;
    contents.set(file, bytes);
    listing.push({ file, bytes: n, sha256: await sha256Hex(bytes), kind: 'weights' });
  }
  const requests = [];
  const fetch = async (url, { signal } = {}) => {
    requests.push(url);
    const bytes = contents.get(new URL(url).pathname.split('/').pop());
    if (!bytes) return new Response('missing', { status: 404 });
    let at = 0;
    const body = new ReadableStream({
      pull(c) {
        if (signal?.aborted || at >= bytes.length) return c.close();
        c.enqueue(bytes.slice(at, at + 1000));
        at += 1000;
      },
    });
    return new Response(body);
  };
  return { contents, listing, fetch, requests };
}

/** A Cache API stand-in. */
function memoryCache() {
  const store = new Map();
  return {
    store,
    match: async (url) => (store.has(url) ? new Response(store.get(url)) : undefined),
    put: async (url, response) => store.set(url, new Uint8Array(await response.arrayBuffer())),
  };
}

test('progress is monotonic, per file, and ends at the total', async () => {
  const { listing, fetch } = await served([2500, 10, 4000]);
  const events = [];
  const files = await fetchFiles(BASE, listing, { fetch, onProgress: (...e) => events.push(e) });
  const total = 6510;
  assert.deepEqual(events[0], [0, total, 'manifest.json']);
  for (let i = 1; i < events.length; i++) {
    assert.ok(events[i][0] >= events[i - 1][0], `event ${i} went backwards`);
    assert.equal(events[i][1], total);
  }
  assert.deepEqual(events.at(-1), [total, total, 'weights-002.bin']);
  assert.deepEqual(new Set(events.slice(1).map((e) => e[2])), new Set(listing.map((f) => f.file)));
  assert.equal(files.get('weights-002.bin').length, 4000);
});

test('a tampered file is rejected, naming it', async () => {
  const { listing, fetch, contents } = await served([3000, 3000]);
  contents.get('weights-001.bin')[1234] ^= 1;
  await assert.rejects(fetchFiles(BASE, listing, { fetch }), (e) => {
    assert.ok(e instanceof IntegrityError);
    assert.equal(e.code, 'integrity');
    assert.equal(e.file, 'weights-001.bin');
    assert.match(e.message, /weights-001\.bin is corrupt or was tampered with/);
    return true;
  });
  // A longer file than listed is rejected too.
  const longer = await served([100]);
  longer.listing[0].bytes = 50;
  await assert.rejects(fetchFiles(BASE, longer.listing, { fetch: longer.fetch }), IntegrityError);
});

test('a second load is served from the cache, and a stale cache entry is refetched', async () => {
  const { listing, fetch, requests } = await served([5000, 1200]);
  const cache = memoryCache();
  await fetchFiles(BASE, listing, { fetch, cache });
  assert.equal(requests.length, 2);
  const events = [];
  const again = await fetchFiles(BASE, listing, { fetch, cache, onProgress: (...e) => events.push(e) });
  assert.equal(requests.length, 2, 'nothing fetched the second time');
  assert.equal(again.get('weights-000.bin').length, 5000);
  assert.deepEqual(events.at(-1), [6200, 6200, 'weights-001.bin']);
  // A cached copy that no longer matches the manifest is fetched again.
  cache.store.get(new URL('weights-000.bin', BASE).href)[0] ^= 1;
  await fetchFiles(BASE, listing, { fetch, cache });
  assert.equal(requests.length, 3);
});

test('abort stops the load', async () => {
  const { listing, fetch } = await served([50000]);
  const controller = new AbortController();
  const load = fetchFiles(BASE, listing, {
    fetch,
    signal: controller.signal,
    onProgress: (loaded) => loaded >= 3000 && controller.abort(new Error('user left')),
  });
  await assert.rejects(load, /user left/);
});

test('a variant needs its code first, then its shards by priority', () => {
  const manifest = {
    code: [
      { file: 'reference.wasm', bytes: 9, sha256: 'r' },
      { file: 'model-simd.wasm', bytes: 5, sha256: 'm' },
    ],
    shards: [
      { file: 'weights-000.bin', bytes: 100, sha256: 'a', priority: 1 },
      { file: 'weights-001.bin', bytes: 200, sha256: 'b', priority: 0 },
      { file: 'weights-002.bin', bytes: 300, sha256: 'c', priority: 2 },
    ],
  };
  const variant = {
    backend: 'wasm',
    name: 'wasm-simd',
    module: 'model-simd.wasm',
    reference: 'reference.wasm',
    weights: [{ range: { shard: 0 } }, { range: { shard: 1 } }, { range: { shard: 0 } }],
  };
  assert.deepEqual(filesFor(manifest, variant).map((f) => f.file), [
    'reference.wasm',
    'model-simd.wasm',
    'weights-001.bin',
    'weights-000.bin',
  ]);
  assert.throws(() => filesFor({ ...manifest, code: [] }, variant), /no size or sha256 for reference.wasm/);
});
