/**
 * Trace codec benchmark: the binary form (.nvxt) beside JSON of the same
 * events, on a synthetic trace mixing every event kind and on a CPUID loop
 * (the shape of the hottest real workload: L2 CPUID, L1 reads the exit
 * reason and qualification, L1 resumes).
 *
 *   npx tsx tools/bench/trace.ts [events]
 *
 * Every figure is the median of several runs in the same process; ratios are
 * against JSON.stringify / JSON.parse with bigints as hex strings.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { Unpackr } from 'msgpackr';
import {
  BinaryTraceReader,
  BinaryTraceWriter,
  FILE_HEADER_SIZE,
  FRAME_EVENTS,
  FRAME_HEADER_SIZE,
  decodeBinaryTrace,
  encodeBinaryTrace,
} from '../../packages/trace/src/binary';
import { EVENT_KINDS, EVENT_SCHEMA, FieldType, TraceEvent } from '../../packages/trace/src/events';
import { TraceHeader, makeHeader } from '../../packages/trace/src/header';
import type { Outcome } from '../../packages/trace/src/outcome';
import { eventFromTuple } from '../../packages/trace/src/validate';

const RUNS = 5;

/** A 32-bit linear congruential generator (Numerical Recipes constants): deterministic, no Math.random. */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
}

const VMCS_FIELDS = [0x4402, 0x6400, 0x681e, 0x440c, 0x2004, 0x2006, 0x0800, 0x6c16, 0x4016, 0x401e];
const MSRS = [0x10, 0x48, 0x1b, 0x140, 0x174, 0x175, 0x176, 0x277, 0x6e0, 0x808, 0x80b, 0xc0000080, 0xc0000100, 0xc0000102];

function syntheticValue(type: FieldType, r: () => number, vcpus: number, pcpus: number): unknown {
  switch (type) {
    case 'vcpu':
      return r() % vcpus;
    case 'cpu':
      return r() % pcpus;
    case 'u8':
      return r() & 0xff;
    case 'u16':
      return r() & 0xffff;
    case 'u32':
      return r() % 8 === 0 ? r() : r() & 0xff;
    case 'field':
      return VMCS_FIELDS[r() % VMCS_FIELDS.length];
    case 'msr':
      return MSRS[r() % MSRS.length];
    case 'u64': {
      const k = r() % 4;
      if (k === 0) return 0xffffffff81000000n + BigInt(r() & 0xffff);
      if (k === 1) return BigInt(r()) << 12n;
      return BigInt((r() & 0xfffff000) >>> 0);
    }
    case 'bool':
      return (r() & 1) === 1;
    case 'cpl':
      return r() & 3;
    case 'access':
      return (r() & 1) === 1 ? 'write' : 'read';
    case 'size':
      return [1, 2, 4, 8][r() & 3];
  }
}

function syntheticOutcome(r: () => number): Outcome {
  switch (r() % 5) {
    case 0:
      return { k: 'ok' };
    case 1:
      return { k: 'value', value: (r() & 1) === 1 ? BigInt(r()) : 0xffffffff81000000n };
    case 2:
      return { k: 'exit', reason: [10, 18, 31, 32][r() & 3], qual: BigInt(r() & 0xffff) };
    case 3:
      return { k: 'entered' };
    default:
      return { k: 'cpuid', eax: r(), ebx: r(), ecx: r(), edx: r() };
  }
}

/** n events of every kind in turn order drawn by the LCG; one in four carries an expected outcome. */
export function syntheticTrace(n: number, seed = 1): { header: TraceHeader; events: TraceEvent[] } {
  const header = makeHeader({ vcpus: 4, pcpus: 4 }, { generator: 'bench-synthetic', seed: String(seed) });
  const r = lcg(seed);
  const events: TraceEvent[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const kind = EVENT_KINDS[r() % EVENT_KINDS.length];
    const e: Record<string, unknown> = { kind };
    for (const [name, type] of EVENT_SCHEMA[kind].fields) e[name] = syntheticValue(type, r, 4, 4);
    if (r() % 4 === 0) e.expect = syntheticOutcome(r);
    events[i] = e as TraceEvent;
  }
  return { header, events };
}

/** The CPUID loop: l2.cpuid 0/0 at CPL 3, VMREAD exit reason, VMREAD exit qualification, VMRESUME; all on vCPU 0. */
export function cpuidLoopTrace(n: number): { header: TraceHeader; events: TraceEvent[] } {
  const header = makeHeader({ vcpus: 1 }, { generator: 'bench-cpuid-loop' });
  const loop: TraceEvent[] = [
    { kind: 'l2.cpuid', vcpu: 0, leaf: 0, subleaf: 0, cpl: 3 },
    { kind: 'l1.vmread', vcpu: 0, field: 0x4402 },
    { kind: 'l1.vmread', vcpu: 0, field: 0x6400 },
    { kind: 'l1.vmresume', vcpu: 0 },
  ];
  const events: TraceEvent[] = new Array(n);
  for (let i = 0; i < n; i++) events[i] = { ...loop[i % 4] } as TraceEvent;
  return { header, events };
}

