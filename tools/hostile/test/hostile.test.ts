/**
 * A bounded run of the hostile-input campaign (fixed seed): a couple of
 * thousand generated inputs through both readers in process, a handful of
 * them and four full-size bombs through the nvx command (from source) in
 * child processes with a capped heap. The long run is a command:
 * `npm run hostile -- --binary 100000 --text 20000`.
 */
import { runCampaign } from '../run';

it('hostile inputs: no crash, hang, runtime-error or long message; readers agree; lossless; bounded memory', async () => {
  const s = await runCampaign({
    binary: 1200,
    text: 400,
    seed: 16,
    cliEvery: 400,
    cliBombs: ['events-deep-lists', 'header-provenance-blob', 'header-empty-maps', 'text-no-newline', 'v2-inflate-bomb'],
    cli: { dist: false, heapMiB: 256, timeoutMs: 30000 },
    maxRssMiB: 256,
    slowMs: 2000,
    gen: { maxBytes: 1024 * 1024 },
  });
  // every input was judged, and both verdicts occur (the generators reach the decoders, not only the checksum)
  expect(s.verdicts.accepted + s.verdicts.rejected + s.verdicts.crash).toBe(1600);
  expect(s.verdicts.accepted).toBeGreaterThan(50);
  expect(s.verdicts.rejected).toBeGreaterThan(1000);
  expect(s.cli.runs).toBe(9);
  expect({ problems: Object.entries(s.problems).filter(([, n]) => n > 0), examples: s.examples }).toEqual({ problems: [], examples: {} });
  expect(s.maxMessageBytes).toBeLessThanOrEqual(1000);
  expect(s.cli.maxRssMiB).toBeGreaterThan(0);
  expect(s.cli.maxRssMiB).toBeLessThanOrEqual(256);
  expect(s.ok).toBe(true);
}, 180000);
