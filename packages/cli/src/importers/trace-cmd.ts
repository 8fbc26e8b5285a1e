/**
 * `nvx import trace-cmd`: turn the text of `trace-cmd report` for the kvm
 * tracepoints of a KVM host (L0) running a nested hypervisor into an nvx
 * trace. docs/import.md has the mapping and its limits.
 *
 * The report is read three times, streaming, so a report of any size
 * imports in constant memory:
 *
 * 1. threads: which vCPU each thread is (most tracepoints print no vCPU
 *    number and are attributed through their thread), which physical CPUs
 *    appear, whether kvm_nested_vmenter was recorded;
 * 2. facts: the events each vCPU will produce, to choose the L1 preamble
 *    (which vCPUs run L2, whether they start in L2, the VMCS pointers they
 *    enter, what L1's MSR bitmap and L0's vmcs01 must intercept);
 * 3. output: the preamble, then the events.
 *
 * Per vCPU, a host exit is a *record*: a kvm_exit and what follows it on
 * that vCPU until the next kvm_entry (kvm_nested_vmexit: the exit came from
 * L2; kvm_nested_vmexit_inject: L0 reflected it to L1, with the reason and
 * qualification L1 gets; kvm_msr and kvm_cpuid: what L0 emulated;
 * kvm_nested_vmenter: an L1 VMLAUNCH/VMRESUME entered L2). A record becomes
 * zero or more nvx events when it closes.
 */
import * as fs from 'fs';
import * as readline from 'readline';
import { createHash } from 'crypto';
import { CPU_BASED, EXIT_REASON, KVM_CTLS_MUST_BE_1, VMCS, VMCS12_REVISION } from '@nvx/arch';
import { initialVmcs01Bitmap, testBitmapBit } from '@nvx/emulator';
import { LIMITS, Outcome, TraceError, TraceEvent, TraceHeader, asTraceError, createTraceWriter, makeHeader, nonFileKind } from '@nvx/trace';
import {
  CpuidFields,
  ExitReason,
  FormatError,
  KVM_TRACEPOINTS,
  TraceCmdRecord,
  parseCpuid,
  parseEntry,
  parseExit,
  parseInject,
  parseIntrVmexit,
  parseLine,
  parseMsr,
  parseVmenter,
} from './trace-cmd-format';
import { IMPORTED_FROM_TRACE_CMD } from './agreement';

export { IMPORTED_FROM_TRACE_CMD };

/**
 * The MSR index given to an L2 RDMSR/WRMSR that L0 reflected to L1: KVM does
 * not emulate those, so no kvm_msr line names the MSR. The index lies outside
 * both MSR-bitmap ranges, where every path reflects the access to L1.
 */
export const UNKNOWN_MSR = 0xffffffff;

/** Guest-physical layout of the preamble's pages. */
const LAYOUT = { base: 0x10000n, page: 0x1000n } as const;
const MIN_PAGES = 0x400;

export interface ImportOptions {
  /** skip lines that do not parse, counting them, instead of failing */
  skipBad?: boolean;
  /** bytes read so far over the three passes, and the total */
  onProgress?: (done: number, total: number) => void;
  /** the name to give the source in messages and the header (standard input read into a temporary file: '-') */
  name?: string;
}

export interface ImportResult {
  source: string;
  output: string;
  header: TraceHeader;
  /** events written, preamble included */
  events: number;
  preambleEvents: number;
  /** events that carry the host's recorded outcome as `expect` */
  expects: number;
  vcpus: number;
  pcpus: number;
  lines: number;
  /** lines by tracepoint */
  tracepoints: Record<string, number>;
  /** what was not turned into events, and how often */
  skipped: Record<string, number>;
  /** nested exits with no nvx event, replayed as a stand-in l2.vmcall, by reason */
  standins: Record<string, number>;
  /** entries and exits the trace implies but does not show (lost or unrecorded events) */
  inferred: { entries: number; exits: number };
  /** L2 MSR exits reflected to L1, imported with UNKNOWN_MSR */
  unknownMsr: number;
  dropped: { markers: number; events: number };
  warnings: string[];
}

// ---------------------------------------------------------------------------
// reading lines
// ---------------------------------------------------------------------------

const MAX_LINE = 64 * 1024;

async function forEachLine(file: string, onLine: (line: string, no: number) => void, onBytes: (n: number) => void): Promise<number> {
  let stream: fs.ReadStream;
  try {
    const st = await fs.promises.stat(file);
    if (st.isDirectory()) throw new TraceError('is a directory, not a trace-cmd report', { file });
    if (!st.isFile()) throw new TraceError(`is ${nonFileKind(st)}, not a regular file: the report must be a file`, { file });
    stream = fs.createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 16 });
  } catch (e) {
    throw asTraceError(e, file);
  }
  stream.on('data', (c: string | Buffer) => onBytes(typeof c === 'string' ? Buffer.byteLength(c) : c.length));
  const rl = readline.createInterface({ input: stream, crlfDelay: Infinity });
  let no = 0;
  try {
    for await (const line of rl) {
      no++;
      if (no === 1 && line.includes('\u0000')) throw new TraceError('this is a binary file: give the text of `trace-cmd report`, not trace.dat', { file, line: 1 });
      if (line.length > MAX_LINE) throw new TraceError(`line longer than ${MAX_LINE} characters`, { file, line: no });
      onLine(line, no);
    }
  } catch (e) {
    throw asTraceError(e, file);
  } finally {
    rl.close();
    stream.destroy();
  }
  return no;
}

