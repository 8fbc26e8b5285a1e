/**
 * Bisection.
 *
 * 1. Between two profiles (`bisectEvents`, `bisectTraceFile`): the first
 *    event after which what L1, L2 or the host can see differs (an
 *    outcome, or the architectural state). A forward pass replays both
 *    profiles, compares outcomes after every event and whole states at
 *    checkpoints every K events. Each profile keeps only its last
 *    checkpoint where the states agreed and the events since it
 *    (`CheckpointedReplay`): the search never needs to go back further, so
 *    the memory is one snapshot and at most K events per profile, however
 *    long the trace (a file is streamed, never held whole). The pass stops
 *    at the first stretch that shows a difference; a binary search over
 *    that stretch then finds the first event behind it, each probe a jump
 *    (at most K steps from the checkpoint) and one state comparison,
 *    instead of a state comparison after every event.
 *
 *    The search assumes a state difference, once there, lasts until the
 *    stretch's end (as the lockstep diff does between checkpoints). The
 *    divergence found is confirmed by a lockstep replay from scratch of the
 *    events up to it (a file is read a second time), which also scans the
 *    last stretch event by event: a difference there that came and went
 *    earlier is then the answer. A difference that comes and goes between
 *    two checkpoints of the forward pass, with nothing else differing, is
 *    missed (by the lockstep diff too); K = 1 compares every state and is
 *    exact.
 *
 * 2. Over event prefixes with an external judge (`PrefixBisection`,
 *    `runPrefixBisect`): git bisect's protocol, where the "commits" are the
 *    prefixes of a trace (the first n events, n = 0..N). The command's exit
 *    status judges each prefix: 0 good, 125 skip, 1-127 otherwise bad, 128
 *    or more aborts. The empty prefix must be good and the whole trace bad;
 *    the result is the first bad prefix, whose last event is the culprit.
 *    Every step goes to a log that `replayLog` reads back.
 */
import { spawn } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Profile, Replayer, World, archHash, diffArch, initialState } from '@nvx/emulator';
import { Outcome, TraceEvent, TraceForm, TraceHeader, TraceWarning, formatEvent, openTrace, outcomeEquals, writeFileAtomic, writeTraceFile } from '@nvx/trace';
import { ContractMonitor, ContractViolation } from './contracts';
import { Divergence, Lockstep, explainSide } from './diff';

// ---------------------------------------------------------------------------
// 1. checkpoints and the bisection between two profiles
// ---------------------------------------------------------------------------

/**
 * One profile's replay with its last checkpoint: the state after `at`
 * events and the events applied since (`held`). `seek(n)`, for n from `at`
 * to the events pushed so far, restores the checkpoint and replays at most
 * the held events. The caller moves the checkpoint forward (`checkpoint()`)
 * once nothing before it can matter; the replay then holds one snapshot
 * and the events since it, whatever the length of the trace.
 */
export class CheckpointedReplay {
  readonly replayer: Replayer;
  /** the state after `at` events */
  private snap: World;
  /** the events after the checkpoint, pushed so far */
  private readonly held: TraceEvent[] = [];
  /** where the checkpoint is: the state after this many events */
  at = 0;
  /** checkpoints taken, the initial state included (only the last one is kept) */
  taken = 1;
  /** the most events held at once */
  maxHeld = 0;
  /** events applied by every push and seek so far */
  steps = 0;
  /** the most events one seek applied */
  maxSeekSteps = 0;
  /** the outcome of the last event applied */
  lastOutcome: Outcome | undefined;

  constructor(
    header: TraceHeader,
    readonly profile: Profile,
  ) {
    this.replayer = new Replayer(initialState(header, profile), profile);
    this.snap = this.replayer.snapshot();
  }

  /** Events applied so far in the current position. */
  get index(): number {
    return this.replayer.index;
  }

  /** Events pushed so far (the furthest position). */
  get end(): number {
    return this.at + this.held.length;
  }

