/**
 * Stable state hashes and the architectural view of a world.
 *
 * `stateHash` covers everything (path-private state included): the same
 * trace under the same profile gives the same hash, in one process or two.
 * `archView` keeps only what L1, L2 or the host could read (guest memory by
 * guest address, vmcs12 fields, MSRs, L0's own intercepts), so two profiles
 * can be compared; `diffArch` lists the differences.
 */
import { createHash } from 'node:crypto';
import { VMCS_FIELDS, msrName } from '@nvx/arch';
import { INVALID_GPA, VMCS12_SLOT_COUNT } from '@nvx/arch';
import type { ShadowVmcsState } from './paths';
import { gfnToHva } from './memory';
import type { Memory, Memslot, Vcpu, World } from './state';

/** vmcs12 as L1 sees it: the shadowed fields from the shadow VMCS while L1 runs with shadowing on. */
export function vmcs12AsL1Sees(v: Vcpu): BigUint64Array {
  const n = v.nested;
  const s = v.areas['shadow-vmcs'] as ShadowVmcsState | undefined;
  if (!s || !s.active || n.guestMode || n.currentVmptr === INVALID_GPA) return n.vmcs12;
  const out = n.vmcs12.slice();
  for (const slot of s.readSlots) out[slot] = s.shadow[slot];
  return out;
}

