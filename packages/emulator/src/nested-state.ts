/**
 * Save and restore of a vCPU's nested state: KVM_GET_NESTED_STATE and
 * KVM_SET_NESTED_STATE, after vmx_get_nested_state / vmx_set_nested_state
 * (arch/x86/kvm/vmx/nested.c) and the generic checks of the ioctl in
 * kvm_arch_vcpu_ioctl (arch/x86/kvm/x86.c); and a whole migration of one
 * vCPU as tools/testing/selftests/kvm/x86/state_test.c does it
 * (vcpu_save_state, a fresh vCPU, vcpu_load_state).
 *
 * What the model saves is what KVM's struct kvm_nested_state carries: the
 * header (flags, format, size, hdr.vmx.vmxon_pa, vmcs12_pa, smm.flags) and
 * the vmcs12 and shadow vmcs12 data. What it rebuilds after a restore is
 * what KVM rebuilds: the eVMCS is mapped again and vmcs12's pages are got
 * again at the next KVM_RUN (KVM_REQ_GET_NESTED_STATE_PAGES), the MSR bitmap
 * is merged again (force_msr_bitmap_recalc), and every path's private state
 * starts as at vCPU creation unless the path says otherwise (its `restore`
 * hook, areas/types.ts).
 *
 * Not modelled (the model has no state for them): nested_run_pending (an
 * event completes VMLAUNCH/VMRESUME in one step, so RUN_PENDING is never
 * saved and is accepted without effect), MTF, the preemption-timer
 * deadline, smm.vmxon (the model does not leave VMX operation in SMM), and
 * guest CPUID without VMX (L1 always has VMX).
 */
import { HV_VMX_ENLIGHTENED_CLEAN_FIELD, INVALID_GPA, VMCS, VMCS12_REVISION, VMCS12_SLOT_COUNT, VMCS_HDR_SHADOW_VMCS, vmcsFieldByEncoding } from '@nvx/arch';
import type { Outcome } from '@nvx/trace';
import { AREA_IDS, AreaId } from './paths';
import { EVMPTRLD, EVMPTR_MAP_PENDING, copyEnlightenedToVmcs12, evmptrValid, nestedReleaseEvmcs } from './evmcs';
import { nestedCpuHasShadowVmcs, nestedFlushCachedShadowVmcs12, freeNestedCaches } from './vmcs-link';
import { cpuidFaultChanged } from './cpuid-fault';
import type { Ctx } from './ctx';
import { OK, changeVmcs01Intercept, ignored, pageAddressValid, syncVmcs12ToShadow } from './nested';
import { Vcpu, World, newNested } from './state';
import { vmcs12Get } from './vmcs12';

// ---- struct kvm_nested_state (arch/x86/include/uapi/asm/kvm.h) ----

export const KVM_STATE_NESTED_FORMAT_VMX = 0;
export const KVM_STATE_NESTED_FORMAT_SVM = 1;
export const KVM_STATE_NESTED_GUEST_MODE = 0x1;
export const KVM_STATE_NESTED_RUN_PENDING = 0x2;
export const KVM_STATE_NESTED_EVMCS = 0x4;
export const KVM_STATE_NESTED_MTF_PENDING = 0x8;
export const KVM_STATE_NESTED_GIF_SET = 0x100;
export const KVM_STATE_NESTED_SMM_GUEST_MODE = 0x1;
export const KVM_STATE_NESTED_SMM_VMXON = 0x2;
/** sizeof(struct kvm_nested_state): the header, before data.vmx */
export const KVM_NESTED_STATE_HEADER_SIZE = 128;
/** KVM_STATE_NESTED_VMX_VMCS_SIZE: each of data.vmx[0].vmcs12 and .shadow_vmcs12 */
export const KVM_STATE_NESTED_VMX_VMCS_SIZE = 0x1000;

/** The header of struct kvm_nested_state, as the VMM reads or writes it. */
export interface NestedStateHeader {
  flags: number;
  format: number;
  size: number;
  /** hdr.vmx.vmxon_pa */
  vmxon: bigint;
  /** hdr.vmx.vmcs12_pa */
  vmcs12: bigint;
  /** hdr.vmx.smm.flags */
  smm: number;
}

