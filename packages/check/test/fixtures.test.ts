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
    const d = fc.check(differentialProperty(parseProfile(spec)), PROPERTY_DEFAULTS);
    expect(d.failed).toBe(true);
    const e = d.errorInstance;
    expect(e).toBeInstanceOf(DivergenceFound);
    const { trace, result } = e as DivergenceFound;
    expect(result.divergence).not.toBeNull();
    expect(result.divergence!.verdict).toBe('bug');
    expect(result.divergence!.confirmed).toBe(true);
    expect(result.violations).toEqual([]);
    // eslint-disable-next-line no-console
    console.log(
      `${spec}: caught after ${d.numRuns} of ${PROPERTY_DEFAULTS.numRuns} runs (seed ${d.seed}), shrunk ${d.numShrinks} times to ${trace.events.length} events; ` +
        `diverges at event ${result.divergence!.index}: ${formatEvent(result.divergence!.event)}`,
    );
  });
});
