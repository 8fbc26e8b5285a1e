/**
 * The guest-pages machinery every path shares: which L1 pages a nested guest
 * uses and where vmcs12 says they are, and the places L0 and the CPU touch
 * them. Every access asks the selected path for the host page it uses now
 * (`l0Page` for L0, `hwPfn` for what vmcs02 hands to the CPU), so a path that
 * keeps a stale page shows up as different observations.
 *
 * The pages (arch/x86/kvm/vmx/nested.c):
 * - L1's MSR bitmap: read by nested_vmx_prepare_msr_bitmap (the merge) and
 *   by nested_vmx_exit_handled_msr (the exit-time lookup);
 * - the eVMCS: read and written by L0 (copy_enlightened_to_vmcs12,
 *   copy_vmcs12_to_enlightened, the clean fields);
 * - the APIC-access page, the virtual-APIC page and the posted-interrupt
 *   descriptor: handed to the CPU by host address in vmcs02
 *   (nested_get_vmcs12_pages); L0 also reads the virtual-APIC page and
 *   reads and writes the descriptor (vmx_complete_nested_posted_interrupt).
 */
import { CPU_BASED, PIN_BASED, SECONDARY_EXEC, VMCS } from '@nvx/arch';
import type { Ctx } from './ctx';
import { gfnToHva, gpaToGfn, guestPage, hvaToPfnFault, pfnPage, readLE, writablePfn, writeLE } from './memory';
import type { Vcpu, World } from './state';
import { vmcs12Get, vmcs12Get32 } from './vmcs12';
import type { GuestPagesPath } from './paths';
/** The L1 pages L0 uses for a nested guest: the index of each in a path's per-page state, and its bit in `inUse` masks. */
export const NESTED_PAGE = { MSR_BITMAP: 0, EVMCS: 1, APIC_ACCESS: 2, VAPIC: 3, PI_DESC: 4 } as const;
export type NestedPage = (typeof NESTED_PAGE)[keyof typeof NESTED_PAGE];

/** How L0 touches a nested page: READ and WRITE through its mapping; PEEK a one-off read (kvm_vcpu_read_guest). */
export const PAGE_ACCESS = { READ: 0, WRITE: 1, PEEK: 2 } as const;
export type PageAccess = (typeof PAGE_ACCESS)[keyof typeof PAGE_ACCESS];
export const PAGE_NAMES: readonly string[] = ['MSR bitmap', 'eVMCS', 'APIC-access page', 'virtual-APIC page', 'posted-interrupt descriptor'];

/** The APIC pages the CPU uses through vmcs02. */
export const APIC_PAGES: readonly NestedPage[] = [NESTED_PAGE.APIC_ACCESS, NESTED_PAGE.VAPIC, NESTED_PAGE.PI_DESC];

const PAGE_MASK = ~0xfffn;
const APIC_VIRT = SECONDARY_EXEC.VIRTUALIZE_X2APIC_MODE | SECONDARY_EXEC.APIC_REGISTER_VIRT | SECONDARY_EXEC.VIRTUAL_INTR_DELIVERY;

function pages(ctx: Ctx): GuestPagesPath {
  return ctx.profile.paths['guest-pages'];
}

/** The page-aligned guest address vmcs12 (or the VP assist page, for the eVMCS) names for page p. */
export function nestedPageGpa(v: Vcpu, p: NestedPage): bigint {
  const n = v.nested;
  switch (p) {
    case NESTED_PAGE.MSR_BITMAP:
      return vmcs12Get(n, VMCS.MSR_BITMAP) & PAGE_MASK;
    case NESTED_PAGE.EVMCS:
      return n.hvEvmcsVmptr;
    case NESTED_PAGE.APIC_ACCESS:
      return vmcs12Get(n, VMCS.APIC_ACCESS_ADDR) & PAGE_MASK;
    case NESTED_PAGE.VAPIC:
      return vmcs12Get(n, VMCS.VIRTUAL_APIC_PAGE_ADDR) & PAGE_MASK;
    default:
      return vmcs12Get(n, VMCS.POSTED_INTR_DESC_ADDR) & PAGE_MASK;
  }
}