/** vmcs12 (or a shadow vmcs12) as it travels in data.vmx[0]: the header dword, launch_state, the fields. */
export interface Vmcs12Data {
  /** hdr: bits 30:0 revision_id, bit 31 shadow_vmcs */
  hdr: number;
  launchState: number;
  fields: BigUint64Array;
}

/** The VMM's buffer: what KVM_GET_NESTED_STATE filled in, or what the VMM wrote for KVM_SET_NESTED_STATE. */
export interface UserNestedState {
  header: NestedStateHeader;
  vmcs12: Vmcs12Data;
  shadowVmcs12: Vmcs12Data;
}

const emptyData = (): Vmcs12Data => ({ hdr: 0, launchState: 0, fields: new BigUint64Array(VMCS12_SLOT_COUNT) });

/** A zeroed buffer (the selftests' calloc / memset before filling a state in). */
export function emptyUserNestedState(): UserNestedState {
  return { header: { flags: 0, format: 0, size: 0, vmxon: 0n, vmcs12: 0n, smm: 0 }, vmcs12: emptyData(), shadowVmcs12: emptyData() };
}

const EINVAL: Outcome = Object.freeze({ k: 'einval' });

// ---- KVM_GET_NESTED_STATE ----

/** vmx_has_valid_vmcs12: a vmcs12 is current, or an eVMCS is (or is about to be) mapped. */
function vmxHasValidVmcs12(v: Vcpu): boolean {
  const n = v.nested;
  return n.currentVmptr !== INVALID_GPA || n.hvEvmcsVmptr !== INVALID_GPA;
}

/** nested_cpu_has_shadow_vmcs(vmcs12) && vmcs12->vmcs_link_pointer != INVALID_GPA */
function hasShadowVmcs12(v: Vcpu): boolean {
  return nestedCpuHasShadowVmcs(v) && vmcs12Get(v.nested, VMCS.VMCS_LINK_POINTER) !== INVALID_GPA;
}

/**
 * The default of each path's part of bringing vmcs12 up to date before it
 * is copied out, while L1 runs (vmx_get_nested_state): "the authoritative
 * vmcs12 state is in the shadow or enlightened vmcs linked to vmcs01,
 * unless need_vmcs12_to_shadow_sync is set". The eVMCS is copied whole,
 * clean fields ignored: L1 need not keep hv_clean_fields up to date
 * outside VM-entry. A path may replace its part (`getNestedState`).
 */
const DEFAULT_GET_NESTED_STATE: Partial<Record<AreaId, (ctx: Ctx, w: World, v: Vcpu) => void>> = {
  evmcs(ctx, w, v) {
    if (evmptrValid(v.nested)) copyEnlightenedToVmcs12(ctx, w, v, HV_VMX_ENLIGHTENED_CLEAN_FIELD.ALL);
  },
  'shadow-vmcs'(ctx, w, v) {
    if (!evmptrValid(v.nested) && w.config.shadowVmcs && v.nested.currentVmptr !== INVALID_GPA) ctx.profile.paths['shadow-vmcs'].copyShadowToVmcs12(ctx, w, v);
  },
};

/**
 * vmx_get_nested_state: the header, and the vmcs12 data (synced first) when
 * a vmcs12 is valid. Changes vmcs12 as KVM does (it copies the shadow VMCS
 * or the eVMCS into it), nothing else.
 */
