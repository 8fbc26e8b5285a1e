/**
 * b643780562af "KVM: nVMX: Intercept VMWRITEs to GUEST_{CS,SS}_AR_BYTES",
 * handle_vmwrite.
 *
 * Some Intel CPUs (Haswell on) drop the reserved bits of the segment
 * access-rights fields on VMWRITE. Before this commit KVM stored an emulated
 * VMWRITE's value whole, so L1 read a different AR_BYTES value depending on
 * whether its VMWRITE went to the shadow VMCS (masked by the CPU) or was
 * emulated (kept whole), and L2 saw the unmasked one. Since then
 * handle_vmwrite masks every AR_BYTES value to 0x1f0ff itself.
 *
 * The patch replaces the masking operation with the identity.
 */
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-b643780562af',
  summary: 'handle_vmwrite stores AR_BYTES values with their reserved bits (before 2019)',
  ops: {
    handle_vmwrite_mask_ar_bytes: () => (_ctx: Ctx, _w: World, _v: Vcpu, _field: number, value: bigint) => value,
  },
};

export default patch;
