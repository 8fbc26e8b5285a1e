/**
 * The hostile-input campaign.
 *
 *   npm run hostile -- --binary 100000 --text 20000 [--seed 1] [--cli-every 500] [--json out.json]
 *
 * Generates hostile binary and text traces from a seed (gen.ts), runs each
 * through both readers in process (check.ts), a sample of them and the
 * full-size bombs through the nvx command in child processes with a capped
 * heap (cli.ts), and reports crashes, hangs, runtime-error messages, the
 * longest message, the slowest input and the peak memory. Exit 1 when any
 * goal is missed: 0 crashes, 0 hangs, 0 runtime-error messages, every
 * message one line of at most 1,000 bytes, max RSS at most 256 MiB, at most
 * 2 s per input.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { GenOptions, HostileInput, Rng, binaryInput, cliBombs, textInput } from './gen';
import { InputResult, checkInput } from './check';
import { CliOptions, cliProblems, filesIn, runCli } from './cli';

export interface CampaignOptions {
  binary: number;
  text: number;
  seed: number;
  /** one input in this many also goes through the CLI (0: none) */
  cliEvery: number;
  /** run the full-size bombs through the CLI (all, or those whose class contains one of these) */
  cliBombs: boolean | string[];
  cli: CliOptions;
  /** goals */
  maxRssMiB: number;
  slowMs: number;
  gen: GenOptions;
  progress?: (s: string) => void;
}

interface Example {
  cls: string;
  detail: string;
}

export interface CampaignSummary {
  command: string;
  seed: number;
  inputs: { binary: number; text: number };
  verdicts: Record<string, number>;
  byClass: Record<string, { accepted: number; rejected: number; crash: number }>;
  problems: Record<string, number>;
  examples: Record<string, Example[]>;
  maxMessageBytes: number;
  longestMessage: string;
  slowestMs: number;
  slowestClass: string;
  inProcessMaxRssMiB: number;
  cli: { runs: number; maxRssMiB: number; slowestMs: number; slowest: string; problems: Example[]; bombs: { cls: string; code: number | null; ms: number; maxRssMiB?: number; stderr: string }[] };
  ok: boolean;
}

const PROBLEMS = ['crash', 'hang', 'runtime-message', 'multi-line', 'long-message', 'readers-disagree', 'lossy', 'slow', 'memory', 'leftover', 'cli-message'];

