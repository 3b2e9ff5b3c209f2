// Minimal .npy reading and writing for the Node runner (little-endian,
// C order; the dtypes wpc bundles take and return).

const DESCR = {
  '<f4': Float32Array, '<f8': Float64Array, '<i4': Int32Array, '<i8': BigInt64Array,
  '<u4': Uint32Array, '<u8': BigUint64Array, '|b1': Uint8Array, '|u1': Uint8Array, '|i1': Int8Array,
};

/**
 * Parses a .npy file (Node Buffer or any Uint8Array; also used by the
 * browser tests) into `{data, shape}`.
 * @param {Uint8Array} buf
 */
export function readNpy(buf) {
  const text = (from, to) => String.fromCharCode(...buf.subarray(from, to));
  if (text(0, 6) !== '\x93NUMPY') throw new Error('not a .npy file');
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const major = buf[6];
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = text(start, start + headerLen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (/'fortran_order':\s*True/.test(header)) throw new Error('Fortran-order .npy is not supported');
  const Type = DESCR[descr];
  if (!Type) throw new Error(`unsupported .npy dtype ${descr}`);
  const body = buf.subarray(start + headerLen);
  const copy = new Uint8Array(body.length);
  copy.set(body);
  return { data: new Type(copy.buffer), shape };
}

const TYPE_DESCR = new Map([
  [Float32Array, '<f4'], [Int32Array, '<i4'], [Uint32Array, '<u4'],
  [BigInt64Array, '<i8'], [BigUint64Array, '<u8'], [Uint8Array, '|b1'],
]);

export function writeNpy(data, shape) {
  const descr = TYPE_DESCR.get(data.constructor);
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${dims}), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header = header + ' '.repeat(pad % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  return Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}
