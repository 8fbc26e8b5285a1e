/**
 * fca91f6d60b6 "kvm: nVMX: Set VM instruction error for VMPTRLD of
 * unbacked page", handle_vmptrld.
 *
 * A VMPTRLD of an address no memslot backs: reads from an unbacked page
 * return all ones, which is not VMCS12_REVISION, so the SDM's outcome is
 * VMfailValid(VMPTRLD with incorrect VMCS revision identifier, 11) when
 * there is a current VMCS. KVM answered VMfailInvalid (nested_vmx_failInvalid
 * on is_error_page), setting no VM-instruction error; since this commit it
 * fails as for a wrong revision.
 *
 * The patch puts the old answer back for an aligned, in-range pointer that
 * is not the VMXON pointer and that no memslot backs.
 */
import { INVALID_GPA } from '@nvx/arch';
import { VMFAIL_INVALID, evmptrValid, pageAddressValid, readGuest } from '@nvx/emulator';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-fca91f6d60b6',
  summary: 'handle_vmptrld answers VMfailInvalid, with no VM-instruction error, for a page no memslot backs (before 2018)',
  ops: {
    handle_vmptrld: (orig) => (ctx: Ctx, w: World, v: Vcpu, gpa: bigint) => {
      const n = v.nested;
      const oldPath = n.vmxon && pageAddressValid(gpa) && gpa !== n.vmxonPtr && !evmptrValid(n) && gpa !== n.currentVmptr && gpa !== INVALID_GPA;
      // "page = kvm_vcpu_gpa_to_page(vcpu, vmptr); if (is_error_page(page)) { nested_vmx_failInvalid(vcpu); ... }"
      if (oldPath && readGuest(w, gpa, 4) === null) return VMFAIL_INVALID;
      return orig(ctx, w, v, gpa);
    },
  },
};

export default patch;
