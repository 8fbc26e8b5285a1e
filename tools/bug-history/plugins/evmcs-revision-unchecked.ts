/**
 * 72aeb60c52bf "KVM: nVMX: Verify eVMCS revision id match supported eVMCS
 * version on eVMCS VMPTRLD", nested_vmx_handle_enlightened_vmptrld.
 *
 * The first u32 of an enlightened VMCS is its VersionNumber (TLFS 16.11.2).
 * KVM mapped whatever page the VP assist page named and used it as an eVMCS
 * without looking at it. Since this commit the enlightened VMPTRLD accepts
 * only KVM_EVMCS_VERSION (or VMCS12_REVISION, which Hyper-V itself writes
 * there) and otherwise fails: nested_vmx_run answers VMfailInvalid.
 *
 * The patch runs the enlightened VMPTRLD on a region whose revision passes,
 * then puts L1's bytes back (VMLAUNCH does not write the revision).
 */
import { EVMCS, INVALID_GPA, KVM_EVMCS_VERSION, VMCS12_REVISION } from '@nvx/arch';
import { readGuest, writeGuest } from '@nvx/emulator';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-72aeb60c52bf',
  summary: 'the enlightened VMPTRLD does not check the eVMCS revision (before 2018)',
  ops: {
    nested_vmx_handle_enlightened_vmptrld: (orig) => (ctx: Ctx, w: World, v: Vcpu, fromLaunch: boolean) => {
      const n = v.nested;
      const gpa = n.vpAssistEvmcs;
      if (!w.config.evmcs || gpa === INVALID_GPA || gpa === n.hvEvmcsVmptr) return orig(ctx, w, v, fromLaunch);
      const at = gpa + BigInt(EVMCS.REVISION_ID_OFFSET);
      const rev = readGuest(w, at, 4);
      if (rev === null || rev === BigInt(KVM_EVMCS_VERSION) || rev === BigInt(VMCS12_REVISION)) return orig(ctx, w, v, fromLaunch);
      writeGuest(ctx, w, at, 4, BigInt(KVM_EVMCS_VERSION));
      const status = orig(ctx, w, v, fromLaunch);
      writeGuest(ctx, w, at, 4, rev);
      return status;
    },
  },
};

export default patch;
