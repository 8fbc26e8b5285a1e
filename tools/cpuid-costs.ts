/**
 * The cpuid-fault cost summary: each workload of workloads-cpuid.ts under
 * each path of the area (reference `emulate`, `hardware`, `hardware-lazy`),
 * checked to give the same observations as the reference, with the counts
 * that differ and the cycles they come to with seed 004's figures (a
 * VM-exit about 1,000 cycles, a WRMSR about 250-300).
 *
 *   npx tsx tools/cpuid-costs.ts            a table
 *   npx tsx tools/cpuid-costs.ts --json     the same as JSON
 */
import { diffEvents } from '../packages/check/src/diff';
import { CPUID_WORKLOADS } from '../packages/check/src/workloads-cpuid';
import { COST_TABLE, Costs, Replayer, initialState, parseProfile } from '../packages/emulator/src';

export const CPUID_COST_PROFILES = ['reference', 'cpuid-fault=hardware', 'cpuid-fault=hardware-lazy'] as const;

/** Cycles per VM-exit and per WRMSR (with its range), from the cost table. */
function figures(): { exit: number; wrmsr: number; wrmsrRange: [number, number] } {
  const exit = COST_TABLE.find((e) => e.counter === 'l1CpuidExits')!;
  const wrmsr = COST_TABLE.find((e) => e.counter === 'wrmsrs')!;
  return { exit: exit.cycles, wrmsr: wrmsr.cycles, wrmsrRange: wrmsr.range ?? [wrmsr.cycles, wrmsr.cycles] };
}

export interface CpuidCostRow {
  workload: string;
  profile: string;
  events: number;
  /** CPUID VM-exits (L1's and L2's) */
  cpuidExits: number;
  /** #GP raised by the hardware in the guest, without a VM-exit */
  gpWithoutExit: number;
  /** KVM's WRMSRs of MSR 0x140 */
  wrmsrs: number;
  rdmsrs: number;
  /** the host kernel's own WRMSRs of MSR 0x140 (context switches): the same in every path */
  hostWrmsrs: number;
  /** cpuidExits x VM-exit + wrmsrs x WRMSR */
  cycles: number;
  cyclesRange: [number, number];
}

export function cpuidCostRows(): CpuidCostRow[] {
  const f = figures();
  const rows: CpuidCostRow[] = [];
  const reference = parseProfile('reference');
  for (const w of CPUID_WORKLOADS) {
    const wl = w.make();
    for (const spec of CPUID_COST_PROFILES) {
      const p = parseProfile(spec);
      if (spec !== 'reference') {
        const d = diffEvents(wl.header, wl.events, reference, p).divergence;
        if (d) throw new Error(`${w.name}: ${spec} diverges from reference at event ${d.index}`);
      }
      const r = new Replayer(initialState(wl.header, p), p);
      for (const e of wl.events) r.apply(e);
      const c: Costs = r.cost;
      const exits = c.cpuidExits * f.exit;
      rows.push({
        workload: w.name,
        profile: spec,
        events: wl.events.length,
        cpuidExits: c.cpuidExits,
        gpWithoutExit: c.gpWithoutExit,
        wrmsrs: c.wrmsrs,
        rdmsrs: c.rdmsrs,
        hostWrmsrs: c.hostWrmsrs,
        cycles: exits + c.wrmsrs * f.wrmsr,
        cyclesRange: [exits + c.wrmsrs * f.wrmsrRange[0], exits + c.wrmsrs * f.wrmsrRange[1]],
      });
    }
  }
  return rows;
}

/** The summary as a Markdown table, the cheapest path of each workload in bold. */
export function cpuidCostTable(rows: readonly CpuidCostRow[]): string {
  const f = figures();
  const out = [
    `cycles = CPUID exits x ${f.exit} + KVM WRMSRs x ${f.wrmsr} (WRMSR ${f.wrmsrRange[0]}-${f.wrmsrRange[1]}: range in brackets)`,
    '',
    '| workload | path | CPUID exits | #GP without exit | KVM WRMSRs | RDMSRs | host WRMSRs | cycles |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const w of CPUID_WORKLOADS) {
    const mine = rows.filter((r) => r.workload === w.name);
    const best = Math.min(...mine.map((r) => r.cycles));
    for (const r of mine) {
      const path = r.profile === 'reference' ? 'emulate' : r.profile.slice('cpuid-fault='.length);
      const cyc = `${r.cycles.toLocaleString('en-US')}${r.cyclesRange[0] !== r.cyclesRange[1] ? ` [${r.cyclesRange[0].toLocaleString('en-US')}-${r.cyclesRange[1].toLocaleString('en-US')}]` : ''}`;
      out.push(`| ${w.name} | ${path} | ${r.cpuidExits} | ${r.gpWithoutExit} | ${r.wrmsrs} | ${r.rdmsrs} | ${r.hostWrmsrs} | ${r.cycles === best ? `**${cyc}**` : cyc} |`);
    }
  }
  out.push('');
  for (const w of CPUID_WORKLOADS) out.push(`- ${w.name}: ${w.what}`);
  return out.join('\n');
}

if (require.main === module) {
  const rows = cpuidCostRows();
  process.stdout.write(process.argv.includes('--json') ? JSON.stringify(rows, null, 2) + '\n' : cpuidCostTable(rows) + '\n');
}
