/**
 * Save/restore of nested state (KVM_GET/SET_NESTED_STATE, host.migrate):
 * the conformance traces from KVM's selftests replay under the `kvm`
 * profile, the acceptance rules refuse without touching the vCPU, the new
 * vocabulary survives the binary form, and migration transparency holds for
 * the real paths while the fixtures that forget state are caught.
 */
import * as fs from 'fs';
import * as path from 'path';
import fc from 'fast-check';
import { INVALID_GPA } from '@nvx/arch';
import { MIGRATE_BROKEN, arbMixedTrace, diffEvents, insertMigrations, migrateDiff, migrationPoints, parseMigrateWhere, withMigrations } from '@nvx/check';
import { Replayer, World, initialState, parseProfile, registerPath, stateHash, step } from '@nvx/emulator';
import { TraceEvent, decodeBinaryTrace, encodeBinaryTrace, formatEvent, formatOutcome, formatTextTrace, outcomeMatches, parseEventLine, parseTextTrace } from '@nvx/trace';

const DIR = path.resolve(__dirname, '..', '..', '..', 'traces', 'conformance');
const FILES = fs
  .readdirSync(DIR)
  .filter((f) => f.startsWith('migrate-') && f.endsWith('.nvx'))
  .sort();

for (const b of MIGRATE_BROKEN) registerPath(b.path);

const KVM = parseProfile('kvm');
const REF = parseProfile('reference');

function replay(text: string, profile = KVM) {
  const t = parseTextTrace(text);
  const r = new Replayer(initialState(t.header, profile), profile);
  return { t, r, outcomes: t.events.map((e) => r.apply(e)) };
}

