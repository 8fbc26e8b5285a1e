/**
 * The guest-pages area under the checker (seed 003):
 *
 *  - the generator builds only valid, contract-keeping traces that mix
 *    memslot changes, migrations and zaps with nested entries, exits and L2
 *    accesses on 1-4 vCPUs;
 *  - pfncache, pfncache-ctx (alone) and `optimized` match `reference` on them
 *    (fixed seed, bounded runs), while kvm-map's divergences show up;
 *  - every broken guest-pages fixture is caught by that same default run;
 *  - the nested-context counters follow N x (S - 1) reuses for N <= 8 per
 *    vCPU, and recycling beyond;
 *  - the memslot_perf_test-shaped workload counts what each path maps;
 *  - the kept kvm-map findings in traces/regressions give their declared
 *    verdicts.
 */
import * as path from 'path';
import fc from 'fast-check';
import { AREAS, Replayer, initialState, parseProfile, registerPath } from '@nvx/emulator';
import { readTraceFile } from '@nvx/trace';
import { DivergenceFound } from '../src/arbitraries';
import { PAGES_PROPERTY_DEFAULTS, arbPagesTrace, describePagesTrace, pagesDifferentialProperty } from '../src/arbitraries-pages';
import { ContractMonitor } from '../src/contracts';
import { corpusProfiles, judge, listTraces } from '../src/corpus';
import { diffEvents } from '../src/diff';
import { BROKEN_PATHS, GUEST_PAGES_BROKEN } from '../src/fixtures';
import { MEMSLOT_PERF_PHASES, expectedContextCounters, l2SwitchWorkload, memslotPerfCosts, memslotPerfShape } from '../src/workloads-pages';

/** Run a property; on failure print the seed and the trace, then fail. */
function assertProperty<T>(what: string, prop: fc.IPropertyWithHooks<[T]>, params: fc.Parameters<[T]> = {}): void {
  const d = fc.check(prop, { ...PAGES_PROPERTY_DEFAULTS, ...params }) as fc.RunDetails<[T]>;
  if (d.failed) {
    const e = d.errorInstance;
    // eslint-disable-next-line no-console
    console.log(`${what}: failed with seed ${d.seed} (path ${d.counterexamplePath}) after ${d.numRuns} runs\n${e instanceof DivergenceFound ? e.report : String(e)}`);
  }
  expect(d.failed).toBe(false);
}

describe('the guest-pages generator', () => {
  it('builds only valid, contract-keeping traces that reach L2 and move memory under it', () => {
    const seen = { entered: 0, l2: 0, migrate: 0, zap: 0, memslot: 0, posted: 0, vcpus: new Set<number>(), evmcs: 0 };
    const prop = fc.property(arbPagesTrace(), (t) => {
      const r = Replayer.fromHeader(t.header, parseProfile('reference'));
      const monitor = new ContractMonitor();
      t.events.forEach((e, i) => {
        monitor.observe(r.peek(), e, i);
        const o = r.apply(e);
        if (o.k === 'ignored') throw new Error(`event ${i} is not valid: ${o.why}\n${describePagesTrace(t)}`);
        if (o.k === 'entered') seen.entered++;
      });
      expect(monitor.violations).toEqual([]);
      seen.vcpus.add(t.header.config.vcpus);
      if (t.header.config.evmcs) seen.evmcs++;
      for (const e of t.events) {
        if (e.kind.startsWith('l2.')) seen.l2++;
        if (e.kind === 'host.page-migrate') seen.migrate++;
        if (e.kind === 'host.page-zap') seen.zap++;
        if (e.kind.startsWith('host.memslot-')) seen.memslot++;
        if (e.kind === 'l1.posted-intr') seen.posted++;
      }
    });
    assertProperty('generator validity', prop);
    const n = PAGES_PROPERTY_DEFAULTS.numRuns;
    expect(seen.entered).toBeGreaterThan(n);
    expect(seen.l2).toBeGreaterThan(n);
    expect(seen.migrate).toBeGreaterThan(n);
    expect(seen.memslot).toBeGreaterThan(n);
    expect(seen.zap).toBeGreaterThan(n / 10);
    expect(seen.posted).toBeGreaterThan(n / 10);
    expect(seen.evmcs).toBeGreaterThan(n / 10);
    expect([...seen.vcpus].sort()).toEqual([1, 2, 3, 4]);
  });

  it('is deterministic for a seed', () => {
    const a = fc.sample(arbPagesTrace(), { seed: 11, numRuns: 4 });
    const b = fc.sample(arbPagesTrace(), { seed: 11, numRuns: 4 });
    expect(a.map((t) => t.events)).toEqual(b.map((t) => t.events));
  });
});

