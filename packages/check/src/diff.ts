/**
 * Lockstep differential replay: two profiles consume the same events side by
 * side. Outcomes (small) are compared after every event; the architectural
 * state (large) at checkpoints every K events and at the end. When a state
 * difference shows up at a checkpoint, the stretch since the previous one is
 * replayed event by event to find the first event behind it.
 */
import { AREA_IDS, ArchDifference, Costs, Profile, Replayer, World, archHash, diffArch, sameArchState } from '@nvx/emulator';
import { Outcome, TraceEvent, TraceHeader, eventVcpu, outcomeEquals } from '@nvx/trace';
import { ContractMonitor, ContractViolation } from './contracts';

export interface Divergence {
  index: number;
  event: TraceEvent;
  /** 'outcome': the two outcomes differ; 'state': same outcomes, different architectural state after the event */
  kind: 'outcome' | 'state';
  base: Outcome;
  other: Outcome;
  /** what L1, L2 or the host could read that differs after the event */
  archDiff: ArchDifference[];
  /** each side's path-private facts that explain it, by area */
  explain: { base: Record<string, string>; other: Record<string, string> };
  /** the contract broken at or before the divergence, if any: then it is permitted */
  contract?: ContractViolation;
  verdict: 'bug' | 'permitted';
  /** the divergence was found again by a replay from scratch */
  confirmed: boolean;
  /**
   * With `firstState`, when the states parted before the outcomes did: the
   * first event whose outcomes differ (what L1, L2 or the host first saw),
   * while `index` is the first event after which the states differ (what
   * `nvx bisect` names).
   */
  firstObservable?: { index: number; event: TraceEvent; base: Outcome; other: Outcome };
}

export interface DiffResult {
  base: string;
  other: string;
  events: number;
  divergence: Divergence | null;
  violations: ContractViolation[];
  costs: { base: Costs; other: Costs };
}

export interface DiffOptions {
  /** compare whole architectural states every K events (default 1000) */
  checkpointEvery?: number;
  /** stop reading after this many events */
  limit?: number;
  /** called every `progressEvery` events */
  onProgress?: (events: number) => void;
  progressEvery?: number;
  /**
   * On an outcome divergence, replay the stretch since the last agreeing
   * checkpoint comparing states after every event, and report the first
   * event after which the states differ if it comes earlier (the event
   * `nvx bisect` names), with the outcome divergence as `firstObservable`.
   */
  firstState?: boolean;
}

/** Each path's private facts that explain an event on its vCPU, keyed `area/path: fact`. */
export function explainSide(r: Replayer, e: TraceEvent): Record<string, string> {
  const w = r.peek();
  const vi = eventVcpu(e);
  const v = vi === undefined ? undefined : w.vcpus[vi];
  const out: Record<string, string> = {};
  if (!v) return out;
  const hint = 'msr' in e ? { msr: (e as { msr: number }).msr, write: e.kind.endsWith('wrmsr') } : {};
  for (const a of AREA_IDS) {
    const p = r.profile.paths[a];
    if (!p.explain) continue;
    for (const [k, val] of Object.entries(p.explain(w, v, hint))) out[`${a}/${p.name}: ${k}`] = val;
  }
  return out;
}

/**
 * Do the two replays' architectural states differ? The direct comparison
 * first (it agrees with `archHash`); the hashes decide only when it sees a
 * difference, so a checkpoint where the states agree hashes nothing.
 */
function statesDiffer(a: Replayer, b: Replayer): boolean {
  return !sameArchState(a.peek(), b.peek()) && archHash(a.peek()) !== archHash(b.peek());
}

/** The lockstep engine over an event source; synchronous per event, fed chunk by chunk. */
export class Lockstep {
  readonly a: Replayer;
  readonly b: Replayer;
  readonly monitor = new ContractMonitor();
  private index = 0;
  private cpA: World;
  private cpB: World;
  private cpIndex = 0;
  private readonly k: number;
  private readonly firstState: boolean;
  /** events since the last checkpoint, kept to replay a stretch */
  private stretch: TraceEvent[] = [];
  divergence: Divergence | null = null;

  constructor(
    readonly header: TraceHeader,
    readonly base: Profile,
    readonly other: Profile,
    opts: DiffOptions = {},
  ) {
    this.a = Replayer.fromHeader(header, base);
    this.b = Replayer.fromHeader(header, other);
    this.k = Math.max(1, opts.checkpointEvery ?? 1000);
    this.firstState = !!opts.firstState;
    this.cpA = this.a.snapshot();
    this.cpB = this.b.snapshot();
  }

  get events(): number {
    return this.index;
  }

  /** Feed one event; returns false once a divergence is found. */
  push(e: TraceEvent): boolean {
    if (this.divergence) return false;
    const i = this.index++;
    this.monitor.observe(this.a.peek(), e, i);
    const oa = this.a.apply(e);
    const ob = this.b.apply(e);
    this.stretch.push(e);
    if (!outcomeEquals(oa, ob)) {
      const earlier = this.firstState ? this.earlierStateDivergence() : null;
      if (earlier) earlier.firstObservable = { index: i, event: e, base: oa, other: ob };
      this.divergence = earlier ?? this.make(i, e, 'outcome', oa, ob);
      return false;
    }
    if (this.stretch.length >= this.k) return this.checkpoint();
    return true;
  }

