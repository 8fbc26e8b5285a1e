/**
 * The whole-world generator's save/restore of nested state and its
 * entry-checked controls (arbitraries-world.ts):
 *
 *  - on fixed seeds it makes migrations, KVM_GET_NESTED_STATE, edits of the
 *    saved vmcs12 and KVM_SET_NESTED_STATE that KVM accepts and refuses, and
 *    entries with "enable VPID" and VPID 0, a CR3-target count above
 *    IA32_VMX_MISC's, and "save VMX-preemption timer value" without the
 *    timer, each failing VMfailValid 7 as well as passing values;
 *  - its traces with migrations replay the same under reference twice;
 *  - a KVM_SET_NESTED_STATE bug of the bug-history set diverges on its traces.
 */
import * as path from 'path';
import { CPU_BASED, PIN_BASED, SECONDARY_EXEC, VMCS, VM_EXIT } from '@nvx/arch';
import { Replayer, Vcpu, archHash, initialState, parseProfile, vmcs12Get, vmcs12Get32 } from '@nvx/emulator';
import { Outcome, TraceEvent, TraceHeader, formatOutcome } from '@nvx/trace';
import fc from 'fast-check';
import { arbWorldTrace } from '../src/arbitraries-world';
import { diffEvents } from '../src/diff';
import { loadPluginModule } from '../src/plugins';

const reference = parseProfile('reference');

/** Which entry-checked control an entry attempt had wrong (as entry-checks.ts judges it), or null. */
function wrongControl(v: Vcpu): 'vpid' | 'cr3-count' | 'timer-save' | null {
  const n = v.nested;
  const cpu = vmcs12Get32(n, VMCS.CPU_BASED_VM_EXEC_CONTROL);
  const sec = cpu & CPU_BASED.ACTIVATE_SECONDARY_CONTROLS ? vmcs12Get32(n, VMCS.SECONDARY_VM_EXEC_CONTROL) : 0;
  if (sec & SECONDARY_EXEC.ENABLE_VPID && vmcs12Get(n, VMCS.VIRTUAL_PROCESSOR_ID) === 0n) return 'vpid';
  if (vmcs12Get32(n, VMCS.CR3_TARGET_COUNT) > 0) return 'cr3-count';
  if (vmcs12Get32(n, VMCS.VM_EXIT_CONTROLS) & VM_EXIT.SAVE_VMX_PREEMPTION_TIMER && !(vmcs12Get32(n, VMCS.PIN_BASED_VM_EXEC_CONTROL) & PIN_BASED.VMX_PREEMPTION_TIMER)) return 'timer-save';
  return null;
}

function replay(header: TraceHeader, events: readonly TraceEvent[]): { outcomes: Outcome[]; hash: string } {
  const r = new Replayer(initialState(header, reference), reference);
  const outcomes = events.map((e) => r.apply(e));
  return { outcomes, hash: archHash(r.peek()) };
}

describe("the whole-world generator's save/restore and entry-checked controls", () => {
  const traces = fc.sample(arbWorldTrace(), { seed: 0x5e7, numRuns: 100 });

  it('makes migrations, saves, edits and restores (accepted and refused), and failing and passing control values', () => {
    const count = new Map<string, number>();
    const inc = (k: string) => count.set(k, (count.get(k) ?? 0) + 1);
    for (const t of traces) {
      const r = new Replayer(initialState(t.header, reference), reference);
      for (const e of t.events) {
        const o = r.apply(e);
        if (e.kind === 'host.migrate' || e.kind === 'host.get-nested-state' || e.kind === 'host.nested-state-field') inc(e.kind);
        if (e.kind === 'host.set-nested-state') {
          inc(`${e.kind} ${o.k}`);
          if (e.smm) inc('set with SMM flags');
          if (e.flags & 8) inc('set with MTF_PENDING');
        }
        if (e.kind === 'l1.vmlaunch' || e.kind === 'l1.vmresume') {
          const v = r.peek().vcpus[e.vcpu];
          const wrong = wrongControl(v);
          if (wrong && formatOutcome(o) === 'vmfail-valid 7') inc(`fails: ${wrong}`);
          if (o.k === 'entered') {
            const n = v.nested;
            if (vmcs12Get32(n, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.ACTIVATE_SECONDARY_CONTROLS && vmcs12Get32(n, VMCS.SECONDARY_VM_EXEC_CONTROL) & SECONDARY_EXEC.ENABLE_VPID) inc('enters: vpid');
            if (vmcs12Get32(n, VMCS.VM_EXIT_CONTROLS) & VM_EXIT.SAVE_VMX_PREEMPTION_TIMER) inc('enters: timer-save');
          }
        }
      }
    }
    const at = (k: string) => count.get(k) ?? 0;
    expect(at('host.migrate')).toBeGreaterThanOrEqual(5);
    expect(at('host.get-nested-state')).toBeGreaterThanOrEqual(10);
    expect(at('host.nested-state-field')).toBeGreaterThanOrEqual(5);
    expect(at('host.set-nested-state ok')).toBeGreaterThanOrEqual(10);
    expect(at('host.set-nested-state einval')).toBeGreaterThanOrEqual(2);
    expect(at('set with SMM flags')).toBeGreaterThanOrEqual(1);
    expect(at('set with MTF_PENDING')).toBeGreaterThanOrEqual(1);
    // each failing value fails the entry where nothing else does, and the passing ones enter
    expect(['fails: vpid', 'fails: cr3-count', 'fails: timer-save', 'enters: vpid', 'enters: timer-save'].filter((k) => at(k) < 1)).toEqual([]);
  });

  it('replays its traces with migrations the same under reference twice', () => {
    let migrating = 0;
    for (const t of traces) {
      if (!t.events.some((e) => e.kind === 'host.migrate' || e.kind === 'host.set-nested-state')) continue;
      migrating++;
      const a = replay(t.header, t.events);
      const b = replay(t.header, t.events);
      expect(b.outcomes).toEqual(a.outcomes);
      expect(b.hash).toBe(a.hash);
    }
    expect(migrating).toBeGreaterThanOrEqual(10);
    // and the builder is deterministic: the same seed draws the same traces
    expect(fc.sample(arbWorldTrace(), { seed: 0x5e7, numRuns: 5 })).toEqual(traces.slice(0, 5));
  });

  it('a KVM_SET_NESTED_STATE bug of the bug-history set diverges on one of its traces', async () => {
    await loadPluginModule(path.resolve(__dirname, '../../../tools/bug-history/plugins/nested-state-smm-flags-unchecked.ts'));
    const buggy = parseProfile('patch=bug-5bea5123cbf0');
    const hit = traces.find((t) => diffEvents(t.header, t.events, reference, buggy).divergence !== null);
    expect(hit).toBeDefined();
    const d = diffEvents(hit!.header, hit!.events, reference, buggy).divergence!;
    expect(d.event.kind).toBe('host.set-nested-state');
    expect(d.verdict).toBe('bug');
  });
});