  /** Events held since the checkpoint. */
  get holding(): number {
    return this.held.length;
  }

  private apply(e: TraceEvent): Outcome {
    const out = this.replayer.apply(e);
    this.lastOutcome = out;
    this.steps++;
    return out;
  }

  /** Apply the trace's next event, from the furthest position; it is held until the next checkpoint. */
  push(e: TraceEvent): Outcome {
    if (this.replayer.index !== this.end) throw new RangeError(`push at event ${this.replayer.index}: the replay is not at its furthest position (${this.end})`);
    this.held.push(e);
    this.maxHeld = Math.max(this.maxHeld, this.held.length);
    return this.apply(e);
  }

  /** Event i of the trace, held since the checkpoint (at <= i < end). */
  heldEvent(i: number): TraceEvent {
    if (!Number.isInteger(i) || i < this.at || i >= this.end) throw new RangeError(`event ${i} is not held: the checkpoint is at ${this.at} and ${this.end} events were pushed`);
    return this.held[i - this.at];
  }

  /** Apply the next held event again (after a seek back); its outcome. */
  stepForward(): Outcome {
    const i = this.replayer.index;
    if (i >= this.end) throw new RangeError(`no event ${i} held: ${this.end} pushed`);
    return this.apply(this.held[i - this.at]);
  }

  /** The furthest position becomes the checkpoint: its snapshot replaces the last one and the held events are dropped. */
  checkpoint(): void {
    if (this.replayer.index !== this.end) throw new RangeError(`checkpoint at event ${this.replayer.index}: the replay is not at its furthest position (${this.end})`);
    this.snap = this.replayer.snapshot();
    this.at = this.end;
    this.held.length = 0;
    this.taken++;
  }

  /** Move to the state after the first n events (at <= n <= end). */
  seek(n: number): Replayer {
    if (!Number.isInteger(n) || n < this.at || n > this.end) throw new RangeError(`cannot seek to event ${n}: the checkpoint is at ${this.at} and ${this.end} events were pushed`);
    // forward within reach: keep going
    if (n < this.replayer.index) this.replayer.restore(this.snap, this.at);
    const from = this.replayer.index;
    while (this.replayer.index < n) this.stepForward();
    this.maxSeekSteps = Math.max(this.maxSeekSteps, n - from);
    return this.replayer;
  }
}

export interface BisectOptions {
  /** compare whole architectural states, and move the checkpoint, every K events (default 1000) */
  checkpointEvery?: number;
}

export interface BisectStats {
  /** K */
  checkpointEvery: number;
  /** snapshots kept per profile: the last checkpoint only */
  checkpoints: number;
  /** the most events held per profile since the last checkpoint (at most K): with one snapshot, the memory the search needs */
  maxHeldEvents: number;
  /** events replayed by the forward pass, per profile */
  forwardSteps: number;
  /** jumps made by the binary search, and events they replayed per profile */
  probes: number;
  searchSteps: number;
  /** the most events any jump replayed (at most K) */
  maxJumpSteps: number;
  /** whole-state comparisons made */
  stateComparisons: number;
  /** the stretch the search ran over: states equal after `from` events, a difference by `to` */
  stretch: { from: number; to: number } | null;
  /** the confirming replay found an earlier difference in the stretch (one that did not last): that one is reported */
  refined: boolean;
}

export interface BisectResult {
  base: string;
  other: string;
  /** events in the trace */
  events: number;
  divergence: Divergence | null;
  /** contract violations seen by the forward pass (it stops at the first difference) */
  violations: ContractViolation[];
  stats: BisectStats;
}

const explainAt = explainSide;

/**
 * The bisection between two profiles as a machine fed the trace's events:
 * the forward pass (`forward`, until it returns false), the end of the
 * trace (`end`, which runs the search and names the events to confirm
 * with), the confirming replay (`confirm`, from the first event, until it
 * returns false), then `result`. It holds no more of the trace than the
 * two `CheckpointedReplay`s do.
 */
