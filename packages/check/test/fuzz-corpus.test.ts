/**
 * traces/regressions/ is the corpus of kept findings: every trace there
 * gives the verdict it declares under every corpus profile (`npm test`
 * replays it, as `nvx check` does). A finding `nvx fuzz` writes joins it
 * as it is: a new bug declares `verdict "pass"` (the corpus check flags it
 * until the bug is fixed), an expected divergence of a known-wrong path
 * declares `verdict "finding"` and its profile.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { registerPath } from '@nvx/emulator';
import { readTraceFile } from '@nvx/trace';
import { checkCorpus, corpusProfiles, declaredVerdict, judge, listTraces } from '../src/corpus';
import { brokenMergeStickyPassthrough } from '../src/fixtures';
import { expectedDivergingProfiles, runFuzz } from '../src/fuzz';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const REGRESSIONS = path.join(ROOT, 'traces', 'regressions');

describe('the corpus of kept findings', () => {
  it('every trace in traces/regressions gives its declared verdict under every profile', async () => {
    const files = listTraces([REGRESSIONS]);
    expect(files.length).toBeGreaterThanOrEqual(6);
    const report = await checkCorpus([REGRESSIONS]);
    const bad = report.cells.filter((c) => c.status !== 'pass' && c.status !== 'expected-divergence');
    expect(bad).toEqual([]);
    for (const f of files) {
      const { header } = await readTraceFile(f);
      expect(() => declaredVerdict(header)).not.toThrow();
      expect(header.provenance.description ?? '').not.toBe('');
    }
  });

  it('the findings nvx fuzz kept there diverge only under the path they name', async () => {
    const kept = listTraces([REGRESSIONS]).filter((f) => path.basename(f).startsWith('fuzz-'));
    expect(kept.length).toBeGreaterThanOrEqual(2);
    for (const f of kept) {
      const { header, events } = await readTraceFile(f);
      const diverges = declaredVerdict(header).diverges;
      for (const p of corpusProfiles()) {
        const cell = judge(header, events, f, p);
        expect({ p, status: cell.status }).toEqual({ p, status: diverges.includes(p) ? 'expected-divergence' : 'pass' });
      }
    }
  });

  it("a fuzz finding joins the corpus as written: a new bug is flagged until fixed, a known path's is expected", async () => {
    registerPath(brokenMergeStickyPassthrough);
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-corpus-'));
    try {
      const profile = `msr-bitmap=${brokenMergeStickyPassthrough.name}`;
      await runFuzz({ profiles: [profile], seed: 44, runs: 120, workers: 1, maxFindings: 1, stateAt: 'end', minimizeMs: 3000, outDir: out });
      const expected = await expectedDivergingProfiles([REGRESSIONS]);
      await runFuzz({ profiles: ['guest-pages=kvm-map'], areas: ['guest-pages'], expected, seed: 45, runs: 120, workers: 1, maxFindings: 1, stateAt: 'end', minimizeMs: 3000, outDir: out });
      const files = listTraces([out]);
      expect(files).toHaveLength(2);
      for (const f of files) {
        const { header, events } = await readTraceFile(f);
        const p = header.provenance.profile;
        const cell = judge(header, events, f, p);
        if (p === profile) {
          expect(header.provenance.verdict).toBe('pass');
          expect(cell.status).toBe('new-divergence');
        } else {
          expect(header.provenance).toMatchObject({ verdict: 'finding', diverges: 'guest-pages=kvm-map', classification: 'expected' });
          expect(cell.status).toBe('expected-divergence');
        }
        // and under the reference itself it passes
        expect(judge(header, events, f, 'reference').status).toBe('pass');
      }
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  }, 30_000);
});
