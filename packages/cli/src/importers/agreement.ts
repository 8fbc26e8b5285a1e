/**
 * Checking an imported host trace: the outcome each event's `expect` holds
 * is what the host recorded; the replay says what a profile predicts. What
 * is compared is where control went (the class of the outcome: a nested
 * VM-exit to L1 with its reason, an entry into L2, or no exit to L1), since
 * that is what the tracepoints determine. Values (an MSR's contents, CPUID
 * registers) come from the host's state, which the model does not hold; they
 * are compared too, for information only.
 */
import { exitReasonName } from '@nvx/arch';
import { Outcome, TraceEvent, TraceHeader, formatEvent, formatOutcome, outcomeMatches } from '@nvx/trace';
import type { Colors } from '../output';

/** `provenance.imported` of a trace the trace-cmd importer wrote (here, so `nvx run` does not load the importer to check for one). */
export const IMPORTED_FROM_TRACE_CMD = 'trace-cmd';

/** Was this trace imported from a host trace (so its expects are recordings, not assertions)? */
export function isImportedTrace(h: TraceHeader): boolean {
  return h.provenance.imported === IMPORTED_FROM_TRACE_CMD;
}

/** The number of events the importer put before the host's own (its L1 preamble). */
export function preambleLength(h: TraceHeader): number {
  const n = Number(h.provenance['import.preamble'] ?? '0');
  return Number.isInteger(n) && n >= 0 ? n : 0;
}

/** Where control went: `exit MSR_READ`, `entered`, `no exit`, `ignored`, `vmfail`, `#UD`. */
export function outcomeClass(o: Outcome): string {
  switch (o.k) {
    case 'exit':
      return o.reason === undefined ? 'exit' : `exit ${exitReasonName(o.reason)}`;
    case 'entered':
      return 'entered';
    case 'ignored':
      return 'ignored';
    case 'vmfail-invalid':
    case 'vmfail-valid':
      return 'vmfail';
    case 'ud':
      return '#UD';
    default:
      return 'no exit';
  }
}

export type AgreementCategory = 'exits' | 'entries' | 'l1';

export interface Disagreement {
  index: number;
  event: string;
  category: AgreementCategory;
  recorded: string;
  predicted: string;
}

export interface AgreementSummary {
  profile: string;
  /** L2 instructions that exited to L0 on the host: did the profile send the same ones to L1? */
  exits: { total: number; agree: number; rate: number | null };
  /** L1's VMLAUNCH/VMRESUME that entered L2 on the host */
  entries: { total: number; agree: number };
  /** L1's own RDMSR/WRMSR/CPUID */
  l1: { total: number; agree: number };
  /** recorded values (MSR contents, CPUID registers) equal to the profile's, where both say the same class */
  values: { total: number; equal: number };
  /** the importer's preamble: its expects must all hold */
  preamble: { total: number; failed: number; firstFailure: Disagreement | null };
  first: Disagreement | null;
  /** disagreements by `recorded -> predicted` */
  kinds: Record<string, number>;
}

function category(e: TraceEvent): AgreementCategory {
  if (e.kind.startsWith('l2.')) return 'exits';
  if (e.kind === 'l1.vmlaunch' || e.kind === 'l1.vmresume') return 'entries';
  return 'l1';
}

function hasValue(o: Outcome): boolean {
  if (o.k === 'value') return o.value !== undefined;
  if (o.k === 'cpuid') return o.eax !== undefined;
  return false;
}

/** Feed every event with its predicted outcome, in order; then `summary()`. */
export class Agreement {
  private readonly s: AgreementSummary;
  private index = 0;

  constructor(
    header: TraceHeader,
    profile: string,
    private readonly preamble = preambleLength(header),
  ) {
    this.s = {
      profile,
      exits: { total: 0, agree: 0, rate: null },
      entries: { total: 0, agree: 0 },
      l1: { total: 0, agree: 0 },
      values: { total: 0, equal: 0 },
      preamble: { total: 0, failed: 0, firstFailure: null },
      first: null,
      kinds: {},
    };
  }