export function vmxGetNestedState(ctx: Ctx, w: World, v: Vcpu): UserNestedState {
  const n = v.nested;
  const out = emptyUserNestedState();
  const h = out.header;
  h.format = KVM_STATE_NESTED_FORMAT_VMX;
  h.size = KVM_NESTED_STATE_HEADER_SIZE;
  h.vmxon = INVALID_GPA;
  h.vmcs12 = INVALID_GPA;
  if (!n.vmxon) return out;
  h.vmxon = n.vmxonPtr;
  h.vmcs12 = n.currentVmptr;
  const valid = vmxHasValidVmcs12(v);
  if (valid) {
    h.size += KVM_STATE_NESTED_VMX_VMCS_SIZE;
    // 'hv_evmcs_vmptr' can also be EVMPTR_MAP_PENDING here
    if (n.hvEvmcsVmptr !== INVALID_GPA) h.flags |= KVM_STATE_NESTED_EVMCS;
    if (n.guestMode && hasShadowVmcs12(v)) h.size += KVM_STATE_NESTED_VMX_VMCS_SIZE;
  }
  if (n.guestMode) h.flags |= KVM_STATE_NESTED_GUEST_MODE;
  if (!valid) return out;
  // While L2 runs the model's vmcs12 is up to date (sync_vmcs02_to_vmcs12 has nothing to add).
  if (!n.guestMode && !n.needVmcs12ToShadowSync) {
    for (const a of ['evmcs', 'shadow-vmcs'] as const) {
      const hook = ctx.profile.paths[a].getNestedState ?? DEFAULT_GET_NESTED_STATE[a];
      hook?.(ctx, w, v);
    }
  }
  out.vmcs12 = { hdr: VMCS12_REVISION, launchState: n.launched ? 1 : 0, fields: n.vmcs12.slice() };
  if (hasShadowVmcs12(v)) out.shadowVmcs12 = { hdr: (VMCS12_REVISION | VMCS_HDR_SHADOW_VMCS) >>> 0, launchState: 0, fields: n.cachedShadowVmcs12.slice() };
  return out;
}

export function nestedStateOutcome(h: NestedStateHeader): Outcome {
  return { k: 'nested-state', flags: h.flags, size: h.size, vmxon: h.vmxon, vmcs12: h.vmcs12, smm: h.smm };
}

// ---- KVM_SET_NESTED_STATE ----

/**
 * vmx_leave_nested: leave L2 (nested_vmx_vmexit with exit reason -1: no
 * exit information, only the cached shadow vmcs12 written back), then
 * free_nested.
 */
export function vmxLeaveNested(ctx: Ctx, w: World, v: Vcpu): void {
  const n = v.nested;
  if (n.guestMode) {
    n.guestMode = false;
    ctx.profile.paths['guest-pages'].nestedVmexit(ctx, w, v);
    if (v.pendingL01.length) {
      for (const p of v.pendingL01) changeVmcs01Intercept(ctx, v, p.msr, p.write, p.intercept);
      v.pendingL01 = [];
    }
    nestedFlushCachedShadowVmcs12(ctx, w, v);
  }
  n.getNestedStatePages = false;
  n.nestedStatePagesFailed = false;
  if (!n.vmxon) return;
  // free_nested
  n.vmxon = false;
  n.vmxonPtr = INVALID_GPA;
  n.currentVmptr = INVALID_GPA;
  if (n.hvEvmcsVmptr === EVMPTR_MAP_PENDING) n.hvEvmcsVmptr = INVALID_GPA;
  nestedReleaseEvmcs(ctx, w, v);
  ctx.profile.paths['guest-pages'].freeNested?.(ctx, w, v);
  ctx.profile.paths['shadow-vmcs'].free(ctx, w, v);
  freeNestedCaches(ctx, n);
  n.dirtyVmcs12 = false;
  n.needVmcs12ToShadowSync = false;
}

/** enter_vmx_operation: VMX on, vmcs02 allocated with an all-ones MSR bitmap. */
function enterVmxOperation(ctx: Ctx, v: Vcpu, vmxon: bigint): void {
  const n = v.nested;
  n.vmxon = true;
  n.vmxonPtr = vmxon;
  n.currentVmptr = INVALID_GPA;
  n.vmcs02MsrBitmap = new Uint8Array(n.vmcs02MsrBitmap.length).fill(0xff);
  ctx.fresh?.add(n.vmcs02MsrBitmap);
  n.vmcs02UseMsrBitmaps = false;
}

/** set_current_vmptr (as handle_vmptrld does it, without reading L1 memory: vmcs12 comes from the VMM). */
function setCurrentVmptr(ctx: Ctx, w: World, v: Vcpu, gpa: bigint): void {
  const n = v.nested;
  n.currentVmptr = gpa;
  if (w.config.shadowVmcs) n.needVmcs12ToShadowSync = true;
  ctx.profile.paths['shadow-vmcs'].setCurrentVmptr(ctx, w, v);
  n.dirtyVmcs12 = true;
  n.forceMsrBitmapRecalc = true;
  ctx.profile.paths['guest-pages'].vmptrld?.(ctx, w, v, gpa);
}

