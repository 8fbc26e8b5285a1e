/**
 * `nvx bisect`: between two profiles (text, JSON, exit codes), and over
 * event prefixes with a command as the judge (git bisect's exit codes:
 * skip, a command that always fails, one that aborts or hangs), with its
 * log printed, re-run and continued. Prefix traces go to a private
 * temporary directory here, which must be empty afterwards.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readTraceFile } from '@nvx/trace';
import { nvx } from './fixtures/nvx';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const SCEN = (f: string) => path.join(ROOT, 'traces', 'scenarios', f);
const PAGES = SCEN('pages-apic-access-migrate.nvx');
const CONTRACT = SCEN('evmcs-broken-contract.nvx');
const AGREE = SCEN('l1-intercepts-fs-base.nvx');
const L0_CHANGE = SCEN('l0-intercept-change-in-l2.nvx');
const BROKEN_MERGE = path.join(ROOT, 'examples', 'broken-merge.js');

let dir: string;
let tmp: string;
let savedTmp: string | undefined;
const p = (name: string) => path.join(dir, name);

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-bisect-test-'));
  tmp = p('tmp');
  fs.mkdirSync(tmp);
  // the prefix traces' temporary directories go here, to check they are removed
  savedTmp = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
});
afterAll(() => {
  if (savedTmp === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = savedTmp;
  fs.rmSync(dir, { recursive: true, force: true });
});
afterEach(() => expect(fs.readdirSync(tmp).filter((f) => f.startsWith('nvx-bisect-'))).toEqual([]));

/** A judge in node: the number of events in the prefix trace (text form: one event per line), then `js`. */
function judge(js: string): string {
  const count = `const n = require('fs').readFileSync(process.env.NVX_TRACE, 'utf8').split('\\n').filter((l) => /^(l1|l2|host)\\./.test(l)).length;`;
  return `"${process.execPath}" -e "${count} ${js}"`;
}

