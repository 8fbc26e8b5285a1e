/**
 * 02761716801d "KVM: nVMX: Release eVMCS when enlightened VMENTRY was
 * disabled", nested_vmx_handle_enlightened_vmptrld.
 *
 * When L1 stopped naming an eVMCS in its VP assist page (enlightened VM-entry
 * off), KVM kept the eVMCS it had mapped and went on using it at the next
 * VMLAUNCH/VMRESUME. The fix releases it, after which there is no current
 * VMCS and the entry fails VMfailInvalid.
 *
 * The patch keeps using the mapped eVMCS when the VP assist page names none.
 */
import { INVALID_GPA } from '@nvx/arch';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

/** EVMPTRLD_SUCCEEDED (the operation's status values: DISABLED 0, SUCCEEDED 1, VMFAIL 2, ERROR 3) */
const EVMPTRLD_SUCCEEDED = 1;

const patch: Patch = {
  kind: 'patch',
  name: 'bug-02761716801d',
  summary: 'nested_vmx_handle_enlightened_vmptrld keeps the old eVMCS when the VP assist page stops naming one (before 2021)',
  ops: {
    nested_vmx_handle_enlightened_vmptrld: (orig) => (ctx: Ctx, w: World, v: Vcpu, fromLaunch: boolean) => {
      const n = v.nested;
      if (w.config.evmcs && n.vpAssistEvmcs === INVALID_GPA && n.hvEvmcsVmptr !== INVALID_GPA) return EVMPTRLD_SUCCEEDED;
      return orig(ctx, w, v, fromLaunch);
    },
  },
};

export default patch;
