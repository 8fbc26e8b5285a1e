/**
 * L1's VMX capability MSRs (vmx->nested.msrs): what KVM reports
 * (nested_vmx_setup_ctls_msrs, for the configured features), what the VMM
 * restored (vmx_set_vmx_msr), and the capability checks the nested code
 * makes against them (nested_cpu_has_vmx_shadow_vmcs,
 * nested_cpu_has_vmwrite_any_field, the INVEPT/INVVPID capabilities).
 */
import { EPT_VPID_CAP, EVMCS1_SUPPORTED, SECONDARY_EXEC, VM_ENTRY, VM_EXIT, VMX_CAP_MSR, VMX_MISC_VMWRITE_SHADOW_RO_FIELDS, isVmxCapMsr, kvmVmxCapMsrs, vmxRestoreMsr } from '@nvx/arch';
import type { Outcome, WorldConfig } from '@nvx/trace';
import { GP, OK, ignored } from './nested';
import type { Vcpu, World } from './state';

const byConfig = new WeakMap<WorldConfig, Map<number, bigint>>();
/** The same, by the five features that decide it (every world of a fuzz run has its own configuration object). */
const byFeatures = new Map<number, Map<number, bigint>>();

/** vmcs_config.nested: KVM's values for this world's features (computed once per configuration). */
export function kvmVmxMsrs(cfg: WorldConfig): Map<number, bigint> {
  let m = byConfig.get(cfg);
  if (!m) {
    const key = (cfg.ept ? 1 : 0) | (cfg.vpid ? 2 : 0) | (cfg.apicv ? 4 : 0) | (cfg.pml ? 8 : 0) | (cfg.vmwriteAnyField ? 16 : 0);
    m = byFeatures.get(key);
    if (!m) byFeatures.set(key, (m = kvmVmxCapMsrs({ ept: cfg.ept, vpid: cfg.vpid, apicv: cfg.apicv, pml: cfg.pml, vmwriteAnyField: cfg.vmwriteAnyField })));
    byConfig.set(cfg, m);
  }
  return m;
}

/** vmx_get_vmx_msr of the vCPU's nested.msrs: the VMM's restored value, else KVM's. */
export function vmxCapMsr(w: World, v: Vcpu, msr: number): bigint {
  return v.vmxMsrs?.[msr] ?? kvmVmxMsrs(w.config).get(msr)!;
}

/** Does L1's allowed-1 half of IA32_VMX_PROCBASED_CTLS2 have this secondary control? */
function nestedSecondaryAllowed(w: World, v: Vcpu, bit: number): boolean {
  return ((vmxCapMsr(w, v, VMX_CAP_MSR.PROCBASED_CTLS2) >> 32n) & BigInt(bit)) !== 0n;
}

/** nested_cpu_has_vmx_shadow_vmcs: KVM always offers VMCS shadowing (it emulates it), unless the VMM restored CTLS2 without it. */
export function nestedCpuHasVmxShadowVmcs(w: World, v: Vcpu): boolean {
  return nestedSecondaryAllowed(w, v, SECONDARY_EXEC.SHADOW_VMCS);
}

/** nested_cpu_has_vmwrite_any_field: IA32_VMX_MISC bit 29 as the vCPU has it. */
export function nestedCpuHasVmwriteAnyField(w: World, v: Vcpu): boolean {
  return (vmxCapMsr(w, v, VMX_CAP_MSR.MISC) & BigInt(VMX_MISC_VMWRITE_SHADOW_RO_FIELDS)) !== 0n;
}

/** handle_invept's first test: EPT in the secondary controls and the INVEPT capability. */
export function nestedHasInvept(w: World, v: Vcpu): boolean {
  return nestedSecondaryAllowed(w, v, SECONDARY_EXEC.ENABLE_EPT) && (vmxCapMsr(w, v, VMX_CAP_MSR.EPT_VPID_CAP) & EPT_VPID_CAP.INVEPT) !== 0n;
}

/** handle_invvpid's first test: VPID in the secondary controls and the INVVPID capability. */
export function nestedHasInvvpid(w: World, v: Vcpu): boolean {
  return nestedSecondaryAllowed(w, v, SECONDARY_EXEC.ENABLE_VPID) && (vmxCapMsr(w, v, VMX_CAP_MSR.EPT_VPID_CAP) & EPT_VPID_CAP.INVVPID) !== 0n;
}

