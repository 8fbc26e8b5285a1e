import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TraceEvent, encodeBinaryTrace, formatTextTrace, makeHeader } from '@nvx/trace';

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

test('the built nvx loads only what a command needs: --help and --version no package of nvx, run on a text trace no checker, immer or msgpackr', () => {
  // a preload that lists, at exit, the packages the process loaded
  const preload = path.join(dir, 'loaded.js');
  fs.writeFileSync(
    preload,
    "process.on('exit', () => { const s = new Set(); for (const k of Object.keys(require.cache)) { const m = /(?:node_modules|packages)[\\\\/]((?:@[^\\\\/]+[\\\\/])?[^\\\\/]+)/.exec(k); if (m) s.add(m[1].replace(/\\\\/g, '/')); } require('fs').writeFileSync(process.env.NVX_LOADED, [...s].sort().join('\\n')); });\n",
  );
  const trace = path.join(dir, 'tiny.nvx');
  fs.writeFileSync(trace, formatTextTrace(makeHeader(), [{ kind: 'l1.vmxon', vcpu: 0, gpa: 0x1000n }, { kind: 'l1.vmread', vcpu: 0, field: 0x681e }]));
  const loaded = (...args: string[]) => {
    const out = path.join(dir, 'loaded.txt');
    const r = spawnSync(process.execPath, ['-r', preload, path.join(root, 'packages', 'cli', 'bin', 'nvx.js'), ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', NVX_LOADED: out } });
    expect(r.stderr).toBe('');
    return fs.readFileSync(out, 'utf8').split('\n');
  };
  for (const flag of ['--help', '--version']) {
    const l = loaded(flag);
    expect(l).toContain('commander');
    expect(l.filter((m) => /^(arch|trace|emulator|check|msgpackr|immer)$/.test(m))).toEqual([]);
  }
  const l = loaded('run', trace);
  expect(l).toEqual(expect.arrayContaining(['arch', 'trace', 'emulator']));
  expect(l.filter((m) => /^(check|immer|msgpackr|fast-check|cli-progress)$/.test(m))).toEqual([]);
});
