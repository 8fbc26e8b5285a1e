/**
 * The host around the VM, as far as CPUID faulting goes: physical CPUs with
 * their MSR_MISC_FEATURES_ENABLES (0x140), host tasks with their own
 * faulting (TIF_NOCPUID, set by arch_prctl(ARCH_SET_CPUID)), and the vCPUs'
 * threads, which are host tasks too.
 *
 * Linux keeps the MSR in step with the running task at context switches
 * (`__switch_to_xtra`: a WRMSR only when the outgoing and incoming tasks'
 * TIF_NOCPUID differ) and in arch_prctl (`set_cpuid_faulting`). It compares
 * the tasks' flags, never the register: a value KVM leaves behind at
 * vcpu_put stays until a switch between tasks with different flags, which is
 * how a guest's faulting leaks to host tasks.
 *
 * A vCPU is loaded (its thread runs in KVM_RUN, between vcpu_load and
 * vcpu_put) on one CPU at a time. A vCPU that was never loaded explicitly
 * runs on a CPU of its own (index config.pcpus + vCPU), whose MSR is 0, so
 * traces without scheduling events behave as they always did.
 */
import { MSR_MISC_FEATURES_ENABLES_CPUID_FAULT as FAULT } from '@nvx/arch';
import type { Outcome } from '@nvx/trace';
import type { Ctx } from './ctx';
import { GP, OK, ignored } from './nested';
import type { HostTask, Vcpu, World } from './state';
import { IDLE, vcpuThreadRef } from './cpuid-fault-init';

const threadOfRef = (ref: number): number => -2 - ref;

/** The CPU a vCPU never loaded explicitly runs on. */
export function ownCpu(w: World, vcpu: number): number {
  return w.config.pcpus + vcpu;
}

function taskOf(w: World, ref: number): HostTask | undefined {
  if (ref >= 0) return w.host.tasks[ref];
  if (ref <= -2) return w.host.vcpuThreads[threadOfRef(ref)];
  return undefined;
}

const nocpuid = (t: HostTask | undefined): boolean => t?.nocpuid ?? false;

/** set_cpuid_faulting: Linux writes the MSR (from its per-CPU shadow: only bit 0 is modelled). */
function setCpuidFaulting(ctx: Ctx, w: World, cpu: number, on: boolean): void {
  const p = w.host.pcpus[cpu];
  p.miscFeaturesEnables = on ? p.miscFeaturesEnables | FAULT : p.miscFeaturesEnables & ~FAULT;
  ctx.cost.hostWrmsrs++;
}

/** kvm_arch_vcpu_put, whoever asks for it (the vCPU's thread leaves KVM_RUN, or is preempted). */
export function vcpuPut(ctx: Ctx, w: World, v: Vcpu): void {
  ctx.profile.ops.vcpu_put(ctx, w, v);
}

/** vcpu_put: the cpuid-fault path leaves MSR 0x140 as the host had it; the vCPU is then not loaded. */
export function vmxVcpuPut(ctx: Ctx, w: World, v: Vcpu): void {
  ctx.profile.paths['cpuid-fault'].put(ctx, w, v);
  v.cpu = -1;
}

/**
 * Run `next` (a host task id, a vCPU thread's ref, or IDLE) on `cpu`: a
 * context switch, with kvm_sched_out (vcpu_put) first when the outgoing
 * thread is a loaded vCPU's, and the incoming task leaving the CPU it ran on.
 */
export function scheduleOn(ctx: Ctx, w: World, cpu: number, next: number): void {
  const p = w.host.pcpus[cpu];
  if (p.current === next) return;
  const t = taskOf(w, next);
  // The incoming task migrates: the CPU it runs on now falls idle.
  if (t && t.cpu >= 0 && t.cpu !== cpu) scheduleOn(ctx, w, t.cpu, IDLE);
  const prev = p.current;
  if (prev <= -2) {
    const v = w.vcpus[threadOfRef(prev)];
    if (v && v.cpu === cpu) vcpuPut(ctx, w, v); // preempted: kvm_sched_out
  }
  const pt = taskOf(w, prev);
  if (pt) pt.cpu = -1;
  // __switch_to_xtra
  if (nocpuid(pt) !== nocpuid(t)) setCpuidFaulting(ctx, w, cpu, nocpuid(t));
  p.current = next;
  if (t) {
    t.cpu = cpu;
    t.lastCpu = cpu;
  }
}

function badCpu(w: World, cpu: number): Outcome | null {
  return Number.isInteger(cpu) && cpu >= 0 && cpu < w.config.pcpus ? null : ignored(`no CPU ${cpu} (config.pcpus is ${w.config.pcpus})`);
}