describe('between two profiles', () => {
  test('the first difference, its state diff, each side internals and the contract status; exit 1 on a bug', async () => {
    const r = await nvx(['bisect', PAGES, '--profile', 'guest-pages=kvm-map', '--checkpoint', '8']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/pages-apic-access-migrate\.nvx: 37 events; the first difference between reference and guest-pages=kvm-map is at event 14\n/);
    expect(r.stdout).toMatch(/DIVERGENCE \(bug\) at event 14: l2\.apic-write/);
    expect(r.stdout).toMatch(/same outcome, architectural state differs after the event/);
    expect(r.stdout).toMatch(/architectural state after the event:\n {4}memory gfn 0x\w+: (\w+|\(absent\)) vs \w+/);
    expect(r.stdout).toMatch(/guest-pages=kvm-map internals:\n {4}guest-pages\/kvm-map: /);
    expect(r.stdout).toMatch(/no contract was broken before this event: this is a bug/);
    expect(r.stdout).toMatch(/^bisect: checkpoints every 8 events \(\d+ kept per profile\); forward pass \d+ events, \d+ jumps of at most [1-8] events, \d+ state comparisons$/m);
    // nvx diff names the same first event, and the later first observable one
    const d = JSON.parse((await nvx(['diff', PAGES, '--profile', 'guest-pages=kvm-map', '--json'])).stdout);
    expect(d.divergence).toMatchObject({ index: 14, kind: 'state', confirmed: true });
    expect(d.divergence.firstObservable.index).toBeGreaterThan(14);
    expect(JSON.parse((await nvx(['diff', PAGES, '--profile', 'guest-pages=kvm-map', '--json', '--checkpoint', '1'])).stdout).divergence.index).toBe(14);
  });

  test('--json; a divergence after a broken contract is permitted (exit 0, 1 with --strict); agreeing profiles', async () => {
    const r = await nvx(['bisect', CONTRACT, '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ file: CONTRACT, base: 'reference', other: 'optimized', events: 17, divergence: { index: 16, kind: 'outcome', verdict: 'permitted', confirmed: true, contract: { contract: 'hyperv-clean-fields' } } });
    expect(j.stats).toMatchObject({ checkpointEvery: 1000, refined: false });
    expect((await nvx(['bisect', CONTRACT, '--strict'])).code).toBe(1);
    const text = await nvx(['bisect', CONTRACT]);
    expect(text.stdout).toMatch(/contract.*: L1 broke hyperv-clean-fields at event \d+/);
    const same = await nvx(['bisect', AGREE]);
    expect(same.code).toBe(0);
    expect(same.stdout).toMatch(/^same: optimized matches reference on all 29 events of/);
  });

  test('bad usage: exit 2 and a message', async () => {
    expect(await nvx(['bisect'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/missing the trace argument/) });
    expect(await nvx(['bisect', AGREE, '--checkpoint', '0'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/--checkpoint must be a positive integer/) });
    expect(await nvx(['bisect', AGREE, '--profile', 'msr-bitmap=nope'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/--profile: area msr-bitmap has no path 'nope'/) });
    expect(await nvx(['bisect', AGREE, '--rerun'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/--rerun needs --replay-log/) });
    expect(await nvx(['bisect', p('none.nvx')])).toMatchObject({ code: 2 });
  });
});

describe('--run: prefixes judged by a command', () => {
  // each test starts a node process per prefix it judges: seconds each on a busy CI machine
  jest.setTimeout(60_000);
  test('a node judge: the first bad prefix, the log, --replay-log and --rerun', async () => {
    const log = p('judge.log');
    // bad once the prefix holds 20 events or more
    const r = await nvx(['bisect', '--run', judge('process.exit(n >= 20 ? 1 : 0)'), L0_CHANGE, '--log', log]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^bisecting the 36 prefixes \(0\.\.35 events\) of .* with: /);
    expect(r.stdout).toMatch(/^ {2}prefix 0 \(no event\): good \(exit 0, \d+ ms\)$/m);
    expect(r.stdout).toMatch(/^ {2}prefix 35 \(the whole trace\): bad \(exit 1, \d+ ms\)$/m);
    expect(r.stdout).toMatch(/^first bad prefix: 20 events; the first bad event is event 19:\n {2}\S/m);
    const text = fs.readFileSync(log, 'utf8');
    expect(text).toMatch(/^# nvx bisect log 1\ntrace ".*l0-intercept-change-in-l2\.nvx"\nsha256 [0-9a-f]{64}\nevents 35\ncommand ".*"\nprefix 0 good exit=0 ms=\d+\nprefix 35 bad exit=1 ms=\d+\n/);
    expect(text).toMatch(/^# first bad prefix: 20 events; first bad event: 19 \(/m);
    const steps = text.split('\n').filter((l) => l.startsWith('prefix ')).length;
    expect(steps).toBeLessThanOrEqual(2 + 6);

    const replay = await nvx(['bisect', '--replay-log', log]);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toMatch(/judge\.log: bisection of .* \(35 events\) with: /);
    expect(replay.stdout.split('\n').filter((l) => /^ {2}prefix \d+/.test(l)).length).toBe(steps);
    expect(replay.stdout).toMatch(/first bad prefix: 20 events; the first bad event is event 19/);
    const json = JSON.parse((await nvx(['bisect', '--replay-log', log, '--json'])).stdout);
    expect(json.conclusion).toMatchObject({ kind: 'found', firstBadPrefix: 20, firstBadEvent: 19 });

    const rerun = await nvx(['bisect', '--replay-log', log, '--rerun']);
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toMatch(/every verdict is the same as in the log/);
  });

  test('nvx run as the judge: a plugin path whose expect fails, found at the event nvx bisect names', async () => {
    // nvx from its sources, through tsx (the executable runs the compiled output)
    const entry = p('nvx-src.ts');
    fs.writeFileSync(entry, "import { main } from '@nvx/cli';\nmain();\n");
    const tsx = `"${process.execPath}" "${require.resolve('tsx/cli', { paths: [ROOT] })}" --tsconfig "${path.join(ROOT, 'tsconfig.json')}"`;
    const cmd = `${tsx} "${entry}" run -q --path-module "${BROKEN_MERGE}" --profile msr-bitmap=broken-merge {}`;
    const r = await nvx(['bisect', '--run', cmd, L0_CHANGE, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.conclusion).toMatchObject({ kind: 'found', firstBadEvent: 18, event: expect.stringMatching(/^l2\.rdmsr MSR_FS_BASE/) });
    const b = JSON.parse((await nvx(['bisect', L0_CHANGE, '--path-module', BROKEN_MERGE, '--profile', 'msr-bitmap=broken-merge', '--json'])).stdout);
    expect(b.divergence.index).toBe(18);
  }, 120_000);

  test('skip (125): another prefix is tried; with only skipped ones left, the candidates (exit 1)', async () => {
    const found = await nvx(['bisect', '--run', judge('process.exit(n >= 9 && n <= 15 && n !== 12 && n !== 13 ? 125 : n >= 13 ? 1 : 0)'), L0_CHANGE]);
    expect(found.code).toBe(0);
    expect(found.stdout).toMatch(/: skip \(exit 125, \d+ ms\)$/m);
    expect(found.stdout).toMatch(/first bad prefix: 13 events; the first bad event is event 12/);
    const log = p('skips.log');
    const amb = await nvx(['bisect', '--run', judge('process.exit(n >= 10 && n <= 14 ? 125 : n >= 13 ? 1 : 0)'), L0_CHANGE, '--log', log]);
    expect(amb.code).toBe(1);
    expect(amb.stdout).toMatch(/only skipped prefixes are left: the first bad prefix is one of 10, 11, 12, 13, 14, 15\n {2}event 9: /);
    expect(fs.readFileSync(log, 'utf8')).toMatch(/# only skipped prefixes left: the first bad prefix is one of 10, 11, 12, 13, 14, 15/);
  }, 120_000); // about ten node processes: seconds on a loaded machine

  test('a command that always fails, always succeeds, aborts or hangs: exit 2 and why', async () => {
    const fails = await nvx(['bisect', '--run', 'exit 1', L0_CHANGE]);
    expect(fails.code).toBe(2);
    expect(fails.stderr).toMatch(/error: the empty prefix \(no event\) is already bad \(exit 1\): the command fails whatever the trace holds/);
    expect(fails.stdout).toMatch(/prefix 0 \(no event\): bad \(exit 1/);
    const missing = await nvx(['bisect', '--run', 'no-such-command-nvx-test', L0_CHANGE]);
    expect(missing.stderr).toMatch(/already bad \(exit 127\)/);
    const good = await nvx(['bisect', '--run', 'true', L0_CHANGE]);
    expect(good).toMatchObject({ code: 2, stderr: expect.stringMatching(/the whole trace \(35 events\) is good: there is nothing to bisect/) });
    const abort = await nvx(['bisect', '--run', 'echo about to abort; exit 200', L0_CHANGE]);
    expect(abort.code).toBe(2);
    expect(abort.stderr).toMatch(/the command exited 200 on prefix 0: 128 or more aborts the bisection\nthe command's last output:\n {2}\| about to abort/);
    const hang = await nvx(['bisect', '--run', 'sleep 20', '--timeout', '0.3', L0_CHANGE]);
    expect(hang.code).toBe(2);
    expect(hang.stderr).toMatch(/the command ran longer than 0\.3 s on prefix 0 and was killed \(raise --timeout\)/);
  });

  test('--replay-log --continue carries on an unfinished log', async () => {
    const log = p('cont.log');
    const cmd = judge('process.exit(n >= 7 ? 1 : 0)');
    expect((await nvx(['bisect', '--run', cmd, L0_CHANGE, '--log', log])).code).toBe(0);
    const full = fs.readFileSync(log, 'utf8');
    // keep the header and the first three steps
    const lines = full.split('\n');
    const cut = lines.filter((l) => !l.startsWith('prefix ') && !l.startsWith('#')).concat(lines.filter((l) => l.startsWith('prefix ')).slice(0, 3));
    fs.writeFileSync(log, ['# nvx bisect log 1', ...cut.filter((l) => l)].join('\n') + '\n');
    const open = await nvx(['bisect', '--replay-log', log]);
    expect(open.code).toBe(1);
    expect(open.stdout).toMatch(/unfinished: prefix \d+ is the next to test/);
    const cont = await nvx(['bisect', '--replay-log', log, '--continue']);
    expect(cont.code).toBe(0);
    expect(cont.stdout).toMatch(/first bad prefix: 7 events; the first bad event is event 6/);
    expect(fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('prefix ')).map((l) => l.replace(/ ms=\d+/, ''))).toEqual(
      full.split('\n').filter((l) => l.startsWith('prefix ')).map((l) => l.replace(/ ms=\d+/, '')),
    );
    // a log of another trace is refused
    const other = await nvx(['bisect', AGREE, '--replay-log', log, '--rerun']);
    expect(other).toMatchObject({ code: 2, stderr: expect.stringMatching(/is not the trace the log was made with/) });
  });

  test('the prefix traces the command sees are the trace cut after n events, in the same form', async () => {
    const seen = p('seen');
    fs.mkdirSync(seen);
    const cmd = `cp "$NVX_TRACE" "${seen}/$NVX_PREFIX.nvx"; test "$NVX_PREFIX" -lt 5`;
    expect((await nvx(['bisect', '--run', cmd, L0_CHANGE])).stdout).toMatch(/first bad prefix: 5 events/);
    const whole = await readTraceFile(L0_CHANGE);
    for (const f of fs.readdirSync(seen)) {
      const n = Number(path.basename(f, '.nvx'));
      const t = await readTraceFile(path.join(seen, f));
      expect(t.header).toEqual(whole.header);
      expect(t.events).toEqual(whole.events.slice(0, n));
    }
  });
});
