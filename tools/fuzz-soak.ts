/**
 * Soak test: fuzz the correct paths for a long time and check that there is
 * no false alarm (no new finding). It runs the built `nvx fuzz` (build first:
 * `npm run build`) from the project root, so the corpus declares which
 * paths are expected to diverge, and prints one line with the outcome; the
 * summary JSON goes to --report when given.
 *
 *   npx tsx tools/fuzz-soak.ts [--time 10m] [--workers N] [--seed S] [--allow-violations] [--report file.json] [--out dir]
 *
 * Exit 0 when the campaign found nothing new, 1 when it did (the findings
 * are in --out, default a temporary directory that is kept then), 2 on a
 * usage or run error.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '..');

interface Args {
  time: string;
  workers: number;
  seed: number;
  allowViolations: boolean;
  report?: string;
  out?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { time: '10m', workers: 1, seed: 20240601, allowViolations: false };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${f} needs a value`);
      return v;
    };
    if (f === '--time') a.time = next();
    else if (f === '--workers') a.workers = Number(next());
    else if (f === '--seed') a.seed = Number(next());
    else if (f === '--allow-violations') a.allowViolations = true;
    else if (f === '--report') a.report = next();
    else if (f === '--out') a.out = next();
    else if (f === '--help' || f === '-h') {
      console.log('usage: npx tsx tools/fuzz-soak.ts [--time 10m] [--workers N] [--seed S] [--allow-violations] [--report file.json] [--out dir]');
      process.exit(0);
    } else throw new Error(`unknown argument '${f}'`);
  }
  if (!Number.isSafeInteger(a.workers) || a.workers < 1) throw new Error('--workers wants a positive integer');
  return a;
}

function main(): number {
  let a: Args;
  try {
    a = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`fuzz-soak: ${(e as Error).message}`);
    return 2;
  }
  const bin = path.join(ROOT, 'packages', 'cli', 'bin', 'nvx.js');
  if (!fs.existsSync(path.join(ROOT, 'packages', 'check', 'dist', 'fuzz.js'))) {
    console.error('fuzz-soak: the packages are not built (npm run build)');
    return 2;
  }
  const out = a.out ?? fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-soak-'));
  const args = [bin, 'fuzz', '--time', a.time, '--workers', String(a.workers), '--seed', String(a.seed), '--out', out, '--json'];
  if (a.allowViolations) args.push('--allow-violations');
  console.error(`fuzz-soak: nvx ${args.slice(1).join(' ')}`);
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0 && r.status !== 1) {
    console.error(`fuzz-soak: nvx fuzz exited ${r.status}${r.signal ? ` (${r.signal})` : ''}\n${r.stderr}`);
    return 2;
  }
  const s = JSON.parse(r.stdout) as {
    runs: number;
    events: number;
    ms: number;
    tracesPerSec: number;
    eventsPerSec: number;
    profiles: string[];
    expected: string[];
    newFindings: number;
    findings: { name: string; profile: string; summary: string; classification: string }[];
    permitted: Record<string, number>;
  };
  if (a.report) fs.writeFileSync(a.report, JSON.stringify(s, null, 2) + '\n');
  const permitted = Object.entries(s.permitted).map(([c, n]) => `${n} permitted by ${c}`);
  console.log(
    `fuzz-soak: ${s.newFindings ? 'FALSE ALARM' : 'no false alarm'}: ${s.runs} traces, ${s.events} events in ${(s.ms / 60000).toFixed(1)} min ` +
      `(${s.tracesPerSec} traces/s, ${s.eventsPerSec} events/s, ${a.workers} worker${a.workers > 1 ? 's' : ''}) over ${s.profiles.length} profiles` +
      `${s.expected.length ? ` (${s.expected.join(', ')} left out: known to diverge)` : ''}; ${s.newFindings} new findings${permitted.length ? `; ${permitted.join(', ')}` : ''}`,
  );
  for (const f of s.findings) console.log(`  ${f.classification} ${f.name} [${f.profile}] ${f.summary}`);
  if (s.newFindings) {
    console.log(`  findings in ${out}`);
    return 1;
  }
  if (!a.out) fs.rmSync(out, { recursive: true, force: true });
  return 0;
}

process.exitCode = main();
