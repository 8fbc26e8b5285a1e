/**
 * fast-check generators of traces for the guest-pages area (seed 003).
 *
 * As for the other areas, fast-check draws *choices* (small number tuples)
 * and a deterministic builder turns them into events. This builder tracks
 * the world by running the reference profile beside itself: after each event
 * it reads the reference's state (which vCPU runs L2, what vmcs12 holds,
 * which guest frames a memslot backs now) and picks the next event among
 * those valid now. It never emits an event the reference would refuse
 * (`ignored`), and it keeps the contracts: an MSR-bitmap page is never
 * written while another vCPU's L2 runs with it, every eVMCS entry follows a
 * clear of all clean bits, a VMCS moves to another vCPU only after VMCLEAR.
 * No draw is rejected, so shrinking works on the choices and every shrunk
 * trace is valid too.
 *
 * The mix: memslot moves (away and back, a spare slot put in another's
 * place), resizes, deletes and re-creations, flag changes, page migrations
 * and zaps of the pages L0 uses for L2; L1 setting up vmcs12s (APIC-access
 * and virtual-APIC pages, posted-interrupt descriptors, MSR bitmaps) or
 * eVMCSs, switching among them, moving them between vCPUs, writing those
 * pages and posting interrupts; L2 reading and writing its APIC page and
 * x2APIC TPR, and exiting. On 1-4 vCPUs.
 */
import { CPU_BASED, EVMCS, EVMCS1_SUPPORTED, KVM_CTLS_MUST_BE_1, KVM_EVMCS_VERSION, MSR, PIN_BASED, SECONDARY_EXEC, VMCS, VMCS12_REVISION, VM_EXIT } from '@nvx/arch';
import { NESTED_PAGE, Profile, Replayer, Vcpu, World, apicPagesInUse, gfnToHva, gpaToGfn, nestedPageGpa, parseProfile, vmcs12Get, vmcs12Get32 } from '@nvx/emulator';
import { MemslotConfig, TraceEvent, TraceHeader, formatEvent, makeHeader } from '@nvx/trace';
import fc from 'fast-check';
import { GeneratedTrace, checkAgainstReference, Digits } from './arbitraries';

// ---------------------------------------------------------------- options

export interface PagesBuildOptions {
  vcpus: number;
  /** config.evmcs: some vCPUs use enlightened VMCSs */
  evmcs: boolean;
  /** config.unmanagedMemory */
  unmanaged: boolean;
  maxEvents: number;
}

export interface ArbPagesOptions {
  vcpus?: 1 | 2 | 3 | 4;
  evmcs?: boolean;
  unmanaged?: boolean;
  /** upper bound on the events of a trace (default 100) */
  maxEvents?: number;
}

/** One draw: which vCPU, which of the actions valid now, its parameters. */
export type PagesChoice = [vcpu: number, action: number, param: number];

export interface PagesTrace extends GeneratedTrace {
  /** the reference's outcome kind for every event, as the builder saw it */
  outcomes: string[];
}

// ---------------------------------------------------------------- the guest-physical layout

const PAGE = 0x1000n;
/** slot 0 (never changed): VMXON regions and vmcs12s */
const vmxonRegion = (v: number) => BigInt(0x1000 * (1 + v));
export const PAGES_VMCS12_COUNT = 5;
const vmcs12Region = (j: number) => 0x8000n + BigInt(j) * PAGE;
/** slot 1 at gfn 0x100 (16 pages): per vmcs12 j < 4: APIC-access page, virtual-APIC page, PI descriptor; then two MSR bitmaps */
const apicAccessPage = (j: number) => 0x100000n + BigInt(3 * (j % 4)) * PAGE;
const vapicPage = (j: number) => apicAccessPage(j) + PAGE;
const piDescPage = (j: number) => apicAccessPage(j) + 2n * PAGE;
const BITMAPS: readonly bigint[] = [0x10c000n, 0x10d000n, 0x3f000n];
/** the virtual-APIC pages of eVMCS guests (the last two pages of slot 1) */
const evmcsVapicPage = (e: number) => 0x10e000n + BigInt(e) * PAGE;
/** slot 2 at gfn 0x200 (2 pages): the eVMCSs */
const EVMCS_PAGES: readonly bigint[] = [0x200000n, 0x201000n];

interface SlotPlan {
  slot: number;
  home: number;
  npages: number;
  /** bases it may move to */
  bases: readonly number[];
}