class ProfileBisection {
  private readonly k: number;
  private readonly a: CheckpointedReplay;
  private readonly b: CheckpointedReplay;
  private readonly monitor = new ContractMonitor();
  private comparisons = 0;
  /** events the forward pass applied */
  private n = 0;
  /** the states agree after `lo` events; the observations differ within the first `hi` (-1: no difference seen) */
  private lo = 0;
  private hi = -1;
  /** the event whose outcomes differ, if that is how the forward pass stopped */
  private outcomeAt = -1;
  private total = 0;
  private forwardSteps = 0;
  private probes = 0;
  private refined = false;
  private found: Divergence | null = null;
  private ls: Lockstep | undefined;
  private confirmed = 0;

  constructor(
    private readonly header: TraceHeader,
    private readonly base: Profile,
    private readonly other: Profile,
    opts: BisectOptions,
  ) {
    this.k = Math.max(1, Math.floor(opts.checkpointEvery ?? 1000));
    this.a = new CheckpointedReplay(header, base);
    this.b = new CheckpointedReplay(header, other);
  }

  private statesDiffer(): boolean {
    this.comparisons++;
    return archHash(this.a.replayer.peek()) !== archHash(this.b.replayer.peek());
  }

  /** The forward pass: outcomes after every event, states at each checkpoint. False once a stretch shows a difference (feed no more). */
  forward(e: TraceEvent): boolean {
    const i = this.n;
    this.monitor.observe(this.a.replayer.peek(), e, i);
    const oa = this.a.push(e);
    const ob = this.b.push(e);
    const n = (this.n = i + 1);
    if (!outcomeEquals(oa, ob)) {
      this.outcomeAt = i;
      this.hi = n;
      return false;
    }
    if (n % this.k === 0) {
      if (this.statesDiffer()) {
        this.hi = n;
        return false;
      }
      this.lo = n;
      this.a.checkpoint();
      this.b.checkpoint();
    }
    return true;
  }

  /**
   * The trace ended after `total` events (all read, though the forward pass
   * may have stopped earlier): the states compared at the end, then the
   * search. Returns the index of the last event the confirming replay
   * needs, or -1 when the profiles agree.
   */
  end(total: number): number {
    this.total = total;
    if (this.hi < 0 && this.n % this.k !== 0) {
      if (this.statesDiffer()) this.hi = this.n;
      else this.lo = this.n;
    }
    this.forwardSteps = this.a.steps;
    if (this.hi < 0) return -1;
    const { a, b } = this;

    // Search (lo, hi]: the smallest n such that the observations differ within the first n events.
    // differs(lo) is false; differs(hi) is true (an outcome at event hi - 1, or the states after hi).
    const differs = (n: number): boolean => {
      if (n - 1 === this.outcomeAt) return true;
      this.probes++;
      a.seek(n);
      b.seek(n);
      return this.statesDiffer();
    };
    let good = this.lo;
    let bad = this.hi;
    while (bad - good > 1) {
      const mid = good + Math.floor((bad - good) / 2);
      if (differs(mid)) bad = mid;
      else good = mid;
    }

    // The divergence at event bad - 1: its outcomes and the states after it.
    const index = bad - 1;
    a.seek(index);
    b.seek(index);
    const e = a.heldEvent(index);
    const oa = a.stepForward();
    const ob = b.stepForward();
    const kind: Divergence['kind'] = outcomeEquals(oa, ob) ? 'state' : 'outcome';
    const contract = this.monitor.firstUpTo(index);
    this.found = {
      index,
      event: e,
      kind,
      base: oa,
      other: ob,
      archDiff: diffArch(a.replayer.peek(), b.replayer.peek()),
      explain: { base: explainAt(a.replayer, e), other: explainAt(b.replayer, e) },
      contract,
      verdict: contract ? 'permitted' : 'bug',
      confirmed: false,
    };
    // Confirm with the lockstep engine, from scratch, on the events up to the divergence. Its last
    // stretch is scanned event by event: a difference there that came and went before the one the
    // search landed on is earlier, and is the answer.
    this.ls = new Lockstep(this.header, this.base, this.other, { checkpointEvery: this.k });
    return index;
  }

