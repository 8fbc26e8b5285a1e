/**
 * Workloads for the cpuid-fault area: the shapes behind the trade-off the
 * review of the 2019 series describes (seed 004). Using hardware CPUID
 * faulting saves a VM-exit (about 1,000 cycles) per faulting CPUID, but
 * costs a WRMSR (about 250-300 cycles) at every vcpu_load and vcpu_put
 * where host and guest values differ; "most uses of CPUID in userspace are
 * in application startup", whereas a workload with many exits to userspace
 * pays the WRMSRs on every round trip.
 *
 *   startupBurst       a guest with faulting on starts applications: a burst
 *                      of user CPUIDs (each #GP), few exits to userspace
 *   userspaceExits     a guest with faulting on that exits to userspace a
 *                      lot (many loads and puts) and rarely runs CPUID
 *   sharedCpu          a host task that uses CPUID faulting itself shares
 *                      the CPU with the guest: it preempts the vCPU
 *   vmmFaulting        the vCPU's own thread uses CPUID faulting (the VMM
 *                      runs under a record-and-replay debugger): the host's
 *                      value at load is non-zero, the case where seed 004's
 *                      policy does install the guest's value
 *   nestedCpuidLoop    L1 with faulting on runs L2 in a CPUID loop (every
 *                      L2 CPUID is a nested exit, KVM's order)
 *
 * Every generator is a pure function of its arguments.
 */
import { CPU_BASED, KVM_CTLS_MUST_BE_1, MSR, VMCS, VMCS12_REVISION } from '@nvx/arch';
import { TraceEvent, makeHeader } from '@nvx/trace';
import type { Workload } from './workloads';

const MISC = MSR.MSR_MISC_FEATURES_ENABLES;
const USER = 3;
const KERNEL = 0;

function header(name: string, params: Record<string, number>, config: Parameters<typeof makeHeader>[0] = {}) {
  const prov: Record<string, string> = { generator: `nvx workloads ${name}` };
  for (const [k, v] of Object.entries(params)) prov[k] = String(v);
  return makeHeader({ vcpus: 1, pcpus: 1, memslots: [{ slot: 0, gfn: 0n, npages: 0x40, flags: 0 }], ...config }, prov);
}