describe('conformance traces from KVM selftests replay under kvm', () => {
  it('there are at least five, each naming its source', () => {
    expect(FILES.length).toBeGreaterThanOrEqual(5);
    for (const f of FILES) {
      const p = parseTextTrace(fs.readFileSync(path.join(DIR, f), 'utf8')).header.provenance;
      expect(p.source).toMatch(/^\S+\/\S+ tools\/testing\/selftests\/kvm\//);
      expect(p.test).toBeTruthy();
      expect(p.commit).toMatch(/^[0-9a-f]{40}$/);
      expect(p.verdict).toBe('pass');
    }
  });

  it.each(FILES)('%s', (f) => {
    const text = fs.readFileSync(path.join(DIR, f), 'utf8');
    const { t, outcomes } = replay(text);
    const bad: string[] = [];
    t.events.forEach((e, i) => {
      if (e.expect && !outcomeMatches(e.expect, outcomes[i])) bad.push(`event ${i} ${formatEvent(e)}: got ${formatOutcome(outcomes[i])}`);
    });
    expect(bad).toEqual([]);
    expect(t.events.some((e) => e.kind.startsWith('host.') && /nested-state|migrate/.test(e.kind))).toBe(true);
  });
});

describe('two speeds', () => {
  it.each(FILES)('%s: immer steps and the mutable replayer agree, and older states never change', (f) => {
    const t = parseTextTrace(fs.readFileSync(path.join(DIR, f), 'utf8'));
    for (const p of [KVM, parseProfile('optimized')]) {
      let s = initialState(t.header, p);
      const r = new Replayer(s, p);
      const kept: [World, string][] = [];
      for (const e of t.events) {
        const a = step(s, e, p);
        expect(formatOutcome(a.outcome)).toBe(formatOutcome(r.apply(e)));
        s = a.state;
        if (e.kind.startsWith('host.')) kept.push([s, stateHash(s)]);
      }
      expect(stateHash(s)).toBe(stateHash(r.peek()));
      for (const [w, h] of kept) expect(stateHash(w)).toBe(h);
    }
  });
});

describe('vocabulary', () => {
  it('text and binary forms round-trip the nested-state events and outcomes', () => {
    const text = fs.readFileSync(path.join(DIR, 'migrate-set-nested-state-acceptance.nvx'), 'utf8');
    const t = parseTextTrace(text);
    const back = decodeBinaryTrace(encodeBinaryTrace(t.header, t.events));
    expect(formatTextTrace(back.header, back.events)).toBe(formatTextTrace(t.header, t.events));
    const line = parseEventLine('@0 host.set-nested-state format=0 flags=0x3 vmxon=0x1000 vmcs12=0x2000 smm=0 size=0x1080 expect einval');
    expect(line).toMatchObject({ kind: 'host.set-nested-state', flags: 3, vmxon: 0x1000n, vmcs12: 0x2000n, size: 0x1080, expect: { k: 'einval' } });
    const get = parseEventLine('host.get-nested-state expect nested-state flags=0x5 size=0x1080');
    expect(get.expect).toMatchObject({ k: 'nested-state', flags: 5, size: 0x1080 });
    expect(() => parseEventLine('host.get-nested-state expect nested-state flags=0x10000')).toThrow(/flags/);
    expect(() => parseEventLine('host.set-nested-state 0 0 0x1000')).toThrow(/missing value/);
  });
});

describe('KVM_SET_NESTED_STATE', () => {
  const setup = ['l1.write 0x1000 4 0x11e57ed0', 'l1.vmxon 0x1000', 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000', 'l1.vmwrite GUEST_RIP 0x1234'];
  const trace = (extra: string[]) => ['nvx-trace 1', 'config vcpus=1', 'memslot 0 gfn=0x0 npages=0x100 flags=0', 'events', ...setup, ...extra].join('\n') + '\n';

  it('a refusal before vmx_leave_nested leaves the vCPU as it was', () => {
    const { r, outcomes } = replay(trace(['host.set-nested-state 0 3 0x0 0x0 0 0x0', 'host.set-nested-state 1 0 0x1000 0x2000 0 0x1080']));
    expect(outcomes.slice(-2).map((o) => o.k)).toEqual(['einval', 'einval']);
    const n = r.peek().vcpus[0].nested;
    expect([n.vmxon, n.vmxonPtr, n.currentVmptr]).toEqual([true, 0x1000n, 0x2000n]);
  });

  it('a refusal after it leaves VMX on without a current vmcs12, as KVM does', () => {
    // revision id 0 in the (zeroed) buffer: refused once vmcs12 is installed
    const { r, outcomes } = replay(trace(['host.set-nested-state 0 0 0x1000 0x2000 0 0x1080']));
    expect(outcomes[outcomes.length - 1].k).toBe('einval');
    const n = r.peek().vcpus[0].nested;
    expect(n.vmxon).toBe(true);
    expect(n.currentVmptr).toBe(0x2000n);
  });

  it('a get then a set on the same vCPU restores vmcs12', () => {
    const { outcomes } = replay(trace(['host.get-nested-state', 'l1.vmwrite GUEST_RIP 0x9999', 'host.set-nested-state 0 0 0x1000 0x2000 0 0x1080', 'l1.vmread GUEST_RIP']));
    expect(outcomes[outcomes.length - 2].k).toBe('ok');
    expect(outcomes[outcomes.length - 1]).toEqual({ k: 'value', value: 0x1234n });
  });

  it('migrating a vCPU outside VMX operation gives an empty state back', () => {
    const { outcomes } = replay(['nvx-trace 1', 'config vcpus=2', 'events', '@1 host.migrate', '@1 host.get-nested-state'].join('\n') + '\n');
    expect(outcomes[0].k).toBe('ok');
    expect(outcomes[1]).toEqual({ k: 'nested-state', flags: 0, size: 0x80, vmxon: INVALID_GPA, vmcs12: INVALID_GPA, smm: 0 });
  });
});

describe('migration transparency', () => {
  const SCEN = path.resolve(__dirname, '..', '..', '..', 'traces', 'scenarios');
  const read = (f: string) => parseTextTrace(fs.readFileSync(path.join(SCEN, f), 'utf8'));

  it('parses where to migrate, and refuses anything else', () => {
    expect(parseMigrateWhere('12,40')).toEqual({ k: 'at', indices: [12, 40] });
    expect(parseMigrateWhere('entries')).toEqual({ k: 'entries' });
    expect(parseMigrateWhere('random:7:3')).toEqual({ k: 'random', seed: 7, n: 3 });
    expect(() => parseMigrateWhere('random:x')).toThrow(/--migrate/);
  });

  it('inserts one host.migrate per point, after the named event, of its vCPU', () => {
    const t = read('shadow-l2-vmread-vmwrite.nvx');
    const pts = migrationPoints(t.header, t.events, { k: 'entries' });
    const outcomes = (() => {
      const r = new Replayer(initialState(t.header, REF), REF);
      return t.events.map((e) => r.apply(e));
    })();
    expect(pts.map((p) => p.after)).toEqual(outcomes.flatMap((o, i) => (o.k === 'entered' || o.k === 'exit' ? [i] : [])));
    const m = insertMigrations(t.events, pts);
    expect(m.events.length).toBe(t.events.length + pts.length);
    pts.forEach((p, j) => expect(m.events[p.after + j + 1]).toEqual({ kind: 'host.migrate', vcpu: 0 }));
    expect(m.original.filter((i) => i >= 0)).toEqual(t.events.map((_, i) => i));
  });

  it.each(['shadow-l2-vmread-vmwrite.nvx', 'l1-intercepts-fs-base.nvx', 'pages-l2-switch-contexts.nvx', 'x2apic-virtualization.nvx'])('%s: kvm and optimized are transparent at every entry and exit', (f) => {
    const t = read(f);
    for (const p of [KVM, parseProfile('optimized')]) {
      const r = migrateDiff(t.header, t.events, REF, p, { k: 'entries' });
      expect(r.points.length).toBeGreaterThan(0);
      expect(r.transparency).toBeNull();
    }
  });

  it('KVM clearing the eVMCS clean fields after a restore is inherent, not a path bug', () => {
    const t = read('evmcs-enlightened-bitmap.nvx');
    const r = migrateDiff(t.header, t.events, REF, KVM, { k: 'entries' });
    expect(r.transparency?.verdict).toBe('inherent');
    expect(formatEvent(r.transparency!.event)).toMatch(/^l1\.read 0x5338 4/);
  });

  it('a shadow VMCS save that trusts vmcs12 is not transparent (bug)', () => {
    const events: TraceEvent[] = ['l1.write 0x1000 4 0x11e57ed0', 'l1.vmxon 0x1000', 'l1.write 0x2000 4 0x11e57ed0', 'l1.vmptrld 0x2000', 'l1.vmwrite GUEST_RIP 0x1234', 'l1.vmread GUEST_RIP'].map((l) => parseEventLine(l));
    const header = parseTextTrace('nvx-trace 1\nconfig vcpus=1 shadowVmcs=true\nmemslot 0 gfn=0x0 npages=0x100 flags=0\nevents\n').header;
    const broken = parseProfile('shadow-vmcs=broken-save-trusts-vmcs12');
    const r = migrateDiff(header, events, REF, broken, { k: 'at', indices: [4] });
    expect(r.transparency).toMatchObject({ index: 5, verdict: 'bug', without: { k: 'value', value: 0x1234n }, with: { k: 'value', value: 0n } });
    expect(r.againstBase.divergence?.verdict).toBe('bug');
    expect(migrateDiff(header, events, REF, parseProfile('shadow-vmcs=intercept-ro'), { k: 'at', indices: [4] }).transparency).toBeNull();
  });

  it('generated traces with migrations: the fixtures are caught, the real paths pass the same runs', () => {
    const run = (spec: string, areas: ('shadow-vmcs' | 'evmcs')[]) => {
      const other = parseProfile(spec);
      return fc.check(
        fc.property(withMigrations(fc, arbMixedTrace({ areas })), (t) => diffEvents(t.header, t.events, REF, other).divergence?.verdict !== 'bug'),
        { seed: 42, numRuns: 25, endOnFailure: true },
      );
    };
    expect(run('shadow-vmcs=broken-save-trusts-vmcs12', ['shadow-vmcs']).failed).toBe(true);
    expect(run('shadow-vmcs=intercept-ro', ['shadow-vmcs']).failed).toBe(false);
    expect(run('evmcs=clean-fields', ['evmcs']).failed).toBe(false);
  });
});
