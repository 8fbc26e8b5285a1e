/**
 * The reducer: `(state, event) -> (state, outcome, costs)`.
 *
 * `applyEvent` is the recipe: it mutates the world it is given. `step` runs
 * it inside immer's produce (immutable states with structural sharing, for
 * history and tests); `Replayer` runs the very same recipe on a private
 * mutable working copy for the hot loops (replay, diff, fuzz, minimize,
 * bisect), taking a deep copy as a checkpoint when asked.
 */
import { EVMCS, EXIT_REASON, HV_X64_NESTED_MSR_BITMAP, HYPERV_CPUID_NESTED_FEATURES, KVM_NESTED_FEATURES_EVMCS_VERSIONS, MSR, MUST_BE_1_CONTROLS, isVmxCapMsr, vmcsFieldByEncoding } from '@nvx/arch';
import type { EventOf, Outcome, TraceEvent, TraceHeader, WorldConfig } from '@nvx/trace';
import type * as Immer from 'immer';
import { AREA_IDS, HostInvalidation } from './paths';
import { Costs, newCosts } from './costs';
import type { Ctx } from './ctx';
import { cpuidFaultChanged, guestRdmsr, guestWrmsr, hostSmi, isCpuidFaultMsr, l1Cpuid, l1Rsm } from './cpuid-fault';
import { hostTaskCpuid, hostTaskCpuidFault, hostVcpuLoad, hostVcpuPut, hostVcpuThreadCpuidFault } from './cpuid-fault-host';
import { gpaToGfn, hostGuestCopy, hostGuestWrite, memslotCreate, memslotDelete, memslotFlags, memslotMove, memslotReadd, memslotResize, mmuInvalidateEnd, mmuInvalidateStart, pageMigrate, pageZap, readGuest, writeGuest } from './memory';
import { OK, USERSPACE_INTERNAL_ERROR, ignored } from './nested';
import type { Profile } from './ops';
import { handleInvept, handleInvvpid, handleVmreadWide, handleVmwriteWide } from './vmx-insns';
import { l1RdmsrVmx, l1WrmsrVmx, vmxCapMsrGuest } from './vmx-msrs';
import { hostGetNestedState, hostMigrate, hostNestedStateField, hostNestedStateRevision, hostSetNestedState } from './nested-state';
import { Vcpu, World, cloneAreas, cloneWorld, initialWorld, msrBitmapBit } from './state';

let immer: typeof Immer | undefined;

/** immer, loaded by the first `step`: the hot loops (`Replayer`) never need it, so `nvx run` starts without it. */
function loadImmer(): typeof Immer {
  if (!immer) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    immer = require('immer') as typeof Immer;
    immer.enableMapSet();
    immer.setAutoFreeze(true);
  }
  return immer;
}

/**
 * `initialState` as a private working copy, without a `cloneWorld` of it:
 * memory, vCPUs and host come from constructors that build them new
 * (state.ts), so only what the paths' `init` and `initVm` return is copied,
 * in case a path hands out one object to every world.
 */
export function freshWorkingState(config: WorldConfig | TraceHeader, profile: Profile): World {
  const w = initialState(config, profile);
  for (const v of w.vcpus) v.areas = cloneAreas(v.areas);
  w.areas = cloneAreas(w.areas);
  return w;
}

/** The world before the first event of a trace, for a profile (each path's private state initialised). */
export function initialState(config: WorldConfig | TraceHeader, profile: Profile): World {
  const cfg = 'config' in config ? config.config : config;
  const w = initialWorld(cfg, () => ({}));
  for (const v of w.vcpus) for (const a of AREA_IDS) {
    const init = profile.paths[a].init;
    if (init) v.areas[a] = init(w, v.id);
  }
  for (const a of AREA_IDS) {
    const initVm = (profile.paths[a] as { initVm?: (w: World) => unknown }).initVm;
    if (initVm) w.areas[a] = initVm(w);
  }
  return w;
}

