import fc from 'fast-check';
import { decodeBinaryTrace, encodeBinaryTrace, formatTextTrace, parseTextTrace } from '@nvx/trace';
import { arbEvent, arbHeader } from './arbitraries';

const arbTrace = arbHeader.chain((header) => fc.tuple(fc.constant(header), fc.array(arbEvent(header.config), { maxLength: 40, size: 'max' })));

describe('text <-> binary', () => {
  test('any valid trace round-trips text -> binary -> text unchanged, and text -> events losslessly', () => {
    fc.assert(
      fc.property(arbTrace, ([header, events]) => {
        const text = formatTextTrace(header, events);
        const parsed = parseTextTrace(text, 'prop.nvx');
        expect(parsed.events).toEqual(events);
        expect(parsed.header).toEqual(header);
        const bin = decodeBinaryTrace(encodeBinaryTrace(parsed.header, parsed.events), 'prop.nvxt');
        expect(bin.warnings).toEqual([]);
        expect(formatTextTrace(bin.header, bin.events)).toBe(text);
      }),
      { seed: 7, numRuns: 300 },
    );
  });
});