/** Slots 1 and 2 move between home and away; the spares 3 and 4 take their places. */
const SLOTS: readonly SlotPlan[] = [
  { slot: 1, home: 0x100, npages: 0x10, bases: [0x100, 0x800] },
  { slot: 2, home: 0x200, npages: 0x2, bases: [0x200, 0x900] },
  { slot: 3, home: 0xa00, npages: 0x10, bases: [0xa00, 0x100] },
  { slot: 4, home: 0xb00, npages: 0x2, bases: [0xb00, 0x200] },
];
/** the frames whose backing the host plays with (migrations, zaps) */
const HOT_GFNS: readonly number[] = [...Array.from({ length: 14 }, (_, i) => 0x100 + i), 0x200, 0x201, 0x3f];

export function pagesMemslots(): MemslotConfig[] {
  return [{ slot: 0, gfn: 0n, npages: 0x40, flags: 0 }, ...SLOTS.map((s) => ({ slot: s.slot, gfn: BigInt(s.home), npages: s.npages, flags: 0 }))];
}

// ---------------------------------------------------------------- controls L1 gives its L2s

const U = CPU_BASED.USE_MSR_BITMAPS;
const T = CPU_BASED.TPR_SHADOW;
const A = CPU_BASED.ACTIVATE_SECONDARY_CONTROLS;
const S = SECONDARY_EXEC;

interface ControlProfile {
  cpu: number;
  secondary: number;
  pin: number;
  exit: number;
  entry: number;
}

const CONTROL_PROFILES: readonly ControlProfile[] = [
  // APIC-access virtualization with register virtualization, virtual-interrupt delivery and posted interrupts
  { cpu: U | T | A, secondary: S.VIRTUALIZE_APIC_ACCESSES | S.APIC_REGISTER_VIRT | S.VIRTUAL_INTR_DELIVERY, pin: PIN_BASED.POSTED_INTR },
  // APIC-access virtualization, TPR only
  { cpu: U | T | A, secondary: S.VIRTUALIZE_APIC_ACCESSES, pin: 0 },
  // x2APIC virtualization (TPR, reads, EOI/self-IPI) with posted interrupts
  { cpu: U | T | A, secondary: S.VIRTUALIZE_X2APIC_MODE | S.APIC_REGISTER_VIRT | S.VIRTUAL_INTR_DELIVERY, pin: PIN_BASED.POSTED_INTR },
  // a TPR shadow only
  { cpu: U | T, secondary: 0, pin: 0 },
  // MSR bitmaps only
  { cpu: U, secondary: 0, pin: 0 },
].map((p) => {
  // The must-be-1 bits of the TRUE control MSRs on every control (vmx_control_verify), and what
  // nested_vmx_check_apicv_controls asks of virtual-interrupt delivery (external-interrupt
  // exiting) and of posted interrupts (acknowledge interrupt on exit).
  const vid = (p.secondary & S.VIRTUAL_INTR_DELIVERY) !== 0;
  const posted = (p.pin & PIN_BASED.POSTED_INTR) !== 0;
  return {
    cpu: (p.cpu | KVM_CTLS_MUST_BE_1.cpu) >>> 0,
    secondary: p.secondary >>> 0,
    pin: (p.pin | KVM_CTLS_MUST_BE_1.pin | (vid ? PIN_BASED.EXT_INTR_MASK : 0)) >>> 0,
    exit: (KVM_CTLS_MUST_BE_1.exit | (posted ? VM_EXIT.ACK_INTR_ON_EXIT : 0)) >>> 0,
    entry: KVM_CTLS_MUST_BE_1.entry >>> 0,
  };
});


// ---------------------------------------------------------------- the builder

interface VcpuPlan {
  /** 'vmcs' or 'evmcs', decided at the first VMX action */
  mode: 'vmcs' | 'evmcs' | null;
  /** the eVMCS (index into EVMCS_PAGES) this vCPU uses, -1 none */
  evmcs: number;
}

class Builder {
  readonly events: TraceEvent[] = [];
  readonly outcomes: string[] = [];
  readonly header: TraceHeader;
  private readonly r: Replayer;
  private readonly plans: VcpuPlan[] = [];
  /** vmcs12 j -> the vCPU it is active on (VMPTRLD without VMCLEAR), -1 none */
  private readonly activeOn: number[] = Array.from({ length: PAGES_VMCS12_COUNT }, () => -1);
  /** vmcs12 j has its revision id written */
  private readonly revision: boolean[] = Array.from({ length: PAGES_VMCS12_COUNT }, () => false);
  /** vmcs12 j's controls were set up once */
  private readonly configured: boolean[] = Array.from({ length: PAGES_VMCS12_COUNT }, () => false);
  /** eVMCS e -> the vCPU using it, -1 none */
  private readonly evmcsOn: number[] = EVMCS_PAGES.map(() => -1);

