/**
 * The enlightened-VMCS machinery every path shares (arch/x86/kvm/vmx/hyperv.c
 * and nested.c): the enlightened VMPTRLD done at VMLAUNCH/VMRESUME, the copies
 * between the eVMCS in L1 memory and vmcs12, and the clean-field handshake.
 */
import {
  EVMCS,
  HV_VMX_ENLIGHTENED_CLEAN_FIELD,
  INVALID_GPA,
  KVM_EVMCS_VERSION,
  VMCS12_REVISION,
  VMCS_FIELDS,
  VmcsField,
} from '@nvx/arch';
import { Ctx, writable } from './ctx';
import { gpaOffset, gpaToGfn, gfnToPfn, guestPage, readLE, writablePfn, writeLE } from './memory';
import type { NestedVmx, Vcpu, World } from './state';
import { NESTED_PAGE } from './nested-pages';
import { l0ReadPage, l0WritePage } from './nested-pages';
import { vmcs12Clear, vmcs12WriteField } from './vmcs12';

interface EvmcsSlot {
  field: VmcsField;
  group: number; // -1: always copied
  offset: number;
  size: number;
}

/** The fields copy_enlightened_to_vmcs12 may copy, with their eVMCS member. */
export const EVMCS_COPY_IN: readonly EvmcsSlot[] = VMCS_FIELDS.filter((f) => !f.isHigh && f.cleanGroup !== null && f.evmcsOffset !== null).map((f) => ({
  field: f,
  group: f.cleanGroup!,
  offset: f.evmcsOffset!,
  size: f.evmcsSize!,
}));

/** The fields copy_vmcs12_to_enlightened writes back after a nested VM-exit (exit information, guest state, a few controls). */
export const EVMCS_COPY_OUT: readonly EvmcsSlot[] = VMCS_FIELDS.filter((f) => !f.isHigh && f.evmcsOffset !== null && f.evmcsSyncOut).map((f) => ({
  field: f,
  group: f.cleanGroup ?? -1,
  offset: f.evmcsOffset!,
  size: f.evmcsSize!,
}));

export const EVMPTRLD = { DISABLED: 0, SUCCEEDED: 1, VMFAIL: 2, ERROR: 3 } as const;

/** EVMPTR_MAP_PENDING: set by KVM_SET_NESTED_STATE, the eVMCS is mapped at the next KVM_RUN (nested_get_evmcs_page) */
export const EVMPTR_MAP_PENDING = 0xfffffffffffffffen;

/** nested_vmx_is_evmptr_valid (evmptr_is_valid: neither EVMPTR_INVALID nor EVMPTR_MAP_PENDING) */
export function evmptrValid(n: NestedVmx): boolean {
  return n.hvEvmcsVmptr !== INVALID_GPA && n.hvEvmcsVmptr !== EVMPTR_MAP_PENDING;
}

export function evmcsReadU32(w: World, gpa: bigint, off: number): number | null {
  const page = guestPage(w.mem, gpaToGfn(gpa));
  return page ? Number(readLE(page, gpaOffset(gpa) + off, 4)) : null;
}

export function evmcsWriteU32(ctx: Ctx, w: World, gpa: bigint, off: number, v: number): void {
  const pfn = gfnToPfn(w.mem, gpaToGfn(gpa));
  if (pfn >= 0) writeLE(writablePfn(ctx, w.mem, pfn), gpaOffset(gpa) + off, 4, BigInt(v >>> 0));
}

/** nested_release_evmcs */
export function releaseEvmcs(n: NestedVmx): void {
  n.hvEvmcsVmptr = INVALID_GPA;
}

/** nested_release_evmcs with the guest-pages path letting go of its mapping (kvm_vcpu_unmap, or the cache). */
export function nestedReleaseEvmcs(ctx: Ctx, w: World, v: Vcpu): void {
  if (evmptrValid(v.nested)) ctx.profile.paths['guest-pages'].releaseEvmcs(ctx, w, v);
  releaseEvmcs(v.nested);
}

/** A 32-bit eVMCS member as L0 reads it, through the guest-pages path's mapping of the eVMCS in use; null when unmapped. */
export function evmcsL0ReadU32(ctx: Ctx, w: World, v: Vcpu, off: number): number | null {
  const page = l0ReadPage(ctx, w, v, NESTED_PAGE.EVMCS);
  return page ? Number(readLE(page, off, 4)) : null;
}

/** L0 stores a 32-bit eVMCS member through the guest-pages path. */
export function evmcsL0WriteU32(ctx: Ctx, w: World, v: Vcpu, off: number, value: number): void {
  const page = l0WritePage(ctx, w, v, NESTED_PAGE.EVMCS);
  if (page) writeLE(page, off, 4, BigInt(value >>> 0));
}

/**
 * nested_vmx_handle_enlightened_vmptrld: pick up the eVMCS the VP assist page
 * names. On a new eVMCS or VMLAUNCH, every clean bit is cleared in L1's copy
 * (KVM keeps one vmcs12 per vCPU, so nothing may be assumed clean) and the MSR
 * bitmap must be rebuilt.
 */
