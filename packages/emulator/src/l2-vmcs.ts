/**
 * L2's VMREAD and VMWRITE (common to every path: the optimization of this
 * area is about L1's instructions). vmcs02 has no hardware shadowing, so
 * both always exit to L0, which decides (nested_vmx_exit_handled_vmcs_access):
 *
 *  - vmcs12 does not turn VMCS shadowing on, or the encoding has a bit >= 15
 *    set, or L1's VMREAD/VMWRITE bitmap (in L1 memory at vmcs12's
 *    VMREAD_BITMAP / VMWRITE_BITMAP) has the field's bit set, or that byte
 *    cannot be read: a nested VM-exit VMREAD (23) / VMWRITE (25) to L1;
 *  - otherwise L0 emulates it (handle_vmread / handle_vmwrite in guest mode)
 *    against cached_shadow_vmcs12, the copy of the VMCS vmcs12's link
 *    pointer names: link pointer -1 -> VMfailInvalid before any field
 *    check; unknown field -> VMfailValid 12; read-only field without
 *    VMWRITE-any-field -> VMfailValid 13; AR_BYTES masked to 0x1F0FF. The
 *    error number of a VMfailValid goes to vmcs12 (KVM's get_vmcs12), the
 *    value to the shadow vmcs12.
 */
import { EXIT_REASON, INVALID_GPA, VMCS, VMXERR, vmcsFieldByEncoding } from '@nvx/arch';
import type { Outcome } from '@nvx/trace';
import type { Ctx } from './ctx';
import { writable } from './ctx';
import { readGuest } from './memory';
import { OK, VMFAIL_INVALID } from './nested';
import type { Vcpu, World } from './state';
import { slotRead, slotWrite, vmcs12Get } from './vmcs12';
import { evmptrValid } from './evmcs';
import { nestedCpuHasShadowVmcs } from './vmcs-link';

/** nested_vmx_exit_handled_vmcs_access: does L1 want this VMREAD/VMWRITE exit of L2? */
export function nestedVmxExitHandledVmcsAccess(_ctx: Ctx, w: World, v: Vcpu, field: number, bitmapField: number): boolean {
  if (!nestedCpuHasShadowVmcs(v)) return true;
  // Out-of-range fields always cause a VM exit from L2 to L1.
  if (!(field >= 0 && field < 0x8000)) return true;
  const b = readGuest(w, vmcs12Get(v.nested, bitmapField) + BigInt(field >> 3), 1);
  if (b === null) return true;
  return ((b >> BigInt(field & 7)) & 1n) === 1n;
}

/** The checks handle_vmread and handle_vmwrite share in guest mode; null when the access may go on. */
function guestModeVmcsAccessFails(v: Vcpu): Outcome | null {
  const n = v.nested;
  // An enlightened VMCS is incompatible with shadow VMCS (KVM WARNs): VMfailInvalid.
  if (evmptrValid(n) || n.currentVmptr === INVALID_GPA) return VMFAIL_INVALID;
  // In VMX non-root operation, when the VMCS-link pointer is -1, any VMREAD/VMWRITE fails VMfailInvalid.
  if (vmcs12Get(n, VMCS.VMCS_LINK_POINTER) === INVALID_GPA) return VMFAIL_INVALID;
  return null;
}

export function l2Vmread(ctx: Ctx, w: World, v: Vcpu, field: number): Outcome {
  ctx.cost.l0Exits++;
  const ops = ctx.profile.ops;
  if (ops.nested_vmx_exit_handled_vmcs_access(ctx, w, v, field, VMCS.VMREAD_BITMAP)) return ops.nested_vmx_vmexit(ctx, w, v, EXIT_REASON.VMREAD, 0n);
  const fail = guestModeVmcsAccessFails(v);
  if (fail) return fail;
  const f = vmcsFieldByEncoding(field);
  if (!f) return ops.nested_vmx_fail(ctx, w, v, VMXERR.UNSUPPORTED_VMCS_COMPONENT);
  return { k: 'value', value: slotRead(v.nested.cachedShadowVmcs12, f) };
}

export function l2Vmwrite(ctx: Ctx, w: World, v: Vcpu, field: number, value: bigint): Outcome {
  ctx.cost.l0Exits++;
  const ops = ctx.profile.ops;
  if (ops.nested_vmx_exit_handled_vmcs_access(ctx, w, v, field, VMCS.VMWRITE_BITMAP)) return ops.nested_vmx_vmexit(ctx, w, v, EXIT_REASON.VMWRITE, 0n);
  const fail = guestModeVmcsAccessFails(v);
  if (fail) return fail;
  const f = vmcsFieldByEncoding(field);
  if (!f) return ops.nested_vmx_fail(ctx, w, v, VMXERR.UNSUPPORTED_VMCS_COMPONENT);
  if (f.readOnly && !w.config.vmwriteAnyField) return ops.nested_vmx_fail(ctx, w, v, VMXERR.VMWRITE_READ_ONLY_VMCS_COMPONENT);
  const val = ops.handle_vmwrite_mask_ar_bytes(ctx, w, v, field, value);
  slotWrite(writable(ctx, v.nested, 'cachedShadowVmcs12'), f, val);
  return OK;
}
