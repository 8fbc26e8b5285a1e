/**
 * Minimization of a diverging trace: delta debugging over events (ddmin,
 * Zeller and Hildebrandt), then over values, then over the header, keeping
 * every candidate valid and the same kind of divergence.
 *
 * The oracle a candidate must pass:
 *  - valid: every event the reference ignores ("cannot happen now") was
 *    ignored in the input too, so dropping an event never leaves one that
 *    means nothing (an L2 event while L1 runs, a store outside memory);
 *  - the same kind of divergence: the same verdict (bug or permitted), the
 *    same contract behind a permitted one, and the divergence on an event of
 *    the same kind; with `signature`, also what the divergence shows (the
 *    fuzzer's finding signature stays the same).
 *
 * Divergences are found the way the fuzzer finds them (`screenProfiles`):
 * outcomes compared after every event, architectural states after every
 * nested entry and exit and at the end; the first one is then described by
 * `diffEvents` on the trace cut after it (verdict, contract, explanation,
 * confirmed by a replay from scratch). What follows the divergence is cut
 * first.
 *
 * Then, in order: whole vCPUs and all host events at once, ddmin over the
 * events left, L2 events that only exit replaced by VMCALL, simpler
 * values (an address an earlier event names; 0, the
 * low half, each set bit cleared for 64- and 32-bit values, CPLs and CPUID
 * leaves), every `expect` clause dropped, vCPUs renumbered from 0,
 * memslots and configuration flags the divergence does not need removed,
 * the trace moved down to guest address 0 and memslots numbered from 0,
 * then other forms of the trace (fewer vCPUs, the other VMCS form, a
 * shorter set-up), each reduced again and kept when it ends smaller, then
 * ddmin again, every pair of events (ddmin alone is 1-minimal), and,
 * for traces of at most 24 events, a lookahead: one event changed
 * (VMLAUNCH and VMRESUME swapped, an address another event names, a store
 * from another vCPU) or moved earlier, together with the removal of one
 * event or two adjacent ones.
 */
import { INVALID_GPA, KVM_EVMCS_VERSION, MSR, MUST_BE_1_CONTROLS, VMCS12_REVISION, kvmVmxCapMsrs } from '@nvx/arch';
import { Profile, Replayer, World, archHash, initialState, sameArchState } from '@nvx/emulator';
import { CONFIG_FLAGS, EVENT_SCHEMA, EventKind, TraceEvent, TraceHeader, defaultConfig, formatOutcome, formatTextTrace, outcomeEquals } from '@nvx/trace';
import { CoverageRecorder } from './coverage';
import { DiffResult, Divergence, diffEvents } from './diff';
import { ADDRESS_FIELDS } from './mix';

// ---------------------------------------------------------------- finding divergences fast

/** The fast comparison of two worlds' architectural states lives beside `archHash` (@nvx/emulator). */
export { sameArchState };

/** When the screen compares whole architectural states. */
export type StateCompare = 'entries' | 'end' | 'every';

export interface ScreenHit {
  /** index of the profile in `others` */
  profile: number;
  /** the event after which the difference showed */
  index: number;
  kind: 'outcome' | 'state';
}

export interface ScreenOptions {
  /** when whole states are compared (default 'entries': after every nested entry and exit, and at the end) */
  stateAt?: StateCompare;
  /** record rule coverage on the base replay */
  coverage?: CoverageRecorder;
  /** the base replay's outcome kinds, filled in (one per event) */
  baseKinds?: string[];
  /** stop the base replay when this returns false for an event's base outcome (index, kind) */
  accept?: (index: number, kind: string) => boolean;
}

/**
 * One base replay and one replay per other profile, in lockstep: the first
 * event at which each other profile's outcome or architectural state differs
 * from the base's. Cheaper than a diff per profile (the base runs once), and
 * exact; `diffEvents` then explains what it finds.
 */
export function screenProfiles(header: TraceHeader, events: readonly TraceEvent[], base: Profile, others: readonly Profile[], opts: ScreenOptions = {}): (ScreenHit | null)[] {
  const stateAt = opts.stateAt ?? 'entries';
  const rb = Replayer.fromHeader(header, base);
  const ro = others.map((p) => Replayer.fromHeader(header, p));
  const hits: (ScreenHit | null)[] = others.map(() => null);
  let alive = others.length;
  const cov = opts.coverage;
  cov?.startTrace();
  for (let i = 0; i < events.length && alive > 0; i++) {
    const e = events[i];
    if (cov) cov.before(rb.peek(), e);
    const ob = rb.apply(e);
    if (cov) cov.after(rb.peek(), e, ob);
    opts.baseKinds?.push(ob.k);
    if (opts.accept && !opts.accept(i, ob.k)) return hits;
    for (let j = 0; j < ro.length; j++) {
      if (hits[j]) continue;
      const oo = ro[j].apply(e);
      if (!outcomeEquals(ob, oo)) {
        hits[j] = { profile: j, index: i, kind: 'outcome' };
        alive--;
      }
    }
    const last = i === events.length - 1;
    const compare = last || stateAt === 'every' || (stateAt === 'entries' && (ob.k === 'entered' || ob.k === 'exit'));
    if (compare && alive > 0) {
      // the fast comparison first (it agrees with archHash: minimize.test.ts); the hashes decide when it sees a difference
      let hb: string | undefined;
      for (let j = 0; j < ro.length; j++) {
        if (hits[j]) continue;
        if (sameArchState(rb.peek(), ro[j].peek())) continue;
        hb ??= archHash(rb.peek());
        if (archHash(ro[j].peek()) !== hb) {
          hits[j] = { profile: j, index: i, kind: 'state' };
          alive--;
        }
      }
    }
  }
  return hits;
}

/** The first divergence of `other` from `base` as the fuzzer sees it, described by diffEvents; null when none. */
export function findDivergence(header: TraceHeader, events: readonly TraceEvent[], base: Profile, other: Profile, stateAt: StateCompare = 'entries'): DiffResult | null {
  const [hit] = screenProfiles(header, events, base, [other], { stateAt });
  if (!hit) return null;
  const r = diffEvents(header, events.slice(0, hit.index + 1), base, other);
  return r.divergence ? r : null;
}

// ---------------------------------------------------------------- the kind of a divergence

export interface DivergenceKind {
  verdict: 'bug' | 'permitted';
  contract: string | null;
  event: EventKind;
}

export function divergenceKind(d: Divergence): DivergenceKind {
  return { verdict: d.verdict, contract: d.contract?.contract ?? null, event: d.event.kind };
}

/**
 * The event kind a divergence is grouped under: VMLAUNCH and VMRESUME are
 * one nested VM-entry (nested_vmx_run(vcpu, launch) handles both, and a
 * bug on the way into L2 shows on either), so a finding at a VMLAUNCH may
 * minimize to a trace that diverges at a VMRESUME, and the two are one
 * finding. Every other kind is itself.
 */
export function entryClass(k: EventKind): string {
  return k === 'l1.vmlaunch' || k === 'l1.vmresume' ? 'l1.vmlaunch/vmresume' : k;
}

