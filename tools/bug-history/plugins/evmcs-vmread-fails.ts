/**
 * 6cbbaab60ff3 "KVM: nVMX: Allow VMREAD when Enlightened VMCS is in use",
 * handle_vmread.
 *
 * The Hyper-V TLFS forbids VMREAD and VMWRITE while an enlightened VMCS is
 * in use, but some Windows builds (Windows 11 / Server 2022 with the
 * Hyper-V role) execute VMREAD anyway. With an eVMCS, current_vmptr stays
 * INVALID_GPA, so handle_vmread's "no current VMCS" test answered
 * VMfailInvalid and the guest's hypervisor failed. Since this commit
 * handle_vmread reads the field from the eVMCS (evmcs_field_offset) when
 * evmptr_is_valid(hv_evmcs_vmptr), and only checks current_vmptr otherwise.
 *
 * The patch puts the old test back for L1's VMREAD with an eVMCS in use.
 */
import { VMFAIL_INVALID, evmptrValid } from '@nvx/emulator';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-6cbbaab60ff3',
  summary: 'handle_vmread fails VMfailInvalid while an enlightened VMCS is in use (current_vmptr is INVALID_GPA), before 2022',
  ops: {
    handle_vmread: (orig) => (ctx: Ctx, w: World, v: Vcpu, field: number) => {
      const n = v.nested;
      if (!n.vmxon || n.guestMode || !evmptrValid(n)) return orig(ctx, w, v, field);
      // the exit is taken as before; only the current_vmptr == INVALID_GPA test answers
      ctx.cost.vmreadExits++;
      return VMFAIL_INVALID;
    },
  },
};

export default patch;
