/**
 * Addressing inside the 4 KiB bitmaps the CPU consults (Intel SDM): the MSR
 * bitmap and the VMREAD/VMWRITE bitmaps. A set bit means "VM-exit".
 */

export const PAGE_SIZE = 4096 as const;
export const MSR_BITMAP_SIZE = 4096 as const;

export type MsrAccess = 'read' | 'write';

/** Byte offsets of the four 1 KiB quarters of an MSR bitmap. */
export const MSR_BITMAP_READ_LOW = 0x000 as const;
export const MSR_BITMAP_READ_HIGH = 0x400 as const;
export const MSR_BITMAP_WRITE_LOW = 0x800 as const;
export const MSR_BITMAP_WRITE_HIGH = 0xc00 as const;
/** First MSR of the high range (bit n of a high quarter is MSR 0xc0000000 + n). */
export const MSR_HIGH_RANGE_BASE = 0xc0000000;
/** Each quarter covers 0x2000 MSRs. */
export const MSR_BITMAP_RANGE = 0x2000 as const;

/**
 * Where the intercept bit for `access` to `msr` lives in an MSR bitmap, or
 * null when the MSR is outside both ranges (0..0x1fff, 0xc0000000..0xc0001fff)
 * and the access always exits.
 */
export function msrBitmapPosition(msr: number, access: MsrAccess): { byte: number; bit: number } | null {
  let base: number;
  let n: number;
  if (msr >= 0 && msr < MSR_BITMAP_RANGE) {
    base = access === 'read' ? MSR_BITMAP_READ_LOW : MSR_BITMAP_WRITE_LOW;
    n = msr;
  } else if (msr >= MSR_HIGH_RANGE_BASE && msr < MSR_HIGH_RANGE_BASE + MSR_BITMAP_RANGE) {
    base = access === 'read' ? MSR_BITMAP_READ_HIGH : MSR_BITMAP_WRITE_HIGH;
    n = msr - MSR_HIGH_RANGE_BASE;
  } else {
    return null;
  }
  if (!Number.isInteger(n)) return null;
  return { byte: base + (n >>> 3), bit: n & 7 };
}

/**
 * Where a field's bit lives in a VMREAD or VMWRITE bitmap: index = encoding
 * bits 14:0. Null when the encoding has any bit at or above 15 set (or is not
 * a non-negative integer): such a VMREAD/VMWRITE always exits.
 */
export function vmcsBitmapPosition(encoding: number | bigint): { byte: number; bit: number } | null {
  let idx: number;
  if (typeof encoding === 'bigint') {
    if (encoding < 0n || encoding > 0x7fffn) return null;
    idx = Number(encoding);
  } else {
    if (!Number.isInteger(encoding) || encoding < 0 || encoding > 0x7fff) return null;
    idx = encoding;
  }
  return { byte: idx >>> 3, bit: idx & 7 };
}