/** The APIC pages vmcs12 uses (bit 1 << page), as nested_get_vmcs12_pages decides which to map. */
export function apicPagesInUse(v: Vcpu): number {
  const n = v.nested;
  const cpu = vmcs12Get32(n, VMCS.CPU_BASED_VM_EXEC_CONTROL);
  let m = 0;
  if (cpu & CPU_BASED.ACTIVATE_SECONDARY_CONTROLS && vmcs12Get32(n, VMCS.SECONDARY_VM_EXEC_CONTROL) & SECONDARY_EXEC.VIRTUALIZE_APIC_ACCESSES) m |= 1 << NESTED_PAGE.APIC_ACCESS;
  // KVM maps the virtual-APIC page for a TPR shadow; APIC-register virtualization, virtual-interrupt
  // delivery and x2APIC virtualization need it too (KVM refuses them without a TPR shadow).
  if (cpu & CPU_BASED.TPR_SHADOW || (cpu & CPU_BASED.ACTIVATE_SECONDARY_CONTROLS && vmcs12Get32(n, VMCS.SECONDARY_VM_EXEC_CONTROL) & APIC_VIRT)) m |= 1 << NESTED_PAGE.VAPIC;
  if (vmcs12Get32(n, VMCS.PIN_BASED_VM_EXEC_CONTROL) & PIN_BASED.POSTED_INTR) m |= 1 << NESTED_PAGE.PI_DESC;
  return m;
}

// ---- what the reference sees: the current backing of a guest frame

/** The host pfn backing gpa now, faulting the page in; -1 when no memslot covers it. */
export function currentPfn(w: World, gpa: bigint): number {
  const hva = gfnToHva(w.mem, gpaToGfn(gpa));
  return hva < 0 ? -1 : hvaToPfnFault(w.mem, hva);
}

/** The current page at gpa (fresh translation): for reading (never faults in), or writable (faults in). */
export function currentPage(ctx: Ctx, w: World, gpa: bigint, access: PageAccess): Uint8Array | null {
  if (access !== PAGE_ACCESS.WRITE) return guestPage(w.mem, gpaToGfn(gpa));
  const pfn = currentPfn(w, gpa);
  return pfn < 0 ? null : writablePfn(ctx, w.mem, pfn);
}

/** The bytes of host page pfn, writable when access is WRITE; null for pfn -1. */
export function pfnBytes(ctx: Ctx, w: World, pfn: number, access: PageAccess): Uint8Array | null {
  if (pfn < 0) return null;
  return access === PAGE_ACCESS.WRITE ? writablePfn(ctx, w.mem, pfn) : pfnPage(w.mem, pfn);
}

/** For divergence reports: what backs gpa now. */
export function describeBacking(w: World, gpa: bigint): string {
  const hva = gfnToHva(w.mem, gpaToGfn(gpa));
  if (hva < 0) return 'no memslot';
  const pfn = w.mem.hvaToPfn[hva];
  return pfn === undefined ? 'not present (faults in as a new page)' : `pfn 0x${pfn.toString(16)}`;
}

// ---- L0's accesses

/** L0 reads nested page p of v through the path (the page vmcs12 names now). */
export function l0ReadPage(ctx: Ctx, w: World, v: Vcpu, p: NestedPage): Uint8Array | null {
  return pages(ctx).l0Page(ctx, w, v, p, nestedPageGpa(v, p), PAGE_ACCESS.READ);
}

/** L0 writes nested page p of v through the path: the writable bytes, or null. */
export function l0WritePage(ctx: Ctx, w: World, v: Vcpu, p: NestedPage): Uint8Array | null {
  return pages(ctx).l0Page(ctx, w, v, p, nestedPageGpa(v, p), PAGE_ACCESS.WRITE);
}

/** A one-off read by L0 (kvm_vcpu_read_guest; the exit-time MSR-bitmap lookup). */
export function l0PeekPage(ctx: Ctx, w: World, v: Vcpu, p: NestedPage): Uint8Array | null {
  return pages(ctx).l0Page(ctx, w, v, p, nestedPageGpa(v, p), PAGE_ACCESS.PEEK);
}

// ---- the CPU's accesses through vmcs02

/** The page the CPU uses for APIC page p while L2 runs (vmcs02's host address), or null. */
export function hwPage(ctx: Ctx, w: World, v: Vcpu, p: NestedPage, access: PageAccess): Uint8Array | null {
  return pfnBytes(ctx, w, pages(ctx).hwPfn(ctx, w, v, p), access);
}

/** A 32-bit virtual-APIC register as the CPU sees it (all ones when vmcs02 has no usable page). */
export function vapicHwRead(ctx: Ctx, w: World, v: Vcpu, off: number): bigint {
  const page = hwPage(ctx, w, v, NESTED_PAGE.VAPIC, PAGE_ACCESS.READ);
  return page ? readLE(page, vapicOffset(v, off), 4) : 0xffffffffn;
}

