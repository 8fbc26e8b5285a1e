/**
 * The differential property for the cpuid-fault area, with a fixed seed and
 * bounded runs (CPUID_PROPERTY_DEFAULTS):
 *
 *  - the generator only builds valid traces: every outcome under the
 *    reference is the one its own model of the area predicts;
 *  - `cpuid-fault=hardware`, `cpuid-fault=hardware-lazy` and `optimized`
 *    match `reference` event by event and in state;
 *  - each broken path of the area (fixtures/cpuid-fault.ts) is caught by
 *    that same default run, and `nvx diff` reports it on a scenario trace.
 */
import * as fs from 'fs';
import * as path from 'path';
import fc from 'fast-check';
import { run } from '@nvx/cli';
import { Replayer, initialState, parseProfile, registerPath } from '@nvx/emulator';
import { Expect, Outcome, TraceEvent, formatEvent, formatOutcome, formatTextTrace, outcomeMatches, parseTextTrace } from '@nvx/trace';
import { DivergenceFound } from '../src/arbitraries';
import { CPUID_PROPERTY_DEFAULTS, arbBuiltCpuidTrace, buildCpuidTrace, cpuidDifferentialProperty } from '../src/arbitraries-cpuid';
import { diffEvents } from '../src/diff';
import { BROKEN_PATHS } from '../src/fixtures';
import { CPUID_FAULT_BROKEN } from '../src/fixtures/cpuid-fault';

const SCENARIOS = path.resolve(__dirname, '..', '..', '..', 'traces', 'scenarios');

function check<T>(prop: fc.IProperty<[T]>, params: fc.Parameters<[T]> = {}): fc.RunDetails<[T]> {
  return fc.check(prop, { ...CPUID_PROPERTY_DEFAULTS, ...params }) as fc.RunDetails<[T]>;
}

function assertHolds<T>(what: string, prop: fc.IProperty<[T]>): void {
  const d = check(prop);
  if (d.failed) {
    const e = d.errorInstance;
    // eslint-disable-next-line no-console
    console.log(`${what}: failed with seed ${d.seed} (path ${d.counterexamplePath}) after ${d.numRuns} runs\n${e instanceof DivergenceFound ? e.message : String(e)}`);
  }
  expect(d.failed).toBe(false);
}

describe('the cpuid-fault generator', () => {
  it('builds only valid traces: every reference outcome is the one the builder predicts', () => {
    let events = 0;
    const kinds = new Set<string>();
    const outcomes = new Set<string>();
    const prop = fc.property(arbBuiltCpuidTrace(), (t) => {
      const p = parseProfile('reference');
      const r = new Replayer(initialState(t.header, p), p);
      t.events.forEach((e: TraceEvent, i: number) => {
        const o: Outcome = r.apply(e);
        events++;
        kinds.add(e.kind);
        outcomes.add(`${e.kind} ${o.k}`);
        if (!outcomeMatches(t.expected[i], o)) throw new Error(`event ${i} ${formatEvent(e)}: builder expects ${formatOutcome(t.expected[i] as Outcome)}, reference gives ${formatOutcome(o)}`);
      });
    });
    assertHolds('generator', prop);
    expect(events).toBeGreaterThan(CPUID_PROPERTY_DEFAULTS.numRuns * 10);
    // the mix the area needs: scheduling, host tasks, the thread's own faulting, guest MSR writes, CPUIDs at all CPLs, SMM, nesting
    for (const k of [
      'host.vcpu-load',
      'host.vcpu-put',
      'host.task-cpuid',
      'host.task-cpuid-fault',
      'host.vcpu-thread-cpuid-fault',
      'host.platform-info',
      'host.smi',
      'l1.rsm',
      'l1.wrmsr',
      'l1.rdmsr',
      'l1.cpuid',
      'l1.vmxon',
      'l1.vmptrld',
      'l1.vmlaunch',
      'l1.vmresume',
      'l2.cpuid',
      'l2.wrmsr',
      'l2.rdmsr',
      'l2.vmcall',
    ])
      expect(kinds).toContain(k);
    for (const o of ['l1.cpuid gp', 'l1.cpuid cpuid', 'l1.wrmsr gp', 'l2.cpuid gp', 'l2.cpuid exit', 'host.task-cpuid gp', 'host.task-cpuid cpuid', 'l2.wrmsr gp']) expect(outcomes).toContain(o);
  });

  it('is deterministic: the same choices give the same trace', () => {
    const o = { vcpus: 2, pcpus: 2, cpuidFaultHw: true, l2Architectural: false, nesting: true, maxEvents: 60 };
    const choices = fc.sample(fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat()), { minLength: 40, maxLength: 41 }), { seed: 3, numRuns: 1 })[0] as [number, number, number][];
    expect(buildCpuidTrace(choices, o).events).toEqual(buildCpuidTrace(choices, o).events);
    expect(buildCpuidTrace(choices, o).events.length).toBeLessThanOrEqual(60);
  });
});

