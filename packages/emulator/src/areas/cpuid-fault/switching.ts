/**
 * MSR 0x140 switching around a guest, the part the paths share: what
 * vmx_prepare_switch_to_guest does at vcpu_load (read the host's value,
 * install the path's), what the 2019 series does when the guest's value
 * changes while loaded, and what vmx_prepare_switch_to_host does at
 * vcpu_put (give the host its value back). A path is then one function:
 * `wanted(w, v, host)`, the value the MSR should hold while this vCPU runs.
 *
 * `wanted` is looked up on the path the profile selected, so a plugin can
 * reuse this machinery by replacing `wanted` alone.
 */
import type { Ctx } from '../../ctx';
import type { Vcpu, World } from '../../state';
import type { CpuidFaultPath } from '../../paths';
import { cpuidFaultApplies } from '../../cpuid-fault';

/** Path-private state (vcpu.areas['cpuid-fault']). */
export interface MsrSwitchState {
  /** between vcpu_load and vcpu_put */
  loaded: boolean;
  /** the host's MSR 0x140 as vcpu_load read it (vmx->host_msr_misc_features_enables) */
  host: number;
  /** what the path last wrote to the MSR, or found there, since vcpu_load */
  installed: number;
}

export type Wanted = (w: World, v: Vcpu, host: number) => number;

export function switchState(v: Vcpu): MsrSwitchState {
  return v.areas['cpuid-fault'] as MsrSwitchState;
}

/** WRMSR MSR_MISC_FEATURES_ENABLES on the CPU the vCPU is loaded on. */
function wrmsr(ctx: Ctx, w: World, v: Vcpu, value: number): void {
  w.host.pcpus[v.cpu].miscFeaturesEnables = value;
  ctx.cost.wrmsrs++;
}

function reconcile(ctx: Ctx, w: World, v: Vcpu, fallback: Wanted): void {
  const s = switchState(v);
  const target = (ctx.profile.paths['cpuid-fault'].wanted ?? fallback)(w, v, s.host);
  if (target === s.installed) return;
  wrmsr(ctx, w, v, target);
  s.installed = target;
}

const hex = (n: number) => '0x' + n.toString(16);

/** A path that keeps MSR 0x140 at `wanted(w, v, host)` while the vCPU runs and gives the host its value back at vcpu_put. */
export function msrSwitchingPath(name: string, summary: string, wanted: Wanted): CpuidFaultPath {
  return {
    area: 'cpuid-fault',
    name,
    summary,
    wanted,
    // At creation a vCPU runs on a CPU of its own whose MSR is 0, and its guest's faulting is off:
    // every path wants 0 there, so nothing is installed.
    init: (w: World, vcpu: number): MsrSwitchState => ({ loaded: w.vcpus[vcpu].cpu >= 0, host: 0, installed: 0 }),
    load(ctx, w, v) {
      const s = switchState(v);
      s.loaded = true;
      s.host = 0;
      s.installed = 0;
      // boot_cpu_has(X86_FEATURE_CPUID_FAULT): without it the MSR does not exist and nothing is switched
      if (!w.config.cpuidFaultHw) return;
      ctx.cost.rdmsrs++;
      s.host = s.installed = w.host.pcpus[v.cpu].miscFeaturesEnables;
      reconcile(ctx, w, v, wanted);
    },
    update(ctx, w, v) {
      if (!w.config.cpuidFaultHw || !switchState(v).loaded) return;
      reconcile(ctx, w, v, wanted);
    },
    put(ctx, w, v) {
      const s = switchState(v);
      if (!s.loaded) return;
      s.loaded = false;
      if (w.config.cpuidFaultHw && s.installed !== s.host) wrmsr(ctx, w, v, s.host);
    },
    cpuidExitFaults: (_w, v, cpl) => cpuidFaultApplies(v, cpl),
    explain(w, v) {
      const s = switchState(v);
      const p = v.cpu >= 0 ? w.host.pcpus[v.cpu] : undefined;
      return {
        loaded: s.loaded ? `on CPU ${v.cpu}` : 'no',
        'host MSR 0x140 saved at load': hex(s.host),
        'MSR 0x140 installed': hex(s.installed),
        'MSR 0x140 on its CPU now': p ? hex(p.miscFeaturesEnables) : '-',
        'guest MISC_FEATURES_ENABLES': '0x' + v.cpuidFault.miscFeaturesEnables.toString(16),
        smm: String(v.cpuidFault.smm),
      };
    },
  };
}