export function vapicHwWrite(ctx: Ctx, w: World, v: Vcpu, off: number, value: bigint): void {
  const page = hwPage(ctx, w, v, NESTED_PAGE.VAPIC, PAGE_ACCESS.WRITE);
  if (page) writeLE(page, vapicOffset(v, off), 4, value & 0xffffffffn);
}

/** A virtual-APIC register as L0 reads it (emulating an access L1 lets through). */
export function vapicL0Read(ctx: Ctx, w: World, v: Vcpu, off: number): bigint {
  const page = l0ReadPage(ctx, w, v, NESTED_PAGE.VAPIC);
  return page ? readLE(page, vapicOffset(v, off), 4) : 0xffffffffn;
}

export function vapicL0Write(ctx: Ctx, w: World, v: Vcpu, off: number, value: bigint): void {
  const page = l0WritePage(ctx, w, v, NESTED_PAGE.VAPIC);
  if (page) writeLE(page, vapicOffset(v, off), 4, value & 0xffffffffn);
}

/** Offsets within the page: VIRTUAL_APIC_PAGE_ADDR is page aligned (checked at entry), so only the register offset counts. */
function vapicOffset(_v: Vcpu, off: number): number {
  return off & 0xffc;
}

// ---- nested VM-entry

/**
 * nested_get_vmcs12_pages: vmcs02's MSR bitmap (nested_vmx_prepare_msr_bitmap),
 * then the APIC pages: every page vmcs12 uses must be backed by a memslot.
 * When one is not, KVM (Linux v6.13) fails the entry in its own way per page
 * (the caller, nested_vmx_enter_non_root_mode, turns the page into the
 * outcome): the APIC-access page is KVM_EXIT_INTERNAL_ERROR to userspace
 * (vmx_apic_access_test.c), the virtual-APIC page gets an illegal address in
 * vmcs02 so the hardware entry fails, the descriptor turns posted interrupts
 * off in vmcs02 until L0 touches it. Otherwise the path makes the pages
 * usable and puts their host addresses in vmcs02. Returns the first unbacked
 * page, or null.
 */
export function nestedGetVmcs12Pages(ctx: Ctx, w: World, v: Vcpu): { page: NestedPage; why: string } | null {
  // nested_vmx_prepare_msr_bitmap (KVM calls it last; the model first: the APIC-page failure below
  // is a userspace exit, after which the run does not go on)
  v.nested.vmcs02UseMsrBitmaps = ctx.profile.ops.nested_vmx_prepare_msr_bitmap(ctx, w, v);
  const inUse = apicPagesInUse(v);
  for (const p of APIC_PAGES) {
    if (!(inUse & (1 << p))) continue;
    const gpa = nestedPageGpa(v, p);
    if (gfnToHva(w.mem, gpaToGfn(gpa)) < 0) return { page: p, why: `the ${PAGE_NAMES[p]} (gpa 0x${gpa.toString(16)}) is not in a memslot` };
  }
  pages(ctx).getVmcs12Pages(ctx, w, v, inUse);
  return null;
}

/** After a successful entry: a notification L1 received for the descriptor while L2 did not run is processed by L0. */
export function completePendingPostedInterrupt(ctx: Ctx, w: World, v: Vcpu): void {
  const n = v.nested;
  if (!n.piNotificationPending) return;
  n.piNotificationPending = false;
  if (!(apicPagesInUse(v) & (1 << NESTED_PAGE.PI_DESC))) return;
  // vmx_complete_nested_posted_interrupt: L0 through its own mapping of both pages
  const seen = l0ReadPage(ctx, w, v, NESTED_PAGE.PI_DESC);
  const off = nestedPageOffset(ctx, w, v, NESTED_PAGE.PI_DESC);
  if (!seen || !(seen[off + PI_ON_BYTE] & 1)) return;
  const vapic = apicPagesInUse(v) & (1 << NESTED_PAGE.VAPIC) ? l0WritePage(ctx, w, v, NESTED_PAGE.VAPIC) : null;
  processPostedInterrupts(l0WritePage(ctx, w, v, NESTED_PAGE.PI_DESC), off, vapic);
}

// ---- posted interrupts

/** The descriptor's offset in its page (POSTED_INTR_DESC_ADDR is 64-byte aligned). */
export function piDescOffset(v: Vcpu): number {
  return Number(vmcs12Get(v.nested, VMCS.POSTED_INTR_DESC_ADDR) & 0xfc0n);
}

/**
 * Where the structure of nested page p sits in the page the path maps: the
 * path's own record of it when it keeps one (a gfn-to-pfn cache keeps
 * offset_in_page of the gpa it was refreshed to), else vmcs12's (only the
 * posted-interrupt descriptor is not page aligned). Read after the page.
 */