export function sameKind(a: DivergenceKind, b: DivergenceKind): boolean {
  return a.verdict === b.verdict && a.contract === b.contract && entryClass(a.event) === entryClass(b.event);
}

/** The two sides of a divergence in a line: the outcomes, or for a state divergence the first state difference. */
export function describeSides(d: Divergence): string {
  if (d.kind === 'outcome' || !d.archDiff.length) return `${formatOutcome(d.base)} vs ${formatOutcome(d.other)}`;
  const a = d.archDiff[0];
  return `${formatOutcome(d.base)} for both, then ${a.key}: ${a.a ?? '-'} vs ${a.b ?? '-'}`;
}

export function describeKind(k: DivergenceKind): string {
  return `${k.verdict}${k.contract ? ` (${k.contract})` : ''} on ${k.event}`;
}

// ---------------------------------------------------------------- the minimizer

export interface MinimizeOptions {
  /** give up improving after this long (default 30 s); the best trace so far is returned */
  timeLimitMs?: number;
  stateAt?: StateCompare;
  /** called now and then with the current number of events and the phase */
  onProgress?: (events: number, phase: string) => void;
  /** checked between candidates: stop early (the best trace so far is returned) */
  shouldStop?: () => boolean;
  /**
   * what else a candidate's divergence must keep besides its kind: the
   * fuzzer passes the observation part of its finding signature (an outcome,
   * or which kind of state differs), so a minimized finding keeps its
   * signature
   */
  signature?: (d: Divergence) => string;
  /**
   * after event and value reduction, try other forms of the trace (fewer
   * vCPUs, the other VMCS form, shorter set-up) and keep one that reduces
   * to fewer events (default true)
   */
  changeForm?: boolean;
}

export interface MinimizeResult {
  header: TraceHeader;
  events: TraceEvent[];
  /** events of the input, and up to its divergence */
  before: number;
  beforeCut: number;
  after: number;
  ms: number;
  /** candidates tried */
  tests: number;
  timedOut: boolean;
  kind: DivergenceKind;
  /** the divergence of the minimized trace */
  result: DiffResult;
}

export class NoDivergence extends Error {
  constructor(base: string, other: string) {
    super(`${other} does not diverge from ${base} on this trace: nothing to minimize`);
    this.name = 'NoDivergence';
  }
}

interface Candidate {
  header: TraceHeader;
  events: TraceEvent[];
  /** index in the input of each event (for the validity rule) */
  origin: number[];
}

class Oracle {
  tests = 0;
  private readonly deadline: number;
  stopped = false;
  /** the input's signature (MinimizeOptions.signature) */
  sig?: string;

  constructor(
    readonly base: Profile,
    readonly other: Profile,
    readonly kind: DivergenceKind,
    /** input indices of events the reference ignores in the input */
    readonly ignoredBefore: ReadonlySet<number>,
    readonly o: MinimizeOptions,
    readonly t0: number,
  ) {
    this.deadline = t0 + (o.timeLimitMs ?? 30_000);
  }

  get outOfTime(): boolean {
    if (!this.stopped && (performance.now() > this.deadline || this.o.shouldStop?.())) this.stopped = true;
    return this.stopped;
  }

  /** The candidate's divergence if it is valid and of the same kind, else null. */
  test(c: Candidate): DiffResult | null {
    this.tests++;
    const [hit] = screenProfiles(c.header, c.events, this.base, [this.other], {
      stateAt: this.o.stateAt,
      accept: (i, k) => k !== 'ignored' || this.ignoredBefore.has(c.origin[i]),
    });
    if (!hit) return null;
    // the validity rule for events up to the divergence (the screen stopped there or earlier)
    const cut = c.events.slice(0, hit.index + 1);
    const r = diffEvents(c.header, cut, this.base, this.other);
    if (!r.divergence || !sameKind(divergenceKind(r.divergence), this.kind)) return null;
    if (this.sig !== undefined && this.o.signature!(r.divergence) !== this.sig) return null;
    return r;
  }
}

const sub = (c: Candidate, keep: readonly number[]): Candidate => ({ header: c.header, events: keep.map((i) => c.events[i]), origin: keep.map((i) => c.origin[i]) });

/** ddmin over the candidate's events; returns the smallest failing candidate found. */
function ddmin(c: Candidate, oracle: Oracle, progress: (n: number) => void): { c: Candidate; r: DiffResult | null } {
  let cur = c;
  let best: DiffResult | null = null;
  let n = 2;
  while (cur.events.length >= 2 && !oracle.outOfTime) {
    const len = cur.events.length;
    const size = Math.ceil(len / n);
    const chunks: number[][] = [];
    for (let s = 0; s < len; s += size) chunks.push(Array.from({ length: Math.min(size, len - s) }, (_, k) => s + k));
    let reduced = false;
    // complements first (remove one chunk), from the end: setup events come first
    for (let k = chunks.length - 1; k >= 0 && !oracle.outOfTime; k--) {
      const drop = new Set(chunks[k]);
      const keep = [...Array(len).keys()].filter((i) => !drop.has(i));
      const cand = sub(cur, keep);
      const r = oracle.test(cand);
      if (r) {
        cur = cand;
        best = r;
        n = Math.max(n - 1, 2);
        reduced = true;
        progress(cur.events.length);
        break;
      }
    }
    if (reduced) continue;
    // subsets (keep one chunk) when the chunks are big
    if (n > 2 && chunks.length > 2) {
      for (const ch of chunks) {
        if (oracle.outOfTime) break;
        const cand = sub(cur, ch);
        const r = oracle.test(cand);
        if (r) {
          cur = cand;
          best = r;
          n = 2;
          reduced = true;
          progress(cur.events.length);
          break;
        }
      }
      if (reduced) continue;
    }
    if (n >= len) break;
    n = Math.min(len, n * 2);
  }
  return { c: cur, r: best };
}

/** Simpler values to try for a field value, best first. */
function simplerValues(v: bigint, width: 64 | 32 | 8): bigint[] {
  if (v === 0n) return [];
  const out: bigint[] = [0n];
  if (width === 64 && v >> 32n) out.push(v & 0xffffffffn);
  if (v > 1n) out.push(1n);
  return out;
}

const VALUE_FIELDS = new Set(['value', 'leaf', 'subleaf', 'cpl', 'vector']);

/** Fields of an event worth simplifying, with their widths. */
function valueFields(e: TraceEvent): [string, 64 | 32 | 8][] {
  const out: [string, 64 | 32 | 8][] = [];
  for (const [name, type] of EVENT_SCHEMA[e.kind].fields) {
    if (!VALUE_FIELDS.has(name)) continue;
    if (type === 'u64') out.push([name, 64]);
    else if (type === 'u32' || type === 'u16') out.push([name, 32]);
    else if (type === 'u8' || type === 'cpl') out.push([name, 8]);
  }
  return out;
}

