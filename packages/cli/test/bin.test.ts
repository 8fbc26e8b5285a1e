import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TraceEvent, encodeBinaryTrace, makeHeader } from '@nvx/trace';

const root = path.resolve(__dirname, '..', '..', '..');
let dir: string;

beforeAll(() => {
  // the executable runs the compiled output: build it first
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-b', 'packages/cli'], { cwd: root, stdio: 'pipe' });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-bin-'));
}, 300_000);
afterAll(() => dir && fs.rmSync(dir, { recursive: true, force: true }));

test('the built nvx executable: a corrupt trace exits 2 and names the offset', () => {
  const events = Array.from({ length: 3000 }, (_, i) => ({ kind: 'l1.vmread', vcpu: 0, field: 0x681e, expect: { k: 'value', value: BigInt(i) } }) as TraceEvent);
  const buf = encodeBinaryTrace(makeHeader(), events, { chunkEvents: 500 });
  buf[buf.length - 200] ^= 0x5a;
  const file = path.join(dir, 'corrupt.nvxt');
  fs.writeFileSync(file, buf);
  const r = spawnSync(process.execPath, [path.join(root, 'packages', 'cli', 'bin', 'nvx.js'), 'trace', 'validate', file], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  expect(r.status).toBe(2);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(/^error: .*corrupt\.nvxt, offset \d+/);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  const ok = spawnSync(process.execPath, [path.join(root, 'packages', 'cli', 'bin', 'nvx.js'), '--version'], { encoding: 'utf8' });
  expect(ok.status).toBe(0);
});