export function handleEnlightenedVmptrld(ctx: Ctx, w: World, v: Vcpu, fromLaunch: boolean): number {
  const n = v.nested;
  if (!w.config.evmcs) return EVMPTRLD.DISABLED;
  const gpa = n.vpAssistEvmcs;
  if (gpa === INVALID_GPA) {
    // The VP assist page no longer names an eVMCS: stop using the old one (nested_release_evmcs).
    ctx.profile.ops.nested_release_evmcs(ctx, w, v);
    return EVMPTRLD.DISABLED;
  }
  let changed = false;
  if (gpa !== n.hvEvmcsVmptr) {
    n.currentVmptr = INVALID_GPA;
    ctx.profile.ops.nested_release_evmcs(ctx, w, v);
    if ((gpa & 0xfffn) !== 0n) return EVMPTRLD.ERROR;
    // kvm_vcpu_map (or the cache) of the new eVMCS, through the guest-pages path
    const page = ctx.profile.paths['guest-pages'].mapEvmcs(ctx, w, v, gpa);
    if (!page) return EVMPTRLD.ERROR;
    const rev = Number(readLE(page, EVMCS.REVISION_ID_OFFSET, 4));
    if (rev !== KVM_EVMCS_VERSION && rev !== VMCS12_REVISION) {
      ctx.profile.paths['guest-pages'].releaseEvmcs(ctx, w, v);
      return EVMPTRLD.VMFAIL;
    }
    n.hvEvmcsVmptr = gpa;
    changed = true;
    // An eVMCS is not reloaded whole (read-only fields, fields it lacks): start from zero.
    if (fromLaunch) vmcs12Clear(ctx, n);
  }
  if (fromLaunch || changed) {
    evmcsL0WriteU32(ctx, w, v, EVMCS.HV_CLEAN_FIELDS_OFFSET, 0);
    n.forceMsrBitmapRecalc = true;
  }
  return EVMPTRLD.SUCCEEDED;
}

// ---- the copies, run at every nested entry and exit: kept free of bigint work ----

/**
 * Typed arrays are little-endian here (every platform Node runs on in
 * practice): a vmcs12 slot can then be moved as two 32-bit halves, low half
 * first, without a bigint per field. Otherwise the copies take the generic
 * bigint path.
 */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * 32-bit views of typed arrays (a vmcs12's slots, a page's bytes), made once
 * per array and kept while it lives; the last one is checked first.
 */
const WORDS = new WeakMap<Uint8Array | BigUint64Array, Uint32Array>();
let wordsOf: Uint8Array | BigUint64Array | null = null;
let wordsView: Uint32Array | null = null;
function words32(a: Uint8Array | BigUint64Array): Uint32Array {
  if (a === wordsOf && wordsView !== null) return wordsView;
  let v = WORDS.get(a);
  if (v === undefined) {
    v = new Uint32Array(a.buffer, a.byteOffset, a.byteLength >> 2);
    WORDS.set(a, v);
  }
  wordsOf = a;
  wordsView = v;
  return v;
}

/** The 32-bit halves of a vmcs12's slots (low half first on a little-endian platform). */
const vmcs12Words = (a: BigUint64Array): Uint32Array => words32(a);

/** A page as 32-bit words (the page must start 4-byte aligned). */
const pageWords = (page: Uint8Array): Uint32Array => words32(page);

/** EVMCS_COPY_OUT for the word-wise copy: member offset and size, vmcs12 word index, 4-byte aligned member. */
const COPY_OUT_WORDS: readonly { offset: number; size: number; word: number; aligned: boolean }[] = EVMCS_COPY_OUT.map((s) => ({
  offset: s.offset,
  size: s.size,
  word: 2 * s.field.slot,
  aligned: s.offset % 4 === 0,
}));

/** An EVMCS_COPY_IN entry for the word-wise copy: member offset and size, vmcs12 word index, width mask as 32-bit halves. */
interface CopyInWords {
  offset: number;
  size: number;
  /** the member starts on a 4-byte boundary (then a 4- or 8-byte member is read as 32-bit words) */
  aligned: boolean;
  /** index of the slot's low half in the Uint32Array view (2 x slot) */
  word: number;
  /** vmcs12WriteField's `value & MASK[width]` for a full field, as halves */
  maskLo: number;
  maskHi: number;
}

function copyInWords(s: EvmcsSlot): CopyInWords {
  const w = s.field.width;
  return {
    offset: s.offset,
    size: s.size,
    aligned: s.offset % 4 === 0,
    word: 2 * s.field.slot,
    maskLo: w === 16 ? 0xffff : 0xffffffff,
    maskHi: w === 16 || w === 32 ? 0 : 0xffffffff,
  };
}

/** EVMCS_COPY_IN by clean-field group (bit 0..15), and the fields copied whatever the clean bits say. */
const COPY_IN_BY_GROUP: readonly CopyInWords[][] = Array.from({ length: 16 }, (_, g) => EVMCS_COPY_IN.filter((s) => s.group === g).map(copyInWords));
const COPY_IN_ALWAYS: readonly CopyInWords[] = EVMCS_COPY_IN.filter((s) => s.group < 0).map(copyInWords);

