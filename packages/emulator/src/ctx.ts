/**
 * The context a recipe runs in: how to write typed arrays, where to count
 * costs, and which path each area uses.
 *
 * One body of code runs at two speeds (DESIGN.md, Speed): under immer, where
 * a typed array must be replaced whole (immer neither drafts nor freezes
 * them, so an in-place write would silently change older states), and on a
 * private mutable working copy, where writing in place is safe and fast.
 */
import type { Costs } from './costs';
import type { Profile } from './ops';

export interface Ctx {
  /** true on a private mutable working copy; false inside immer's produce */
  readonly inPlace: boolean;
  /** typed arrays already copied during this produce (written in place from then on) */
  readonly fresh: WeakSet<object> | null;
  readonly profile: Profile;
  /** cost counters, accumulated */
  readonly cost: Costs;
}

type ArrayKeys<T> = { [K in keyof T]: T[K] extends Uint8Array | BigUint64Array ? K : never }[keyof T];

/**
 * The typed array at `holder[key]`, ready to be written: the array itself on
 * a mutable working copy, otherwise a copy installed in its place (once per
 * produce).
 */
export function writable<T extends object, K extends ArrayKeys<T>>(ctx: Ctx, holder: T, key: K): T[K] {
  const arr = holder[key] as unknown as Uint8Array;
  if (ctx.inPlace || ctx.fresh!.has(arr)) return arr as unknown as T[K];
  const copy = arr.slice();
  ctx.fresh!.add(copy);
  (holder as Record<K, unknown>)[key] = copy;
  return copy as unknown as T[K];
}

/** Same for a typed array stored in a record (host pages by pfn). */
export function writableEntry(ctx: Ctx, rec: Record<number, Uint8Array>, k: number, make: () => Uint8Array): Uint8Array {
  const arr = rec[k];
  if (arr === undefined) {
    const a = make();
    ctx.fresh?.add(a);
    rec[k] = a;
    return a;
  }
  if (ctx.inPlace || ctx.fresh!.has(arr)) return arr;
  const copy = arr.slice();
  ctx.fresh!.add(copy);
  rec[k] = copy;
  return copy;
}
