/** Text for people: costs, outcomes and divergences. */
import { COST_COUNTERS, Costs, estimateCycles } from '@nvx/emulator';
import type { Divergence, DiffResult } from '@nvx/check';
import { describeOutcome, formatEvent } from '@nvx/trace';
import type { Colors } from './output';

export function jsonText(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? '0x' + x.toString(16) : x), 2);
}

/** Non-zero counters as rows, then the estimated cycles. */
export function costLines(costs: Costs): string[] {
  const rows = COST_COUNTERS.filter((k) => costs[k]).map((k) => `  ${k.padEnd(22)} ${String(costs[k]).padStart(12)}`);
  const est = estimateCycles(costs);
  rows.push(`  ${'estimated cycles'.padEnd(22)} ${String(est.total).padStart(12)}`);
  return rows;
}

export function costsSideBySide(a: Costs, b: Costs, nameA: string, nameB: string): string[] {
  const w = Math.max(12, nameA.length, nameB.length);
  const out = [`  ${'counter'.padEnd(22)} ${nameA.padStart(w)} ${nameB.padStart(w)}`];
  for (const k of COST_COUNTERS) if (a[k] || b[k]) out.push(`  ${k.padEnd(22)} ${String(a[k]).padStart(w)} ${String(b[k]).padStart(w)}`);
  out.push(`  ${'estimated cycles'.padEnd(22)} ${String(estimateCycles(a).total).padStart(w)} ${String(estimateCycles(b).total).padStart(w)}`);
  return out;
}

export function divergenceLines(d: Divergence, r: DiffResult, c: Colors): string[] {
  const out: string[] = [];
  const head = d.verdict === 'bug' ? c.red(c.bold('DIVERGENCE (bug)')) : c.yellow(c.bold('DIVERGENCE (permitted)'));
  out.push(`${head} at event ${d.index}: ${formatEvent(d.event)}`);
  out.push(`  ${d.kind === 'outcome' ? 'outcomes differ' : 'same outcome, architectural state differs after the event'}${d.confirmed ? '' : ' (not confirmed by a replay from scratch!)'}`);
  out.push(`  ${r.base.padEnd(24)} ${describeOutcome(d.base)}`);
  out.push(`  ${r.other.padEnd(24)} ${describeOutcome(d.other)}`);
  const fo = d.firstObservable;
  if (fo) {
    out.push(`  first observable difference (outcomes differ) at event ${fo.index}: ${formatEvent({ ...fo.event, expect: undefined })}`);
    out.push(`    ${r.base.padEnd(22)} ${describeOutcome(fo.base)}`);
    out.push(`    ${r.other.padEnd(22)} ${describeOutcome(fo.other)}`);
  }
  if (d.archDiff.length) {
    out.push('  architectural state after the event:');
    for (const x of d.archDiff) out.push(`    ${x.key}: ${x.a ?? '(absent)'} vs ${x.b ?? '(absent)'}`);
  }
  for (const [side, facts] of [[r.base, d.explain.base], [r.other, d.explain.other]] as const) {
    const entries = Object.entries(facts);
    if (!entries.length) continue;
    out.push(`  ${side} internals:`);
    for (const [k, v] of entries) out.push(`    ${k}: ${v}`);
  }
  if (d.contract) {
    out.push(`  ${c.yellow('contract')}: ${d.contract.party} broke ${d.contract.contract} at event ${d.contract.index}${d.contract.cause !== undefined ? ` (set up at event ${d.contract.cause})` : ''}: ${d.contract.message}`);
    out.push('  A divergence after a broken contract is permitted: the optimization may rely on it.');
  } else out.push('  no contract was broken before this event: this is a bug in the optimized path');
  return out;
}