  /** The confirming replay, fed the trace from its first event: false when it needs no more. */
  confirm(e: TraceEvent): boolean {
    if (!this.ls || !this.found || this.confirmed > this.found.index) return false;
    this.confirmed++;
    return this.ls.push(e) && this.confirmed <= this.found.index;
  }

  result(): BisectResult {
    let divergence = this.found;
    if (divergence && this.ls) {
      const again = this.ls.finish();
      if (again && again.index < divergence.index) {
        this.refined = true;
        again.confirmed = true;
        divergence = again;
      } else divergence.confirmed = again?.index === divergence.index && again.kind === divergence.kind;
    }
    const { a, b } = this;
    return {
      base: this.base.name,
      other: this.other.name,
      events: this.total,
      divergence,
      violations: this.monitor.violations,
      stats: {
        checkpointEvery: this.k,
        checkpoints: 1,
        maxHeldEvents: Math.max(a.maxHeld, b.maxHeld),
        forwardSteps: this.forwardSteps,
        probes: this.probes,
        searchSteps: a.steps - this.forwardSteps,
        maxJumpSteps: Math.max(a.maxSeekSteps, b.maxSeekSteps),
        stateComparisons: this.comparisons,
        stretch: this.hi < 0 ? null : { from: this.lo, to: this.hi },
        refined: this.refined,
      },
    };
  }
}

/**
 * The first event where `other`'s observations differ from `base`'s: its
 * outcomes, the architectural differences after it, each side's internals
 * and the contract status, with the cost of finding it. The divergence is
 * confirmed by a lockstep replay from scratch of the events up to it.
 */
export function bisectEvents(header: TraceHeader, events: readonly TraceEvent[], base: Profile, other: Profile, opts: BisectOptions = {}): BisectResult {
  const s = new ProfileBisection(header, base, other, opts);
  for (let i = 0; i < events.length && s.forward(events[i]); i++);
  const upTo = s.end(events.length);
  for (let i = 0; i <= upTo && s.confirm(events[i]); i++);
  return s.result();
}

/**
 * `bisectEvents` on a trace file, streamed: the file is read once for the
 * forward pass (to its end, for the number of events, the warnings and any
 * invalid event) and again up to the divergence for the confirming replay.
 * Memory stays one snapshot and at most K events per profile, however long
 * the trace. Standard input (`-`) is held in memory by the reader.
 */
export async function bisectTraceFile(file: string, base: Profile, other: Profile, opts: BisectOptions = {}): Promise<BisectResult & { header: TraceHeader; warnings: TraceWarning[] }> {
  const r = await openTrace(file);
  const s = new ProfileBisection(r.header, base, other, opts);
  let total = 0;
  let forward = true;
  try {
    for await (const chunk of r.chunks()) {
      for (const e of chunk) {
        if (forward) forward = s.forward(e);
        total++;
      }
    }
  } finally {
    await r.close();
  }
  const upTo = s.end(total);
  if (upTo >= 0) {
    const again = await openTrace(file);
    try {
      read: for await (const chunk of again.chunks()) for (const e of chunk) if (!s.confirm(e)) break read;
    } finally {
      await again.close();
    }
  }
  return { ...s.result(), header: r.header, warnings: r.warnings };
}

// ---------------------------------------------------------------------------
// 2. bisection over prefixes, judged by a command
// ---------------------------------------------------------------------------

export type PrefixVerdict = 'good' | 'bad' | 'skip';

