/**
 * Trace codec benchmark: the binary form (.nvxt) on the trace the goal names,
 * traces/workloads/cpuid-loop.nvxt (400,528 events of the CPUID loop on an
 * eVMCS L1), and on a synthetic trace mixing every event kind.
 *
 *   npx tsx tools/bench/trace.ts [--events N] [--runs N] [--trace FILE] [--json]
 *
 * The workload is decoded once, then encoded in format version 1 (the form
 * before chunks were deflated) and version 2 (what the writers write now):
 * bytes/event of each beside the goal (<= 6), and encode / decode speed of
 * the two measured as pairs in this one process (each run times version 1
 * and version 2 back to back, in alternating order), so their ratio is not
 * a ratio of medians from different moments of a loaded machine. Then the
 * codecs that were considered, on the workload's own chunks: size, and
 * compress / decompress speed.
 *
 * Every figure is a median; `range` is the lowest and highest run.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import * as zlib from 'zlib';
import {
  BinaryTraceReader,
  BinaryTraceWriter,
  BinaryVersion,
  DEFLATE_LEVEL,
  FILE_HEADER_SIZE,
  FRAME_EVENTS,
  FRAME_HEADER_SIZE,
  decodeBinaryTrace,
  encodeBinaryTrace,
} from '../../packages/trace/src/binary';
import { EVENT_KINDS, EVENT_SCHEMA, FieldType, TraceEvent } from '../../packages/trace/src/events';
import { TraceHeader, makeHeader } from '../../packages/trace/src/header';
import type { Outcome } from '../../packages/trace/src/outcome';

const RUNS = 7;
export const GOAL_BYTES_PER_EVENT = 6;
export const WORKLOAD_TRACE = path.resolve(__dirname, '..', '..', 'traces', 'workloads', 'cpuid-loop.nvxt');

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

// ---------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------

export interface Figure {
  /** median */
  median: number;
  /** lowest and highest run */
  range: [number, number];
}

function figure(xs: number[], d = 2): Figure {
  const s = [...xs].sort((a, b) => a - b);
  return { median: round(s[s.length >> 1], d), range: [round(s[0], d), round(s[s.length - 1], d)] };
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/** Milliseconds of one call. */
function once(f: () => unknown): number {
  const t0 = performance.now();
  f();
  return performance.now() - t0;
}

async function onceAsync(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

/** A before/after pair: M events/s of each and the after/before speed ratio, per run. */
export interface Pair {
  before: Figure;
  after: Figure;
  /** after's speed over before's, per run (1.0: as fast) */
  ratio: Figure;
}

/**
 * Time `before` and `after` back to back `runs` times (after one warm-up of
 * each), alternating which goes first; the ratio is taken per run, so both
 * sides of a ratio saw the same moment of the machine.
 */
async function pair(n: number, runs: number, before: () => unknown, after: () => unknown): Promise<Pair> {
  await before();
  await after();
  const b: number[] = [];
  const a: number[] = [];
  const r: number[] = [];
  for (let i = 0; i < runs; i++) {
    let tb: number;
    let ta: number;
    if (i % 2 === 0) {
      tb = await onceAsync(async () => before());
      ta = await onceAsync(async () => after());
    } else {
      ta = await onceAsync(async () => after());
      tb = await onceAsync(async () => before());
    }
    b.push(n / tb / 1000);
    a.push(n / ta / 1000);
    r.push(tb / ta);
  }
  return { before: figure(b), after: figure(a), ratio: figure(r) };
}

// ---------------------------------------------------------------------------
// The workload trace
// ---------------------------------------------------------------------------

/** The decoded events payloads (msgpack lists) of a version 1 binary trace. */
function v1Payloads(buf: Buffer): Buffer[] {
  if (buf.readUInt16LE(4) !== 1) throw new Error('v1Payloads needs a version 1 trace');
  const out: Buffer[] = [];
  let pos = FILE_HEADER_SIZE;
  while (pos + FRAME_HEADER_SIZE <= buf.length) {
    const len = buf.readUInt32LE(pos + 1);
    if (buf[pos] === FRAME_EVENTS) out.push(buf.subarray(pos + FRAME_HEADER_SIZE, pos + FRAME_HEADER_SIZE + len));
    pos += FRAME_HEADER_SIZE + len;
  }
  return out;
}

export interface CodecRow {
  codec: string;
  /** bytes/event of the whole file with every chunk in this codec (5 bytes of codec and size per chunk) */
  bytesPerEvent: number;
  /** MB/s of msgpack (decoded) bytes */
  compressMBs: Figure;
  decompressMBs: Figure;
  chosen: boolean;
}

const CODECS: { codec: string; compress: (b: Buffer) => Buffer; decompress: (b: Buffer, size: number) => Buffer }[] = [
  {
    codec: `deflate-raw level ${DEFLATE_LEVEL}`,
    compress: (b) => zlib.deflateRawSync(b, { level: DEFLATE_LEVEL }),
    decompress: (b, size) => zlib.inflateRawSync(b, { maxOutputLength: size }),
  },
  { codec: 'deflate-raw level 6', compress: (b) => zlib.deflateRawSync(b, { level: 6 }), decompress: (b, size) => zlib.inflateRawSync(b, { maxOutputLength: size }) },
  ...[0, 1, 4].map((q) => ({
    codec: `brotli quality ${q}`,
    compress: (b: Buffer) => zlib.brotliCompressSync(b, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: q, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: b.length } }),
    decompress: (b: Buffer, size: number) => zlib.brotliDecompressSync(b, { maxOutputLength: size }),
  })),
];

