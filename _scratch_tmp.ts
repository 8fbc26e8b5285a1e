import fc from 'fast-check';
import { differentialProperty } from '/work/main/packages/check/src/arbitraries';
import { BROKEN_PATHS } from '/work/main/packages/check/src/fixtures';
import { parseProfile, registerPath } from '@nvx/emulator';
const nSeeds = Number(process.argv[2] ?? 20);
const max = Number(process.argv[3] ?? 3000);
const only = process.argv[4];
for (const b of BROKEN_PATHS) {
  if (only && !b.path.name.includes(only)) continue;
  registerPath(b.path);
  const prof = parseProfile(`${b.path.area}=${b.path.name}`);
  const runs: number[] = [];
  for (let seed = 100; seed < 100 + nSeeds; seed++) {
    const d = fc.check(differentialProperty(prof), { seed, numRuns: max, endOnFailure: true });
    runs.push(d.failed ? d.numRuns : Infinity);
  }
  runs.sort((a, b) => a - b);
  const q = (f: number) => runs[Math.min(runs.length - 1, Math.floor(f * runs.length))];
  console.log(b.path.name.padEnd(45), 'median', q(0.5), 'p80', q(0.8), 'max', runs[runs.length - 1], '<=300:', runs.filter((r) => r <= 300).length + '/' + runs.length);
}
