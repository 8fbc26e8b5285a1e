/**
 * a7cde481b6e8 "KVM: nVMX: Do not forward VMREAD/VMWRITE VMExits to L1 if
 * required so by vmcs12 vmread/vmwrite bitmaps",
 * nested_vmx_exit_handled_vmcs_access (nested_vmx_exit_reflected).
 *
 * With VMCS shadowing on in vmcs12, a VMREAD or VMWRITE in L2 whose bit is
 * clear in L1's VMREAD/VMWRITE bitmap must not exit to L1: the CPU L1 sees
 * executes it against the shadow VMCS at the VMCS-link pointer. vmcs02 has
 * no shadowing, so such an instruction always exits to L0, and KVM
 * reflected every one of those exits to L1, as if L1 intercepted them all.
 * Since this commit L0 looks at L1's bitmaps and emulates the access itself
 * (handle_vmread/handle_vmwrite in guest mode) when L1 does not want it.
 *
 * The patch makes nested_vmx_exit_handled_vmcs_access answer "L1 wants it"
 * for every field.
 */
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-a7cde481b6e8',
  summary: "every L2 VMREAD/VMWRITE is reflected to L1, whatever L1's VMREAD/VMWRITE bitmaps say (before 2018)",
  ops: {
    nested_vmx_exit_handled_vmcs_access: () => (_ctx: Ctx, _w: World, _v: Vcpu, _field: number, _bitmapField: number) => true,
  },
};

export default patch;