  constructor(readonly o: PagesBuildOptions) {
    this.header = makeHeader(
      { vcpus: o.vcpus, pcpus: 1, evmcs: o.evmcs, unmanagedMemory: o.unmanaged, memslots: pagesMemslots() },
      { generator: 'nvx check arbPagesTrace' },
    );
    const ref = parseProfile('reference');
    this.r = Replayer.fromHeader(this.header, ref);
    for (let i = 0; i < o.vcpus; i++) this.plans.push({ mode: o.evmcs ? null : 'vmcs', evmcs: -1 });
  }

  get full(): boolean {
    return this.events.length >= this.o.maxEvents;
  }

  private get w(): World {
    return this.r.peek();
  }

  private emit(e: TraceEvent): void {
    if (this.full) return;
    const out = this.r.apply(e);
    this.events.push(e);
    this.outcomes.push(out.k === 'ignored' ? `ignored: ${out.why}` : out.k);
  }

  // ---- facts read from the reference's world

  private backed(gpa: bigint): boolean {
    return gfnToHva(this.w.mem, gpaToGfn(gpa)) >= 0;
  }

  private vcpu(i: number): Vcpu {
    return this.w.vcpus[i];
  }

  /** A store to gpa by vCPU `self` keeps the SDM contract: no other vCPU's L2 runs with that page as its MSR bitmap. */
  private storeAllowed(self: number, gpa: bigint): boolean {
    if (!this.backed(gpa)) return false;
    const gfn = gpaToGfn(gpa);
    for (const o of this.w.vcpus) {
      if (o.id === self || !o.nested.guestMode) continue;
      if (!(vmcs12Get32(o.nested, VMCS.CPU_BASED_VM_EXEC_CONTROL) & U)) continue;
      if (gpaToGfn(vmcs12Get(o.nested, VMCS.MSR_BITMAP)) === gfn) return false;
    }
    return true;
  }

  /**
   * Guest frames that hold the MSR bitmap some L2 runs with now. The host
   * never changes what backs them (a migration keeps the bytes; a zap or a
   * memslot change would not): vmcs02's merged bitmap and the reference's
   * exit-time lookup would part ways, which is a question for the
   * msr-bitmap area, not this one.
   */
  private busyBitmapGfns(): number[] {
    const out: number[] = [];
    for (const o of this.w.vcpus) {
      if (o.nested.guestMode && vmcs12Get32(o.nested, VMCS.CPU_BASED_VM_EXEC_CONTROL) & U) out.push(gpaToGfn(vmcs12Get(o.nested, VMCS.MSR_BITMAP)));
    }
    return out;
  }

  /** No busy bitmap frame lies in [gfn, gfn + npages). */
  private rangeFree(gfn: number, npages: number): boolean {
    return !this.busyBitmapGfns().some((g) => g >= gfn && g < gfn + npages);
  }

  /** The current vmcs12 index of vCPU v (vmcs mode), -1 none. */
  private current(v: number): number {
    const ptr = this.vcpu(v).nested.currentVmptr;
    for (let j = 0; j < PAGES_VMCS12_COUNT; j++) if (vmcs12Region(j) === ptr) return j;
    return -1;
  }

  /** Every APIC page the entry needs is backed (else KVM fails the entry with an internal error). */
  private pagesBacked(v: Vcpu): boolean {
    const inUse = apicPagesInUse(v);
    for (const p of [NESTED_PAGE.APIC_ACCESS, NESTED_PAGE.VAPIC, NESTED_PAGE.PI_DESC]) if (inUse & (1 << p) && !this.backed(nestedPageGpa(v, p))) return false;
    return true;
  }

  // ---- one step

  step(c: PagesChoice): void {
    const [vc, ac, pc] = c;
    const vi = new Digits(vc).take(this.o.vcpus);
    const v = this.vcpu(vi);
    const p = new Digits(pc);
    const actions: [number, () => void][] = [];
    const add = (wt: number, f: () => void) => actions.push([wt, f]);

    add(6, () => this.host(p));
    if (v.nested.guestMode) {
      add(16, () => this.l2(vi, p));
    } else if (!v.nested.vmxon) {
      add(20, () => this.vmxon(vi));
    } else {
      const plan = this.plans[vi];
      if (plan.mode === null) {
        add(8, () => (plan.mode = 'vmcs'));
        add(4, () => (plan.mode = 'evmcs'));
      } else if (plan.mode === 'vmcs') {
        const cur = this.current(vi);
        add(cur < 0 ? 20 : 3, () => this.vmptrld(vi, p));
        if (cur >= 0) {
          add(12, () => this.enter(vi));
          add(5, () => this.vmclear(vi, cur));
          if (this.o.vcpus > 1) add(4, () => this.moveL2(vi, cur, p));
          add(2, () => this.reconfigure(vi, cur, p));
          add(1, () => this.emit({ kind: 'l1.vmread', vcpu: vi, field: VMCS.VM_EXIT_REASON }));
        }
      } else {
        add(plan.evmcs < 0 ? 20 : 2, () => this.evmcsSwitch(vi, p));
        if (plan.evmcs >= 0) add(12, () => this.enterEvmcs(vi, p));
      }
      add(4, () => this.l1Store(vi, p));
      add(2, () => this.l1Read(vi, p));
      add(3, () => this.postInterrupt(vi, p));
    }
    actions[new Digits(ac).weighted(actions.map((a) => a[0]))][1]();
  }

