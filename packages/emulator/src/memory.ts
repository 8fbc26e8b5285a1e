/**
 * Guest memory: memslots map guest frames to host virtual pages, the host's
 * page tables map those to host pfns, and pages hold the bytes. This is the
 * `fresh` translation (gfn -> memslot -> hva -> pfn on every access) that
 * every path's observations are measured against.
 */
import { PAGE_SIZE } from '@nvx/arch';
import { Ctx, writableEntry } from './ctx';
import type { Memory, Memslot, World } from './state';

const MAX_GPA = 1n << 52n;
const ZERO_PAGE = new Uint8Array(PAGE_SIZE);

export function gpaToGfn(gpa: bigint): number {
  // Below 2^52 the number is exact and the division by 4096 too: no bigint is allocated.
  if (gpa >= 0n && gpa < MAX_GPA) return Math.floor(Number(gpa) / 4096);
  return gpa < MAX_GPA ? Number(gpa >> 12n) : -1;
}

export function gpaOffset(gpa: bigint): number {
  return gpa >= 0n && gpa < MAX_GPA ? Number(gpa) % 4096 : Number(gpa & 0xfffn);
}

/** __gfn_to_memslot: the slot holding gfn, or undefined. */
export function findMemslot(mem: Memory, gfn: number): Memslot | undefined {
  if (gfn < 0) return undefined;
  const s = mem.slots;
  let lo = 0;
  let hi = s.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const m = s[mid];
    if (gfn < m.gfn) hi = mid - 1;
    else if (gfn >= m.gfn + m.npages) lo = mid + 1;
    else return m;
  }
  return undefined;
}

/** gfn -> host virtual page, or -1 when no memslot covers it. */
export function gfnToHva(mem: Memory, gfn: number): number {
  const m = findMemslot(mem, gfn);
  return m ? m.hva + (gfn - m.gfn) : -1;
}

/** hva -> pfn, faulting the page in (a fresh zeroed page) if it is not present. */
export function hvaToPfnFault(mem: Memory, hva: number): number {
  let pfn = mem.hvaToPfn[hva];
  if (pfn === undefined) {
    pfn = mem.nextPfn++;
    mem.hvaToPfn[hva] = pfn;
  }
  return pfn;
}

/** gfn -> pfn, faulting in; -1 when no memslot covers gfn. */
export function gfnToPfn(mem: Memory, gfn: number): number {
  const hva = gfnToHva(mem, gfn);
  return hva < 0 ? -1 : hvaToPfnFault(mem, hva);
}

/** The bytes of a host page, for reading only (a shared zero page when never written). */
export function pfnPage(mem: Memory, pfn: number): Uint8Array {
  return mem.pages[pfn] ?? ZERO_PAGE;
}

/** The current contents of a guest frame for reading, or null when no memslot covers it. Never faults a page in. */
export function guestPage(mem: Memory, gfn: number): Uint8Array | null {
  const hva = gfnToHva(mem, gfn);
  if (hva < 0) return null;
  const pfn = mem.hvaToPfn[hva];
  return pfn === undefined ? ZERO_PAGE : pfnPage(mem, pfn);
}

/** A host page ready to be written (copied first under immer). */
export function writablePfn(ctx: Ctx, mem: Memory, pfn: number): Uint8Array {
  return writableEntry(ctx, mem.pages, pfn, () => new Uint8Array(PAGE_SIZE));
}

/**
 * A DataView per page, made once and kept while the page lives (the eVMCS
 * copies touch one page dozens of times per nested entry and exit; a new
 * DataView per access was most of the replay time). The last one is checked
 * first.
 */
const VIEWS = new WeakMap<Uint8Array, DataView>();
let viewPage: Uint8Array | null = null;
let viewOfPage: DataView | null = null;
function view(page: Uint8Array): DataView {
  if (page === viewPage && viewOfPage !== null) return viewOfPage;
  let v = VIEWS.get(page);
  if (v === undefined) {
    v = new DataView(page.buffer, page.byteOffset, page.byteLength);
    VIEWS.set(page, v);
  }
  viewPage = page;
  viewOfPage = v;
  return v;
}

