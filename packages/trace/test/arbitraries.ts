/**
 * fast-check arbitraries for valid events, built from the schema so that a
 * new event kind is covered without touching this file.
 */
import fc from 'fast-check';
import { EVENT_KINDS, EVENT_SCHEMA, FieldType, TraceEvent, WorldConfig, Outcome, defaultConfig, makeHeader, TraceHeader } from '@nvx/trace';

const interesting64 = [0n, 1n, 0xffffffffn, 0x100000000n, 0xffffffff81000000n, 0xffffffffffffffffn, 0x8000000000000000n];

export function arbField(type: FieldType, cfg: WorldConfig): fc.Arbitrary<unknown> {
  switch (type) {
    case 'vcpu':
      return fc.integer({ min: 0, max: cfg.vcpus - 1 });
    case 'cpu':
      return fc.integer({ min: 0, max: cfg.pcpus - 1 });
    case 'u8':
      return fc.integer({ min: 0, max: 0xff });
    case 'u16':
      return fc.integer({ min: 0, max: 0xffff });
    case 'u32':
    case 'field':
    case 'msr':
      return fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(0x4402, 0x681e, 0x2004, 0x2005, 0xc0000100, 0x48, 0x808));
    case 'u64':
      return fc.oneof(fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }), fc.constantFrom(...interesting64));
    case 'bool':
      return fc.boolean();
    case 'cpl':
      return fc.integer({ min: 0, max: 3 });
    case 'access':
      return fc.constantFrom('read', 'write');
    case 'size':
      return fc.constantFrom(1, 2, 4, 8);
  }
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: 0xffffffffffffffffn });

export const arbOutcome: fc.Arbitrary<Outcome> = fc.oneof(
  fc.constant<Outcome>({ k: 'ok' }),
  u64.map((value): Outcome => ({ k: 'value', value })),
  fc.constant<Outcome>({ k: 'vmfail-invalid' }),
  fc.integer({ min: 0, max: 28 }).map((error): Outcome => ({ k: 'vmfail-valid', error })),
  fc.constant<Outcome>({ k: 'gp' }),
  fc.constant<Outcome>({ k: 'ud' }),
  fc.record({ reason: fc.oneof(fc.constantFrom(10, 18, 31, 32, 0x80000021), u32), qual: u64 }).map((r): Outcome => ({ k: 'exit', ...r })),
  fc.constant<Outcome>({ k: 'entered' }),
  fc.record({ eax: u32, ebx: u32, ecx: u32, edx: u32 }).map((r): Outcome => ({ k: 'cpuid', ...r })),
  fc.string({ maxLength: 20 }).map((why): Outcome => ({ k: 'ignored', why })),
  u64.map((gpa): Outcome => ({ k: 'userspace', exit: 'mmio', gpa })),
  fc.constant<Outcome>({ k: 'userspace', exit: 'internal-error' }),
  fc.constant<Outcome>({ k: 'userspace', exit: 'shutdown' }),
);

export function arbEvent(cfg: WorldConfig = defaultConfig({ vcpus: 4, pcpus: 4 })): fc.Arbitrary<TraceEvent> {
  return fc.oneof(
    ...EVENT_KINDS.map((kind) => {
      const rec: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [name, type] of EVENT_SCHEMA[kind].fields) rec[name] = arbField(type, cfg);
      return fc
        .tuple(fc.record(rec), fc.option(arbOutcome, { freq: 3, nil: undefined }))
        .map(([fields, expect]) => ({ kind, ...fields, ...(expect ? { expect } : {}) }) as TraceEvent);
    }),
  );
}

export const arbHeader: fc.Arbitrary<TraceHeader> = fc
  .record({
    evmcs: fc.boolean(),
    shadowVmcs: fc.boolean(),
    vmwriteAnyField: fc.boolean(),
    msrPlatformInfo: fc.boolean(),
    ept: fc.boolean(),
    vpid: fc.boolean(),
    vcpus: fc.integer({ min: 1, max: 4 }),
    pcpus: fc.integer({ min: 1, max: 4 }),
    seed: fc.string({ maxLength: 12 }),
  })
  .map(({ seed, ...c }) => makeHeader(c, { generator: 'fast-check', seed }));