function withField(e: TraceEvent, name: string, v: bigint): TraceEvent {
  const cur = (e as unknown as Record<string, unknown>)[name];
  return { ...e, [name]: typeof cur === 'bigint' ? v : Number(v) } as TraceEvent;
}

/**
 * Simpler events: an L2 event that only serves to exit to L1 becomes
 * VMCALL (which always exits), so whatever made it exit can go.
 */
function simplifyEvents(c: Candidate, oracle: Oracle, progress: () => void): { c: Candidate; r: DiffResult | null } {
  let cur = c;
  let best: DiffResult | null = null;
  const r = new Replayer(initialState(cur.header, oracle.base), oracle.base);
  const kinds = cur.events.map((e) => r.apply(e).k);
  for (let i = 0; i < cur.events.length - 1 && !oracle.outOfTime; i++) {
    const e = cur.events[i];
    if (!e.kind.startsWith('l2.') || e.kind === 'l2.vmcall' || kinds[i] !== 'exit') continue;
    const events = cur.events.slice();
    events[i] = { kind: 'l2.vmcall', vcpu: (e as { vcpu: number }).vcpu };
    const cand = { ...cur, events };
    const x = oracle.test(cand);
    if (x) {
      cur = cand;
      best = x;
      progress();
    }
  }
  return { c: cur, r: best };
}

/** Remove any two events at once (ddmin's result is only 1-minimal), for small traces. */
function pairs(c: Candidate, oracle: Oracle, progress: (n: number) => void): { c: Candidate; r: DiffResult | null } {
  let cur = c;
  let best: DiffResult | null = null;
  let again = true;
  while (again && cur.events.length <= 40 && !oracle.outOfTime) {
    again = false;
    outer: for (let i = cur.events.length - 1; i >= 1; i--) {
      for (let j = i - 1; j >= 0; j--) {
        if (oracle.outOfTime) break outer;
        const keep = cur.events.map((_, k) => k).filter((k) => k !== i && k !== j);
        const cand = sub(cur, keep);
        const r = oracle.test(cand);
        if (r) {
          cur = cand;
          best = r;
          again = true;
          progress(cur.events.length);
          break outer;
        }
      }
    }
  }
  return { c: cur, r: best };
}

function simplifyValues(c: Candidate, oracle: Oracle, progress: () => void): { c: Candidate; r: DiffResult | null } {
  let cur = c;
  let best: DiffResult | null = null;
  const tryEvent = (i: number, e: TraceEvent): boolean => {
    const events = cur.events.slice();
    events[i] = e;
    const cand = { ...cur, events };
    const r = oracle.test(cand);
    if (r) {
      cur = cand;
      best = r;
      progress();
    }
    return !!r;
  };
  for (let i = 0; i < cur.events.length && !oracle.outOfTime; i++) {
    // an address another earlier event already names (two vCPUs sharing a region makes a store redundant)
    const e0 = cur.events[i] as unknown as Record<string, unknown>;
    if (typeof e0.gpa === 'bigint') {
      const seen: bigint[] = [];
      for (let j = 0; j < i; j++) {
        const g = (cur.events[j] as unknown as Record<string, unknown>).gpa;
        if (typeof g === 'bigint' && g !== e0.gpa && !seen.includes(g)) seen.push(g);
      }
      for (const g of seen.slice(0, 8)) if (tryEvent(i, { ...cur.events[i], gpa: g } as TraceEvent)) break;
    }
    for (const [name, width] of valueFields(cur.events[i])) {
      const get = () => BigInt((cur.events[i] as unknown as Record<string, bigint | number>)[name]);
      for (const v of simplerValues(get(), width)) {
        if (oracle.outOfTime) break;
        if (v < get() && tryEvent(i, withField(cur.events[i], name, v))) break;
      }
      // then clear set bits one at a time, high to low (a value that must keep some bits keeps only those)
      for (let b = width - 1; b >= 0 && !oracle.outOfTime; b--) {
        const v = get();
        const bit = 1n << BigInt(b);
        if (v & bit) tryEvent(i, withField(cur.events[i], name, v & ~bit));
      }
    }
  }
  return { c: cur, r: best };
}

/** vCPU fields of an event renumbered through `map`. */
function renumber(e: TraceEvent, map: ReadonlyMap<number, number>): TraceEvent {
  const out = { ...e } as Record<string, unknown>;
  for (const [name, type] of EVENT_SCHEMA[e.kind].fields) if (type === 'vcpu') out[name] = map.get(out[name] as number) ?? out[name];
  return out as unknown as TraceEvent;
}

/** Events of the same length as `c` but one event changed or moved: the moves the lookahead tries. */
function* rewrites(c: Candidate, baseKinds: readonly string[]): Generator<Candidate> {
  const n = c.events.length;
  const withEvent = (i: number, e: TraceEvent): Candidate => {
    const events = c.events.slice();
    events[i] = e;
    return { ...c, events };
  };
  const rec = (e: TraceEvent) => e as unknown as Record<string, unknown>;
  const renamed = new Set<bigint>();
  for (let i = 0; i < n; i++) {
    const e = c.events[i];
    if (e.kind === 'l1.vmlaunch') yield withEvent(i, { kind: 'l1.vmresume', vcpu: e.vcpu });
    if (e.kind === 'l1.vmresume') yield withEvent(i, { kind: 'l1.vmlaunch', vcpu: e.vcpu });
    if (e.kind.startsWith('l2.') && e.kind !== 'l2.vmcall' && baseKinds[i] === 'exit') yield withEvent(i, { kind: 'l2.vmcall', vcpu: (e as { vcpu: number }).vcpu });
    // an address (or, for the VMCS fields L0 dereferences, a value) another event names, or its page with this offset
    const gpas: bigint[] = [];
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const g = rec(c.events[j]).gpa;
      if (typeof g === 'bigint' && !gpas.includes(g)) gpas.push(g);
    }
    const retarget = (cur: bigint) => {
      const out: bigint[] = [];
      for (const g of gpas) for (const x of [g, (g & ~0xfffn) | (cur & 0xfffn)]) if (x !== cur && !out.includes(x)) out.push(x);
      return out;
    };
    const g0 = rec(e).gpa;
    if (typeof g0 === 'bigint') for (const g of retarget(g0)) yield withEvent(i, { ...e, gpa: g } as TraceEvent);
    if ((e.kind === 'l1.vmwrite' || e.kind === 'l1.evmcs-write') && ADDRESS_FIELDS.has(e.field)) {
      const values: bigint[] = [];
      for (const o of c.events) if ((o.kind === 'l1.vmwrite' || o.kind === 'l1.evmcs-write') && o.field === e.field && o.value !== e.value && !values.includes(o.value)) values.push(o.value);
      for (const v of [...values, ...retarget(e.value)]) yield withEvent(i, { ...e, value: v });
      // the page it names renamed to guest page 0 everywhere: a fresh vmcs12 names page 0 already, so the write can go
      if (e.value !== 0n && e.value !== INVALID_GPA && !renamed.has(e.value)) {
        renamed.add(e.value);
        yield renameAddress(c, e.value);
      }
    }
    // a store from another vCPU (memory is the VM's)
    if ((e.kind === 'l1.write' || e.kind === 'l1.msr-bitmap') && c.header.config.vcpus > 1) for (let v = 0; v < c.header.config.vcpus; v++) if (v !== e.vcpu) yield withEvent(i, { ...e, vcpu: v });
  }
  // one event earlier
  for (let i = 1; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const order = [...Array(n).keys()];
      order.splice(i, 1);
      order.splice(j, 0, i);
      yield sub(c, order);
    }
  }
}

