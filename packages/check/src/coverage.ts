/**
 * Coverage of the modelled rules, per area, in the way NecoFuzz reports
 * coverage of nested code: which of the rules an area defines a fuzz run
 * exercised, as counts and a share of the rules.
 *
 * It is computed from outside the emulator, from what a replay under the
 * reference shows: each event, the world just before it (read only), and
 * its outcome. The rules, per group:
 *
 *  - nested: the exit reasons delivered to L1, the VM-instruction errors
 *    L1 gets, VMLAUNCH and VMRESUME entering L2;
 *  - msr-bitmap: L2 MSR accesses per bitmap quadrant (low/high MSRs,
 *    read/write) whether or not L1 gets the exit, MSRs outside both ranges,
 *    x2APIC MSRs with and without x2APIC virtualization, entries without,
 *    with, with an unbacked and with an unaligned bitmap, a bitmap address
 *    changed between entries, L1 and L0 intercept changes, the enlightened
 *    bitmap clean and dirty at entry;
 *  - evmcs: each clean-field group dirtied by L1, and skipped at an entry
 *    (its clean bit set on a resumed eVMCS), entries that copy everything;
 *  - shadow-vmcs: L1 VMREAD and VMWRITE of each field of KVM's RO and RW
 *    shadow lists (with VMCS shadowing on), refused VMWRITEs to read-only
 *    and unknown fields, L2's VMREAD/VMWRITE completed through L1's shadow
 *    VMCS or exiting to L1;
 *  - guest-pages: the state of each nested page (MSR bitmap, eVMCS,
 *    APIC-access, virtual-APIC, PI descriptor) when an entry uses it (first
 *    use, same backing as last time: a cache hit, moved since: a refresh,
 *    another address, unbacked), what invalidates a page an L2 has used
 *    (migration, zap, memslot move, delete, resize, flags), posted
 *    interrupts to a running and a stopped L2;
 *  - cpuid-fault: CPUID in L1, L2 and host tasks with faulting on and off at
 *    CPL 0 and above (SMM, both orders in L2), the writes to
 *    MISC_FEATURES_ENABLES that turn faulting on and off or are refused,
 *    scheduling (loads with the thread's faulting on and off, puts,
 *    preemption by a host task, a vCPU moving CPU), SMI, RSM, and the VMM
 *    clearing the support bit.
 */
import {
  CPU_BASED,
  EVMCS,
  EVMCS_CLEAN_GROUPS,
  HV_ENLIGHTENMENTS_CONTROL,
  INVALID_GPA,
  MSR,
  MUST_BE_1_CONTROLS,
  SECONDARY_EXEC,
  VMCS,
  VMCS_FIELDS,
  VMCS_SHADOW_RO_FIELDS,
  VMCS_SHADOW_RW_FIELDS,
  VMX_EXIT_REASON_BASIC_MASK,
  VMX_EXIT_REASONS_FAILED_VMENTRY,
  exitReasonName,
  vmcsFieldByEncoding,
  vmxErrorName,
} from '@nvx/arch';
import { NESTED_PAGE, NestedPage, Vcpu, World, apicPagesInUse, gfnToHva, gpaToGfn, nestedPageGpa, readGuest, vmcs12Get, vmcs12Get32 } from '@nvx/emulator';
import type { Outcome, TraceEvent } from '@nvx/trace';

export type CoverageGroup = 'nested' | 'msr-bitmap' | 'evmcs' | 'shadow-vmcs' | 'guest-pages' | 'cpuid-fault';
export const COVERAGE_GROUPS: readonly CoverageGroup[] = ['nested', 'msr-bitmap', 'evmcs', 'shadow-vmcs', 'guest-pages', 'cpuid-fault'];

/** Hit counts by group and rule (plain data: it crosses worker boundaries and merges by addition). */
export type CoverageCounts = Partial<Record<CoverageGroup, Record<string, number>>>;

// ---------------------------------------------------------------- the rules each group defines