export interface PrefixStep {
  /** the first `prefix` events */
  prefix: number;
  verdict: PrefixVerdict;
  /** the command's exit status (null when a signal ended it) */
  exit?: number | null;
  /** milliseconds the command ran */
  ms?: number;
}

export type PrefixConclusion =
  | { kind: 'found'; firstBad: number }
  /** every prefix between the last good and the first bad one was skipped: the first bad one is among these */
  | { kind: 'ambiguous'; candidates: number[] }
  /** not finished: test this prefix next */
  | { kind: 'open'; next: number };

/**
 * git bisect's search over the prefixes 0..total of a trace. Record each
 * verdict; `next()` names the prefix to test, or null when the answer is
 * known. Until both ends are recorded it asks for them (0 first, then
 * total). A skipped prefix is never proposed again: the search takes the
 * untested prefix nearest the middle instead, alternating sides.
 */
export class PrefixBisection {
  /** the longest prefix known good, the shortest known bad (undefined until tested) */
  good: number | undefined;
  bad: number | undefined;
  readonly skipped = new Set<number>();
  readonly steps: PrefixStep[] = [];

  constructor(readonly total: number) {
    if (!Number.isInteger(total) || total < 1) throw new RangeError('a prefix bisection needs a trace of at least one event');
  }

  record(step: PrefixStep): void {
    const p = step.prefix;
    if (!Number.isInteger(p) || p < 0 || p > this.total) throw new RangeError(`prefix ${p} is outside 0..${this.total}`);
    this.steps.push(step);
    if (step.verdict === 'skip') this.skipped.add(p);
    else if (step.verdict === 'good') {
      this.skipped.delete(p);
      if (this.good === undefined || p > this.good) this.good = p;
    } else {
      this.skipped.delete(p);
      if (this.bad === undefined || p < this.bad) this.bad = p;
    }
  }

  /** The ends are as required: the empty prefix good, the whole trace bad (undefined while untested). */
  endsError(): string | undefined {
    const first = this.steps.find((s) => s.prefix === 0);
    const last = this.steps.find((s) => s.prefix === this.total);
    if (first && first.verdict !== 'good') {
      return first.verdict === 'bad'
        ? `the empty prefix (no event) is already bad${first.exit !== undefined ? ` (exit ${first.exit})` : ''}: the command fails whatever the trace holds`
        : 'the command skipped the empty prefix (exit 125): it must judge it good';
    }
    if (last && last.verdict !== 'bad') {
      return last.verdict === 'good'
        ? `the whole trace (${this.total} events) is good: there is nothing to bisect`
        : `the command skipped the whole trace (exit 125): it must judge it bad`;
    }
    if (this.good !== undefined && this.bad !== undefined && this.good >= this.bad) {
      return `prefix ${this.good} is good but the shorter prefix ${this.bad} is bad: the command's verdicts are not monotonic`;
    }
    return undefined;
  }

  /** The prefix to test next, or null when the conclusion is known (or the ends are wrong). */
  next(): number | null {
    const c = this.conclusion();
    return c.kind === 'open' ? c.next : null;
  }

  conclusion(): PrefixConclusion {
    const tested = (p: number) => this.steps.some((s) => s.prefix === p);
    if (!tested(0)) return { kind: 'open', next: 0 };
    if (!tested(this.total)) return { kind: 'open', next: this.total };
    const good = this.good ?? 0;
    const bad = this.bad ?? this.total;
    if (bad - good <= 1) return { kind: 'found', firstBad: bad };
    const mid = good + Math.floor((bad - good) / 2);
    for (let d = 0; d < bad - good; d++) {
      for (const p of d === 0 ? [mid] : [mid + d, mid - d]) {
        if (p > good && p < bad && !this.skipped.has(p)) return { kind: 'open', next: p };
      }
    }
    const candidates: number[] = [];
    for (let p = good + 1; p <= bad; p++) candidates.push(p);
    return { kind: 'ambiguous', candidates };
  }
}

