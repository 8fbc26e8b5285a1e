/**
 * `nvx minimize <trace>`: the minimized trace (printed, or written whole
 * with -o), the report (events before and after, time), --emit-jest; a
 * trace with nothing to minimize, bad input; and a built `nvx minimize`
 * killed with SIGKILL leaves either no output or a whole one.
 */
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseProfile, registerPath } from '@nvx/emulator';
import { diffEvents, brokenMergeStickyPassthrough } from '@nvx/check';
import { TraceEvent, formatTextTrace, makeHeader, parseTextTrace, readTraceFile } from '@nvx/trace';
import { nvx } from './fixtures/nvx';

const root = path.resolve(__dirname, '..', '..', '..');
let dir: string;
let big: string;
const STICKY = `msr-bitmap=${brokenMergeStickyPassthrough.name}`;

/** The sticky-merge divergence after `noise` unrelated events on three other vCPUs. */
function noisyTrace(noise: number): string {
  const events: TraceEvent[] = [];
  const setup: TraceEvent[] = [
    { kind: 'l1.write', vcpu: 0, gpa: 0x1000n, size: 4, value: 0x11e57ed0n },
    { kind: 'l1.vmxon', vcpu: 0, gpa: 0x1000n },
    { kind: 'l1.write', vcpu: 0, gpa: 0x4000n, size: 4, value: 0x11e57ed0n },
    { kind: 'l1.vmptrld', vcpu: 0, gpa: 0x4000n },
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x4000, value: 0x16n }, // the must-be-1 control bits
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x400c, value: 0x36dfbn },
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x4012, value: 0x11fbn },
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x4002, value: 0x14006172n },
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x2004, value: 0x18000n },
    { kind: 'l1.vmlaunch', vcpu: 0 },
    { kind: 'l2.wrmsr', vcpu: 0, msr: 0xc0000100, value: 0x1234n },
    { kind: 'l2.vmcall', vcpu: 0 },
    { kind: 'l1.msr-bitmap', vcpu: 0, gpa: 0x18000n, msr: 0xc0000100, access: 'write', intercept: true },
  ];
  for (const e of setup) {
    events.push(e);
    for (let k = 0; k < noise / setup.length; k++) {
      const v = 1 + (events.length % 3);
      events.push(k % 2 ? { kind: 'l1.cpuid', vcpu: v, leaf: k, subleaf: 0, cpl: 0 } : { kind: 'l1.write', vcpu: v, gpa: 0x30000n + BigInt(8 * (events.length % 64)), size: 8, value: BigInt(events.length) * 0x10001n });
    }
  }
  events.push({ kind: 'l1.vmresume', vcpu: 0 }, { kind: 'l2.wrmsr', vcpu: 0, msr: 0xc0000100, value: 0xfeedn });
  return formatTextTrace(makeHeader({ vcpus: 4, memslots: [{ slot: 0, gfn: 0n, npages: 0x40, flags: 0 }] }, { generator: 'test' }), events);
}