const NESTED_EXITS = ['MSR_READ', 'MSR_WRITE', 'CPUID', 'VMCALL', 'VMREAD', 'VMWRITE', 'APIC_ACCESS', 'EXCEPTION_NMI', 'INVALID_STATE'];
const VMFAILS = [
  'VMCLEAR_INVALID_ADDRESS',
  'VMCLEAR_VMXON_POINTER',
  'VMLAUNCH_NONCLEAR_VMCS',
  'VMRESUME_NONLAUNCHED_VMCS',
  'ENTRY_INVALID_CONTROL_FIELD',
  'VMPTRLD_INVALID_ADDRESS',
  'VMPTRLD_VMXON_POINTER',
  'VMPTRLD_INCORRECT_VMCS_REVISION_ID',
  'UNSUPPORTED_VMCS_COMPONENT',
  'VMWRITE_READ_ONLY_VMCS_COMPONENT',
  'VMXON_IN_VMX_ROOT_OPERATION',
];
const QUADRANTS = ['low read', 'high read', 'low write', 'high write'];
const PAGES = ['MSR bitmap', 'eVMCS', 'APIC-access page', 'virtual-APIC page', 'PI descriptor'];
const PAGE_STATES = ['first use', 'same backing (cache hit)', 'moved since last use', 'other address', 'unbacked'];
const CAUSES = ['page-migrate', 'page-zap', 'memslot-move', 'memslot-delete', 'memslot-resize', 'memslot-flags'];
const fieldName = (enc: number) => vmcsFieldByEncoding(enc)?.name ?? `0x${enc.toString(16)}`;

export const COVERAGE_RULES: Record<CoverageGroup, readonly string[]> = {
  nested: [...NESTED_EXITS.map((r) => `exit ${r}`), 'exit (failed entry)', ...VMFAILS.map((e) => `vmfail ${e}`), 'vmfail-invalid', 'VMLAUNCH entered', 'VMRESUME entered'],
  'msr-bitmap': [
    ...QUADRANTS.flatMap((q) => [`L2 ${q}: exit to L1`, `L2 ${q}: no exit to L1`]),
    'L2 read outside the bitmap ranges',
    'L2 write outside the bitmap ranges',
    'L2 x2APIC MSR, x2APIC virtualized',
    'L2 x2APIC MSR, not virtualized',
    'entry without MSR bitmaps',
    'entry with an MSR bitmap',
    'entry with an unbacked MSR bitmap',
    'entry refused: unaligned MSR bitmap',
    'MSR-bitmap address changed between entries',
    'L1 sets an intercept',
    'L1 clears an intercept',
    'L0 changes vmcs01 while L1 runs',
    'L0 changes vmcs01 while L2 runs',
    'entry with the enlightened bitmap, MSR_BITMAP clean',
    'entry with the enlightened bitmap, MSR_BITMAP dirty',
  ],
  evmcs: [...EVMCS_CLEAN_GROUPS.flatMap((g) => [`${g.name} dirtied`, `${g.name} skipped`]), 'entry copying every group (new or launched eVMCS)', 'entry with every group clean'],
  'shadow-vmcs': [
    ...VMCS_SHADOW_RW_FIELDS.flatMap((f) => [`VMREAD ${fieldName(f)} (RW)`, `VMWRITE ${fieldName(f)} (RW)`]),
    ...VMCS_SHADOW_RO_FIELDS.flatMap((f) => [`VMREAD ${fieldName(f)} (RO)`, `VMWRITE ${fieldName(f)} (RO)`]),
    'VMWRITE to a read-only field refused',
    'VMREAD/VMWRITE of a field not in vmcs12',
    'L2 VMREAD through the shadow VMCS',
    'L2 VMREAD exits to L1',
    'L2 VMWRITE through the shadow VMCS',
    'L2 VMWRITE exits to L1',
  ],
  'guest-pages': [
    // an entry fails when a page other than the MSR bitmap is not backed: only the MSR bitmap is used unbacked
    ...PAGES.flatMap((p, i) => PAGE_STATES.filter((s) => i === 0 || s !== 'unbacked').map((s) => `${p}: ${s}`)),
    ...PAGES.flatMap((p) => CAUSES.map((c) => `${p} invalidated by ${c}`)),
    'posted interrupt to a running L2',
    'posted interrupt to an L2 not running',
  ],
  'cpuid-fault': [
    'L1 CPUID, faulting off',
    'L1 CPUID at CPL 0, faulting on',
    'L1 CPUID at CPL > 0, faulting on (#GP)',
    'L1 CPUID in SMM, faulting on',
    'L2 CPUID, faulting off',
    'L2 CPUID at CPL 0, faulting on',
    "L2 CPUID at CPL > 0, faulting on, KVM's order (exit to L1)",
    'L2 CPUID at CPL > 0, faulting on, architectural order (#GP in L2)',
    'host task CPUID, faulting off',
    'host task CPUID at CPL 0, faulting on',
    'host task CPUID at CPL > 0, faulting on (#GP)',
    'guest turns faulting on',
    'guest turns faulting off',
    'MISC_FEATURES_ENABLES write refused (reserved bit)',
    'MISC_FEATURES_ENABLES write refused (no support)',
    'L2 MISC_FEATURES_ENABLES access handled by L0',
    'guest writes MSR_PLATFORM_INFO (#GP)',
    "vCPU loaded, thread's faulting off",
    "vCPU loaded, thread's faulting on",
    'vCPU put',
    'vCPU moves to another CPU',
    'host task preempts a loaded vCPU',
    'VMM clears the support bit',
    'SMI',
    'RSM',
    'hardware without CPUID faulting',
  ],
};

