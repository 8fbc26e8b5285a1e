/**
 * Mutation of kept traces, in the manner of libFuzzer's and syzkaller's
 * mutators: a corpus trace is changed by one to four stacked operations,
 *
 *  - insert: an event drawn from the generator (an event of a freshly
 *    generated trace of the same block) at a random place;
 *  - delete: one event or a short run of them;
 *  - splice: the head of this trace, the tail of another corpus trace;
 *  - value: one field of one event changed: a value (0, 1, all ones, the low
 *    32, 16 or 8 bits, one bit flipped, plus or minus one, a value another
 *    event writes), an address (another address of the trace, the next or
 *    previous page, the page base, INVALID_GPA), a width (a store's size, a
 *    VMCS field of another width, another MSR of the trace), a flag.
 *
 * A mutated trace is always well formed (every event passes the trace
 * package's validation against the header: vCPUs and physical CPUs are
 * folded into the header's range, values into their field's); whether it
 * makes sense is what the replay says, as for any input: an event the
 * reference ignores is ignored by every path, and a trace that breaks a
 * contract is classified as a fuzzed one is (permitted, by contract).
 * Everything is drawn from a seeded generator: a mutation is a function of
 * its seed, its trace and the corpus.
 */
import { INVALID_GPA, VMCS_FIELDS } from '@nvx/arch';
import { EVENT_SCHEMA, FieldType, TraceEvent, TraceHeader } from '@nvx/trace';

/** A small seeded generator (mulberry32): mutations are deterministic for a seed. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  /** uniform in [0, 2^32) */
  u32(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** uniform in [0, n) */
  below(n: number): number {
    return n <= 1 ? 0 : this.u32() % n;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.below(xs.length)];
  }
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }
}

export interface MutationInput {
  header: TraceHeader;
  events: readonly TraceEvent[];
}

export type MutationOp = 'insert' | 'delete' | 'splice' | 'value';
export const MUTATION_OPS: readonly MutationOp[] = ['insert', 'delete', 'splice', 'value'];

export interface Mutated {
  header: TraceHeader;
  events: TraceEvent[];
  /** the operations applied, in order */
  ops: MutationOp[];
}

/** Traces get no longer than this by mutation (insertions and splices stop growing them). */
export const MUTATION_MAX_EVENTS = 400;

const U64 = (1n << 64n) - 1n;
const MAX: Partial<Record<FieldType, number>> = { u8: 0xff, u16: 0xffff, u32: 0xffffffff, field: 0xffffffff, msr: 0xffffffff, cpl: 3 };

type Rec = Record<string, unknown>;

/** An event made well formed for the header: its vCPU and physical CPU folded into the header's range. */
export function fitEvent(e: TraceEvent, header: TraceHeader): TraceEvent {
  let out: Rec | undefined;
  for (const [name, type] of EVENT_SCHEMA[e.kind].fields) {
    const v = (e as unknown as Rec)[name] as number;
    const n = type === 'vcpu' ? header.config.vcpus : type === 'cpu' ? header.config.pcpus : 0;
    if (n && v >= n) (out ??= { ...e })[name] = v % n;
  }
  // what the original event expected says nothing about the mutated trace
  if (e.expect) {
    out ??= { ...e };
    delete out.expect;
  }
  return (out ?? e) as unknown as TraceEvent;
}

/** Addresses and written values the trace names: what value mutations draw from first. */
function dictionary(events: readonly TraceEvent[]): { gpas: bigint[]; values: bigint[]; msrs: number[]; fields: number[] } {
  const gpas = new Set<bigint>();
  const values = new Set<bigint>();
  const msrs = new Set<number>();
  const fields = new Set<number>();
  for (const e of events) {
    const r = e as unknown as Rec;
    if (typeof r.gpa === 'bigint') gpas.add(r.gpa);
    if (typeof r.value === 'bigint') values.add(r.value);
    if (typeof r.msr === 'number') msrs.add(r.msr);
    if (typeof r.field === 'number') fields.add(r.field);
  }
  return { gpas: [...gpas], values: [...values], msrs: [...msrs], fields: [...fields] };
}

/** A new value for a 64-bit field: interesting constants, widths, bit flips, neighbours, the trace's own values. */
function mutateU64(v: bigint, rng: Rng, values: readonly bigint[], isAddress: boolean): bigint {
  if (isAddress) {
    switch (rng.below(6)) {
      case 0:
        return values.length ? rng.pick(values) : v;
      case 1:
        return (v + 0x1000n) & U64;
      case 2:
        return (v - 0x1000n) & U64;
      case 3:
        return v & ~0xfffn;
      case 4:
        return INVALID_GPA;
      default:
        return (v & ~0xfffn) | BigInt(rng.below(0x1000) & ~7);
    }
  }
  switch (rng.below(10)) {
    case 0:
      return 0n;
    case 1:
      return 1n;
    case 2:
      return U64;
    case 3:
      return v & 0xffffffffn;
    case 4:
      return v & 0xffffn;
    case 5:
      return v & 0xffn;
    case 6:
      return v ^ (1n << BigInt(rng.below(64)));
    case 7:
      return (v + (rng.below(2) ? 1n : U64)) & U64;
    case 8:
      return values.length ? rng.pick(values) : rng.u64();
    default:
      return rng.u64();
  }
}