  // ---- the host

  private host(p: Digits): void {
    switch (p.weighted([8, 2, 6, 1, 1, 1])) {
      case 0:
        return this.migrate(p, false);
      case 1:
        return this.migrate(p, true);
      case 2:
        return this.moveSlot(p);
      case 3:
        return this.resize(p);
      case 4:
        return this.deleteOrCreate(p);
      default:
        return this.flags(p);
    }
  }

  /** Mostly a page some running L2 uses. */
  private migrate(p: Digits, zap: boolean): void {
    const used: number[] = [];
    for (const v of this.w.vcpus) {
      if (!v.nested.guestMode) continue;
      for (const q of [NESTED_PAGE.APIC_ACCESS, NESTED_PAGE.VAPIC, NESTED_PAGE.PI_DESC, NESTED_PAGE.MSR_BITMAP, NESTED_PAGE.EVMCS]) {
        const gpa = nestedPageGpa(v, q);
        if (gpa >= 0n && this.backed(gpa)) used.push(gpaToGfn(gpa));
      }
    }
    const all = used.length && p.take(3) !== 0 ? used : HOT_GFNS.filter((g) => gfnToHva(this.w.mem, g) >= 0);
    const pool = zap ? all.filter((g) => this.rangeFree(g, 1)) : all;
    if (!pool.length) return this.flags(p);
    const gfn = pool[p.take(pool.length)];
    this.emit(zap ? { kind: 'host.page-zap', gfn: BigInt(gfn) } : { kind: 'host.page-migrate', gfn: BigInt(gfn) });
  }

  private slotNow(slot: number): { gfn: number; npages: number } | undefined {
    return this.w.mem.slots.find((s) => s.slot === slot);
  }

  private fits(slot: number, gfn: number, npages: number): boolean {
    return !this.w.mem.slots.some((s) => s.slot !== slot && gfn < s.gfn + s.npages && s.gfn < gfn + npages);
  }

  private moveSlot(p: Digits): void {
    const plan = SLOTS[p.weighted([5, 4, 2, 2])];
    const now = this.slotNow(plan.slot);
    if (!now) return this.deleteOrCreate(p);
    if (!this.rangeFree(now.gfn, now.npages)) return this.flags(p);
    const targets = plan.bases.filter((b) => b !== now.gfn && this.fits(plan.slot, b, now.npages) && this.rangeFree(b, now.npages));
    if (!targets.length) {
      // the place is taken: move whatever sits at this slot's home away first
      const other = SLOTS.find((s) => s.slot !== plan.slot && this.slotNow(s.slot)?.gfn === plan.home);
      if (other) {
        const n = this.slotNow(other.slot)!.npages;
        const away = other.bases.find((b) => b !== plan.home && this.fits(other.slot, b, n) && this.rangeFree(b, n));
        if (away !== undefined && this.rangeFree(plan.home, n)) this.emit({ kind: 'host.memslot-move', slot: other.slot, gfn: BigInt(away) });
      }
      return;
    }
    this.emit({ kind: 'host.memslot-move', slot: plan.slot, gfn: BigInt(targets[p.take(targets.length)]) });
  }

  private resize(p: Digits): void {
    const now = this.slotNow(1);
    if (!now) return this.deleteOrCreate(p);
    const npages = now.npages === 0x10 ? [0x8, 0x4][p.take(2)] : 0x10;
    if (!this.fits(1, now.gfn, npages) || !this.rangeFree(now.gfn + Math.min(npages, now.npages), Math.abs(npages - now.npages))) return this.flags(p);
    this.emit({ kind: 'host.memslot-resize', slot: 1, npages });
  }

  private deleteOrCreate(p: Digits): void {
    const plan = SLOTS[p.take(2)];
    const now = this.slotNow(plan.slot);
    if (now) {
      if (this.rangeFree(now.gfn, now.npages)) this.emit({ kind: 'host.memslot-delete', slot: plan.slot });
      return;
    }
    const base = plan.bases.find((b) => this.fits(plan.slot, b, plan.npages) && this.rangeFree(b, plan.npages));
    if (base !== undefined) this.emit({ kind: 'host.memslot-create', slot: plan.slot, gfn: BigInt(base), npages: plan.npages, flags: 0 });
  }