/**
 * For small traces: one rewrite (an event changed or moved earlier) that
 * lets one event, or two adjacent ones, go. Neither alone shrinks the
 * trace, so ddmin cannot find these (an L1 that re-enters a second vmcs12
 * where resuming the first would do; a control written after the entry it
 * matters for).
 */
function lookahead(c: Candidate, oracle: Oracle, progress: (n: number) => void): { c: Candidate; r: DiffResult | null } {
  let cur = c;
  let best: DiffResult | null = null;
  for (let improved = true; improved && cur.events.length <= 24 && !oracle.outOfTime; ) {
    improved = false;
    const r0 = new Replayer(initialState(cur.header, oracle.base), oracle.base);
    const kinds = cur.events.map((e) => r0.apply(e).k);
    search: for (const w of rewrites(cur, kinds)) {
      for (let k = w.events.length - 2; k >= 0; k--) {
        for (const drop of [[k], [k, k + 1]]) {
          if (oracle.outOfTime) break search;
          if (drop[drop.length - 1] >= w.events.length - 1) continue;
          const cand = sub(w, w.events.map((_, x) => x).filter((x) => !drop.includes(x)));
          const r = oracle.test(cand);
          if (r) {
            cur = cand;
            best = r;
            improved = true;
            progress(cur.events.length);
            break search;
          }
        }
      }
    }
  }
  return { c: cur, r: best };
}

/**
 * Guest address `a` renamed to 0 everywhere: the addresses from `a` to the
 * end of its page move down by `a` (event addresses, the VMCS fields L0
 * dereferences), gfns of its page become 0. Address 0 is what a fresh
 * vmcs12 names already, so the write of `a` can go (a posted-interrupt
 * descriptor or an APIC page L1 set up only to have one).
 */
function renameAddress(c: Candidate, a: bigint): Candidate {
  const page = a & ~0xfffn;
  const move = (x: bigint) => (x >= a && x < page + 0x1000n ? x - a : x);
  const events = c.events.map((e) => {
    const o = { ...e } as Record<string, unknown>;
    if (typeof o.gpa === 'bigint') o.gpa = move(o.gpa);
    if (typeof o.gfn === 'bigint' && o.gfn === page >> 12n) o.gfn = 0n;
    if ((e.kind === 'l1.vmwrite' || e.kind === 'l1.evmcs-write') && ADDRESS_FIELDS.has(e.field)) o.value = move(e.value);
    return o as unknown as TraceEvent;
  });
  return { ...c, events };
}

/** Every guest address at or above `d` moved down by `d` (events, memslots, the VMCS fields L0 dereferences). */
function translate(c: Candidate, d: bigint): Candidate {
  const down = (x: bigint) => (x >= d && x !== INVALID_GPA ? x - d : x);
  const events = c.events.map((e) => {
    const o = { ...e } as Record<string, unknown>;
    if (typeof o.gpa === 'bigint') o.gpa = down(o.gpa);
    if (typeof o.gfn === 'bigint') o.gfn = down((o.gfn as bigint) << 12n) >> 12n;
    if ((e.kind === 'l1.vmwrite' || e.kind === 'l1.evmcs-write') && ADDRESS_FIELDS.has(e.field)) o.value = down(e.value);
    return o as unknown as TraceEvent;
  });
  const memslots = c.header.config.memslots.map((m) => ({ ...m, gfn: down(m.gfn << 12n) >> 12n }));
  return { ...c, events, header: { ...c.header, config: { ...c.header.config, memslots } } };
}

function renumberSlots(c: Candidate, map: ReadonlyMap<number, number>): Candidate {
  const events = c.events.map((e) => (typeof (e as { slot?: number }).slot === 'number' ? ({ ...e, slot: map.get((e as { slot: number }).slot) ?? (e as { slot: number }).slot } as TraceEvent) : e));
  const memslots = c.header.config.memslots.map((m) => ({ ...m, slot: map.get(m.slot) ?? m.slot })).sort((a, b) => a.slot - b.slot);
  return { ...c, events, header: { ...c.header, config: { ...c.header.config, memslots } } };
}

function simplifyHeader(c: Candidate, oracle: Oracle): { c: Candidate; r: DiffResult | null } {
  let cur = c;
  let best: DiffResult | null = null;
  const attempt = (cand: Candidate) => {
    if (oracle.outOfTime) return;
    const r = oracle.test(cand);
    if (r) {
      cur = cand;
      best = r;
    }
  };
  // vCPUs used, renumbered from 0 in order of first use
  const used: number[] = [];
  for (const e of cur.events) for (const [name, type] of EVENT_SCHEMA[e.kind].fields) if (type === 'vcpu') {
    const v = (e as unknown as Record<string, number>)[name];
    if (!used.includes(v)) used.push(v);
  }
  const compact = used.every((v, i) => v === i) && used.length === cur.header.config.vcpus;
  if (!compact && used.length) {
    const map = new Map(used.map((v, i) => [v, i] as const));
    attempt({ ...cur, header: { ...cur.header, config: { ...cur.header.config, vcpus: used.length } }, events: cur.events.map((e) => renumber(e, map)) });
  }
  // memslots, one at a time
  for (const s of [...cur.header.config.memslots]) {
    const memslots = cur.header.config.memslots.filter((m) => m.slot !== s.slot);
    attempt({ ...cur, header: { ...cur.header, config: { ...cur.header.config, memslots } } });
  }
  // the whole trace moved down to guest address 0 (a fuzzed part sits in a window of its own), memslots numbered from 0
  const slots = cur.header.config.memslots;
  if (slots.length) {
    const low = slots.reduce((m, x) => (x.gfn < m ? x.gfn : m), slots[0].gfn);
    if (low > 0n) attempt(translate(cur, low << 12n));
    const order = [...cur.header.config.memslots].sort((a, b) => (a.gfn < b.gfn ? -1 : a.gfn > b.gfn ? 1 : 0)).map((x) => x.slot);
    if (order.some((x, i) => x !== i)) attempt(renumberSlots(cur, new Map(order.map((x, i) => [x, i] as const))));
  }
  // configuration flags back to their defaults, one at a time
  const defaults = defaultConfig();
  for (const k of CONFIG_FLAGS) {
    if (cur.header.config[k] === defaults[k]) continue;
    attempt({ ...cur, header: { ...cur.header, config: { ...cur.header.config, [k]: defaults[k] } } });
  }
  // physical CPUs
  if (cur.header.config.pcpus > 1) {
    const maxCpu = Math.max(-1, ...cur.events.map((e) => ((e as { cpu?: number }).cpu ?? -1)));
    if (maxCpu + 1 < cur.header.config.pcpus) attempt({ ...cur, header: { ...cur.header, config: { ...cur.header.config, pcpus: Math.max(1, maxCpu + 1) } } });
  }
  return { c: cur, r: best };
}

