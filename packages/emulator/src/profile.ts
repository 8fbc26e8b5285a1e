/**
 * Paths and profiles. Each area has a reference path and optimized ones; a
 * profile picks one path per area. Built-in profiles are `reference` and
 * `optimized`; on the command line a profile is a name or
 * `area=path,area=path` (areas left out take their reference path). Users
 * can register paths of their own (plugins) before resolving a profile.
 */
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
import { AREA_IDS, AreaId, AreaPath, PathOf } from './areas/types';

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

export interface Profile {
  /** the name it was given by, or its canonical spelling */
  name: string;
  paths: PathOf;
}

/** Register a user's path (a plugin); its name must be new within its area. */
export function registerPath(p: AreaPath): void {
  const a = AREAS[p.area];
  if (!a) throw new Error(`unknown area '${String(p.area)}' (known: ${AREA_IDS.join(', ')})`);
  if (a.paths.has(p.name) && a.paths.get(p.name) !== p) throw new Error(`area ${p.area} already has a path named '${p.name}'`);
  a.paths.set(p.name, p);
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

/** Resolve a profile name or an `area=path,...` spec. Throws ProfileError naming what is wrong. */
export function parseProfile(spec: string): Profile {
  const named = BUILTIN_PROFILES[spec] ?? userProfiles.get(spec);
  const body = named ?? spec;
  const picks: Partial<Record<AreaId, string>> = {};
  for (const part of body.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq < 0) {
      const known = [...Object.keys(BUILTIN_PROFILES), ...userProfiles.keys()];
      throw new ProfileError(`unknown profile '${part}' (profiles: ${known.join(', ')}; or area=path,...)`);
    }
    const a = part.slice(0, eq).trim() as AreaId;
    const p = part.slice(eq + 1).trim();
    const info = AREAS[a];
    if (!info) throw new ProfileError(`unknown area '${a}' (areas: ${AREA_IDS.join(', ')})`);
    if (!info.paths.has(p)) throw new ProfileError(`area ${a} has no path '${p}' (paths: ${[...info.paths.keys()].join(', ')})`);
    if (picks[a] !== undefined && picks[a] !== p) throw new ProfileError(`area ${a} given twice`);
    picks[a] = p;
  }
  const paths = {} as Record<AreaId, AreaPath>;
  for (const a of AREA_IDS) paths[a] = AREAS[a].paths.get(picks[a] ?? AREAS[a].reference)!;
  return { name: named !== undefined ? spec : canonicalName(paths as unknown as PathOf), paths: paths as unknown as PathOf };
}

/** `area=path,...` listing only the areas that differ from the reference. */
export function canonicalName(paths: PathOf): string {
  const parts = AREA_IDS.filter((a) => paths[a].name !== AREAS[a].reference).map((a) => `${a}=${paths[a].name}`);
  return parts.length ? parts.join(',') : 'reference';
}

export function profileAreas(p: Profile): Record<string, unknown> {
  return Object.fromEntries(AREA_IDS.map((a) => [a, p.paths[a].name]));
}