  private flags(p: Digits): void {
    const slots = this.w.mem.slots.filter((s) => s.slot !== 0);
    if (!slots.length) return;
    const s = slots[p.take(slots.length)];
    this.emit({ kind: 'host.memslot-flags', slot: s.slot, flags: s.flags ^ 1 }); // KVM_MEM_LOG_DIRTY_PAGES
  }

  // ---- L1: VMX set-up

  private vmxon(v: number): void {
    this.emit({ kind: 'l1.write', vcpu: v, gpa: vmxonRegion(v), size: 4, value: BigInt(VMCS12_REVISION) });
    this.emit({ kind: 'l1.vmxon', vcpu: v, gpa: vmxonRegion(v) });
  }

  private vmptrld(v: number, p: Digits): void {
    const free: number[] = [];
    for (let j = 0; j < PAGES_VMCS12_COUNT; j++) if (this.activeOn[j] < 0 || this.activeOn[j] === v) free.push(j);
    const cur = this.current(v);
    const others = free.filter((j) => j !== cur);
    if (!others.length) return this.l1Read(v, p);
    // mostly one another vCPU ran before (an L2 moving between vCPUs), or one this vCPU ran
    const used = others.filter((j) => this.configured[j]);
    const pick = used.length && p.take(3) !== 0 ? used : others;
    const j = pick[p.take(pick.length)];
    if (!this.revision[j]) {
      this.emit({ kind: 'l1.write', vcpu: v, gpa: vmcs12Region(j), size: 4, value: BigInt(VMCS12_REVISION) });
      this.revision[j] = true;
    }
    this.emit({ kind: 'l1.vmptrld', vcpu: v, gpa: vmcs12Region(j) });
    this.activeOn[j] = v;
    if (!this.configured[j]) {
      this.configure(v, j, CONTROL_PROFILES[p.weighted([4, 2, 3, 2, 1])], p);
      this.configured[j] = true;
    }
  }

  /** The controls as L1 writes them: with eVMCS enabled, only what eVMCS v1 has (L1 reads filtered capability MSRs). */
  private evmcsControls(c: ControlProfile): ControlProfile {
    if (!this.o.evmcs) return c;
    const E = EVMCS1_SUPPORTED;
    return { ...c, cpu: (c.cpu & E.exec) >>> 0, secondary: (c.secondary & E.secondary) >>> 0, pin: (c.pin & E.pin) >>> 0, exit: (c.exit & E.exit) >>> 0, entry: (c.entry & E.entry) >>> 0 };
  }

  private configure(v: number, j: number, drawn: ControlProfile, p: Digits): void {
    const c = this.evmcsControls(drawn);
    const wr = (field: number, value: bigint) => this.emit({ kind: 'l1.vmwrite', vcpu: v, field, value });
    wr(VMCS.CPU_BASED_VM_EXEC_CONTROL, BigInt(c.cpu));
    wr(VMCS.SECONDARY_VM_EXEC_CONTROL, BigInt(c.secondary));
    wr(VMCS.PIN_BASED_VM_EXEC_CONTROL, BigInt(c.pin));
    wr(VMCS.VM_EXIT_CONTROLS, BigInt(c.exit));
    wr(VMCS.VM_ENTRY_CONTROLS, BigInt(c.entry));
    wr(VMCS.MSR_BITMAP, BITMAPS[p.take(BITMAPS.length)]);
    if (c.secondary & S.VIRTUALIZE_APIC_ACCESSES) wr(VMCS.APIC_ACCESS_ADDR, apicAccessPage(j));
    if (c.cpu & T) wr(VMCS.VIRTUAL_APIC_PAGE_ADDR, vapicPage(j));
    if (c.pin & PIN_BASED.POSTED_INTR) {
      wr(VMCS.POSTED_INTR_NV, 0xf2n);
      wr(VMCS.POSTED_INTR_DESC_ADDR, piDescPage(j) + BigInt(0x40 * p.take(3)));
    }
  }

  /** L1 changes its L2's controls, or its MSR bitmap. */
  private reconfigure(v: number, j: number, p: Digits): void {
    if (p.take(2)) this.emit({ kind: 'l1.vmwrite', vcpu: v, field: VMCS.MSR_BITMAP, value: BITMAPS[p.take(BITMAPS.length)] });
    else this.configure(v, j, CONTROL_PROFILES[p.take(CONTROL_PROFILES.length)], p);
  }

  /** L1 moves its L2 to another vCPU the way the SDM asks: VMCLEAR here, VMPTRLD and VMLAUNCH there. */
  private moveL2(v: number, j: number, p: Digits): void {
    const to = this.w.vcpus.filter((o) => o.id !== v && o.nested.vmxon && !o.nested.guestMode && this.plans[o.id].mode === 'vmcs');
    if (!to.length) return this.vmclear(v, j);
    const t = to[p.take(to.length)].id;
    this.vmclear(v, j);
    this.emit({ kind: 'l1.vmptrld', vcpu: t, gpa: vmcs12Region(j) });
    this.activeOn[j] = t;
    this.enter(t);
  }

