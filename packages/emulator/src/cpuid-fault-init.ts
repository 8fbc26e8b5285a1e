/**
 * The cpuid-fault state at the first event (kept free of the reducer's
 * modules so that state.ts can build it).
 */
import { MSR_PLATFORM_INFO_CPUID_FAULT } from '@nvx/arch';
import type { GuestCpuidFault, Host } from './state';

/** Pcpu.current when nothing but the idle task runs. */
export const IDLE = -1;
/** Pcpu.current for vCPU i's thread. */
export const vcpuThreadRef = (i: number): number => -2 - i;

/** Every CPU idle with MSR 0x140 clear, then each vCPU's own CPU, where its thread runs (in KVM_RUN). */
export function newHost(pcpus: number, vcpus: number): Host {
  const host: Host = { pcpus: [], tasks: {}, vcpuThreads: [] };
  for (let c = 0; c < pcpus; c++) host.pcpus.push({ miscFeaturesEnables: 0, current: IDLE });
  for (let i = 0; i < vcpus; i++) {
    host.pcpus.push({ miscFeaturesEnables: 0, current: vcpuThreadRef(i) });
    host.vcpuThreads.push({ nocpuid: false, cpu: pcpus + i, lastCpu: pcpus + i });
  }
  return host;
}

/** The guest's state at vCPU creation: faulting supported (KVM's msr_platform_info default), off, outside SMM. */
export function newGuestCpuidFault(): GuestCpuidFault {
  return { platformInfo: BigInt(MSR_PLATFORM_INFO_CPUID_FAULT), miscFeaturesEnables: 0n, smm: false };
}