// ---- CPUID as L0 reports it to L1 (L2's CPUID always exits to L1) ----

/** A deterministic CPUID table: Hyper-V's nested-features leaf as KVM fills it; other leaves a fixed pattern. */
export function cpuidResult(cfg: WorldConfig, leaf: number, subleaf: number): Outcome {
  if (leaf === HYPERV_CPUID_NESTED_FEATURES) {
    const eax = cfg.evmcs ? (KVM_NESTED_FEATURES_EVMCS_VERSIONS | HV_X64_NESTED_MSR_BITMAP) >>> 0 : 0;
    return { k: 'cpuid', eax, ebx: 0, ecx: 0, edx: 0 };
  }
  const mix = (x: number) => Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) >>> 0;
  const s = mix(leaf ^ mix(subleaf + 0x9e3779b9));
  return { k: 'cpuid', eax: s, ebx: mix(s + 1), ecx: mix(s + 2), edx: mix(s + 3) };
}

// ---- L1 events that are not VMX instructions ----

function l1Rdmsr(w: World, v: Vcpu, msr: number): Outcome {
  // the VMX capability MSRs as KVM reports them (vmx-msrs.ts)
  if (isVmxCapMsr(msr)) return l1RdmsrVmx(w, v, msr);
  return { k: 'value', value: v.l1Msrs[msr] ?? 0n };
}

function l1Wrmsr(v: Vcpu, msr: number, value: bigint): Outcome {
  if (isVmxCapMsr(msr)) return l1WrmsrVmx();
  v.l1Msrs[msr] = value;
  return OK;
}

/** host.set-msr: KVM_SET_MSRS, host-initiated, for the MSRs the model gives meaning to. */
function hostSetMsr(ctx: Ctx, w: World, e: EventOf<'host.set-msr'>): Outcome {
  const v = vcpuOf(w, e.vcpu);
  if (!v) return ignored('no such vCPU');
  return ctx.profile.ops.do_set_msr(ctx, w, v, e.msr, e.value);
}

/** Tell the paths an L1 store touched these bytes (write tracking of L1 pages). */
function notifyGuestWrite(ctx: Ctx, w: World, gpa: bigint, size: number): void {
  const first = gpaToGfn(gpa);
  const last = gpaToGfn(gpa + BigInt(size - 1));
  for (const a of AREA_IDS) {
    const hook = (ctx.profile.paths[a] as { onGuestWrite?: (c: Ctx, w: World, gfn: number) => void }).onGuestWrite;
    if (hook) for (let g = first; g <= last; g++) hook(ctx, w, g);
  }
}

/** `inv`: the host virtual pages the mmu notifier invalidated (a migration or a zap); null for a memslot change. */
function notifyHostMemory(ctx: Ctx, w: World, inv: HostInvalidation | null): void {
  for (const a of AREA_IDS) {
    const hook = (ctx.profile.paths[a] as { onHostMemory?: (c: Ctx, w: World, inv: HostInvalidation | null) => void }).onHostMemory;
    if (hook) hook(ctx, w, inv);
  }
}

/**
 * L1 posts an interrupt for the L2 on vCPU `target`: a locked OR of the
 * vector's PIR bit, then of ON, into the descriptor at gpa (stores to L1
 * memory), then the notification.
 */
function l1PostedIntr(ctx: Ctx, w: World, e: EventOf<'l1.posted-intr'>): Outcome {
  const pirGpa = e.gpa + BigInt(e.vector >> 3);
  const pir = readGuest(w, pirGpa, 1);
  if (pir === null || readGuest(w, e.gpa + 32n, 1) === null) return ignored(`gpa 0x${e.gpa.toString(16)} is not in a memslot`);
  l1Store(ctx, w, pirGpa, 1, pir | (1n << BigInt(e.vector & 7)));
  l1Store(ctx, w, e.gpa + 32n, 1, readGuest(w, e.gpa + 32n, 1)! | 1n);
  const target = vcpuOf(w, e.target);
  if (target) ctx.profile.ops.vmx_deliver_nested_posted_interrupt(ctx, w, target);
  return OK;
}