// ---------------------------------------------------------------------------
// pass 1: threads and CPUs
// ---------------------------------------------------------------------------

const KVM = new Set<string>(KVM_TRACEPOINTS);
const EXPLICIT_VCPU = /^(?:vcpu\s+(\d+))/;

interface Threads {
  /** pid -> vCPU (after renumbering) */
  byPid: Map<number, number>;
  /** explicit vCPU number in the trace -> vCPU */
  renumber: Map<number, number>;
  /** physical CPU -> dense index */
  cpus: Map<number, number>;
  /** vCPU -> the thread it was seen as */
  names: Map<number, string>;
  hasVmenter: boolean;
  hasNestedVmexit: boolean;
  vcpus: number;
}

async function scanThreads(file: string, onBytes: (n: number) => void): Promise<Threads> {
  const explicit = new Map<number, number>();
  const explicitIds = new Set<number>();
  const comms = new Map<number, string>();
  const order: number[] = [];
  const cpus = new Set<number>();
  let hasVmenter = false;
  let hasNestedVmexit = false;
  await forEachLine(
    file,
    (line) => {
      const p = parseLine(line);
      if (p.t !== 'record' || !KVM.has(p.rec.tracepoint)) return;
      const r = p.rec;
      cpus.add(r.cpu);
      if (!comms.has(r.pid)) {
        comms.set(r.pid, r.comm);
        order.push(r.pid);
      }
      if (r.tracepoint === 'kvm_nested_vmenter') hasVmenter = true;
      if (r.tracepoint === 'kvm_nested_vmexit') hasNestedVmexit = true;
      if (r.tracepoint === 'kvm_exit' || r.tracepoint === 'kvm_entry' || r.tracepoint === 'kvm_nested_vmexit') {
        const m = EXPLICIT_VCPU.exec(r.body);
        if (m) {
          explicitIds.add(Number(m[1]));
          if (!explicit.has(r.pid)) explicit.set(r.pid, Number(m[1]));
        }
      }
    },
    onBytes,
  );
  // Threads without a vCPU number of their own: QEMU's thread name, else the next free number.
  const raw = new Map<number, number>(explicit);
  const used = new Set([...raw.values(), ...explicitIds]);
  for (const pid of order) {
    if (raw.has(pid)) continue;
    const m = /^CPU (\d+)\/KVM$/.exec(comms.get(pid) ?? '');
    if (m && !used.has(Number(m[1]))) {
      raw.set(pid, Number(m[1]));
      used.add(Number(m[1]));
    }
  }
  let next = 0;
  for (const pid of order) {
    if (raw.has(pid)) continue;
    while (used.has(next)) next++;
    raw.set(pid, next);
    used.add(next);
  }
  const ids = [...used].sort((a, b) => a - b);
  if (ids.length > LIMITS.maxVcpus) throw new TraceError(`the report has ${ids.length} vCPU threads; nvx models at most ${LIMITS.maxVcpus}`, { file });
  // Keep the host's numbers when they fit; else number densely, in order.
  const renumber = new Map<number, number>();
  const dense = ids.length > 0 && ids[ids.length - 1] >= LIMITS.maxVcpus;
  ids.forEach((id, i) => renumber.set(id, dense ? i : id));
  const byPid = new Map<number, number>();
  const names = new Map<number, string>();
  for (const pid of order) {
    const v = renumber.get(raw.get(pid)!)!;
    byPid.set(pid, v);
    if (!names.has(v)) names.set(v, `${comms.get(pid)}-${pid}`);
  }
  const cpuMap = new Map<number, number>();
  [...cpus].sort((a, b) => a - b).forEach((c, i) => cpuMap.set(c, i % LIMITS.maxPcpus));
  const vcpus = ids.length ? Math.max(...ids.map((id) => renumber.get(id)!)) + 1 : 1;
  return { byPid, renumber, cpus: cpuMap, names, hasVmenter, hasNestedVmexit, vcpus };
}

// ---------------------------------------------------------------------------
// the record machine (passes 2 and 3)
// ---------------------------------------------------------------------------

interface Rec {
  line: number;
  ts: number;
  /** from kvm_exit or kvm_nested_vmexit */
  exit?: { reason: ExitReason; qual: bigint };
  /** opened by kvm_exit (its time counts for the host's exit statistics) */
  fromExit: boolean;
  guest: boolean;
  msr?: { write: boolean; index: number; value: bigint; gp: boolean };
  cpuid?: CpuidFields;
  inject?: { reason: ExitReason; qual: bigint };
  intr: boolean;
  vmenter?: { ptr: bigint };
  vmenterFailed?: string;
  /** what opened it, when not a kvm_exit */
  opener: string;
}

type Level = 'off' | 'l1' | 'l2';

interface VcpuState {
  id: number;
  rec: Rec | null;
  model: Level;
  /** the vmcs12 the model has current (a key of the VMCS pointer) */
  key: string | null;
  launched: Set<string>;
  cpu: number;
  /** an L1 VMLAUNCH/VMRESUME exit whose success shows only by the next exit coming from L2 (kernels without kvm_nested_vmenter) */
  pendingEntry: { line: number } | null;
}

