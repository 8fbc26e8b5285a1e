/**
 * `minimizeTrace`: ddmin over events, then values and the header, keeping
 * every candidate valid and the same kind of divergence; the jest test it
 * writes fails while the divergence exists; the fast state comparison the
 * screen uses agrees with the architectural hashes.
 */
import * as path from 'path';
import fc from 'fast-check';
import * as ts from 'typescript';
import { Replayer, archHash, initialState, parseProfile, registerPath } from '@nvx/emulator';
import { TraceEvent, formatEvent, parseTextTrace, readTraceFile } from '@nvx/trace';
import { diffEvents } from '../src/diff';
import { BROKEN_PATHS, brokenMergeStickyPassthrough, brokenTrackedIgnoresAddress } from '../src/fixtures';
import { NoDivergence, divergenceKind, findDivergence, jestTest, minimizeTrace, sameArchState, screenProfiles } from '../src/minimize';
import { arbMixedTrace } from '../src/mix';

const reference = parseProfile('reference');
for (const b of BROKEN_PATHS) registerPath(b.path);
const sticky = parseProfile(`msr-bitmap=${brokenMergeStickyPassthrough.name}`);
const tracked = parseProfile(`msr-bitmap=${brokenTrackedIgnoresAddress.name}`);

/** A generated trace on which `p` diverges (the first the seed gives). */
function divergingTrace(p: typeof sticky, seed: number) {
  const d = fc.check(fc.property(arbMixedTrace(), (t) => !screenProfiles(t.header, t.events, reference, [p])[0]), { seed, numRuns: 1000, endOnFailure: true });
  if (!d.failed) throw new Error('no diverging trace in 1000 runs');
  return d.counterexample![0];
}

describe('minimizeTrace', () => {
  const t = divergingTrace(sticky, 11);
  const first = findDivergence(t.header, t.events, reference, sticky)!;
  const m = minimizeTrace(t.header, t.events, reference, sticky, { timeLimitMs: 15_000 });

  it('keeps the kind of divergence and shrinks the trace to a few events', () => {
    expect(m.kind).toEqual(divergenceKind(first.divergence!));
    expect(m.after).toBeLessThanOrEqual(14);
    expect(m.after).toBeLessThan(m.beforeCut);
    expect(m.beforeCut).toBeLessThanOrEqual(m.before);
    // the result diverges the same way for a plain diff (and under a replay from scratch)
    const d = diffEvents(m.header, m.events, reference, sticky).divergence!;
    expect(divergenceKind(d)).toEqual(m.kind);
    expect(d.confirmed).toBe(true);
    expect(d.index).toBe(m.events.length - 1);
    expect(m.timedOut).toBe(false);
    // eslint-disable-next-line no-console
    console.log(`minimized ${m.before} -> ${m.after} events in ${m.ms} ms (${m.tests} candidates):\n  ${m.events.map(formatEvent).join('\n  ')}`);
  });

  it('leaves a valid trace: the reference ignores none of its events', () => {
    const r = Replayer.fromHeader(m.header, reference);
    for (const e of m.events) expect(r.apply(e).k).not.toBe('ignored');
  });

  it('is deterministic', () => {
    const again = minimizeTrace(t.header, t.events, reference, sticky, { timeLimitMs: 15_000 });
    expect(again.events.map(formatEvent)).toEqual(m.events.map(formatEvent));
  });

  it('simplifies values: 64-bit noise becomes 0, expects are dropped, vCPUs are renumbered', () => {
    // the divergence on vCPU 2 of 3, with noisy values and expects
    const text = `nvx-trace 1
config vcpus=3 evmcs=true
memslot 0 gfn=0x0 npages=0x40 flags=0
memslot 5 gfn=0x100 npages=0x10 flags=0
events
@2 l1.write 0x1000 4 0x11e57ed0
@2 l1.vmxon 0x1000                                    expect ok
@1 l1.cpuid 0x1 0x0 0
@2 l1.write 0x4000 4 0x11e57ed0
@2 l1.vmptrld 0x4000                                  expect ok
@2 l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x14006172
@2 l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16
@2 l1.vmwrite VM_EXIT_CONTROLS 0x36dfb
@2 l1.vmwrite VM_ENTRY_CONTROLS 0x11fb
@2 l1.vmwrite MSR_BITMAP 0x18000
@2 l1.vmwrite GUEST_RIP 0xffffffff81000000
@2 l1.vmlaunch                                        expect entered
@2 l2.wrmsr MSR_FS_BASE 0xdeadbeefcafe
@2 l2.vmcall                                          expect exit VMCALL
@2 l1.msr-bitmap 0x18000 MSR_FS_BASE write true
@2 l1.vmresume
@2 l2.wrmsr MSR_FS_BASE 0xffffffffffffffff
`;
    const { header, events } = parseTextTrace(text);
    const r = minimizeTrace(header, events, reference, sticky);
    expect(r.kind).toEqual({ verdict: 'bug', contract: null, event: 'l2.wrmsr' });
    expect(r.header.config.vcpus).toBe(1);
    expect(r.header.config.memslots.map((s) => s.slot)).toEqual([0]);
    expect(r.events.some((e) => e.expect)).toBe(false);
    const last = r.events[r.events.length - 1] as Extract<TraceEvent, { kind: 'l2.wrmsr' }>;
    expect(last.value).toBe(0n);
    expect(r.events.map(formatEvent)).not.toContain('l1.cpuid 0x1 0x0 0');
    // set-up (4), controls (5: the must-be-1 bits and the bitmap), entry, exit, the intercept, entry, the write
    expect(r.events.length).toBeLessThanOrEqual(14);
  });

  it('says so when there is nothing to minimize', () => {
    const { header, events } = parseTextTrace('nvx-trace 1\nmemslot 0 gfn=0x0 npages=0x40 flags=0\nevents\nl1.cpuid 0x1 0x0 0\n');
    expect(() => minimizeTrace(header, events, reference, sticky)).toThrow(NoDivergence);
  });

  it('stops at its time limit with the best trace so far, still diverging the same way', () => {
    const u = divergingTrace(tracked, 14);
    const quick = minimizeTrace(u.header, u.events, reference, tracked, { timeLimitMs: 1 });
    expect(quick.timedOut).toBe(true);
    expect(divergenceKind(diffEvents(quick.header, quick.events, reference, tracked).divergence!)).toEqual(quick.kind);
  });

  it('keeps a permitted divergence permitted, by the same contract', async () => {
    const file = path.resolve(__dirname, '..', '..', '..', 'traces', 'scenarios', 'evmcs-broken-contract.nvx');
    const { header, events } = await readTraceFile(file);
    const optimized = parseProfile('optimized');
    const before = findDivergence(header, events, reference, optimized)!;
    expect(before.divergence!.verdict).toBe('permitted');
    const r = minimizeTrace(header, events, reference, optimized);
    expect(r.kind).toEqual(divergenceKind(before.divergence!));
    expect(r.result.divergence!.contract?.contract).toBe(before.divergence!.contract?.contract);
    expect(r.after).toBeLessThanOrEqual(events.length);
  });
});

