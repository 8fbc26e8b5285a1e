/**
 * Does `nvx fuzz --replay seed:path` of a shrunk finding give back the trace
 * fast-check shrank to? Loops campaign seeds against a broken fixture
 * (default msr-bitmap=broken-merge-sticky-passthrough; the whole-world
 * generator finds shadow-vmcs=broken-sync-rw-only, not the msr-bitmap ones)
 * with fast-check's shrinking on and a short shrink budget, replays
 * each finding by its path and compares the regenerated trace with the
 * shrunk one (event count and the hash of its canonical text). Prints one
 * line per seed and a summary; exit 1 when some replay differs. Without
 * --areas the campaign draws from every area's generator and the
 * whole-world one; --candidates bounds the shrink in candidates tried.
 *
 *   npx tsx tools/shrink-replay.ts [--seeds 20] [--from 1] [--shrink-ms 300] [--candidates N] [--areas msr-bitmap,evmcs] [--profile area=broken-path]
 */
import { AreaId, registerPath } from '@nvx/emulator';
import { BROKEN_PATHS } from '../packages/check/src/fixtures';
import { parseReplay, replayFuzz, runFuzz } from '../packages/check/src/fuzz';

function arg(name: string, d: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : d;
}

async function main(): Promise<number> {
  const seeds = Number(arg('--seeds', '20'));
  const from = Number(arg('--from', '1'));
  const shrinkMs = Number(arg('--shrink-ms', '300'));
  const cands = arg('--candidates', '');
  const shrinkCandidates = cands ? Number(cands) : undefined;
  const areasArg = arg('--areas', '');
  const areas = areasArg ? (areasArg.split(',') as AreaId[]) : undefined;
  for (const b of BROKEN_PATHS) registerPath(b.path);
  const profiles = [arg('--profile', 'msr-bitmap=broken-merge-sticky-passthrough')];
  let bad = 0;
  let cut = 0;
  for (let seed = from; seed < from + seeds; seed++) {
    const s = await runFuzz({ profiles, areas, seed, runs: 200, maxFindings: 1, shrinkMs, shrinkCandidates, minimizeMs: 1, stateAt: 'end', workers: 1 });
    const f = s.findings[0];
    if (!f) {
      console.log(`seed ${seed}: no finding`);
      continue;
    }
    const { seed: rs, path: p } = parseReplay(f.replay);
    const r = replayFuzz({ profiles, areas, seed: rs, path: p, minimizeMs: 1, stateAt: 'end' });
    const same = r.trace.events.length === f.shrunkEvents && r.finding?.shrunkHash === f.shrunkHash;
    if (!same) bad++;
    if (f.shrinkCutShort) cut++;
    console.log(`seed ${seed}: ${r.trace.header.provenance?.generator ?? ''} path ${f.path} generated ${f.generatedEvents} shrunk ${f.shrunkEvents} replayed ${r.trace.events.length} shrink ${f.shrinkMs} ms${f.shrinkCutShort ? ' (cut short)' : ''}${same ? '' : '  DIFFERS'}`);
  }
  console.log(`${bad} of ${seeds} replays differ (${cut} shrinks cut by the budget)`);
  return bad ? 1 : 0;
}

main().then((c) => process.exit(c), (e) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(2);
});