beforeAll(() => {
  registerPath(brokenMergeStickyPassthrough);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-minimize-'));
  fs.writeFileSync(path.join(dir, 'noisy.nvx'), noisyTrace(200));
  big = path.join(dir, 'big.nvx');
  fs.writeFileSync(big, noisyTrace(30_000));
  fs.writeFileSync(
    path.join(dir, 'plugin.js'),
    `const { brokenMergeStickyPassthrough } = require('@nvx/check');\nmodule.exports = { ...brokenMergeStickyPassthrough, name: 'plugin-sticky' };\n`,
  );
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('nvx minimize', () => {
  it('writes the minimized trace with -o and reports events before and after, and the time', async () => {
    const out = path.join(dir, 'min.nvx');
    const r = await nvx(['minimize', path.join(dir, 'noisy.nvx'), '--profile', STICKY, '-o', out]);
    expect(r.stderr).toBe('');
    // exits as nvx diff on the trace would: a bug divergence
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^minimized .*noisy\.nvx: 22\d events \(22\d up to the divergence\) -> 11 events in [\d.]+ s \(\d+ candidates\)$/m);
    expect(r.stdout).toMatch(/bug on l2\.wrmsr at event 10: l2\.wrmsr MSR_FS_BASE 0x0: exit MSR_WRITE qual=0x0 vs ok/);
    const t = await readTraceFile(out);
    expect(t.events).toHaveLength(11);
    expect(t.header.config.vcpus).toBe(1);
    expect(t.header.provenance).toMatchObject({ 'minimized-from': 'noisy.nvx', minimized: expect.stringMatching(/^22\d -> 11 events$/), profile: STICKY, divergence: 'bug', contract: 'none' });
    expect(diffEvents(t.header, t.events, parseProfile('reference'), parseProfile(STICKY)).divergence?.index).toBe(10);
  });

  it('prints the trace on stdout and the report on stderr without -o; --json has both', async () => {
    const r = await nvx(['minimize', path.join(dir, 'noisy.nvx'), '--profile', STICKY]);
    expect(r.code).toBe(1);
    expect(parseTextTrace(r.stdout).events).toHaveLength(11);
    expect(r.stderr).toMatch(/^minimized .* -> 11 events/);
    const j = await nvx(['minimize', path.join(dir, 'noisy.nvx'), '--profile', STICKY, '--json']);
    const o = JSON.parse(j.stdout);
    expect(o).toMatchObject({ after: 11, kind: { verdict: 'bug', contract: null, event: 'l2.wrmsr' }, timedOut: false });
    expect(parseTextTrace(o.trace).events).toHaveLength(11);
  });

  it('--emit-jest writes a test that loads the plugin path and fails while the divergence exists', async () => {
    const test = path.join(dir, 'tests', 'sticky.test.ts');
    fs.mkdirSync(path.dirname(test));
    const r = await nvx(['minimize', path.join(dir, 'noisy.nvx'), '--path-module', path.join(dir, 'plugin.js'), '--profile', 'msr-bitmap=plugin-sticky', '-o', path.join(dir, 'min2.nvxt'), '--emit-jest', test]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/jest only runs \*\*\/test\/\*\*\/\*\.test\.ts under packages\/ and tools\//);
    expect(r.stdout).toContain(`jest test written to ${test}`);
    const src = fs.readFileSync(test, 'utf8');
    expect(src).toContain("await loadPathModule(require.resolve(\"../plugin.js\"));");
    expect(src).toContain('parseProfile("msr-bitmap=plugin-sticky")');
    expect(src).toMatch(/^import \{ parseProfile \} from '@nvx\/emulator';$/m);
    expect((await readTraceFile(path.join(dir, 'min2.nvxt'))).events).toHaveLength(11);
  });

  it('exits 2 when the profile does not diverge (nothing to minimize) and on bad input', async () => {
    const none = await nvx(['minimize', path.join(dir, 'noisy.nvx'), '--profile', 'msr-bitmap=merge']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/does not diverge from reference on this trace: nothing to minimize/);
    for (const args of [[path.join(dir, 'missing.nvx')], [path.join(dir, 'noisy.nvx'), '--profile', 'nope'], [path.join(dir, 'noisy.nvx'), '-o', path.join(dir, 'x.txt')], [path.join(dir, 'noisy.nvx'), '--time', 'later']]) {
      const r = await nvx(['minimize', ...args]);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
    }
  });

  it('killed with SIGKILL, leaves no output or a whole one (the built nvx, on a long trace)', async () => {
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-b', 'packages/cli'], { cwd: root, stdio: 'pipe' });
    const plugin = path.join(dir, 'plugin.js');
    for (const ms of [300, 1500, 4000]) {
      const out = path.join(dir, `killed-${ms}.nvx`);
      const child = spawn(process.execPath, [path.join(root, 'packages', 'cli', 'bin', 'nvx.js'), 'minimize', big, '--path-module', plugin, '--profile', 'msr-bitmap=plugin-sticky', '-o', out, '--time', '30s'], { stdio: 'ignore' });
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, sig) => resolve(sig)));
      await new Promise((r) => setTimeout(r, ms));
      child.kill('SIGKILL');
      const sig = await exited;
      if (fs.existsSync(out)) {
        const t = await readTraceFile(out);
        expect(t.warnings).toEqual([]);
        expect(t.events.length).toBeGreaterThan(0);
      } else expect(sig).toBe('SIGKILL');
      expect(fs.readdirSync(dir).filter((f) => f.startsWith(`killed-${ms}`) && !f.endsWith('.nvx'))).toEqual([]);
    }
  }, 60_000);
});
