/**
 * The VMREAD/VMWRITE-heavy L1 loop behind the shadow-vmcs cost summary
 * (docs/shadow-vmcs.md, tools/shadow-costs.ts): every event does what it is
 * meant to, every path gives the reference's outcomes, and the per-iteration
 * costs are the ones the summary reports.
 */
import { EXIT_REASON, VMCS } from '@nvx/arch';
import { Costs, Replayer, diffCosts, initialState, parseProfile } from '@nvx/emulator';
import { Outcome } from '@nvx/trace';
import { diffEvents } from '../src/diff';
import { SHADOW_LOOP_SETUP_EVENTS, shadowExitLoop, shadowExitLoopEventsPerIteration, shadowExitLoopStream } from '../src/workloads-shadow';

const N = 50;

function perIteration(roWrites: number, path: string): { outcomes: Outcome[]; cost: Costs } {
  const wl = shadowExitLoop(N, { roWrites });
  const p = parseProfile(`shadow-vmcs=${path}`);
  const r = new Replayer(initialState(wl.header, p), p);
  const outcomes = wl.events.slice(0, SHADOW_LOOP_SETUP_EVENTS).map((e) => r.apply(e));
  const before = { ...r.cost };
  for (const e of wl.events.slice(SHADOW_LOOP_SETUP_EVENTS)) outcomes.push(r.apply(e));
  const cost = diffCosts(r.cost, before);
  for (const k of Object.keys(cost) as (keyof Costs)[]) cost[k] /= N;
  return { outcomes, cost };
}

const pick = (c: Costs) => ({ vmreadExits: c.vmreadExits, vmwriteExits: c.vmwriteExits, in: c.shadowFieldsCopiedIn, out: c.shadowFieldsCopiedOut, loads: c.shadowVmcsLoads, entries: c.nestedEntries });

test('the stream has the announced length and is the same each time', () => {
  const s = shadowExitLoopStream(7, { roWrites: 3 });
  const a = [...s.events()];
  expect(a.length).toBe(s.count);
  expect(s.count).toBe(SHADOW_LOOP_SETUP_EVENTS + 7 * shadowExitLoopEventsPerIteration(3));
  expect([...s.events()]).toEqual(a);
  expect(() => shadowExitLoopStream(1, { roWrites: 10 })).toThrow(/roWrites/);
});

test.each([0, 4])('every event does what it is meant to (roWrites %i)', (roWrites) => {
  const wl = shadowExitLoop(N, { roWrites });
  const { outcomes } = perIteration(roWrites, 'none');
  wl.events.forEach((e, i) => {
    const o = outcomes[i];
    if (e.kind === 'l1.vmlaunch' || e.kind === 'l1.vmresume') expect([i, o.k]).toEqual([i, 'entered']);
    else if (e.kind === 'l2.cpuid') expect([i, o]).toEqual([i, { k: 'exit', reason: EXIT_REASON.CPUID, qual: 0n }]);
    else if (e.kind === 'l1.vmread' && e.field === VMCS.VM_EXIT_REASON) expect([i, o]).toEqual([i, { k: 'value', value: BigInt(EXIT_REASON.CPUID) }]);
    else if (e.kind === 'l1.vmread') expect([i, o]).toEqual([i, { k: 'value', value: 0n }]);
    else expect([i, o]).toEqual([i, { k: 'ok' }]);
  });
});

test.each(['shadow-vmcs=copy-all', 'shadow-vmcs=intercept-ro', 'optimized'])('%s matches reference on the L3 loop', (spec) => {
  const wl = shadowExitLoop(N, { roWrites: 9 });
  expect(diffEvents(wl.header, wl.events, parseProfile('reference'), parseProfile(spec), { checkpointEvery: 25 }).divergence).toBeNull();
});

test('per handled exit: none exits on every VMREAD/VMWRITE; both shadowing paths on none; intercept-ro copies 11 fields fewer per entry', () => {
  expect(pick(perIteration(0, 'none').cost)).toEqual({ vmreadExits: 2, vmwriteExits: 1, in: 0, out: 0, loads: 0, entries: 1 });
  expect(pick(perIteration(0, 'copy-all').cost)).toEqual({ vmreadExits: 0, vmwriteExits: 0, in: 35, out: 35, loads: 2, entries: 1 });
  expect(pick(perIteration(0, 'intercept-ro').cost)).toEqual({ vmreadExits: 0, vmwriteExits: 0, in: 24, out: 35, loads: 2, entries: 1 });
});

test('the L3 trade-off: RO VMWRITEs exit (and load the shadow VMCS) with intercept-ro only', () => {
  expect(pick(perIteration(4, 'copy-all').cost)).toEqual({ vmreadExits: 0, vmwriteExits: 0, in: 35, out: 35, loads: 2, entries: 1 });
  expect(pick(perIteration(4, 'intercept-ro').cost)).toEqual({ vmreadExits: 0, vmwriteExits: 4, in: 24, out: 35, loads: 6, entries: 1 });
});