/** The vmcs12 a vCPU that starts in L2 is in before its first traced entry names one. */
const INITIAL = 'initial';

const vmcsKey = (ptr: bigint) => (ptr === 0xffffffffffffffffn ? 'evmcs' : '0x' + ptr.toString(16));

/** What the facts pass learns for one vCPU. */
interface VcpuFacts {
  nested: boolean;
  startsInL2: boolean;
  /** VMCS keys in order of first use */
  keys: string[];
  initialKey: string;
  /** per key: MSR accesses that exited from L2 with a known index: `${msr}:${w}` -> [reflected, handled] */
  msrs: Map<string, Map<string, [number, number]>>;
  /** (msr, write) pairs L0 handled for L2 that the model's vmcs01 would pass through */
  vmcs01: Set<string>;
}

interface Stats {
  lines: number;
  tracepoints: Record<string, number>;
  skipped: Record<string, number>;
  standins: Record<string, number>;
  inferred: { entries: number; exits: number };
  unknownMsr: number;
  dropped: { markers: number; events: number };
  hostExits: Record<string, [number, number]>;
  expects: number;
  events: number;
  evmcs: boolean;
}

const inc = (m: Record<string, number>, k: string, n = 1) => {
  m[k] = (m[k] ?? 0) + n;
};

const basicOf = (r: ExitReason | undefined) => (r?.value === undefined ? -1 : r.value & 0xffff);

const GP: Outcome = { k: 'gp' };
const OK: Outcome = { k: 'ok' };
const ENTERED: Outcome = { k: 'entered' };

class Machine {
  readonly vcpus: VcpuState[] = [];
  readonly stats: Stats = {
    lines: 0,
    tracepoints: {},
    skipped: {},
    standins: {},
    inferred: { entries: 0, exits: 0 },
    unknownMsr: 0,
    dropped: { markers: 0, events: 0 },
    hostExits: {},
    expects: 0,
    events: 0,
    evmcs: false,
  };
  readonly facts = new Map<number, VcpuFacts>();

  constructor(
    readonly file: string,
    readonly threads: Threads,
    readonly opts: ImportOptions,
    /** where events go (pass 3) or null (pass 2: facts only) */
    readonly sink: ((e: TraceEvent) => void) | null,
    /** the layout the preamble set up (pass 3) */
    readonly addr: ((vcpu: number, key: string) => bigint) | null,
    start?: (v: VcpuState) => void,
  ) {
    for (let i = 0; i < threads.vcpus; i++) {
      const v: VcpuState = { id: i, rec: null, model: 'off', key: null, launched: new Set(), cpu: -1, pendingEntry: null };
      start?.(v);
      this.vcpus.push(v);
    }
  }

  // ---- facts ----

  private fact(v: VcpuState): VcpuFacts {
    let f = this.facts.get(v.id);
    if (!f) {
      f = { nested: false, startsInL2: false, keys: [], initialKey: INITIAL, msrs: new Map(), vmcs01: new Set() };
      this.facts.set(v.id, f);
    }
    return f;
  }

  private emit(v: VcpuState, e: TraceEvent): void {
    this.stats.events++;
    if (e.expect) this.stats.expects++;
    if (!this.sink) {
      this.noteFacts(v, e);
      return;
    }
    this.sink(e);
  }

  private noteFacts(v: VcpuState, e: TraceEvent): void {
    if ((e.kind !== 'l2.rdmsr' && e.kind !== 'l2.wrmsr') || !e.expect || e.msr === UNKNOWN_MSR) return;
    const f = this.fact(v);
    const key = v.key ?? INITIAL;
    let m = f.msrs.get(key);
    if (!m) f.msrs.set(key, (m = new Map()));
    const write = e.kind === 'l2.wrmsr';
    const k = `${e.msr}:${write ? 1 : 0}`;
    const t = m.get(k) ?? [0, 0];
    if (e.expect.k === 'exit') t[0]++;
    else {
      t[1]++;
      if (!testBitmapBit(VMCS01_START, e.msr, write)) f.vmcs01.add(k);
    }
    m.set(k, t);
  }

  // ---- levels ----

  /** The model must run L2 on v now. */
  private needL2(v: VcpuState, line: number): void {
    if (v.model === 'l2') return;
    const f = this.fact(v);
    f.nested = true;
    if (v.model === 'off') {
      // Before its first traced entry: the preamble launches L2.
      f.startsInL2 = true;
      v.model = 'l2';
      if (v.key === null) v.key = INITIAL;
      v.launched.add(v.key);
      return;
    }
    // L1 entered L2 without a traced entry: lost events, or an entry the report does not show.
    this.stats.inferred.entries++;
    this.entryEvents(v, v.key ?? INITIAL, undefined, line);
  }

  /** The model must run L1 on v now. */
  private needL1(v: VcpuState): void {
    if (v.model === 'l2') {
      // L2 left to L1 without a traced nested exit.
      this.stats.inferred.exits++;
      this.emit(v, { kind: 'l2.vmcall', vcpu: v.id });
      v.model = 'l1';
      return;
    }
    if (v.model === 'off') v.model = 'l1';
  }