// ---------------------------------------------------------------- the recorder

const A = CPU_BASED.ACTIVATE_SECONDARY_CONTROLS;
const GROUP_BY_OFFSET = new Map<number, number>();
for (const f of VMCS_FIELDS) {
  if (f.evmcsOffset === null || f.cleanGroup === null || f.cleanGroup < 0) continue;
  for (let i = 0; i < f.evmcsSize!; i++) GROUP_BY_OFFSET.set(f.evmcsOffset + i, f.cleanGroup);
}
const SHADOW_KIND = new Map<number, 'RO' | 'RW'>();
for (const f of VMCS_SHADOW_RW_FIELDS) SHADOW_KIND.set(f, 'RW');
for (const f of VMCS_SHADOW_RO_FIELDS) SHADOW_KIND.set(f, 'RO');
const PAGE_IDS: readonly NestedPage[] = [NESTED_PAGE.MSR_BITMAP, NESTED_PAGE.EVMCS, NESTED_PAGE.APIC_ACCESS, NESTED_PAGE.VAPIC, NESTED_PAGE.PI_DESC];

function quadrant(msr: number, write: boolean): string | null {
  const hi = msr >= 0xc0000000 && msr <= 0xc0001fff;
  if (msr > 0x1fff && !hi) return null;
  return `${hi ? 'high' : 'low'} ${write ? 'write' : 'read'}`;
}

function evmcsGpaOf(v: Vcpu): bigint {
  return v.nested.vpAssistEvmcs;
}

