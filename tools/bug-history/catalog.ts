/**
 * The bug-history set: real bugs from KVM's history in nested VMX, the
 * enlightened VMCS, the merged MSR bitmaps, shadow VMCS, the gfn-to-pfn
 * caches and CPUID faulting, each with the commit that fixed it and, where
 * nvx can express it, a plugin that puts the bug back into nvx's model and a
 * short trace on which it diverges from `reference`.
 *
 * `test/bug-history.test.ts` checks every entry whose status is 'diverges':
 * the plugin loads, its profile diverges from reference on the trace (a bug
 * divergence, not a permitted one), and the trace runs clean, every `expect`
 * holding, under each correct profile listed beside it. README.md is the
 * same list as a table.
 */

export type Status =
  /** plugin and trace exist; the test checks both */
  | 'diverges'
  /** expressible once the operations table lets a plugin patch this KVM function; the plan is in `plan` */
  | 'planned'
  /** the model has nothing the bug could change; `why` says what is missing */
  | 'not-expressible';

export interface BugEntry {
  /** the fixing commit, 12 hex digits, as it appears in Fixes: tags */
  commit: string;
  /** the fixing commit's subject */
  subject: string;
  /** false when the id could not be confirmed in the sources consulted (the subject is) */
  idConfirmed: boolean;
  /** what went wrong, in one or two sentences */
  what: string;
  /** the KVM function the bug lived in */
  kvmFunction: string;
  /** where nvx's model has it: an area (area path plugin) or an operation of the common code */
  where: string;
  status: Status;
  /** the plugin module, relative to tools/bug-history */
  plugin?: string;
  /** the profile that selects the plugin */
  profile?: string;
  /** the witness trace, relative to tools/bug-history */
  trace?: string;
  /** profiles that must run the trace clean (no divergence from reference, every expect holding) */
  correct?: readonly string[];
  /** for 'planned': how the plugin will put the bug back */
  plan?: string;
  /** for 'not-expressible': what the model lacks */
  why?: string;
}

