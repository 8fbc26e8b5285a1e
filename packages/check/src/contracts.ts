/**
 * The contract monitor: notes when a trace breaks a promise an optimization
 * is allowed to rely on. A divergence after such an event is permitted (the
 * checker says "L1 (or the VMM) broke contract X at event N"); before it, it
 * is a bug.
 *
 * Contracts:
 * - `hyperv-clean-fields` (TLFS, eVMCS): when L1 enters with a clean bit set,
 *   the fields of that group, and for the MSR_BITMAP bit with the enlightened
 *   MSR bitmap on, the MSR-bitmap page, are unchanged since L0 last consumed
 *   them (the previous successful entry with that eVMCS).
 * - `sdm-active-msr-bitmap` (SDM 25.11.4): software does not modify the MSR
 *   bitmap of a VMCS while a logical processor runs in VMX non-root operation
 *   with that VMCS current (L1 on one vCPU writing it while L2 runs on another).
 * - `sdm-vmcs-active-once` (SDM 25.11.1): no VMCS is active on more than one
 *   logical processor; L1 VMCLEARs it on one vCPU before it VMPTRLDs it on
 *   another. Upstream KVM keeps one cached vmcs12 per vCPU and does not
 *   notice; per-L2 state keyed by the vmcs12 address (pfncache-ctx's nested
 *   contexts) is shared between the vCPUs and relies on it.
 * - `hyperv-evmcs-no-vmptrld` (TLFS, eVMCS): L1 does not switch to an
 *   enlightened VMCS while a VMCS it made current with VMPTRLD is still
 *   current. KVM's nested_vmx_handle_enlightened_vmptrld (nested.c) then only
 *   sets current_vmptr to INVALID_GPA: no nested_release_vmcs12, so neither
 *   copy_shadow_to_vmcs12 nor the write-back to L1 memory runs, and what L1
 *   wrote through the shadow VMCS (enable_shadow_vmcs=1) never reaches
 *   vmcs12, where an emulated VMWRITE (enable_shadow_vmcs=0) did.
 * - `kvm-evmcs-restore-matches` (KVM_SET_NESTED_STATE with an eVMCS): the
 *   vmcs12 restored holds what the eVMCS the VP assist page names holds, in
 *   every field of a clean-field group that copy_vmcs12_to_enlightened does
 *   not write back. KVM's format carries no eVMCS address: after the restore
 *   it maps the VP assist page's eVMCS, clears its clean bits once at that
 *   KVM_RUN and takes vmcs12 to be that eVMCS's, so a clean bit L1 sets
 *   afterwards keeps the restored value. A state KVM_GET_NESTED_STATE saved
 *   keeps it, unless L1 named another eVMCS after its last entry (then KVM
 *   saved the old one's: a kept finding about KVM, docs/save-restore.md).
 * - `kvm-no-run-after-restore-error` (KVM API, KVM_EXIT_INTERNAL_ERROR):
 *   when the KVM_RUN after KVM_SET_NESTED_STATE cannot map the eVMCS or
 *   vmcs12's pages, it exits with KVM_EXIT_INTERNAL_ERROR and the VMM stops
 *   the guest (QEMU does) or sets the state again; it does not run the vCPU
 *   as it is. vcpu_enter_guest consumed KVM_REQ_GET_NESTED_STATE_PAGES, so a
 *   next KVM_RUN would run with a vmcs02 that never got the pages, which
 *   each way of keeping them leaves in its own state.
 */
import { CPU_BASED, EVMCS, EVMCS_CLEAN_GROUPS, HV_ENLIGHTENMENTS_CONTROL, INVALID_GPA, MUST_BE_1_CONTROLS, VMCS, VMCS_FIELDS, vmcsFieldByEncoding } from '@nvx/arch';
import { EVMCS_COPY_IN, EVMCS_COPY_OUT, EVMPTR_MAP_PENDING, KVM_STATE_NESTED_EVMCS, World, evmptrValid, gpaToGfn, readGuest, vmcs12Get, vmcs12Get32, msrBitmapBit } from '@nvx/emulator';
import type { TraceEvent } from '@nvx/trace';

