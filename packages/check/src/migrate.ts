/**
 * Migration transparency: saving and restoring a vCPU (host.migrate, KVM's
 * KVM_GET_NESTED_STATE / KVM_SET_NESTED_STATE into a fresh vCPU) at any
 * point must not change what L1, L2 or the host observe.
 *
 * `insertMigrations` puts `host.migrate` events into a trace at chosen
 * points; `migrateDiff` replays a profile on the trace with them against the
 * same profile without them (outcome by outcome, on the original events),
 * and the trace with them against a base profile in the ordinary lockstep.
 * A trace with migrations is an ordinary trace: it minimizes and bisects
 * like any other.
 */
import { Profile, Replayer, initialState, parseProfile } from '@nvx/emulator';
import { Outcome, TraceEvent, TraceHeader, eventVcpu, formatEvent, outcomeEquals } from '@nvx/trace';
import type fc from 'fast-check';
import { ContractMonitor, ContractViolation } from './contracts';
import { DiffResult, diffEvents, explainSide } from './diff';

/** Where to migrate: after these event indices, after every nested entry and exit, or at n random points. */
export type MigrateWhere = { k: 'at'; indices: number[] } | { k: 'entries' } | { k: 'random'; seed: number; n: number };

/** '12,40' | 'entries' | 'random:<seed>:<n>' */
export function parseMigrateWhere(s: string): MigrateWhere {
  const t = s.trim();
  if (t === 'entries') return { k: 'entries' };
  const r = /^random:(\d+):(\d+)$/.exec(t);
  if (r) return { k: 'random', seed: Number(r[1]) >>> 0, n: Number(r[2]) };
  if (/^\d+(,\d+)*$/.test(t)) return { k: 'at', indices: t.split(',').map(Number) };
  throw new Error(`--migrate wants event indices (12,40), 'entries' or 'random:<seed>:<n>' (got '${s}')`);
}

/** A small seeded generator (mulberry32): the same seed gives the same points. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One migration point: after original event `after` (-1: before the first), of vCPU `vcpu`. */
export interface MigrationPoint {
  after: number;
  vcpu: number;
}

/**
 * The points `where` names. 'entries' runs `profile` once to find the events
 * whose outcome is a nested entry or exit; a point after an event migrates
 * that event's vCPU (vCPU 0 for a host event without one).
 */
export function migrationPoints(header: TraceHeader, events: readonly TraceEvent[], where: MigrateWhere, profile: Profile = parseProfile('reference')): MigrationPoint[] {
  const vcpus = header.config.vcpus;
  const vcpuAt = (i: number) => Math.min(eventVcpu(events[i]) ?? 0, vcpus - 1);
  switch (where.k) {
    case 'at':
      return [...new Set(where.indices)]
        .filter((i) => i >= 0 && i < events.length)
        .sort((a, b) => a - b)
        .map((i) => ({ after: i, vcpu: vcpuAt(i) }));
    case 'entries': {
      const r = new Replayer(initialState(header, profile), profile);
      const out: MigrationPoint[] = [];
      events.forEach((e, i) => {
        const o = r.apply(e);
        if (o.k === 'entered' || o.k === 'exit') out.push({ after: i, vcpu: vcpuAt(i) });
      });
      return out;
    }
    case 'random': {
      const next = rng(where.seed);
      const out: MigrationPoint[] = [];
      for (let j = 0; j < where.n && events.length; j++) out.push({ after: Math.floor(next() * events.length), vcpu: Math.floor(next() * vcpus) });
      return out.sort((a, b) => a.after - b.after || a.vcpu - b.vcpu);
    }
  }
}

export interface MigratedTrace {
  events: TraceEvent[];
  /** for each event of `events`, its index in the original trace, or -1 for an inserted migration */
  original: number[];
}

/** The trace with a `host.migrate` after each point (points in order; several at one place keep their order). */
export function insertMigrations(events: readonly TraceEvent[], points: readonly MigrationPoint[]): MigratedTrace {
  const sorted = [...points].sort((a, b) => a.after - b.after);
  const out: TraceEvent[] = [];
  const original: number[] = [];
  let p = 0;
  const flush = (i: number) => {
    while (p < sorted.length && sorted[p].after === i) {
      out.push({ kind: 'host.migrate', vcpu: sorted[p].vcpu });
      original.push(-1);
      p++;
    }
  };
  flush(-1);
  events.forEach((e, i) => {
    out.push(e);
    original.push(i);
    flush(i);
  });
  return { events: out, original };
}