describe('the differential property on guest-pages traces', () => {
  it.each(['guest-pages=pfncache', 'guest-pages=pfncache-ctx', 'optimized'])('%s never diverges from reference', (spec) => {
    assertProperty(spec, pagesDifferentialProperty(parseProfile(spec)));
  });

  it('kvm-map (today\'s KVM) does diverge on them: the findings seed 003 describes', () => {
    const kvmMap = parseProfile('guest-pages=kvm-map');
    const reference = parseProfile('reference');
    let diverging = 0;
    for (const t of fc.sample(arbPagesTrace(), { seed: PAGES_PROPERTY_DEFAULTS.seed, numRuns: 60 })) {
      const d = diffEvents(t.header, t.events, reference, kvmMap).divergence;
      if (d) {
        diverging++;
        expect(d.verdict).toBe('bug'); // no contract excuses it
      }
    }
    expect(diverging).toBeGreaterThan(3);
  });
});

describe('broken guest-pages paths are caught by the default property run', () => {
  it('there are at least three, all in BROKEN_PATHS, all named broken-*', () => {
    expect(GUEST_PAGES_BROKEN.length).toBeGreaterThanOrEqual(3);
    for (const b of GUEST_PAGES_BROKEN) {
      expect(b.path.name).toMatch(/^broken-/);
      expect(b.path.area).toBe('guest-pages');
      expect(BROKEN_PATHS.map((x) => x.path)).toContain(b.path);
    }
  });

  it.each(GUEST_PAGES_BROKEN.map((b) => [b.path.name, b] as const))('%s', (_name, b) => {
    registerPath(b.path);
    const spec = `guest-pages=${b.path.name}`;
    // the same generator, seed and number of runs as the property above; no shrinking (time)
    const d = fc.check(pagesDifferentialProperty(parseProfile(spec)), { ...PAGES_PROPERTY_DEFAULTS, endOnFailure: true }) as fc.RunDetails<[unknown]>;
    expect(d.failed).toBe(true);
    const e = d.errorInstance as DivergenceFound;
    expect(e).toBeInstanceOf(DivergenceFound);
    expect(e.result.divergence!.verdict).toBe('bug');
    expect(e.result.divergence!.confirmed).toBe(true);
    expect(e.result.violations).toEqual([]);
  });
});

describe('nested contexts: an L2 switched among N vmcs12s on one L1 vCPU for S rounds', () => {
  const run = (n: number, s: number, opts: Parameters<typeof l2SwitchWorkload>[2] = {}) => {
    const wl = l2SwitchWorkload(n, s, opts);
    const p = parseProfile('guest-pages=pfncache-ctx');
    const r = new Replayer(initialState(wl.header, p), p);
    const kinds = wl.events.map((e) => r.apply(e).k);
    expect(kinds.filter((k) => k === 'entered').length).toBe(n * s);
    expect(kinds.filter((k) => k === 'exit').length).toBe(n * s);
    return r.cost;
  };

  it.each([
    [2, 5],
    [3, 3],
    [5, 2],
    [8, 4],
  ])('N=%i, S=%i: N x (S - 1) reuses, no recycling', (n, s) => {
    const c = run(n, s);
    expect({ reuse: c.nestedContextReuse, recycle: c.nestedContextRecycle }).toEqual({ reuse: n * (s - 1), recycle: 0 });
    expect(expectedContextCounters(n, s)).toEqual({ reuse: n * (s - 1), recycle: 0 });
  });

  it.each([
    [9, 3],
    [12, 2],
  ])('N=%i, S=%i: beyond 8 per vCPU the LRU context is recycled at every load', (n, s) => {
    const c = run(n, s);
    expect({ reuse: c.nestedContextReuse, recycle: c.nestedContextRecycle }).toEqual(expectedContextCounters(n, s));
    expect(c.nestedContextRecycle).toBe(n * s - 8);
  });

  it('two vCPUs hold 16 contexts; switching with VMCLEAR reuses too (even N=1)', () => {
    const c = run(12, 3, { vcpus: 2 });
    expect([c.nestedContextReuse, c.nestedContextRecycle]).toEqual([24, 0]);
    const one = run(1, 4, { vmclear: true });
    expect([one.nestedContextReuse, one.nestedContextRecycle]).toEqual([3, 0]);
  });

  it('the scenario pages-l2-switch-contexts.nvx (N=3, S=3): 6 reuses, no recycling', async () => {
    const file = path.resolve(__dirname, '..', '..', '..', 'traces', 'scenarios', 'pages-l2-switch-contexts.nvx');
    const { header, events } = await readTraceFile(file);
    for (const spec of ['guest-pages=pfncache-ctx', 'optimized']) {
      const p = parseProfile(spec);
      const r = new Replayer(initialState(header, p), p);
      for (const e of events) r.apply(e);
      expect([r.cost.nestedContextReuse, r.cost.nestedContextRecycle]).toEqual([3 * 2, 0]);
    }
  });

  it('every guest-pages path sees the same L2s (no divergence), pfncache-ctx maps each page once', () => {
    const wl = l2SwitchWorkload(4, 3);
    for (const spec of ['guest-pages=kvm-map', 'guest-pages=pfncache', 'guest-pages=pfncache-ctx']) {
      expect(diffEvents(wl.header, wl.events, parseProfile('reference'), parseProfile(spec)).divergence).toBeNull();
    }
    const p = parseProfile('guest-pages=pfncache-ctx');
    const r = new Replayer(initialState(wl.header, p), p);
    for (const e of wl.events) r.apply(e);
    expect(r.cost.memremaps).toBe(4 * 3); // APIC-access, virtual-APIC, PI descriptor per L2 (L2 runs without a merge under no-bitmap)
  });
});