const replacer = (_k: string, v: unknown) => (typeof v === 'bigint' ? '0x' + v.toString(16) : v);
const reviver = (_k: string, v: unknown) => (typeof v === 'string' && v.charCodeAt(0) === 48 && v.charCodeAt(1) === 120 ? BigInt(v) : v);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** Median milliseconds of `runs` calls of f (after one warm-up call). */
function timeIt(f: () => unknown, runs = RUNS): number {
  f();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    f();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

async function timeItAsync(f: () => Promise<unknown>, runs = RUNS): Promise<number> {
  await f();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await f();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

/** The events frames' payloads of a binary trace (for the breakdown figures). */
function eventPayloads(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let pos = FILE_HEADER_SIZE;
  while (pos + FRAME_HEADER_SIZE <= buf.length) {
    const len = buf.readUInt32LE(pos + 1);
    if (buf[pos] === FRAME_EVENTS) out.push(buf.subarray(pos + FRAME_HEADER_SIZE, pos + FRAME_HEADER_SIZE + len));
    pos += FRAME_HEADER_SIZE + len;
  }
  return out;
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
const mps = (n: number, ms: number) => round(n / ms / 1000, 2); // million events per second

async function benchOne(name: string, header: TraceHeader, events: TraceEvent[], tmp: string): Promise<Record<string, unknown>> {
  const n = events.length;
  const bin = encodeBinaryTrace(header, events);
  const json = JSON.stringify(events, replacer);
  const jsonBytes = Buffer.byteLength(json);

  // correctness check before timing anything
  const back = decodeBinaryTrace(bin);
  if (back.events.length !== n || back.warnings.length) throw new Error(`${name}: binary round trip lost events`);

  const encBin = timeIt(() => encodeBinaryTrace(header, events));
  const decBin = timeIt(() => decodeBinaryTrace(bin));
  const encJson = timeIt(() => JSON.stringify(events, replacer));
  const decJson = timeIt(() => JSON.parse(json, reviver));
  const decJsonRaw = timeIt(() => JSON.parse(json));

  // where the binary decode time goes: msgpack alone, and msgpack + the generic validator
  const payloads = eventPayloads(bin);
  const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint' });
  const msgpackOnly = timeIt(() => {
    let c = 0;
    for (const p of payloads) c += (unpackr.unpack(p) as unknown[]).length;
    return c;
  });
  const msgpackGeneric = timeIt(() => {
    let i = 0;
    const out: TraceEvent[] = [];
    for (const p of payloads) for (const t of unpackr.unpack(p) as unknown[]) out.push(eventFromTuple(t, i++, header.config));
    return out;
  });

  // streaming: writer to a file, reader back chunk by chunk
  const file = path.join(tmp, `${name}.nvxt`);
  const writeMs = timeIt(() => {
    const w = BinaryTraceWriter.open(file, header);
    for (const e of events) w.write(e);
    w.close();
  }, 3);
  const readMs = await timeItAsync(async () => {
    const r = await BinaryTraceReader.open(file);
    let c = 0;
    for await (const chunk of r.chunks()) c += chunk.length;
    await r.close();
    if (c !== n) throw new Error(`${name}: streaming reader read ${c} of ${n} events`);
  }, 3);

  return {
    events: n,
    binary: {
      bytesPerEvent: round(bin.length / n, 3),
      encodeMEventsPerSec: mps(n, encBin),
      decodeMEventsPerSec: mps(n, decBin),
      encodeMs: round(encBin, 1),
      decodeMs: round(decBin, 1),
      streamWriteMEventsPerSec: mps(n, writeMs),
      streamReadMEventsPerSec: mps(n, readMs),
    },
    json: {
      bytesPerEvent: round(jsonBytes / n, 2),
      stringifyMEventsPerSec: mps(n, encJson),
      parseMEventsPerSec: mps(n, decJson),
      parseNoReviverMEventsPerSec: mps(n, decJsonRaw),
    },
    ratio: {
      encodeVsStringify: round(encJson / encBin, 2),
      decodeVsParse: round(decJson / decBin, 2),
      decodeVsParseNoReviver: round(decJsonRaw / decBin, 2),
      sizeVsJson: round(bin.length / jsonBytes, 3),
    },
    decodeBreakdown: {
      msgpackOnlyMEventsPerSec: mps(n, msgpackOnly),
      msgpackPlusEventFromTupleMEventsPerSec: mps(n, msgpackGeneric),
      decodeBinaryTraceMEventsPerSec: mps(n, decBin),
    },
  };
}

export async function benchTrace(opts: { events: number }): Promise<Record<string, unknown>> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-bench-trace-'));
  try {
    const mixed = syntheticTrace(opts.events);
    const cpuid = cpuidLoopTrace(opts.events);
    return {
      node: process.version,
      runs: RUNS,
      mixed: await benchOne('mixed', mixed.header, mixed.events, tmp),
      cpuidLoop: await benchOne('cpuid-loop', cpuid.header, cpuid.events, tmp),
    };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const n = Number(process.argv[2] ?? 1_000_000);
  benchTrace({ events: n }).then(
    (r) => console.log(JSON.stringify(r, null, 2)),
    (e) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
