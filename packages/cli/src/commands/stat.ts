/**
 * `nvx stat <trace>`: a `perf kvm stat report`-shaped table of the exits to
 * L0 each profile takes on a trace, side by side, with the time the cost
 * table estimates for them; for a trace imported from a host, the host's own
 * recorded exits beside them; then nvx's own counters.
 *
 * A sample is an event that leaves its guest for L0 in the model: an L2
 * instruction that exits to L0 (`l0Exits`), an L1 VMX instruction (L0
 * emulates every one, except VMREAD/VMWRITE the shadow VMCS completes), an
 * L1 CPUID, an L1 RDMSR/WRMSR that vmcs01 intercepts. Its time is the cycles
 * the cost table gives the counters the event moved. In a trace imported
 * from a host, the importer's L1 preamble is replayed but not counted.
 */
import type { Command } from 'commander';
import { COST_COUNTERS, CostCounter, Costs, Profile, Replayer, estimateCycles, newCosts, testBitmapBit } from '@nvx/emulator';
import { Outcome, TraceEvent, TraceHeader, openTrace } from '@nvx/trace';
import { CliContext, UsageError } from '../output';
import { addPathModuleOption, loadPathModules } from '../plugins';
import { profileArg } from '../profiles';
import { jsonText } from '../report';
import { isImportedTrace, preambleLength } from '../importers/agreement';

export interface ExitRow {
  reason: string;
  samples: number;
  /** estimated cycles of these samples */
  cycles: number;
}

export interface ProfileStat {
  profile: string;
  rows: ExitRow[];
  samples: number;
  /** estimated cycles of the samples */
  cycles: number;
  /** every counter over the whole trace */
  costs: Costs;
  /** estimated cycles of the whole trace */
  estimatedCycles: number;
  /** events that could not happen in their state */
  ignored: number;
}

export interface HostRow {
  reason: string;
  samples: number;
  /** exit-to-entry time on the host, nanoseconds */
  ns: number;
}

export interface StatResult {
  file: string;
  events: number;
  profiles: ProfileStat[];
  /** a trace imported from a host: the exits it recorded (every kvm_exit, L1's and L2's) */
  host: { rows: HostRow[]; samples: number; ns: number } | null;
}

const L2_REASON: Partial<Record<TraceEvent['kind'], string>> = {
  'l2.rdmsr': 'MSR_READ',
  'l2.wrmsr': 'MSR_WRITE',
  'l2.cpuid': 'CPUID',
  'l2.vmcall': 'VMCALL',
  'l2.vmread': 'VMREAD',
  'l2.vmwrite': 'VMWRITE',
  'l2.apic-read': 'APIC_ACCESS',
  'l2.apic-write': 'APIC_ACCESS',
};

const L1_VMX: Partial<Record<TraceEvent['kind'], string>> = {
  'l1.vmxon': 'VMON',
  'l1.vmxoff': 'VMOFF',
  'l1.vmptrld': 'VMPTRLD',
  'l1.vmclear': 'VMCLEAR',
  'l1.vmptrst': 'VMPTRST',
  'l1.vmlaunch': 'VMLAUNCH',
  'l1.vmresume': 'VMRESUME',
};

/** The exit to L0 an event took in the model, or null. */
export function exitOf(e: TraceEvent, out: Outcome, delta: (c: CostCounter) => number, r: Replayer): string | null {
  if (out.k === 'ignored') return null;
  const k = e.kind;
  if (k.startsWith('l2.')) return delta('l0Exits') > 0 ? (L2_REASON[k] ?? k) : null;
  const vmx = L1_VMX[k];
  if (vmx) return vmx;
  switch (e.kind) {
    case 'l1.vmread':
      return delta('vmreadExits') > 0 ? 'VMREAD' : null;
    case 'l1.vmwrite':
      return delta('vmwriteExits') > 0 ? 'VMWRITE' : null;
    case 'l1.cpuid':
      return 'CPUID';
    case 'l1.rdmsr':
    case 'l1.wrmsr': {
      const v = r.peek().vcpus[e.vcpu];
      return v && testBitmapBit(v.vmcs01MsrBitmap, e.msr, e.kind === 'l1.wrmsr') ? (e.kind === 'l1.rdmsr' ? 'MSR_READ' : 'MSR_WRITE') : null;
    }
    default:
      return delta('l0Exits') > 0 ? `(${k})` : null;
  }
}