  private vmclear(v: number, j: number): void {
    this.emit({ kind: 'l1.vmclear', vcpu: v, gpa: vmcs12Region(j) });
    this.activeOn[j] = -1;
  }

  private enter(v: number): void {
    const vc = this.vcpu(v);
    if (!this.pagesBacked(vc)) return this.hostFixBacking();
    this.emit({ kind: vc.nested.launched ? 'l1.vmresume' : 'l1.vmlaunch', vcpu: v });
  }

  /** Bring the home slots back (a VMM about to run L2 again). */
  private hostFixBacking(): void {
    const free = (gfn: number, n: number) => this.rangeFree(gfn, n);
    for (const plan of SLOTS.slice(0, 2)) {
      const now = this.slotNow(plan.slot);
      if (now && now.gfn === plan.home && now.npages === plan.npages) continue;
      if (!now) {
        if (this.fits(plan.slot, plan.home, plan.npages) && free(plan.home, plan.npages)) return this.emit({ kind: 'host.memslot-create', slot: plan.slot, gfn: BigInt(plan.home), npages: plan.npages, flags: 0 });
      } else if (now.gfn === plan.home) {
        if (this.fits(plan.slot, plan.home, plan.npages) && free(plan.home, plan.npages)) return this.emit({ kind: 'host.memslot-resize', slot: plan.slot, npages: plan.npages });
      } else if (this.fits(plan.slot, plan.home, now.npages) && free(plan.home, now.npages) && free(now.gfn, now.npages)) {
        return this.emit({ kind: 'host.memslot-move', slot: plan.slot, gfn: BigInt(plan.home) });
      }
      // a spare sits at home: move it to its own home
      const spare = SLOTS.slice(2).find((s) => this.slotNow(s.slot)?.gfn === plan.home);
      if (spare && free(plan.home, spare.npages) && this.fits(spare.slot, spare.home, spare.npages)) return this.emit({ kind: 'host.memslot-move', slot: spare.slot, gfn: BigInt(spare.home) });
    }
  }

  // ---- L1: eVMCS

  private evmcsSwitch(v: number, p: Digits): void {
    const plan = this.plans[v];
    const free = EVMCS_PAGES.map((_, e) => e).filter((e) => this.evmcsOn[e] < 0 && e !== plan.evmcs);
    if (!free.length) return this.l1Read(v, p);
    const e = free[p.take(free.length)];
    if (plan.evmcs >= 0) {
      // release the old one before another vCPU may take it
      this.emit({ kind: 'l1.vmclear', vcpu: v, gpa: EVMCS_PAGES[plan.evmcs] });
      this.evmcsOn[plan.evmcs] = -1;
    }
    this.emit({ kind: 'l1.evmcs-ptr', vcpu: v, gpa: EVMCS_PAGES[e] });
    plan.evmcs = e;
    this.evmcsOn[e] = v;
  }

  private enterEvmcs(v: number, p: Digits): void {
    const gpa = EVMCS_PAGES[this.plans[v].evmcs];
    if (!this.backed(gpa)) return this.hostFixBacking();
    const ev = (field: number, value: bigint) => this.emit({ kind: 'l1.evmcs-write', vcpu: v, gpa, field, value });
    const vc = this.vcpu(v);
    if (vc.nested.hvEvmcsVmptr !== gpa) {
      // a new eVMCS for L0: its revision and the controls (eVMCSs have no posted interrupts)
      this.emit({ kind: 'l1.write', vcpu: v, gpa: gpa + BigInt(EVMCS.REVISION_ID_OFFSET), size: 4, value: BigInt(KVM_EVMCS_VERSION) });
      const c = this.evmcsControls(CONTROL_PROFILES[[1, 3, 4][p.take(3)]]);
      ev(VMCS.CPU_BASED_VM_EXEC_CONTROL, BigInt(c.cpu));
      ev(VMCS.SECONDARY_VM_EXEC_CONTROL, BigInt(c.secondary));
      ev(VMCS.PIN_BASED_VM_EXEC_CONTROL, BigInt(c.pin));
      ev(VMCS.VM_EXIT_CONTROLS, BigInt(c.exit));
      ev(VMCS.VM_ENTRY_CONTROLS, BigInt(c.entry));
      ev(VMCS.MSR_BITMAP, BITMAPS[p.take(BITMAPS.length)]);
      ev(VMCS.VIRTUAL_APIC_PAGE_ADDR, evmcsVapicPage(this.plans[v].evmcs));
    } else if (p.take(4) === 0) {
      ev(VMCS.MSR_BITMAP, BITMAPS[p.take(BITMAPS.length)]);
    }
    // every group may have changed (the host may have replaced the page): all clean bits clear
    this.emit({ kind: 'l1.evmcs-clean', vcpu: v, gpa, value: 0 });
    const launch = !vc.nested.launched || p.take(8) === 0;
    // The controls come from the eVMCS at the entry; its virtual-APIC page must be backed whatever they say.
    // (The APIC-access page of an eVMCS guest is at vmcs12's zeroed address: gpa 0, always backed.)
    if (!this.backed(evmcsVapicPage(this.plans[v].evmcs))) return this.hostFixBacking();
    this.emit({ kind: launch ? 'l1.vmlaunch' : 'l1.vmresume', vcpu: v });
  }