function installVmcs12(ctx: Ctx, v: Vcpu, d: Vmcs12Data): void {
  const n = v.nested;
  n.vmcs12 = d.fields.slice();
  ctx.fresh?.add(n.vmcs12);
  n.launched = d.launchState === 1;
}

/**
 * KVM_SET_NESTED_STATE: the checks of kvm_arch_vcpu_ioctl (x86.c), then
 * vmx_set_nested_state. Each `return EINVAL` is one `return -EINVAL` of
 * KVM's, in KVM's order; checks before vmx_leave_nested change nothing,
 * those after it leave the vCPU as KVM leaves it (VMX on, vmcs12 partly
 * set up). `data` is the VMM's buffer (only the parts `size` covers count).
 */
/**
 * A refusal after set_current_vmptr and the copy of the user's vmcs12
 * (vmx_set_nested_state's "goto error_guest_mode" and the returns before
 * it): L1 stays in VMX operation with that vmcs12 current and runs next, so
 * vmx_prepare_switch_to_guest first pushes vmcs12 to the shadow VMCS
 * (need_vmcs12_to_shadow_sync, set by set_current_vmptr). Done now, as on
 * success without GUEST_MODE: no L1 read can come before it.
 */
function failWithVmcs12Loaded(ctx: Ctx, w: World, v: Vcpu): Outcome {
  if (v.nested.needVmcs12ToShadowSync && !v.nested.getNestedStatePages && !v.nested.guestMode) syncVmcs12ToShadow(ctx, w, v);
  return EINVAL;
}