  observe(e: TraceEvent, predicted: Outcome): void {
    const i = this.index++;
    const rec = e.expect;
    if (!rec) return;
    const s = this.s;
    const cat = category(e);
    if (i < this.preamble) {
      s.preamble.total++;
      if (!outcomeMatches(rec, predicted)) {
        s.preamble.failed++;
        s.preamble.firstFailure ??= { index: i, event: formatEvent({ ...e, expect: undefined }), category: cat, recorded: formatOutcome(rec), predicted: formatOutcome(predicted) };
      }
      return;
    }
    const a = outcomeClass(rec);
    const b = outcomeClass(predicted);
    const agree = a === b;
    const bucket = s[cat];
    bucket.total++;
    if (agree) {
      bucket.agree++;
      if (hasValue(rec)) {
        s.values.total++;
        if (outcomeMatches(rec, predicted)) s.values.equal++;
      }
      return;
    }
    const k = `${a} -> ${b}`;
    s.kinds[k] = (s.kinds[k] ?? 0) + 1;
    s.first ??= { index: i, event: formatEvent({ ...e, expect: undefined }), category: cat, recorded: formatOutcome(rec), predicted: formatOutcome(predicted) };
  }

  summary(): AgreementSummary {
    const x = this.s.exits;
    x.rate = x.total ? x.agree / x.total : null;
    return this.s;
  }
}

/** Did the check fail: a class disagreement, or a preamble expect that does not hold? */
export function agreementFailed(s: AgreementSummary): boolean {
  return s.first !== null || s.preamble.failed > 0;
}

const pct = (a: number, t: number) => (t ? `${((100 * a) / t).toFixed(1)}%` : 'n/a');

/** The text `nvx run` prints for an imported trace. */
export function agreementLines(s: AgreementSummary, c: Colors): string[] {
  const out: string[] = [];
  const all = s.exits.total + s.entries.total + s.l1.total;
  const allAgree = s.exits.agree + s.entries.agree + s.l1.agree;
  const head = s.first ? c.red(c.bold('agreement')) : c.green(c.bold('agreement'));
  out.push(`${head} with the host under ${s.profile}: ${s.exits.agree} of ${s.exits.total} recorded L2 exits (${pct(s.exits.agree, s.exits.total)}) went where the host sent them`);
  out.push(`  L2 exits       ${String(s.exits.agree).padStart(8)} / ${String(s.exits.total).padEnd(8)} ${pct(s.exits.agree, s.exits.total)}`);
  out.push(`  L1 entries     ${String(s.entries.agree).padStart(8)} / ${String(s.entries.total).padEnd(8)} ${pct(s.entries.agree, s.entries.total)}`);
  out.push(`  L1 MSR/CPUID   ${String(s.l1.agree).padStart(8)} / ${String(s.l1.total).padEnd(8)} ${pct(s.l1.agree, s.l1.total)}`);
  out.push(`  all            ${String(allAgree).padStart(8)} / ${String(all).padEnd(8)} ${pct(allAgree, all)}`);
  out.push(`  values (MSR contents, CPUID registers; the model does not hold the host's): ${s.values.equal} of ${s.values.total} equal`);
  if (s.first) {
    out.push(`  ${c.red('first disagreement')} at event ${s.first.index}: ${s.first.event}`);
    out.push(`    host recorded  ${s.first.recorded}`);
    out.push(`    ${s.profile.padEnd(14)} ${s.first.predicted}`);
    const kinds = Object.entries(s.kinds).sort((a, b) => b[1] - a[1]);
    if (kinds.length) out.push(`  disagreements: ${kinds.map(([k, n]) => `${k} x${n}`).join(', ')}`);
  }
  if (s.preamble.failed) {
    const f = s.preamble.firstFailure!;
    out.push(`  ${c.red('preamble')}: ${s.preamble.failed} of ${s.preamble.total} set-up events failed; first at event ${f.index}: ${f.event}: expected ${f.recorded}, got ${f.predicted}`);
  }
  return out;
}