/** Little-endian load of 1, 2, 4 or 8 bytes within one page. */
export function readLE(page: Uint8Array, off: number, size: number): bigint {
  switch (size) {
    case 1:
      return BigInt(page[off]);
    case 2:
      return BigInt(page[off] | (page[off + 1] << 8));
    case 4:
      return BigInt(view(page).getUint32(off, true));
    case 8:
      return view(page).getBigUint64(off, true);
    default: {
      let v = 0n;
      for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(page[off + i]);
      return v;
    }
  }
}

/** Little-endian store of the low `size` bytes of value within one page. */
export function writeLE(page: Uint8Array, off: number, size: number, value: bigint): void {
  switch (size) {
    case 1:
      page[off] = Number(value & 0xffn);
      return;
    case 2: {
      const v = Number(value & 0xffffn);
      page[off] = v & 0xff;
      page[off + 1] = v >>> 8;
      return;
    }
    case 4:
      view(page).setUint32(off, Number(value & 0xffffffffn), true);
      return;
    case 8:
      view(page).setBigUint64(off, BigInt.asUintN(64, value), true);
      return;
    default: {
      let v = value;
      for (let i = 0; i < size; i++) {
        page[off + i] = Number(v & 0xffn);
        v >>= 8n;
      }
    }
  }
}

/** A little-endian load of size bytes at gpa (may cross a page); null if any byte has no memslot. */
export function readGuest(w: World, gpa: bigint, size: number): bigint | null {
  const gfn = gpaToGfn(gpa);
  const off = gpaOffset(gpa);
  if (off + size <= PAGE_SIZE) {
    const page = guestPage(w.mem, gfn);
    return page ? readLE(page, off, size) : null;
  }
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) {
    const b = readGuest(w, gpa + BigInt(i), 1);
    if (b === null) return null;
    v = (v << 8n) | b;
  }
  return v;
}

export function readGuestU32(w: World, gpa: bigint): number | null {
  const v = readGuest(w, gpa, 4);
  return v === null ? null : Number(v);
}

/** A little-endian store; false (and nothing written) if any byte has no memslot. */
export function writeGuest(ctx: Ctx, w: World, gpa: bigint, size: number, value: bigint): boolean {
  const off = gpaOffset(gpa);
  if (off + size <= PAGE_SIZE) {
    const pfn = gfnToPfn(w.mem, gpaToGfn(gpa));
    if (pfn < 0) return false;
    writeLE(writablePfn(ctx, w.mem, pfn), off, size, value);
    return true;
  }
  for (let i = 0; i < size; i++) if (gfnToHva(w.mem, gpaToGfn(gpa + BigInt(i))) < 0) return false;
  for (let i = 0; i < size; i++) writeGuest(ctx, w, gpa + BigInt(i), 1, (value >> BigInt(8 * i)) & 0xffn);
  return true;
}

// ---- host-side changes (KVM_SET_USER_MEMORY_REGION, mm) ----

function overlaps(mem: Memory, gfn: number, npages: number, except: number): boolean {
  return mem.slots.some((m) => m.slot !== except && gfn < m.gfn + m.npages && m.gfn < gfn + npages);
}

/** Returns an error string when KVM would refuse the change, else null. */
export function memslotCreate(mem: Memory, slot: number, gfn: number, npages: number, flags: number): string | null {
  if (mem.slots.some((m) => m.slot === slot)) return `memslot ${slot} exists`;
  if (npages === 0) return 'memslot of 0 pages';
  if (gfn < 0 || gfn + npages > 2 ** 40) return 'memslot beyond the guest physical address space';
  if (overlaps(mem, gfn, npages, -1)) return `memslot ${slot} would overlap another`;
  mem.slots.push({ slot, gfn, npages, flags, hva: mem.nextHva });
  mem.nextHva += npages + 16;
  mem.slots.sort((a, b) => a.gfn - b.gfn);
  mem.generation++;
  return null;
}

export function memslotMove(mem: Memory, slot: number, gfn: number): string | null {
  const m = mem.slots.find((x) => x.slot === slot);
  if (!m) return `no memslot ${slot}`;
  if (gfn < 0 || gfn + m.npages > 2 ** 40) return 'memslot beyond the guest physical address space';
  if (overlaps(mem, gfn, m.npages, slot)) return `memslot ${slot} would overlap another`;
  m.gfn = gfn;
  mem.slots.sort((a, b) => a.gfn - b.gfn);
  mem.generation++;
  return null;
}

