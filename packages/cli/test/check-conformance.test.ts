/**
 * The conformance row of `nvx check`: KVM's tests as traces, expectations
 * checked under the kvm profile, known failures declared per trace with
 * `meta known-failure`. A trace that fails without declaring it, or declares
 * a failure that no longer happens, fails the check.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { nvx } from './fixtures/nvx';

const root = path.resolve(__dirname, '..', '..', '..');
let dir: string;
const p = (...parts: string[]) => path.join(dir, ...parts);

/** A conformance trace: VMPTRST after VMPTRLD (kvm-unit-tests test_vmptrst), with the expectation given. */
function vmptrst(expected: string, knownFailure?: string): string {
  return [
    'nvx-trace 1',
    'config vcpus=1',
    'memslot 0 gfn=0x0 npages=0x400 flags=0',
    'meta source "kvm-unit-tests/kvm-unit-tests x86/vmx.c"',
    'meta test "test_vmptrst"',
    'meta commit "1da1819e49fc4938985edca67df669099b4c87a7"',
    'meta verdict "pass"',
    ...(knownFailure ? [`meta known-failure "${knownFailure}"`] : []),
    'events',
    'l1.write 0x1000 4 0x11e57ed0',
    'l1.vmxon 0x1000 expect ok',
    'l1.write 0x3000 4 0x11e57ed0',
    'l1.vmptrld 0x3000 expect ok',
    `l1.vmptrst expect value ${expected}`,
    '',
  ].join('\n');
}

function conformanceDir(name: string, files: Record<string, string>): string {
  fs.mkdirSync(p(name));
  for (const [f, text] of Object.entries(files)) fs.writeFileSync(p(name, f), text);
  return p(name);
}

const check = (conf: string, ...more: string[]) => nvx(['check', '--no-fuzz', '-d', p('corpus'), '--conformance-dir', conf, '-p', 'reference', 'optimized', ...more]);

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-conformance-'));
  fs.mkdirSync(p('corpus'));
  fs.copyFileSync(path.join(root, 'traces', 'scenarios', 'msr-outside-ranges.nvx'), p('corpus', 'msr-outside-ranges.nvx'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('passes and declared known failures: the row counts them and the check passes', async () => {
  const conf = conformanceDir('ok', { 'a.nvx': vmptrst('0x3000'), 'b.nvx': vmptrst('0x4000', 'the model is wrong here') });
  const r = await check(conf);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/conformance\s+2 KVM tests under kvm \(.*ok\): 1 pass, 1 known failures, 0 new failures, 0 known failures now passing, 0 not as declared in lockstep/);
  expect(r.stdout).toMatch(/every conformance trace passes under kvm or is a declared known failure/);
});

test('an undeclared failure fails the check and names the trace, the event and what happened', async () => {
  const conf = conformanceDir('new', { 'a.nvx': vmptrst('0x3000'), 'bad.nvx': vmptrst('0x5000') });
  const r = await check(conf);
  expect(r.code).toBe(1);
  expect(r.stdout).toMatch(/failed {2}.*bad\.nvx {2}\[conformance, kvm\]\n {4}event 4 \(l1\.vmptrst .*\): got value 0x3000/);
  expect(r.stdout).toMatch(/1 pass, 0 known failures, 1 new failures/);
  expect(r.stdout).toMatch(/FAILED/);
});

test('a known failure that now passes fails the check until its declaration goes', async () => {
  const conf = conformanceDir('stale', { 'fixed.nvx': vmptrst('0x3000', 'once wrong') });
  const r = await check(conf);
  expect(r.code).toBe(1);
  expect(r.stdout).toMatch(/fixed {2}.*fixed\.nvx.*\n {4}declared a known failure \(once wrong\) but every expectation holds under kvm/);
  expect(r.stdout).toMatch(/1 known failures now passing/);
});

test('a trace without its provenance is a failure', async () => {
  const conf = conformanceDir('nometa', { 'x.nvx': vmptrst('0x3000').replace(/^meta commit .*\n/m, '') });
  const r = await check(conf);
  expect(r.code).toBe(1);
  expect(r.stdout).toMatch(/header lacks meta commit/);
});

test('--json carries the results and counts; --no-conformance leaves the row out', async () => {
  const conf = conformanceDir('json', { 'a.nvx': vmptrst('0x3000') });
  const j = await check(conf, '--json');
  expect(j.code).toBe(0);
  const parsed = JSON.parse(j.stdout) as { ok: boolean; conformance: { counts: Record<string, number>; results: { file: string; status: string }[] } };
  expect(parsed.ok).toBe(true);
  expect(parsed.conformance.counts).toMatchObject({ traces: 1, pass: 1, failed: 0 });
  expect(parsed.conformance.results.map((x) => x.status)).toEqual(['pass']);
  const none = await check(conf, '--no-conformance');
  expect(none.code).toBe(0);
  expect(none.stdout).not.toMatch(/^conformance/m);
});
