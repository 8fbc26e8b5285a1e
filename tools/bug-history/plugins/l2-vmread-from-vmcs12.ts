/**
 * 6d894f498f5d "KVM: nVMX: vmread/vmwrite: Use shadow vmcs12 if running
 * L2", handle_vmread.
 *
 * When L1 lets L2 execute VMREAD through VMCS shadowing, the read is of the
 * VMCS vmcs12's VMCS-link pointer names (the shadow vmcs12). KVM emulated
 * L2's VMREAD and VMWRITE against vmcs12 itself, so L2 read and wrote L1's
 * VMCS for L2 instead of its own.
 *
 * The patch wraps L2's VMREAD: a value read is taken from vmcs12.
 */
import { vmcsFieldByEncoding } from '@nvx/arch';
import { vmcs12ReadField } from '@nvx/emulator';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'bug-6d894f498f5d',
  summary: "L2's emulated VMREAD reads vmcs12 instead of the shadow vmcs12 at the VMCS-link pointer (before 2018)",
  ops: {
    l2_vmread: (orig) => (ctx: Ctx, w: World, v: Vcpu, field: number) => {
      const out = orig(ctx, w, v, field);
      const f = vmcsFieldByEncoding(field);
      if (out.k !== 'value' || !f) return out;
      return { k: 'value', value: vmcs12ReadField(v.nested, f) };
    },
  },
};

export default patch;