  // ---- L1: stores, loads, posted interrupts

  /** The pages of vCPU v's L2 (current vmcs12, or the eVMCS's). */
  private ownPages(v: number): bigint[] {
    const vc = this.vcpu(v);
    const out: bigint[] = [];
    const plan = this.plans[v];
    if (plan.mode === 'vmcs') {
      const j = this.current(v);
      if (j >= 0) out.push(apicAccessPage(j), vapicPage(j), piDescPage(j));
    } else if (plan.evmcs >= 0) out.push(evmcsVapicPage(plan.evmcs), EVMCS_PAGES[plan.evmcs]);
    out.push(vmcs12Get(vc.nested, VMCS.MSR_BITMAP) & ~0xfffn);
    return out;
  }

  private l1Store(v: number, p: Digits): void {
    const k = p.weighted([6, 3, 3]);
    if (k === 2) {
      // an MSR-bitmap edit
      const page = BITMAPS[p.take(BITMAPS.length)];
      if (!this.storeAllowed(v, page)) return this.l1Read(v, p);
      const msr = [MSR.MSR_FS_BASE, MSR.MSR_X2APIC_TPR, MSR.MSR_GS_BASE][p.take(3)];
      this.emit({ kind: 'l1.msr-bitmap', vcpu: v, gpa: page, msr, access: p.take(2) ? 'write' : 'read', intercept: p.take(2) === 0 });
      return;
    }
    const pages = k === 0 ? this.ownPages(v) : [vapicPage(p.take(4)), apicAccessPage(p.take(4))];
    const page = pages[p.take(pages.length)];
    const off = [0x80n, 0x80n, 0x200n, 0x300n, 0x8n][p.take(5)];
    if (!this.storeAllowed(v, page + off)) return this.l1Read(v, p);
    this.emit({ kind: 'l1.write', vcpu: v, gpa: page + off, size: 4, value: BigInt(0x10 + p.take(0xe0)) });
  }

  private l1Read(v: number, p: Digits): void {
    const pages = [...this.ownPages(v), vapicPage(p.take(4)), piDescPage(p.take(4))].filter((g) => this.backed(g));
    if (!pages.length) {
      this.emit({ kind: 'l1.cpuid', vcpu: v, leaf: 1, subleaf: 0, cpl: 0 });
      return;
    }
    const page = pages[p.take(pages.length)];
    const off = [0x80n, 0x200n, 0x210n, 0x220n, 0x0n, 0x20n, 0x2b4n, 0x338n][p.take(8)];
    this.emit({ kind: 'l1.read', vcpu: v, gpa: page + off, size: 4 });
  }

  private postInterrupt(v: number, p: Digits): void {
    // a target whose vmcs12 uses posted interrupts, often one whose L2 runs
    const targets: number[] = [];
    for (const t of this.w.vcpus) {
      if (!(apicPagesInUse(t) & (1 << NESTED_PAGE.PI_DESC))) continue;
      targets.push(t.id);
      if (t.nested.guestMode) targets.push(t.id, t.id);
    }
    if (!targets.length) return this.l1Store(v, p);
    const t = this.vcpu(targets[p.take(targets.length)]);
    const gpa = vmcs12Get(t.nested, VMCS.POSTED_INTR_DESC_ADDR);
    if (!this.storeAllowed(v, gpa) || !this.backed(gpa + 32n)) return this.l1Read(v, p);
    this.emit({ kind: 'l1.posted-intr', vcpu: v, target: t.id, gpa, vector: 0x20 + p.take(0xe0) });
  }

  // ---- L2

