/**
 * The checkpoint bisection finds the first event where two profiles'
 * observations differ: the same event as the exact lockstep diff (states
 * compared after every event) on every corpus trace that declares a
 * divergence, whatever the checkpoint spacing; a jump never replays more
 * than K events. Then the prefix bisection's search (git bisect's, with
 * skips) and its log.
 */
import * as path from 'path';
import { AREAS, MsrBitmapPath, Profile, parseProfile, registerPath } from '@nvx/emulator';
import { TraceEvent, TraceHeader, makeHeader, readTraceFile } from '@nvx/trace';
import { CheckpointedReplay, PrefixBisection, bisectEvents, bisectTraceFile, formatLog, parseLog, replayLog, verdictOfExit } from '../src/bisect';
import { declaredVerdict, listTraces } from '../src/corpus';
import { diffEvents } from '../src/diff';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const REF = parseProfile('reference');
const KS = [1, 2, 3, 7, 16, 1000];

/** Every (trace, profile) the corpus declares to diverge. */
async function declaredDivergences(): Promise<{ file: string; header: TraceHeader; events: TraceEvent[]; profile: string }[]> {
  const out = [];
  for (const file of listTraces([path.join(ROOT, 'traces', 'scenarios'), path.join(ROOT, 'traces', 'regressions')])) {
    const { header, events } = await readTraceFile(file);
    for (const profile of declaredVerdict(header).diverges) out.push({ file: path.relative(ROOT, file), header, events, profile });
  }
  return out;
}

describe('bisectEvents on the corpus', () => {
  test('every trace that declares a divergence: the exact lockstep index, for every K', async () => {
    const cases = await declaredDivergences();
    expect(cases.length).toBeGreaterThanOrEqual(5);
    for (const c of cases) {
      const other = parseProfile(c.profile);
      const exact = diffEvents(c.header, c.events, REF, other, { checkpointEvery: 1 }).divergence;
      expect(exact).not.toBeNull();
      for (const k of KS) {
        const r = bisectEvents(c.header, c.events, REF, other, { checkpointEvery: k });
        const d = r.divergence;
        const where = `${c.file} under ${c.profile}, K=${k}`;
        expect({ where, index: d?.index, kind: d?.kind, verdict: d?.verdict, contract: d?.contract?.contract }).toEqual({
          where,
          index: exact!.index,
          kind: exact!.kind,
          verdict: exact!.verdict,
          contract: exact!.contract?.contract,
        });
        expect(d!.confirmed).toBe(true);
        expect(r.stats.maxJumpSteps).toBeLessThanOrEqual(k);
        if (d!.kind === 'state') expect(d!.archDiff.length).toBeGreaterThan(0);
      }
    }
  });

  test('streamed from the file (bisectTraceFile): the same result as on the events in memory', async () => {
    const cases = await declaredDivergences();
    for (const c of [...cases, { ...cases[0], profile: 'reference' }]) {
      const other = parseProfile(c.profile);
      for (const k of [1, 7, 1000]) {
        const inMemory = bisectEvents(c.header, c.events, REF, other, { checkpointEvery: k });
        const { header, warnings, ...streamed } = await bisectTraceFile(path.join(ROOT, c.file), REF, other, { checkpointEvery: k });
        expect({ where: `${c.file} under ${c.profile}, K=${k}`, ...streamed }).toEqual({ where: `${c.file} under ${c.profile}, K=${k}`, ...inMemory });
        expect(header).toEqual(c.header);
        expect(warnings).toEqual([]);
      }
    }
  });

  test('a trace the profiles agree on: no divergence, every state compared at the checkpoints', async () => {
    const { header, events } = await readTraceFile(path.join(ROOT, 'traces', 'scenarios', 'l0-intercept-change-in-l2.nvx'));
    const r = bisectEvents(header, events, REF, parseProfile('optimized'), { checkpointEvery: 4 });
    expect(r.divergence).toBeNull();
    expect(r.stats.stretch).toBeNull();
    expect(r.stats.stateComparisons).toBe(Math.ceil(events.length / 4));
    expect(r.stats.probes).toBe(0);
  });
});

/** L2 spins in a CPUID loop; at `at`, L2 reads an MSR L0 intercepts in vmcs01 while L1 passes it through. */
function longTrace(n: number, at: number): TraceEvent[] {
  const ev: TraceEvent[] = [
    { kind: 'l1.write', vcpu: 0, gpa: 0x1000n, size: 4, value: 0x11e57ed0n },
    { kind: 'l1.vmxon', vcpu: 0, gpa: 0x1000n },
    { kind: 'l1.write', vcpu: 0, gpa: 0x2000n, size: 4, value: 0x11e57ed0n },
    { kind: 'l1.vmptrld', vcpu: 0, gpa: 0x2000n },
    // the must-be-1 control bits (vmx_control_verify), an even number of writes so L2's CPUIDs stay on odd indices
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x4000, value: 0x16n },
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x400c, value: 0x36dfbn },
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x4012, value: 0x11fbn },
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x401e, value: 0n },
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x4002, value: 0x14006172n },
    { kind: 'l1.vmwrite', vcpu: 0, field: 0x2004, value: 0x3000n },
    { kind: 'l1.vmlaunch', vcpu: 0 },
  ];
  while (ev.length < n) {
    if (ev.length === at) ev.push({ kind: 'l2.rdmsr', vcpu: 0, msr: 0x48 }); // IA32_SPEC_CTRL
    else ev.push(ev.length % 2 ? { kind: 'l2.cpuid', vcpu: 0, leaf: 1, subleaf: 0, cpl: 0 } : { kind: 'l1.vmresume', vcpu: 0 });
  }
  return ev;
}