/** git bisect run's reading of an exit status. */
export function verdictOfExit(code: number | null): PrefixVerdict | 'abort' {
  if (code === null || code < 0 || code >= 128) return 'abort';
  if (code === 0) return 'good';
  if (code === 125) return 'skip';
  return 'bad';
}

// ---- the log ----

export interface BisectLog {
  /** the trace as the user named it */
  trace: string;
  /** sha256 of the trace file's bytes */
  sha256: string;
  events: number;
  command: string;
  steps: PrefixStep[];
}

const LOG_MAGIC = '# nvx bisect log 1';

/** The log as text: one line per step, comments for people (the conclusion among them). */
export function formatLog(log: BisectLog, describe?: (prefix: number) => string): string {
  const lines = [
    LOG_MAGIC,
    `trace ${JSON.stringify(log.trace)}`,
    `sha256 ${log.sha256}`,
    `events ${log.events}`,
    `command ${JSON.stringify(log.command)}`,
  ];
  for (const s of log.steps) {
    const extra = [s.exit !== undefined ? `exit=${s.exit === null ? 'signal' : s.exit}` : '', s.ms !== undefined ? `ms=${s.ms}` : ''].filter(Boolean).join(' ');
    lines.push(`prefix ${s.prefix} ${s.verdict}${extra ? ' ' + extra : ''}`);
  }
  const b = new PrefixBisection(Math.max(1, log.events));
  for (const s of log.steps) b.record(s);
  const err = b.endsError();
  const c = b.conclusion();
  if (err) lines.push(`# stopped: ${err}`);
  else if (c.kind === 'found') lines.push(`# first bad prefix: ${c.firstBad} events; first bad event: ${c.firstBad - 1}${describe ? ` ${describe(c.firstBad)}` : ''}`);
  else if (c.kind === 'ambiguous') lines.push(`# only skipped prefixes left: the first bad prefix is one of ${c.candidates.join(', ')}`);
  else lines.push(`# unfinished: prefix ${c.next} is next`);
  return lines.join('\n') + '\n';
}

export class BisectLogError extends Error {}

/** Read a log back; a BisectLogError names the line that is wrong. */
export function parseLog(text: string, file = 'the log'): BisectLog {
  const lines = text.split(/\r?\n/);
  if (lines[0]?.trim() !== LOG_MAGIC) throw new BisectLogError(`${file}: not an nvx bisect log (the first line should be '${LOG_MAGIC}')`);
  const log: Partial<BisectLog> = { steps: [] };
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const bad = (why: string) => new BisectLogError(`${file}, line ${i + 1}: ${why}: ${raw}`);
    const sp = line.indexOf(' ');
    const key = sp < 0 ? line : line.slice(0, sp);
    const rest = sp < 0 ? '' : line.slice(sp + 1).trim();
    const str = () => {
      try {
        const v: unknown = JSON.parse(rest);
        if (typeof v !== 'string') throw new Error();
        return v;
      } catch {
        throw bad('expected a quoted string');
      }
    };
    switch (key) {
      case 'trace':
        log.trace = str();
        break;
      case 'command':
        log.command = str();
        break;
      case 'sha256':
        if (!/^[0-9a-f]{64}$/.test(rest)) throw bad('expected 64 hex digits');
        log.sha256 = rest;
        break;
      case 'events':
        if (!/^\d+$/.test(rest)) throw bad('expected a number of events');
        log.events = Number(rest);
        break;
      case 'prefix': {
        const m = /^(\d+)\s+(good|bad|skip)((?:\s+\w+=\S+)*)$/.exec(rest);
        if (!m) throw bad("expected 'prefix <n> good|bad|skip [exit=<n>] [ms=<n>]'");
        const step: PrefixStep = { prefix: Number(m[1]), verdict: m[2] as PrefixVerdict };
        for (const kv of m[3].trim().split(/\s+/).filter(Boolean)) {
          const [k, v] = kv.split('=');
          if (k === 'exit') step.exit = v === 'signal' ? null : Number(v);
          else if (k === 'ms') step.ms = Number(v);
        }
        if (log.events !== undefined && step.prefix > log.events) throw bad(`prefix beyond the trace's ${log.events} events`);
        log.steps!.push(step);
        break;
      }
      default:
        throw bad(`unknown entry '${key}'`);
    }
  });
  for (const k of ['trace', 'sha256', 'events', 'command'] as const) if (log[k] === undefined) throw new BisectLogError(`${file}: no '${k}' line`);
  return log as BisectLog;
}