export type ContractId = 'hyperv-clean-fields' | 'sdm-active-msr-bitmap' | 'sdm-vmcs-active-once' | 'hyperv-evmcs-no-vmptrld' | 'kvm-evmcs-restore-matches' | 'kvm-no-run-after-restore-error';

export interface ContractViolation {
  contract: ContractId;
  /** the event at which the contract is broken */
  index: number;
  /** an earlier event that set it up (the store behind a stale clean bit), if any */
  cause?: number;
  vcpu: number;
  message: string;
  /** who broke it (CONTRACT_PARTY) */
  party: 'L1' | 'the VMM';
}

export const CONTRACTS: Record<ContractId, string> = {
  'hyperv-clean-fields': 'Hyper-V TLFS: L1 clears a clean-field bit whenever it changes that group (and, with the enlightened MSR bitmap, its MSR-bitmap page)',
  'sdm-active-msr-bitmap': 'Intel SDM 25.11.4: software does not modify the MSR bitmap of a VMCS that is active and running on another logical processor',
  'sdm-vmcs-active-once': 'Intel SDM 25.11.1: no VMCS is active on more than one logical processor (VMCLEAR on one before VMPTRLD on another)',
  'hyperv-evmcs-no-vmptrld': 'Hyper-V TLFS (eVMCS): L1 does not enter through an enlightened VMCS while a VMCS it loaded with VMPTRLD is current',
  'kvm-evmcs-restore-matches': "KVM_SET_NESTED_STATE with an eVMCS: the vmcs12 restored matches the VP assist page's eVMCS in the clean-field groups KVM does not write back (KVM saves no eVMCS address and takes vmcs12 to be that eVMCS's)",
  'kvm-no-run-after-restore-error': 'KVM API: after KVM_RUN exits with KVM_EXIT_INTERNAL_ERROR because the state KVM_SET_NESTED_STATE restored cannot be loaded, the VMM sets the state again or stops the vCPU; it does not run it as it is',
};

/** Who keeps each contract: L1, or the VMM (through the KVM API). */
export const CONTRACT_PARTY: Record<ContractId, 'L1' | 'the VMM'> = {
  'hyperv-clean-fields': 'L1',
  'sdm-active-msr-bitmap': 'L1',
  'sdm-vmcs-active-once': 'L1',
  'hyperv-evmcs-no-vmptrld': 'L1',
  'kvm-evmcs-restore-matches': 'the VMM',
  'kvm-no-run-after-restore-error': 'the VMM',
};

/** eVMCS member byte offset -> clean-field group, for stores straight into an eVMCS page. */
const GROUP_BY_OFFSET = new Map<number, number>();
for (const f of VMCS_FIELDS) {
  if (f.evmcsOffset === null || f.cleanGroup === null || f.cleanGroup < 0) continue;
  for (let i = 0; i < f.evmcsSize!; i++) GROUP_BY_OFFSET.set(f.evmcsOffset + i, f.cleanGroup);
}
const MSR_BITMAP_GROUP = 1;
const MSR_BITMAP_EVMCS_OFFSET = BigInt(vmcsFieldByEncoding(VMCS.MSR_BITMAP)!.evmcsOffset!);

interface EvmcsTrack {
  /** groups L1 changed since L0 last consumed this eVMCS, with the first event that did */
  changed: number;
  cause: number[];
}

/** The eVMCS members of clean-field groups that copy_vmcs12_to_enlightened does not write back. */
const NOT_WRITTEN_BACK = EVMCS_COPY_IN.filter((f) => !EVMCS_COPY_OUT.some((o) => o.field === f.field));


export class ContractMonitor {
  readonly violations: ContractViolation[] = [];
  private evmcs = new Map<bigint, EvmcsTrack>();
  /** vCPUs reported as run after a failed restore (once per failure) */
  private runAfterError = new Set<number>();

  private track(gpa: bigint): EvmcsTrack {
    let t = this.evmcs.get(gpa);
    if (!t) {
      t = { changed: 0, cause: [] };
      this.evmcs.set(gpa, t);
    }
    return t;
  }