/** vmcs02 passes every MSR through: L2 reads L0's register for an MSR vmcs01 intercepts. */
const merge = AREAS['msr-bitmap'].paths.get('merge') as MsrBitmapPath;
const openBitmap: MsrBitmapPath = {
  ...merge,
  name: 'test-bisect-open-bitmap',
  summary: 'test: vmcs02 passes every MSR through',
  prepare(ctx, w, v) {
    merge.prepare(ctx, w, v);
    v.nested.vmcs02MsrBitmap = new Uint8Array(v.nested.vmcs02MsrBitmap.length);
    return true;
  },
};

describe('checkpoints and jumps', () => {
  let open: Profile;
  beforeAll(() => {
    registerPath(openBitmap);
    open = parseProfile(`msr-bitmap=${openBitmap.name}`);
  });

  test('seek(n) replays from the last checkpoint, at most the events held since it, to the same state as a straight replay; nothing before the checkpoint', () => {
    const events = longTrace(600, 10_000);
    const header = makeHeader({ vcpus: 1 });
    const k = 50;
    const nested = (cr: CheckpointedReplay) => JSON.stringify(cr.replayer.peek().vcpus[0].nested, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
    const cr = new CheckpointedReplay(header, REF);
    const straight = new CheckpointedReplay(header, REF);
    for (const e of events.slice(0, 250)) straight.push(e);
    for (let i = 0; i < 230; i++) {
      cr.push(events[i]);
      if ((i + 1) % k === 0) cr.checkpoint();
    }
    expect([cr.at, cr.holding, cr.taken, cr.maxHeld]).toEqual([200, 30, 5, k]);
    for (const n of [229, 200, 215, 216, 201, 230]) {
      const before = cr.steps;
      cr.seek(n);
      expect(cr.steps - before).toBeLessThanOrEqual(n - 200);
      expect(cr.index).toBe(n);
      // the straight replay holds every event and never took a checkpoint: it replays from the start
      straight.seek(n);
      expect(nested(cr)).toBe(nested(straight));
    }
    expect(cr.heldEvent(215)).toBe(events[215]);
    expect(() => cr.heldEvent(199)).toThrow(RangeError);
    expect(() => cr.seek(199)).toThrow(RangeError);
    expect(() => cr.seek(231)).toThrow(RangeError);
    cr.seek(210);
    expect(() => cr.push(events[230])).toThrow(RangeError);
    expect(() => cr.checkpoint()).toThrow(RangeError);
    cr.seek(230);
    cr.push(events[230]);
    expect(cr.end).toBe(231);
  });

  test('the memory the bisection holds does not grow with the trace: one snapshot and at most K events per profile', () => {
    const header = makeHeader({ vcpus: 1 });
    for (const n of [1_000, 5_000]) {
      const events = longTrace(n, n); // the profiles agree: the forward pass reads every event
      for (const k of [7, 1000]) {
        const r = bisectEvents(header, events, REF, open, { checkpointEvery: k });
        expect(r.divergence).toBeNull();
        expect(r.stats.forwardSteps).toBe(n);
        expect(r.stats.checkpoints).toBe(1);
        expect(r.stats.maxHeldEvents).toBe(Math.min(k, n));
        expect(r.stats.stateComparisons).toBe(Math.ceil(n / k));
      }
    }
  });

  test('a long trace: the divergence deep inside, found with few jumps of at most K events', () => {
    const events = longTrace(20_000, 17_321);
    const header = makeHeader({ vcpus: 1 });
    expect(diffEvents(header, events, REF, open).divergence!.index).toBe(17_321);
    for (const k of [100, 1000, 4096]) {
      const r = bisectEvents(header, events, REF, open, { checkpointEvery: k });
      expect(r.divergence!.index).toBe(17_321);
      expect(r.divergence!.kind).toBe('outcome');
      expect(r.divergence!.verdict).toBe('bug');
      expect(r.divergence!.confirmed).toBe(true);
      expect(r.divergence!.explain.other[`msr-bitmap/${openBitmap.name}: vmcs01 read bit`]).toBe('1');
      expect(r.stats.maxJumpSteps).toBeLessThanOrEqual(k);
      expect(r.stats.probes).toBeLessThanOrEqual(Math.ceil(Math.log2(k)) + 1);
      expect(r.stats.checkpoints).toBe(1);
      expect(r.stats.maxHeldEvents).toBeLessThanOrEqual(k);
      expect(r.stats.forwardSteps).toBe(17_322);
    }
  });
});

describe('PrefixBisection (git bisect over prefixes)', () => {
  /** Drive the search with a judge; returns the conclusion and the prefixes tested. */
  function drive(total: number, judge: (p: number) => 'good' | 'bad' | 'skip') {
    const b = new PrefixBisection(total);
    const tested: number[] = [];
    for (let p = b.next(); p !== null; p = b.next()) {
      tested.push(p);
      b.record({ prefix: p, verdict: judge(p) });
    }
    return { c: b.conclusion(), tested, error: b.endsError(), b };
  }

  test('tests the ends first, then halves: the first bad prefix in about log2(N) steps', () => {
    for (const total of [1, 2, 3, 10, 100, 1000]) {
      for (const firstBad of new Set([1, Math.ceil(total / 3), total])) {
        if (firstBad < 1 || firstBad > total) continue;
        const { c, tested, error } = drive(total, (p) => (p >= firstBad ? 'bad' : 'good'));
        expect(error).toBeUndefined();
        expect(c).toEqual({ kind: 'found', firstBad });
        expect(tested.slice(0, 2)).toEqual([0, total]);
        expect(tested.length).toBeLessThanOrEqual(2 + Math.ceil(Math.log2(total + 1)));
      }
    }
  });

  test('skips: another prefix near the middle is tried; only skipped ones left gives the candidates', () => {
    // skips around the answer, but the answer and the prefix before it can be judged: still found
    const a = drive(100, (p) => (p >= 48 && p <= 62 && p !== 56 && p !== 57 ? 'skip' : p >= 57 ? 'bad' : 'good'));
    expect(a.c).toEqual({ kind: 'found', firstBad: 57 });
    expect(a.tested.filter((p) => a.b.skipped.has(p)).length).toBeGreaterThan(0);
    // the answer and its neighbours skipped: ambiguous between the last good and the first bad
    const b = drive(100, (p) => (p >= 55 && p <= 58 ? 'skip' : p >= 57 ? 'bad' : 'good'));
    expect(b.c).toEqual({ kind: 'ambiguous', candidates: [55, 56, 57, 58, 59] });
    expect(new Set(b.tested).size).toBe(b.tested.length); // nothing tested twice
  });

  test('the ends must be good and bad', () => {
    expect(drive(10, () => 'bad').error).toMatch(/empty prefix .* already bad/);
    expect(drive(10, () => 'good').error).toMatch(/whole trace \(10 events\) is good/);
    expect(drive(10, (p) => (p === 0 ? 'skip' : 'bad')).error).toMatch(/skipped the empty prefix/);
    expect(drive(10, (p) => (p === 10 ? 'skip' : 'good')).error).toMatch(/skipped the whole trace/);
    const b = new PrefixBisection(10);
    b.record({ prefix: 0, verdict: 'good' });
    b.record({ prefix: 10, verdict: 'bad' });
    b.record({ prefix: 3, verdict: 'bad' });
    b.record({ prefix: 6, verdict: 'good' });
    expect(b.endsError()).toMatch(/not monotonic/);
  });

  test('exit statuses as git bisect run reads them', () => {
    expect([0, 1, 2, 124, 125, 126, 127, 128, 255, null].map(verdictOfExit)).toEqual(['good', 'bad', 'bad', 'bad', 'skip', 'bad', 'bad', 'abort', 'abort', 'abort']);
  });

  test('the log: written, read back, and replayed to the same conclusion', () => {
    const { b } = drive(40, (p) => (p === 20 ? 'skip' : p >= 23 ? 'bad' : 'good'));
    const log = { trace: 'traces/x y.nvx', sha256: 'ab'.repeat(32), events: 40, command: `nvx run -q --profile 'msr-bitmap=merge' {}`, steps: b.steps.map((s) => ({ ...s, exit: s.verdict === 'good' ? 0 : s.verdict === 'skip' ? 125 : 1, ms: 7 })) };
    const text = formatLog(log, (p) => `(event ${p - 1})`);
    expect(text.split('\n')[0]).toBe('# nvx bisect log 1');
    expect(text).toMatch(/^prefix 0 good exit=0 ms=7$/m);
    expect(text).toMatch(/^prefix 20 skip exit=125 ms=7$/m);
    expect(text).toMatch(/^# first bad prefix: 23 events; first bad event: 22 \(event 22\)$/m);
    const back = parseLog(text, 'x.log');
    expect(back).toEqual(log);
    expect(replayLog(back).conclusion).toEqual({ kind: 'found', firstBad: 23 });
    // an unfinished log says what comes next
    expect(replayLog({ ...back, steps: back.steps.slice(0, 3) }).conclusion.kind).toBe('open');
    expect(() => parseLog(text.replace('prefix 20 skip', 'prefix 20 maybe'), 'x.log')).toThrow(/x\.log, line \d+: expected 'prefix <n> good\|bad\|skip/);
    expect(() => parseLog('hello\n', 'x.log')).toThrow(/not an nvx bisect log/);
    expect(() => parseLog(text.replace(/^command .*$/m, ''), 'x.log')).toThrow(/no 'command' line/);
  });
});