export async function runCampaign(o: CampaignOptions, command = ''): Promise<CampaignSummary> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-hostile-'));
  const s: CampaignSummary = {
    command,
    seed: o.seed,
    inputs: { binary: o.binary, text: o.text },
    verdicts: { accepted: 0, rejected: 0, crash: 0 },
    byClass: {},
    problems: Object.fromEntries(PROBLEMS.map((p) => [p, 0])),
    examples: {},
    maxMessageBytes: 0,
    longestMessage: '',
    slowestMs: 0,
    slowestClass: '',
    inProcessMaxRssMiB: 0,
    cli: { runs: 0, maxRssMiB: 0, slowestMs: 0, slowest: '', problems: [], bombs: [] },
    ok: false,
  };
  const note = (problem: string, cls: string, detail: string) => {
    s.problems[problem] = (s.problems[problem] ?? 0) + 1;
    const ex = (s.examples[problem] ??= []);
    if (ex.length < 5) ex.push({ cls, detail: detail.slice(0, 400) });
  };
  const cliSample: { input: HostileInput; file: string }[] = [];
  try {
    const rng = new Rng(o.seed);
    const total = o.binary + o.text;
    for (let i = 0; i < total; i++) {
      const binary = i < o.binary;
      const input = binary ? binaryInput(rng, o.gen) : textInput(rng, o.gen);
      const file = path.join(dir, binary ? 'in.nvxt' : 'in.nvx');
      let r: InputResult;
      try {
        r = await checkInput(input.bytes, file, o.slowMs);
      } catch (e) {
        note('crash', input.cls, `the check itself failed: ${e instanceof Error ? e.message : String(e)}`);
        continue;
      }
      s.verdicts[r.verdict]++;
      const c = (s.byClass[input.cls] ??= { accepted: 0, rejected: 0, crash: 0 });
      c[r.verdict]++;
      for (const p of r.problems) note(p.problem, input.cls, p.detail);
      if (r.message !== undefined) {
        const n = Buffer.byteLength(`error: ${r.message}`, 'utf8');
        if (n > s.maxMessageBytes) {
          s.maxMessageBytes = n;
          s.longestMessage = r.message.slice(0, 300);
        }
      }
      if (r.ms > s.slowestMs) {
        s.slowestMs = r.ms;
        s.slowestClass = `${input.cls} (${input.bytes.length} bytes)`;
      }
      if (o.cliEvery > 0 && i % o.cliEvery === 0) {
        const keep = path.join(dir, `sample-${i}${binary ? '.nvxt' : '.nvx'}`);
        fs.writeFileSync(keep, input.bytes);
        cliSample.push({ input, file: keep });
      }
      if (o.progress && (i + 1) % 10000 === 0) o.progress(`${i + 1}/${total} inputs, problems: ${JSON.stringify(Object.fromEntries(Object.entries(s.problems).filter(([, v]) => v)))}`);
    }
    s.inProcessMaxRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);

    // the CLI: the sample, then the bombs
    const only = o.cliBombs;
    const bombs = only === false ? [] : cliBombs().filter((b) => only === true || only.some((x) => b.cls.includes(x)));
    for (const b of bombs) {
      const file = path.join(dir, `bomb-${b.cls.replace(/\W+/g, '-')}${b.cls.includes('text') ? '.nvx' : '.nvxt'}`);
      fs.writeFileSync(file, b.bytes);
      cliSample.push({ input: b, file });
    }
    o.progress?.(`CLI: ${cliSample.length} runs (${bombs.length} bombs)`);
    for (const [k, { input, file }] of cliSample.entries()) {
      const outDir = path.join(dir, `out-${k}`);
      fs.mkdirSync(outDir);
      const out = path.join(outDir, file.endsWith('.nvxt') ? 'x.nvx' : 'x.nvxt');
      // the bombs are validated; the sample alternates validate and convert (which must leave nothing behind on failure)
      const args = k % 2 === 0 || input.cls.startsWith('cli/') ? ['trace', 'validate', file] : ['trace', 'convert', '-q', file, out];
      const r = await runCli(args, o.cli);
      s.cli.runs++;
      if (r.maxRssKiB !== undefined) s.cli.maxRssMiB = Math.max(s.cli.maxRssMiB, Math.round(r.maxRssKiB / 1024));
      if (r.ms > s.cli.slowestMs) {
        s.cli.slowestMs = Math.round(r.ms);
        s.cli.slowest = `${input.cls} (${input.bytes.length} bytes)`;
      }
      if (input.cls.startsWith('cli/'))
        s.cli.bombs.push({ cls: input.cls, code: r.code, ms: Math.round(r.ms), maxRssMiB: r.maxRssKiB === undefined ? undefined : Math.round(r.maxRssKiB / 1024), stderr: r.stderr.trim().slice(0, 200) });
      for (const p of cliProblems(r, o.maxRssMiB * 1024)) {
        const kind = p.split(':')[0];
        note(PROBLEMS.includes(kind) ? kind : 'cli-message', input.cls, `nvx ${args.slice(0, 2).join(' ')}: ${p}`);
        if (s.cli.problems.length < 20) s.cli.problems.push({ cls: input.cls, detail: p.slice(0, 400) });
      }
      for (const line of r.stderr.split('\n')) s.maxMessageBytes = Math.max(s.maxMessageBytes, Buffer.byteLength(line, 'utf8'));
      const left = filesIn(outDir).filter((f) => r.code === 0 ? f !== path.basename(out) : true);
      if (left.length) note('leftover', input.cls, `after exit ${r.code}: ${left.join(', ')}`);
      fs.rmSync(outDir, { recursive: true, force: true });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const bad = ['crash', 'hang', 'runtime-message', 'multi-line', 'long-message', 'readers-disagree', 'lossy', 'slow', 'memory', 'leftover', 'cli-message'];
  s.ok = bad.every((p) => !s.problems[p]) && s.cli.maxRssMiB <= o.maxRssMiB && s.maxMessageBytes <= 1000;
  return s;
}

