/**
 * A VMREAD/VMWRITE-heavy L1 workload for the shadow-vmcs cost summary: the
 * loop of a nested hypervisor handling its guest's exits, with VMCS
 * shadowing on.
 *
 * Setup: VMXON, VMCLEAR and VMPTRLD of one vmcs12, VMWRITE GUEST_RIP,
 * VMLAUNCH. Then per iteration:
 *
 *   l2.cpuid leaf 1 at CPL 3           -> exit CPUID to L1
 *   L1 VMREADs VM_EXIT_REASON and EXIT_QUALIFICATION  (RO-shadowed: no exit with a shadow VMCS)
 *   [L3 case] L1 VMWRITEs `roWrites` VM-exit information fields, the way an L1
 *     that runs its own nested guest reflects that guest's exits (RO-shadowed:
 *     no exit with copy-all, an exit each with intercept-ro)
 *   L1 VMWRITEs GUEST_RIP += 2          (RW-shadowed: no exit with a shadow VMCS)
 *   l1.vmresume                         -> entered (copy_shadow_to_vmcs12 first)
 *
 * Pure function of its arguments, streamed like the other workloads.
 */
import { KVM_CTLS_MUST_BE_1, VMCS, VMCS12_REVISION } from '@nvx/arch';

/** The four controls KVM verifies at VM-entry, at their must-be-1 bits. */
const MUST_BE_1_CONTROLS: readonly [number, bigint][] = [
  [VMCS.PIN_BASED_VM_EXEC_CONTROL, BigInt(KVM_CTLS_MUST_BE_1.pin)],
  [VMCS.CPU_BASED_VM_EXEC_CONTROL, BigInt(KVM_CTLS_MUST_BE_1.cpu)],
  [VMCS.VM_EXIT_CONTROLS, BigInt(KVM_CTLS_MUST_BE_1.exit)],
  [VMCS.VM_ENTRY_CONTROLS, BigInt(KVM_CTLS_MUST_BE_1.entry)],
];
import { TraceEvent, makeHeader } from '@nvx/trace';
import { Workload, WorkloadStream, materialize } from './workloads';

/** The VM-exit information fields an L1 running L3 writes, in this order (all RO-shadowed). */
export const SHADOW_LOOP_RO_FIELDS: readonly number[] = [
  VMCS.VM_EXIT_REASON,
  VMCS.EXIT_QUALIFICATION,
  VMCS.VM_EXIT_INTR_INFO,
  VMCS.VM_EXIT_INSTRUCTION_LEN,
  VMCS.IDT_VECTORING_INFO_FIELD,
  VMCS.IDT_VECTORING_ERROR_CODE,
  VMCS.VM_EXIT_INTR_ERROR_CODE,
  VMCS.GUEST_LINEAR_ADDRESS,
  VMCS.GUEST_PHYSICAL_ADDRESS,
];

export interface ShadowExitLoopOptions {
  /** VM-exit information fields L1 writes per iteration (0-9; the L3 case); default 0 */
  roWrites?: number;
  /** IA32_VMX_MISC bit 29 as L1 sees it; default true (needed for roWrites) */
  vmwriteAnyField?: boolean;
}

const LAYOUT = { vmxon: 0x1000n, vmcs: 0x2000n, guestRip: 0xffffffff81000000n } as const;
export const SHADOW_LOOP_SETUP_EVENTS = 12;

export function shadowExitLoopEventsPerIteration(roWrites = 0): number {
  return 5 + roWrites;
}

export function shadowExitLoopStream(iterations: number, opts: ShadowExitLoopOptions = {}): WorkloadStream {
  if (!Number.isSafeInteger(iterations) || iterations < 0) throw new Error(`iterations must be a non-negative integer, got ${iterations}`);
  const roWrites = opts.roWrites ?? 0;
  if (!Number.isInteger(roWrites) || roWrites < 0 || roWrites > SHADOW_LOOP_RO_FIELDS.length) throw new Error(`roWrites must be 0-${SHADOW_LOOP_RO_FIELDS.length}, got ${roWrites}`);
  const vmwriteAnyField = opts.vmwriteAnyField ?? true;
  const header = makeHeader(
    { shadowVmcs: true, vmwriteAnyField },
    { generator: 'nvx workloads shadowExitLoop', iterations: String(iterations), roWrites: String(roWrites), vmwriteAnyField: String(vmwriteAnyField) },
  );
  const count = SHADOW_LOOP_SETUP_EVENTS + shadowExitLoopEventsPerIteration(roWrites) * iterations;
  const vcpu = 0;
  const L = LAYOUT;
  function* events(): Generator<TraceEvent, void, undefined> {
    yield { kind: 'l1.write', vcpu, gpa: L.vmxon, size: 4, value: BigInt(VMCS12_REVISION) };
    yield { kind: 'l1.write', vcpu, gpa: L.vmcs, size: 4, value: BigInt(VMCS12_REVISION) };
    yield { kind: 'l1.vmxon', vcpu, gpa: L.vmxon };
    yield { kind: 'l1.vmclear', vcpu, gpa: L.vmcs };
    yield { kind: 'l1.vmptrld', vcpu, gpa: L.vmcs };
    yield { kind: 'l1.vmwrite', vcpu, field: VMCS.GUEST_RIP, value: L.guestRip };
    yield { kind: 'l1.vmwrite', vcpu, field: VMCS.VMCS_LINK_POINTER, value: 0xffffffffffffffffn };
    // the must-be-1 bits of the controls KVM verifies at VM-entry (vmx_control_verify)
    for (const [field, value] of MUST_BE_1_CONTROLS) yield { kind: 'l1.vmwrite', vcpu, field, value };
    yield { kind: 'l1.vmlaunch', vcpu };
    let rip = L.guestRip;
    for (let i = 0; i < iterations; i++) {
      rip += 2n;
      yield { kind: 'l2.cpuid', vcpu, leaf: 1, subleaf: 0, cpl: 3 };
      yield { kind: 'l1.vmread', vcpu, field: VMCS.VM_EXIT_REASON };
      yield { kind: 'l1.vmread', vcpu, field: VMCS.EXIT_QUALIFICATION };
      for (let k = 0; k < roWrites; k++) yield { kind: 'l1.vmwrite', vcpu, field: SHADOW_LOOP_RO_FIELDS[k], value: BigInt(i * 16 + k) };
      yield { kind: 'l1.vmwrite', vcpu, field: VMCS.GUEST_RIP, value: rip };
      yield { kind: 'l1.vmresume', vcpu };
    }
  }
  return { header, count, events };
}

export function shadowExitLoop(iterations: number, opts: ShadowExitLoopOptions = {}): Workload {
  return materialize(shadowExitLoopStream(iterations, opts));
}
