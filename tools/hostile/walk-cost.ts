/**
 * What the shape check of binary payloads costs: the walk of every events
 * payload of a 1,000,000-event trace (every kind mixed, tools/bench/trace.ts)
 * against msgpackr's decode of the same payloads and the whole
 * decodeBinaryTrace. Medians of 7.
 *
 *   npx tsx tools/hostile/walk-cost.ts [events]
 */
import { Unpackr } from 'msgpackr';
import { MAX_CHUNK_EVENTS, MAX_FRAME_PAYLOAD, checkShape, decodeBinaryTrace, encodeBinaryTrace, eventsShape } from '@nvx/trace';
import { syntheticTrace } from '../bench/trace';

const n = Number(process.argv[2] ?? 1_000_000);
const { header, events } = syntheticTrace(n);
const bin = encodeBinaryTrace(header, events);
// the msgpack lists the walk sees: version 1 frames hold them as they are (version 2 deflates them)
const bin1 = encodeBinaryTrace(header, events, { version: 1 });
const payloads: Buffer[] = [];
for (let p = 8; p < bin1.length; ) {
  const len = bin1.readUInt32LE(p + 1);
  if (bin1[p] === 2) payloads.push(bin1.subarray(p + 9, p + 9 + len));
  p += 9 + len;
}
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint' });
const shape = eventsShape(MAX_CHUNK_EVENTS, MAX_FRAME_PAYLOAD);
const median = (f: () => void): number => {
  const t: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    f();
    t.push(performance.now() - t0);
  }
  return t.sort((a, b) => a - b)[3];
};
const walk = median(() => payloads.forEach((p) => checkShape(p, shape)));
const unpack = median(() => payloads.forEach((p) => unpackr.unpack(p)));
const decode = median(() => decodeBinaryTrace(bin));
process.stdout.write(
  `${n} events, ${bin.length} bytes: shape walk ${walk.toFixed(0)} ms, msgpackr decode ${unpack.toFixed(0)} ms (walk/decode ${(walk / unpack).toFixed(2)}), ` +
    `decodeBinaryTrace ${decode.toFixed(0)} ms (the walk is ${((100 * walk) / decode).toFixed(0)}% of it)\n`,
);
