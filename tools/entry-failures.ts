/**
 * How many nested VM-entries of a default fuzz campaign fail, and why: draws
 * N traces from the campaign's generator (arbCampaignTrace, every area: half
 * whole-world traces, half the per-area mix) with a fixed seed, replays each
 * under `reference`, and counts VMLAUNCH/VMRESUME outcomes. The VM-entry
 * control checks (nested_vmx_check_controls: VMfailValid 7) must not make a
 * campaign a flood of failed entries: generators are meant to set the
 * must-be-1 control bits and the prerequisites of the controls they draw.
 *
 *   npx tsx tools/entry-failures.ts [--traces 300] [--seed 1]
 */
import fc from 'fast-check';
import { arbCampaignTrace } from '@nvx/check';
import { Replayer, initialState, parseProfile } from '@nvx/emulator';
import { formatOutcome } from '@nvx/trace';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return dflt;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 0) {
    process.stderr.write(`entry-failures: ${name} wants a whole number, got ${process.argv[i + 1]}\n`);
    process.exit(2);
  }
  return n;
}

const traces = arg('--traces', 300);
const seed = arg('--seed', 1);
const profile = parseProfile('reference');
const samples = fc.sample(arbCampaignTrace(), { seed, numRuns: traces });

const byGenerator = new Map<string, { traces: number; entries: number; entered: number; fail7: number; other: Map<string, number> }>();
for (const t of samples) {
  const gen = String(t.header.provenance.generator ?? '?').startsWith('nvx fuzz world') ? 'world' : 'mix';
  const row = byGenerator.get(gen) ?? { traces: 0, entries: 0, entered: 0, fail7: 0, other: new Map<string, number>() };
  byGenerator.set(gen, row);
  row.traces++;
  const r = new Replayer(initialState(t.header, profile), profile);
  for (const e of t.events) {
    const o = r.apply(e);
    if (e.kind !== 'l1.vmlaunch' && e.kind !== 'l1.vmresume') continue;
    row.entries++;
    const s = formatOutcome(o);
    if (s === 'entered') row.entered++;
    else if (s === 'vmfail-valid 7') row.fail7++;
    else row.other.set(s.split(' ').slice(0, 2).join(' '), (row.other.get(s.split(' ').slice(0, 2).join(' ')) ?? 0) + 1);
  }
}

const pct = (a: number, b: number) => (b ? ((100 * a) / b).toFixed(1) : '0.0');
console.log(`${traces} campaign traces, seed ${seed}, under reference`);
console.log('generator  traces  entries  entered  vmfail-valid-7  (share)  other outcomes');
let all = { traces: 0, entries: 0, entered: 0, fail7: 0 };
for (const [gen, r] of [...byGenerator].sort()) {
  const other = [...r.other].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}: ${n}`).join(', ');
  console.log(`${gen.padEnd(9)}  ${String(r.traces).padStart(6)}  ${String(r.entries).padStart(7)}  ${String(r.entered).padStart(7)}  ${String(r.fail7).padStart(14)}  ${pct(r.fail7, r.entries).padStart(6)}%  ${other}`);
  all = { traces: all.traces + r.traces, entries: all.entries + r.entries, entered: all.entered + r.entered, fail7: all.fail7 + r.fail7 };
}
console.log(`${'all'.padEnd(9)}  ${String(all.traces).padStart(6)}  ${String(all.entries).padStart(7)}  ${String(all.entered).padStart(7)}  ${String(all.fail7).padStart(14)}  ${pct(all.fail7, all.entries).padStart(6)}%`);