export const BUG_HISTORY: readonly BugEntry[] = [
  // ---- merged MSR bitmaps (nested_vmx_prepare_msr_bitmap) ----
  {
    commit: 'acff78477b9b',
    subject: "KVM: x86: nVMX: close leak of L0's x2APIC MSRs (CVE-2019-3887)",
    idConfirmed: true,
    what: "The merge copied L1's x2APIC read intercepts into vmcs02 under APIC-register virtualization without checking virtualize-x2APIC mode, so L2 read L0's x2APIC MSRs directly.",
    kvmFunction: 'nested_vmx_prepare_msr_bitmap',
    where: 'msr-bitmap',
    status: 'diverges',
    plugin: 'plugins/cve-2019-3887-x2apic-reg-virt.ts',
    profile: 'msr-bitmap=bug-acff78477b9b',
    trace: 'traces/cve-2019-3887-x2apic-reg-virt.nvx',
    correct: ['msr-bitmap=merge', 'msr-bitmap=merge-tracked', 'optimized'],
  },
  {
    commit: 'd048c098218e',
    subject: 'KVM: nVMX: fix msr bitmaps to prevent L2 from accessing L0 x2APIC',
    idConfirmed: false,
    what: 'The merge only ever disabled x2APIC intercepts: after L1 turned its APIC virtualization controls off again, the intercepts opened for an earlier entry stayed open and L2 reached L0\'s x2APIC.',
    kvmFunction: 'nested_vmx_merge_msr_bitmap',
    where: 'msr-bitmap',
    status: 'diverges',
    plugin: 'plugins/x2apic-intercepts-only-cleared.ts',
    profile: 'msr-bitmap=bug-d048c098218e',
    trace: 'traces/x2apic-intercepts-only-cleared.nvx',
    correct: ['msr-bitmap=merge', 'msr-bitmap=merge-tracked', 'optimized'],
  },
  {
    commit: '67f4b9969c30',
    subject: 'KVM: nVMX: Handle dynamic MSR intercept toggling',
    idConfirmed: true,
    what: 'The merge of the pass-through MSRs only disabled intercepts, so an intercept L1 or L0 added after an MSR had been passed through was never merged into vmcs02.',
    kvmFunction: 'nested_vmx_prepare_msr_bitmap',
    where: 'msr-bitmap',
    status: 'diverges',
    plugin: 'plugins/msr-intercepts-only-cleared.ts',
    profile: 'msr-bitmap=bug-67f4b9969c30',
    trace: 'traces/msr-intercepts-only-cleared.nvx',
    correct: ['msr-bitmap=merge', 'msr-bitmap=merge-tracked', 'optimized'],
  },
  {
    commit: 'c73f4c998e1f',
    subject: 'KVM: x86: nVMX: fix x2APIC VTPR read intercept',
    idConfirmed: true,
    what: 'The merge opened only the write intercept of the x2APIC TPR, so an L2 read of VTPR exited to L0, which answered from L1\'s APIC instead of L2\'s virtual-APIC page.',
    kvmFunction: 'nested_vmx_prepare_msr_bitmap',
    where: 'msr-bitmap',
    status: 'not-expressible',
    why: "The model defines L0's emulation of an x2APIC access L1 does not intercept by its architectural meaning (l2MsrRead: vmcs12's virtual-APIC page), which its reference path (no-bitmap, every access exits) relies on; KVM emulates it against L1's APIC (kvm_x2apic_msr_read), which is what made the missing pass-through wrong. With the model's L0 the extra exit is only a cost, and a plugin would have to change that emulation as well, a second difference the bug did not make.",
  },
  {
    commit: '7dfbc624eb57',
    subject: 'KVM: nVMX: Query current VMCS when determining if MSR bitmaps are in use',
    idConfirmed: true,
    what: 'vmx_{enable,disable}_intercept_for_msr looked at the loaded VMCS (vmcs02 while L2 runs) to decide whether MSR bitmaps are in use, so a vmcs01 intercept change made while L2 ran without bitmaps was dropped.',
    kvmFunction: 'vmx_disable_intercept_for_msr / vmx_enable_intercept_for_msr',
    where: 'vmcs01 intercept change (vmx_set_intercept_for_msr)',
    status: 'not-expressible',
    why: "The model decides who owns a register from vmcs01's bitmap itself, so a vmcs01 change that is lost leaves vmcs01, vmcs02 and the registers consistent: nothing L1 or L2 reads changes.",
  },

  // ---- enlightened VMCS (hyperv.c / nested.c eVMCS handling) ----
  {
    commit: 'b7685cfd5e96',
    subject: 'KVM: nVMX: Force enlightened VMCS sync from nested_vmx_failValid()',
    idConfirmed: true,
    what: 'A VMfailValid wrote VM_INSTRUCTION_ERROR to vmcs12 only; with an eVMCS in use nothing copied it to the eVMCS, so L1 read a stale error there.',
    kvmFunction: 'nested_vmx_fail',
    where: 'operation nested_vmx_fail',
    status: 'diverges',
    plugin: 'plugins/evmcs-fail-not-synced.ts',
    profile: 'patch=bug-b7685cfd5e96',
    trace: 'traces/evmcs-fail-not-synced.nvx',
    correct: ['reference', 'evmcs=clean-fields', 'optimized'],
  },
  {
    commit: '3b19b81acf30',
    subject: 'KVM: nVMX: Release enlightened VMCS on VMCLEAR',
    idConfirmed: true,
    what: 'VMCLEAR of the eVMCS in use left it mapped and current, so the next enlightened entry used it without treating it as a new eVMCS.',
    kvmFunction: 'nested_evmcs_handle_vmclear',
    where: 'operation handle_vmclear',
    status: 'diverges',
    plugin: 'plugins/evmcs-kept-after-vmclear.ts',
    profile: 'evmcs=clean-fields,patch=bug-3b19b81acf30',
    trace: 'traces/evmcs-kept-after-vmclear.nvx',
    correct: ['evmcs=clean-fields', 'optimized'],
  },
  {
    commit: '02761716801d',
    subject: 'KVM: nVMX: Release eVMCS when enlightened VMENTRY was disabled',
    idConfirmed: true,
    what: 'When L1 stopped naming an eVMCS in its VP assist page, KVM kept the old eVMCS current and entered with it.',
    kvmFunction: 'nested_vmx_handle_enlightened_vmptrld',
    where: 'operation nested_vmx_handle_enlightened_vmptrld',
    status: 'diverges',
    plugin: 'plugins/evmcs-kept-after-vp-assist-cleared.ts',
    profile: 'patch=bug-02761716801d',
    trace: 'traces/evmcs-kept-after-vp-assist-cleared.nvx',
    correct: ['reference', 'evmcs=clean-fields', 'optimized'],
  },
  {
    commit: 'e3fd8bda412e',
    subject: 'KVM: nVMX: properly handle errors in nested_vmx_handle_enlightened_vmptrld()',
    idConfirmed: true,
    what: 'When the enlightened VMPTRLD at VMLAUNCH/VMRESUME failed (eVMCS not mappable, wrong revision), KVM returned to L1 without completing the instruction or reporting an error, so L1 retried it forever; now #UD or VMfailInvalid, as on Hyper-V.',
    kvmFunction: 'nested_vmx_run / nested_vmx_handle_enlightened_vmptrld',
    where: 'operation nested_vmx_run',
    status: 'diverges',
    plugin: 'plugins/evmptrld-error-ignored.ts',
    profile: 'patch=bug-e3fd8bda412e',
    trace: 'traces/evmptrld-error-ignored.nvx',
    correct: ['reference', 'evmcs=clean-fields', 'optimized'],
  },
  {
    commit: 'dc313385529f',
    subject: 'KVM: nVMX: Reset eVMCS clean fields data from prepare_vmcs02()',
    idConfirmed: true,
    what: 'KVM set every eVMCS clean bit whenever it copied vmcs12 into the eVMCS, i.e. while L1 owns the eVMCS (after a failed entry, at nested-state save), changing data under a running Hyper-V; now only a successful entry sets them.',
    kvmFunction: 'nested_sync_vmcs12_to_shadow / prepare_vmcs02',
    where: 'operation nested_sync_vmcs12_to_shadow',
    status: 'diverges',
    plugin: 'plugins/evmcs-clean-set-at-sync.ts',
    profile: 'patch=bug-dc313385529f',
    trace: 'traces/evmcs-clean-set-at-sync.nvx',
    correct: ['reference', 'evmcs=clean-fields', 'optimized'],
  },
  {
    commit: 'd6bf71a18c74',
    subject: "KVM: nVMX: Ignore 'hv_clean_fields' data when eVMCS data is copied in vmx_get_nested_state()",
    idConfirmed: true,
    what: 'Saving nested state copied the eVMCS to vmcs12 honouring the clean fields, which L1 need not keep up to date between entries, so the saved vmcs12 missed L1\'s latest changes.',
    kvmFunction: 'vmx_get_nested_state',
    where: 'evmcs (getNestedState: its part of vmx_get_nested_state)',
    status: 'diverges',
    plugin: 'plugins/evmcs-save-honours-clean.ts',
    profile: 'evmcs=bug-d6bf71a18c74',
    trace: 'traces/evmcs-save-honours-clean.nvx',
    correct: ['reference', 'evmcs=clean-fields', 'optimized'],
  },
  {
    commit: '8629b625e015',
    subject: 'KVM: nVMX: Request to sync eVMCS from VMCS12 after migration',
    idConfirmed: true,
    what: 'After restoring nested state with an eVMCS, KVM did not request the vmcs12 -> eVMCS sync, so L1 read stale eVMCS fields after migration.',
    kvmFunction: 'vmx_set_nested_state / nested_get_evmcs_page',
    where: 'operation vmx_get_nested_state_pages (the witness edits the saved vmcs12: nvx syncs the eVMCS within the exit event, so the pending-sync window of a real save is not reachable)',
    status: 'diverges',
    plugin: 'plugins/evmcs-not-synced-after-restore.ts',
    profile: 'patch=bug-8629b625e015',
    trace: 'traces/evmcs-not-synced-after-restore.nvx',
    correct: ['reference', 'evmcs=clean-fields', 'optimized'],
  },

  // ---- VMREAD / VMWRITE and shadow VMCS ----
  {
    commit: 'b643780562af',
    subject: 'KVM: nVMX: Intercept VMWRITEs to GUEST_{CS,SS}_AR_BYTES',
    idConfirmed: true,
    what: 'CPUs that drop the reserved AR-byte bits on VMWRITE made L1 see the stripped value through the shadow VMCS while emulated VMWRITEs kept the full value; KVM now masks every emulated AR_BYTES write.',
    kvmFunction: 'handle_vmwrite',
    where: 'operation handle_vmwrite',
    status: 'diverges',
    plugin: 'plugins/ar-bytes-not-masked.ts',
    profile: 'patch=bug-b643780562af',
    trace: 'traces/ar-bytes-not-masked.nvx',
    correct: ['reference', 'shadow-vmcs=copy-all', 'shadow-vmcs=intercept-ro', 'optimized'],
  },
  {
    commit: '693e02cc2409',
    subject: 'kvm: nVMX: VMWRITE checks unsupported field before read-only field',
    idConfirmed: true,
    what: 'handle_vmwrite failed a VMWRITE to an unsupported field whose encoding says read-only with error 13 (read-only component) instead of 12 (unsupported component).',
    kvmFunction: 'handle_vmwrite',
    where: 'operation handle_vmwrite',
    status: 'diverges',
    plugin: 'plugins/vmwrite-read-only-before-unsupported.ts',
    profile: 'patch=bug-693e02cc2409',
    trace: 'traces/vmwrite-read-only-before-unsupported.nvx',
    correct: ['reference', 'optimized'],
  },
  {
    commit: 'dd2d6042b7f4',
    subject: 'kvm: nVMX: VMWRITE checks VMCS-link pointer before VMCS field',
    idConfirmed: true,
    what: 'For a VMWRITE in L2 with an invalid VMCS-link pointer, KVM checked the field first and gave VMfailValid where the SDM gives VMfailInvalid.',
    kvmFunction: 'handle_vmwrite',
    where: 'operation handle_vmwrite (L2, through the VMCS-link pointer)',
    status: 'diverges',
    plugin: 'plugins/l2-vmwrite-field-before-link-pointer.ts',
    profile: 'patch=bug-dd2d6042b7f4',
    trace: 'traces/l2-vmwrite-field-before-link-pointer.nvx',
    correct: ['reference', 'optimized'],
  },
  {
    commit: '6d894f498f5d',
    subject: 'KVM: nVMX: vmread/vmwrite: Use shadow vmcs12 if running L2',
    idConfirmed: true,
    what: 'VMREAD and VMWRITE executed by L2 under L1\'s VMCS shadowing were emulated against vmcs12 instead of the shadow vmcs12 at the VMCS-link pointer.',
    kvmFunction: 'handle_vmread / handle_vmwrite',
    where: 'operation handle_vmread (L2)',
    status: 'diverges',
    plugin: 'plugins/l2-vmread-from-vmcs12.ts',
    profile: 'patch=bug-6d894f498f5d',
    trace: 'traces/l2-vmread-from-vmcs12.nvx',
    correct: ['reference', 'optimized'],
  },

  // ---- VMX instructions ----
  {
    commit: '587d7e72aedc',
    subject: 'kvm: nVMX: VMCLEAR should not cause the vCPU to shut down',
    idConfirmed: true,
    what: 'A VMCLEAR whose operand page was not in guest memory (nested_get_page failed) made KVM request a triple fault, shutting the vCPU down (KVM_EXIT_SHUTDOWN), instead of completing the instruction without the launch-state write.',
    kvmFunction: 'handle_vmclear',
    where: 'operation handle_vmclear (outcome userspace shutdown: KVM_EXIT_SHUTDOWN)',
    status: 'diverges',
    plugin: 'plugins/vmclear-shuts-down.ts',
    profile: 'patch=bug-587d7e72aedc',
    trace: 'traces/vmclear-shuts-down.nvx',
    correct: ['reference', 'optimized', 'kvm'],
  },

  {
    commit: '3573e22cfeca',
    subject: 'KVM: nVMX: additional checks on vmxon region',
    idConfirmed: true,
    what: 'VMXON did not check its region: an unaligned pointer, one beyond MAXPHYADDR or a region without the VMCS revision identifier entered VMX operation instead of failing VMfailInvalid.',
    kvmFunction: 'handle_vmon',
    where: 'operation handle_vmxon',
    status: 'diverges',
    plugin: 'plugins/vmxon-region-unchecked.ts',
    profile: 'patch=bug-3573e22cfeca',
    trace: 'traces/vmxon-region-unchecked.nvx',
    correct: ['reference', 'optimized'],
  },

  // ---- nested pages (nested_get_vmcs12_pages, kvm_vcpu_map) ----
  {
    commit: '671ddc700fd0',
    subject: "KVM: nVMX: Don't leak L1 MMIO regions to L2",
    idConfirmed: true,
    what: 'When vmcs12\'s APIC-access address was not backed by memory, KVM cleared APIC-access virtualization in vmcs02 and ran L2 anyway, so L2 reached whatever MMIO L1 had at that address; now the entry fails with KVM_EXIT_INTERNAL_ERROR.',
    kvmFunction: 'nested_get_vmcs12_pages',
    where: 'operation nested_get_vmcs12_pages',
    status: 'diverges',
    plugin: 'plugins/apic-access-mmio-leak.ts',
    profile: 'patch=bug-671ddc700fd0',
    trace: 'traces/apic-access-mmio-leak.nvx',
    correct: ['reference', 'optimized'],
  },

  {
    commit: '5f18542ecfa4',
    subject: 'KVM: nVMX: Unconditionally clear nested.pi_pending on nested VM-Enter',
    idConfirmed: false,
    what: 'nested.pi_pending was cleared at a nested VM-entry only when vmcs12 used posted interrupts; left set by an entry into an L2 without them, it made KVM process a later L2\'s descriptor without a notification for it.',
    kvmFunction: 'prepare_vmcs02_early / vmx_complete_nested_posted_interrupt',
    where: 'operation vmx_complete_nested_posted_interrupt',
    status: 'diverges',
    plugin: 'plugins/pi-pending-not-cleared.ts',
    profile: 'patch=bug-pi-pending-not-cleared',
    trace: 'traces/pi-pending-not-cleared.nvx',
    correct: ['reference', 'guest-pages=pfncache', 'optimized'],
  },
  {
    commit: '966eefb89657',
    subject: "KVM: nVMX: Disable vmcs02 posted interrupts if vmcs12 PID isn't mappable",
    idConfirmed: true,
    what: 'When the posted-interrupt descriptor vmcs12 names could not be mapped, KVM left posted-interrupt processing on in vmcs02; since the fix it runs L2 with posted interrupts off.',
    kvmFunction: 'nested_get_vmcs12_pages',
    where: 'nested pages (posted-interrupt descriptor)',
    status: 'not-expressible',
    why: 'A nested entry whose descriptor no memslot backs is answered `ignored: not modelled` (unbackedVmcs12Page in nested.ts): neither KVM\'s behaviour since the fix (L2 runs with posted-interrupt processing off, the internal error deferred until L0 touches the descriptor) nor the old one is modelled.',
  },
  {
    commit: '6b6977117f50',
    subject: 'KVM: nVMX: Fix races when sending nested PI while dest enters/leaves L2',
    idConfirmed: true,
    what: 'A nested posted-interrupt notification sent while the target vCPU was entering or leaving L2 could arrive in the host and be lost until the next event.',
    kvmFunction: 'vmx_deliver_nested_posted_interrupt',
    where: 'posted interrupts (concurrency)',
    status: 'not-expressible',
    why: 'Events are applied whole: a notification is never in flight while the target vCPU enters or leaves L2.',
  },

  // ---- gfn-to-pfn caches (virt/kvm/pfncache.c) ----
  {
    commit: '58cd407ca4c6',
    subject: 'KVM: Fix multiple races in gfn=>pfn cache refresh',
    idConfirmed: true,
    what: 'A refresh could resolve a pfn while an mmu-notifier invalidation of that page was in progress and install it as valid, so the cache used a page the host was taking away.',
    kvmFunction: 'hva_to_pfn_retry / kvm_gpc_refresh',
    where: 'operation kvm_gpc_refresh (pfncache), with host.mmu-invalidate-start/end',
    status: 'diverges',
    plugin: 'plugins/gpc-refresh-ignores-invalidation.ts',
    profile: 'guest-pages=pfncache,patch=bug-58cd407ca4c6',
    trace: 'traces/gpc-refresh-ignores-invalidation.nvx',
    correct: ['guest-pages=pfncache', 'guest-pages=pfncache-ctx', 'optimized'],
  },
  {
    commit: '3ba2c95ea180',
    subject: 'KVM: Do not incorporate page offset into gfn=>pfn cache user address',
    idConfirmed: true,
    what: 'The refresh added the gpa\'s in-page offset to the cache\'s user address (gpc->uhva += page_offset), so a refresh to another offset in the same page saw a new uhva and resolved the page again (hva_to_pfn) instead of reusing the translation; the fix keeps uhva page aligned, mainly to simplify the race fixes that followed.',
    kvmFunction: '__kvm_gpc_refresh',
    where: 'operation kvm_gpc_refresh (in-page offsets)',
    status: 'not-expressible',
    why: 'Expressible as a patch of kvm_gpc_refresh (the model keeps the offset beside uhva, Gpc.offset), but the old behaviour only costs: an unaligned uhva still lies in the invalidated range, hva_to_pfn of it finds the same page, and khva is rebuilt with the new offset, so nothing L1, L2 or the host reads changes: only the refresh and mapping counters would. The follow-up bug, a refresh to a new offset in the same page that kept the old khva offset once uhva was aligned, is a separate fix.',
  },
  {
    commit: '93984f19e7bc',
    subject: 'KVM: Fully serialize gfn=>pfn cache refresh via mutex',
    idConfirmed: true,
    what: 'Two refreshes of one cache could interleave; one could see a fresh memslot generation left by the other and skip the hva-to-pfn update.',
    kvmFunction: 'kvm_gpc_refresh',
    where: 'gpc refresh (concurrency)',
    status: 'not-expressible',
    why: 'Each event is applied whole; two refreshes of one cache never interleave in the model.',
  },
  {
    commit: '3dddf65b4f4c',
    subject: 'KVM: Put the extra pfn reference when reusing a pfn in the gpc cache',
    idConfirmed: true,
    what: 'A refresh that found the same pfn again kept the extra page reference hva_to_pfn took, leaking the page.',
    kvmFunction: 'hva_to_pfn_retry',
    where: 'gpc refresh (page references)',
    status: 'not-expressible',
    why: 'Host page reference counts are not modelled: a leaked reference changes nothing L1, L2 or the host can read.',
  },
  {
    commit: '85165781c5d9',
    subject: 'KVM: Do not pin pages tracked by gfn=>pfn caches',
    idConfirmed: true,
    what: 'The caches pinned the pages they tracked although the mmu notifier already invalidates them, keeping pages from being migrated.',
    kvmFunction: 'hva_to_pfn_retry',
    where: 'guest-pages (pins)',
    status: 'not-expressible',
    why: 'A pinned page is not migrated, but a zap still invalidates the cache, so L1 and L2 see the same values either way: only host page placement differs, which the model does not compare.',
  },

  {
    commit: 'ecbcf030b456',
    subject: 'KVM: Reject attempts to consume or refresh inactive gfn_to_pfn_cache',
    idConfirmed: true,
    what: 'A gfn-to-pfn cache could be checked as valid or refreshed after it was deactivated, racing with the deactivation.',
    kvmFunction: 'kvm_gpc_check / kvm_gpc_refresh',
    where: 'operations kvm_gpc_check / kvm_gpc_refresh',
    status: 'not-expressible',
    why: 'kvm_gpc_check and kvm_gpc_refresh are operations a patch can change, but the race needs concurrency: kvm_gpc_deactivate also clears valid, so without a refresh running beside it (KVM drops gpc->lock around hva_to_pfn) a check of an inactive cache fails anyway, and every use in the model goes through kvm_gpc_activate first (nested_gpc_lock). Each event is applied whole, so no refresh is in flight during a deactivation.',
  },

  // ---- CPUID faulting ----
  {
    commit: '690dc03859e7',
    subject: 'KVM: x86: Ignore cpuid faulting in SMM',
    idConfirmed: true,
    what: 'KVM injected #GP for a CPUID the guest executed at CPL > 0 in SMM when it had CPUID faulting enabled; faulting does not apply in SMM.',
    kvmFunction: 'kvm_emulate_cpuid',
    where: 'cpuid-fault',
    status: 'diverges',
    plugin: 'plugins/cpuid-fault-in-smm.ts',
    profile: 'cpuid-fault=bug-690dc03859e7',
    trace: 'traces/cpuid-fault-in-smm.nvx',
    correct: ['reference', 'cpuid-fault=hardware', 'cpuid-fault=hardware-lazy'],
  },

  {
    commit: '9d2dcfb82db1',
    subject: 'KVM: x86: Remove ordering check b/w MSR_PLATFORM_INFO and MISC_FEATURES_ENABLES',
    idConfirmed: true,
    what: 'KVM refused a userspace write clearing the CPUID-faulting bit of MSR_PLATFORM_INFO while the guest had CPUID faulting enabled, so restoring MSRs in KVM\'s own list order could fail.',
    kvmFunction: 'kvm_set_msr_common (MSR_PLATFORM_INFO)',
    where: 'operation do_set_msr (KVM_SET_MSRS, host-initiated)',
    status: 'diverges',
    plugin: 'plugins/platform-info-ordering-check.ts',
    profile: 'patch=bug-9d2dcfb82db1',
    trace: 'traces/platform-info-ordering-check.nvx',
    correct: ['reference', 'cpuid-fault=hardware', 'cpuid-fault=hardware-lazy', 'optimized'],
  },

  // ---- nested state and timers ----
  {
    commit: '52ad7eb3d668',
    subject: 'KVM: nVMX: vmcs12 revision_id is always VMCS12_REVISION even when copied from eVMCS',
    idConfirmed: true,
    what: 'copy_enlightened_to_vmcs12 copied the eVMCS revision into vmcs12, so vmx_set_nested_state refused a vmcs12 that vmx_get_nested_state had produced from an eVMCS.',
    kvmFunction: 'copy_enlightened_to_vmcs12',
    where: 'operation vmx_get_nested_state (the saved vmcs12 header: the model\'s vmcs12 keeps none)',
    status: 'diverges',
    plugin: 'plugins/evmcs-revision-in-vmcs12.ts',
    profile: 'patch=bug-52ad7eb3d668',
    trace: 'traces/evmcs-revision-in-vmcs12.nvx',
    correct: ['reference', 'evmcs=clean-fields', 'optimized'],
  },
  {
    commit: 'f5c7e8425f18',
    subject: 'KVM: nVMX: Always make an attempt to map eVMCS after migration',
    idConfirmed: true,
    what: 'After nested state was restored with an eVMCS, KVM mapped the eVMCS only when L1 next executed VMLAUNCH/VMRESUME, so a nested VM-exit or L1 access before that used no eVMCS (Hyper-V on KVM crashed after migration).',
    kvmFunction: 'nested_get_vmcs12_pages / vmx_get_nested_state_pages',
    where: 'nested_vmx_vmexit with KVM_REQ_GET_NESTED_STATE_PAGES pending (nested state save/restore)',
    status: 'not-expressible',
    why: 'The bug needs a nested VM-exit forced before the first KVM_RUN after the restore processes KVM_REQ_GET_NESTED_STATE_PAGES (a pending event injected at KVM_RUN, kvm_check_nested_events): nested_vmx_vmexit cleared the request and the eVMCS stayed unmapped. In nvx the request is processed at the start of the vCPU\'s next L1 or L2 event and no event forces an L2 -> L1 exit before that (no pending interrupts or NMIs, host.smi is refused while L2 runs), so nested_vmx_vmexit never finds the request pending.',
  },
  {
    commit: 'd51e1d3f6b42',
    subject: "KVM: nVMX: Sync unsync'd vmcs02 state to vmcs12 on migration",
    idConfirmed: true,
    what: 'Saving nested state while L2 ran did not first copy the rarely-synced vmcs02 guest fields into vmcs12, so the saved vmcs12 held stale values.',
    kvmFunction: 'vmx_get_nested_state / sync_vmcs02_to_vmcs12_rare',
    where: 'nested state (save/restore)',
    status: 'not-expressible',
    why: 'KVM_GET_NESTED_STATE is modelled (host.get-nested-state, host.migrate), but the rarely-synced vmcs02 guest fields are not: L2 changes no vmcs12 guest field while it runs (segment, descriptor-table, SYSENTER and pending-debug state are not modelled; L2\'s MSRs travel as KVM_GET/SET_MSRS), so vmcs12 is current in guest mode and there is nothing sync_vmcs02_to_vmcs12_rare could add.',
  },
  {
    commit: 'ecec76885bcf',
    subject: 'KVM: nVMX: unconditionally cancel preemption timer in free_nested (CVE-2019-7221)',
    idConfirmed: true,
    what: 'free_nested left the emulated VMX-preemption timer armed, so it could fire after the nested state was freed.',
    kvmFunction: 'free_nested',
    where: 'VMXOFF / vCPU teardown',
    status: 'not-expressible',
    why: 'The VMX-preemption timer and host timers are not modelled.',
  },

  // ---- more VMX instruction and VM-entry checks, eVMCS (appended) ----
  // id and subject: git.baikalelectronics.ru mirror of mainline (commit f0d73654781560b6b7a629eeb698bece714dad85)
  {
    commit: 'f0d736547815',
    subject: 'nVMX x86: Check VPID value on vmentry of L2 guests',
    idConfirmed: true,
    what: 'Nested VM-entry did not check that the VPID is non-zero when "enable VPID" is set, so L1 could run L2 with VPID 0 (the host\'s) where the SDM fails the entry with VMfailValid 7.',
    kvmFunction: 'nested_check_vm_execution_controls (check_vmentry_prereqs then)',
    where: 'operation nested_vmx_check_controls',
    status: 'diverges',
    plugin: 'plugins/vpid-zero-accepted.ts',
    profile: 'patch=bug-f0d736547815',
    trace: 'traces/vpid-zero-accepted.nvx',
    correct: ['reference', 'optimized'],
  },
  // id and subject: kvm.git post-receive revlist of 2022-01-28 (6cbbaab60ff33f59355492c241318046befd9ffc)
  {
    commit: '6cbbaab60ff3',
    subject: 'KVM: nVMX: Allow VMREAD when Enlightened VMCS is in use',
    idConfirmed: true,
    what: 'With an eVMCS in use current_vmptr stays INVALID_GPA, so handle_vmread answered VMfailInvalid to the VMREADs some Windows builds execute although the TLFS forbids them; now it reads the field from the eVMCS.',
    kvmFunction: 'handle_vmread',
    where: 'operation handle_vmread',
    status: 'diverges',
    plugin: 'plugins/evmcs-vmread-fails.ts',
    profile: 'patch=bug-6cbbaab60ff3',
    trace: 'traces/evmcs-vmread-fails.nvx',
    correct: ['reference', 'evmcs=clean-fields', 'optimized'],
  },
  // id and subject: kvm mailing list, "x86/kvm/nVMCS: fix VMCLEAR when Enlightened VMCS is in use" (June 2019) cites commit 72aeb60c52bf7
  {
    commit: '72aeb60c52bf',
    subject: 'KVM: nVMX: Verify eVMCS revision id match supported eVMCS version on eVMCS VMPTRLD',
    idConfirmed: true,
    what: 'The enlightened VMPTRLD used whatever page the VP assist page named without checking its VersionNumber, so an enlightened VMLAUNCH with a page that is no eVMCS entered L2 instead of failing VMfailInvalid.',
    kvmFunction: 'nested_vmx_handle_enlightened_vmptrld',
    where: 'operation nested_vmx_handle_enlightened_vmptrld',
    status: 'diverges',
    plugin: 'plugins/evmcs-revision-unchecked.ts',
    profile: 'patch=bug-72aeb60c52bf',
    trace: 'traces/evmcs-revision-unchecked.nvx',
    correct: ['reference', 'evmcs=clean-fields', 'optimized'],
  },

  // ---- KVM_SET_NESTED_STATE (appended) ----
  // id and subject: stable review mail "[PATCH 5.6 056/161]", "commit df2a69af85bef169ab6810cc57f6b6b943941e7e upstream"
  {
    commit: 'df2a69af85be',
    subject: 'KVM: x86: allow KVM_STATE_NESTED_MTF_PENDING in kvm_state flags',
    idConfirmed: true,
    what: 'KVM_GET_NESTED_STATE reported a pending MTF exit with KVM_STATE_NESTED_MTF_PENDING, but the flag check of KVM_SET_NESTED_STATE did not allow that flag, so the destination of a migration refused the source\'s state with -EINVAL.',
    kvmFunction: 'kvm_arch_vcpu_ioctl (KVM_SET_NESTED_STATE)',
    where: 'operation vmx_set_nested_state (its x86.c checks)',
    status: 'diverges',
    plugin: 'plugins/nested-state-mtf-refused.ts',
    profile: 'patch=bug-df2a69af85be',
    trace: 'traces/nested-state-mtf-refused.nvx',
    correct: ['reference', 'optimized'],
  },
  // id and subject: kvm list, "KVM: x86: nVMX: allow RSM to restore VMXE CR4 flag" (Fixes: 5bea5123cbf0); the 4.19 pull's shortlog
  {
    commit: '5bea5123cbf0',
    subject: 'KVM: VMX: check nested state and CR4.VMXE against SMM',
    idConfirmed: true,
    what: 'vmx_set_nested_state accepted SMM flags (SMM_VMXON) for a vCPU outside SMM: VMX operation was turned off to be restored at an RSM that never came, so L1\'s next VMX instruction was #UD.',
    kvmFunction: 'vmx_set_nested_state',
    where: 'operation vmx_set_nested_state',
    status: 'diverges',
    plugin: 'plugins/nested-state-smm-flags-unchecked.ts',
    profile: 'patch=bug-5bea5123cbf0',
    trace: 'traces/nested-state-smm-flags-unchecked.nvx',
    correct: ['reference', 'optimized'],
  },

  // ---- more VM-entry control checks (appended) ----
  // id and subject: stable-bot mail of 2020-05-26 ("Possible dependencies", v4.9.224) lists c7c2c709b60e with this subject
  {
    commit: 'c7c2c709b60e',
    subject: 'kvm: nVMX: Validate CR3 target count on nested VM-entry',
    idConfirmed: true,
    what: 'Nested VM-entry did not check the CR3-target count against the CR3-target values IA32_VMX_MISC offers, so L2 ran where the SDM fails the entry with VMfailValid 7.',
    kvmFunction: 'nested_check_vm_execution_controls (check_vmentry_prereqs then)',
    where: 'operation nested_vmx_check_controls',
    status: 'diverges',
    plugin: 'plugins/cr3-target-count-unchecked.ts',
    profile: 'patch=bug-c7c2c709b60e',
    trace: 'traces/cr3-target-count-unchecked.nvx',
    correct: ['reference', 'optimized'],
  },
  // id and subject: kvm list, "KVM: nVMX: Restore a preemption timer consistency check" (Feb 2019) names 14aa61d0a9eb as the original fix
  {
    commit: '14aa61d0a9eb',
    subject: 'nVMX x86: Check VMX-preemption timer controls on vmentry of L2 guests',
    idConfirmed: true,
    what: 'Nested VM-entry accepted the VM-exit control "save VMX-preemption timer value" without "activate VMX-preemption timer", so L2 ran where the SDM fails the entry with VMfailValid 7.',
    kvmFunction: 'nested_check_vm_exit_controls (check_vmentry_prereqs then)',
    where: 'operation nested_vmx_check_controls',
    status: 'diverges',
    plugin: 'plugins/preemption-timer-save-unchecked.ts',
    profile: 'patch=bug-14aa61d0a9eb',
    trace: 'traces/preemption-timer-save-unchecked.nvx',
    correct: ['reference', 'optimized'],
  },

  // ---- L2's VMREAD/VMWRITE under VMCS shadowing (appended) ----
  // id and subject: Fixes: tag of "KVM: nVMX: Truncate bits 63:32 of VMCS field on nested check in !64-bit" (2021, stable review mail)
  {
    commit: 'a7cde481b6e8',
    subject: 'KVM: nVMX: Do not forward VMREAD/VMWRITE VMExits to L1 if required so by vmcs12 vmread/vmwrite bitmaps',
    idConfirmed: true,
    what: "KVM reflected every VMREAD/VMWRITE exit of L2 to L1, although with VMCS shadowing on in vmcs12 and the field's bit clear in L1's bitmap the instruction must not exit to L1 but act on the shadow vmcs12.",
    kvmFunction: 'nested_vmx_exit_handled_vmcs_access (nested_vmx_exit_reflected)',
    where: 'operation nested_vmx_exit_handled_vmcs_access',
    status: 'diverges',
    plugin: 'plugins/l2-vmcs-access-always-reflected.ts',
    profile: 'patch=bug-a7cde481b6e8',
    trace: 'traces/l2-vmcs-access-always-reflected.nvx',
    correct: ['reference', 'optimized'],
  },

  // ---- VMPTRLD (appended) ----
  // id and subject: Fixes: tag of "x86/kvm/nVMX: don't skip emulated instruction twice when vmptr address is not backed" (kvm list, Jan 2019)
  {
    commit: 'fca91f6d60b6',
    subject: 'kvm: nVMX: Set VM instruction error for VMPTRLD of unbacked page',
    idConfirmed: true,
    what: 'A VMPTRLD of a page no memslot backs failed VMfailInvalid with no VM-instruction error; reads of such a page return all ones, so the SDM gives VMfailValid 11 (incorrect VMCS revision identifier) into the current VMCS.',
    kvmFunction: 'handle_vmptrld',
    where: 'operation handle_vmptrld',
    status: 'diverges',
    plugin: 'plugins/vmptrld-unbacked-fail-invalid.ts',
    profile: 'patch=bug-fca91f6d60b6',
    trace: 'traces/vmptrld-unbacked-fail-invalid.nvx',
    correct: ['reference', 'optimized'],
  },

  // ---- nested posted interrupts (appended) ----
  // id and subject: Sasha Levin's list of upstream KVM fixes missing from the LTS trees (stable list, 2021-04-06)
  {
    commit: '25bb2cf97139',
    subject: 'KVM: nVMX: Morph notification vector IRQ on nested VM-Enter to pending PI',
    idConfirmed: true,
    what: "A posted-interrupt notification that arrived while L1 ran stayed an ordinary interrupt pending for L1; at the nested VM-entry KVM did not turn it into posted-interrupt processing for L2, so L2 ran with the posted vector left in the descriptor (ON set) until a later notification.",
    kvmFunction: 'nested_vmx_enter_non_root_mode / vmx_complete_nested_posted_interrupt',
    where: 'operation vmx_complete_nested_posted_interrupt',
    status: 'diverges',
    plugin: 'plugins/pi-notification-not-morphed.ts',
    profile: 'patch=bug-25bb2cf97139',
    trace: 'traces/pi-notification-not-morphed.nvx',
    correct: ['reference', 'guest-pages=pfncache', 'optimized'],
  },
];
