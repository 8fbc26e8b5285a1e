/**
 * One rule for the exit code of every command that compares two profiles
 * (diff, bisect, report, minimize; check and fuzz follow it per cell):
 *
 *   0  the profiles agree, or they diverge only after a broken contract
 *      (permitted), or the trace declares this divergence and the user asked
 *      for declarations to count (--accept-declared)
 *   1  a bug divergence: no contract was broken before it. A trace that
 *      declares it a kept finding (meta verdict "finding") still exits 1:
 *      the real code is wrong there. Only `nvx check`, which replays the
 *      corpus against the verdicts it declares, counts it as expected.
 *      With --strict a permitted divergence exits 1 too.
 *   2  bad usage or bad input
 *   3  an internal error
 *
 * `--json` carries the verdict and the exit code, so a CI step can tell a
 * kept finding from a new bug without parsing text.
 */
import type { Divergence } from '@nvx/check';
import { declaredVerdict } from '@nvx/check';
import type { TraceHeader } from '@nvx/trace';
import { EXIT } from './output';

/** same: no divergence; bug / permitted: as the contract monitor says; expected-finding: a bug divergence the trace declares as a kept finding. */
export type Verdict = 'same' | 'bug' | 'permitted' | 'expected-finding';

export const EXIT_RULE_HELP = `
Exit codes (one rule for diff, bisect, report, minimize and check):
  0  the profiles agree, or diverge only after a broken contract (permitted)
  1  a bug divergence; a trace's declared kept finding (meta verdict "finding")
     counts too unless --accept-declared (nvx check counts it as expected);
     with --strict a permitted divergence as well
  2  bad usage or bad input   3  internal error (a bug in nvx)`;

export const ACCEPT_DECLARED_HELP = 'exit 0 on a divergence the trace declares as a kept finding (meta verdict "finding" naming this profile); by default it exits 1 like any bug';

/** What the trace's header declares about the divergence of `profile`: 'finding', 'permitted:<contract>', or null. */
export function declaredFor(header: TraceHeader, ...profiles: string[]): string | null {
  let d;
  try {
    d = declaredVerdict(header);
  } catch {
    return null;
  }
  if (d.verdict === 'pass' || !profiles.some((p) => d.diverges.includes(p))) return null;
  return d.verdict === 'finding' ? 'finding' : `permitted:${d.contract}`;
}

export function verdictOf(d: Pick<Divergence, 'verdict'> | null | undefined, declared: string | null): Verdict {
  if (!d) return 'same';
  if (d.verdict === 'permitted') return 'permitted';
  return declared === 'finding' ? 'expected-finding' : 'bug';
}

export function exitFor(v: Verdict, o: { strict?: boolean; acceptDeclared?: boolean }): number {
  if (v === 'bug') return EXIT.CHECK_FAILED;
  if (v === 'expected-finding') return o.acceptDeclared ? EXIT.OK : EXIT.CHECK_FAILED;
  if (v === 'permitted') return o.strict ? EXIT.CHECK_FAILED : EXIT.OK;
  return EXIT.OK;
}

/** The worst of several exit codes (report and check judge several profiles). */
export const worstExit = (codes: number[]) => codes.reduce((a, b) => Math.max(a, b), EXIT.OK);