export function memslotDelete(mem: Memory, slot: number): string | null {
  const i = mem.slots.findIndex((x) => x.slot === slot);
  if (i < 0) return `no memslot ${slot}`;
  // The VMM's mapping of the slot's memory outlives the slot (KVM never unmaps userspace memory):
  // remember where it was, for host.memslot-readd.
  (mem.removed ??= {})[slot] = { ...mem.slots[i] };
  mem.slots.splice(i, 1);
  mem.generation++;
  return null;
}

/**
 * The VMM creates a deleted memslot again with its previous gfn, size, flags
 * and userspace address (KVM_SET_USER_MEMORY_REGION with the same values):
 * the same host pages, so whatever they held is there again.
 */
export function memslotReadd(mem: Memory, slot: number): string | null {
  const m = mem.removed?.[slot];
  if (!m) return `memslot ${slot} was never deleted`;
  if (mem.slots.some((x) => x.slot === slot)) return `memslot ${slot} exists`;
  if (overlaps(mem, m.gfn, m.npages, -1)) return `memslot ${slot} would overlap another`;
  if (mem.slots.some((o) => m.hva < o.hva + o.npages && o.hva < m.hva + m.npages)) return `memslot ${slot}'s host range is used by another slot`;
  mem.slots.push({ ...m });
  delete mem.removed![slot];
  mem.slots.sort((a, b) => a.gfn - b.gfn);
  mem.generation++;
  return null;
}

/** Bytes userspace may copy in one host.guest-copy. */
export const MAX_GUEST_COPY = 1 << 20;

/**
 * Userspace stores into guest memory through its own mapping (a selftest's
 * addr_gpa2hva): plain bytes, no L1 store, no write tracking.
 */
export function hostGuestWrite(ctx: Ctx, w: World, gpa: bigint, size: number, value: bigint): string | null {
  return writeGuest(ctx, w, gpa, size, value) ? null : `gpa 0x${gpa.toString(16)} is not in a memslot`;
}

/** Userspace copies guest memory (memmove: the source is read whole before the destination is written). */
export function hostGuestCopy(ctx: Ctx, w: World, dst: bigint, src: bigint, bytes: number): string | null {
  if (bytes > MAX_GUEST_COPY) return `a copy of ${bytes} bytes is more than ${MAX_GUEST_COPY}`;
  const buf: bigint[] = [];
  for (let i = 0; i < bytes; i++) {
    const b = readGuest(w, src + BigInt(i), 1);
    if (b === null) return `gpa 0x${(src + BigInt(i)).toString(16)} is not in a memslot`;
    buf.push(b);
  }
  for (let i = 0; i < bytes; i++) if (gfnToHva(w.mem, gpaToGfn(dst + BigInt(i))) < 0) return `gpa 0x${(dst + BigInt(i)).toString(16)} is not in a memslot`;
  for (let i = 0; i < bytes; i++) writeGuest(ctx, w, dst + BigInt(i), 1, buf[i]);
  return null;
}

/**
 * A memslot re-created with another size (KVM refuses a size change of a
 * live slot, so the VMM deletes and creates it again at the same base gfn
 * and userspace address): frames past a shrunk end are gone; a grown slot
 * maps the host pages that follow its range (present ones keep their bytes).
 */
export function memslotResize(mem: Memory, slot: number, npages: number): string | null {
  const m = mem.slots.find((x) => x.slot === slot);
  if (!m) return `no memslot ${slot}`;
  if (npages === 0) return 'memslot of 0 pages';
  if (m.gfn + npages > 2 ** 40) return 'memslot beyond the guest physical address space';
  if (overlaps(mem, m.gfn, npages, slot)) return `memslot ${slot} would overlap another`;
  if (mem.slots.some((o) => o.slot !== slot && m.hva < o.hva + o.npages && o.hva < m.hva + npages)) return `memslot ${slot} cannot grow into another slot's host range`;
  m.npages = npages;
  if (m.hva + npages + 16 > mem.nextHva) mem.nextHva = m.hva + npages + 16;
  mem.generation++;
  return null;
}

export function memslotFlags(mem: Memory, slot: number, flags: number): string | null {
  const m = mem.slots.find((x) => x.slot === slot);
  if (!m) return `no memslot ${slot}`;
  m.flags = flags;
  mem.generation++;
  return null;
}