// ---- running the command ----

export interface CommandRun {
  exit: number | null;
  signal: string | null;
  timedOut: boolean;
  ms: number;
  /** the last bytes of stdout and stderr together */
  output: string;
}

/** Quote for a POSIX shell. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

const OUTPUT_TAIL = 8192;

/**
 * Run `command` with the shell, the prefix trace in $NVX_TRACE and in place
 * of every `{}`; killed (its whole process group) after `timeoutMs`.
 */
export function runJudge(command: string, tracePath: string, opts: { timeoutMs: number; env?: Record<string, string>; onOutput?: (chunk: string) => void }): Promise<CommandRun> {
  const cmd = command.split('{}').join(shellQuote(tracePath));
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, {
      shell: true,
      detached: process.platform !== 'win32',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env, NVX_TRACE: tracePath },
    });
    let output = '';
    const take = (b: Buffer) => {
      const s = b.toString('utf8');
      opts.onOutput?.(s);
      output = (output + s).slice(-OUTPUT_TAIL);
    };
    child.stdout!.on('data', take);
    child.stderr!.on('data', take);
    let timedOut = false;
    const kill = () => {
      try {
        if (child.pid !== undefined && process.platform !== 'win32') process.kill(-child.pid, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, opts.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      // the shell may have left children behind (a background job): end them with it
      if (!timedOut) kill();
      resolve({ exit: code, signal, timedOut, ms: Date.now() - started, output });
    });
  });
}

export interface PrefixBisectOptions {
  header: TraceHeader;
  events: readonly TraceEvent[];
  /** the trace file as the user named it, and its bytes' sha256 (for the log) */
  trace: string;
  sha256: string;
  /** the form the prefix traces are written in */
  form: TraceForm;
  command: string;
  timeoutMs: number;
  /** write the log here after every step (written elsewhere, then renamed) */
  logFile?: string;
  /** steps already known (a log being continued) */
  known?: readonly PrefixStep[];
  /** the judge; the default runs `command` with the shell */
  judge?: (tracePath: string, prefix: number) => Promise<CommandRun>;
  onStep?: (step: PrefixStep, run: CommandRun | null) => void;
  onOutput?: (chunk: string) => void;
}

export interface PrefixBisectResult {
  log: BisectLog;
  conclusion: PrefixConclusion;
  /** why the bisection stopped short: the ends are not good and bad, or the command aborted */
  error?: string;
  /** the run that aborted, if one did (its output tail helps) */
  aborted?: CommandRun;
}