describe('the jest test minimize writes', () => {
  const { header, events } = parseTextTrace(`nvx-trace 1
memslot 0 gfn=0x0 npages=0x40 flags=0
events
l1.write 0x1000 4 0x11e57ed0
l1.vmxon 0x1000
l1.write 0x4000 4 0x11e57ed0
l1.vmptrld 0x4000
l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x14006172
l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x16
l1.vmwrite VM_EXIT_CONTROLS 0x36dfb
l1.vmwrite VM_ENTRY_CONTROLS 0x11fb
l1.vmwrite MSR_BITMAP 0x18000
l1.vmlaunch
l2.wrmsr MSR_FS_BASE 0x0
l2.vmcall
l1.msr-bitmap 0x18000 MSR_FS_BASE write true
l1.vmresume
l2.wrmsr MSR_FS_BASE 0x0
`);

  /** Transpile and run the emitted test with a minimal test/expect; resolves to the error it fails with, or null. */
  function runEmitted(source: string): Error | null {
    const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } }).outputText;
    let body: (() => void) | undefined;
    const fakeTest = (_name: string, fn: () => void) => (body = fn);
    const fakeExpect = (v: unknown) => ({
      toBe: (w: unknown) => {
        if (v !== w) throw new Error(`expected ${String(w)}, got ${String(v)}`);
      },
    });
    new Function('require', 'test', 'expect', 'beforeAll', 'exports', js)(require, fakeTest, fakeExpect, () => undefined, {});
    try {
      body!();
      return null;
    } catch (e) {
      return e as Error;
    }
  }

  it('fails while the divergence exists, passes where there is none', () => {
    const failing = runEmitted(jestTest(header, events, { base: 'reference', profile: sticky.name }));
    expect(failing?.message).toMatch(/event 14 \(l2\.wrmsr MSR_FS_BASE 0x0\): exit MSR_WRITE .* vs ok, bug/);
    expect(runEmitted(jestTest(header, events, { base: 'reference', profile: 'msr-bitmap=merge' }))).toBeNull();
  });

  it('imports from @nvx/ packages, and loads plugin paths it is given', () => {
    const src = jestTest(header, events, { base: 'reference', profile: sticky.name, pathModules: ['./my-path.ts'], description: 'two lines\nof context' });
    expect(src).toMatch(/from '@nvx\/emulator'/);
    expect(src).toMatch(/import \{ diffEvents, loadPathModule \} from '@nvx\/check'/);
    expect(src).toContain('await loadPathModule(require.resolve("./my-path.ts"))');
    expect(src).toContain(' * of context');
  });
});

describe('the fast state comparison', () => {
  it('agrees with archHash on states of every profile along mixed traces', () => {
    const profiles = ['reference', 'optimized', 'guest-pages=kvm-map', ...BROKEN_PATHS.map((b) => `${b.path.area}=${b.path.name}`)].map(parseProfile);
    let differing = 0;
    let compared = 0;
    for (const t of fc.sample(arbMixedTrace(), { seed: 0x99, numRuns: 12 })) {
      const rs = profiles.map((p) => new Replayer(initialState(t.header, p), p));
      t.events.forEach((e, i) => {
        for (const r of rs) r.apply(e);
        if (i % 4) return;
        const h0 = archHash(rs[0].peek());
        for (let j = 1; j < rs.length; j++) {
          const same = archHash(rs[j].peek()) === h0;
          compared++;
          if (!same) differing++;
          expect(sameArchState(rs[0].peek(), rs[j].peek())).toBe(same);
        }
      });
    }
    expect(compared).toBeGreaterThan(2000);
    expect(differing).toBeGreaterThan(20);
  });

  it('the screen finds the first divergence diffEvents finds, comparing states after every event', () => {
    const traces = fc.sample(arbMixedTrace(), { seed: 0x77, numRuns: 6 });
    for (const b of BROKEN_PATHS.filter((_, i) => i % 3 === 0)) {
      const p = parseProfile(`${b.path.area}=${b.path.name}`);
      for (const t of traces) {
        const [h] = screenProfiles(t.header, t.events, reference, [p], { stateAt: 'every' });
        const d = diffEvents(t.header, t.events, reference, p, { checkpointEvery: 1 }).divergence;
        expect(h?.index ?? null).toBe(d?.index ?? null);
      }
    }
  });
});
