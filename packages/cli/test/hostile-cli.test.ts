/**
 * The nvx command against hostile arguments and files: bad numeric flags
 * are usage errors, outputs are checked before the work, only regular files
 * are read, and a failed write leaves nothing behind.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { run } from '@nvx/cli';
import { TraceEvent, formatTextTrace, makeHeader } from '@nvx/trace';

async function nvx(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(args, { stdout: { write: (s: string) => (out.push(s), true) }, stderr: { write: (s: string) => (err.push(s), true) }, env: {} });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

/** One `error:` line, no stack, no runtime-error text. */
function expectOneLineError(stderr: string, re: RegExp): void {
  const lines = stderr.split('\n').filter((l) => l !== '');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^error: /);
  expect(lines[0]).toMatch(re);
  expect(stderr).not.toMatch(/internal error|\n\s+at |TypeError|RangeError/);
}

let dir: string;
let trace: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-hostile-cli-'));
  trace = path.join(dir, 't.nvx');
  const events: TraceEvent[] = [{ kind: 'l1.vmxon', vcpu: 0, gpa: 0x1000n, expect: { k: 'ok' } }];
  fs.writeFileSync(trace, formatTextTrace(makeHeader(), events));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('hostile arguments and files', () => {
  it.each(['0', '-5', 'abc', '1.5', ''])('diff --checkpoint %p is a usage error (exit 2), not an internal error', async (v) => {
    const r = await nvx(['diff', '--checkpoint', v, trace]);
    expect(r.code).toBe(2);
    expectOneLineError(r.stderr, /--checkpoint must be a positive integer/);
  });

  it('report -o into a missing directory or onto a directory fails before the work, naming the output', async () => {
    const missing = path.join(dir, 'nope', 'r.html');
    let r = await nvx(['report', trace, '-q', '-o', missing]);
    expect(r.code).toBe(2);
    expectOneLineError(r.stderr, /nope\/r\.html: the directory '.*nope' does not exist/);
    r = await nvx(['report', trace, '-q', '-o', dir]);
    expect(r.code).toBe(2);
    expectOneLineError(r.stderr, /the output is a directory/);
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('trace convert checks its output first and leaves nothing behind when the input is bad', async () => {
    let r = await nvx(['trace', 'convert', trace, path.join(dir, 'nope', 'x.nvxt')]);
    expect(r.code).toBe(2);
    expectOneLineError(r.stderr, /does not exist/);
    const bad = path.join(dir, 'bad.nvx');
    fs.writeFileSync(bad, formatTextTrace(makeHeader(), []) + 'l1.vmxon 0x1000\nl1.vmxon nonsense\n');
    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    r = await nvx(['trace', 'convert', bad, path.join(out, 'x.nvxt')]);
    expect(r.code).toBe(2);
    expectOneLineError(r.stderr, /bad\.nvx, line \d+, field 'gpa': 'nonsense' is not a number/);
    expect(fs.readdirSync(out)).toEqual([]);
  });

  it('a FIFO or a device given as the trace is refused at once (exit 2), never read', async () => {
    const fifo = path.join(dir, 'pipe.nvxt');
    if (spawnSync('mkfifo', [fifo]).status !== 0) return;
    for (const f of [fifo, '/dev/zero']) {
      const r = await nvx(['trace', 'info', f]);
      expect(r.code).toBe(2);
      expectOneLineError(r.stderr, /not a regular file/);
    }
  });

  it("'-' reads the trace from standard input", () => {
    const child = path.resolve(__dirname, '..', '..', '..', 'tools', 'hostile', 'child.ts');
    const r = spawnSync(process.execPath, ['--import', 'tsx', child, 'trace', 'validate', '-'], { input: fs.readFileSync(trace), encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^OK -: 1 events \(text\)/);
    expect(r.status).toBe(0);
  }, 30000);
});