/** Every codec on the chunks of a version 1 trace; the runs interleave the codecs, so load hits them alike. */
function codecRows(v1: Buffer, events: number, runs: number): CodecRow[] {
  const payloads = v1Payloads(v1);
  const raw = payloads.reduce((s, p) => s + p.length, 0);
  const packed = CODECS.map(({ compress }) => payloads.map(compress));
  const c: number[][] = CODECS.map(() => []);
  const d: number[][] = CODECS.map(() => []);
  for (let r = 0; r < runs; r++)
    CODECS.forEach(({ compress, decompress }, i) => {
      c[i].push(raw / once(() => (packed[i] = payloads.map(compress))) / 1000);
      d[i].push(raw / once(() => packed[i].forEach((p, k) => decompress(p, payloads[k].length))) / 1000);
    });
  return CODECS.map(({ codec }, i) => ({
    codec,
    bytesPerEvent: round((v1.length - raw + packed[i].reduce((s, p) => s + 5 + p.length, 0)) / events, 3),
    compressMBs: figure(c[i], 0),
    decompressMBs: figure(d[i], 0),
    chosen: i === 0,
  }));
}

export interface WorkloadResult {
  trace: string;
  events: number;
  /** the file as shipped: its format version and bytes/event */
  file: { version: number; bytes: number; bytesPerEvent: number };
  /** bytes/event when written by the writer in each format version */
  bytesPerEvent: { v1: number; v2: number };
  goal: { bytesPerEvent: number; met: boolean };
  /** M events/s, version 1 (before) and version 2 (after), measured as pairs */
  encode: Pair;
  decode: Pair;
  streamWrite: Pair;
  streamRead: Pair;
  codecs: CodecRow[];
}

async function benchWorkload(file: string, runs: number, tmp: string): Promise<WorkloadResult> {
  const bytes = fs.readFileSync(file);
  const { header, events, warnings } = decodeBinaryTrace(bytes, file);
  if (warnings.length) throw new Error(`${file}: ${warnings[0].message}`);
  const n = events.length;
  const v1 = encodeBinaryTrace(header, events, { version: 1 });
  const v2 = encodeBinaryTrace(header, events, { version: 2 });
  // correctness before timing: both versions give the events back
  for (const b of [v1, v2]) {
    const back = decodeBinaryTrace(b).events;
    if (back.length !== n || back[n - 2].kind !== events[n - 2].kind) throw new Error('round trip lost events');
  }

  const write = (version: BinaryVersion) => () => {
    const w = BinaryTraceWriter.open(path.join(tmp, `w${version}.nvxt`), header, { version });
    for (const e of events) w.write(e);
    w.close();
  };
  const read = (version: BinaryVersion) => async () => {
    const r = await BinaryTraceReader.open(path.join(tmp, `w${version}.nvxt`));
    let c = 0;
    for await (const chunk of r.chunks()) c += chunk.length;
    await r.close();
    if (c !== n) throw new Error(`streaming reader read ${c} of ${n} events`);
  };
  write(1)();
  write(2)();
  const rel = path.relative(path.resolve(__dirname, '..', '..'), file) || file;
  return {
    trace: rel,
    events: n,
    file: { version: bytes.readUInt16LE(4), bytes: bytes.length, bytesPerEvent: round(bytes.length / n, 3) },
    bytesPerEvent: { v1: round(v1.length / n, 3), v2: round(v2.length / n, 3) },
    goal: { bytesPerEvent: GOAL_BYTES_PER_EVENT, met: v2.length / n <= GOAL_BYTES_PER_EVENT },
    encode: await pair(n, runs, () => encodeBinaryTrace(header, events, { version: 1 }), () => encodeBinaryTrace(header, events, { version: 2 })),
    decode: await pair(n, runs, () => decodeBinaryTrace(v1), () => decodeBinaryTrace(v2)),
    streamWrite: await pair(n, Math.min(runs, 5), write(1), write(2)),
    streamRead: await pair(n, Math.min(runs, 5), read(1), read(2)),
    codecs: codecRows(v1, n, Math.min(runs, 5)),
  };
}

// ---------------------------------------------------------------------------
// The mixed synthetic trace (every kind: the worst case for compression)
// ---------------------------------------------------------------------------