  private entryEvents(v: VcpuState, key: string, expect: Outcome | undefined, _line: number): void {
    const f = this.fact(v);
    f.nested = true;
    if (!this.sink && v.key === INITIAL && key !== INITIAL && f.initialKey === INITIAL && !f.keys.includes(key)) {
      // The vmcs12 L2 ran on before the first traced entry is taken to be the one L1 resumes first.
      f.initialKey = key;
      v.key = key;
      v.launched.add(key);
      const t = f.msrs.get(INITIAL);
      if (t) {
        f.msrs.delete(INITIAL);
        f.msrs.set(key, t);
      }
    }
    if (!f.keys.includes(key)) f.keys.push(key);
    if (v.key !== key) {
      if (this.addr) this.emit(v, { kind: 'l1.vmptrld', vcpu: v.id, gpa: this.addr(v.id, key) });
      v.key = key;
    }
    const launched = v.launched.has(key);
    const e: TraceEvent = launched ? { kind: 'l1.vmresume', vcpu: v.id } : { kind: 'l1.vmlaunch', vcpu: v.id };
    if (expect) e.expect = expect;
    this.emit(v, e);
    v.launched.add(key);
    v.model = 'l2';
  }

  private entry(v: VcpuState, key: string, line: number): void {
    this.needL1(v);
    this.entryEvents(v, key, ENTERED, line);
  }

  private standin(v: VcpuState, why: string, line: number): void {
    this.needL2(v, line);
    inc(this.stats.standins, why);
    this.emit(v, { kind: 'l2.vmcall', vcpu: v.id });
    v.model = 'l1';
  }

  private l2Event(v: VcpuState, e: TraceEvent, line: number): void {
    this.needL2(v, line);
    this.emit(v, e);
    if (e.expect?.k === 'exit') v.model = 'l1';
  }

  private l1Event(v: VcpuState, e: TraceEvent): void {
    this.needL1(v);
    this.emit(v, e);
  }

  private skip(what: string): void {
    inc(this.stats.skipped, what);
  }

  // ---- records ----

  private open(v: VcpuState, line: number, ts: number, opener: string): Rec {
    if (v.rec) this.close(v);
    v.rec = { line, ts, fromExit: opener === 'kvm_exit', guest: false, intr: false, opener };
    return v.rec;
  }

  private current(v: VcpuState, line: number, ts: number, opener: string): Rec {
    return v.rec ?? this.open(v, line, ts, opener);
  }

  private close(v: VcpuState): void {
    const r = v.rec;
    if (!r) return;
    v.rec = null;
    const guest = r.guest || r.inject !== undefined || r.intr;
    if (v.pendingEntry) {
      v.pendingEntry = null;
      if (guest) this.entry(v, v.key ?? INITIAL, r.line);
      else this.skip('kvm_exit VMLAUNCH/VMRESUME (L1, L2 did not run after it)');
    }
    if (guest) this.closeGuest(v, r);
    else this.closeL1(v, r);
  }

  private closeGuest(v: VcpuState, r: Rec): void {
    this.needL2(v, r.line);
    const inj = r.inject;
    const b = basicOf(r.exit?.reason);
    const reflected = inj !== undefined && r.exit !== undefined && !r.intr && !r.vmenterFailed && inj.reason.value !== undefined && b >= 0 && basicOf(inj.reason) === b;
    const exitOut: Outcome | undefined = reflected ? { k: 'exit', reason: inj!.reason.value!, qual: inj!.qual } : undefined;
    if (r.vmenterFailed) this.skip('kvm_nested_vmenter_failed (hardware VM-instruction error)');
    let mapped = false;
    if (r.exit && !r.vmenterFailed) {
      const vcpu = v.id;
      switch (b) {
        case EXIT_REASON.CPUID:
          this.l2Event(v, { kind: 'l2.cpuid', vcpu, leaf: r.cpuid?.leaf ?? 0, subleaf: r.cpuid?.subleaf ?? 0, cpl: 0, expect: exitOut ?? cpuidOutcome(r.cpuid) }, r.line);
          mapped = true;
          break;
        case EXIT_REASON.MSR_READ:
        case EXIT_REASON.MSR_WRITE: {
          const write = b === EXIT_REASON.MSR_WRITE;
          const m = r.msr && r.msr.write === write ? r.msr : undefined;
          if (!exitOut && !m) break;
          const msr = m?.index ?? UNKNOWN_MSR;
          if (msr === UNKNOWN_MSR) this.stats.unknownMsr++;
          const expect = exitOut ?? (m!.gp ? GP : write ? OK : { k: 'value', value: m!.value });
          this.l2Event(v, write ? { kind: 'l2.wrmsr', vcpu, msr, value: m?.value ?? 0n, expect } : { kind: 'l2.rdmsr', vcpu, msr, expect }, r.line);
          mapped = true;
          break;
        }
        case EXIT_REASON.VMCALL:
          this.l2Event(v, { kind: 'l2.vmcall', vcpu, expect: exitOut ?? OK }, r.line);
          mapped = true;
          break;
        case EXIT_REASON.APIC_ACCESS: {
          const type = Number((r.exit.qual >> 12n) & 0xfn);
          if (!exitOut || type > 1) break;
          const offset = Number(r.exit.qual & 0xfffn);
          this.l2Event(v, type === 1 ? { kind: 'l2.apic-write', vcpu, offset, value: 0, expect: exitOut } : { kind: 'l2.apic-read', vcpu, offset, expect: exitOut }, r.line);
          mapped = true;
          break;
        }
      }
      if (!mapped) {
        const name = r.exit.reason.name;
        if (reflected) this.standin(v, name, r.line);
        else this.skip(r.msr || r.cpuid ? `kvm_exit ${name} (L2, handled by L0; no matching kvm_msr/kvm_cpuid)` : `kvm_exit ${name} (L2, handled by L0)`);
      }
    } else if (!r.exit && !inj) this.skip(`${r.opener} (L2, no kvm_exit)`);
    // A nested exit that is not this exit reflected (an interrupt for L1, a failed entry, an exit the report does not show).
    if (inj && !reflected) this.standin(v, inj.reason.name + (r.intr ? ' (kvm_nested_intr_vmexit)' : ''), r.line);
  }

