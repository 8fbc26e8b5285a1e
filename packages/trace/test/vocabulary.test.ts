/**
 * The vocabulary KVM's own tests need: exits to userspace, VM capabilities in
 * the config, 64-bit VMCS field operands, INVEPT/INVVPID, host writes and
 * copies into guest memory, a memslot added back. Text and binary forms,
 * validation and partial expectations.
 */
import {
  TraceError,
  TraceEvent,
  decodeBinaryTrace,
  encodeBinaryTrace,
  formatEvent,
  formatOutcome,
  formatTextTrace,
  makeHeader,
  outcomeEquals,
  outcomeFromTuple,
  outcomeMatches,
  outcomeToTuple,
  parseEventLine,
  parseOutcome,
  parseTextTrace,
  validateEvent,
} from '@nvx/trace';

function roundTrip(events: TraceEvent[], config = {}): TraceEvent[] {
  const h = makeHeader(config);
  const text = parseTextTrace(formatTextTrace(h, events));
  expect(text.events).toEqual(events);
  const bin = decodeBinaryTrace(encodeBinaryTrace(h, events));
  expect(bin.events).toEqual(events);
  return text.events;
}

describe('outcome: exits to userspace', () => {
  test('mmio with its gpa, internal-error and shutdown parse, print and round-trip through tuples', () => {
    const mmio = parseOutcome('userspace mmio gpa=0xfee00000');
    expect(mmio).toEqual({ k: 'userspace', exit: 'mmio', gpa: 0xfee00000n });
    expect(formatOutcome(mmio)).toBe('userspace mmio gpa=0xfee00000');
    const ie = parseOutcome('userspace internal-error');
    expect(formatOutcome(ie)).toBe('userspace internal-error');
    const sd = parseOutcome('userspace shutdown');
    expect(sd).toEqual({ k: 'userspace', exit: 'shutdown' });
    expect(formatOutcome(sd)).toBe('userspace shutdown');
    expect(outcomeEquals(sd, ie)).toBe(false);
    const far = { k: 'userspace', exit: 'mmio', gpa: 0xffffffff81000000n } as const;
    for (const o of [mmio, ie, sd, far]) expect(outcomeFromTuple(outcomeToTuple(o))).toEqual(o);
  });

  test('distinct from ignored and from each other; partial expectations check only what they give', () => {
    const actual = { k: 'userspace', exit: 'mmio', gpa: 0x1000n } as const;
    expect(outcomeEquals(actual, { k: 'ignored', why: 'x' })).toBe(false);
    expect(outcomeEquals(actual, { k: 'userspace', exit: 'internal-error' })).toBe(false);
    expect(outcomeEquals(actual, { k: 'userspace', exit: 'mmio', gpa: 0x2000n })).toBe(false);
    expect(outcomeMatches(parseOutcome('userspace'), actual)).toBe(true);
    expect(outcomeMatches(parseOutcome('userspace mmio'), actual)).toBe(true);
    expect(outcomeMatches(parseOutcome('userspace mmio gpa=0x1000'), actual)).toBe(true);
    expect(outcomeMatches(parseOutcome('userspace mmio gpa=0x2000'), actual)).toBe(false);
    expect(outcomeMatches(parseOutcome('userspace internal-error'), actual)).toBe(false);
    expect(outcomeMatches(parseOutcome('ignored'), actual)).toBe(false);
  });

  test('bad userspace expectations are errors', () => {
    expect(() => parseOutcome('userspace pio')).toThrow(/unknown exit 'pio'/);
    expect(() => parseOutcome('userspace internal-error gpa=0x1000')).toThrow(/gpa= goes with mmio/);
    expect(() => parseOutcome('userspace mmio port=1')).toThrow(/unknown key 'port'/);
    expect(() => outcomeFromTuple([10, 7, null])).toThrow(TraceError);
    expect(() => outcomeFromTuple([10, 1, 0x1000])).toThrow(/gpa goes with mmio/);
  });

  test('an expect clause on an event line', () => {
    const e = parseEventLine('l2.apic-read 0x30   expect userspace mmio gpa=0xfee00030');
    expect(e.expect).toEqual({ k: 'userspace', exit: 'mmio', gpa: 0xfee00030n });
    expect(formatEvent(e)).toMatch(/expect userspace mmio gpa=0xfee00030$/);
  });
});