function l1Store(ctx: Ctx, w: World, gpa: bigint, size: number, value: bigint): Outcome {
  if (!writeGuest(ctx, w, gpa, size, value)) return ignored(`gpa 0x${gpa.toString(16)} is not in a memslot`);
  notifyGuestWrite(ctx, w, gpa, size);
  return OK;
}

function l1MsrBitmap(ctx: Ctx, w: World, e: EventOf<'l1.msr-bitmap'>): Outcome {
  const bit = msrBitmapBit(e.msr, e.access === 'write');
  if (bit < 0) return ignored(`MSR 0x${e.msr.toString(16)} is outside both bitmap ranges`);
  const gpa = e.gpa + BigInt(bit >> 3);
  const old = readGuest(w, gpa, 1);
  if (old === null) return ignored(`gpa 0x${gpa.toString(16)} is not in a memslot`);
  const mask = 1n << BigInt(bit & 7);
  return l1Store(ctx, w, gpa, 1, e.intercept ? old | mask : old & ~mask);
}

function l1EvmcsWrite(ctx: Ctx, w: World, e: EventOf<'l1.evmcs-write'>): Outcome {
  const f = vmcsFieldByEncoding(e.field);
  if (!f || f.evmcsOffset === null) return ignored(`field 0x${e.field.toString(16)} has no eVMCS member`);
  return l1Store(ctx, w, e.gpa + BigInt(f.evmcsOffset), f.evmcsSize!, e.value);
}

// ---- dispatch ----

function vcpuOf(w: World, i: number): Vcpu {
  return w.vcpus[i];
}

const L2_NOT_RUNNING = (i: number) => ignored(`L2 is not running on vCPU ${i}`);
const L1_NOT_RUNNING = (i: number) => ignored(`L1 is not running on vCPU ${i}: L2 is`);
const NOT_LOADED = (i: number) => ignored(`vCPU ${i} is not loaded (its thread is outside KVM_RUN)`);

/**
 * KVM_REQ_GET_NESTED_STATE_PAGES at a KVM_RUN after KVM_SET_NESTED_STATE
 * (vcpu_enter_guest): the request is consumed whether or not the pages come
 * (kvm_check_request), so a failure is a KVM_EXIT_INTERNAL_ERROR this once
 * and the vCPU runs without them at the next KVM_RUN.
 */
function getNestedStatePages(ctx: Ctx, w: World, v: Vcpu): boolean {
  if (ctx.profile.ops.vmx_get_nested_state_pages(ctx, w, v) === null) {
    // then KVM_REQ_EVENT: a notification that came while the pages were missing (vmx_complete_nested_posted_interrupt)
    if (v.nested.guestMode) ctx.profile.ops.vmx_complete_nested_posted_interrupt(ctx, w, v);
    return true;
  }
  v.nested.nestedStatePagesFailed = true;
  return false;
}