function check(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${what} must be a non-negative integer, got ${n}`);
}

export interface StartupBurstOptions {
  /** user CPUIDs (each #GP: the process's CPUID emulator takes over) */
  userCpuids?: number;
  /** CPUIDs of the guest kernel (CPL 0) before them */
  kernelCpuids?: number;
  /** an exit to userspace (vcpu_put, vcpu_load) after every this many user CPUIDs */
  exitEvery?: number;
}

/** A guest turns faulting on and starts applications: a burst of user CPUIDs, few exits to userspace. */
export function startupBurst(o: StartupBurstOptions = {}): Workload {
  const userCpuids = o.userCpuids ?? 200;
  const kernelCpuids = o.kernelCpuids ?? 20;
  const exitEvery = o.exitEvery ?? 50;
  check(userCpuids, 'userCpuids');
  check(kernelCpuids, 'kernelCpuids');
  if (!Number.isSafeInteger(exitEvery) || exitEvery < 1) throw new Error(`exitEvery must be a positive integer, got ${exitEvery}`);
  const ev: TraceEvent[] = [{ kind: 'host.vcpu-load', vcpu: 0, cpu: 0 }];
  for (let i = 0; i < kernelCpuids; i++) ev.push({ kind: 'l1.cpuid', vcpu: 0, leaf: i % 0xe, subleaf: 0, cpl: KERNEL });
  ev.push({ kind: 'l1.wrmsr', vcpu: 0, msr: MISC, value: 1n });
  for (let i = 0; i < userCpuids; i++) {
    ev.push({ kind: 'l1.cpuid', vcpu: 0, leaf: [0, 1, 7, 0xd][i % 4], subleaf: 0, cpl: USER });
    if ((i + 1) % exitEvery === 0) ev.push({ kind: 'host.vcpu-put', vcpu: 0 }, { kind: 'host.vcpu-load', vcpu: 0, cpu: 0 });
  }
  ev.push({ kind: 'host.vcpu-put', vcpu: 0 });
  return { header: header('startupBurst', { userCpuids, kernelCpuids, exitEvery }), events: ev };
}

export interface UserspaceExitsOptions {
  /** exits to userspace (vcpu_put then vcpu_load) */
  roundTrips?: number;
  /** a user CPUID after every this many round trips */
  cpuidEvery?: number;
}

/** A guest with faulting on that exits to userspace a lot (device emulation in the VMM) and rarely runs CPUID. */
export function userspaceExits(o: UserspaceExitsOptions = {}): Workload {
  const roundTrips = o.roundTrips ?? 1000;
  const cpuidEvery = o.cpuidEvery ?? 100;
  check(roundTrips, 'roundTrips');
  if (!Number.isSafeInteger(cpuidEvery) || cpuidEvery < 1) throw new Error(`cpuidEvery must be a positive integer, got ${cpuidEvery}`);
  const ev: TraceEvent[] = [{ kind: 'host.vcpu-load', vcpu: 0, cpu: 0 }, { kind: 'l1.wrmsr', vcpu: 0, msr: MISC, value: 1n }];
  for (let i = 0; i < roundTrips; i++) {
    if (i % cpuidEvery === cpuidEvery - 1) ev.push({ kind: 'l1.cpuid', vcpu: 0, leaf: 1, subleaf: 0, cpl: USER });
    ev.push({ kind: 'host.vcpu-put', vcpu: 0 }, { kind: 'host.vcpu-load', vcpu: 0, cpu: 0 });
  }
  ev.push({ kind: 'host.vcpu-put', vcpu: 0 });
  return { header: header('userspaceExits', { roundTrips, cpuidEvery }), events: ev };
}

export interface SharedCpuOptions {
  /** time slices: the host task runs, then the guest */
  slices?: number;
  /** user CPUIDs the guest runs per slice (its faulting is on) */
  guestCpuids?: number;
}

/**
 * Host task 1 turned CPUID faulting on for itself (rr, a CPUID emulator)
 * and shares CPU 0 with the vCPU: each slice the task runs a CPUID (#GP, as
 * it asked), then the vCPU is loaded and its guest runs user CPUIDs with its
 * own faulting on, then the task preempts it.
 */
export function sharedCpu(o: SharedCpuOptions = {}): Workload {
  const slices = o.slices ?? 200;
  const guestCpuids = o.guestCpuids ?? 2;
  check(slices, 'slices');
  check(guestCpuids, 'guestCpuids');
  const ev: TraceEvent[] = [
    { kind: 'host.task-cpuid-fault', task: 1, enable: true },
    { kind: 'host.vcpu-load', vcpu: 0, cpu: 0 },
    { kind: 'l1.wrmsr', vcpu: 0, msr: MISC, value: 1n },
  ];
  for (let s = 0; s < slices; s++) {
    ev.push({ kind: 'host.task-cpuid', task: 1, cpu: 0, cpl: USER });
    ev.push({ kind: 'host.vcpu-load', vcpu: 0, cpu: 0 });
    for (let i = 0; i < guestCpuids; i++) ev.push({ kind: 'l1.cpuid', vcpu: 0, leaf: 1, subleaf: 0, cpl: USER });
  }
  ev.push({ kind: 'host.vcpu-put', vcpu: 0 });
  return { header: header('sharedCpu', { slices, guestCpuids }), events: ev };
}

export interface VmmFaultingOptions {
  roundTrips?: number;
  /** user CPUIDs per round trip */
  cpuids?: number;
  /** the guest's own faulting (default on) */
  guestFaulting?: boolean;
}

/** The vCPU's thread uses CPUID faulting itself: MSR 0x140 bit 0 is set when vcpu_load reads it. */
export function vmmFaulting(o: VmmFaultingOptions = {}): Workload {
  const roundTrips = o.roundTrips ?? 200;
  const cpuids = o.cpuids ?? 2;
  const guestFaulting = o.guestFaulting ?? true;
  check(roundTrips, 'roundTrips');
  check(cpuids, 'cpuids');
  const ev: TraceEvent[] = [
    { kind: 'host.vcpu-put', vcpu: 0 },
    { kind: 'host.vcpu-thread-cpuid-fault', vcpu: 0, enable: true },
    { kind: 'host.vcpu-load', vcpu: 0, cpu: 0 },
  ];
  if (guestFaulting) ev.push({ kind: 'l1.wrmsr', vcpu: 0, msr: MISC, value: 1n });
  for (let r = 0; r < roundTrips; r++) {
    for (let i = 0; i < cpuids; i++) ev.push({ kind: 'l1.cpuid', vcpu: 0, leaf: 1, subleaf: 0, cpl: USER });
    ev.push({ kind: 'host.vcpu-put', vcpu: 0 }, { kind: 'host.vcpu-load', vcpu: 0, cpu: 0 });
  }
  ev.push({ kind: 'host.vcpu-put', vcpu: 0 });
  return { header: header('vmmFaulting', { roundTrips, cpuids, guestFaulting: guestFaulting ? 1 : 0 }), events: ev };
}

export interface NestedCpuidLoopOptions {
  iterations?: number;
  /** L1's faulting (default on) */
  l1Faulting?: boolean;
}

/**
 * L1 with CPUID faulting on runs L2 in a CPUID loop: L2's user CPUID exits
 * to L1 (exit reason 10, KVM's order), L1 reads the exit reason and
 * resumes. No exit to userspace.
 */
export function nestedCpuidLoop(o: NestedCpuidLoopOptions = {}): Workload {
  const iterations = o.iterations ?? 200;
  const l1Faulting = o.l1Faulting ?? true;
  check(iterations, 'iterations');
  const v = 0;
  const ev: TraceEvent[] = [{ kind: 'host.vcpu-load', vcpu: v, cpu: 0 }];
  if (l1Faulting) ev.push({ kind: 'l1.wrmsr', vcpu: v, msr: MISC, value: 1n });
  ev.push(
    { kind: 'l1.write', vcpu: v, gpa: 0x1000n, size: 4, value: BigInt(VMCS12_REVISION) },
    { kind: 'l1.vmxon', vcpu: v, gpa: 0x1000n },
    { kind: 'l1.write', vcpu: v, gpa: 0x2000n, size: 4, value: BigInt(VMCS12_REVISION) },
    { kind: 'l1.vmptrld', vcpu: v, gpa: 0x2000n },
    // MSR bitmaps, and the must-be-1 bits of the controls KVM verifies at VM-entry (vmx_control_verify)
    { kind: 'l1.vmwrite', vcpu: v, field: VMCS.CPU_BASED_VM_EXEC_CONTROL, value: BigInt((CPU_BASED.USE_MSR_BITMAPS | KVM_CTLS_MUST_BE_1.cpu) >>> 0) },
    { kind: 'l1.vmwrite', vcpu: v, field: VMCS.PIN_BASED_VM_EXEC_CONTROL, value: BigInt(KVM_CTLS_MUST_BE_1.pin) },
    { kind: 'l1.vmwrite', vcpu: v, field: VMCS.VM_EXIT_CONTROLS, value: BigInt(KVM_CTLS_MUST_BE_1.exit) },
    { kind: 'l1.vmwrite', vcpu: v, field: VMCS.VM_ENTRY_CONTROLS, value: BigInt(KVM_CTLS_MUST_BE_1.entry) },
    { kind: 'l1.vmwrite', vcpu: v, field: VMCS.MSR_BITMAP, value: 0x3000n },
    { kind: 'l1.vmlaunch', vcpu: v },
  );
  for (let i = 0; i < iterations; i++) {
    ev.push({ kind: 'l2.cpuid', vcpu: v, leaf: 1, subleaf: 0, cpl: USER });
    ev.push({ kind: 'l1.vmread', vcpu: v, field: VMCS.VM_EXIT_REASON });
    ev.push({ kind: 'l1.vmresume', vcpu: v });
  }
  ev.push({ kind: 'host.vcpu-put', vcpu: v });
  return { header: header('nestedCpuidLoop', { iterations, l1Faulting: l1Faulting ? 1 : 0 }), events: ev };
}

/** The workloads of the cost summary, with their default sizes. */
export const CPUID_WORKLOADS: readonly { name: string; what: string; make: () => Workload }[] = [
  { name: 'startupBurst', what: 'guest start-up: faulting on, 200 user CPUIDs, an exit to userspace every 50', make: () => startupBurst() },
  { name: 'userspaceExits', what: 'faulting on, 1000 exits to userspace, a user CPUID every 100', make: () => userspaceExits() },
  { name: 'sharedCpu', what: 'a host task with its own faulting shares the CPU: 200 slices, 2 guest user CPUIDs each', make: () => sharedCpu() },
  { name: 'vmmFaulting', what: "the vCPU's thread has faulting on (host value 1): 200 round trips, 2 user CPUIDs each", make: () => vmmFaulting() },
  { name: 'nestedCpuidLoop', what: 'L1 with faulting on, L2 runs 200 user CPUIDs (each a nested exit)', make: () => nestedCpuidLoop() },
];