/** Replays a trace under several profiles at once, event by event, tallying exits and costs. */
export class StatCollector {
  readonly reps: Replayer[];
  private readonly rows: Map<string, ExitRow>[];
  private readonly prev: number[][];
  private readonly ignored: number[];
  events = 0;
  /** per profile, the exit the last event took (or null) and its estimated cycles */
  readonly lastExit: (string | null)[];
  readonly lastCycles: number[];

  /** events before this index (an imported trace's synthetic preamble) replay but are not tallied */
  private readonly tallyFrom: number;
  /** an imported trace: an l2.vmcall without expect stands in for a nested exit nvx has no event for */
  private readonly imported: boolean;

  constructor(
    header: TraceHeader,
    readonly profiles: Profile[],
  ) {
    this.imported = isImportedTrace(header);
    this.tallyFrom = this.imported ? preambleLength(header) : 0;
    this.reps = profiles.map((p) => Replayer.fromHeader(header, p));
    this.rows = profiles.map(() => new Map());
    this.prev = profiles.map(() => COST_COUNTERS.map(() => 0));
    this.ignored = profiles.map(() => 0);
    this.lastExit = profiles.map(() => null);
    this.lastCycles = profiles.map(() => 0);
  }

  /** Apply one event under every profile; the outcomes, in profile order. */
  apply(e: TraceEvent): Outcome[] {
    const tally = this.events++ >= this.tallyFrom;
    const outs: Outcome[] = [];
    for (let i = 0; i < this.reps.length; i++) {
      const r = this.reps[i];
      const out = r.apply(e);
      outs.push(out);
      if (out.k === 'ignored') this.ignored[i]++;
      const prev = this.prev[i];
      const cost = r.cost;
      const delta = newCosts();
      let moved = false;
      COST_COUNTERS.forEach((c, j) => {
        const d = cost[c] - prev[j];
        if (d) {
          delta[c] = d;
          moved = true;
          prev[j] = cost[c];
        }
      });
      let reason = exitOf(e, out, (c) => delta[c], r);
      if (reason !== null && this.imported && e.kind === 'l2.vmcall' && !e.expect) reason = 'stand-in (l2.vmcall)';
      const cycles = moved ? estimateCycles(delta).total : 0;
      this.lastExit[i] = reason;
      this.lastCycles[i] = cycles;
      if (reason === null || !tally) continue;
      let row = this.rows[i].get(reason);
      if (!row) this.rows[i].set(reason, (row = { reason, samples: 0, cycles: 0 }));
      row.samples++;
      row.cycles += cycles;
    }
    return outs;
  }

  result(): ProfileStat[] {
    return this.profiles.map((p, i) => {
      const rows = [...this.rows[i].values()].sort((a, b) => b.samples - a.samples || b.cycles - a.cycles || (a.reason < b.reason ? -1 : 1));
      const cost = this.reps[i].cost;
      return {
        profile: p.name,
        rows,
        samples: rows.reduce((s, r) => s + r.samples, 0),
        cycles: rows.reduce((s, r) => s + r.cycles, 0),
        costs: { ...cost },
        estimatedCycles: estimateCycles(cost).total,
        ignored: this.ignored[i],
      };
    });
  }
}