  private changed(gpa: bigint, group: number, index: number): void {
    const t = this.track(gpa);
    if (!(t.changed & (1 << group))) t.cause[group] = index;
    t.changed |= 1 << group;
  }

  /** The first violation at or before event `index`, if any. */
  firstUpTo(index: number): ContractViolation | undefined {
    return this.violations.find((v) => v.index <= index);
  }

  /**
   * Look at event `index` against the state just before it (any profile's
   * state: only architectural facts are read). Returns the violation it
   * commits, if any.
   */
  observe(w: World, e: TraceEvent, index: number): ContractViolation | undefined {
    const c = e.kind.charCodeAt(1);
    if (c === 0x31 /* l1. */ || c === 0x32 /* l2. */) {
      const v = w.vcpus[(e as { vcpu: number }).vcpu];
      if (v && !v.nested.nestedStatePagesFailed) this.runAfterError.delete(v.id);
      else if (v && !this.runAfterError.has(v.id)) {
        this.runAfterError.add(v.id);
        return this.add({
          contract: 'kvm-no-run-after-restore-error',
          index,
          vcpu: v.id,
          message: `vCPU ${v.id} runs again after its KVM_RUN failed with KVM_EXIT_INTERNAL_ERROR to load the restored nested state`,
        });
      }
    }
    // L2's events store nothing into L1's memory and enter nothing.
    if (c === 0x32 /* l2. */) return undefined;
    // The host may change what backs any eVMCS page.
    if (c === 0x6f /* host. */) {
      if (this.evmcsInfo.size) this.evmcsInfo.clear();
      if (e.kind === 'host.set-nested-state' || e.kind === 'host.migrate') this.restore(w, e, index);
      return undefined;
    }
    switch (e.kind) {
      case 'l1.evmcs-write': {
        const f = vmcsFieldByEncoding(e.field);
        if (f && f.cleanGroup !== null && f.cleanGroup >= 0) this.changed(e.gpa, f.cleanGroup, index);
        return this.store(w, e.vcpu, e.gpa + BigInt(f?.evmcsOffset ?? 0), f?.evmcsSize ?? 1, index, true);
      }
      case 'l1.evmcs-ctls-must-be-1': {
        // four member stores, each as l1.evmcs-write would make it
        let first: ContractViolation | undefined;
        for (const [field] of MUST_BE_1_CONTROLS) {
          const f = vmcsFieldByEncoding(field)!;
          if (f.cleanGroup !== null && f.cleanGroup >= 0) this.changed(e.gpa, f.cleanGroup, index);
          first ??= this.store(w, e.vcpu, e.gpa + BigInt(f.evmcsOffset!), f.evmcsSize!, index, true);
        }
        return first;
      }
      case 'l1.write':
        return this.store(w, e.vcpu, e.gpa, e.size, index, false);
      case 'l1.msr-bitmap': {
        const bit = msrBitmapBit(e.msr, e.access === 'write');
        return bit < 0 ? undefined : this.store(w, e.vcpu, e.gpa + BigInt(bit >> 3), 1, index, false);
      }
      case 'l1.evmcs-control':
      case 'l1.evmcs-clean':
        this.evmcsInfo.delete(e.gpa);
        return undefined;
      case 'l1.vmptrld':
        return this.vmptrld(w, e.vcpu, e.gpa, index);
      case 'l1.vmlaunch':
      case 'l1.vmresume':
      {
        // both looked at: entry() also resets the clean-field tracking
        const sw = this.evmcsSwitch(w, e.vcpu, index);
        const en = this.entry(w, e.vcpu, e.kind === 'l1.vmlaunch', index);
        return sw ?? en;
      }
      default:
        return undefined;
    }
  }

  /**
   * eVMCS groups a restore left different from vmcs12 (the event that did it): L1 may enter with
   * their clean bits set once KVM has mapped the eVMCS, and KVM then keeps the restored values.
   */
  private restored = new Map<bigint, { groups: number; index: number }>();

