import * as state from './state';
import * as ctx from './ctx';
import * as costs from './costs';
import * as memory from './memory';
import * as vmcs12 from './vmcs12';
import * as nested from './nested';
import * as l2 from './l2';
import * as reducer from './reducer';
import * as profile from './profile';
import * as hash from './hash';
import * as paths from './paths';
import * as ops from './ops';
import * as nestedState from './nested-state';
// The TypeScript compiler's CommonJS output re-exports `export *` as one
// getter per name, run on every use of the name through this index; the
// lockstep, the fuzz loop and the commands use such names on every event.
// Copying the names first makes them plain properties (`export *` leaves a
// name the index already has alone); every binding here is a constant.
Object.assign(exports, state, ctx, costs, memory, vmcs12, nested, l2, reducer, profile, hash, paths, ops, nestedState);
export * from './state';
export * from './ctx';
export * from './costs';
export * from './memory';
export * from './vmcs12';
export * from './nested';
export * from './l2';
export * from './reducer';
export * from './profile';
export * from './hash';
export * from './paths';
export { NESTED_PAGE, PAGE_ACCESS, APIC_PAGES, PAGE_NAMES, apicPagesInUse, nestedPageGpa } from './nested-pages';
export type { NestedPage, PageAccess } from './nested-pages';
export { EVMCS_COPY_IN, EVMCS_COPY_OUT } from './evmcs';
export { gpcCheck, gpcInvalidateRange } from './gpc';
export type { Gpc } from './gpc';
// Building blocks of the built-in paths, for plugins, fixtures and generators.
export { mergeMsrBitmap, explainBits } from './areas/msr-bitmap/merge-common';
export { NESTED_CONTEXTS_PER_VCPU, makePfncachePath, nestedContexts } from './areas/guest-pages/pfncache';
export type { NestedContext, NestedContextTable, PfncacheOptions, PfncacheVcpu } from './areas/guest-pages/pfncache';
export type { KvmMapState } from './areas/guest-pages/kvm-map';
export type { ShadowingOptions, ShadowingPath, ShadowVmcsSetup } from './areas/shadow-vmcs/common';
// The operations table (the wide way in) and its built-in entries.
export * from './ops';
export { KVM_OPS } from './kvm-ops';
export * from './nested-state';
// L1's VMX capability MSRs and vmx_control_verify, for generators that draw only the controls KVM offers.
export { kvmVmxMsrs, vmxCapMsr, vmxCapMsrGuest } from './vmx-msrs';
export { nestedCheckControlsVerify, vmxControlVerify } from './entry-checks';
export { EVMPTR_MAP_PENDING, copyEnlightenedToVmcs12, evmcsL0ReadU32, evmptrValid } from './evmcs';