function canon(v: unknown, out: string[]): void {
  if (v === null || v === undefined) out.push('n');
  else if (typeof v === 'bigint') out.push(`b${v.toString(16)}`);
  else if (typeof v === 'number' || typeof v === 'boolean') out.push(String(v));
  else if (typeof v === 'string') out.push(JSON.stringify(v));
  else if (ArrayBuffer.isView(v)) out.push(`x${Buffer.from((v as Uint8Array).buffer, (v as Uint8Array).byteOffset, (v as Uint8Array).byteLength).toString('base64')}`);
  else if (Array.isArray(v)) {
    out.push('[');
    for (const x of v) canon(x, out);
    out.push(']');
  } else {
    out.push('{');
    for (const k of Object.keys(v as object).sort()) {
      out.push(JSON.stringify(k));
      canon((v as Record<string, unknown>)[k], out);
    }
    out.push('}');
  }
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export function stateHash(w: World): string {
  const out: string[] = [];
  // VM-wide path state only when a path keeps some (the hash of a world without any is unchanged)
  canon(w.areas && Object.keys(w.areas).length ? { mem: w.mem, vcpus: w.vcpus, areas: w.areas } : { mem: w.mem, vcpus: w.vcpus }, out);
  // physical CPUs and host tasks (cpuid-fault)
  canon(w.host, out);
  return sha256(out.join(','));
}

/**
 * The frames of memslot `s` (as offsets from its base, ascending) that can
 * hold anything but zeros: those whose host page has contents. Walking only
 * these instead of every frame gives the same view (the others read as
 * zeros) and keeps a checkpoint from scanning the whole guest. When memslots
 * overlap in guest-physical space (only a trace's initial configuration can
 * do that) every frame is walked.
 */
function framesWithContents(mem: Memory, s: Memslot): number[] {
  const slots = mem.slots;
  const disjoint = slots.every((x, i) => i === 0 || slots[i - 1].gfn + slots[i - 1].npages <= x.gfn);
  if (!disjoint) return Array.from({ length: s.npages }, (_, i) => i);
  const out: number[] = [];
  for (const k of Object.keys(mem.hvaToPfn)) {
    const hva = Number(k);
    if (hva >= s.hva && hva < s.hva + s.npages && mem.pages[mem.hvaToPfn[hva]] !== undefined) out.push(hva - s.hva);
  }
  return out.sort((a, b) => a - b);
}

/** Flat map of architectural facts: key -> printable value. */
export function archView(w: World): Map<string, string> {
  const m = new Map<string, string>();
  const hex = (v: bigint | number) => '0x' + v.toString(16);
  // Guest memory as L1 sees it through the memslots (pages that are all zero are left out).
  for (const s of w.mem.slots) {
    for (const i of framesWithContents(w.mem, s)) {
      // guestPage without its shared zero page: a frame the host has no contents for reads as zeros.
      const hva = gfnToHva(w.mem, s.gfn + i);
      const pfn = hva < 0 ? undefined : w.mem.hvaToPfn[hva];
      const page = pfn === undefined ? undefined : w.mem.pages[pfn];
      if (!page || page.every((b) => b === 0)) continue;
      m.set(`memory gfn ${hex(s.gfn + i)}`, sha256(Buffer.from(page).toString('hex')).slice(0, 16));
    }
    m.set(`memslot ${s.slot}`, `gfn ${hex(s.gfn)} npages ${s.npages} flags ${s.flags}`);
  }
  for (const v of w.vcpus) {
    const p = `vcpu ${v.id} `;
    const n = v.nested;
    m.set(p + 'vmxon', String(n.vmxon));
    m.set(p + 'current_vmptr', hex(n.currentVmptr));
    m.set(p + 'hv_evmcs_vmptr', hex(n.hvEvmcsVmptr));
    m.set(p + 'guest mode', String(n.guestMode));
    m.set(p + 'launch_state', String(n.launched));
    // vmcs12 as L1 would read it: shadowed fields from the shadow VMCS while L1 runs with shadowing on
    const vmcs12 = vmcs12AsL1Sees(v);
    for (const f of VMCS_FIELDS) {
      if (f.isHigh) continue;
      const val = vmcs12[f.slot];
      if (val !== 0n) m.set(p + `vmcs12 ${f.name}`, hex(val));
    }
    for (const [k, val] of Object.entries(v.l1Msrs)) m.set(p + `L1 ${msrName(Number(k))}`, hex(val));
    for (const [k, val] of Object.entries(v.l2Msrs)) m.set(p + `L2 ${msrName(Number(k))}`, hex(val));
    m.set(p + 'vmcs01 MSR bitmap', sha256(Buffer.from(v.vmcs01MsrBitmap).toString('hex')).slice(0, 16));
    // CPUID faulting as the guest sees it (MSR_PLATFORM_INFO, MISC_FEATURES_ENABLES are the vCPU's, shared by L1 and L2)
    m.set(p + 'MSR_PLATFORM_INFO', hex(v.cpuidFault.platformInfo));
    m.set(p + 'MSR_MISC_FEATURES_ENABLES', hex(v.cpuidFault.miscFeaturesEnables));
    if (v.cpuidFault.smm) m.set(p + 'smm', 'true');
  }
  // MSR 0x140 as the host sees it: on every CPU no vCPU is loaded on (a loaded vCPU's CPU holds what its path installs)
  if (w.host) {
    w.host.pcpus.forEach((c, i) => {
      if (w.vcpus.some((v) => v.cpu === i)) return;
      const name = i < w.config.pcpus ? `cpu ${i}` : `vcpu ${i - w.config.pcpus}'s own cpu`;
      m.set(`${name} MSR_MISC_FEATURES_ENABLES`, hex(c.miscFeaturesEnables));
    });
  }
  return m;
}

// ---- the fast comparison (agrees with archHash: check/test/minimize.test.ts) ----

/** The shadow-vmcs paths' private state as far as the comparison reads it. */
type ShadowState = { active?: boolean; shadow?: BigUint64Array; readSlots?: number[] };

/** The shadow VMCS L1 reads vmcs12 through right now (VMCS shadowing on, L1 running, a current vmcs12), if any. */
function activeShadow(v: Vcpu): ShadowState | null {
  const n = v.nested;
  const s = v.areas['shadow-vmcs'] as ShadowState | undefined;
  return s && s.active && !n.guestMode && n.currentVmptr !== INVALID_GPA && s.readSlots && s.shadow ? s : null;
}

/**
 * The slots of vmcs12 as L1 reads them (the shadow VMCS's for the slots L1
 * reads without exit): what `archView` compares. With `into`, the overlay
 * is made there (sameArchState's scratch buffers) rather than in a new array.
 */
function l1Slots(v: Vcpu, into?: BigUint64Array): BigUint64Array {
  const s = activeShadow(v);
  if (!s) return v.nested.vmcs12;
  let out: BigUint64Array;
  if (into && into.length === v.nested.vmcs12.length) {
    out = into;
    out.set(v.nested.vmcs12);
  } else out = v.nested.vmcs12.slice();
  for (const slot of s.readSlots!) if (slot < out.length) out[slot] = s.shadow![slot];
  return out;
}
const SCRATCH_A = new BigUint64Array(VMCS12_SLOT_COUNT);
const SCRATCH_B = new BigUint64Array(VMCS12_SLOT_COUNT);

function sameRecord(a: Record<number, bigint>, b: Record<number, bigint>): boolean {
  let n = 0;
  for (const k in a) {
    if (a[k as unknown as number] !== b[k as unknown as number]) return false;
    n++;
  }
  for (const _ in b) n--;
  return n === 0;
}

/**
 * Every frame of `ma`'s memslots that has a host page in `ma` reads the
 * same as the frame at the same place of `mb`'s matching memslot. With
 * `skipShared`, frames with a host page on both sides are left out: the
 * call the other way round has compared them already.
 */
function samePagesOf(ma: Memory, mb: Memory, skipShared: boolean): boolean {
  const slots = ma.slots;
  const n = slots.length;
  if (n === 0) return true;
  const order = slotsByHva(slots);
  const pfns = ma.hvaToPfn;
  for (const key in pfns) {
    const hva = +key;
    const pa = pfns[hva];
    if (order !== null) {
      // the one slot whose host range can hold hva: the last one starting at or below it
      let lo = 0;
      let hi = order.length - 1;
      let k = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (slots[order[mid]].hva <= hva) {
          k = order[mid];
          lo = mid + 1;
        } else hi = mid - 1;
      }
      if (k < 0 || hva >= slots[k].hva + slots[k].npages) continue;
      if (!samePageAt(ma, mb, k, hva, pa, skipShared)) return false;
      continue;
    }
    for (let k = 0; k < n; k++) {
      const s = slots[k];
      if (hva < s.hva || hva >= s.hva + s.npages) continue;
      if (!samePageAt(ma, mb, k, hva, pa, skipShared)) return false;
    }
  }
  return true;
}