export function vmxSetNestedState(ctx: Ctx, w: World, v: Vcpu, h: NestedStateHeader, data: UserNestedState): Outcome {
  const n = v.nested;
  // x86.c, KVM_SET_NESTED_STATE: "if (kvm_state.size < sizeof(kvm_state))"
  if (h.size < KVM_NESTED_STATE_HEADER_SIZE) return EINVAL;
  // x86.c: flags other than RUN_PENDING | GUEST_MODE | EVMCS | MTF_PENDING | GIF_SET
  if (h.flags & ~(KVM_STATE_NESTED_RUN_PENDING | KVM_STATE_NESTED_GUEST_MODE | KVM_STATE_NESTED_EVMCS | KVM_STATE_NESTED_MTF_PENDING | KVM_STATE_NESTED_GIF_SET)) return EINVAL;
  // x86.c: "nested_run_pending implies guest_mode"
  if (h.flags & KVM_STATE_NESTED_RUN_PENDING && !(h.flags & KVM_STATE_NESTED_GUEST_MODE)) return EINVAL;

  // vmx_set_nested_state: "if (kvm_state->format != KVM_STATE_NESTED_FORMAT_VMX)"
  if (h.format !== KVM_STATE_NESTED_FORMAT_VMX) return EINVAL;
  if (h.vmxon === INVALID_GPA) {
    // "if (kvm_state->hdr.vmx.smm.flags) return -EINVAL;"
    if (h.smm) return EINVAL;
    // "if (kvm_state->hdr.vmx.vmcs12_pa != INVALID_GPA) return -EINVAL;"
    if (h.vmcs12 !== INVALID_GPA) return EINVAL;
    // "if (kvm_state->flags & ~KVM_STATE_NESTED_EVMCS)": EVMCS alone is allowed without VMXON (backwards compatibility)
    if (h.flags & ~KVM_STATE_NESTED_EVMCS) return EINVAL;
  } else {
    // "!guest_can_use(vcpu, X86_FEATURE_VMX)" never holds in the model; "!page_address_valid(vcpu, vmxon_pa)"
    if (!pageAddressValid(h.vmxon)) return EINVAL;
  }
  // "(smm.flags & KVM_STATE_NESTED_SMM_GUEST_MODE) && (flags & KVM_STATE_NESTED_GUEST_MODE)"
  if (h.smm & KVM_STATE_NESTED_SMM_GUEST_MODE && h.flags & KVM_STATE_NESTED_GUEST_MODE) return EINVAL;
  // "smm.flags & ~(KVM_STATE_NESTED_SMM_GUEST_MODE | KVM_STATE_NESTED_SMM_VMXON)"
  if (h.smm & ~(KVM_STATE_NESTED_SMM_GUEST_MODE | KVM_STATE_NESTED_SMM_VMXON)) return EINVAL;
  // "is_smm(vcpu) ? (flags & (GUEST_MODE | RUN_PENDING)) : smm.flags": SMM disables VMX; outside SMM the SMM flags must be zero
  if (v.cpuidFault.smm ? h.flags & (KVM_STATE_NESTED_GUEST_MODE | KVM_STATE_NESTED_RUN_PENDING) : h.smm) return EINVAL;
  // "(smm.flags & KVM_STATE_NESTED_SMM_GUEST_MODE) && !(smm.flags & KVM_STATE_NESTED_SMM_VMXON)"
  if (h.smm & KVM_STATE_NESTED_SMM_GUEST_MODE && !(h.smm & KVM_STATE_NESTED_SMM_VMXON)) return EINVAL;
  // "(flags & KVM_STATE_NESTED_EVMCS) && (!guest_can_use(VMX) || !vmx->nested.enlightened_vmcs_enabled)"
  if (h.flags & KVM_STATE_NESTED_EVMCS && !w.config.evmcs) return EINVAL;

  vmxLeaveNested(ctx, w, v);
  if (h.vmxon === INVALID_GPA) return OK;
  enterVmxOperation(ctx, v, h.vmxon);

  // "Empty 'VMXON' state is permitted if no VMCS loaded"
  if (h.size < KVM_NESTED_STATE_HEADER_SIZE + KVM_STATE_NESTED_VMX_VMCS_SIZE) {
    // See vmx_has_valid_vmcs12.
    if (h.flags & KVM_STATE_NESTED_GUEST_MODE || h.flags & KVM_STATE_NESTED_EVMCS || h.vmcs12 !== INVALID_GPA) return EINVAL;
    return OK;
  }
  if (h.vmcs12 !== INVALID_GPA) {
    // "vmcs12_pa == vmxon_pa || !page_address_valid(vcpu, vmcs12_pa)"
    if (h.vmcs12 === h.vmxon || !pageAddressValid(h.vmcs12)) return EINVAL;
    setCurrentVmptr(ctx, w, v, h.vmcs12);
  } else if (h.flags & KVM_STATE_NESTED_EVMCS) {
    // The VP assist page may not be restored yet: the eVMCS is mapped from nested_get_vmcs12_pages.
    n.hvEvmcsVmptr = EVMPTR_MAP_PENDING;
    n.getNestedStatePages = true;
  } else {
    return EINVAL;
  }
  // KVM_STATE_NESTED_SMM_VMXON: smm.vmxon is not modelled (VMX stays on).

  installVmcs12(ctx, v, data.vmcs12);
  // "if (vmcs12->hdr.revision_id != VMCS12_REVISION)"
  if ((data.vmcs12.hdr & 0x7fffffff) !== VMCS12_REVISION) return failWithVmcs12Loaded(ctx, w, v);
  if (!(h.flags & KVM_STATE_NESTED_GUEST_MODE)) {
    // L1 runs next: vmx_prepare_switch_to_guest pushes vmcs12 to the shadow VMCS first
    // (need_vmcs12_to_shadow_sync). Done now: nothing can tell the two apart (a KVM_GET_NESTED_STATE
    // in between takes vmcs12 while the flag is set, which holds the same). An eVMCS waits for its mapping.
    if (n.needVmcs12ToShadowSync && !n.getNestedStatePages) syncVmcs12ToShadow(ctx, w, v);
    return OK;
  }
  if (hasShadowVmcs12(v)) {
    // "kvm_state->size < sizeof(*kvm_state) + sizeof(vmcs12) + sizeof(*shadow_vmcs12)"
    if (h.size < KVM_NESTED_STATE_HEADER_SIZE + 2 * KVM_STATE_NESTED_VMX_VMCS_SIZE) return failWithVmcs12Loaded(ctx, w, v);
    const s = data.shadowVmcs12;
    n.cachedShadowVmcs12 = s.fields.slice();
    ctx.fresh?.add(n.cachedShadowVmcs12);
    // "shadow_vmcs12->hdr.revision_id != VMCS12_REVISION || !shadow_vmcs12->hdr.shadow_vmcs"
    if ((s.hdr & 0x7fffffff) !== VMCS12_REVISION || !(s.hdr & VMCS_HDR_SHADOW_VMCS)) return failWithVmcs12Loaded(ctx, w, v);
  }
  // nested_vmx_check_controls / _host_state / _guest_state (the parts the model has)
  const ops = ctx.profile.ops;
  if (!ops.nested_vmx_check_controls(ctx, w, v) || !ops.nested_vmx_check_vmcs_link_ptr(ctx, w, v)) return failWithVmcs12Loaded(ctx, w, v);
  n.dirtyVmcs12 = true;
  n.forceMsrBitmapRecalc = true;
  // nested_vmx_enter_non_root_mode(vcpu, false): L2 runs; its pages come at the next KVM_RUN
  n.guestMode = true;
  n.getNestedStatePages = true;
  return OK;
}