export interface MigrateDivergence {
  /** index in the original trace */
  index: number;
  /** index in the trace with migrations */
  migratedIndex: number;
  event: TraceEvent;
  /** the outcome without migrations, and with them */
  without: Outcome;
  with: Outcome;
  /** the migration before it, if a restore itself failed: its index in the trace with migrations */
  failedRestore?: number;
  /** the contract broken at or before the event (without migrations), if any */
  contract?: ContractViolation;
  /**
   * 'bug': the profile loses (or keeps) state across a restore; 'inherent':
   * the reference path diverges the same way, so it is a property of KVM's
   * save/restore itself; 'pre-existing': without migrations the profile
   * already diverges from reference at or before this event (the restore
   * only changes how); 'permitted': after a broken contract
   */
  verdict: 'bug' | 'inherent' | 'pre-existing' | 'permitted';
  explain: { without: Record<string, string>; with: Record<string, string> };
}

/** The first event of the original trace whose outcome changes when the migrations are inserted (null: none). */
export function transparencyDivergence(header: TraceHeader, m: MigratedTrace, profile: Profile): Omit<MigrateDivergence, 'verdict'> | null {
  const a = new Replayer(initialState(header, profile), profile);
  const b = new Replayer(initialState(header, profile), profile);
  const monitor = new ContractMonitor();
  let lastMigration = -1;
  let failed = -1;
  for (let j = 0; j < m.events.length; j++) {
    const e = m.events[j];
    const i = m.original[j];
    if (i < 0) {
      const o = b.apply(e);
      lastMigration = j;
      if (o.k !== 'ok') failed = j;
      continue;
    }
    monitor.observe(a.peek(), e, i);
    const oa = a.apply(e);
    const ob = b.apply(e);
    if (!outcomeEquals(oa, ob)) {
      return {
        index: i,
        migratedIndex: j,
        event: e,
        without: oa,
        with: ob,
        failedRestore: failed >= 0 && failed === lastMigration ? failed : undefined,
        contract: monitor.firstUpTo(i),
        explain: { without: explainSide(a, e), with: explainSide(b, e) },
      };
    }
  }
  return null;
}

export interface MigrateDiffResult {
  profile: string;
  base: string;
  where: string;
  points: MigrationPoint[];
  trace: MigratedTrace;
  /** the profile with migrations against the same profile without them */
  transparency: MigrateDivergence | null;
  /** the trace with migrations, the base profile against the profile (ordinary lockstep) */
  againstBase: DiffResult;
}

/** `nvx diff --migrate`: transparency of `profile`, and the trace with migrations against `base`. */
export function migrateDiff(header: TraceHeader, events: readonly TraceEvent[], base: Profile, profile: Profile, where: MigrateWhere, whereText = ''): MigrateDiffResult {
  const points = migrationPoints(header, events, where, profile);
  const trace = insertMigrations(events, points);
  let transparency: MigrateDivergence | null = null;
  const d = transparencyDivergence(header, trace, profile);
  if (d) {
    const ref = parseProfile('reference');
    const r = profile.name === ref.name ? d : transparencyDivergence(header, trace, ref);
    const inherent = !!r && r.index === d.index && outcomeEquals(r.with, d.with);
    const before = profile.name === ref.name ? null : diffEvents(header, events.slice(0, d.index + 1), ref, profile).divergence;
    transparency = { ...d, verdict: d.contract ? 'permitted' : before ? 'pre-existing' : inherent ? 'inherent' : 'bug' };
  }
  const againstBase = diffEvents(header, trace.events, base, profile);
  return { profile: profile.name, base: base.name, where: whereText, points, trace, transparency, againstBase };
}

/** One line for people. */
export function describeMigrateDivergence(d: MigrateDivergence): string {
  return `event ${d.index} (${formatEvent(d.event)}): without migrations ${JSON.stringify(d.without, (_k, v) => (typeof v === 'bigint' ? '0x' + v.toString(16) : v))}, with them ${JSON.stringify(d.with, (_k, v) => (typeof v === 'bigint' ? '0x' + v.toString(16) : v))}`;
}

// ---- for the fuzzer ----

/**
 * fast-check: a generated trace with migrations inserted at random points
 * (about one per `every` events, each of a random vCPU). The points are part
 * of the generated value, so a finding replays and shrinks as any other.
 */
export function withMigrations<T extends { header: TraceHeader; events: TraceEvent[] }>(fcm: typeof fc, arb: fc.Arbitrary<T>, every = 5): fc.Arbitrary<T> {
  return arb.chain((t) => {
    const n = t.events.length;
    if (n === 0) return fcm.constant(t);
    const vcpus = t.header.config.vcpus;
    // A point migrates the vCPU of the event before it (the one whose state is in flight), a host event's a random one.
    const point = fcm.tuple(fcm.integer({ min: 0, max: n - 1 }), fcm.integer({ min: 0, max: vcpus - 1 })).map(([after, any]) => ({ after, vcpu: Math.min(eventVcpu(t.events[after]) ?? any, vcpus - 1) }));
    return fcm.array(point, { maxLength: Math.max(1, Math.ceil(n / every)) }).map((pts) => ({ ...t, events: insertMigrations(t.events, pts).events }));
  });
}
