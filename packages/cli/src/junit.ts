/**
 * JUnit XML for CI systems (`--junit FILE` on check, diff and fuzz): what
 * GitLab, Jenkins and the GitHub test-report actions show per test. One
 * <testsuite> per group of results, one <testcase> per trace x profile or
 * per fuzz campaign; a failing case carries the first divergence.
 *
 * The schema followed is the common subset every consumer reads:
 * testsuites > testsuite(name, tests, failures, errors, skipped, time) >
 * testcase(classname, name, time) > failure(message, type) | skipped,
 * system-out.
 */
import * as fs from 'fs';
import * as path from 'path';
import { UsageError } from './output';

export interface JUnitCase {
  /** the group the case belongs to (a trace file, `fuzz`) */
  classname: string;
  /** the case within it (a profile, a campaign) */
  name: string;
  /** seconds */
  time?: number;
  /** the case failed: a one-line message and the full text */
  failure?: { message: string; type: string; text: string };
  /** not run, with the reason */
  skipped?: string;
  /** what passed and why (an expected or permitted divergence) */
  out?: string;
}

export interface JUnitSuite {
  name: string;
  cases: JUnitCase[];
  /** seconds */
  time?: number;
}

/** XML 1.0 text: escape markup, drop the control characters XML cannot carry (colour codes included). */
export function xmlEscape(s: string): string {
  return s
    // eslint-disable-next-line no-control-regex
    .replace(/\x1b\[[0-9;]*m/g, '')
    // eslint-disable-next-line no-control-regex
    .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

const secs = (t: number | undefined) => (t ?? 0).toFixed(3);

export function junitXml(suites: JUnitSuite[]): string {
  const out = ['<?xml version="1.0" encoding="UTF-8"?>'];
  const count = (f: (c: JUnitCase) => boolean) => suites.reduce((n, s) => n + s.cases.filter(f).length, 0);
  const total = suites.reduce((n, s) => n + s.cases.length, 0);
  const time = suites.reduce((n, s) => n + (s.time ?? s.cases.reduce((m, c) => m + (c.time ?? 0), 0)), 0);
  out.push(`<testsuites name="nvx" tests="${total}" failures="${count((c) => !!c.failure)}" errors="0" skipped="${count((c) => !!c.skipped)}" time="${secs(time)}">`);
  for (const s of suites) {
    const failures = s.cases.filter((c) => c.failure).length;
    const skipped = s.cases.filter((c) => c.skipped !== undefined).length;
    const t = s.time ?? s.cases.reduce((m, c) => m + (c.time ?? 0), 0);
    out.push(`  <testsuite name="${xmlEscape(s.name)}" tests="${s.cases.length}" failures="${failures}" errors="0" skipped="${skipped}" time="${secs(t)}">`);
    for (const c of s.cases) {
      const open = `    <testcase classname="${xmlEscape(c.classname)}" name="${xmlEscape(c.name)}" time="${secs(c.time)}"`;
      if (!c.failure && c.skipped === undefined && !c.out) {
        out.push(`${open}/>`);
        continue;
      }
      out.push(`${open}>`);
      if (c.failure) out.push(`      <failure message="${xmlEscape(c.failure.message)}" type="${xmlEscape(c.failure.type)}">${xmlEscape(c.failure.text)}</failure>`);
      if (c.skipped !== undefined) out.push(`      <skipped message="${xmlEscape(c.skipped)}"/>`);
      if (c.out) out.push(`      <system-out>${xmlEscape(c.out)}</system-out>`);
      out.push('    </testcase>');
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return out.join('\n') + '\n';
}

/** Refuse a --junit file whose directory is missing before any work is done (not after a half-hour check). */
export function checkJUnitPath(file: string | undefined): void {
  if (file === undefined) return;
  const dir = path.dirname(path.resolve(file));
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new UsageError(`--junit ${file}: the directory ${path.dirname(file)} does not exist`);
  }
  if (!st.isDirectory()) throw new UsageError(`--junit ${file}: ${path.dirname(file)} is not a directory`);
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw new UsageError(`--junit ${file}: is a directory`);
}

/** Write the report through a temporary file renamed into place (a CI step never reads half a file). */
export function writeJUnit(file: string, suites: JUnitSuite[]): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(tmp, junitXml(suites));
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