/**
 * vmx_get_nested_state_pages, for KVM_REQ_GET_NESTED_STATE_PAGES at the
 * next KVM_RUN after a restore (and, when L1 runs next, the push of vmcs12
 * to the shadow VMCS or eVMCS that vmx_prepare_switch_to_guest does before
 * L1 runs). Returns an error (KVM_EXIT_INTERNAL_ERROR) or null.
 */
export function vmxGetNestedStatePages(ctx: Ctx, w: World, v: Vcpu): string | null {
  const n = v.nested;
  n.getNestedStatePages = false;
  // nested_get_evmcs_page
  if (n.hvEvmcsVmptr === EVMPTR_MAP_PENDING) {
    const st = ctx.profile.ops.nested_vmx_handle_enlightened_vmptrld(ctx, w, v, false);
    if (st === EVMPTRLD.VMFAIL || st === EVMPTRLD.ERROR) return 'KVM_EXIT_INTERNAL_ERROR: the eVMCS cannot be mapped after KVM_SET_NESTED_STATE';
    // "Post migration VMCS12 always provides the most actual information, copy it to eVMCS upon entry."
    n.needVmcs12ToShadowSync = true;
  }
  if (n.guestMode) {
    // nested_get_vmcs12_pages: the MSR bitmap, then the APIC pages
    const unbacked = ctx.profile.ops.nested_get_vmcs12_pages(ctx, w, v);
    if (unbacked !== null) return `KVM_EXIT_INTERNAL_ERROR: ${unbacked.why}`;
  } else if (n.needVmcs12ToShadowSync) {
    syncVmcs12ToShadow(ctx, w, v);
  }
  return null;
}

// ---- the VMM's side ----

/** host.get-nested-state: KVM_GET_NESTED_STATE into the VMM's buffer. */
export function hostGetNestedState(ctx: Ctx, w: World, v: Vcpu): Outcome {
  const s = ctx.profile.ops.vmx_get_nested_state(ctx, w, v);
  v.userNestedState = s;
  return nestedStateOutcome(s.header);
}

/** host.set-nested-state: KVM_SET_NESTED_STATE with this header and the data of the VMM's buffer. */
export function hostSetNestedState(ctx: Ctx, w: World, v: Vcpu, h: NestedStateHeader): Outcome {
  const out = ctx.profile.ops.vmx_set_nested_state(ctx, w, v, h, v.userNestedState ?? emptyUserNestedState());
  // L2 may have been left or entered: what decides MSR 0x140 for a loaded vCPU changed (cpuid-fault)
  cpuidFaultChanged(ctx, w, v);
  return out;
}

function userBuffer(v: Vcpu): UserNestedState {
  // Replaced whole, never written in place (it may be shared with older states under immer).
  const old = v.userNestedState ?? emptyUserNestedState();
  const copy: UserNestedState = {
    header: { ...old.header },
    vmcs12: { ...old.vmcs12, fields: old.vmcs12.fields.slice() },
    shadowVmcs12: { ...old.shadowVmcs12, fields: old.shadowVmcs12.fields.slice() },
  };
  v.userNestedState = copy;
  return v.userNestedState;
}