const NO_HW = ignored('the host has no CPUID faulting: arch_prctl(ARCH_SET_CPUID, 0) fails with ENODEV');

/** host.vcpu-load: the vCPU's thread is scheduled in on `cpu` (kvm_sched_in or KVM_RUN: vcpu_load). */
export function hostVcpuLoad(ctx: Ctx, w: World, vcpu: number, cpu: number): Outcome {
  const v = w.vcpus[vcpu];
  if (!v) return ignored('no such vCPU');
  const bad = badCpu(w, cpu);
  if (bad) return bad;
  if (v.cpu >= 0 && v.cpu < w.config.pcpus) return ignored(`vCPU ${vcpu} is already loaded on CPU ${v.cpu}`);
  // Leaving the CPU of its own for a real one.
  if (v.cpu >= 0) vcpuPut(ctx, w, v);
  scheduleOn(ctx, w, cpu, vcpuThreadRef(vcpu));
  v.cpu = cpu;
  ctx.profile.ops.vcpu_load(ctx, w, v);
  return OK;
}

/** host.vcpu-put: the vCPU's thread leaves KVM_RUN (vcpu_put) and keeps running on its CPU, in the host. Observes MSR 0x140 there. */
export function hostVcpuPut(ctx: Ctx, w: World, vcpu: number): Outcome {
  const v = w.vcpus[vcpu];
  if (!v) return ignored('no such vCPU');
  if (v.cpu < 0) return ignored(`vCPU ${vcpu} is not loaded`);
  const cpu = v.cpu;
  vcpuPut(ctx, w, v);
  return { k: 'value', value: BigInt(w.host.pcpus[cpu].miscFeaturesEnables) };
}

/** Turn a task's faulting on or off from where it runs (arch_prctl ARCH_SET_CPUID: disable_cpuid / enable_cpuid). */
function setTaskFaulting(ctx: Ctx, w: World, ref: number, t: HostTask, enable: boolean): void {
  const cpu = t.cpu >= 0 ? t.cpu : Math.max(t.lastCpu, 0);
  scheduleOn(ctx, w, cpu, ref);
  if (t.nocpuid === enable) return;
  t.nocpuid = enable;
  setCpuidFaulting(ctx, w, cpu, enable);
}

function hostTask(w: World, id: number): HostTask {
  let t = w.host.tasks[id];
  if (!t) {
    t = { nocpuid: false, cpu: -1, lastCpu: -1 };
    w.host.tasks[id] = t;
    t = w.host.tasks[id]; // the draft's copy under immer
  }
  return t;
}

/** host.task-cpuid-fault: the task runs (where it last ran; CPU 0 at first) and calls arch_prctl(ARCH_SET_CPUID). */
export function hostTaskCpuidFault(ctx: Ctx, w: World, task: number, enable: boolean): Outcome {
  if (!Number.isInteger(task) || task < 0) return ignored('no such task');
  if (enable && !w.config.cpuidFaultHw) return NO_HW;
  setTaskFaulting(ctx, w, task, hostTask(w, task), enable);
  return OK;
}

/**
 * host.vcpu-thread-cpuid-fault: the VMM's thread for this vCPU, in the host
 * (outside KVM_RUN), calls arch_prctl(ARCH_SET_CPUID), as when the VMM runs
 * under a record-and-replay debugger. Its faulting is the host's value
 * vcpu_load finds in MSR 0x140.
 */
export function hostVcpuThreadCpuidFault(ctx: Ctx, w: World, vcpu: number, enable: boolean): Outcome {
  const v = w.vcpus[vcpu];
  if (!v) return ignored('no such vCPU');
  if (v.cpu >= 0) return ignored(`vCPU ${vcpu} is loaded: its thread is in KVM_RUN`);
  if (enable && !w.config.cpuidFaultHw) return NO_HW;
  setTaskFaulting(ctx, w, vcpuThreadRef(vcpu), w.host.vcpuThreads[vcpu], enable);
  return OK;
}

/** host.task-cpuid: the task runs on `cpu` and executes CPUID; hardware faults it at CPL > 0 when bit 0 of MSR 0x140 is set there. */
export function hostTaskCpuid(ctx: Ctx, w: World, task: number, cpu: number, cpl: number, result: () => Outcome): Outcome {
  if (!Number.isInteger(task) || task < 0) return ignored('no such task');
  const bad = badCpu(w, cpu);
  if (bad) return bad;
  hostTask(w, task);
  scheduleOn(ctx, w, cpu, task);
  if (w.host.pcpus[cpu].miscFeaturesEnables & FAULT && cpl > 0) return GP;
  return result();
}