export interface MixedResult {
  events: number;
  bytesPerEvent: { v1: number; v2: number };
  encode: Pair;
  decode: Pair;
  codecs: CodecRow[];
}

async function benchMixed(n: number, runs: number): Promise<MixedResult> {
  const { header, events } = syntheticTrace(n);
  const v1 = encodeBinaryTrace(header, events, { version: 1 });
  const v2 = encodeBinaryTrace(header, events);
  if (decodeBinaryTrace(v2).events.length !== n) throw new Error('mixed: round trip lost events');
  return {
    events: n,
    bytesPerEvent: { v1: round(v1.length / n, 3), v2: round(v2.length / n, 3) },
    encode: await pair(n, runs, () => encodeBinaryTrace(header, events, { version: 1 }), () => encodeBinaryTrace(header, events)),
    decode: await pair(n, runs, () => decodeBinaryTrace(v1), () => decodeBinaryTrace(v2)),
    codecs: codecRows(v1, n, runs),
  };
}

// ---------------------------------------------------------------------------

export interface TraceBenchResult {
  node: string;
  runs: number;
  workload: WorkloadResult;
  mixed: MixedResult;
}

export async function benchTrace(opts: { events: number; runs?: number; trace?: string; log?: (line: string) => void }): Promise<TraceBenchResult> {
  const runs = opts.runs ?? RUNS;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-bench-trace-'));
  try {
    opts.log?.(`trace codec: ${opts.trace ?? WORKLOAD_TRACE}, version 1 vs 2, ${runs} runs ...`);
    const workload = await benchWorkload(opts.trace ?? WORKLOAD_TRACE, runs, tmp);
    opts.log?.(`trace codec: mixed synthetic trace, ${opts.events} events ...`);
    const mixed = await benchMixed(opts.events, Math.min(runs, 5));
    return { node: process.version, runs, workload, mixed };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

const fig = (f: Figure, d = 2) => `${f.median.toFixed(d)} (${f.range[0].toFixed(d)}-${f.range[1].toFixed(d)})`;
const pairLine = (name: string, p: Pair) => `  ${name.padEnd(22)} v1 ${fig(p.before).padEnd(18)} v2 ${fig(p.after).padEnd(18)} v2/v1 ${fig(p.ratio)}`;

const codecLines = (rows: CodecRow[]) =>
  rows.map((c) => `    ${(c.codec + (c.chosen ? ' (chosen)' : '')).padEnd(30)} ${c.bytesPerEvent.toFixed(3).padStart(6)} bytes/event   compress ${fig(c.compressMBs, 0).padEnd(16)} decompress ${fig(c.decompressMBs, 0)}`);

/** The readable report of `npm run bench`. */
export function formatTraceBench(r: TraceBenchResult): string {
  const w = r.workload;
  const out = [
    `Trace codec (tools/bench/trace.ts): ${w.trace}, ${w.events.toLocaleString('en-US')} events; medians of ${r.runs} runs (lowest-highest)`,
    `  bytes/event            v1 ${w.bytesPerEvent.v1}   v2 ${w.bytesPerEvent.v2}   goal <= ${w.goal.bytesPerEvent}: ${w.goal.met ? 'met' : 'NOT MET'}` +
      `   (the file as shipped: version ${w.file.version}, ${w.file.bytesPerEvent})`,
    '  M events/s, v1 and v2 timed back to back in this process:',
    pairLine('encode (in memory)', w.encode),
    pairLine('decode (in memory)', w.decode),
    pairLine('streaming writer', w.streamWrite),
    pairLine('streaming reader', w.streamRead),
    `  codecs on the workload's chunks (MB/s of decoded msgpack):`,
    ...codecLines(w.codecs),
    `  mixed synthetic trace (every event kind), ${r.mixed.events.toLocaleString('en-US')} events: bytes/event v1 ${r.mixed.bytesPerEvent.v1}, v2 ${r.mixed.bytesPerEvent.v2}`,
    pairLine('encode (in memory)', r.mixed.encode),
    pairLine('decode (in memory)', r.mixed.decode),
    `  codecs on the mixed trace's chunks:`,
    ...codecLines(r.mixed.codecs),
  ];
  return out.join('\n');
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const opts: { events: number; runs?: number; trace?: string } = { events: 1_000_000 };
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') json = true;
    else if (a === '--events' || a === '--runs') {
      const v = Number(argv[++i]);
      if (!Number.isSafeInteger(v) || v <= 0) {
        console.error(`trace bench: ${a} needs a positive integer`);
        process.exit(2);
      }
      if (a === '--events') opts.events = v;
      else opts.runs = v;
    } else if (a === '--trace') opts.trace = argv[++i];
    else {
      console.error(`trace bench: unknown argument '${a}' (--events N --runs N --trace FILE --json)`);
      process.exit(2);
    }
  }
  benchTrace({ ...opts, log: (l) => console.error(l) }).then(
    (r) => console.log(json ? JSON.stringify(r, null, 2) : formatTraceBench(r)),
    (e) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