describe('config: VM capabilities', () => {
  test('msrPlatformInfo, ept and vpid default to on (as in KVM) and can be turned off', () => {
    const t = parseTextTrace('nvx-trace 1\nevents\n');
    expect([t.header.config.msrPlatformInfo, t.header.config.ept, t.header.config.vpid]).toEqual([true, true, true]);
    const off = parseTextTrace('nvx-trace 1\nconfig msrPlatformInfo=false ept=false vpid=false\nevents\n');
    expect([off.header.config.msrPlatformInfo, off.header.config.ept, off.header.config.vpid]).toEqual([false, false, false]);
    const back = parseTextTrace(formatTextTrace(off.header, []));
    expect(back.header.config).toEqual(off.header.config);
    expect(decodeBinaryTrace(encodeBinaryTrace(off.header, [])).header.config).toEqual(off.header.config);
  });

  test('a capability that is not true/false is an error naming the line and key', () => {
    expect(() => parseTextTrace('nvx-trace 1\nconfig msrPlatformInfo=2\nevents\n', 'x.nvx')).toThrow(/x\.nvx.*line 2.*msrPlatformInfo/);
  });
});

describe('events: VMREAD/VMWRITE with 64-bit field operands', () => {
  test('an encoding above 32 bits makes the wide kind; the printer gives it back in the same words', () => {
    const r = parseEventLine('l1.vmread 0x100004000   expect vmfail-valid 12');
    expect(r).toEqual({ kind: 'l1.vmread-wide', vcpu: 0, field: 0x100004000n, expect: { k: 'vmfail-valid', error: 12 } });
    expect(formatEvent(r)).toMatch(/^l1\.vmread 0x100004000 +expect vmfail-valid 12$/);
    const w = parseEventLine('@1 l1.vmwrite field=0xffffffff00000000 value=0x5', { ...makeHeader({ vcpus: 2 }).config });
    expect(w).toEqual({ kind: 'l1.vmwrite-wide', vcpu: 1, field: 0xffffffff00000000n, value: 5n });
    expect(formatEvent(w)).toBe('@1 l1.vmwrite 0xffffffff00000000 0x5');
    // 32-bit encodings stay the ordinary kinds, by number or by name
    expect(parseEventLine('l1.vmread 0xffffffff').kind).toBe('l1.vmread');
    expect(parseEventLine('l1.vmwrite GUEST_RIP 0x100000000').kind).toBe('l1.vmwrite');
    // the wide kind written out holds any 64-bit operand
    const small = parseEventLine('l1.vmread-wide 0x4402');
    expect(small).toEqual({ kind: 'l1.vmread-wide', vcpu: 0, field: 0x4402n });
    expect(formatEvent(small)).toBe('l1.vmread-wide 0x4402');
    roundTrip([r, w, small], { vcpus: 2 });
  });

  test('an operand beyond 64 bits is an error', () => {
    expect(() => parseEventLine('l1.vmread 0x10000000000000000')).toThrow(/out of range/);
  });
});

describe('events: INVEPT, INVVPID, host writes into guest memory, memslot re-add', () => {
  test('text forms parse to the schema fields and round-trip in both forms', () => {
    const lines = [
      'l1.invept 0x1 0x5e   expect ok',
      'l1.invvpid 0x0 0x1 0xffff800000000000   expect vmfail-valid 28',
      'host.guest-write 0x2000 8 0xffffffff81000000',
      'host.guest-copy 0x3000 0x2000 0x1000',
      'host.memslot-delete 1',
      'host.memslot-readd 1',
      '@1 host.set-msr MSR_IA32_VMX_PROCBASED_CTLS2 0x6137bff00000000',
    ];
    const evs = lines.map((l) => parseEventLine(l, makeHeader({ vcpus: 2 }).config));
    expect(evs[0]).toEqual({ kind: 'l1.invept', vcpu: 0, type: 1n, eptp: 0x5en, expect: { k: 'ok' } });
    expect(evs[1]).toEqual({ kind: 'l1.invvpid', vcpu: 0, type: 0n, vpid: 1n, gla: 0xffff800000000000n, expect: { k: 'vmfail-valid', error: 28 } });
    expect(evs[2]).toEqual({ kind: 'host.guest-write', gpa: 0x2000n, size: 8, value: 0xffffffff81000000n });
    expect(evs[3]).toEqual({ kind: 'host.guest-copy', dst: 0x3000n, src: 0x2000n, bytes: 0x1000 });
    expect(evs[5]).toEqual({ kind: 'host.memslot-readd', slot: 1 });
    expect(evs[6]).toEqual({ kind: 'host.set-msr', vcpu: 1, msr: 0x48b, value: 0x6137bff00000000n });
    roundTrip(evs, { vcpus: 2 });
  });

  test('validation names the field', () => {
    expect(() => validateEvent({ kind: 'host.guest-write', gpa: 0n, size: 3, value: 0n }, 4)).toThrow(/event 4.*size/);
    expect(() => validateEvent({ kind: 'l1.invvpid', vcpu: 0, type: 0n, vpid: 1n }, 2)).toThrow(/event 2.*gla/);
    expect(() => parseEventLine('host.guest-copy 0x1000 0x2000')).toThrow(/bytes/);
    expect(() => parseEventLine('@1 host.memslot-readd 1')).toThrow(/has no vCPU/);
  });
});