  private closeL1(v: VcpuState, r: Rec): void {
    const b = basicOf(r.exit?.reason);
    const isEntryExit = b === EXIT_REASON.VMLAUNCH || b === EXIT_REASON.VMRESUME;
    if (r.vmenter) {
      if (r.vmenterFailed) this.skip('kvm_nested_vmenter_failed (entry not replayed)');
      else this.entry(v, vmcsKey(r.vmenter.ptr), r.line);
      return;
    }
    if (r.vmenterFailed) {
      this.skip('kvm_nested_vmenter_failed (entry not replayed)');
      return;
    }
    if (!r.exit) {
      this.skip(`${r.opener} (no kvm_exit before it)`);
      return;
    }
    const name = r.exit.reason.name;
    const vcpu = v.id;
    if (isEntryExit) {
      if (this.threads.hasVmenter) this.skip(`kvm_exit ${name} (L1, no kvm_nested_vmenter: the entry failed)`);
      else v.pendingEntry = { line: r.line };
      return;
    }
    if (b === EXIT_REASON.MSR_READ && r.msr && !r.msr.write) {
      this.l1Event(v, { kind: 'l1.rdmsr', vcpu, msr: r.msr.index, expect: r.msr.gp ? GP : { k: 'value', value: r.msr.value } });
    } else if (b === EXIT_REASON.MSR_WRITE && r.msr && r.msr.write) {
      this.l1Event(v, { kind: 'l1.wrmsr', vcpu, msr: r.msr.index, value: r.msr.value, expect: r.msr.gp ? GP : OK });
    } else if (b === EXIT_REASON.CPUID && r.cpuid) {
      this.l1Event(v, { kind: 'l1.cpuid', vcpu, leaf: r.cpuid.leaf, subleaf: r.cpuid.subleaf, cpl: 0, expect: cpuidOutcome(r.cpuid) });
    } else if (b === EXIT_REASON.MSR_READ || b === EXIT_REASON.MSR_WRITE || b === EXIT_REASON.CPUID) {
      this.skip(`kvm_exit ${name} (L1, no matching kvm_msr/kvm_cpuid)`);
    } else this.skip(`kvm_exit ${name} (L1)`);
  }

  // ---- lines ----

  /** the vCPU the last bare record named (bare records have no thread to tell them apart) */
  private bareVcpu: number | undefined;

  private vcpuOf(rec: TraceCmdRecord, explicit: number | undefined): VcpuState {
    if (rec.bare) {
      if (explicit !== undefined) this.bareVcpu = explicit;
      else explicit = this.bareVcpu;
    }
    const id = explicit !== undefined ? this.threads.renumber.get(explicit) : this.threads.byPid.get(rec.pid);
    const v = id === undefined ? undefined : this.vcpus[id];
    if (!v) throw new FormatError(`vCPU ${explicit ?? '?'} of thread ${rec.comm}-${rec.pid} was not seen in the first pass`);
    const cpu = this.threads.cpus.get(rec.cpu) ?? 0;
    if (v.cpu !== cpu) {
      if (this.sink) {
        if (v.cpu >= 0) this.sink({ kind: 'host.vcpu-put', vcpu: v.id });
        this.sink({ kind: 'host.vcpu-load', vcpu: v.id, cpu });
      }
      v.cpu = cpu;
    }
    return v;
  }

  line(text: string, no: number): void {
    this.stats.lines++;
    const p = parseLine(text);
    if (p.t === 'meta') return;
    if (p.t === 'dropped') {
      this.stats.dropped.markers++;
      this.stats.dropped.events += p.count ?? 0;
      const cpu = this.threads.cpus.get(p.cpu);
      for (const v of this.vcpus) {
        if (v.cpu !== cpu) continue;
        if (v.rec) this.skip('records cut by dropped events');
        v.rec = null;
        v.pendingEntry = null;
      }
      return;
    }
    if (p.t === 'bad') {
      this.bad(no, p.why);
      return;
    }
    const rec = p.rec;
    inc(this.stats.tracepoints, rec.tracepoint);
    if (!KVM.has(rec.tracepoint)) {
      this.skip(rec.tracepoint);
      return;
    }
    try {
      this.record(rec, no);
    } catch (e) {
      if (e instanceof FormatError) this.bad(no, `${rec.tracepoint}: ${e.message}`);
      else throw e;
    }
  }

  private bad(no: number, why: string): void {
    if (!this.opts.skipBad) throw new TraceError(`${why} (use --skip-bad to skip such lines)`, { file: this.file, line: no });
    this.skip('malformed lines');
  }

