/**
 * 3573e22cfeca "KVM: nVMX: additional checks on vmxon region", handle_vmon.
 *
 * VMXON did not check its operand: an unaligned pointer, one beyond
 * MAXPHYADDR, or a region without the VMCS revision identifier was accepted.
 * The SDM fails such a VMXON with VMfailInvalid, which KVM has done since.
 *
 * The patch accepts a VMXON region whatever its revision identifier (the
 * address checks are kept, so the trace needs only one event to differ).
 */
import { VMCS12_REVISION } from '@nvx/arch';
import { readGuest, writeGuest } from '@nvx/emulator';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-3573e22cfeca',
  summary: "handle_vmon accepts a VMXON region without the VMCS revision identifier (before 2014)",
  ops: {
    handle_vmxon: (orig) => (ctx: Ctx, w: World, v: Vcpu, gpa: bigint) => {
      const rev = readGuest(w, gpa, 4);
      if (v.nested.vmxon || rev === null || rev === BigInt(VMCS12_REVISION)) return orig(ctx, w, v, gpa);
      // the old VMXON never looked at the region: run the current one on a region that passes, then put
      // L1's bytes back (the region is L1's memory; VMXON does not write it)
      writeGuest(ctx, w, gpa, 4, BigInt(VMCS12_REVISION));
      const out = orig(ctx, w, v, gpa);
      writeGuest(ctx, w, gpa, 4, rev);
      return out;
    },
  },
};

export default patch;
