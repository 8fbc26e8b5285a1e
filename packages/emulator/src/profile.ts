/**
 * Paths, patches and profiles: the wiring module, where the areas' paths
 * meet the core (the core never imports an area; docs/design.md, Layers).
 *
 * Each area has a reference path and optimized ones; a profile picks one
 * path per area, and may apply patches to the operations table (ops.ts). Built-in profiles are `reference` and
 * `optimized`; on the command line a profile is a name or
 * `area=path,area=path,patch=a+b` (areas left out take their reference
 * path). Users can register paths and patches of their own (plugins) before
 * resolving a profile.
 */
import { closestNames } from '@nvx/trace';
import { emulate } from './areas/cpuid-fault/emulate';
import { hardware } from './areas/cpuid-fault/hardware';
import { hardwareLazy } from './areas/cpuid-fault/hardware-lazy';
import { cleanFields } from './areas/evmcs/clean-fields';
import { copyAll } from './areas/evmcs/copy-all';
import { enlightened } from './areas/msr-bitmap/enlightened';
import { merge } from './areas/msr-bitmap/merge';
import { mergeTracked } from './areas/msr-bitmap/merge-tracked';
import { noBitmap } from './areas/msr-bitmap/no-bitmap';
import { shadowCopyAll } from './areas/shadow-vmcs/copy-all';
import { shadowInterceptRo } from './areas/shadow-vmcs/intercept-ro';
import { noShadow } from './areas/shadow-vmcs/none';
import { fresh } from './areas/guest-pages/fresh';
import { kvmMap } from './areas/guest-pages/kvm-map';
import { pfncache, pfncacheCtx } from './areas/guest-pages/pfncache';
import { KVM_OPS } from './kvm-ops';
import { OP_NAMES, OP_PARAMS, OpName, Patch, Profile, applyPatches } from './ops';
import { AREA_IDS, AreaId, AreaPath, PathOf } from './paths';

export type { Profile };

export interface AreaInfo {
  id: AreaId;
  summary: string;
  reference: string;
  optimized: string;
  paths: Map<string, AreaPath>;
}

function area(id: AreaId, summary: string, reference: AreaPath, optimized: string, ...rest: AreaPath[]): AreaInfo {
  const paths = new Map<string, AreaPath>();
  for (const p of [reference, ...rest]) paths.set(p.name, p);
  return { id, summary, reference: reference.name, optimized, paths };
}

export const AREAS: Record<AreaId, AreaInfo> = {
  'msr-bitmap': area('msr-bitmap', 'MSR bitmaps for L2: merged vmcs01+vmcs12, tracked, enlightened (seeds 001, 000)', noBitmap, 'enlightened', merge, mergeTracked, enlightened),
  evmcs: area('evmcs', 'enlightened VMCS: copy only dirty clean-field groups (seeds 000, 003)', copyAll, 'clean-fields', cleanFields),
  'shadow-vmcs': area('shadow-vmcs', 'shadow VMCS for L1\'s VMREAD/VMWRITE; intercept writes to read-only fields and mirror them (seed 002)', noShadow, 'intercept-ro', shadowCopyAll, shadowInterceptRo),
  'guest-pages': area('guest-pages', 'the L1 pages L0 uses for L2 (MSR bitmap, eVMCS, APIC pages): mapped per entry, or in invalidation-aware gfn-to-pfn caches, per L2 (seed 003)', fresh, 'pfncache-ctx', kvmMap, pfncache, pfncacheCtx),
  'cpuid-fault': area('cpuid-fault', 'CPUID faulting for the guest: emulated at every CPUID exit, or in hardware with MSR 0x140 switched at load and put, or only when the host needs it (seed 004)', emulate, 'hardware-lazy', hardware, hardwareLazy),
};