/**
 * The host migrates the page behind gfn: the mmu-notifier invalidates the
 * hva, the content moves to a new pfn. Returns the hva, or an error string.
 * A page someone holds pinned (`pinned(hva)`) does not move.
 */
export function pageMigrate(ctx: Ctx, mem: Memory, gfn: number, pinned?: (hva: number) => boolean): number | string {
  const hva = gfnToHva(mem, gfn);
  if (hva < 0) return `gfn 0x${gfn.toString(16)} is not in a memslot`;
  mem.mmuInvalidateSeq++;
  // A long-term pin (kvm_vcpu_map of a page with struct page) makes the migration fail: the page stays.
  if (pinned?.(hva)) return hva;
  const old = mem.hvaToPfn[hva];
  const pfn = mem.nextPfn++;
  mem.hvaToPfn[hva] = pfn;
  if (old !== undefined && mem.pages[old]) writablePfn(ctx, mem, pfn).set(mem.pages[old]);
  return hva;
}

/** The host drops the page behind gfn: it faults back in as a new zeroed page. */
export function pageZap(mem: Memory, gfn: number): number | string {
  const hva = gfnToHva(mem, gfn);
  if (hva < 0) return `gfn 0x${gfn.toString(16)} is not in a memslot`;
  mem.mmuInvalidateSeq++;
  delete mem.hvaToPfn[hva];
  return hva;
}

// ---- the mmu-notifier invalidation window (virt/kvm/kvm_main.c, mm/mmu_notifier.c) ----

/**
 * host.mmu-invalidate-start: kvm_mmu_notifier_invalidate_range_start for
 * the pages backing gfn .. gfn + npages - 1 (one memslot):
 * mmu_invalidate_in_progress goes up and the range is recorded until the
 * matching end. Returns the host virtual range (for the notifier's
 * callbacks: gfn_to_pfn_cache_invalidate_start), or an error string.
 */
export function mmuInvalidateStart(mem: Memory, gfn: number, npages: number): { start: number; end: number } | string {
  if (!Number.isInteger(npages) || npages < 1) return `npages ${npages}: at least one page`;
  const m = findMemslot(mem, gfn);
  if (!m) return `gfn 0x${gfn.toString(16)} is not in a memslot`;
  if (gfn + npages > m.gfn + m.npages) return `gfn 0x${gfn.toString(16)} + ${npages} pages runs past the end of memslot ${m.slot}`;
  const start = m.hva + (gfn - m.gfn);
  const range = { start, end: start + npages };
  (mem.mmuInvalidations ??= []).push(range);
  return range;
}

/**
 * host.mmu-invalidate-end: the oldest open invalidation ends. Between its
 * start and here the primary MMU changed the pages: they migrate to new
 * host pages with the same content (a page with a long-term pin stays).
 * Then, as kvm_mmu_notifier_invalidate_range_end does, mmu_invalidate_seq
 * is bumped and mmu_invalidate_in_progress goes down. The notifier calls
 * nothing on the caches at the end: what a refresh cached during the
 * window is what stays. Returns the range, or an error string when none is open.
 */
export function mmuInvalidateEnd(ctx: Ctx, mem: Memory, pinned?: (hva: number) => boolean): { start: number; end: number } | string {
  const open = mem.mmuInvalidations;
  if (!open || open.length === 0) return 'no mmu-notifier invalidation is in progress';
  const r = open.shift()!;
  for (let hva = r.start; hva < r.end; hva++) {
    const old = mem.hvaToPfn[hva];
    if (old === undefined || pinned?.(hva)) continue;
    const pfn = mem.nextPfn++;
    mem.hvaToPfn[hva] = pfn;
    if (mem.pages[old]) writablePfn(ctx, mem, pfn).set(mem.pages[old]);
  }
  mem.mmuInvalidateSeq++;
  if (open.length === 0) delete mem.mmuInvalidations;
  return r;
}

/** mmu_invalidate_in_progress over host virtual page hva: an open invalidation covers it. */
export function mmuInvalidateInProgress(mem: Memory, hva: number): boolean {
  const open = mem.mmuInvalidations;
  if (!open) return false;
  for (const r of open) if (hva >= r.start && hva < r.end) return true;
  return false;
}