  /** KVM_SET_NESTED_STATE (or a migration) with an eVMCS: which groups will vmcs12 and the eVMCS disagree on? */
  private restore(w: World, e: TraceEvent, index: number): void {
    const v = w.vcpus[(e as { vcpu: number }).vcpu];
    if (!v || !w.config.evmcs) return;
    const evmcs = v.nested.vpAssistEvmcs;
    if (evmcs === INVALID_GPA) return;
    let vmcs12: (f: (typeof NOT_WRITTEN_BACK)[number]) => bigint;
    if (e.kind === 'host.set-nested-state') {
      // Only the restore that maps the eVMCS: VMX on, no vmcs12 address, a vmcs12 in the buffer.
      if (!(e.flags & KVM_STATE_NESTED_EVMCS) || e.vmxon === INVALID_GPA || e.vmcs12 !== INVALID_GPA) return;
      const fields = v.userNestedState?.vmcs12.fields;
      vmcs12 = (f) => fields?.[f.field.slot] ?? 0n;
    } else {
      // vmx_get_nested_state: in L1, a full copy of the eVMCS L0 has mapped (not necessarily the one the VP assist page names now)
      const n = v.nested;
      if (!evmptrValid(n) && n.hvEvmcsVmptr !== EVMPTR_MAP_PENDING) return;
      const fromMemory = evmptrValid(n) && !n.guestMode && !n.needVmcs12ToShadowSync ? n.hvEvmcsVmptr : null;
      vmcs12 = (f) => (fromMemory === null ? n.vmcs12[f.field.slot] : (readGuest(w, fromMemory + BigInt(f.offset), f.size) ?? 0n));
    }
    let groups = 0;
    for (const f of NOT_WRITTEN_BACK) {
      if (groups & (1 << f.group)) continue;
      const mask = f.size === 8 ? 0xffffffffffffffffn : (1n << BigInt(8 * f.size)) - 1n;
      const mem = readGuest(w, evmcs + BigInt(f.offset), f.size) ?? 0n;
      if ((vmcs12(f) & mask) !== mem) groups |= 1 << f.group;
    }
    if (groups) this.restored.set(evmcs, { groups, index });
    else this.restored.delete(evmcs);
  }

  private add(c: Omit<ContractViolation, 'party'>): ContractViolation {
    const v = { ...c, party: CONTRACT_PARTY[c.contract] };
    this.violations.push(v);
    return v;
  }

  /**
   * An eVMCS's page and the MSR-bitmap page it names with the enlightened
   * bitmap on, cached until a store or a host event may change them.
   */
  private evmcsInfo = new Map<bigint, { gfn: number; bitmapGfn: number }>();

  /** What `evmcsInfo` holds for this eVMCS, read from guest memory when it is not cached. */
  private evmcsPages(w: World, evmcsGpa: bigint): { gfn: number; bitmapGfn: number } {
    let info = this.evmcsInfo.get(evmcsGpa);
    if (!info) {
      const ctl = readGuest(w, evmcsGpa + BigInt(EVMCS.HV_ENLIGHTENMENTS_CONTROL_OFFSET), 4) ?? 0n;
      const bm = ctl & BigInt(HV_ENLIGHTENMENTS_CONTROL.MSR_BITMAP) ? readGuest(w, evmcsGpa + MSR_BITMAP_EVMCS_OFFSET, 8) : null;
      info = { gfn: gpaToGfn(evmcsGpa), bitmapGfn: bm === null ? -1 : gpaToGfn(bm) };
      this.evmcsInfo.set(evmcsGpa, info);
    }
    return info;
  }

  /** A store of L1 into the pages gfn..lastGfn, against one eVMCS a vCPU uses or names. */
  private storeNear(w: World, evmcsGpa: bigint, gpa: bigint, gfn: number, lastGfn: number, size: number, index: number, viaEvmcsEvent: boolean): void {
    const info = this.evmcsPages(w, evmcsGpa);
    // A store into the MSR-bitmap page an eVMCS names (enlightened bitmap on) changes the MSR_BITMAP group.
    if (info.bitmapGfn >= gfn && info.bitmapGfn <= lastGfn) this.changed(evmcsGpa, MSR_BITMAP_GROUP, index);
    if (viaEvmcsEvent || info.gfn < gfn || info.gfn > lastGfn) return;
    const off = Number(gpa - evmcsGpa);
    for (let i = 0; i < size; i++) {
      const g = GROUP_BY_OFFSET.get(off + i);
      if (g !== undefined) this.changed(evmcsGpa, g, index);
    }
  }