/** The recipe: apply one event to the world in place and return its outcome. */
export function applyEvent(ctx: Ctx, w: World, e: TraceEvent): Outcome {
  const kind = e.kind;
  if (kind.charCodeAt(1) === 0x31 /* l1. */) {
    const v = vcpuOf(w, (e as { vcpu: number }).vcpu);
    if (!v) return ignored('no such vCPU');
    if (v.cpu < 0) return NOT_LOADED(v.id);
    // KVM_RUN after KVM_SET_NESTED_STATE: KVM_REQ_GET_NESTED_STATE_PAGES (nested-state.ts)
    if (v.nested.getNestedStatePages && !getNestedStatePages(ctx, w, v)) return USERSPACE_INTERNAL_ERROR;
    if (v.nested.guestMode) return L1_NOT_RUNNING(v.id);
    const out = applyL1(ctx, w, v, e);
    // a nested VM-entry: MSR 0x140 may have to change for L2 (cpuid-fault)
    if (v.nested.guestMode) cpuidFaultChanged(ctx, w, v);
    if (v.nested.needVmcs12ToShadowSync && !v.nested.guestMode) ctx.profile.ops.nested_sync_vmcs12_to_shadow(ctx, w, v);
    return out;
  }
  if (kind.charCodeAt(1) === 0x32 /* l2. */) {
    const v = vcpuOf(w, (e as { vcpu: number }).vcpu);
    if (!v) return ignored('no such vCPU');
    if (v.cpu < 0) return NOT_LOADED(v.id);
    if (v.nested.getNestedStatePages && !getNestedStatePages(ctx, w, v)) return USERSPACE_INTERNAL_ERROR;
    if (!v.nested.guestMode) return L2_NOT_RUNNING(v.id);
    const out = applyL2(ctx, w, v, e);
    // a nested VM-exit: back to L1's MSR 0x140 (cpuid-fault)
    if (!v.nested.guestMode) cpuidFaultChanged(ctx, w, v);
    if (v.nested.needVmcs12ToShadowSync && !v.nested.guestMode) ctx.profile.ops.nested_sync_vmcs12_to_shadow(ctx, w, v);
    return out;
  }
  return applyHost(ctx, w, e);
}

/**
 * l1.vmcs-ctls-must-be-1: what an L1 does once per VMCS before its own
 * settings (kvm-unit-tests init_vmcs_ctrl, the selftests'
 * init_vmcs_control_fields), as the VMREADs and VMWRITEs it is made of, so
 * every path sees the accesses it would see one by one.
 */
function setControlsMustBe1(ctx: Ctx, w: World, v: Vcpu): Outcome {
  const ops = ctx.profile.ops;
  for (const [field, msr] of MUST_BE_1_CONTROLS) {
    const cur = ops.handle_vmread(ctx, w, v, field);
    if (cur.k !== 'value') return cur;
    const out = ops.handle_vmwrite(ctx, w, v, field, cur.value | (vmxCapMsrGuest(w, v, msr) & 0xffffffffn));
    if (out.k !== 'ok') return out;
  }
  return OK;
}

/**
 * l1.evmcs-ctls-must-be-1: the same set-up by an L1 that uses an
 * enlightened VMCS. Such an L1 stores eVMCS members and never VMWRITEs
 * (Hyper-V's TLFS; KVM fails VMWRITE while an eVMCS is current), so each
 * control is a load and a store of its member; the bits are those L1's
 * RDMSR shows (nested_evmcs_filter_control_msr).
 */
function evmcsSetControlsMustBe1(ctx: Ctx, w: World, v: Vcpu, gpa: bigint): Outcome {
  for (const [field, msr] of MUST_BE_1_CONTROLS) {
    const f = vmcsFieldByEncoding(field)!;
    const at = gpa + BigInt(f.evmcsOffset!);
    const cur = readGuest(w, at, f.evmcsSize!);
    if (cur === null) return ignored(`gpa 0x${at.toString(16)} is not in a memslot`);
    const out = l1Store(ctx, w, at, f.evmcsSize!, cur | (vmxCapMsrGuest(w, v, msr) & 0xffffffffn));
    if (out.k !== 'ok') return out;
  }
  return OK;
}

