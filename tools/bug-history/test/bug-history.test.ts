/**
 * The bug-history set (tools/bug-history): every entry marked 'diverges'
 * loads as a plugin, diverges from reference on its trace with a bug
 * verdict (no contract broken first), and its trace is a real witness: it
 * runs clean under every correct profile listed beside it (no divergence
 * from reference, every `expect` holding) and fails an `expect` under the
 * plugin. The catalog, the README, the plugins and the traces agree.
 */
import * as fs from 'fs';
import * as path from 'path';
import { parseProfile } from '@nvx/emulator';
import { parseTextTrace } from '@nvx/trace';
import { checkExpects, diffEvents, loadPluginModule } from '@nvx/check';
import { BUG_HISTORY, BugEntry } from '../catalog';
import { bugHistoryDetails, bugHistoryTable } from '../table';

const DIR = path.resolve(__dirname, '..');
const at = (rel: string) => path.join(DIR, rel);
const load = (rel: string) => parseTextTrace(fs.readFileSync(at(rel), 'utf8'), rel);
const diverging = BUG_HISTORY.filter((b) => b.status === 'diverges');


describe('catalog', () => {
  test('commit ids are 12 hex digits and unique; every entry says what, where and its status details', () => {
    const seen = new Set<string>();
    for (const b of BUG_HISTORY) {
      expect(b.commit).toMatch(/^[0-9a-f]{12}$/);
      expect(seen.has(b.commit)).toBe(false);
      seen.add(b.commit);
      expect(b.what.length).toBeGreaterThan(20);
      expect(b.kvmFunction).not.toBe('');
      if (b.status === 'diverges') expect([b.plugin, b.profile, b.trace, b.correct?.length]).not.toContain(undefined);
      if (b.status === 'planned') expect(b.plan).toBeTruthy();
      if (b.status === 'not-expressible') expect(b.why).toBeTruthy();
    }
  });

  test('the README lists every entry (the table made from the catalog), and every plugin and trace on disk is in the catalog', () => {
    const readme = fs.readFileSync(at('README.md'), 'utf8');
    for (const b of BUG_HISTORY) expect(readme).toContain(b.commit);
    const between = (a: string, z: string) => readme.slice(readme.indexOf(a) + a.length, readme.indexOf(z)).trim();
    expect(between('<!-- table:start -->', '<!-- table:end -->')).toBe(bugHistoryTable().trim());
    expect(between('<!-- details:start -->', '<!-- details:end -->')).toBe(bugHistoryDetails().trim());
    const used = new Set(diverging.flatMap((b) => [b.plugin, b.trace]));
    const files = [...fs.readdirSync(at('plugins')).map((f) => `plugins/${f}`), ...fs.readdirSync(at('traces')).map((f) => `traces/${f}`)];
    for (const f of files) if (!f.endsWith('-lib.ts')) expect(used.has(f) ? f : `${f} (not in the catalog)`).toBe(f);
  });
});

describe.each(diverging.map((b) => [`${b.commit} ${b.subject}`, b] as [string, BugEntry]))('%s', (_name, b) => {
  beforeAll(async () => {
    // the plugin loader: an area path is checked against its interface, a patch against the operations table
    await loadPluginModule(at(b.plugin!));
  });

  test('the trace names its commit and plugin', () => {
    const { header } = load(b.trace!);
    expect(header.provenance.commit).toBe(b.commit);
    expect(header.provenance.plugin).toBe(b.profile);
  });

  test('the plugin diverges from reference with a bug verdict, and breaks an expect', () => {
    const { header, events } = load(b.trace!);
    const r = diffEvents(header, events, parseProfile('reference'), parseProfile(b.profile!));
    expect(r.divergence).not.toBeNull();
    expect(r.divergence!.verdict).toBe('bug');
    expect(r.divergence!.confirmed).toBe(true);
    expect(checkExpects(header, events, parseProfile(b.profile!)).mismatches.length).toBeGreaterThan(0);
  });

  test.each(b.correct!.map((p) => [p]))('runs clean under %s', (spec) => {
    const { header, events } = load(b.trace!);
    expect(checkExpects(header, events, parseProfile(spec)).mismatches).toEqual([]);
    expect(diffEvents(header, events, parseProfile('reference'), parseProfile(spec)).divergence).toBeNull();
  });
});