  private amd(): never {
    throw new TraceError('this report is from an AMD (SVM) host; nvx models Intel VMX only', { file: this.file });
  }

  private record(rec: TraceCmdRecord, no: number): void {
    switch (rec.tracepoint) {
      case 'kvm_exit': {
        const f = parseExit(rec.body);
        if (f.reason.svm) this.amd();
        const v = this.vcpuOf(rec, f.vcpu);
        const r = this.open(v, no, rec.ts, 'kvm_exit');
        r.exit = { reason: f.reason, qual: f.qual };
        const h = (this.stats.hostExits[f.reason.name] ??= [0, 0]);
        h[0]++;
        return;
      }
      case 'kvm_nested_vmexit': {
        const f = parseExit(rec.body);
        if (f.reason.svm) this.amd();
        const v = this.vcpuOf(rec, f.vcpu);
        let r = v.rec;
        if (!r || r.guest || r.inject || (r.exit && basicOf(r.exit.reason) !== basicOf(f.reason))) r = this.open(v, no, rec.ts, 'kvm_nested_vmexit');
        r.guest = true;
        r.exit ??= { reason: f.reason, qual: f.qual };
        return;
      }
      case 'kvm_nested_vmexit_inject': {
        const f = parseInject(rec.body);
        if (f.reason.svm) this.amd();
        const v = this.vcpuOf(rec, undefined);
        let r = this.current(v, no, rec.ts, 'kvm_nested_vmexit_inject');
        if (r.inject) r = this.open(v, no, rec.ts, 'kvm_nested_vmexit_inject');
        r.inject = f;
        return;
      }
      case 'kvm_nested_intr_vmexit': {
        parseIntrVmexit(rec.body);
        const v = this.vcpuOf(rec, undefined);
        let r = this.current(v, no, rec.ts, 'kvm_nested_intr_vmexit');
        if (r.inject) r = this.open(v, no, rec.ts, 'kvm_nested_intr_vmexit');
        r.intr = true;
        return;
      }
      case 'kvm_msr': {
        const f = parseMsr(rec.body);
        const v = this.vcpuOf(rec, undefined);
        const r = this.current(v, no, rec.ts, 'kvm_msr');
        if (r.msr) this.skip('kvm_msr (a second one in the same exit)');
        else r.msr = f;
        return;
      }
      case 'kvm_cpuid': {
        const f = parseCpuid(rec.body);
        const v = this.vcpuOf(rec, undefined);
        const r = this.current(v, no, rec.ts, 'kvm_cpuid');
        if (r.cpuid) this.skip('kvm_cpuid (a second one in the same exit)');
        else r.cpuid = f;
        return;
      }
      case 'kvm_nested_vmenter':
      case 'kvm_nested_vmrun': {
        const f = parseVmenter(rec.body);
        if (f.svm) this.amd();
        const v = this.vcpuOf(rec, undefined);
        let r = this.current(v, no, rec.ts, rec.tracepoint);
        if (r.vmenter) r = this.open(v, no, rec.ts, rec.tracepoint);
        r.vmenter = { ptr: f.ptr };
        if (f.ptr === 0xffffffffffffffffn) this.stats.evmcs = true;
        return;
      }
      case 'kvm_nested_vmenter_failed': {
        const v = this.vcpuOf(rec, undefined);
        const r = this.current(v, no, rec.ts, 'kvm_nested_vmenter_failed');
        r.vmenterFailed ??= rec.body;
        return;
      }
      case 'kvm_entry': {
        const f = parseEntry(rec.body);
        const v = this.vcpuOf(rec, f.vcpu);
        const r = v.rec;
        if (r?.fromExit && r.exit) {
          const h = this.stats.hostExits[r.exit.reason.name];
          if (h) h[1] += Math.max(0, Math.round((rec.ts - r.ts) * 1e9));
        }
        this.close(v);
        return;
      }
    }
  }

  finish(): void {
    for (const v of this.vcpus) {
      this.close(v);
      if (v.pendingEntry) {
        v.pendingEntry = null;
        this.skip('kvm_exit VMLAUNCH/VMRESUME (L1, at the end of the report)');
      }
    }
  }
}

function cpuidOutcome(c: CpuidFields | undefined): Outcome {
  // Without kvm_cpuid the registers are unknown: an expect that checks only that no exit reached L1.
  if (!c) return { k: 'cpuid' } as Outcome;
  return { k: 'cpuid', eax: c.eax, ebx: c.ebx, ecx: c.ecx, edx: c.edx };
}

const VMCS01_START = initialVmcs01Bitmap();

// ---------------------------------------------------------------------------
// the preamble
// ---------------------------------------------------------------------------

interface Layout {
  vmxon: Map<number, bigint>;
  vmcs: Map<string, { vmcs: bigint; bitmap: bigint }>;
  pages: number;
}

function layout(facts: Map<number, VcpuFacts>): Layout {
  const vmxon = new Map<number, bigint>();
  const vmcs = new Map<string, { vmcs: bigint; bitmap: bigint }>();
  let next = LAYOUT.base;
  const take = () => {
    const a = next;
    next += LAYOUT.page;
    return a;
  };
  for (const [id, f] of [...facts].sort((a, b) => a[0] - b[0])) {
    if (!f.nested) continue;
    vmxon.set(id, take());
    for (const k of keysOf(f)) vmcs.set(`${id}/${k}`, { vmcs: take(), bitmap: take() });
  }
  return { vmxon, vmcs, pages: Math.max(MIN_PAGES, Number(next / LAYOUT.page) + 1) };
}

