/**
 * One first divergence: `nvx diff` (lockstep, states compared at
 * checkpoints, then the stretch before an outcome divergence replayed state
 * by state) and `nvx bisect` (checkpoints and jumps) name the same event on
 * every shipped trace, under every profile the corpus check uses.
 */
import * as path from 'path';
import { parseProfile } from '@nvx/emulator';
import { readTraceFile } from '@nvx/trace';
import { bisectEvents, corpusProfiles, diffEvents, listTraces } from '@nvx/check';

const root = path.resolve(__dirname, '..', '..', '..');
const files = listTraces([path.join(root, 'traces/scenarios'), path.join(root, 'traces/regressions')]);

describe('diff and bisect agree on the first divergence', () => {
  test('every shipped trace under every corpus profile', async () => {
    expect(files.length).toBeGreaterThan(30);
    const ref = parseProfile('reference');
    const disagreements: string[] = [];
    let diverging = 0;
    let stateFirst = 0;
    for (const file of files) {
      const { header, events } = await readTraceFile(file);
      for (const spec of corpusProfiles().slice(1)) {
        const p = parseProfile(spec);
        const d = diffEvents(header, events, ref, p, { firstState: true }).divergence;
        const b = bisectEvents(header, events, ref, p).divergence;
        if (d) diverging++;
        if (d?.firstObservable) {
          stateFirst++;
          expect(d.firstObservable.index).toBeGreaterThan(d.index);
          expect(d.kind).toBe('state');
        }
        if (d?.index !== b?.index) disagreements.push(`${path.basename(file)} [${spec}]: diff ${d?.index ?? 'none'}, bisect ${b?.index ?? 'none'}`);
      }
    }
    expect(disagreements).toEqual([]);
    // the corpus has divergences, some of them visible in the state before any outcome
    expect(diverging).toBeGreaterThan(5);
    expect(stateFirst).toBeGreaterThan(0);
  }, 60_000);

  test('without firstState the lockstep names the first observable event (later on a state-first trace)', async () => {
    const { header, events } = await readTraceFile(path.join(root, 'traces/scenarios/pages-apic-access-migrate.nvx'));
    const p = parseProfile('guest-pages=kvm-map');
    const plain = diffEvents(header, events, parseProfile('reference'), p).divergence!;
    const first = diffEvents(header, events, parseProfile('reference'), p, { firstState: true }).divergence!;
    expect(first.index).toBeLessThan(plain.index);
    expect(first.firstObservable?.index).toBe(plain.index);
    expect(first.confirmed).toBe(true);
  });
});