/** The host's recorded exits of an imported trace (provenance `host.exits`: reason -> [samples, ns]). */
export function hostExits(h: TraceHeader): StatResult['host'] {
  const raw = h.provenance['host.exits'];
  if (!raw) return null;
  let m: unknown;
  try {
    m = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof m !== 'object' || m === null) return null;
  const rows: HostRow[] = [];
  for (const [reason, v] of Object.entries(m as Record<string, unknown>)) {
    if (Array.isArray(v) && typeof v[0] === 'number' && typeof v[1] === 'number') rows.push({ reason, samples: v[0], ns: v[1] });
    else if (typeof v === 'number') rows.push({ reason, samples: v, ns: 0 });
  }
  rows.sort((a, b) => b.samples - a.samples || (a.reason < b.reason ? -1 : 1));
  return { rows, samples: rows.reduce((s, r) => s + r.samples, 0), ns: rows.reduce((s, r) => s + r.ns, 0) };
}

/**
 * `--profiles reference,optimized,msr-bitmap=merge`: a comma list of profiles;
 * a profile that sets several areas joins them with '+'
 * (`msr-bitmap=merge+evmcs=clean-fields`).
 */
export function parseProfileList(spec: string, flag = '--profiles'): Profile[] {
  const parts = spec.split(',').map((s) => s.trim()).filter(Boolean);
  if (!parts.length) throw new UsageError(`${flag}: no profile given`);
  const seen = new Set<string>();
  const out: Profile[] = [];
  for (const part of parts) {
    const p = profileArg(part.replace(/\+/g, ','), flag);
    if (seen.has(p.name)) continue;
    seen.add(p.name);
    out.push(p);
  }
  return out;
}

export async function computeStat(file: string, profiles: Profile[]): Promise<{ stat: StatResult; warnings: string[] }> {
  const r = await openTrace(file);
  let col: StatCollector;
  try {
    col = new StatCollector(r.header, profiles);
    for await (const chunk of r.chunks()) for (const e of chunk) col.apply(e);
  } finally {
    await r.close();
  }
  return { stat: { file, events: col.events, profiles: col.result(), host: hostExits(r.header) }, warnings: r.warnings.map((w) => w.message) };
}

// ---- the table ----

const pct = (a: number, t: number) => (t ? `${((100 * a) / t).toFixed(2)}%` : '-');

interface Group {
  title: string;
  cols: string[];
  cells: (reason: string) => string[];
  total: string[];
}

function fmtNs(ns: number): string {
  return `${(ns / 1000).toFixed(2)}us`;
}