// ---------------------------------------------------------------- command line

function parseArgs(argv: string[]): { o: CampaignOptions; json?: string; build: boolean } {
  const o: CampaignOptions = {
    binary: 1000,
    text: 200,
    seed: 1,
    cliEvery: 500,
    cliBombs: true,
    cli: { dist: true, heapMiB: 256, timeoutMs: 30000 },
    maxRssMiB: 256,
    slowMs: 2000,
    gen: { maxBytes: 4 * 1024 * 1024 },
    progress: (m) => process.stderr.write(`hostile: ${m}\n`),
  };
  let json: string | undefined;
  let build = true;
  const num = (flag: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isSafeInteger(n) || n < min) {
      process.stderr.write(`hostile: ${flag} wants an integer of at least ${min} (got '${v ?? ''}')\n`);
      process.exit(2);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    switch (a) {
      case '--binary':
        o.binary = num(a, v(), 0);
        break;
      case '--text':
        o.text = num(a, v(), 0);
        break;
      case '--seed':
        o.seed = num(a, v(), 0);
        break;
      case '--cli-every':
        o.cliEvery = num(a, v(), 0);
        break;
      case '--no-cli-bombs':
        o.cliBombs = false;
        break;
      case '--src':
        o.cli.dist = false;
        build = false;
        break;
      case '--no-build':
        build = false;
        break;
      case '--max-bytes':
        o.gen.maxBytes = num(a, v(), 1024);
        break;
      case '--json':
        json = v();
        break;
      case '-q':
      case '--quiet':
        o.progress = undefined;
        break;
      default:
        process.stderr.write(`hostile: unknown argument '${a}' (--binary N --text N --seed N --cli-every N --no-cli-bombs --src --no-build --max-bytes N --json FILE --quiet)\n`);
        process.exit(2);
    }
  }
  return { o, json, build };
}

function printSummary(s: CampaignSummary): void {
  const w = (l: string) => process.stdout.write(l + '\n');
  w(`hostile-input campaign: ${s.command}`);
  w(`  inputs            ${s.inputs.binary} binary, ${s.inputs.text} text (seed ${s.seed})`);
  w(`  verdicts          ${s.verdicts.accepted} accepted, ${s.verdicts.rejected} rejected with a TraceError, ${s.verdicts.crash} crashes`);
  w(`  problems          ${Object.entries(s.problems).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  w(`  longest message   ${s.maxMessageBytes} bytes`);
  w(`  slowest input     ${Math.round(s.slowestMs)} ms (${s.slowestClass})`);
  w(`  in-process RSS    ${s.inProcessMaxRssMiB} MiB max`);
  w(`  CLI               ${s.cli.runs} runs, max RSS ${s.cli.maxRssMiB} MiB, slowest ${s.cli.slowestMs} ms (${s.cli.slowest})`);
  for (const b of s.cli.bombs) w(`  bomb ${b.cls.padEnd(34)} exit ${b.code}, ${b.ms} ms, max RSS ${b.maxRssMiB ?? '?'} MiB: ${b.stderr.replace(/^error: [^:]*: /, '').slice(0, 100)}`);
  for (const [p, ex] of Object.entries(s.examples)) for (const e of ex) w(`  ${p}: ${e.cls}: ${e.detail}`);
  w(s.ok ? 'OK: every goal met' : 'FAILED: see the problems above');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const { o, json, build } = parseArgs(argv);
  if (build && o.cli.dist && (o.cliEvery > 0 || o.cliBombs)) {
    o.progress?.('building packages/cli (npm run build) for the CLI runs');
    execFileSync('npx', ['tsc', '-b', 'packages/cli'], { cwd: path.join(__dirname, '..', '..'), stdio: 'inherit' });
  }
  const s = await runCampaign(o, `npm run hostile -- ${argv.join(' ')}`.trim());
  printSummary(s);
  if (json) fs.writeFileSync(json, JSON.stringify(s, null, 2) + '\n');
  process.exitCode = s.ok ? 0 : 1;
}

if (require.main === module) void main();
