/**
 * The CLI part of the campaign: a sample of the hostile inputs (and the
 * full-size bombs) through the nvx command in child processes with a capped
 * heap, checking the exit code, the time, the peak memory (max RSS) and the
 * shape of what is printed on stderr.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { MAX_MESSAGE_BYTES, RUNTIME_ERROR_RE } from './check';

export interface CliRun {
  args: string[];
  code: number | null;
  signal: string | null;
  ms: number;
  /** KiB, from the child itself; undefined when it died before it could say */
  maxRssKiB?: number;
  stderr: string;
  timedOut: boolean;
}

export interface CliOptions {
  /** run the built command (packages/cli/dist) instead of the sources through tsx */
  dist: boolean;
  /** the V8 heap cap of each child, MiB */
  heapMiB: number;
  timeoutMs: number;
}

const ROOT = path.join(__dirname, '..', '..');

/** Run `nvx <args>` in a child process; never rejects. */
export function runCli(args: string[], o: CliOptions): Promise<CliRun> {
  const node = [`--max-old-space-size=${o.heapMiB}`];
  const argv = o.dist ? [...node, path.join(__dirname, 'child.js'), ...args] : [...node, '--import', 'tsx', path.join(__dirname, 'child.ts'), ...args];
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    let stderr = '';
    let fd3 = '';
    let timedOut = false;
    child.stderr!.on('data', (c: Buffer) => {
      if (stderr.length < 1 << 20) stderr += c.toString('utf8');
    });
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (c: Buffer) => (fd3 += c.toString('utf8')));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, o.timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let maxRssKiB: number | undefined;
      try {
        maxRssKiB = (JSON.parse(fd3.trim().split('\n').pop() ?? '') as { maxRss: number }).maxRss;
      } catch {
        maxRssKiB = undefined;
      }
      resolve({ args, code, signal, ms: performance.now() - t0, maxRssKiB, stderr, timedOut });
    });
  });
}

/** What is wrong with a run: a crash (exit 3, a signal, no memory report), a hang, too much memory, a bad stderr. */
export function cliProblems(r: CliRun, maxRssKiB: number, expectCodes: readonly number[] = [0, 2]): string[] {
  const out: string[] = [];
  if (r.timedOut) out.push(`hang: killed after ${Math.round(r.ms)} ms`);
  else if (r.signal !== null || r.code === null || !expectCodes.includes(r.code)) out.push(`crash: exit ${r.code ?? r.signal}: ${r.stderr.slice(0, 300)}`);
  if (r.maxRssKiB !== undefined && r.maxRssKiB > maxRssKiB) out.push(`memory: max RSS ${Math.round(r.maxRssKiB / 1024)} MiB`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  for (const l of lines) {
    if (Buffer.byteLength(l, 'utf8') > MAX_MESSAGE_BYTES) out.push(`long-message: ${Buffer.byteLength(l, 'utf8')} bytes: ${l.slice(0, 200)}`);
    if (RUNTIME_ERROR_RE.test(l)) out.push(`runtime-message: ${l.slice(0, 300)}`);
  }
  const errors = lines.filter((l) => l.startsWith('error: '));
  if (r.code === 2 && errors.length !== 1) out.push(`message: ${errors.length} error lines: ${r.stderr.slice(0, 300)}`);
  return out;
}

/** The files in `dir` (for leftovers after a failed convert). */
export function filesIn(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}
