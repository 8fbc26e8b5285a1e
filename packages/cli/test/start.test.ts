/**
 * Fast start: `nvx` registers only the command that runs and lists the
 * others from COMMANDS without loading their modules. What `nvx --help`
 * prints for a command must be what the command registers itself, so the
 * list in COMMANDS is compared here with every command registered whole.
 * (That the built executable loads no more than it needs is checked in
 * bin.test.ts, which builds it.)
 */
import { Help } from 'commander';
import { COMMANDS, buildProgram, commandOf, run } from '../src/main';
import { CliContext } from '../src/output';

const quiet = () => new CliContext({ stdout: { write: () => true }, stderr: { write: () => true }, env: {} });

describe('the command list', () => {
  test("each command's term and summary in COMMANDS are what the command registers", () => {
    const whole = buildProgram(quiet());
    const help = new Help();
    const registered = whole.commands.map((c) => ({ name: c.name(), term: help.subcommandTerm(c), summary: c.description() }));
    expect(COMMANDS.map((c) => ({ name: c.name, term: c.term, summary: c.summary }))).toEqual(registered);
  });

  test('nvx --help lists the same lines whether the commands are registered whole or only listed', () => {
    const whole = buildProgram(quiet()).helpInformation();
    const listed = buildProgram(quiet(), null).helpInformation();
    expect(listed).toBe(whole);
    for (const c of COMMANDS) expect(buildProgram(quiet(), c.name).helpInformation()).toBe(whole);
  });

  test('only the named command is registered whole', () => {
    const p = buildProgram(quiet(), 'run');
    const byName = new Map(p.commands.map((c) => [c.name(), c]));
    expect(byName.get('run')!.options.map((o) => o.long)).toContain('--profile');
    expect(byName.get('diff')!.options).toEqual([]);
    expect(byName.get('trace')!.commands).toEqual([]);
  });
});

describe('commandOf', () => {
  test.each([
    [[], undefined],
    [['--help'], undefined],
    [['-V'], undefined],
    [['run', 'x.nvx', '--profile', 'optimized'], 'run'],
    [['--help', 'bisect'], 'bisect'],
    [['help', 'trace', 'info'], 'trace'],
    [['help'], undefined],
    [['rnu'], 'rnu'],
  ])('%j names %s', (argv, name) => {
    expect(commandOf(argv)).toBe(name);
  });

  test('an unknown command is still an error with a suggestion (exit 2)', async () => {
    const err: string[] = [];
    const code = await run(['rnu'], { stdout: { write: () => true }, stderr: { write: (s: string) => (err.push(s), true) }, env: {} });
    expect(code).toBe(2);
    expect(err.join('')).toMatch(/unknown command 'rnu'[\s\S]*Did you mean run\?/);
  });
});