/** vmx_get_msr for L1's RDMSR of a VMX capability MSR (the eVMCS filter of the control MSRs is not modelled). */
export function l1RdmsrVmx(w: World, v: Vcpu, msr: number): Outcome {
  return { k: 'value', value: vmxCapMsrGuest(w, v, msr) };
}

/**
 * A VMX capability MSR as L1's RDMSR reads it: with eVMCS enabled for the
 * vCPU, vmx_get_msr hides the controls eVMCS v1 cannot express
 * (nested_evmcs_filter_control_msr: allowed-1 halves of the control MSRs,
 * the VM functions; "load IA32_PERF_GLOBAL_CTRL" too, which needs a Hyper-V
 * CPUID bit the model never sets). The VMM's reads are not filtered.
 */
export function vmxCapMsrGuest(w: World, v: Vcpu, msr: number): bigint {
  const value = vmxCapMsr(w, v, msr);
  if (!w.config.evmcs) return value;
  const keep = (high: number) => (value & 0xffffffffn) | (value & (BigInt(high >>> 0) << 32n));
  switch (msr) {
    case VMX_CAP_MSR.PINBASED_CTLS:
    case VMX_CAP_MSR.TRUE_PINBASED_CTLS:
      return keep(EVMCS1_SUPPORTED.pin);
    case VMX_CAP_MSR.PROCBASED_CTLS:
    case VMX_CAP_MSR.TRUE_PROCBASED_CTLS:
      return keep(EVMCS1_SUPPORTED.exec);
    case VMX_CAP_MSR.PROCBASED_CTLS2:
      return keep(EVMCS1_SUPPORTED.secondary);
    case VMX_CAP_MSR.EXIT_CTLS:
    case VMX_CAP_MSR.TRUE_EXIT_CTLS:
      return keep(EVMCS1_SUPPORTED.exit & ~VM_EXIT.LOAD_IA32_PERF_GLOBAL_CTRL);
    case VMX_CAP_MSR.ENTRY_CTLS:
    case VMX_CAP_MSR.TRUE_ENTRY_CTLS:
      return keep(EVMCS1_SUPPORTED.entry & ~VM_ENTRY.LOAD_IA32_PERF_GLOBAL_CTRL);
    case VMX_CAP_MSR.VMFUNC:
      return value & (0xffffffff00000000n | BigInt(EVMCS1_SUPPORTED.vmfunc));
    default:
      return value;
  }
}

/** vmx_set_msr: the VMX capability MSRs are read-only for the guest. */
export function l1WrmsrVmx(): Outcome {
  return GP;
}

/**
 * KVM_SET_MSRS of a VMX capability MSR (host-initiated: vmx_set_vmx_msr).
 * Refused while the vCPU is in VMX operation (-EBUSY) and wherever the
 * vmx_restore_* rules say so: the VMM may take features away, never add
 * ones KVM lacks. KVM also refuses to change these MSRs once the vCPU has
 * run (do_set_msr, kvm_is_immutable_feature_msr); the model does not track
 * KVM_RUN and lets the VMM restore them between runs.
 */
export function hostSetVmxMsr(w: World, v: Vcpu, msr: number, value: bigint): Outcome {
  if (!isVmxCapMsr(msr)) return ignored(`MSR 0x${msr.toString(16)} is not a VMX capability MSR`);
  if (v.nested.vmxon) return ignored(`KVM refuses to change a VMX capability MSR while vCPU ${v.id} is in VMX operation`);
  const cur = new Map<number, bigint>();
  for (const [k, val] of Object.entries(v.vmxMsrs ?? {})) cur.set(Number(k), val);
  const r = vmxRestoreMsr(kvmVmxMsrs(w.config), cur, msr, value);
  if (typeof r === 'string') return ignored(`KVM refuses MSR 0x${msr.toString(16)} = 0x${value.toString(16)}: ${r}`);
  const m = v.vmxMsrs ?? (v.vmxMsrs = {});
  for (const [k, val] of r) m[k] = val;
  return OK;
}
