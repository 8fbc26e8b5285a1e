/**
 * 671ddc700fd0 "KVM: nVMX: Don't leak L1 MMIO regions to L2",
 * nested_get_vmcs12_pages.
 *
 * When vmcs12's APIC-access address was not backed by a memslot (L1 put it on
 * an MMIO region), KVM cleared APIC-access virtualization in vmcs02 and ran L2
 * anyway: L2's accesses to that address then reached whatever L1 had there.
 * Since the fix the entry fails with KVM_EXIT_INTERNAL_ERROR.
 *
 * The patch wraps nested_get_vmcs12_pages: when the only failure is an
 * unbacked APIC-access page, it maps the other APIC pages and lets the entry
 * go on.
 */
import { APIC_PAGES, NESTED_PAGE, apicPagesInUse, gfnToHva, gpaToGfn, nestedPageGpa } from '@nvx/emulator';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const backed = (w: World, v: Vcpu, p: number) => gfnToHva(w.mem, gpaToGfn(nestedPageGpa(v, p as never))) >= 0;

const patch: Patch = {
  kind: 'patch',
  name: 'bug-671ddc700fd0',
  summary: 'nested_get_vmcs12_pages runs L2 without APIC-access virtualization when the APIC-access page is not in a memslot (before 2019)',
  ops: {
    nested_get_vmcs12_pages: (orig) => (ctx: Ctx, w: World, v: Vcpu) => {
      const err = orig(ctx, w, v);
      if (err === null) return null;
      const inUse = apicPagesInUse(v);
      const apicAccess = 1 << NESTED_PAGE.APIC_ACCESS;
      const others = APIC_PAGES.filter((p) => p !== NESTED_PAGE.APIC_ACCESS && inUse & (1 << p));
      if (!(inUse & apicAccess) || backed(w, v, NESTED_PAGE.APIC_ACCESS) || !others.every((p) => backed(w, v, p))) return err;
      // vmcs02 without SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES: only the other pages are mapped
      ctx.profile.paths['guest-pages'].getVmcs12Pages(ctx, w, v, inUse & ~apicAccess);
      return null;
    },
  },
};

export default patch;