function applyL1(ctx: Ctx, w: World, v: Vcpu, e: TraceEvent): Outcome {
  const ops = ctx.profile.ops;
  switch (e.kind) {
    case 'l1.vmxon':
      return ops.handle_vmxon(ctx, w, v, e.gpa);
    case 'l1.vmxoff':
      return ops.handle_vmxoff(ctx, w, v);
    case 'l1.vmptrld':
      return ops.handle_vmptrld(ctx, w, v, e.gpa);
    case 'l1.vmclear':
      return ops.handle_vmclear(ctx, w, v, e.gpa);
    case 'l1.vmptrst':
      return ops.handle_vmptrst(ctx, w, v);
    case 'l1.vmread':
      return ops.handle_vmread(ctx, w, v, e.field);
    case 'l1.vmwrite':
      return ops.handle_vmwrite(ctx, w, v, e.field, e.value);
    case 'l1.vmcs-ctls-must-be-1':
      return setControlsMustBe1(ctx, w, v);
    case 'l1.evmcs-ctls-must-be-1':
      return evmcsSetControlsMustBe1(ctx, w, v, e.gpa);
    case 'l1.vmlaunch':
      return ops.nested_vmx_run(ctx, w, v, true);
    case 'l1.vmresume':
      return ops.nested_vmx_run(ctx, w, v, false);
    case 'l1.rdmsr':
      return isCpuidFaultMsr(e.msr) ? guestRdmsr(w, v, e.msr) : l1Rdmsr(w, v, e.msr);
    case 'l1.wrmsr':
      return isCpuidFaultMsr(e.msr) ? guestWrmsr(ctx, w, v, e.msr, e.value) : l1Wrmsr(v, e.msr, e.value);
    case 'l1.cpuid':
      return l1Cpuid(ctx, w, v, e.cpl, () => cpuidResult(w.config, e.leaf, e.subleaf));
    case 'l1.rsm':
      return l1Rsm(ctx, w, v);
    case 'l1.write':
      return l1Store(ctx, w, e.gpa, e.size, e.value);
    case 'l1.read': {
      const val = readGuest(w, e.gpa, e.size);
      return val === null ? ignored(`gpa 0x${e.gpa.toString(16)} is not in a memslot`) : { k: 'value', value: val };
    }
    case 'l1.msr-bitmap':
      return l1MsrBitmap(ctx, w, e);
    case 'l1.posted-intr':
      return l1PostedIntr(ctx, w, e);
    case 'l1.evmcs-ptr':
      if (!w.config.evmcs) return ignored('eVMCS is not exposed to L1 (config.evmcs is off)');
      v.nested.vpAssistEvmcs = e.gpa;
      return OK;
    case 'l1.evmcs-write':
      return l1EvmcsWrite(ctx, w, e);
    case 'l1.evmcs-clean':
      return l1Store(ctx, w, e.gpa + BigInt(EVMCS.HV_CLEAN_FIELDS_OFFSET), 4, BigInt(e.value));
    case 'l1.evmcs-control':
      return l1Store(ctx, w, e.gpa + BigInt(EVMCS.HV_ENLIGHTENMENTS_CONTROL_OFFSET), 4, BigInt(e.value));
    case 'l1.vmread-wide':
      return handleVmreadWide(ctx, w, v, e.field);
    case 'l1.vmwrite-wide':
      return handleVmwriteWide(ctx, w, v, e.field, e.value);
    case 'l1.invept':
      return handleInvept(ctx, w, v, e.type, e.eptp);
    case 'l1.invvpid':
      return handleInvvpid(ctx, w, v, e.type, e.vpid, e.gla);
    default:
      return ignored(`unhandled L1 event ${e.kind}`);
  }
}

function applyL2(ctx: Ctx, w: World, v: Vcpu, e: TraceEvent): Outcome {
  const ops = ctx.profile.ops;
  switch (e.kind) {
    case 'l2.rdmsr':
      return ops.l2_rdmsr(ctx, w, v, e.msr);
    case 'l2.wrmsr':
      return ops.l2_wrmsr(ctx, w, v, e.msr, e.value);
    case 'l2.cpuid':
      return ops.l2_cpuid(ctx, w, v, e.cpl);
    case 'l2.vmcall':
      return ops.nested_vmx_reflect_vmexit(ctx, w, v, EXIT_REASON.VMCALL, 0n);
    case 'l2.vmread':
      return ops.l2_vmread(ctx, w, v, e.field);
    case 'l2.vmwrite':
      return ops.l2_vmwrite(ctx, w, v, e.field, e.value);
    case 'l2.apic-read':
      return ops.l2_apic_access(ctx, w, v, e.offset, false, 0n);
    case 'l2.apic-write':
      return ops.l2_apic_access(ctx, w, v, e.offset, true, BigInt(e.value));
    default:
      return ignored(`unhandled L2 event ${e.kind}`);
  }
}