/** The vCPU's VMCS keys, the one it starts on first. */
function keysOf(f: VcpuFacts): string[] {
  const keys = f.keys.filter((k) => k !== f.initialKey);
  return [f.initialKey, ...keys].filter((k, i) => i > 0 || f.startsInL2 || f.keys.includes(k));
}

/**
 * Per vCPU that runs L2: the VMXON region and each vmcs12 get their revision
 * id (`l1.write`), VMXON, then per vmcs12 a VMPTRLD and VMWRITEs that turn on
 * MSR bitmaps at a page of its own, where L1 intercepts exactly the MSR
 * accesses the host reflected to L1 more often than it handled them;
 * `host.msr-intercept` for the MSRs L0 handled for L2 that the model's vmcs01
 * would otherwise pass through; finally VMLAUNCH when the report starts with
 * L2 running.
 */
function preamble(facts: Map<number, VcpuFacts>, lay: Layout): TraceEvent[] {
  const out: TraceEvent[] = [];
  const rev = BigInt(VMCS12_REVISION);
  for (const [id, f] of [...facts].sort((a, b) => a[0] - b[0])) {
    if (!f.nested) continue;
    const vmxon = lay.vmxon.get(id)!;
    out.push({ kind: 'l1.write', vcpu: id, gpa: vmxon, size: 4, value: rev, expect: OK });
    out.push({ kind: 'l1.vmxon', vcpu: id, gpa: vmxon, expect: OK });
    const keys = keysOf(f);
    // Set up every vmcs12, the one the vCPU starts on last so it stays current.
    for (const k of [...keys.slice(1), keys[0]]) {
      if (k === undefined) continue;
      const a = lay.vmcs.get(`${id}/${k}`)!;
      out.push({ kind: 'l1.write', vcpu: id, gpa: a.vmcs, size: 4, value: rev, expect: OK });
      out.push({ kind: 'l1.vmptrld', vcpu: id, gpa: a.vmcs, expect: OK });
      // MSR bitmaps, and the must-be-1 bits of the controls KVM verifies at VM-entry (vmx_control_verify)
      out.push({ kind: 'l1.vmwrite', vcpu: id, field: VMCS.CPU_BASED_VM_EXEC_CONTROL, value: BigInt((CPU_BASED.USE_MSR_BITMAPS | KVM_CTLS_MUST_BE_1.cpu) >>> 0), expect: OK });
      out.push({ kind: 'l1.vmwrite', vcpu: id, field: VMCS.PIN_BASED_VM_EXEC_CONTROL, value: BigInt(KVM_CTLS_MUST_BE_1.pin), expect: OK });
      out.push({ kind: 'l1.vmwrite', vcpu: id, field: VMCS.VM_EXIT_CONTROLS, value: BigInt(KVM_CTLS_MUST_BE_1.exit), expect: OK });
      out.push({ kind: 'l1.vmwrite', vcpu: id, field: VMCS.VM_ENTRY_CONTROLS, value: BigInt(KVM_CTLS_MUST_BE_1.entry), expect: OK });
      out.push({ kind: 'l1.vmwrite', vcpu: id, field: VMCS.MSR_BITMAP, value: a.bitmap, expect: OK });
      const tallies = [...(f.msrs.get(k) ?? new Map<string, [number, number]>())].sort((x, y) => (x[0] < y[0] ? -1 : 1));
      for (const [mk, [reflected, handled]] of tallies) {
        if (reflected === 0 || reflected < handled) continue;
        const [msr, w] = mk.split(':').map(Number);
        out.push({ kind: 'l1.msr-bitmap', vcpu: id, gpa: a.bitmap, msr, access: w ? 'write' : 'read', intercept: true, expect: OK });
      }
    }
    for (const mk of [...f.vmcs01].sort()) {
      const [msr, w] = mk.split(':').map(Number);
      out.push({ kind: 'host.msr-intercept', vcpu: id, msr, access: w ? 'write' : 'read', intercept: true, expect: OK });
    }
    if (f.startsInL2) out.push({ kind: 'l1.vmlaunch', vcpu: id, expect: ENTERED });
  }
  return out;
}

// ---------------------------------------------------------------------------
// provenance
// ---------------------------------------------------------------------------

/** A JSON object as a provenance value, dropping the rarest entries into "(others)" if it would be too long. */
function capJson(m: Record<string, number | [number, number]>): string {
  const entries = Object.entries(m).sort((a, b) => {
    const na = Array.isArray(a[1]) ? a[1][0] : a[1];
    const nb = Array.isArray(b[1]) ? b[1][0] : b[1];
    return nb - na || (a[0] < b[0] ? -1 : 1);
  });
  for (let keep = entries.length; keep >= 0; keep--) {
    const o: Record<string, unknown> = Object.fromEntries(entries.slice(0, keep));
    const rest = entries.slice(keep);
    if (rest.length) o['(others)'] = rest.reduce((s, [, v]) => s + (Array.isArray(v) ? v[0] : v), 0);
    const s = JSON.stringify(o);
    if (s.length <= LIMITS.maxProvenanceValue) return s;
  }
  return '{}';
}

