// The wpc demo page: shows what the detector found, which variant was
// chosen and why, a progress bar while the bundle loads, then runs the
// model on seeded random inputs and shows its outputs and timings.
// Query parameters `bundle` and `prefer` fill the form (and `auto=1` loads
// and runs at once).

import { detect, load } from '../../runtime/js/src/index.js';

const $ = (id) => document.getElementById(id);
let model = null;

/** Seeded inputs of the bundle's bound shapes (a small LCG). */
function inputsFor(manifest) {
  let seed = 42;
  const next = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const inputs = {};
  for (const info of manifest.inputs) {
    const n = info.bound.reduce((a, b) => a * b, 1);
    inputs[info.name] = info.dtype === 'int64'
      ? BigInt64Array.from({ length: n }, () => BigInt(Math.floor(next() * 100)))
      : Float32Array.from({ length: n }, () => next() * 2 - 1);
  }
  return inputs;
}

function summary(name, data) {
  const values = Array.from(data.slice(0, 5), Number);
  let arg = 0;
  for (let i = 1; i < data.length; i++) if (Number(data[i]) > Number(data[arg])) arg = i;
  return `${name}: ${data.length} values, argmax ${arg}, first ${values.map((v) => v.toPrecision(4)).join(', ')}`;
}

async function loadBundle() {
  $('run').disabled = true;
  $('result').textContent = '—';
  $('variant').textContent = 'loading…';
  try {
    model = await load($('bundle').value, {
      prefer: $('prefer').value || undefined,
      onProgress: (loaded, total) => {
        $('progress').max = total;
        $('progress').value = loaded;
        $('bytes').textContent = `${loaded} / ${total} bytes`;
      },
      onFallback: ({ from, to, reason }) => {
        $('variant').textContent = `${from} failed (${reason}); falling back to ${to}`;
      },
    });
    const why = model.passedOver.map((p) => `${p.variant}: ${p.reason}`).join('; ');
    $('variant').textContent = `variant: ${model.variant}${why ? ` (passed over: ${why})` : ''}`;
    $('run').disabled = false;
  } catch (e) {
    $('variant').innerHTML = '';
    $('variant').append(Object.assign(document.createElement('span'), { className: 'error', textContent: `${e.name}: ${e.message}` }));
  }
}

async function run() {
  const inputs = inputsFor(model.manifest);
  const t0 = performance.now();
  const outputs = await model.run(inputs);
  const first = performance.now() - t0;
  const t1 = performance.now();
  await model.run(inputs);
  const steady = performance.now() - t1;
  const list = document.createElement('ul');
  for (const [name, { data }] of Object.entries(outputs)) {
    list.append(Object.assign(document.createElement('li'), { textContent: summary(name, data) }));
  }
  $('result').replaceChildren(
    Object.assign(document.createElement('p'), { textContent: `first run ${first.toFixed(1)} ms, second run ${steady.toFixed(1)} ms` }),
    list,
  );
  $('result').dataset.done = 'true';
}

const params = new URLSearchParams(location.search);
if (params.has('bundle')) $('bundle').value = params.get('bundle');
if (params.has('prefer')) $('prefer').value = params.get('prefer');
$('form').addEventListener('submit', (e) => {
  e.preventDefault();
  loadBundle();
});
$('run').addEventListener('click', run);
detect().then((caps) => {
  $('caps').textContent = JSON.stringify({ ...caps, webgpu: caps.webgpu && { ...caps.webgpu, limits: '…' } }, null, 2);
});
if (params.get('auto') === '1') loadBundle().then(() => model && run());