// ---------------------------------------------------------------- other forms of a trace

const vcpuOfEvent = (e: TraceEvent) => (e as { vcpu?: number }).vcpu;

/** The vCPUs the events name, in order of first use. */
function usedVcpus(events: readonly TraceEvent[]): number[] {
  const used: number[] = [];
  for (const e of events) for (const [name, type] of EVENT_SCHEMA[e.kind].fields) if (type === 'vcpu') {
    const v = (e as unknown as Record<string, number>)[name];
    if (!used.includes(v)) used.push(v);
  }
  return used;
}

/**
 * Fewer vCPUs: each vCPU's events dropped, and each vCPU's events given to
 * another vCPU (a bug that needs one vCPU's state and another's events may
 * need only one vCPU). The header keeps its vCPU count until
 * `simplifyHeader` renumbers.
 */
function* fewerVcpus(c: Candidate): Generator<Candidate> {
  const used = usedVcpus(c.events);
  if (used.length < 2) return;
  for (const v of [...used].reverse()) {
    const keep = c.events.map((_, i) => i).filter((i) => vcpuOfEvent(c.events[i]) !== v);
    if (keep.length) yield sub(c, keep);
    for (const u of used) if (u !== v) yield { ...c, events: c.events.map((e) => renumber(e, new Map([[v, u]]))) };
  }
}

/**
 * One vmcs12 where a vCPU uses two: the second's address renamed to the
 * first's (VMPTRLD, VMCLEAR, the revision store), each VMWRITE made while
 * one of them was current moved to just before the next entry made with
 * that one current, and a VMLAUNCH of a VMCS launched before (and not
 * cleared since) made a VMRESUME. What L1 set up in the other VMCS it now
 * writes when it needs it: pi-pending-not-cleared's two vmcs12s, one
 * without posted interrupts and one with, become one whose controls change
 * between the two entries (13 -> 10-12 events). The writes go before the
 * next entry with their vmcs12 current, or before the last one.
 */
function* fewerVmcs12s(c: Candidate): Generator<Candidate> {
  const byVcpu = new Map<number, bigint[]>();
  for (const e of c.events) {
    if (e.kind !== 'l1.vmptrld') continue;
    const l = byVcpu.get(e.vcpu) ?? [];
    if (!l.includes(e.gpa)) l.push(e.gpa);
    byVcpu.set(e.vcpu, l);
  }
  for (const [v, addrs] of byVcpu) {
    // the vmcs12 current on vCPU v at each event
    const currentAt: (bigint | null)[] = [];
    let cur: bigint | null = null;
    for (const e of c.events) {
      if (vcpuOfEvent(e) === v && e.kind === 'l1.vmptrld') cur = e.gpa;
      currentAt.push(cur);
    }
    const isEntry = (i: number) => vcpuOfEvent(c.events[i]) === v && (c.events[i].kind === 'l1.vmlaunch' || c.events[i].kind === 'l1.vmresume');
    for (const keep of addrs) {
      for (const gone of addrs) {
        if (keep === gone) continue;
        const isOurs = (i: number) => vcpuOfEvent(c.events[i]) === v && c.events[i].kind === 'l1.vmwrite' && (currentAt[i] === keep || currentAt[i] === gone);
        // each write just before the next entry with its vmcs12 current, or just before the last one
        for (const last of [false, true]) {
          const before = new Map<number, number[]>();
          const moving = new Set<number>();
          c.events.forEach((_, i) => {
            if (!isOurs(i)) return;
            let t = -1;
            for (let j = i + 1; j < c.events.length; j++) {
              if (!isEntry(j) || currentAt[j] !== currentAt[i]) continue;
              t = j;
              if (!last) break;
            }
            if (t < 0) return;
            moving.add(i);
            before.set(t, [...(before.get(t) ?? []), i]);
          });
          const order: number[] = [];
          c.events.forEach((_, i) => {
            if (!moving.has(i)) order.push(...(before.get(i) ?? []), i);
          });
          yield* oneVmcs12(sub(c, order), v, keep, gone);
        }
      }
    }
  }
}

/**
 * `gone` renamed to `keep` in vCPU v's events; a second VMLAUNCH of the
 * one VMCS made a VMRESUME, or preceded by VMCLEAR and VMPTRLD (so a
 * divergence on a VMLAUNCH stays on one).
 */
function* oneVmcs12(moved: Candidate, v: number, keep: bigint, gone: bigint): Generator<Candidate> {
  for (const relaunch of [false, true]) {
    const launched = new Set<bigint>();
    let current: bigint | null = null;
    const events: TraceEvent[] = [];
    const origin: number[] = [];
    moved.events.forEach((e, i) => {
      let r = vcpuOfEvent(e) === v && (e as { gpa?: bigint }).gpa === gone ? ({ ...e, gpa: keep } as TraceEvent) : e;
      if (vcpuOfEvent(r) === v) {
        if (r.kind === 'l1.vmptrld') current = r.gpa;
        if (r.kind === 'l1.vmclear') launched.delete(r.gpa);
        if (r.kind === 'l1.vmlaunch' && current !== null) {
          if (launched.has(current) && relaunch) {
            events.push({ kind: 'l1.vmclear', vcpu: v, gpa: current }, { kind: 'l1.vmptrld', vcpu: v, gpa: current });
            origin.push(-1, -1);
          } else if (launched.has(current)) r = { kind: 'l1.vmresume', vcpu: v };
          launched.add(current);
        }
      }
      events.push(r);
      origin.push(moved.origin[i]);
    });
    yield { header: moved.header, events, origin };
  }
}

/**
 * The other VMCS form. An enlightened VMCS becomes a plain one: the eVMCS
 * pointer a VMPTRLD, the store of the eVMCS revision (KVM_EVMCS_VERSION,
 * which nested_vmx_handle_enlightened_vmptrld checks) a store of the vmcs12
 * revision id (which handle_vmptrld checks; added when there was none), the
 * member stores VMWRITEs, the control set-up its VMCS form, the clean-field
 * and enlightenment stores gone (a plain VMCS has neither). An eVMCS has no
 * launch state (nested_vmx_run sets vmcs12->launch_state = !launch), so a
 * trace may VMRESUME it first; a second candidate makes the first entry
 * with each VMCS a VMLAUNCH and the later ones VMRESUMEs. A plain VMCS
 * becomes an enlightened one the other way round: VMPTRLD names the eVMCS,
 * the revision store stores KVM_EVMCS_VERSION, VMWRITEs and the control
 * set-up store members of the current eVMCS, VMCLEARs of it go. Events the
 * other form has no counterpart for stay as they are; the oracle judges the
 * result.
 */