  /** Compare whole states now (call at the end of the trace). */
  finish(): Divergence | null {
    if (!this.divergence && this.stretch.length) this.checkpoint();
    return this.divergence;
  }

  private checkpoint(): boolean {
    if (statesDiffer(this.a, this.b)) {
      this.locateStateDivergence();
      return false;
    }
    this.cpA = this.a.snapshot();
    this.cpB = this.b.snapshot();
    this.cpIndex = this.index;
    this.stretch = [];
    return true;
  }

  /**
   * The states agreed at the last checkpoint: replay the stretch before the
   * current event from there, comparing states after each event, and return
   * the first state divergence, if any.
   */
  private earlierStateDivergence(): Divergence | null {
    const ra = new Replayer(this.cpA, this.base);
    const rb = new Replayer(this.cpB, this.other);
    for (let j = 0; j < this.stretch.length - 1; j++) {
      const e = this.stretch[j];
      const oa = ra.apply(e);
      const ob = rb.apply(e);
      if (statesDiffer(ra, rb)) return this.make(this.cpIndex + j, e, 'state', oa, ob, ra, rb);
    }
    return null;
  }

  /** Replay the stretch since the last checkpoint one event at a time, comparing states after each. */
  private locateStateDivergence(): void {
    const ra = new Replayer(this.cpA, this.base);
    const rb = new Replayer(this.cpB, this.other);
    for (let j = 0; j < this.stretch.length; j++) {
      const e = this.stretch[j];
      const oa = ra.apply(e);
      const ob = rb.apply(e);
      if (statesDiffer(ra, rb)) {
        this.divergence = this.make(this.cpIndex + j, e, 'state', oa, ob, ra, rb);
        return;
      }
    }
    // Not reproducible event by event: report at the checkpoint (should not happen: the reducer is deterministic).
    const e = this.stretch[this.stretch.length - 1];
    this.divergence = this.make(this.index - 1, e, 'state', { k: 'ok' }, { k: 'ok' });
  }

  private make(index: number, e: TraceEvent, kind: 'outcome' | 'state', oa: Outcome, ob: Outcome, ra: Replayer = this.a, rb: Replayer = this.b): Divergence {
    const contract = this.monitor.firstUpTo(index);
    return {
      index,
      event: e,
      kind,
      base: oa,
      other: ob,
      archDiff: diffArch(ra.peek(), rb.peek()),
      explain: { base: explainSide(ra, e), other: explainSide(rb, e) },
      contract,
      verdict: contract ? 'permitted' : 'bug',
      confirmed: false,
    };
  }
}

/** Lockstep over an in-memory event list; a divergence is re-found from scratch before it is reported. */
export function diffEvents(header: TraceHeader, events: readonly TraceEvent[], base: Profile, other: Profile, opts: DiffOptions = {}): DiffResult {
  const run = (list: readonly TraceEvent[]) => {
    const ls = new Lockstep(header, base, other, opts);
    for (const e of list) {
      if (!ls.push(e)) break;
      if (opts.onProgress && opts.progressEvery && ls.events % opts.progressEvery === 0) opts.onProgress(ls.events);
    }
    ls.finish();
    return ls;
  };
  const ls = run(opts.limit === undefined ? events : events.slice(0, opts.limit));
  const d = ls.divergence;
  if (d) {
    const again = run(events.slice(0, d.index + 1));
    d.confirmed = again.divergence?.index === d.index && again.divergence.kind === d.kind;
  }
  return { base: base.name, other: other.name, events: ls.events, divergence: d, violations: ls.monitor.violations, costs: { base: ls.a.cost, other: ls.b.cost } };
}

async function runStream(header: TraceHeader, chunks: AsyncIterable<TraceEvent[]>, base: Profile, other: Profile, opts: DiffOptions, limit: number | undefined): Promise<Lockstep> {
  const ls = new Lockstep(header, base, other, opts);
  outer: for await (const chunk of chunks) {
    for (const e of chunk) {
      if (limit !== undefined && ls.events >= limit) break outer;
      if (!ls.push(e)) break outer;
    }
    opts.onProgress?.(ls.events);
  }
  ls.finish();
  return ls;
}

/**
 * Lockstep over a streaming source, in constant memory (plus the stretch
 * since the last checkpoint). `open` is called again to re-find a divergence
 * from scratch before it is reported.
 */
export async function diffStream(header: TraceHeader, open: () => AsyncIterable<TraceEvent[]>, base: Profile, other: Profile, opts: DiffOptions = {}): Promise<DiffResult> {
  const ls = await runStream(header, open(), base, other, opts, opts.limit);
  const d = ls.divergence;
  if (d) {
    const again = await runStream(header, open(), base, other, { checkpointEvery: opts.checkpointEvery, firstState: opts.firstState }, d.index + 1);
    d.confirmed = again.divergence?.index === d.index && again.divergence.kind === d.kind;
  }
  return { base: base.name, other: other.name, events: ls.events, divergence: d, violations: ls.monitor.violations, costs: { base: ls.a.cost, other: ls.b.cost } };
}