/**
 * Load the eVMCS member (2, 4 or 8 bytes, little-endian) into its vmcs12
 * slot, given as 32-bit halves; `pw` is the page as 32-bit words, or null
 * when the page does not start 4-byte aligned.
 */
function loadMember(page: Uint8Array, pw: Uint32Array | null, s: CopyInWords, words: Uint32Array): void {
  const off = s.offset;
  let lo: number;
  let hi = 0;
  if (s.size === 2) lo = page[off] | (page[off + 1] << 8);
  else if (pw !== null && s.aligned) {
    lo = pw[off >> 2];
    if (s.size === 8) hi = pw[(off >> 2) + 1];
  } else {
    lo = page[off] | (page[off + 1] << 8) | (page[off + 2] << 16) | (page[off + 3] << 24);
    if (s.size === 8) hi = page[off + 4] | (page[off + 5] << 8) | (page[off + 6] << 16) | (page[off + 7] << 24);
  }
  words[s.word] = lo & s.maskLo;
  words[s.word + 1] = hi & s.maskHi;
}

/** copy_enlightened_to_vmcs12 given L1's hv_clean_fields: the evmcs path picks the groups to copy. */
export function copyEnlightenedToVmcs12Clean(ctx: Ctx, w: World, v: Vcpu, hvCleanFields: number): void {
  copyEnlightenedToVmcs12(ctx, w, v, ctx.profile.paths.evmcs.groupsToCopy(hvCleanFields));
}

/** copy_enlightened_to_vmcs12 for the groups in `groups` (fields tagged NONE always). */
export function copyEnlightenedToVmcs12(ctx: Ctx, w: World, v: Vcpu, groups: number): void {
  const n = v.nested;
  const page = l0ReadPage(ctx, w, v, NESTED_PAGE.EVMCS);
  if (!page) return;
  let copied = 0;
  if (LITTLE_ENDIAN) {
    // The same fields as the generic loop below (every slot is written once, so the order does not matter).
    let words: Uint32Array | null = null;
    const pw = page.byteOffset % 4 === 0 ? pageWords(page) : null;
    for (let g = -1; g < 16; g++) {
      if (g >= 0 && !(groups & (1 << g))) continue;
      const list = g < 0 ? COPY_IN_ALWAYS : COPY_IN_BY_GROUP[g];
      if (list.length === 0) continue;
      words ??= vmcs12Words(writable(ctx, n, 'vmcs12'));
      for (const s of list) loadMember(page, pw, s, words);
      copied += list.length;
    }
  } else {
    for (const s of EVMCS_COPY_IN) {
      if (s.group >= 0 && !(groups & (1 << s.group))) continue;
      vmcs12WriteField(ctx, n, s.field, readLE(page, s.offset, s.size));
      copied++;
    }
  }
  ctx.cost.evmcsFieldsCopied += copied;
  let g = groups & HV_VMX_ENLIGHTENED_CLEAN_FIELD.ALL;
  while (g) {
    ctx.cost.evmcsGroupsCopied++;
    g &= g - 1;
  }
}

/** copy_vmcs12_to_enlightened: the exit information and guest state L1 reads after a nested VM-exit. */
export function copyVmcs12ToEnlightened(ctx: Ctx, w: World, v: Vcpu): void {
  const n = v.nested;
  const page = l0WritePage(ctx, w, v, NESTED_PAGE.EVMCS);
  if (!page) return;
  if (LITTLE_ENDIAN) {
    // writeLE of each slot's low `size` bytes, from its 32-bit halves
    const words = vmcs12Words(n.vmcs12);
    const pw = page.byteOffset % 4 === 0 ? pageWords(page) : null;
    for (const s of COPY_OUT_WORDS) {
      const off = s.offset;
      const lo = words[s.word];
      if (s.size === 2) {
        page[off] = lo;
        page[off + 1] = lo >>> 8;
      } else if (pw !== null && s.aligned) {
        pw[off >> 2] = lo;
        if (s.size === 8) pw[(off >> 2) + 1] = words[s.word + 1];
      } else {
        page[off] = lo;
        page[off + 1] = lo >>> 8;
        page[off + 2] = lo >>> 16;
        page[off + 3] = lo >>> 24;
        if (s.size === 8) {
          const hi = words[s.word + 1];
          page[off + 4] = hi;
          page[off + 5] = hi >>> 8;
          page[off + 6] = hi >>> 16;
          page[off + 7] = hi >>> 24;
        }
      }
    }
  } else {
    for (const s of EVMCS_COPY_OUT) writeLE(page, s.offset, s.size, n.vmcs12[s.field.slot]);
  }
  ctx.cost.evmcsFieldsSynced += EVMCS_COPY_OUT.length;
}

/** Read one VMCS field's member straight from the eVMCS (the VMREAD-from-eVMCS workaround). */
export function evmcsReadField(ctx: Ctx, w: World, v: Vcpu, f: VmcsField): bigint | null {
  if (f.evmcsOffset === null) return null;
  const page = l0ReadPage(ctx, w, v, NESTED_PAGE.EVMCS);
  return page ? readLE(page, f.evmcsOffset, f.evmcsSize!) : null;
}