function otherVmcsForms(c: Candidate): Candidate[] {
  const enlightened = c.events.some((e) => e.kind.startsWith('l1.evmcs-'));
  const revisionStore = (e: TraceEvent, gpas: ReadonlySet<bigint>, rev: number): e is Extract<TraceEvent, { kind: 'l1.write' }> =>
    e.kind === 'l1.write' && e.size === 4 && e.value === BigInt(rev) && gpas.has(e.gpa);
  if (enlightened) {
    const ptrs = new Set(c.events.flatMap((e) => (e.kind === 'l1.evmcs-ptr' ? [e.gpa] : [])));
    return [false, true].map((relaunch) => {
      const events: TraceEvent[] = [];
      const origin: number[] = [];
      const push = (e: TraceEvent, o: number) => {
        events.push(e);
        origin.push(o);
      };
      const stored = new Set<bigint>();
      const current = new Map<number, bigint>();
      const launched = new Set<string>();
      c.events.forEach((e, i) => {
        const o = c.origin[i];
        if (revisionStore(e, ptrs, KVM_EVMCS_VERSION)) {
          stored.add(e.gpa);
          push({ ...e, value: BigInt(VMCS12_REVISION) }, o);
        } else if (e.kind === 'l1.evmcs-ptr') {
          if (e.gpa === INVALID_GPA) return void current.delete(e.vcpu);
          if (!stored.has(e.gpa)) push({ kind: 'l1.write', vcpu: e.vcpu, gpa: e.gpa, size: 4, value: BigInt(VMCS12_REVISION) }, -1);
          stored.add(e.gpa);
          current.set(e.vcpu, e.gpa);
          push({ kind: 'l1.vmptrld', vcpu: e.vcpu, gpa: e.gpa }, o);
        } else if (e.kind === 'l1.evmcs-write') push({ kind: 'l1.vmwrite', vcpu: e.vcpu, field: e.field, value: e.value }, o);
        else if (e.kind === 'l1.evmcs-ctls-must-be-1') push({ kind: 'l1.vmcs-ctls-must-be-1', vcpu: e.vcpu }, o);
        else if (e.kind === 'l1.evmcs-clean' || e.kind === 'l1.evmcs-control') return;
        else if (relaunch && (e.kind === 'l1.vmlaunch' || e.kind === 'l1.vmresume') && current.has(e.vcpu)) {
          const key = `${e.vcpu}:${current.get(e.vcpu)}`;
          push({ kind: launched.has(key) ? 'l1.vmresume' : 'l1.vmlaunch', vcpu: e.vcpu }, o);
          launched.add(key);
        } else push(e, o);
      });
      return { header: { ...c.header, config: { ...c.header.config, evmcs: false } }, events, origin };
    });
  }
  if (!c.events.some((e) => e.kind === 'l1.vmptrld')) return [];
  const events: TraceEvent[] = [];
  const origin: number[] = [];
  const push = (e: TraceEvent, o: number) => {
    events.push(e);
    origin.push(o);
  };
  const targets = new Set(c.events.flatMap((e) => (e.kind === 'l1.vmptrld' ? [e.gpa] : [])));
  const current = new Map<number, bigint>();
  c.events.forEach((e, i) => {
    const o = c.origin[i];
    if (revisionStore(e, targets, VMCS12_REVISION)) push({ ...e, value: BigInt(KVM_EVMCS_VERSION) }, o);
    else if (e.kind === 'l1.vmcs-ctls-must-be-1' && current.has(e.vcpu)) push({ kind: 'l1.evmcs-ctls-must-be-1', vcpu: e.vcpu, gpa: current.get(e.vcpu)! }, o);
    else if (e.kind === 'l1.vmclear' && targets.has(e.gpa)) return;
    else if (e.kind === 'l1.vmptrld') {
      current.set(e.vcpu, e.gpa);
      push({ kind: 'l1.evmcs-ptr', vcpu: e.vcpu, gpa: e.gpa }, o);
    } else if (e.kind === 'l1.vmwrite' && current.has(e.vcpu)) push({ kind: 'l1.evmcs-write', vcpu: e.vcpu, gpa: current.get(e.vcpu)!, field: e.field, value: e.value }, o);
    else push(e, o);
  });
  return [{ header: { ...c.header, config: { ...c.header.config, evmcs: true } }, events, origin }];
}

/**
 * Shorter set-up: stores to one aligned quadword by one vCPU (L1 filling a
 * page byte by byte, setting MSR-bitmap bits one at a time) become one
 * 8-byte store of the value the quadword has after the last of them,
 * placed there. The value comes from the reference replay.
 */
function shorterSetup(c: Candidate, base: Profile): Candidate | null {
  const r = new Replayer(initialState(c.header, base), base);
  const groups = new Map<string, number[]>();
  const after: bigint[] = [];
  c.events.forEach((e, i) => {
    r.apply(e);
    if (e.kind !== 'l1.write' && e.kind !== 'l1.msr-bitmap') return;
    const q = e.kind === 'l1.write' ? e.gpa & ~7n : e.gpa;
    // an MSR-bitmap event stores one byte of the page at gpa: the byte's quadword is what changes
    const addr = e.kind === 'l1.write' ? q : q + BigInt(msrBitmapByte(e.msr, e.access)) - (BigInt(msrBitmapByte(e.msr, e.access)) & 7n);
    if (e.kind === 'l1.write' && ((e.gpa & 7n) + BigInt(e.size) > 8n)) return;
    const key = `${e.vcpu}:${addr}`;
    groups.set(key, [...(groups.get(key) ?? []), i]);
    after[i] = readQword(r.peek(), addr) ?? -1n;
  });
  for (const [key, idx] of groups) {
    if (idx.length < 2) continue;
    const last = idx[idx.length - 1];
    if (after[last] < 0n) continue;
    const [vcpu, addr] = key.split(':');
    const drop = new Set(idx.slice(0, -1));
    const events: TraceEvent[] = [];
    const origin: number[] = [];
    c.events.forEach((e, i) => {
      if (drop.has(i)) return;
      events.push(i === last ? { kind: 'l1.write', vcpu: Number(vcpu), gpa: BigInt(addr), size: 8, value: after[last] } : e);
      origin.push(c.origin[i]);
    });
    return { ...c, events, origin };
  }
  return null;
}

/** Each control word's must-be-1 bits under the trace's configuration (the TRUE capability MSRs KVM reports). */
function mustBe1Bits(h: TraceHeader): Map<number, bigint> {
  const caps = kvmVmxCapMsrs({ ept: h.config.ept, vpid: h.config.vpid, apicv: h.config.apicv, pml: h.config.pml, vmwriteAnyField: h.config.vmwriteAnyField });
  return new Map(MUST_BE_1_CONTROLS.map(([field, msr]) => [field, caps.get(msr)! & 0xffffffffn]));
}

/**
 * The control set-up in one event: on a vCPU, VMWRITEs of a control word
 * that set no bit but its must-be-1 bits go, and one
 * l1.vmcs-ctls-must-be-1 comes before the first entry after them (it keeps
 * what is set, so later writes of other bits still count); in the eVMCS
 * form, such stores of the members of one eVMCS become one
 * l1.evmcs-ctls-must-be-1 of that eVMCS. Only when it saves events: two or
 * more such writes.
 */
