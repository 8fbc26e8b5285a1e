/**
 * Regenerate the generated workload traces in traces/workloads/.
 *
 *   npx tsx tools/gen-workloads.ts [--iterations N] [--out DIR]
 *
 * cpuid-loop.nvxt: the tight CPUID loop of seed 000 on an eVMCS L1 (see
 * packages/check/src/workloads.ts), 100,000 iterations by default, binary
 * form, written with the streaming writer (temporary file renamed on close),
 * so the events are never all in memory. The generators are deterministic:
 * running this again gives the same bytes.
 */
import * as fs from 'fs';
import * as path from 'path';
import { cpuidLoopStream, WorkloadStream } from '../packages/check/src/workloads';
import { createTraceWriter } from '../packages/trace/src/io';

export const DEFAULT_ITERATIONS = 100_000;
/** Generated traces above this size are not kept in the repository. */
export const MAX_KEPT_BYTES = 5 * 1024 * 1024;

export const WORKLOADS_DIR = path.resolve(__dirname, '..', 'traces', 'workloads');

export interface GeneratedTrace {
  file: string;
  events: number;
  bytes: number;
}

/** Stream one workload into a binary trace file. */
export function writeWorkload(file: string, wl: WorkloadStream): GeneratedTrace {
  const w = createTraceWriter(file, wl.header, { form: 'binary' });
  try {
    for (const e of wl.events()) w.write(e);
    w.close();
  } catch (e) {
    w.abort();
    throw e;
  }
  if (w.count !== wl.count) throw new Error(`${file}: wrote ${w.count} events, the workload has ${wl.count}`);
  return { file, events: w.count, bytes: fs.statSync(file).size };
}

export function generateWorkloads(opts: { iterations?: number; dir?: string } = {}): GeneratedTrace[] {
  const dir = opts.dir ?? WORKLOADS_DIR;
  fs.mkdirSync(dir, { recursive: true });
  return [writeWorkload(path.join(dir, 'cpuid-loop.nvxt'), cpuidLoopStream(opts.iterations ?? DEFAULT_ITERATIONS, { evmcs: true }))];
}

function main(argv: string[]): number {
  let iterations = DEFAULT_ITERATIONS;
  let dir: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--iterations') iterations = Number(argv[++i]);
    else if (a === '--out') dir = argv[++i];
    else if (a === '--help' || a === '-h') {
      console.log('usage: tsx tools/gen-workloads.ts [--iterations N] [--out DIR]');
      return 0;
    } else {
      console.error(`gen-workloads: unknown argument '${a}'`);
      return 2;
    }
  }
  if (!Number.isSafeInteger(iterations) || iterations < 0) {
    console.error('gen-workloads: --iterations needs a non-negative integer');
    return 2;
  }
  let status = 0;
  for (const t of generateWorkloads({ iterations, dir })) {
    const rel = path.relative(process.cwd(), t.file) || t.file;
    console.log(`${rel}: ${t.events} events, ${t.bytes} bytes (${(t.bytes / t.events).toFixed(2)} bytes/event)`);
    if (t.bytes > MAX_KEPT_BYTES) {
      console.error(`${rel}: larger than ${MAX_KEPT_BYTES} bytes: do not keep it in the repository`);
      status = 1;
    }
  }
  return status;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
