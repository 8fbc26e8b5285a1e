/**
 * dc313385529f "KVM: nVMX: Reset eVMCS clean fields data from
 * prepare_vmcs02()", nested_sync_vmcs12_to_shadow.
 *
 * KVM marked every eVMCS field clean (hv_clean_fields |= ALL) whenever it
 * copied vmcs12 into the eVMCS, that is before L1 ran again, when L1 owns the
 * eVMCS: after a nested VM-exit, but also after a failed VMLAUNCH/VMRESUME,
 * and at nested state save during migration. Genuine Hyper-V only ever sets
 * dirty bits and does not expect the clean word to change under it. Since the
 * fix KVM sets it only at a successful entry (prepare_vmcs02), where it has
 * just consumed the dirty bits.
 *
 * The patch wraps the vmcs12 -> eVMCS sync and marks every field clean after it.
 */
import { EVMCS, HV_VMX_ENLIGHTENED_CLEAN_FIELD, INVALID_GPA } from '@nvx/arch';
import { readGuest, writeGuest } from '@nvx/emulator';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-dc313385529f',
  summary: 'nested_sync_vmcs12_to_shadow marks every eVMCS field clean, also after a failed entry (before 2021)',
  ops: {
    nested_sync_vmcs12_to_shadow: (orig) => (ctx: Ctx, w: World, v: Vcpu) => {
      const syncing = v.nested.needVmcs12ToShadowSync;
      orig(ctx, w, v);
      const gpa = v.nested.hvEvmcsVmptr;
      if (!syncing || gpa === INVALID_GPA) return;
      // "All fields are clean"
      const at = gpa + BigInt(EVMCS.HV_CLEAN_FIELDS_OFFSET);
      const clean = readGuest(w, at, 4);
      if (clean !== null) writeGuest(ctx, w, at, 4, clean | BigInt(HV_VMX_ENLIGHTENED_CLEAN_FIELD.ALL));
    },
  },
};

export default patch;