describe('the memslot_perf_test-shaped workload', () => {
  it('has the selftest\'s shape: unmap makes 4x the exits of unmap chunked at 8192 slots', () => {
    const unmap = memslotPerfShape('unmap', 8192);
    const chunked = memslotPerfShape('unmap-chunked', 8192);
    expect(unmap.ipis).toBe(32768);
    expect(chunked.ipis).toBe(8192);
    expect(memslotPerfShape('map', 8192)).toEqual({ faults: 8192, ipis: 8192 });
  });

  it('kvm-map memremaps and memunmaps four pages per round trip; the caches nothing after set-up', () => {
    const rows = memslotPerfCosts({ scale: 64 });
    for (const phase of MEMSLOT_PERF_PHASES) {
      const kvm = rows.find((r) => r.phase === phase && r.profile.endsWith('kvm-map'))!;
      expect(kvm.costs.memremaps).toBe(4 * kvm.roundTrips);
      expect(kvm.costs.memunmaps).toBe(4 * kvm.roundTrips);
      for (const p of ['pfncache', 'pfncache-ctx']) {
        const c = rows.find((r) => r.phase === phase && r.profile.endsWith(p))!;
        expect([c.costs.memremaps, c.costs.memunmaps]).toEqual([0, 0]);
        expect(c.costs.l0Exits).toBe(kvm.costs.l0Exits);
      }
    }
  });
});

describe('kept kvm-map findings', () => {
  const dir = path.resolve(__dirname, '..', '..', '..', 'traces', 'regressions');
  const files = listTraces([dir]).filter((f) => path.basename(f).startsWith('pages-'));

  it('there are some', () => {
    expect(files.length).toBeGreaterThanOrEqual(3);
  });

  it.each(files.map((f) => [path.basename(f), f] as const))('%s gives its declared verdict under every corpus profile', async (_name, file) => {
    const { header, events } = await readTraceFile(file);
    expect(header.provenance.verdict).toBe('finding');
    expect(header.provenance.diverges).toBe('guest-pages=kvm-map');
    for (const spec of corpusProfiles()) {
      const cell = judge(header, events, file, spec);
      expect({ spec, status: cell.status, detail: cell.detail }).toEqual({ spec, status: spec === 'guest-pages=kvm-map' ? 'expected-divergence' : 'pass', detail: cell.detail });
    }
  });

  it('the guest-pages area lists its four paths with fresh as reference and pfncache-ctx as optimized', () => {
    const a = AREAS['guest-pages'];
    expect([a.reference, a.optimized]).toEqual(['fresh', 'pfncache-ctx']);
    expect([...a.paths.keys()].filter((p) => !p.startsWith('broken-'))).toEqual(['fresh', 'kvm-map', 'pfncache', 'pfncache-ctx']);
  });
});