function provenance(source: string, sha: string, threads: Threads, st: Stats, preambleEvents: number): Record<string, string> {
  const p: Record<string, string> = {
    generator: 'nvx import trace-cmd',
    imported: IMPORTED_FROM_TRACE_CMD,
    source,
    'source.sha256': sha,
    'source.lines': String(st.lines),
    'import.preamble': String(preambleEvents),
    'import.vcpus': JSON.stringify(Object.fromEntries([...threads.names].sort((a, b) => a[0] - b[0]).map(([v, n]) => [String(v), n]))).slice(0, LIMITS.maxProvenanceValue),
    'import.tracepoints': capJson(st.tracepoints),
    'import.skipped': capJson(st.skipped),
    'import.standins': capJson(st.standins),
    'import.inferred': JSON.stringify(st.inferred),
    'import.unknown-msr': `0x${UNKNOWN_MSR.toString(16)} x${st.unknownMsr}`,
    'host.exits': capJson(st.hostExits),
  };
  if (st.dropped.markers) p['import.dropped'] = `${st.dropped.markers} markers, ${st.dropped.events} events`;
  const cpus = [...threads.cpus].filter(([c, i]) => c !== i);
  if (cpus.length) p['import.cpus'] = JSON.stringify(Object.fromEntries([...threads.cpus].map(([c, i]) => [String(i), c]))).slice(0, LIMITS.maxProvenanceValue);
  if (st.evmcs) p['import.note'] = 'L1 used an enlightened VMCS (vmcs pointer all-ones); the model replays it on a plain vmcs12';
  return p;
}

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  try {
    for await (const c of fs.createReadStream(file)) h.update(c as Buffer);
  } catch (e) {
    throw asTraceError(e, file);
  }
  return h.digest('hex');
}

// ---------------------------------------------------------------------------
// the importer
// ---------------------------------------------------------------------------

/** Import `source` (the text of `trace-cmd report`) into the trace file `output`. */
export async function importTraceCmd(source: string, output: string, opts: ImportOptions = {}): Promise<ImportResult> {
  if (opts.name === undefined) return importFile(source, output, opts);
  try {
    return { ...(await importFile(source, output, opts)), source: opts.name };
  } catch (e) {
    throw e instanceof TraceError && e.where.file === source ? e.at({ file: opts.name }) : e;
  }
}

async function importFile(source: string, output: string, opts: ImportOptions): Promise<ImportResult> {
  let size: number;
  try {
    size = (await fs.promises.stat(source)).size;
  } catch (e) {
    throw asTraceError(e, source);
  }
  const total = Math.max(1, size * 3);
  let done = 0;
  const onBytes = (n: number) => {
    done += n;
    opts.onProgress?.(Math.min(done, total), total);
  };

  // pass 1
  const threads = await scanThreads(source, onBytes);

  // pass 2
  const facts = new Machine(source, threads, opts, null, null);
  await forEachLine(source, (l, no) => facts.line(l, no), onBytes);
  facts.finish();

  const lay = layout(facts.facts);
  const pre = preamble(facts.facts, lay);
  const st = facts.stats;
  const warnings: string[] = [];
  if (!threads.hasNestedVmexit && st.events > 0) warnings.push('no kvm_nested_vmexit lines: every exit is taken as coming from L1 (record with `trace-cmd record -e kvm`)');
  if (st.dropped.markers) warnings.push(`the report lost events (${st.dropped.markers} 'EVENTS DROPPED' markers): records cut by them are skipped`);
  if (st.events === 0) warnings.push('no kvm exit in the report maps to an nvx event');

  const header = makeHeader(
    { vcpus: threads.vcpus, pcpus: Math.max(1, Math.min(LIMITS.maxPcpus, threads.cpus.size)), memslots: [{ slot: 0, gfn: 0n, npages: lay.pages, flags: 0 }] },
    provenance(opts.name ?? source, await sha256(source), threads, st, pre.length),
  );

  // pass 3
  const w = createTraceWriter(output, header);
  let out: Machine;
  try {
    for (const e of pre) w.write(e);
    out = new Machine(source, threads, opts, (e) => w.write(e), (vcpu, key) => lay.vmcs.get(`${vcpu}/${key}`)!.vmcs, (v) => {
      const f = facts.facts.get(v.id);
      if (!f?.nested) return;
      v.model = f.startsInL2 ? 'l2' : 'l1';
      v.key = keysOf(f)[0] ?? null;
      if (f.startsInL2 && v.key) v.launched.add(v.key);
    });
    await forEachLine(source, (l, no) => out.line(l, no), onBytes);
    out.finish();
    w.close();
  } catch (e) {
    w.abort();
    throw e;
  }
  opts.onProgress?.(total, total);
  const s = out.stats;
  return {
    source,
    output,
    header,
    events: w.count,
    preambleEvents: pre.length,
    expects: s.expects + pre.filter((e) => e.expect).length,
    vcpus: threads.vcpus,
    pcpus: header.config.pcpus,
    lines: s.lines,
    tracepoints: s.tracepoints,
    skipped: s.skipped,
    standins: s.standins,
    inferred: s.inferred,
    unknownMsr: s.unknownMsr,
    dropped: s.dropped,
    warnings,
  };
}
