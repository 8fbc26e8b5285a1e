/**
 * The L1 pages L0 uses for a nested guest (guest-pages area): the index of
 * each in a path's per-page state, and its bit in `inUse` masks.
 */
export const NESTED_PAGE = { MSR_BITMAP: 0, EVMCS: 1, APIC_ACCESS: 2, VAPIC: 3, PI_DESC: 4 } as const;
export type NestedPage = (typeof NESTED_PAGE)[keyof typeof NESTED_PAGE];

/** How L0 touches a nested page: READ and WRITE through its mapping; PEEK a one-off read (kvm_vcpu_read_guest). */
export const PAGE_ACCESS = { READ: 0, WRITE: 1, PEEK: 2 } as const;
export type PageAccess = (typeof PAGE_ACCESS)[keyof typeof PAGE_ACCESS];