/** err: an error string, null (a memslot change) or the host virtual page the notifier invalidated (a migration or zap). */
function hostResult(ctx: Ctx, w: World, err: string | null | number): Outcome {
  if (typeof err === 'string') return ignored(err);
  notifyHostMemory(ctx, w, typeof err === 'number' ? { start: err, end: err + 1 } : null);
  return OK;
}

/** Does the selected guest-pages path hold a long-term pin on a host page (then it cannot migrate)? */
function pinnedBy(ctx: Ctx, w: World): ((hva: number) => boolean) | undefined {
  const pins = ctx.profile.paths['guest-pages'].pins;
  return pins ? (hva) => pins(w, hva) : undefined;
}

function applyHost(ctx: Ctx, w: World, e: TraceEvent): Outcome {
  switch (e.kind) {
    case 'host.memslot-create':
      return hostResult(ctx, w, memslotCreate(w.mem, e.slot, Number(e.gfn), e.npages, e.flags));
    case 'host.memslot-move':
      return hostResult(ctx, w, memslotMove(w.mem, e.slot, Number(e.gfn)));
    case 'host.memslot-delete':
      return hostResult(ctx, w, memslotDelete(w.mem, e.slot));
    case 'host.memslot-flags':
      return hostResult(ctx, w, memslotFlags(w.mem, e.slot, e.flags));
    case 'host.page-migrate':
      return hostResult(ctx, w, pageMigrate(ctx, w.mem, Number(e.gfn), pinnedBy(ctx, w)));
    case 'host.memslot-resize':
      return hostResult(ctx, w, memslotResize(w.mem, e.slot, e.npages));
    case 'host.page-zap':
      return hostResult(ctx, w, pageZap(w.mem, Number(e.gfn)));
    case 'host.mmu-invalidate-start': {
      // invalidate_range_start: the notifier's callbacks run now (gfn_to_pfn_cache_invalidate_start)
      const r = mmuInvalidateStart(w.mem, Number(e.gfn), e.npages);
      if (typeof r === 'string') return ignored(r);
      notifyHostMemory(ctx, w, r);
      return OK;
    }
    case 'host.mmu-invalidate-end': {
      const r = mmuInvalidateEnd(ctx, w.mem, pinnedBy(ctx, w));
      if (typeof r === 'string') return ignored(r);
      // the paths hear that the pages moved (a cache refreshed inside the window is due for its refresh now)
      notifyHostMemory(ctx, w, { start: r.start, end: r.end, ended: true });
      return OK;
    }
    case 'host.vcpu-load':
      return hostVcpuLoad(ctx, w, e.vcpu, e.cpu);
    case 'host.vcpu-put':
      return hostVcpuPut(ctx, w, e.vcpu);
    case 'host.msr-intercept': {
      const v = vcpuOf(w, e.vcpu);
      const write = e.access === 'write';
      // While L2 runs, vmcs02 is loaded: the vmcs01 change waits for the next nested VM-exit.
      if (v.nested.guestMode) v.pendingL01.push({ msr: e.msr, write, intercept: e.intercept });
      else ctx.profile.ops.vmx_set_intercept_for_msr(ctx, w, v, e.msr, write, e.intercept);
      return OK;
    }
    case 'host.task-cpuid-fault':
      return hostTaskCpuidFault(ctx, w, e.task, e.enable);
    case 'host.task-cpuid':
      return hostTaskCpuid(ctx, w, e.task, e.cpu, e.cpl, () => cpuidResult(w.config, 0, 0));
    case 'host.vcpu-thread-cpuid-fault':
      return hostVcpuThreadCpuidFault(ctx, w, e.vcpu, e.enable);
    case 'host.smi':
      return hostSmi(ctx, w, e.vcpu);
    case 'host.platform-info': {
      const v = vcpuOf(w, e.vcpu);
      return v ? ctx.profile.ops.do_set_msr(ctx, w, v, MSR.MSR_PLATFORM_INFO, e.value) : ignored('no such vCPU');
    }
    case 'host.set-msr':
      return hostSetMsr(ctx, w, e);
    case 'host.guest-write': {
      // no L1 store: nothing is write-tracked, no path hears of it
      const err = hostGuestWrite(ctx, w, e.gpa, e.size, e.value);
      return err === null ? OK : ignored(err);
    }
    case 'host.guest-copy': {
      const err = hostGuestCopy(ctx, w, e.dst, e.src, e.bytes);
      return err === null ? OK : ignored(err);
    }
    case 'host.memslot-readd':
      return hostResult(ctx, w, memslotReadd(w.mem, e.slot));
    case 'host.migrate':
      return hostMigrate(ctx, w, vcpuOf(w, e.vcpu));
    case 'host.get-nested-state':
      return hostGetNestedState(ctx, w, vcpuOf(w, e.vcpu));
    case 'host.set-nested-state':
      return hostSetNestedState(ctx, w, vcpuOf(w, e.vcpu), { format: e.format, flags: e.flags, vmxon: e.vmxon, vmcs12: e.vmcs12, smm: e.smm, size: e.size });
    case 'host.nested-state-field':
      return hostNestedStateField(vcpuOf(w, e.vcpu), e.shadow, e.field, e.value);
    case 'host.nested-state-revision':
      return hostNestedStateRevision(vcpuOf(w, e.vcpu), e.shadow, e.value);
    default:
      return ignored(`unhandled host event ${e.kind}`);
  }
}