  private l2(v: number, p: Digits): void {
    const vc = this.vcpu(v);
    const n = vc.nested;
    const cpu = vmcs12Get32(n, VMCS.CPU_BASED_VM_EXEC_CONTROL);
    const secondary = cpu & A ? vmcs12Get32(n, VMCS.SECONDARY_VM_EXEC_CONTROL) : 0;
    const apicAccess = (secondary & S.VIRTUALIZE_APIC_ACCESSES) !== 0 && (cpu & T) !== 0;
    const x2apic = (secondary & S.VIRTUALIZE_X2APIC_MODE) !== 0;
    const value = BigInt(p.take(0x100));
    const k = p.weighted([apicAccess ? 10 : 1, x2apic ? 8 : 0, 2, 3]);
    if (k === 0) {
      if (apicAccess && !this.backed(nestedPageGpa(vc, NESTED_PAGE.APIC_ACCESS))) return this.l2Exit(v, p);
      const off = [0x80, 0x80, 0x80, 0x200, 0x210, 0x230, 0x20, 0x300][p.take(8)];
      if (p.take(2)) this.emit({ kind: 'l2.apic-write', vcpu: v, offset: off, value: Number(value) });
      else this.emit({ kind: 'l2.apic-read', vcpu: v, offset: off });
      return;
    }
    if (k === 1) {
      const msr = [MSR.MSR_X2APIC_TPR, MSR.MSR_X2APIC_TPR, 0x820 /* IRR 32-63 */, 0x823][p.take(4)];
      if (p.take(2) && msr === MSR.MSR_X2APIC_TPR) this.emit({ kind: 'l2.wrmsr', vcpu: v, msr, value });
      else this.emit({ kind: 'l2.rdmsr', vcpu: v, msr });
      return;
    }
    if (k === 2) {
      const msr = [MSR.MSR_FS_BASE, MSR.MSR_GS_BASE][p.take(2)];
      if (p.take(2)) this.emit({ kind: 'l2.wrmsr', vcpu: v, msr, value });
      else this.emit({ kind: 'l2.rdmsr', vcpu: v, msr });
      return;
    }
    this.l2Exit(v, p);
  }

  private l2Exit(v: number, p: Digits): void {
    if (p.take(2)) this.emit({ kind: 'l2.vmcall', vcpu: v });
    else this.emit({ kind: 'l2.cpuid', vcpu: v, leaf: 1, subleaf: 0, cpl: 0 });
  }
}

/** Turn choices into a trace (deterministic). */
export function buildPagesTrace(choices: readonly PagesChoice[], o: PagesBuildOptions): PagesTrace {
  const b = new Builder(o);
  for (const c of choices) {
    if (b.full) break;
    b.step(c);
  }
  return { header: b.header, events: b.events, outcomes: b.outcomes };
}

export function arbPagesChoices(maxSteps: number): fc.Arbitrary<PagesChoice[]> {
  const choice = fc.tuple(fc.nat(), fc.nat(), fc.nat()) as fc.Arbitrary<PagesChoice>;
  return fc.array(choice, { minLength: 3, maxLength: maxSteps, size: 'max' });
}

export function arbPagesBuildOptions(opts: ArbPagesOptions = {}): fc.Arbitrary<PagesBuildOptions> {
  const maxEvents = Math.max(10, Math.min(opts.maxEvents ?? 100, 200));
  return fc
    .record({
      vcpus: opts.vcpus !== undefined ? fc.constant(opts.vcpus) : fc.constantFrom(1, 2, 3, 4),
      evmcs: opts.evmcs !== undefined ? fc.constant(opts.evmcs) : fc.boolean(),
      unmanaged: opts.unmanaged !== undefined ? fc.constant(opts.unmanaged) : fc.boolean(),
    })
    .map((r) => ({ ...r, maxEvents }));
}

/** Valid, contract-keeping traces that exercise the guest-pages area. */
export function arbPagesTrace(opts: ArbPagesOptions = {}): fc.Arbitrary<PagesTrace> {
  const maxEvents = Math.max(10, Math.min(opts.maxEvents ?? 100, 200));
  return fc.tuple(arbPagesBuildOptions(opts), arbPagesChoices(Math.ceil(maxEvents * 0.7))).map(([o, c]) => buildPagesTrace(c, o));
}

// ---------------------------------------------------------------- the property

/** Runs and seed of the shipped guest-pages property tests (every broken guest-pages fixture is caught within them). */
export const PAGES_PROPERTY_DEFAULTS = { numRuns: 150, seed: 0x9a9e5 } as const;

/** The property: `other` matches the reference on every generated trace (no divergence, no contract broken). */
export function pagesDifferentialProperty(other: Profile, opts: ArbPagesOptions = {}): fc.IPropertyWithHooks<[PagesTrace]> {
  const base = parseProfile('reference');
  return fc.property(arbPagesTrace(opts), (t) => {
    checkAgainstReference(t, other, { base });
  });
}

/** A trace and its reference outcomes, one line per event (for reports). */
export function describePagesTrace(t: PagesTrace): string {
  return t.events.map((e, i) => `${String(i).padStart(3)} ${formatEvent(e)}  -> ${t.outcomes[i]}`).join('\n');
}

