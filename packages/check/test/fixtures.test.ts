/**
 * The property has teeth: every deliberately broken path in
 * src/fixtures/ is caught by the very property run the correct paths pass
 * (same generator, same seed, same number of runs), with a 'bug' verdict.
 * Each is registered as a plugin path and checked alone (`area=broken-...`).
 */
import fc from 'fast-check';
import { parseProfile, registerPath } from '@nvx/emulator';
import { formatEvent } from '@nvx/trace';
import { DivergenceFound, PROPERTY_DEFAULTS, differentialProperty } from '../src/arbitraries';
import { BROKEN_PATHS } from '../src/fixtures';

/** The broken paths of the areas this generator exercises (other areas bring their own generators). */
const COVERED = BROKEN_PATHS.filter((b) => b.path.area === 'msr-bitmap' || b.path.area === 'evmcs');

describe('broken paths are caught by the default property run', () => {
  it('there are at least three for the msr-bitmap and evmcs areas, all named broken-*', () => {
    expect(COVERED.length).toBeGreaterThanOrEqual(3);
    for (const b of BROKEN_PATHS) expect(b.path.name).toMatch(/^broken-/);
    expect(new Set(COVERED.map((b) => b.path.area))).toEqual(new Set(['msr-bitmap', 'evmcs']));
  });

  it.each(COVERED.map((b) => [b.path.name, b] as const))('%s', (_name, b) => {
    registerPath(b.path);
    const spec = `${b.path.area}=${b.path.name}`;
    const prop = differentialProperty(parseProfile(spec));
    // Detection: exactly the settings the correct paths pass with (shrinking apart).
    const found = fc.check(prop, { ...PROPERTY_DEFAULTS, endOnFailure: true });
    expect(found.failed).toBe(true);
    expect(found.errorInstance).toBeInstanceOf(DivergenceFound);
    const raw = found.errorInstance as DivergenceFound;
    expect(raw.result.divergence!.verdict).toBe('bug');
    // Then shrink that counterexample, for a short trace to show (best effort: time-capped).
    const shrunk = fc.check(prop, { seed: found.seed, path: found.counterexamplePath!, interruptAfterTimeLimit: 1500 });
    const e = (shrunk.failed ? shrunk.errorInstance : raw) as DivergenceFound;
    const d = e.result.divergence!;
    expect(d.verdict).toBe('bug');
    expect(d.confirmed).toBe(true);
    expect(e.result.violations).toEqual([]);
    // eslint-disable-next-line no-console
    console.log(
      `${spec}: caught after ${found.numRuns} of ${PROPERTY_DEFAULTS.numRuns} runs (seed ${found.seed}); diverges at event ${d.index} ` +
        `(${raw.trace.events.length} events up to the divergence before shrinking):\n  ${e.trace.events.map(formatEvent).join('\n  ')}`,
    );
  });
});
