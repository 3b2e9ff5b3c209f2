// Dynamic sizes in the JS runtime: size expressions as the manifest
// writes them, and binding a bundle's dims from its inputs' shapes (the
// twins of bundle/src/manifest.rs's SizeExpr and bind_inputs).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { bindSizes, evalSize, shapeAt } from '../src/manifest.js';

test('size expressions evaluate as the compiler wrote them', () => {
  const sizes = { seq: 37, batch: 2 };
  assert.equal(evalSize(8, sizes), 8);
  assert.equal(evalSize('seq', sizes), 37);
  assert.equal(evalSize(['+', ['*', 64, 'seq'], 1], sizes), 64 * 37 + 1);
  // A stride-2 convolution's width: floor((w - 1) / 2) + 1.
  assert.equal(evalSize(['+', ['floor_div', ['+', 'seq', -1], 2], 1], sizes), 19);
  assert.equal(evalSize(['mod', ['+', 'seq', -40], 8], sizes), 5, 'the divisor\'s sign, as Python');
  assert.equal(evalSize(['max', 'seq', 40], sizes), 40);
  assert.equal(evalSize(['min', 'seq', 40], sizes), 37);
  assert.throws(() => evalSize('width', sizes), /unknown dim 'width'/);
  assert.throws(() => evalSize(['pow', 2, 3], sizes), /unknown size operation 'pow'/);
  assert.throws(() => evalSize(['floor_div', 4, ['+', 'seq', -37]], sizes), /divides by zero/);
});

const manifest = {
  dims: [{ name: 'batch', min: 1, max: 4 }, { name: 'seq', min: 1, max: 128 }],
  inputs: [
    { name: 'ids', bound: [4, 128], run_shape: ['batch', 'seq'] },
    { name: 'x', bound: [4, 128, 8], run_shape: ['batch', 'seq', 8] },
    { name: 'scale', bound: [8] },
  ],
};

test('inputs give each dim its size, and outputs their shapes', () => {
  const sizes = bindSizes(manifest, { ids: [2, 37], x: [2, 37, 8], scale: [8] });
  assert.deepEqual(sizes, { batch: 2, seq: 37 });
  assert.deepEqual(shapeAt({ bound: [4, 128, 8], run_shape: ['batch', 'seq', ['*', 2, 4]] }, sizes), [2, 37, 8]);
  assert.deepEqual(shapeAt({ bound: [3] }, sizes), [3], 'a static tensor keeps its shape');
});

test('bad sizes are refused, naming the input, the dim, the size and the range', () => {
  const bind = (shapes) => () => bindSizes(manifest, { ids: [2, 37], x: [2, 37, 8], scale: [8], ...shapes });
  assert.throws(bind({ ids: [2, 129], x: [2, 129, 8] }), /input 'ids' has shape \[2, 129\]: its dim 1 \('seq'\) is 129, outside the sizes this bundle runs at, 1..128/);
  assert.throws(bind({ x: [2, 36, 8] }), /'seq' is 37 by dim 1 of input 'ids' but 36 by dim 1 of input 'x': inputs sharing a dim must agree/);
  assert.throws(bind({ x: [2, 37, 7] }), /input 'x' has shape \[2, 37, 7\]: its dim 2 must be 8/);
  assert.throws(bind({ x: [2, 37] }), /input 'x' has shape \[2, 37\]; the model takes 3 dims/);
  assert.throws(bind({ scale: [9] }), /input 'scale' has shape \[9\], the bundle was compiled for \[8\]/);
});