  private store(w: World, vcpu: number, gpa: bigint, size: number, index: number, viaEvmcsEvent: boolean): ContractViolation | undefined {
    const gfn = gpaToGfn(gpa);
    const lastGfn = size === 1 ? gfn : gpaToGfn(gpa + BigInt(size - 1));
    // Every eVMCS a vCPU uses or names (each once per vCPU: marking a group twice is marking it once).
    for (const v of w.vcpus) {
      const cur = v.nested.hvEvmcsVmptr;
      const named = v.nested.vpAssistEvmcs;
      if (cur !== INVALID_GPA) this.storeNear(w, cur, gpa, gfn, lastGfn, size, index, viaEvmcsEvent);
      if (named !== INVALID_GPA && named !== cur) this.storeNear(w, named, gpa, gfn, lastGfn, size, index, viaEvmcsEvent);
    }
    // After this store, what is cached about an eVMCS in the stored page may be stale.
    if (this.evmcsInfo.size) for (const [k, info] of this.evmcsInfo) if (info.gfn >= gfn && info.gfn <= lastGfn) this.evmcsInfo.delete(k);
    // The SDM: not while another vCPU runs L2 with a vmcs12 whose MSR bitmap is this page.
    for (const o of w.vcpus) {
      if (o.id === vcpu || !o.nested.guestMode) continue;
      if (!(vmcs12Get32(o.nested, VMCS.CPU_BASED_VM_EXEC_CONTROL) & CPU_BASED.USE_MSR_BITMAPS)) continue;
      const bmGfn = gpaToGfn(vmcs12Get(o.nested, VMCS.MSR_BITMAP));
      if (bmGfn >= gfn && bmGfn <= lastGfn) {
        return this.add({
          contract: 'sdm-active-msr-bitmap',
          index,
          vcpu,
          message: `L1 on vCPU ${vcpu} wrote the MSR bitmap (gfn 0x${bmGfn.toString(16)}) of the vmcs12 L2 is running on vCPU ${o.id}`,
        });
      }
    }
    return undefined;
  }

  /**
   * VMPTRLD of a region another vCPU has current (or uses as its eVMCS).
   * KVM's handle_vmptrld reads it into this vCPU's cached_vmcs12 regardless;
   * the other vCPU keeps its own copy, so under upstream KVM both go on (each
   * vCPU's vmcs12 is private), but anything keyed by the region's address is
   * now claimed by two vCPUs at once. Only the region the other vCPU has
   * current counts (the SDM's "active" is wider): that is the one its nested
   * state is bound to.
   */
  private vmptrld(w: World, vcpu: number, gpa: bigint, index: number): ContractViolation | undefined {
    const v = w.vcpus[vcpu];
    // handle_vmptrld fails, does nothing, or is ignored (an eVMCS in use) before loading anything in these cases.
    if (!v || !v.nested.vmxon || v.nested.guestMode || gpa === v.nested.currentVmptr || gpa === v.nested.vmxonPtr) return undefined;
    if (w.config.evmcs && v.nested.hvEvmcsVmptr !== INVALID_GPA) return undefined;
    return this.activeOnTwo(w, vcpu, gpa, index, 'made the VMCS', ' current');
  }

  /** The region `gpa` is current (VMPTRLD) or the eVMCS in use on a vCPU other than `vcpu`: sdm-vmcs-active-once. */
  private activeOnTwo(w: World, vcpu: number, gpa: bigint, index: number, what: string, how: string): ContractViolation | undefined {
    for (const o of w.vcpus) {
      if (o.id === vcpu || !o.nested.vmxon || (o.nested.currentVmptr !== gpa && o.nested.hvEvmcsVmptr !== gpa)) continue;
      return this.add({
        contract: 'sdm-vmcs-active-once',
        index,
        vcpu,
        message: `L1 on vCPU ${vcpu} ${what} at 0x${gpa.toString(16)}${how} while vCPU ${o.id} has it current (no VMCLEAR there first)`,
      });
    }
    return undefined;
  }