/** host.nested-state-field: the VMM writes one field of the vmcs12 or shadow vmcs12 data in its buffer. */
export function hostNestedStateField(v: Vcpu, shadow: boolean, enc: number, value: bigint): Outcome {
  const field = vmcsFieldByEncoding(enc);
  if (!field) return ignored(`field 0x${enc.toString(16)} is not in vmcs12`);
  const b = userBuffer(v);
  const arr = (shadow ? b.shadowVmcs12 : b.vmcs12).fields;
  const mask = field.width === 16 ? 0xffffn : field.width === 32 ? 0xffffffffn : 0xffffffffffffffffn;
  if (field.isHigh) arr[field.slot] = (arr[field.slot] & 0xffffffffn) | ((value & 0xffffffffn) << 32n);
  else arr[field.slot] = value & mask;
  return OK;
}

/** host.nested-state-revision: the VMM writes the header dword of the vmcs12 or shadow vmcs12 data. */
export function hostNestedStateRevision(v: Vcpu, shadow: boolean, value: number): Outcome {
  const b = userBuffer(v);
  (shadow ? b.shadowVmcs12 : b.vmcs12).hdr = value >>> 0;
  return OK;
}

// ---- a migration of one vCPU ----

/**
 * host.migrate, as state_test.c does it: vcpu_save_state (KVM_GET_NESTED_STATE;
 * the MSRs of KVM_GET_MSR_INDEX_LIST, which include MSR_PLATFORM_INFO,
 * MSR_MISC_FEATURES_ENABLES and HV_X64_MSR_VP_ASSIST_PAGE; KVM_GET_VCPU_EVENTS
 * with SMM), the vCPU destroyed, a vCPU created with the same id on the same
 * thread and memory, vcpu_load_state (KVM_SET_MSRS, KVM_SET_VCPU_EVENTS,
 * then KVM_SET_NESTED_STATE). The outcome is that of the restore.
 *
 * Carried over: L1's and L2's MSRs, CPUID-faulting state and SMM, the VP
 * assist page's eVMCS, vmcs01's intercepts (KVM derives them again from the
 * restored MSRs, CPUID and MSR filter; changes it had deferred while L2 ran
 * are in place on the new vCPU). Not carried: everything else KVM keeps
 * (vmcs02, the merged MSR bitmap, mappings and caches of L1 pages): each
 * path's private state starts as at vCPU creation, or as its `restore`
 * hook says. Guest memory and the VM's own path state stay as they are.
 */
export function hostMigrate(ctx: Ctx, w: World, v: Vcpu): Outcome {
  const saved = ctx.profile.ops.vmx_get_nested_state(ctx, w, v);
  const cpuidFault = ctx.profile.paths['cpuid-fault'];
  const loaded = v.cpu >= 0;
  // The old vCPU goes away: its thread leaves KVM (vcpu_put), its mappings are released
  // (free_nested without the exit-time write-back: the state was saved already).
  if (loaded) cpuidFault.put(ctx, w, v);
  if (evmptrValid(v.nested)) nestedReleaseEvmcs(ctx, w, v);
  ctx.profile.paths['guest-pages'].freeNested?.(ctx, w, v);
  const vmcs01 = v.vmcs01MsrBitmap;
  const pending = v.pendingL01;
  const vpAssistEvmcs = v.nested.vpAssistEvmcs;
  const oldAreas = v.areas;

  // The new vCPU.
  v.nested = newNested();
  ctx.fresh?.add(v.nested.vmcs12);
  ctx.fresh?.add(v.nested.cachedShadowVmcs12);
  ctx.fresh?.add(v.nested.vmcs02MsrBitmap);
  v.nested.vpAssistEvmcs = vpAssistEvmcs;
  v.vmcs01MsrBitmap = vmcs01;
  v.pendingL01 = [];
  for (const p of pending) changeVmcs01Intercept(ctx, v, p.msr, p.write, p.intercept);
  v.areas = {};
  for (const a of AREA_IDS) {
    const path = ctx.profile.paths[a];
    const init = path.init?.(w, v.id);
    const kept = path.restore ? path.restore(ctx, w, v, oldAreas[a], init) : init;
    if (kept !== undefined) v.areas[a] = kept;
  }
  const out = ctx.profile.ops.vmx_set_nested_state(ctx, w, v, saved.header, saved);
  if (loaded) cpuidFault.load(ctx, w, v);
  return out;
}