/** Register a user's path (a plugin); its name must be new within its area. */
export function registerPath(p: AreaPath): void {
  const a = AREAS[p.area];
  if (!a) throw new Error(`unknown area '${String(p.area)}' (known: ${AREA_IDS.join(', ')})`);
  if (a.paths.has(p.name) && a.paths.get(p.name) !== p) throw new Error(`area ${p.area} already has a path named '${p.name}'`);
  a.paths.set(p.name, p);
}

/** Patches by name (plugins register theirs): `patch=<name>` in a profile. */
export const PATCHES = new Map<string, Patch>();

/** A name a profile spec can carry (`,`, `=` and `+` separate its parts). */
const PATCH_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * Register a patch (a plugin's); its name must be new. Throws naming what is
 * wrong: an operation the table does not have (with the closest names), or
 * a wrapper that is not a function.
 */
export function registerPatch(p: Patch): void {
  if (!PATCH_NAME_RE.test(p.name)) throw new Error(`patch name '${p.name}': letters, digits, '.', '_' and '-'`);
  if (PATCHES.has(p.name) && PATCHES.get(p.name) !== p) throw new Error(`there is already a patch named '${p.name}'`);
  for (const name of Object.keys(p.ops)) {
    if (!(name in OP_PARAMS)) throw new Error(`patch '${p.name}': no operation '${name}'${closestOps(name)}`);
    if (typeof (p.ops as Record<string, unknown>)[name] !== 'function') throw new Error(`patch '${p.name}': ${name} is not a function (orig) => (${OP_PARAMS[name as OpName].join(', ')}) => ...`);
  }
  PATCHES.set(p.name, p);
}

/** Forget a patch (a reloaded plugin replaces its own). */
export function unregisterPatch(name: string): void {
  PATCHES.delete(name);
}

/** " (did you mean a, b?)" for a name that is not an operation, or "". */
export function closestOps(name: string): string {
  const near = closestNames(name, OP_NAMES);
  return near.length ? ` (did you mean ${near.join(', ')}?)` : ' (see `nvx paths` for the operations)';
}

export const BUILTIN_PROFILES: Record<string, string> = {
  reference: '',
  optimized: AREA_IDS.map((a) => `${a}=${AREAS[a].optimized}`).join(','),
  kvm: 'msr-bitmap=enlightened,evmcs=clean-fields,shadow-vmcs=intercept-ro,guest-pages=kvm-map,cpuid-fault=emulate',
};

/** The upstream kernel the `kvm` profile and the common code model (arch/x86/kvm/vmx/nested.c and friends). */
export const KVM_MODELLED_KERNEL = 'Linux v6.13';

/**
 * Per area: the path `kvm` takes, and where the seeds' series that upstream
 * has not merged would behave differently (docs/kvm-profile.md has more).
 */
export const KVM_PROFILE_NOTES: Record<AreaId, string> = {
  'msr-bitmap': 'enlightened = nested_vmx_prepare_msr_bitmap: merge at every entry, skipped only with an eVMCS, its msr_bitmap enlightenment and the MSR_BITMAP clean bit (upstream since 5.17); merge-tracked (seed 001 steps 4-5, not upstream) also skips when L1 did not write its bitmap page',
  evmcs: 'clean-fields = copy_enlightened_to_vmcs12 with hv_clean_fields (upstream); seeds 000 and 003 change nothing here',
  'shadow-vmcs': 'intercept-ro = upstream since 5.3 (seed 002 merged): read-only fields shadowed for VMREAD, VMWRITE always exits',
  'guest-pages': "kvm-map = kvm_vcpu_map at nested entry, unmap at exit, the eVMCS mapped until released (upstream); seed 003's gfn-to-pfn caches (pfncache, pfncache-ctx, not upstream) follow memslot changes and migrations that kvm-map does not see",
  'cpuid-fault': "emulate = kvm_emulate_cpuid at every CPUID exit, plus seed 004's patch 1 (clear the host task's bit 0 while the guest runs), which is not upstream: upstream leaks the VMM thread's own faulting into the guest (fixture broken-emulate-leaks-host); hardware and hardware-lazy are the unmerged series",
};

const userProfiles = new Map<string, string>();

/** Name a profile spec, e.g. defineProfile('tracked', 'msr-bitmap=merge-tracked'). */
export function defineProfile(name: string, spec: string): void {
  parseProfile(spec); // fail early
  userProfiles.set(name, spec);
}

export class ProfileError extends Error {}

/** Resolve a profile name or an `area=path,...,patch=a+b` spec. Throws ProfileError naming what is wrong. */
export function parseProfile(spec: string): Profile {
  const named = BUILTIN_PROFILES[spec] ?? userProfiles.get(spec);
  const body = named ?? spec;
  const picks: Partial<Record<AreaId, string>> = {};
  let patchNames: string[] | null = null;
  let afterPatch = false;
  for (const part of body.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    // `--profiles` lists write a profile's parts joined by '+' and turn them into ',': `patch=a+b` arrives
    // as `patch=a,b`, so a bare name right after the patch part is one more patch.
    if (eq < 0 && afterPatch && patchNames !== null) {
      patchNames.push(part);
      checkPatch(part);
      continue;
    }
    afterPatch = false;
    if (eq < 0) {
      const known = [...Object.keys(BUILTIN_PROFILES), ...userProfiles.keys()];
      throw new ProfileError(`unknown profile '${part}' (profiles: ${known.join(', ')}; or area=path,...,patch=name)`);
    }
    const key = part.slice(0, eq).trim();
    const p = part.slice(eq + 1).trim();
    if (key === 'patch') {
      if (patchNames !== null) throw new ProfileError(`patch given twice (several patches: patch=a+b)`);
      patchNames = p.split('+').map((x) => x.trim());
      for (const name of patchNames) checkPatch(name);
      afterPatch = true;
      continue;
    }
    const a = key as AreaId;
    const info = AREAS[a];
    if (!info) throw new ProfileError(`unknown area '${a}' (areas: ${AREA_IDS.join(', ')}; or patch=name)`);
    if (!info.paths.has(p)) throw new ProfileError(`area ${a} has no path '${p}' (paths: ${[...info.paths.keys()].join(', ')})`);
    if (picks[a] !== undefined && picks[a] !== p) throw new ProfileError(`area ${a} given twice`);
    picks[a] = p;
  }
  const paths = {} as Record<AreaId, AreaPath>;
  for (const a of AREA_IDS) paths[a] = AREAS[a].paths.get(picks[a] ?? AREAS[a].reference)!;
  const patches = patchNames ?? [];
  // Each wrapper bound once, here: the hot loop calls the resulting functions directly.
  const ops = patches.length ? applyPatches(KVM_OPS, patches.map((n) => PATCHES.get(n)!)) : KVM_OPS;
  return { name: named !== undefined ? spec : canonicalName(paths as unknown as PathOf, patches), paths: paths as unknown as PathOf, patches, ops };
}

function checkPatch(name: string): void {
  if (PATCHES.has(name)) return;
  const known = [...PATCHES.keys()];
  throw new ProfileError(`no patch '${name}' (${known.length ? `patches: ${known.join(', ')}` : 'no patch is loaded: --path-module <file> loads one'})`);
}

/** `area=path,...` listing only the areas that differ from the reference, then `patch=a+b`. */
export function canonicalName(paths: PathOf, patches: readonly string[] = []): string {
  const parts = AREA_IDS.filter((a) => paths[a].name !== AREAS[a].reference).map((a) => `${a}=${paths[a].name}`);
  if (patches.length) parts.push(`patch=${patches.join('+')}`);
  return parts.length ? parts.join(',') : 'reference';
}

export function profileAreas(p: Profile): Record<string, unknown> {
  return Object.fromEntries(AREA_IDS.map((a) => [a, p.paths[a].name]));
}
