/**
 * VMX instructions of L1 beyond the areas: VMREAD/VMWRITE with the whole
 * 64-bit register operand, INVEPT and INVVPID, after
 * arch/x86/kvm/vmx/nested.c (Linux v6.13) handle_vmread, handle_vmwrite,
 * handle_invept, handle_invvpid and nested_vmx_check_eptp.
 *
 * The model keeps no TLBs or shadow EPT roots, so a successful INVEPT or
 * INVVPID changes nothing L1 or L2 can see: what matters is which operands
 * KVM refuses, and how.
 */
import { EPT_VPID_CAP, INVALID_GPA, VMCS, VMX_CAP_MSR, VMXERR } from '@nvx/arch';
import type { Outcome } from '@nvx/trace';
import type { Ctx } from './ctx';
import { MAXPHYADDR, OK, UD, VMFAIL_INVALID } from './nested';
import { evmptrValid } from './evmcs';
import type { Vcpu, World } from './state';
import { nestedHasInvept, nestedHasInvvpid, vmxCapMsr } from './vmx-msrs';
import { vmcs12Get } from './vmcs12';

const INVALID_OPERAND = VMXERR.INVALID_OPERAND_TO_INVEPT_INVVPID;

/**
 * handle_vmread with the register operand as L1 gave it. In 64-bit mode KVM
 * reads the whole register (kvm_register_read), and get_vmcs12_field_offset
 * rejects any encoding with a bit above 14 set: VMfailValid
 * UNSUPPORTED_VMCS_COMPONENT. Such an operand always exits (the CPU consults
 * the VMREAD bitmap only for encodings below 0x8000). Operands that fit in
 * 32 bits are the ordinary VMREAD.
 */
export function handleVmreadWide(ctx: Ctx, w: World, v: Vcpu, field: bigint): Outcome {
  if (field <= 0xffffffffn) return ctx.profile.ops.handle_vmread(ctx, w, v, Number(field));
  const n = v.nested;
  if (!n.vmxon) return UD;
  ctx.cost.vmreadExits++;
  if (evmptrValid(n)) return ctx.profile.ops.nested_vmx_fail(ctx, w, v, VMXERR.UNSUPPORTED_VMCS_COMPONENT);
  if (n.currentVmptr === INVALID_GPA) return VMFAIL_INVALID;
  return ctx.profile.ops.nested_vmx_fail(ctx, w, v, VMXERR.UNSUPPORTED_VMCS_COMPONENT);
}

/** handle_vmwrite with the whole register operand: the current-VMCS test comes first, then the encoding. */
export function handleVmwriteWide(ctx: Ctx, w: World, v: Vcpu, field: bigint, value: bigint): Outcome {
  if (field <= 0xffffffffn) return ctx.profile.ops.handle_vmwrite(ctx, w, v, Number(field), value);
  const n = v.nested;
  if (!n.vmxon) return UD;
  ctx.cost.vmwriteExits++;
  if (n.currentVmptr === INVALID_GPA) return VMFAIL_INVALID;
  return ctx.profile.ops.nested_vmx_fail(ctx, w, v, VMXERR.UNSUPPORTED_VMCS_COMPONENT);
}

/** nested_vmx_check_eptp: memory type, page-walk length, reserved bits, A/D flag against L1's EPT capabilities. */
export function nestedVmxCheckEptp(w: World, v: Vcpu, eptp: bigint): boolean {
  const caps = vmxCapMsr(w, v, VMX_CAP_MSR.EPT_VPID_CAP);
  const mt = eptp & 7n;
  if (mt === 0n ? !(caps & EPT_VPID_CAP.EPTP_UC) : mt === 6n ? !(caps & EPT_VPID_CAP.EPTP_WB) : true) return false;
  const pwl = (eptp >> 3n) & 7n;
  if (pwl === 4n ? !(caps & EPT_VPID_CAP.PAGE_WALK_5) : pwl === 3n ? !(caps & EPT_VPID_CAP.PAGE_WALK_4) : true) return false;
  // kvm_vcpu_is_legal_gpa and bits 11:7
  if (eptp >> BigInt(MAXPHYADDR) || (eptp >> 7n) & 0x1fn) return false;
  if (eptp & (1n << 6n) && !(caps & EPT_VPID_CAP.AD)) return false;
  return true;
}

/**
 * handle_invept: #UD unless L1 has EPT and the INVEPT capability, or
 * outside VMX operation; a type L1's capabilities do not list (bits 25 and
 * 26: types 1 and 2) is VMfailValid INVALID_OPERAND_TO_INVEPT_INVVPID, as is
 * a single-context INVEPT of an EPTP nested_vmx_check_eptp refuses.
 * nested_vmx_fail: VMfailInvalid without a current VMCS.
 */
export function handleInvept(ctx: Ctx, w: World, v: Vcpu, type: bigint, eptp: bigint): Outcome {
  if (!nestedHasInvept(w, v)) return UD;
  if (!v.nested.vmxon) return UD;
  const types = (vmxCapMsr(w, v, VMX_CAP_MSR.EPT_VPID_CAP) >> 24n) & 6n;
  if (type >= 32n || !(types & (1n << type))) return ctx.profile.ops.nested_vmx_fail(ctx, w, v, INVALID_OPERAND);
  if (type === 1n && !nestedVmxCheckEptp(w, v, eptp)) return ctx.profile.ops.nested_vmx_fail(ctx, w, v, INVALID_OPERAND);
  return OK;
}

/** is_noncanonical_invlpg_address for 48-bit linear addresses (the model's L1 has no LA57). */
function isNoncanonical(gla: bigint): boolean {
  const top = gla >> 47n;
  return top !== 0n && top !== 0x1ffffn;
}

/**
 * handle_invvpid: #UD unless L1 has VPID and the INVVPID capability, or
 * outside VMX operation; an unsupported type, a VPID with bits 63:16 set, a
 * zero VPID for the individual-address and single-context types, or a
 * non-canonical address for the individual-address type is VMfailValid
 * INVALID_OPERAND_TO_INVEPT_INVVPID.
 */
export function handleInvvpid(ctx: Ctx, w: World, v: Vcpu, type: bigint, vpid: bigint, gla: bigint): Outcome {
  if (!nestedHasInvvpid(w, v)) return UD;
  if (!v.nested.vmxon) return UD;
  const types = ((vmxCapMsr(w, v, VMX_CAP_MSR.EPT_VPID_CAP) >> 32n) & 0xf00n) >> 8n;
  if (type >= 32n || !(types & (1n << type))) return ctx.profile.ops.nested_vmx_fail(ctx, w, v, INVALID_OPERAND);
  if (vpid >> 16n) return ctx.profile.ops.nested_vmx_fail(ctx, w, v, INVALID_OPERAND);
  if (type === 0n && (vpid === 0n || isNoncanonical(gla))) return ctx.profile.ops.nested_vmx_fail(ctx, w, v, INVALID_OPERAND);
  if ((type === 1n || type === 3n) && vpid === 0n) return ctx.profile.ops.nested_vmx_fail(ctx, w, v, INVALID_OPERAND);
  return OK;
}

/** vmcs12's VPID, for tests and reports. */
export function vmcs12Vpid(v: Vcpu): bigint {
  return vmcs12Get(v.nested, VMCS.VIRTUAL_PROCESSOR_ID);
}