/** One field of one event changed (the event's kind and vCPU stay). Null when the event has nothing to change. */
function mutateValue(e: TraceEvent, header: TraceHeader, rng: Rng, dict: ReturnType<typeof dictionary>): TraceEvent | null {
  const fields = EVENT_SCHEMA[e.kind].fields.filter(([, t]) => t !== 'vcpu');
  if (!fields.length) return null;
  const [name, type] = rng.pick(fields);
  const r = { ...e } as unknown as Rec;
  const v = r[name];
  switch (type) {
    case 'u64':
      // a frame number moves as the address of its page does
      if (name === 'gfn') r[name] = mutateU64((v as bigint) << 12n, rng, dict.gpas, true) >> 12n;
      else r[name] = mutateU64(v as bigint, rng, name === 'gpa' ? dict.gpas : dict.values, name === 'gpa');
      break;
    case 'bool':
      r[name] = !v;
      break;
    case 'access':
      r[name] = v === 'read' ? 'write' : 'read';
      break;
    case 'size':
      r[name] = rng.pick([1, 2, 4, 8]);
      break;
    case 'cpu':
      r[name] = rng.below(header.config.pcpus);
      break;
    case 'field': {
      // another field of the trace, or any vmcs12 field (of any width)
      const f = dict.fields.length && rng.below(2) ? rng.pick(dict.fields) : rng.pick(VMCS_FIELDS).encoding;
      r[name] = f;
      break;
    }
    case 'msr':
      r[name] = dict.msrs.length && rng.below(3) ? rng.pick(dict.msrs) : rng.u32();
      break;
    default: {
      const max = MAX[type] ?? 0xffffffff;
      const n = v as number;
      const c = rng.below(5);
      r[name] = c === 0 ? 0 : c === 1 ? max : c === 2 ? (n ^ (1 << rng.below(Math.min(31, Math.log2(max + 1))))) >>> 0 : c === 3 ? (n + 1) % (max + 1) : rng.below(max + 1);
      if ((r[name] as number) > max) r[name] = (r[name] as number) & max;
    }
  }
  return r as unknown as TraceEvent;
}

/**
 * One mutation of `base`: one to four stacked operations. `others` are the
 * corpus traces a splice may take a tail from; `pool` the generator's events
 * an insertion may take.
 */
export function mutateTrace(base: MutationInput, others: readonly MutationInput[], pool: readonly TraceEvent[], rng: Rng): Mutated {
  const header = base.header;
  let events = base.events.map((e) => fitEvent(e, header));
  const ops: MutationOp[] = [];
  const n = 1 + (rng.below(4) === 0 ? rng.below(4) : 0);
  for (let k = 0; k < n; k++) {
    const op = rng.pick(MUTATION_OPS);
    switch (op) {
      case 'insert': {
        if (!pool.length || events.length >= MUTATION_MAX_EVENTS) continue;
        const at = rng.below(events.length + 1);
        events = [...events.slice(0, at), fitEvent(rng.pick(pool), header), ...events.slice(at)];
        break;
      }
      case 'delete': {
        if (events.length <= 1) continue;
        const at = rng.below(events.length);
        const len = 1 + (rng.below(3) === 0 ? rng.below(4) : 0);
        events = [...events.slice(0, at), ...events.slice(at + len)];
        break;
      }
      case 'splice': {
        if (!others.length) continue;
        const o = rng.pick(others);
        if (!o.events.length) continue;
        const cut = rng.below(events.length + 1);
        const from = rng.below(o.events.length);
        const tail = o.events.slice(from, from + Math.max(0, MUTATION_MAX_EVENTS - cut)).map((e) => fitEvent(e, header));
        events = [...events.slice(0, cut), ...tail];
        break;
      }
      case 'value': {
        if (!events.length) continue;
        const dict = dictionary(events);
        // a few tries: some events (VMLAUNCH) have nothing but their vCPU
        for (let t = 0; t < 4; t++) {
          const at = rng.below(events.length);
          const e = mutateValue(events[at], header, rng, dict);
          if (!e) continue;
          events = events.slice();
          events[at] = e;
          break;
        }
        break;
      }
    }
    ops.push(op);
  }
  return { header, events, ops };
}