// ---- the two speeds ----

export interface StepResult {
  state: World;
  outcome: Outcome;
  cost: Costs;
}

/** Immutable step: a new state (structurally shared with the old one), the outcome and this event's costs. */
export function step(state: World, e: TraceEvent, profile: Profile): StepResult {
  const cost = newCosts();
  let outcome: Outcome = OK;
  const ctx: Ctx = { inPlace: false, fresh: new WeakSet(), profile, cost };
  const next = loadImmer().produce(state, (draft) => {
    outcome = applyEvent(ctx, draft as World, e);
  });
  return { state: next, outcome, cost };
}

/**
 * The fast path: a private mutable working copy. `apply` runs the recipe in
 * place; `snapshot` returns an independent deep copy (a checkpoint), and
 * `restore` continues from one.
 */
export class Replayer {
  private w: World;
  private readonly ctx: Ctx;
  /** number of events applied so far */
  index = 0;

  constructor(
    start: World,
    readonly profile: Profile,
    readonly cost: Costs = newCosts(),
    /** internal: `start` is a world nobody else holds (freshWorkingState), used as it is */
    owned = false,
  ) {
    this.w = owned ? start : cloneWorld(start);
    this.ctx = { inPlace: true, fresh: null, profile, cost };
  }

  /**
   * A replayer from the world before the first event of a trace. The world
   * is built for it and used in place (no copy): what a fuzz run does twice
   * per trace.
   */
  static fromHeader(h: TraceHeader, profile: Profile, cost: Costs = newCosts()): Replayer {
    return new Replayer(freshWorkingState(h, profile), profile, cost, true);
  }

  apply(e: TraceEvent): Outcome {
    this.index++;
    return applyEvent(this.ctx, this.w, e);
  }

  snapshot(): World {
    return cloneWorld(this.w);
  }

  restore(w: World, index: number): void {
    this.w = cloneWorld(w);
    this.index = index;
  }

  /** A read-only look at the working state (do not keep it: it changes with the next event). */
  peek(): World {
    return this.w;
  }
}