function mustBe1Setups(c: Candidate): Candidate[] {
  const must = mustBe1Bits(c.header);
  const pureBits = (field: number, value: bigint) => must.has(field) && (value & ~must.get(field)!) === 0n;
  // the group of a pure write: its vCPU, and the eVMCS it stores into ('' for VMWRITE)
  const group = (e: TraceEvent): string | null => {
    if (e.kind === 'l1.vmwrite' && pureBits(e.field, e.value)) return `${e.vcpu}:`;
    if (e.kind === 'l1.evmcs-write' && pureBits(e.field, e.value)) return `${e.vcpu}:${e.gpa}`;
    return null;
  };
  const groups = new Map<string, number[]>();
  c.events.forEach((e, i) => {
    const g = group(e);
    if (g !== null) groups.set(g, [...(groups.get(g) ?? []), i]);
  });
  const out: Candidate[] = [];
  for (const [key, drop] of groups) {
    if (drop.length < 2) continue;
    const [vs, gpa] = key.split(':');
    const v = Number(vs);
    const setup: TraceEvent = gpa === '' ? { kind: 'l1.vmcs-ctls-must-be-1', vcpu: v } : { kind: 'l1.evmcs-ctls-must-be-1', vcpu: v, gpa: BigInt(gpa) };
    const dropped = new Set(drop);
    const before = new Set<number>();
    let pending = false;
    c.events.forEach((e, i) => {
      if (dropped.has(i)) pending = true;
      else if (pending && vcpuOfEvent(e) === v && (e.kind === 'l1.vmlaunch' || e.kind === 'l1.vmresume')) {
        before.add(i);
        pending = false;
      }
    });
    const last = drop[drop.length - 1];
    const events: TraceEvent[] = [];
    const origin: number[] = [];
    c.events.forEach((e, i) => {
      if (before.has(i) || (pending && i === last)) {
        events.push(setup);
        origin.push(-1);
      }
      if (dropped.has(i)) return;
      events.push(e);
      origin.push(c.origin[i]);
    });
    out.push({ ...c, events, origin });
  }
  return out;
}

/**
 * The same L2 MSR access on another MSR: one another event of the trace
 * names, or, for an x2APIC MSR, the TPR (0x808). nested_vmx_prepare_msr_bitmap
 * passes the x2APIC TPR through for reads and writes with "virtualize x2APIC
 * mode" alone, where the other x2APIC MSRs need APIC-register
 * virtualization or virtual-interrupt delivery (and that, external-interrupt
 * exiting): a finding on EOI or SELF_IPI whose bug is in the x2APIC range as
 * a whole keeps its signature on the TPR with fewer controls to set.
 */
function otherMsrs(c: Candidate): Candidate[] {
  const named = new Set<number>();
  for (const e of c.events) if ('msr' in e && typeof e.msr === 'number') named.add(e.msr);
  const out: Candidate[] = [];
  c.events.forEach((e, i) => {
    if (e.kind !== 'l2.rdmsr' && e.kind !== 'l2.wrmsr') return;
    const tries = new Set<number>(named);
    if (e.msr >= 0x800 && e.msr <= 0x8ff) tries.add(MSR.MSR_X2APIC_TPR);
    tries.delete(e.msr);
    for (const msr of tries) {
      const events = c.events.slice();
      events[i] = { ...e, msr };
      out.push({ ...c, events });
    }
  });
  return out;
}

/** The byte of an MSR bitmap page that holds an MSR's read or write intercept bit (SDM 25.6.9: four 1-KiB quarters). */
function msrBitmapByte(msr: number, access: 'read' | 'write'): number {
  const high = msr >= 0xc0000000;
  return (access === 'write' ? 0x800 : 0) + (high ? 0x400 : 0) + ((msr & 0x1fff) >> 3);
}

/** The quadword at a guest address in a world (null when no memslot backs it). */
function readQword(w: World, gpa: bigint): bigint | null {
  const gfn = Number(gpa >> 12n);
  const slot = w.mem.slots.find((s) => gfn >= Number(s.gfn) && gfn < Number(s.gfn) + s.npages);
  if (!slot) return null;
  const pfn = w.mem.hvaToPfn[slot.hva + (gfn - Number(slot.gfn))];
  const page = pfn === undefined ? undefined : w.mem.pages[pfn];
  const off = Number(gpa & 0xfffn);
  let v = 0n;
  for (let k = 7; k >= 0; k--) v = (v << 8n) | BigInt(page ? page[off + k] : 0);
  return v;
}

/**
 * Other forms of the trace, each reduced again (ddmin, pairs, the header)
 * and kept when it ends smaller than the trace as it is: fewer vCPUs, the
 * other VMCS form, a shorter set-up. Every candidate passes the oracle, so
 * the kind and signature of the divergence stay.
 */
function changeForm(c: Candidate, oracle: Oracle, progress: (n: number) => void): { c: Candidate; r: DiffResult | null } {
  let cur = c;
  let best: DiffResult | null = null;
  const vcpus = (x: Candidate) => usedVcpus(x.events).length;
  const better = (x: Candidate) => x.events.length < cur.events.length || (x.events.length === cur.events.length && vcpus(x) < vcpus(cur));
  for (let improved = true; improved && !oracle.outOfTime; ) {
    improved = false;
    const forms: (Candidate | null)[] = [...fewerVcpus(cur), ...otherVmcsForms(cur), shorterSetup(cur, oracle.base), ...mustBe1Setups(cur), ...fewerVmcs12s(cur)];
    // another MSR: the controls it needed can only go once their bits are cleared, so the values are simplified first
    const msrForms = new Set(otherMsrs(cur));
    forms.push(...msrForms);
    for (const f of forms) {
      if (!f || oracle.outOfTime) continue;
      const r = oracle.test(f);
      if (!r) continue;
      let x: { c: Candidate; r: DiffResult } = { c: f, r };
      const step = (y: { c: Candidate; r: DiffResult | null }) => {
        if (y.r) x = { c: y.c, r: y.r };
      };
      if (msrForms.has(f)) step(simplifyValues(x.c, oracle, () => undefined));
      step(ddmin(x.c, oracle, () => undefined));
      if (x.r.divergence && x.r.divergence.index + 1 < x.c.events.length) x = { c: sub(x.c, Array.from({ length: x.r.divergence.index + 1 }, (_, i) => i)), r: x.r };
      if (!oracle.outOfTime) step(pairs(x.c, oracle, () => undefined));
      if (!oracle.outOfTime) step(simplifyHeader(x.c, oracle));
      if (better(x.c)) {
        cur = x.c;
        best = x.r;
        improved = true;
        progress(cur.events.length);
        break;
      }
    }
  }
  return { c: cur, r: best };
}

/**
 * Minimize a trace on which `other` diverges from `base`. Throws
 * NoDivergence when it does not.
 */
