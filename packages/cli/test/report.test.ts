import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TraceEvent, encodeBinaryTrace, makeHeader } from '@nvx/trace';
import { nvx } from './fixtures/nvx';
import { registerOpenBitmap } from './fixtures/open-bitmap-path';

const FIX = path.join(__dirname, 'fixtures');
const DIVERGING = path.join(FIX, 'diverging.nvx');
const BROKEN_CONTRACT = path.join(__dirname, '..', '..', '..', 'traces', 'scenarios', 'evmcs-broken-contract.nvx');
const OPEN = 'msr-bitmap=test-open-bitmap';

let dir: string;
const p = (name: string) => path.join(dir, name);

beforeAll(() => {
  registerOpenBitmap();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-report-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Everything that could make a browser fetch something. */
function externalReferences(html: string): string[] {
  const found: string[] = [];
  for (const re of [/\bsrc\s*=/gi, /\bhref\s*=\s*["']?(?!#)[^"'\s>]+/gi, /url\(/gi, /@import/gi, /<link\b/gi, /<iframe\b/gi, /\bfetch\(/g, /XMLHttpRequest/g]) {
    for (const m of html.matchAll(re)) found.push(m[0]);
  }
  return found;
}

describe('nvx report', () => {
  test('a bug divergence: marker, state diff and contract status in one self-contained page', async () => {
    const r = await nvx(['report', DIVERGING, '-o', p('bug.html'), '--profiles', `reference,${OPEN},optimized`]);
    expect(r.stderr).toBe('');
    // the page is written; the exit code says a bug divergence was found, as nvx diff would
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/bug\.html: 15 events under reference, msr-bitmap=test-open-bitmap, optimized; msr-bitmap=test-open-bitmap diverges at event 12 \(bug\)/);
    const html = fs.readFileSync(p('bug.html'), 'utf8');
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).toContain(`<meta http-equiv="Content-Security-Policy" content="default-src 'none';`);
    expect(externalReferences(html)).toEqual([]);
    // the divergent row of the event table, and the marker on the timeline: the first event after which
    // the states differ (as nvx bisect names it), then the first one whose outcomes differ
    expect(html).toMatch(/<tr id="divergence" data-index="12" class="[^"]*divergent[^"]*">/);
    expect(html).toMatch(/<g class="divergence-marker" data-index="12">/);
    expect(html).toMatch(/<div class="muted first-observable">first observable \(outcomes differ\) at event 13<\/div>/);
    expect(html).toMatch(/<p class="first-observable">The states differ from event 12 on; the first outcome that differs .* is at event 13: <code>l2\.rdmsr MSR_IA32_SPEC_CTRL<\/code>/);
    // the state diff behind it and the contract status
    expect(html).toMatch(/<table class="arch-diff">.*vcpu 0 L2 MSR_IA32_SPEC_CTRL.*0x1.*\(absent\)/s);
    expect(html).toContain('Contract: none broken before this event, so this is a bug in the optimized path.');
    expect(html).toContain('DIVERGENCE (bug)');
    // optimized matches the base
    expect(html).toMatch(/<div class="card same" data-profile="optimized">/);
    // per-area cost charts and the exits table
    expect(html).toMatch(/<svg [^>]*id="cycles-by-area"/);
    expect(html).toMatch(/<div class="area-chart" data-area="msr-bitmap">/);
    expect(html).toMatch(/<table id="exits-table">/);
  });

  test('a permitted divergence names the contract L1 broke', async () => {
    const r = await nvx(['report', BROKEN_CONTRACT, '-o', p('permitted.html')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/optimized diverges at event \d+ \(permitted\)/);
    const html = fs.readFileSync(p('permitted.html'), 'utf8');
    expect(html).toMatch(/<p class="contract-status">Contract: L1 broke hyperv-clean-fields at event \d+/);
    expect(html).toContain('DIVERGENCE (permitted)');
  });

  test('no divergence: no marker, the start of the trace', async () => {
    const r = await nvx(['report', DIVERGING, '-o', p('same.html'), '-q']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    const html = fs.readFileSync(p('same.html'), 'utf8');
    expect(html).not.toContain('id="divergence"');
    expect(html).toContain('Every profile matches reference on every event');
    expect(html).toMatch(/<h2>Events 0\.\.14<\/h2>/);
  });

  test('an imported trace: the agreement with the host', async () => {
    expect((await nvx(['import', 'trace-cmd', path.join(FIX, 'trace-cmd', 'nested-6x.txt'), '-o', p('host.nvxt'), '-q'])).code).toBe(0);
    expect((await nvx(['report', p('host.nvxt'), '-o', p('host.html'), '-q'])).code).toBe(0);
    const html = fs.readFileSync(p('host.html'), 'utf8');
    expect(html).toMatch(/<section id="agreement">/);
    expect(html).toMatch(/<td>reference<\/td><td class="num">6 \/ 6<\/td><td class="num">100\.0%<\/td>/);
    expect(html).toContain('host samples');
    // the host's recorded exits are a series of the exits chart, beside each profile
    expect(html).toMatch(/<svg [^>]*id="exits-chart"[^>]*>.*<text [^>]*class="legend">host \(recorded\)<\/text>.*<text [^>]*class="legend">reference<\/text>/s);
    expect(html).toMatch(/<rect [^>]*fill="#6b7280"><title>CPUID — host \(recorded\): \d+<\/title>/);
  });

  test('internals side by side with the deciding facts first; contract breaks on the timeline and in the table; colour by verdict', async () => {
    const bug = await nvx(['report', DIVERGING, '-o', p('side.html'), '--profiles', `reference,${OPEN}`, '-q']);
    expect(bug.code).toBe(1);
    const html = fs.readFileSync(p('side.html'), 'utf8');
    const table = /<h4>Internals side by side<\/h4>.*?<table class="kv explain">(.*?)<\/table>/s.exec(html)![1];
    expect(table).toMatch(/^<thead><tr><th>area<\/th><th>fact<\/th><th>reference<\/th><th>msr-bitmap=test-open-bitmap<\/th><\/tr><\/thead><tbody><tr class="decides"><td>msr-bitmap<\/td>/);
    // a deciding fact names each side's path and value; agreeing ones follow, not highlighted
    expect(table).toMatch(/<tr class="decides"><td>msr-bitmap<\/td><td class="mono">[^<]+<\/td><td class="mono"><span class="muted">no-bitmap:<\/span>/);
    const rows = [...table.split('<tbody>')[1].matchAll(/<tr( class="decides")?>/g)].map((m) => !!m[1]);
    expect(rows[0]).toBe(true);
    expect(rows.indexOf(false) === -1 || rows.slice(rows.indexOf(false)).every((d) => !d)).toBe(true);

    const permitted = await nvx(['report', BROKEN_CONTRACT, '-o', p('broken.html'), '-q', '--window', '20']);
    expect(permitted.code).toBe(0);
    const h2 = fs.readFileSync(p('broken.html'), 'utf8');
    expect(h2).toMatch(/<g class="divergence-marker permitted" data-index="16">/);
    expect(h2).toMatch(/<g class="contract-break" data-index="\d+">.*?<title>event \d+: L1 broke hyperv-clean-fields: /s);
    expect(h2).toMatch(/<tr data-index="\d+" class="[^"]*contract-break[^"]*"><td class="num"><span class="break" title="L1 broke hyperv-clean-fields here">contract broken<\/span>/);
    expect(h2).toMatch(/<tr id="divergence" data-index="16" class="[^"]*divergent permitted/);
  });

  test('chart labels fit: long profile names whole in the legends and lanes', async () => {
    const long = 'msr-bitmap=merge-tracked,evmcs=clean-fields,shadow-vmcs=intercept-ro';
    const r = await nvx(['report', DIVERGING, '-o', p('long-names.html'), '--profiles', `reference,${long.replace(/,/g, '+')}`, '-q']);
    expect(r.code).toBe(0);
    const html = fs.readFileSync(p('long-names.html'), 'utf8');
    expect(html).toContain(`class="legend">${long}</text>`);
    expect(html).toContain(`text-anchor="end" class="axis">${long}</text>`);
    // every chart is wide enough for its labels: the legend starts after the label column and fits in the width
    for (const m of html.matchAll(/<svg [^>]*width="(\d+)"[^>]*>(.*?)<\/svg>/gs)) {
      for (const t of m[2].matchAll(/<text x="([\d.]+)"[^>]*class="legend">([^<]*)<\/text>/g)) expect(Number(t[1]) + t[2].length * 6.6).toBeLessThanOrEqual(Number(m[1]) + 1);
    }
  });

  test('a long trace: the table shows a window around the first divergence, the timeline the whole trace in buckets', async () => {
    const ev: TraceEvent[] = [
      { kind: 'l1.write', vcpu: 0, gpa: 0x1000n, size: 4, value: 0x11e57ed0n },
      { kind: 'l1.vmxon', vcpu: 0, gpa: 0x1000n },
      { kind: 'l1.write', vcpu: 0, gpa: 0x2000n, size: 4, value: 0x11e57ed0n },
      { kind: 'l1.vmptrld', vcpu: 0, gpa: 0x2000n },
      { kind: 'l1.vmwrite', vcpu: 0, field: 0x4000, value: 0x16n }, // the must-be-1 control bits
      { kind: 'l1.vmwrite', vcpu: 0, field: 0x400c, value: 0x36dfbn },
      { kind: 'l1.vmwrite', vcpu: 0, field: 0x4012, value: 0x11fbn },
      { kind: 'l1.vmwrite', vcpu: 0, field: 0x4002, value: 0x14006172n },
      { kind: 'l1.vmwrite', vcpu: 0, field: 0x2004, value: 0x3000n },
      { kind: 'l1.vmlaunch', vcpu: 0 },
    ];
    for (let i = 0; i < 3000; i++) ev.push({ kind: 'l2.wrmsr', vcpu: 0, msr: 0x48, value: BigInt(i) });
    ev.push({ kind: 'l2.rdmsr', vcpu: 0, msr: 0x48 });
    for (let i = 0; i < 1000; i++) ev.push({ kind: 'l2.wrmsr', vcpu: 0, msr: 0x48, value: 7n });
    fs.writeFileSync(p('long.nvxt'), encodeBinaryTrace(makeHeader({ vcpus: 1 }, {}), ev, { chunkEvents: 500 }));
    const r = await nvx(['report', p('long.nvxt'), '-o', p('long.html'), '-p', `reference,${OPEN}`, '--window', '100']);
    expect(r.code).toBe(1); // a bug divergence
    const html = fs.readFileSync(p('long.html'), 'utf8');
    const rows = [...html.matchAll(/<tr(?: id="divergence")? data-index="(\d+)"/g)].map((m) => Number(m[1]));
    expect(rows).toHaveLength(100);
    const div = Number(/<tr id="divergence" data-index="(\d+)"/.exec(html)![1]);
    expect(div).toBeGreaterThanOrEqual(7);
    expect(rows[0]).toBeLessThanOrEqual(div);
    expect(rows[rows.length - 1]).toBeGreaterThan(div);
    expect(html).toMatch(/4011 events in buckets of 7\./);
  });

  test('usage errors exit 2 and leave no file', async () => {
    expect((await nvx(['report', DIVERGING])).code).toBe(2);
    expect((await nvx(['report', DIVERGING, '-o', p('x.html'), '--window', '3'])).code).toBe(2);
    const r = await nvx(['report', p('missing.nvx'), '-o', p('x.html')]);
    expect(r.code).toBe(2);
    expect(fs.existsSync(p('x.html'))).toBe(false);
  });
});
