/**
 * 693e02cc2409 "kvm: nVMX: VMWRITE checks unsupported field before
 * read-only field", handle_vmwrite.
 *
 * The SDM checks that the field exists before it checks that it is a
 * read-only (VM-exit information) field. KVM tested the encoding's type bits
 * first, so a VMWRITE to an encoding that names no field but whose type
 * is "VM-exit information" failed with error 13 (VMWRITE to a read-only
 * component) instead of 12 (unsupported component).
 *
 * The patch puts the read-only test, on the encoding alone, before
 * handle_vmwrite's own checks.
 */
import { INVALID_GPA, VMXERR } from '@nvx/arch';
import type { Ctx, Patch, Vcpu, World } from '@nvx/emulator';

/** Bits 11:10 of an encoding: the field type; 1 is VM-exit information (read-only). */
const isReadOnlyEncoding = (field: number) => ((field >>> 10) & 3) === 1;

const patch: Patch = {
  kind: 'patch',
  name: 'bug-693e02cc2409',
  summary: 'handle_vmwrite fails a read-only-typed encoding with error 13 before checking that the field exists (before 2020)',
  ops: {
    handle_vmwrite: (orig) => (ctx: Ctx, w: World, v: Vcpu, field: number, value: bigint) => {
      const n = v.nested;
      // vmcs_field_readonly(field) && !nested_cpu_has_vmwrite_any_field(vcpu), ahead of the lookup
      if (n.vmxon && !n.guestMode && n.currentVmptr !== INVALID_GPA && isReadOnlyEncoding(field) && !w.config.vmwriteAnyField) {
        return ctx.profile.ops.nested_vmx_fail(ctx, w, v, VMXERR.VMWRITE_READ_ONLY_VMCS_COMPONENT);
      }
      return orig(ctx, w, v, field, value);
    },
  },
};

export default patch;