/** The frame of slot k at host page hva of `ma` reads the same as its place in `mb`'s slot k. */
function samePageAt(ma: Memory, mb: Memory, k: number, hva: number, pa: number | undefined, skipShared: boolean): boolean {
  const pb = mb.hvaToPfn[mb.slots[k].hva + (hva - ma.slots[k].hva)];
  if (pa === undefined && pb === undefined) return true;
  if (skipShared && pa !== undefined && pb !== undefined) return true;
  return sameBytes(pa === undefined ? undefined : ma.pages[pa], pb === undefined ? undefined : mb.pages[pb]);
}

/**
 * The indices of the slots that have pages, ordered by host address, when
 * their host ranges do not overlap (each host page then lies in at most one
 * slot), else null.
 */
function slotsByHva(slots: readonly Memslot[]): number[] | null {
  const order: number[] = [];
  for (let i = 0; i < slots.length; i++) if (slots[i].npages > 0) order.push(i);
  order.sort((i, j) => slots[i].hva - slots[j].hva);
  for (let i = 1; i < order.length; i++) {
    const p = slots[order[i - 1]];
    if (p.hva + p.npages > slots[order[i]].hva) return null;
  }
  return order;
}

/** Slot by slot, x[k] === y[k] for every slot of x; compared as bytes (reading a slot makes a BigInt). */
function sameSlots(x: BigUint64Array, y: BigUint64Array): boolean {
  if (x.length > y.length) return false;
  return Buffer.compare(new Uint8Array(x.buffer, x.byteOffset, x.byteLength), new Uint8Array(y.buffer, y.byteOffset, x.byteLength)) === 0;
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === b) return true;
  if (!a) return b!.every((x) => x === 0);
  if (!b) return a.every((x) => x === 0);
  return Buffer.compare(a, b) === 0;
}