/** The nested pages an entry uses on this vCPU, as bits 1 << page. */
function pagesInUse(v: Vcpu): number {
  let m = apicPagesInUse(v);
  if (vmcs12Get32(v.nested, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.USE_MSR_BITMAPS) m |= 1 << NESTED_PAGE.MSR_BITMAP;
  if (v.nested.hvEvmcsVmptr !== INVALID_GPA) m |= 1 << NESTED_PAGE.EVMCS;
  return m;
}

/** What a vCPU event holds of guest frames (only host memory events look). */
const NO_FRAMES: ReadonlyMap<number, readonly number[]> = new Map();
const NO_VCPUS: readonly number[] = [];

/** A rule's coverage key and hits, and the pairs it starts (by the rule that follows). */
interface RuleKey {
  key: string;
  rule: string;
  count: number;
  then: Map<RuleKey, PairKey>;
}

/** An ordered pair's key and hits. */
interface PairKey {
  key: string;
  count: number;
}

interface PageUse {
  gpa: bigint;
  hva: number;
  pfn: number;
}

/**
 * Records which rules a replay exercises. Call `before(w, e)` with the
 * world just before the event, then `after(w, e, outcome)` with the world
 * after it (the same replayer's working copy is fine).
 */
export class CoverageRecorder {
  /** Hits per rule, by group (made from the interned keys when asked for: a hit only bumps a counter). */
  get counts(): Record<CoverageGroup, Record<string, number>> {
    const out = { nested: {}, 'msr-bitmap': {}, evmcs: {}, 'shadow-vmcs': {}, 'guest-pages': {}, 'cpuid-fault': {} } as Record<CoverageGroup, Record<string, number>>;
    for (const g of COVERAGE_GROUPS) for (const rk of this.keys[g].values()) if (rk.count) out[g][rk.rule] = rk.count;
    return out;
  }
  /** (vcpu, page) -> how the last entry found it */
  private lastUse = new Map<number, PageUse>();
  /** vcpu -> MSR_BITMAP at its last entry */
  private lastBitmap = new Map<number, bigint>();
  /** facts from before the event */
  private pre: { guestMode: boolean; faulting: boolean; smm: boolean; held: ReadonlyMap<number, readonly number[]>; cpu: number; taskFault: boolean; enlightened: 'clean' | 'dirty' | null; skipped: number; fresh: boolean; loadedOn: readonly number[]; threadLastCpu: number } | null = null;

  /**
   * Sequence coverage: ordered pairs of rules on one vCPU, `a > b` (rule b
   * hit by an event of a vCPU whose previous rule was a). A host event's
   * rule (no vCPU: a memslot move, a zap) counts as the previous rule of
   * every vCPU, until that vCPU hits another: so "memslot moved" then
   * "enlightened bitmap clean at entry" is a pair.
   */
  get pairs(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const g of COVERAGE_GROUPS) for (const rk of this.keys[g].values()) for (const pk of rk.then.values()) out[pk.key] = pk.count;
    return out;
  }
  private seq = 0;
  private seqVcpu: number | undefined;
  private lastRule = new Map<number, { rule: RuleKey; at: number }>();
  private lastHostRule: { rule: RuleKey; at: number } | null = null;

  /** Forget what the previous trace's entries used (call at the start of each trace). */
  startTrace(): void {
    this.lastUse.clear();
    this.lastBitmap.clear();
    this.lastRule.clear();
    this.lastHostRule = null;
  }

  /**
   * When set, the keys this recorder sees for the first time are pushed here
   * (`<group>: <rule>` and pairs): how `nvx fuzz --corpus` tells that a run
   * reached new coverage without walking the counts.
   */
  firstHits: string[] | null = null;

  /**
   * The keys met so far, made once each: `<group>: <rule>`, and for each
   * rule that came after it the pair's key. A hit then builds no string (a
   * run hits a rule every few events), and the counts are looked up by
   * strings whose hash is already known.
   */
  private readonly keys: Record<CoverageGroup, Map<string, RuleKey>> = { nested: new Map(), 'msr-bitmap': new Map(), evmcs: new Map(), 'shadow-vmcs': new Map(), 'guest-pages': new Map(), 'cpuid-fault': new Map() };

  hit(g: CoverageGroup, rule: string): void {
    let rk = this.keys[g].get(rule);
    if (rk === undefined) this.keys[g].set(rule, (rk = { key: `${g}: ${rule}`, rule, count: 0, then: new Map() }));
    if (rk.count++ === 0) this.firstHits?.push(rk.key);
    const at = ++this.seq;
    const v = this.seqVcpu;
    if (v === undefined) {
      this.lastHostRule = { rule: rk, at };
      return;
    }
    const own = this.lastRule.get(v);
    const host = this.lastHostRule;
    const prev = host && (!own || host.at > own.at) ? host : own;
    if (prev) {
      let pair = prev.rule.then.get(rk);
      if (pair === undefined) prev.rule.then.set(rk, (pair = { key: `${prev.rule.key} > ${rk.key}`, count: 0 }));
      if (pair.count++ === 0) this.firstHits?.push(pair.key);
    }
    if (own) {
      own.rule = rk;
      own.at = at;
    } else this.lastRule.set(v, { rule: rk, at });
  }

  private vcpu(w: World, e: TraceEvent): Vcpu | undefined {
    const i = (e as { vcpu?: number }).vcpu;
    return i === undefined ? undefined : w.vcpus[i];
  }

  /** Guest frames of nested pages some vCPU used at its last entry: gfn -> pages. */
  private heldFrames(w: World): Map<number, number[]> {
    const held = new Map<number, number[]>();
    for (const [key, u] of this.lastUse) {
      const page = key % 8;
      const v = w.vcpus[Math.floor(key / 8)];
      if (!v || u.hva < 0) continue;
      const gfn = gpaToGfn(u.gpa);
      held.set(gfn, [...(held.get(gfn) ?? []), page]);
    }
    return held;
  }

  before(w: World, e: TraceEvent): void {
    this.seqVcpu = (e as { vcpu?: number }).vcpu;
    const v = this.vcpu(w, e);
    const host = e.kind.startsWith('host.page-') || e.kind.startsWith('host.memslot-');
    let enlightened: 'clean' | 'dirty' | null = null;
    let skipped = 0;
    let fresh = false;
    if (v && (e.kind === 'l1.vmlaunch' || e.kind === 'l1.vmresume') && w.config.evmcs && evmcsGpaOf(v) !== INVALID_GPA && !v.nested.guestMode) {
      const gpa = evmcsGpaOf(v);
      const clean = Number(readGuest(w, gpa + BigInt(EVMCS.HV_CLEAN_FIELDS_OFFSET), 4) ?? 0n);
      fresh = e.kind === 'l1.vmlaunch' || gpa !== v.nested.hvEvmcsVmptr;
      skipped = fresh ? 0 : clean;
      const ctl = Number(readGuest(w, gpa + BigInt(EVMCS.HV_ENLIGHTENMENTS_CONTROL_OFFSET), 4) ?? 0n);
      if (ctl & HV_ENLIGHTENMENTS_CONTROL.MSR_BITMAP) enlightened = !fresh && clean & (1 << 1) ? 'clean' : 'dirty';
    }
    const taskId = (e as { task?: number }).task;
    this.pre = {
      guestMode: !!v?.nested.guestMode,
      faulting: !!v && (v.cpuidFault.miscFeaturesEnables & 1n) !== 0n,
      smm: !!v?.cpuidFault.smm,
      held: host ? this.heldFrames(w) : NO_FRAMES,
      cpu: v?.cpu ?? -1,
      taskFault: taskId !== undefined && !!w.host?.tasks[taskId]?.nocpuid,
      enlightened,
      skipped,
      fresh,
      loadedOn: e.kind === 'host.task-cpuid' ? w.vcpus.filter((u) => u.cpu === e.cpu).map((u) => u.id) : NO_VCPUS,
      threadLastCpu: e.kind === 'host.vcpu-load' ? (w.host?.vcpuThreads[e.vcpu]?.lastCpu ?? -1) : -1,
    };
    if (host) this.hostBefore(w, e);
  }

  after(w: World, e: TraceEvent, o: Outcome): void {
    const pre = this.pre!;
    const v = this.vcpu(w, e);
    // ---- nested
    if (o.k === 'exit') {
      if (o.reason & VMX_EXIT_REASONS_FAILED_VMENTRY) this.hit('nested', 'exit (failed entry)');
      else this.hit('nested', `exit ${exitReasonName(o.reason & VMX_EXIT_REASON_BASIC_MASK)}`);
    } else if (o.k === 'vmfail-valid') this.hit('nested', `vmfail ${vmxErrorName(o.error)}`);
    else if (o.k === 'vmfail-invalid') this.hit('nested', 'vmfail-invalid');
    else if (o.k === 'entered') this.hit('nested', e.kind === 'l1.vmlaunch' ? 'VMLAUNCH entered' : 'VMRESUME entered');

    switch (e.kind) {
      case 'l2.rdmsr':
      case 'l2.wrmsr': {
        if (!pre.guestMode) break;
        const write = e.kind === 'l2.wrmsr';
        const q = quadrant(e.msr, write);
        const toL1 = o.k === 'exit';
        if (q) this.hit('msr-bitmap', `L2 ${q}: ${toL1 ? 'exit to L1' : 'no exit to L1'}`);
        else this.hit('msr-bitmap', `L2 ${write ? 'write' : 'read'} outside the bitmap ranges`);
        if (e.msr >= 0x800 && e.msr <= 0x8ff && v) {
          const n = v.nested;
          const x2 = vmcs12Get32(n, VMCS.CPU_BASED_VM_EXEC_CONTROL) & A && vmcs12Get32(n, VMCS.SECONDARY_VM_EXEC_CONTROL) & SECONDARY_EXEC.VIRTUALIZE_X2APIC_MODE;
          this.hit('msr-bitmap', `L2 x2APIC MSR, ${x2 ? 'x2APIC virtualized' : 'not virtualized'}`);
        }
        if (e.msr === MSR.MSR_MISC_FEATURES_ENABLES && o.k !== 'exit') this.hit('cpuid-fault', 'L2 MISC_FEATURES_ENABLES access handled by L0');
        if (write && e.msr === MSR.MSR_MISC_FEATURES_ENABLES && o.k !== 'exit') this.miscWrite(e.value, o, pre.faulting, v);
        break;
      }
      case 'l1.msr-bitmap':
        if (o.k === 'ok') this.hit('msr-bitmap', e.intercept ? 'L1 sets an intercept' : 'L1 clears an intercept');
        break;
      case 'host.msr-intercept':
        this.hit('msr-bitmap', pre.guestMode ? 'L0 changes vmcs01 while L2 runs' : 'L0 changes vmcs01 while L1 runs');
        break;
      case 'l1.vmlaunch':
      case 'l1.vmresume':
        this.entry(w, v!, o, pre);
        break;
      case 'l1.evmcs-write': {
        const g = vmcsFieldByEncoding(e.field)?.cleanGroup;
        if (o.k === 'ok' && g !== null && g !== undefined && g >= 0) this.hit('evmcs', `${EVMCS_CLEAN_GROUPS[g].name} dirtied`);
        break;
      }
      case 'l1.evmcs-ctls-must-be-1':
        if (o.k !== 'ok') break;
        for (const [field] of MUST_BE_1_CONTROLS) {
          const g = vmcsFieldByEncoding(field)?.cleanGroup;
          if (g !== null && g !== undefined && g >= 0) this.hit('evmcs', `${EVMCS_CLEAN_GROUPS[g].name} dirtied`);
        }
        break;
      case 'l1.write':
        if (o.k === 'ok') this.evmcsStore(w, e.gpa, e.size);
        break;
      case 'l1.evmcs-control':
        if (o.k === 'ok') this.hit('evmcs', 'ENLIGHTENMENTSCONTROL dirtied');
        break;
      case 'l1.vmread':
      case 'l1.vmwrite':
        this.shadowL1(w, e, o);
        break;
      case 'l2.vmread':
      case 'l2.vmwrite':
        if (pre.guestMode && o.k !== 'ignored') this.hit('shadow-vmcs', `L2 ${e.kind === 'l2.vmread' ? 'VMREAD' : 'VMWRITE'} ${o.k === 'exit' ? 'exits to L1' : 'through the shadow VMCS'}`);
        break;
      case 'l1.posted-intr':
        if (o.k === 'ok') this.hit('guest-pages', w.vcpus[e.target]?.nested.guestMode ? 'posted interrupt to a running L2' : 'posted interrupt to an L2 not running');
        break;
      case 'l1.cpuid':
        if (o.k === 'ignored') break;
        if (!pre.faulting) this.hit('cpuid-fault', 'L1 CPUID, faulting off');
        else if (pre.smm) this.hit('cpuid-fault', 'L1 CPUID in SMM, faulting on');
        else this.hit('cpuid-fault', e.cpl === 0 ? 'L1 CPUID at CPL 0, faulting on' : 'L1 CPUID at CPL > 0, faulting on (#GP)');
        break;
      case 'l2.cpuid':
        if (!pre.guestMode) break;
        if (!pre.faulting) this.hit('cpuid-fault', 'L2 CPUID, faulting off');
        else if (e.cpl === 0) this.hit('cpuid-fault', 'L2 CPUID at CPL 0, faulting on');
        else this.hit('cpuid-fault', w.config.l2CpuidFaultArchitectural ? 'L2 CPUID at CPL > 0, faulting on, architectural order (#GP in L2)' : "L2 CPUID at CPL > 0, faulting on, KVM's order (exit to L1)");
        break;
      case 'host.task-cpuid':
        if (!pre.taskFault) this.hit('cpuid-fault', 'host task CPUID, faulting off');
        else this.hit('cpuid-fault', e.cpl === 0 ? 'host task CPUID at CPL 0, faulting on' : 'host task CPUID at CPL > 0, faulting on (#GP)');
        if (pre.loadedOn.length) this.hit('cpuid-fault', 'host task preempts a loaded vCPU');
        if (!w.config.cpuidFaultHw) this.hit('cpuid-fault', 'hardware without CPUID faulting');
        break;
      case 'l1.wrmsr':
        if (e.msr === MSR.MSR_MISC_FEATURES_ENABLES) this.miscWrite(e.value, o, pre.faulting, v);
        else if (e.msr === MSR.MSR_PLATFORM_INFO && o.k === 'gp') this.hit('cpuid-fault', 'guest writes MSR_PLATFORM_INFO (#GP)');
        break;
      case 'host.vcpu-load':
        if (o.k !== 'ok') break;
        this.hit('cpuid-fault', w.host?.vcpuThreads[e.vcpu]?.nocpuid ? "vCPU loaded, thread's faulting on" : "vCPU loaded, thread's faulting off");
        if (pre.threadLastCpu >= 0 && pre.threadLastCpu < w.config.pcpus && pre.threadLastCpu !== e.cpu) this.hit('cpuid-fault', 'vCPU moves to another CPU');
        break;
      case 'host.vcpu-put':
        if (o.k !== 'ignored') this.hit('cpuid-fault', 'vCPU put');
        break;
      case 'host.platform-info':
        if (o.k === 'ok' && !(e.value & (1n << 31n))) this.hit('cpuid-fault', 'VMM clears the support bit');
        break;
      case 'host.smi':
        if (o.k === 'ok') this.hit('cpuid-fault', 'SMI');
        break;
      case 'l1.rsm':
        if (o.k === 'ok') this.hit('cpuid-fault', 'RSM');
        break;
      default:
        break;
    }
    this.pre = null;
  }

  private miscWrite(value: bigint, o: Outcome, was: boolean, v: Vcpu | undefined): void {
    if (o.k === 'gp') {
      this.hit('cpuid-fault', value & ~1n ? 'MISC_FEATURES_ENABLES write refused (reserved bit)' : 'MISC_FEATURES_ENABLES write refused (no support)');
      return;
    }
    if (o.k !== 'ok' || !v) return;
    const now = (v.cpuidFault.miscFeaturesEnables & 1n) !== 0n;
    if (now && !was) this.hit('cpuid-fault', 'guest turns faulting on');
    if (!now && was) this.hit('cpuid-fault', 'guest turns faulting off');
  }

  private entry(w: World, v: Vcpu, o: Outcome, pre: NonNullable<CoverageRecorder['pre']>): void {
    const n = v.nested;
    if (o.k === 'vmfail-valid' && vmxErrorName(o.error) === 'ENTRY_INVALID_CONTROL_FIELD' && vmcs12Get(n, VMCS.MSR_BITMAP) & 0xfffn && vmcs12Get32(n, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.USE_MSR_BITMAPS) {
      this.hit('msr-bitmap', 'entry refused: unaligned MSR bitmap');
    }
    if (pre.enlightened && (o.k === 'entered' || o.k === 'exit')) this.hit('msr-bitmap', `entry with the enlightened bitmap, MSR_BITMAP ${pre.enlightened}`);
    if (w.config.evmcs && evmcsGpaOf(v) !== INVALID_GPA && (o.k === 'entered' || o.k === 'exit' || o.k === 'vmfail-valid')) {
      if (pre.fresh) this.hit('evmcs', 'entry copying every group (new or launched eVMCS)');
      else {
        if ((pre.skipped & 0xffff) === 0xffff) this.hit('evmcs', 'entry with every group clean');
        for (const g of EVMCS_CLEAN_GROUPS) if (pre.skipped & (1 << g.bit)) this.hit('evmcs', `${g.name} skipped`);
      }
    }
    if (o.k !== 'entered') return;
    const bitmaps = (vmcs12Get32(n, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.USE_MSR_BITMAPS) !== 0;
    const bm = vmcs12Get(n, VMCS.MSR_BITMAP);
    if (!bitmaps) this.hit('msr-bitmap', 'entry without MSR bitmaps');
    else {
      this.hit('msr-bitmap', gfnToHva(w.mem, gpaToGfn(bm)) < 0 ? 'entry with an unbacked MSR bitmap' : 'entry with an MSR bitmap');
      const last = this.lastBitmap.get(v.id);
      if (last !== undefined && last !== bm) this.hit('msr-bitmap', 'MSR-bitmap address changed between entries');
      this.lastBitmap.set(v.id, bm);
    }
    // the nested pages the entry uses, against how the previous entry found them
    const inUse = pagesInUse(v);
    for (const p of PAGE_IDS) {
      if (!(inUse & (1 << p))) continue;
      const gpa = nestedPageGpa(v, p);
      const hva = gfnToHva(w.mem, gpaToGfn(gpa));
      const pfn = hva < 0 ? -1 : (w.mem.hvaToPfn[hva] ?? -1);
      const key = v.id * 8 + p;
      const last = this.lastUse.get(key);
      let state: string;
      if (hva < 0) state = 'unbacked';
      else if (!last) state = 'first use';
      else if (last.gpa !== gpa) state = 'other address';
      else if (last.hva === hva && last.pfn === pfn) state = 'same backing (cache hit)';
      else state = 'moved since last use';
      this.hit('guest-pages', `${PAGES[p]}: ${state}`);
      this.lastUse.set(key, { gpa, hva, pfn });
    }
  }

  /** Host memory events: which held nested pages they hit (computed before the event changes the memslots). */
  private hostBefore(w: World, e: TraceEvent): void {
    const held = this.pre!.held;
    if (!held.size) return;
    const hitFrames = (lo: number, n: number, cause: string) => {
      for (const [gfn, pages] of held) if (gfn >= lo && gfn < lo + n) for (const p of pages) this.hit('guest-pages', `${PAGES[p]} invalidated by ${cause}`);
    };
    switch (e.kind) {
      case 'host.page-migrate':
      case 'host.page-zap':
        hitFrames(Number(e.gfn), 1, e.kind.slice(5));
        break;
      case 'host.memslot-move':
      case 'host.memslot-delete':
      case 'host.memslot-resize':
      case 'host.memslot-flags': {
        const s = w.mem.slots.find((x) => x.slot === e.slot);
        if (!s) break;
        const cause = e.kind.slice(5);
        if (e.kind === 'host.memslot-move') {
          hitFrames(s.gfn, s.npages, cause);
          hitFrames(Number(e.gfn), s.npages, cause);
        } else if (e.kind === 'host.memslot-resize') hitFrames(s.gfn, Math.max(s.npages, e.npages), cause);
        else hitFrames(s.gfn, s.npages, cause);
        break;
      }
      default:
        break;
    }
  }

  private evmcsStore(w: World, gpa: bigint, size: number): void {
    for (const v of w.vcpus) {
      const g = evmcsGpaOf(v);
      if (g === INVALID_GPA || gpa < g || gpa >= g + BigInt(EVMCS.SIZE)) continue;
      const off = Number(gpa - g);
      const groups = new Set<number>();
      for (let i = 0; i < size; i++) {
        const x = GROUP_BY_OFFSET.get(off + i);
        if (x !== undefined) groups.add(x);
      }
      for (const x of groups) this.hit('evmcs', `${EVMCS_CLEAN_GROUPS[x].name} dirtied`);
      return;
    }
  }

  private shadowL1(w: World, e: Extract<TraceEvent, { kind: 'l1.vmread' | 'l1.vmwrite' }>, o: Outcome): void {
    const write = e.kind === 'l1.vmwrite';
    if (o.k === 'vmfail-valid') {
      const err = vmxErrorName(o.error);
      if (err === 'VMWRITE_READ_ONLY_VMCS_COMPONENT') this.hit('shadow-vmcs', 'VMWRITE to a read-only field refused');
      else if (err === 'UNSUPPORTED_VMCS_COMPONENT') this.hit('shadow-vmcs', 'VMREAD/VMWRITE of a field not in vmcs12');
      return;
    }
    if (!w.config.shadowVmcs || (o.k !== 'ok' && o.k !== 'value')) return;
    const kind = SHADOW_KIND.get(e.field);
    if (kind) this.hit('shadow-vmcs', `${write ? 'VMWRITE' : 'VMREAD'} ${fieldName(e.field)} (${kind})`);
  }
}

// ---------------------------------------------------------------- reports

export function mergeCoverage(into: CoverageCounts, from: CoverageCounts): CoverageCounts {
  for (const g of COVERAGE_GROUPS) {
    const f = from[g];
    if (!f) continue;
    const t = (into[g] ??= {});
    for (const [k, n] of Object.entries(f)) t[k] = (t[k] ?? 0) + n;
  }
  return into;
}

export interface CoverageRow {
  group: CoverageGroup;
  /** rules exercised at least once */
  hit: number;
  /** rules the group defines */
  total: number;
  percent: number;
  /** hits over all rules */
  events: number;
  /** rules never exercised */
  missing: string[];
}

export function coverageRows(c: CoverageCounts, groups: readonly CoverageGroup[] = COVERAGE_GROUPS): CoverageRow[] {
  return groups.map((g) => {
    const rules = COVERAGE_RULES[g];
    const counts = c[g] ?? {};
    const hit = rules.filter((r) => (counts[r] ?? 0) > 0).length;
    return {
      group: g,
      hit,
      total: rules.length,
      percent: Math.round((1000 * hit) / rules.length) / 10,
      events: rules.reduce((a, r) => a + (counts[r] ?? 0), 0),
      missing: rules.filter((r) => !counts[r]),
    };
  });
}

/** The coverage groups that belong to these areas (nested always). */
export function coverageGroupsFor(areas: readonly string[]): CoverageGroup[] {
  return COVERAGE_GROUPS.filter((g) => g === 'nested' || areas.includes(g));
}

/** Text table: group, rules hit / defined, percentage, hits. */
export function coverageLines(c: CoverageCounts, groups: readonly CoverageGroup[] = COVERAGE_GROUPS): string[] {
  const rows = coverageRows(c, groups);
  const out = [`  ${'area'.padEnd(12)} ${'rules hit'.padStart(10)} ${'%'.padStart(6)} ${'hits'.padStart(10)}`];
  for (const r of rows) out.push(`  ${r.group.padEnd(12)} ${`${r.hit}/${r.total}`.padStart(10)} ${r.percent.toFixed(1).padStart(6)} ${String(r.events).padStart(10)}`);
  return out;
}