export function minimizeTrace(header: TraceHeader, events: readonly TraceEvent[], base: Profile, other: Profile, opts: MinimizeOptions = {}): MinimizeResult {
  const t0 = performance.now();
  const stateAt = opts.stateAt ?? 'entries';
  const baseKinds: string[] = [];
  const [hit] = screenProfiles(header, events, base, [other], { stateAt, baseKinds });
  if (!hit) throw new NoDivergence(base.name, other.name);
  const first = diffEvents(header, events.slice(0, hit.index + 1), base, other);
  if (!first.divergence) throw new NoDivergence(base.name, other.name);
  const kind = divergenceKind(first.divergence);
  const ignored = new Set<number>();
  baseKinds.forEach((k, i) => k === 'ignored' && ignored.add(i));
  const oracle = new Oracle(base, other, kind, ignored, { ...opts, stateAt }, t0);
  if (opts.signature) oracle.sig = opts.signature(first.divergence);
  const progress = (phase: string) => (n: number) => opts.onProgress?.(n, phase);

  let cur: Candidate = { header: { ...header, provenance: { ...header.provenance } }, events: events.slice(0, hit.index + 1), origin: Array.from({ length: hit.index + 1 }, (_, i) => i) };
  let res: DiffResult = first;
  const take = (x: { c: Candidate; r: DiffResult | null }) => {
    if (x.r) {
      cur = x.c;
      res = x.r;
    }
  };
  opts.onProgress?.(cur.events.length, 'cut');

  // coarse cuts: a whole vCPU, every host event
  const vcpuOf = (e: TraceEvent) => (e as { vcpu?: number }).vcpu;
  for (let v = header.config.vcpus - 1; v >= 0 && !oracle.outOfTime; v--) {
    const keep = cur.events.map((_, i) => i).filter((i) => vcpuOf(cur.events[i]) !== v);
    if (keep.length === cur.events.length || !keep.length) continue;
    const cand = sub(cur, keep);
    const r = oracle.test(cand);
    if (r) take({ c: cand, r });
  }
  {
    const keep = cur.events.map((_, i) => i).filter((i) => !cur.events[i].kind.startsWith('host.'));
    if (keep.length < cur.events.length && keep.length && !oracle.outOfTime) {
      const cand = sub(cur, keep);
      const r = oracle.test(cand);
      if (r) take({ c: cand, r });
    }
  }
  opts.onProgress?.(cur.events.length, 'coarse');
  // ddmin; the divergence moves with the events, so cut after it each time
  take(ddmin(cur, oracle, progress('ddmin')));
  if (res.divergence && res.divergence.index + 1 < cur.events.length) cur = sub(cur, Array.from({ length: res.divergence.index + 1 }, (_, i) => i));
  take(simplifyEvents(cur, oracle, () => opts.onProgress?.(cur.events.length, 'events')));
  take(simplifyValues(cur, oracle, () => opts.onProgress?.(cur.events.length, 'values')));
  // expect clauses say nothing about the divergence
  if (cur.events.some((e) => e.expect)) {
    const cand: Candidate = { ...cur, events: cur.events.map((e) => (e.expect ? (({ expect: _x, ...rest }) => rest as TraceEvent)(e) : e)) };
    const r = oracle.test(cand);
    if (r) take({ c: cand, r });
  }
  take(simplifyHeader(cur, oracle));
  if (opts.changeForm !== false) take(changeForm(cur, oracle, progress('form')));
  // events once more after the values and the header changed (cheap: the trace is small now), pairs of them, the lookahead
  for (let before = Infinity; cur.events.length < before && !oracle.outOfTime; ) {
    before = cur.events.length;
    take(ddmin(cur, oracle, progress('ddmin')));
    if (!oracle.outOfTime) take(pairs(cur, oracle, progress('pairs')));
    if (!oracle.outOfTime) take(lookahead(cur, oracle, progress('lookahead')));
  }
  if (res.divergence && res.divergence.index + 1 < cur.events.length) cur = sub(cur, Array.from({ length: res.divergence.index + 1 }, (_, i) => i));

  return {
    header: cur.header,
    events: cur.events,
    before: events.length,
    beforeCut: hit.index + 1,
    after: cur.events.length,
    ms: Math.round(performance.now() - t0),
    tests: oracle.tests,
    timedOut: oracle.stopped,
    kind,
    result: res,
  };
}

// ---------------------------------------------------------------- keeping it: canonical text and a jest test

/** The trace without provenance, in canonical text: what a finding's name hashes. */
export function canonicalTraceText(header: TraceHeader, events: readonly TraceEvent[]): string {
  return formatTextTrace({ ...header, provenance: {} }, events);
}

export interface JestOptions {
  base: string;
  profile: string;
  /** modules that register plugin paths, as the test file should import them (relative to it) */
  pathModules?: string[];
  /** what the test is called */
  name?: string;
  /** a line or two of context for the comment at the top */
  description?: string;
}

/**
 * A ready-to-run jest test (TypeScript, imports from @nvx/...) that fails
 * while `profile` still diverges from `base` on the trace.
 */
export function jestTest(header: TraceHeader, events: readonly TraceEvent[], o: JestOptions): string {
  const text = formatTextTrace(header, events);
  const name = o.name ?? `${o.profile} matches ${o.base} on this minimized trace`;
  const lines: string[] = [];
  lines.push('/**');
  lines.push(` * Written by nvx minimize: fails while ${o.profile} diverges from ${o.base} on the trace below.`);
  for (const l of (o.description ?? '').split('\n').filter(Boolean)) lines.push(` * ${l}`);
  lines.push(' */');
  lines.push("import { parseProfile } from '@nvx/emulator';");
  const mods = o.pathModules ?? [];
  lines.push(`import { diffEvents${mods.length ? ', loadPathModule' : ''} } from '@nvx/check';`);
  lines.push("import { formatEvent, formatOutcome, parseTextTrace } from '@nvx/trace';");
  lines.push('');
  lines.push(`const TRACE = ${JSON.stringify(text)};`);
  lines.push('');
  if (mods.length) {
    lines.push('beforeAll(async () => {');
    lines.push('  // the plugin paths the profile names');
    for (const m of mods) lines.push(`  await loadPathModule(require.resolve(${JSON.stringify(m)}));`);
    lines.push('});');
    lines.push('');
  }
  lines.push(`test(${JSON.stringify(name)}, () => {`);
  lines.push('  const { header, events } = parseTextTrace(TRACE);');
  lines.push(`  const r = diffEvents(header, events, parseProfile(${JSON.stringify(o.base)}), parseProfile(${JSON.stringify(o.profile)}), { checkpointEvery: 1 });`);
  lines.push('  const d = r.divergence;');
  lines.push("  const where = d ? `event ${d.index} (${formatEvent(d.event)}): ${formatOutcome(d.base)} vs ${formatOutcome(d.other)}, ${d.verdict}` : 'none';");
  lines.push("  expect(where).toBe('none');");
  lines.push('});');
  lines.push('');
  return lines.join('\n');
}