export function sha256Of(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Write a file under its final name only once complete (@nvx/trace's writeFileAtomic). */
export function writeFileAtomically(file: string, text: string): void {
  writeFileAtomic(file, text);
}

/**
 * Bisect the prefixes of a trace with a command as the judge. Prefix traces
 * go to a temporary directory, removed at the end. The log is rewritten
 * after every step, so an interrupted bisection leaves what it learnt.
 */
export async function runPrefixBisect(o: PrefixBisectOptions): Promise<PrefixBisectResult> {
  const total = o.events.length;
  const b = new PrefixBisection(total);
  for (const s of o.known ?? []) b.record(s);
  const log: BisectLog = { trace: o.trace, sha256: o.sha256, events: total, command: o.command, steps: b.steps };
  const describe = (p: number) => (p >= 1 && p <= total ? `(${formatEvent({ ...o.events[p - 1], expect: undefined })})` : '');
  const saveLog = () => o.logFile && writeFileAtomically(o.logFile, formatLog(log, describe));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-bisect-'));
  const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });
  process.once('exit', cleanup);
  try {
    saveLog();
    for (;;) {
      const err = b.endsError();
      if (err) return { log, conclusion: b.conclusion(), error: err };
      const p = b.next();
      if (p === null) return { log, conclusion: b.conclusion() };
      const file = path.join(dir, `prefix-${p}${o.form === 'binary' ? '.nvxt' : '.nvx'}`);
      await writeTraceFile(file, o.header, o.events.slice(0, p), { form: o.form });
      let run: CommandRun;
      try {
        run = o.judge
          ? await o.judge(file, p)
          : await runJudge(o.command, file, { timeoutMs: o.timeoutMs, env: { NVX_PREFIX: String(p), NVX_EVENTS: String(total) }, onOutput: o.onOutput });
      } finally {
        fs.rmSync(file, { force: true });
      }
      const v = run.timedOut ? 'abort' : verdictOfExit(run.exit);
      if (v === 'abort') {
        const why = run.timedOut
          ? `the command ran longer than ${o.timeoutMs / 1000} s on prefix ${p} and was killed (raise --timeout)`
          : run.exit === null
            ? `the command was ended by ${run.signal ?? 'a signal'} on prefix ${p}`
            : `the command exited ${run.exit} on prefix ${p}: 128 or more aborts the bisection`;
        return { log, conclusion: b.conclusion(), error: why, aborted: run };
      }
      const step: PrefixStep = { prefix: p, verdict: v, exit: run.exit, ms: run.ms };
      b.record(step);
      saveLog();
      o.onStep?.(step, run);
    }
  } finally {
    process.removeListener('exit', cleanup);
    cleanup();
  }
}

export interface RerunStep {
  step: PrefixStep;
  /** the verdict this time ('abort': 128 or more, a signal, or the timeout) */
  now: PrefixVerdict | 'abort';
  run: CommandRun;
}

/** Run a log's command again on each prefix the log tested, in order; the verdicts then and now. */
export async function rerunLog(
  log: BisectLog,
  o: { header: TraceHeader; events: readonly TraceEvent[]; form: TraceForm; timeoutMs: number; command?: string; onStep?: (r: RerunStep) => void; onOutput?: (chunk: string) => void },
): Promise<RerunStep[]> {
  const out: RerunStep[] = [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-bisect-'));
  const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });
  process.once('exit', cleanup);
  try {
    for (const step of log.steps) {
      const file = path.join(dir, `prefix-${step.prefix}${o.form === 'binary' ? '.nvxt' : '.nvx'}`);
      await writeTraceFile(file, o.header, o.events.slice(0, step.prefix), { form: o.form });
      let run: CommandRun;
      try {
        run = await runJudge(o.command ?? log.command, file, { timeoutMs: o.timeoutMs, env: { NVX_PREFIX: String(step.prefix), NVX_EVENTS: String(o.events.length) }, onOutput: o.onOutput });
      } finally {
        fs.rmSync(file, { force: true });
      }
      const r: RerunStep = { step, now: run.timedOut ? 'abort' : verdictOfExit(run.exit), run };
      out.push(r);
      o.onStep?.(r);
    }
  } finally {
    process.removeListener('exit', cleanup);
    cleanup();
  }
  return out;
}

/** The conclusion a log's steps lead to (no command run). */
export function replayLog(log: BisectLog): { conclusion: PrefixConclusion; error?: string } {
  const b = new PrefixBisection(Math.max(1, log.events));
  for (const s of log.steps) b.record(s);
  return { conclusion: b.conclusion(), error: b.endsError() };
}