/**
 * Do two worlds show the same architectural state (what `archView` lists)?
 * A fast comparison of the underlying data, used as a filter before
 * `archHash`: when it says they differ, the hashes decide; whole-trace
 * results always come from the hashes.
 */
export function sameArchState(a: World, b: World): boolean {
  const ma = a.mem;
  const mb = b.mem;
  if (ma.slots.length !== mb.slots.length) return false;
  for (let i = 0; i < ma.slots.length; i++) {
    const x = ma.slots[i];
    const y = mb.slots[i];
    if (x.slot !== y.slot || x.gfn !== y.gfn || x.npages !== y.npages || x.flags !== y.flags) return false;
  }
  // The slots match one for one (checked above), and a slot's pages are its hvas in order. Only
  // frames with a host page on one side or the other can differ: walk those (a few) rather than
  // every frame of every slot (a generated trace has about 180).
  if (!samePagesOf(ma, mb, false) || !samePagesOf(mb, ma, true)) return false;
  if (a.vcpus.length !== b.vcpus.length) return false;
  for (let i = 0; i < a.vcpus.length; i++) {
    const v = a.vcpus[i];
    const u = b.vcpus[i];
    const n = v.nested;
    const m = u.nested;
    if (n.vmxon !== m.vmxon || n.currentVmptr !== m.currentVmptr || n.hvEvmcsVmptr !== m.hvEvmcsVmptr || n.guestMode !== m.guestMode || n.launched !== m.launched) return false;
    if (!activeShadow(v) && !activeShadow(u)) {
      if (!sameSlots(n.vmcs12, m.vmcs12)) return false;
    } else if (!sameSlots(l1Slots(v, SCRATCH_A), l1Slots(u, SCRATCH_B))) return false;
    if (!sameRecord(v.l1Msrs, u.l1Msrs) || !sameRecord(v.l2Msrs, u.l2Msrs)) return false;
    if (Buffer.compare(v.vmcs01MsrBitmap, u.vmcs01MsrBitmap) !== 0) return false;
    const f = v.cpuidFault;
    const g = u.cpuidFault;
    if (f.platformInfo !== g.platformInfo || f.miscFeaturesEnables !== g.miscFeaturesEnables || !!f.smm !== !!g.smm) return false;
  }
  if (!!a.host !== !!b.host) return false;
  if (a.host) {
    const pa = a.host.pcpus;
    const pb = b.host.pcpus;
    if (pa.length !== pb.length) return false;
    for (let i = 0; i < pa.length; i++) {
      const freeA = !a.vcpus.some((v) => v.cpu === i);
      const freeB = !b.vcpus.some((v) => v.cpu === i);
      if (freeA !== freeB || (freeA && pa[i].miscFeaturesEnables !== pb[i].miscFeaturesEnables)) return false;
    }
  }
  return true;
}

export interface ArchDifference {
  key: string;
  a: string | undefined;
  b: string | undefined;
}

export function diffArch(a: World, b: World, limit = 50): ArchDifference[] {
  const va = archView(a);
  const vb = archView(b);
  const keys = [...new Set([...va.keys(), ...vb.keys()])].sort();
  const out: ArchDifference[] = [];
  for (const k of keys) {
    if (va.get(k) !== vb.get(k)) out.push({ key: k, a: va.get(k), b: vb.get(k) });
    if (out.length >= limit) break;
  }
  return out;
}

/** A digest of the architectural view, cheap to compare at checkpoints. */
export function archHash(w: World): string {
  const v = archView(w);
  return sha256([...v.entries()].map(([k, x]) => `${k}=${x}`).join('\n'));
}