export function statLines(s: StatResult): string[] {
  const groups: Group[] = [];
  if (s.host) {
    const h = s.host;
    const by = new Map(h.rows.map((r) => [r.reason, r]));
    groups.push({
      title: 'host (recorded)',
      cols: ['Samples', 'Samples%', 'Time%', 'Avg time'],
      cells: (reason) => {
        const r = by.get(reason);
        return r ? [String(r.samples), pct(r.samples, h.samples), pct(r.ns, h.ns), r.samples ? fmtNs(r.ns / r.samples) : '-'] : ['', '', '', ''];
      },
      total: [String(h.samples), '', '', h.samples ? fmtNs(h.ns / h.samples) : '-'],
    });
  }
  for (const p of s.profiles) {
    const by = new Map(p.rows.map((r) => [r.reason, r]));
    groups.push({
      title: p.profile,
      cols: ['Samples', 'Samples%', 'Time%', 'Avg cycles'],
      cells: (reason) => {
        const r = by.get(reason);
        return r ? [String(r.samples), pct(r.samples, p.samples), pct(r.cycles, p.cycles), (r.cycles / r.samples).toFixed(1)] : ['', '', '', ''];
      },
      total: [String(p.samples), '', '', p.samples ? (p.cycles / p.samples).toFixed(1) : '-'],
    });
  }
  // Rows: the first profile's order (perf sorts by samples), then any other reasons.
  const reasons: string[] = [];
  const add = (r: string) => {
    if (!reasons.includes(r)) reasons.push(r);
  };
  for (const p of s.profiles) for (const r of p.rows) add(r.reason);
  if (s.host) for (const r of s.host.rows) add(r.reason);
  const first = s.profiles[0];
  const order = new Map(first ? first.rows.map((r, i) => [r.reason, i]) : []);
  reasons.sort((a, b) => (order.get(a) ?? 1e9) - (order.get(b) ?? 1e9));

  const widths = [8, 9, 8, 11];
  const reasonW = Math.max(20, ...reasons.map((r) => r.length + 2));
  const groupW = widths.reduce((a, b) => a + b, 0) + widths.length;
  const out: string[] = [];
  out.push(`Analyze events for all VMs, all VCPUs: ${s.file}, ${s.events} events`);
  out.push('(model time: cycles the cost table estimates for the counters each exit moved; host time: exit to entry)');
  out.push('');
  out.push(`${''.padStart(reasonW)} ${groups.map((g) => ('| ' + g.title).padEnd(groupW + 2)).join('')}`.trimEnd());
  out.push(`${'VM-EXIT'.padStart(reasonW)} ${groups.map((g) => '| ' + g.cols.map((c, i) => c.padStart(widths[i])).join(' ') + ' ').join('')}`.trimEnd());
  out.push('');
  for (const r of reasons) out.push(`${r.padStart(reasonW)} ${groups.map((g) => '| ' + g.cells(r).map((c, i) => c.padStart(widths[i])).join(' ') + ' ').join('')}`.trimEnd());
  out.push('');
  out.push(`${'Total'.padStart(reasonW)} ${groups.map((g) => '| ' + g.total.map((c, i) => c.padStart(widths[i])).join(' ') + ' ').join('')}`.trimEnd());
  out.push('');
  for (const p of s.profiles) out.push(`${p.profile}: Total Samples: ${p.samples}, estimated cycles of the samples: ${p.cycles}, of the whole trace: ${p.estimatedCycles}${p.ignored ? ` (${p.ignored} events could not happen in their state)` : ''}`);
  if (s.host) out.push(`host: Total Samples: ${s.host.samples}, Total events handled time: ${fmtNs(s.host.ns)}`);
  out.push('');
  out.push('nvx counters:');
  const w = Math.max(12, ...s.profiles.map((p) => p.profile.length));
  out.push(`  ${'counter'.padEnd(22)} ${s.profiles.map((p) => p.profile.padStart(w)).join(' ')}`);
  for (const c of COST_COUNTERS) if (s.profiles.some((p) => p.costs[c])) out.push(`  ${c.padEnd(22)} ${s.profiles.map((p) => String(p.costs[c]).padStart(w)).join(' ')}`);
  out.push(`  ${'estimated cycles'.padEnd(22)} ${s.profiles.map((p) => String(p.estimatedCycles).padStart(w)).join(' ')}`);
  return out;
}

export function registerStatCommands(program: Command, ctx: CliContext): void {
  addPathModuleOption(program.command('stat'))
    .description('a `perf kvm stat report`-shaped table of the exits each profile takes, side by side, with estimated time and nvx counters')
    .argument('<trace>', 'a trace file (.nvx text or .nvxt binary)')
    .option('-p, --profiles <list>', "profiles, comma-separated; join the areas of one profile with '+' (msr-bitmap=merge+evmcs=clean-fields)", 'reference,optimized')
    .option('--json', 'print one JSON object instead of the table')
    .action(async (file: string, o: { profiles: string; json?: boolean; pathModule?: string[] }) => {
      await loadPathModules(o, (m) => ctx.warn(m));
      const profiles = parseProfileList(o.profiles);
      const { stat, warnings } = await computeStat(file, profiles);
      for (const w of warnings) ctx.warn(`${file}: ${w}`);
      if (o.json) ctx.line(jsonText(stat));
      else for (const l of statLines(stat)) ctx.line(l);
    });
}