  /**
   * VMLAUNCH/VMRESUME that makes KVM take up a new eVMCS (the one the VP
   * assist page names): nested_vmx_handle_enlightened_vmptrld (nested.c)
   * drops a VMCS loaded with VMPTRLD without nested_release_vmcs12
   * (hyperv-evmcs-no-vmptrld); an eVMCS another vCPU uses is the same region
   * active on two (sdm-vmcs-active-once).
   */
  private evmcsSwitch(w: World, vcpu: number, index: number): ContractViolation | undefined {
    const v = w.vcpus[vcpu];
    if (!v || !w.config.evmcs || !v.nested.vmxon || v.nested.guestMode) return undefined;
    const n = v.nested;
    if (n.vpAssistEvmcs === INVALID_GPA || n.vpAssistEvmcs === n.hvEvmcsVmptr) return undefined;
    if (n.currentVmptr !== INVALID_GPA) {
      return this.add({
        contract: 'hyperv-evmcs-no-vmptrld',
        index,
        vcpu,
        message: `L1 on vCPU ${vcpu} entered through the eVMCS at 0x${n.vpAssistEvmcs.toString(16)} while the VMCS at 0x${n.currentVmptr.toString(16)} (VMPTRLD) is current`,
      });
    }
    return this.activeOnTwo(w, vcpu, n.vpAssistEvmcs, index, 'entered through the eVMCS', '');
  }

  private entry(w: World, vcpu: number, launch: boolean, index: number): ContractViolation | undefined {
    const v = w.vcpus[vcpu];
    if (!v || !w.config.evmcs || v.nested.guestMode) return undefined;
    const gpa = v.nested.vpAssistEvmcs;
    if (gpa === INVALID_GPA) return undefined;
    const t = this.track(gpa);
    // KVM clears the clean bits when it maps an eVMCS (VMLAUNCH, a new eVMCS, the first KVM_RUN after a restore)
    const fresh = launch || gpa !== v.nested.hvEvmcsVmptr;
    const r = this.restored.get(gpa);
    if (r) {
      this.restored.delete(gpa);
      const mismatch = fresh ? 0 : r.groups & Number(readGuest(w, gpa + BigInt(EVMCS.HV_CLEAN_FIELDS_OFFSET), 4) ?? 0n);
      if (mismatch) {
        const groups = EVMCS_CLEAN_GROUPS.filter((g) => mismatch & (1 << g.bit));
        return this.add({
          contract: 'kvm-evmcs-restore-matches',
          index,
          cause: r.index,
          vcpu,
          message: `the restore at event ${r.index} left vmcs12 different from eVMCS 0x${gpa.toString(16)} in group${groups.length > 1 ? 's' : ''} ${groups.map((g) => g.name).join(', ')}, and L1 entered with ${groups.length > 1 ? 'their clean bits' : 'its clean bit'} set`,
        });
      }
    }
    // Nothing changed since L0 last consumed this eVMCS: no clean bit can be stale (and there is nothing to reset).
    if (!t.changed) return undefined;
    const clean = Number(readGuest(w, gpa + BigInt(EVMCS.HV_CLEAN_FIELDS_OFFSET), 4) ?? 0n);
    const stale = fresh ? 0 : t.changed & clean;
    // L0 consumes everything at this entry (and sets every clean bit if it succeeds).
    const cause = t.cause;
    if (t.changed) {
      t.changed = 0;
      t.cause = [];
    }
    if (!stale) return undefined;
    const groups = EVMCS_CLEAN_GROUPS.filter((g) => stale & (1 << g.bit));
    const first = Math.min(...groups.map((g) => cause[g.bit] ?? index));
    return this.add({
      contract: 'hyperv-clean-fields',
      index,
      cause: first,
      vcpu,
      message: `L1 changed eVMCS group${groups.length > 1 ? 's' : ''} ${groups.map((g) => g.name).join(', ')} (first at event ${first}) but entered with ${groups.length > 1 ? 'their clean bits' : 'its clean bit'} set`,
    });
  }
}