export function nestedPageOffset(ctx: Ctx, w: World, v: Vcpu, p: NestedPage): number {
  const own = pages(ctx).pageOffset;
  if (own) return own(ctx, w, v, p);
  return p === NESTED_PAGE.PI_DESC ? piDescOffset(v) : 0;
}

/** PI descriptor layout (SDM 29.6): PIR bits 255:0, ON at bit 256. */
const PI_ON_BYTE = 32;
/** Virtual-APIC page: IRR at 0x200, one 32-bit word every 16 bytes. */
const VAPIC_IRR = 0x200;

/**
 * Posted-interrupt processing (SDM 29.6): if ON is set, clear it and move
 * the PIR into the virtual-APIC page's IRR. `desc` or `vapic` null: the page
 * cannot be reached, nothing happens.
 */
export function processPostedInterrupts(desc: Uint8Array | null, off: number, vapic: Uint8Array | null): void {
  if (!desc || !vapic || !(desc[off + PI_ON_BYTE] & 1)) return;
  desc[off + PI_ON_BYTE] &= ~1;
  for (let i = 0; i < 8; i++) {
    const word = off + 4 * i;
    const pir = desc[word] | (desc[word + 1] << 8) | (desc[word + 2] << 16) | (desc[word + 3] << 24);
    if (!pir) continue;
    const irr = VAPIC_IRR + 0x10 * i;
    vapic[irr] |= pir & 0xff;
    vapic[irr + 1] |= (pir >>> 8) & 0xff;
    vapic[irr + 2] |= (pir >>> 16) & 0xff;
    vapic[irr + 3] |= (pir >>> 24) & 0xff;
    desc[word] = desc[word + 1] = desc[word + 2] = desc[word + 3] = 0;
  }
}

/**
 * The notification of a posted interrupt reaches `target`. With L2 running
 * and posted-interrupt processing on in vmcs12, the CPU processes the
 * descriptor vmcs02 names, at the host addresses vmcs02 holds. Otherwise L1
 * takes the notification as an ordinary interrupt, which KVM completes for
 * L2 at the next nested VM-entry (or, for a vCPU restored into L2, at its
 * next KVM_RUN).
 */
export function notifyPostedInterrupt(ctx: Ctx, w: World, target: Vcpu): void {
  const n = target.nested;
  // Restored into L2 and not run since (KVM_REQ_GET_NESTED_STATE_PAGES pending): vmcs02 has no
  // descriptor yet and no CPU runs L2, so vmx_deliver_nested_posted_interrupt only sets pi_pending
  // and kicks; L0 completes it at the next KVM_RUN, once the pages are in.
  if (!n.guestMode || n.getNestedStatePages) {
    if (n.vmxon) n.piNotificationPending = true;
    return;
  }
  const inUse = apicPagesInUse(target);
  if (!(inUse & (1 << NESTED_PAGE.PI_DESC))) return;
  const seen = hwPage(ctx, w, target, NESTED_PAGE.PI_DESC, PAGE_ACCESS.READ);
  // vmcs02's descriptor address: the page's host address plus the offset the path keeps
  const off = nestedPageOffset(ctx, w, target, NESTED_PAGE.PI_DESC);
  if (!seen || !(seen[off + PI_ON_BYTE] & 1)) return;
  const vapic = inUse & (1 << NESTED_PAGE.VAPIC) ? hwPage(ctx, w, target, NESTED_PAGE.VAPIC, PAGE_ACCESS.WRITE) : null;
  processPostedInterrupts(hwPage(ctx, w, target, NESTED_PAGE.PI_DESC, PAGE_ACCESS.WRITE), off, vapic);
}

// ---- L2's accesses to its APIC page

/**
 * Where an L2 access to its APIC page goes. The access reaches the host page
 * backing the APIC-access gfn now (KVM keeps its EPT up to date); the CPU
 * virtualizes it only if that is the page vmcs02's APIC_ACCESS_ADDR names,
 * else it is a plain memory access. Returns 'virtualized', the current page
 * (for a plain access), or null when no memslot covers the gfn.
 */
export function apicAccessTarget(ctx: Ctx, w: World, v: Vcpu): 'virtualized' | number | null {
  const cur = currentPfn(w, nestedPageGpa(v, NESTED_PAGE.APIC_ACCESS));
  if (cur < 0) return null;
  return pages(ctx).hwPfn(ctx, w, v, NESTED_PAGE.APIC_ACCESS) === cur ? 'virtualized' : cur;
}