describe('the differential property for cpuid-fault', () => {
  it.each(['cpuid-fault=hardware', 'cpuid-fault=hardware-lazy', 'optimized'])('%s matches reference', (spec) => {
    assertHolds(spec, cpuidDifferentialProperty(parseProfile(spec)));
  });

  it('the architectural order of L2 CPUIDs and a host without CPUID faulting are covered too', () => {
    for (const opts of [{ l2Architectural: true, nesting: true }, { cpuidFaultHw: false }]) {
      assertHolds(JSON.stringify(opts), cpuidDifferentialProperty(parseProfile('optimized'), opts));
      assertHolds(JSON.stringify(opts), cpuidDifferentialProperty(parseProfile('cpuid-fault=hardware'), opts));
    }
  });
});

describe('the broken cpuid-fault paths', () => {
  beforeAll(() => {
    for (const b of CPUID_FAULT_BROKEN) registerPath(b.path);
  });

  it('are at least three, all in BROKEN_PATHS', () => {
    expect(CPUID_FAULT_BROKEN.length).toBeGreaterThanOrEqual(3);
    for (const b of CPUID_FAULT_BROKEN) expect(BROKEN_PATHS.map((x) => x.path)).toContain(b.path);
  });

  it.each(CPUID_FAULT_BROKEN.map((b) => [b.path.name, b] as const))('%s is caught by the default property run', (_name, b) => {
    const d = check(cpuidDifferentialProperty(parseProfile(`cpuid-fault=${b.path.name}`)));
    expect(d.failed).toBe(true);
    const e = d.errorInstance as DivergenceFound;
    expect(e).toBeInstanceOf(DivergenceFound);
    expect(e.result.divergence!.verdict).toBe('bug');
    expect(e.result.divergence!.confirmed).toBe(true);
    expect(e.result.violations).toEqual([]);
    // eslint-disable-next-line no-console
    console.log(`cpuid-fault=${b.path.name}: caught after ${d.numRuns} of ${CPUID_PROPERTY_DEFAULTS.numRuns} runs (seed ${d.seed}), shrunk to ${e.trace.events.length} events; diverges at event ${e.result.divergence!.index}: ${formatEvent(e.result.divergence!.event)}`);
    // the shrunk counterexample still diverges when replayed from scratch
    const again = diffEvents(e.trace.header, e.trace.events, parseProfile('reference'), parseProfile(`cpuid-fault=${b.path.name}`));
    expect(again.divergence?.index).toBe(e.result.divergence!.index);
  });

  it.each(CPUID_FAULT_BROKEN.map((b) => [b.path.name, b] as const))('nvx diff reports %s as a bug on a cpuid scenario (exit 1)', async (_name, b) => {
    const files = fs.readdirSync(SCENARIOS).filter((f) => f.startsWith('cpuid-') && f.endsWith('.nvx')).sort();
    const profile = `cpuid-fault=${b.path.name}`;
    // the first scenario where the broken path diverges
    const file = files.find((f) => {
      const { header, events } = parseTextTrace(fs.readFileSync(path.join(SCENARIOS, f), 'utf8'), f);
      return diffEvents(header, events, parseProfile('reference'), parseProfile(profile)).divergence !== null;
    });
    expect(file).toBeDefined();
    const out: string[] = [];
    const code = await run(['diff', path.join(SCENARIOS, file!), '--profile', profile], {
      stdout: { write: (s: string) => (out.push(s), true) },
      stderr: { write: (s: string) => (out.push(s), true) },
      env: {},
    });
    expect(code).toBe(1);
    expect(out.join('')).toMatch(/DIVERGENCE \(bug\) at event \d+/);
    expect(out.join('')).toMatch(/no contract was broken before this event/);
  });

  it('each real path passes every cpuid scenario under nvx diff (exit 0)', async () => {
    const files = fs.readdirSync(SCENARIOS).filter((f) => f.startsWith('cpuid-') && f.endsWith('.nvx')).sort();
    expect(files.length).toBeGreaterThanOrEqual(6);
    for (const f of files) {
      for (const profile of ['cpuid-fault=hardware', 'cpuid-fault=hardware-lazy', 'optimized']) {
        const out: string[] = [];
        const code = await run(['diff', path.join(SCENARIOS, f), '--profile', profile], { stdout: { write: (s: string) => (out.push(s), true) }, stderr: { write: (s: string) => (out.push(s), true) }, env: {} });
        expect({ f, profile, code }).toEqual({ f, profile, code: 0 });
      }
    }
  });
});

describe('a generated trace is a valid text trace', () => {
  it('survives a round trip through the text form with its expectations', () => {
    const t = fc.sample(arbBuiltCpuidTrace({ nesting: true }), { seed: 9, numRuns: 1 })[0];
    const events = t.events.map((e, i) => ({ ...e, expect: t.expected[i] as Expect }) as TraceEvent);
    const back = parseTextTrace(formatTextTrace(t.header, events), 'generated');
    expect(back.events).toEqual(events);
    expect(back.header.config).toEqual(t.header.config);
  });
});
