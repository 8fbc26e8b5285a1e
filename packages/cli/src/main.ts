/**
 * The `nvx` command. `run(argv)` does everything and returns the exit code,
 * so tests drive it in-process; `bin/nvx.js` calls `main()`, which exits.
 *
 * Commands live in `commands/*.ts`, each exporting a
 * `register...Commands(program, ctx)` named in COMMANDS below, which loads
 * only the command that runs.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { Command, CommanderError, Help } from 'commander';
import { CliContext, CliIO, EXIT, processIO } from './output';

export type Registrar = (program: Command, ctx: CliContext) => void;

/**
 * One command group: what `nvx --help` lists for it, and how to load it.
 * A command's module (and the emulator, the checker, the trace codec it
 * imports) is loaded only when that command runs or its own help is asked
 * for; `nvx --help` and `nvx --version` load none. `term` and `summary` are
 * the line `nvx --help` prints, word for word what the command registers
 * (test/bin.test.ts compares them).
 */
export interface CommandEntry {
  name: string;
  /** the command's term in the list: its name, `[options]` when it has options, its arguments */
  term: string;
  summary: string;
  load(): Registrar;
}

/* eslint-disable @typescript-eslint/no-require-imports */
/** Every command group, in the order `nvx --help` lists them. */
export const COMMANDS: readonly CommandEntry[] = [
  {
    name: 'check',
    term: 'check [options]',
    summary: 'the main job: replay every corpus trace under every profile and path, check expectations and verdicts, then fuzz every area for a short while (exit 1 on anything new)',
    load: () => (require('./commands/check') as typeof import('./commands/check')).registerCheckCommands,
  },
  {
    name: 'run',
    term: 'run [options] <trace>',
    summary: 'replay a trace under one profile, check its expect clauses, and print outcomes and costs',
    load: () => (require('./commands/run') as typeof import('./commands/run')).registerRunCommands,
  },
  {
    name: 'diff',
    term: 'diff [options] <trace>',
    summary: 'replay a trace under two profiles side by side and report the first divergence (exit 1 on a bug divergence)',
    load: () => (require('./commands/diff') as typeof import('./commands/diff')).registerDiffCommands,
  },
  {
    name: 'fuzz',
    term: 'fuzz [options]',
    summary: 'generate traces that mix every area (multi-vCPU, host events among L1 and L2 events), check every profile against reference, minimize and keep what diverges (exit 1 on a new finding)',
    load: () => (require('./commands/fuzz') as typeof import('./commands/fuzz')).registerFuzzCommands,
  },
  {
    name: 'minimize',
    term: 'minimize [options] <trace>',
    summary: 'shrink a diverging trace (delta debugging over events, then values) keeping it valid and the same kind of divergence; print or write the result',
    load: () => (require('./commands/minimize') as typeof import('./commands/minimize')).registerMinimizeCommands,
  },
  {
    name: 'bisect',
    term: 'bisect [options] [trace]',
    summary: 'the first event where two profiles differ, by jumping between checkpoints, with the state diff there; or, with --run, git bisect over event prefixes',
    load: () => (require('./commands/bisect') as typeof import('./commands/bisect')).registerBisectCommands,
  },
  {
    name: 'stat',
    term: 'stat [options] <trace>',
    summary: 'a `perf kvm stat report`-shaped table of the exits each profile takes, side by side, with estimated time and nvx counters',
    load: () => (require('./commands/stat') as typeof import('./commands/stat')).registerStatCommands,
  },
  {
    name: 'report',
    term: 'report [options] <trace>',
    summary: 'write one self-contained HTML page: timeline, first divergence with its state diff and contract status, exits and per-area costs',
    load: () => (require('./commands/report') as typeof import('./commands/report')).registerReportCommands,
  },
  {
    name: 'paths',
    term: 'paths [options]',
    summary: 'list the modelled areas and their paths (reference and optimized), the operations a patch can wrap, the loaded patches and the built-in profiles',
    load: () => (require('./commands/paths') as typeof import('./commands/paths')).registerPathsCommands,
  },
  {
    name: 'trace',
    term: 'trace',
    summary: 'look at, print, convert and validate trace files (.nvx text, .nvxt binary)',
    load: () => (require('./commands/trace') as typeof import('./commands/trace')).registerTraceCommands,
  },
  {
    name: 'import',
    term: 'import',
    summary: 'turn traces recorded elsewhere into nvx traces',
    load: () => (require('./commands/import') as typeof import('./commands/import')).registerImportCommands,
  },
];
/* eslint-enable @typescript-eslint/no-require-imports */

/**
 * The command group the arguments run, or whose help they ask for
 * (`nvx help <command>`); undefined for `nvx`, `nvx --help`, `nvx --version`.
 * The root takes no option with a value, so the first word that is not an
 * option is the command.
 */
export function commandOf(argv: readonly string[]): string | undefined {
  const i = argv.findIndex((a) => !a.startsWith('-'));
  if (i < 0) return undefined;
  if (argv[i] === 'help') return argv.slice(i + 1).find((a) => !a.startsWith('-'));
  return argv[i];
}

function version(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/**
 * The program, writing through `ctx`. By default every command is
 * registered whole; with `only` (what `commandOf` names, or null for none)
 * only that command is, and the others are listed by name and summary
 * without loading their modules.
 */
export function buildProgram(ctx: CliContext, only?: string | null): Command {
  const listed = new Map<Command, string>();
  const program = new Command('nvx');
  program
    .description('Event-sourced emulator of KVM nested VMX: replay, fuzz and bisect optimized paths against the reference')
    .version(version(), '-V, --version', 'print the nvx version')
    .helpOption('-h, --help', 'show help for a command')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.out(s),
      writeErr: (s) => ctx.err(s),
      outputError: (s, write) => write(ctx.errColors ? ctx.ce.red(s) : s),
      getOutHasColors: () => ctx.outColors,
      getErrHasColors: () => ctx.errColors,
      getOutHelpWidth: () => ctx.io.stdout.columns ?? 80,
      getErrHelpWidth: () => ctx.io.stderr.columns ?? 80,
    })
    .configureHelp({ subcommandTerm: (cmd) => listed.get(cmd) ?? new Help().subcommandTerm(cmd) })
    .addHelpText(
      'after',
      `
Exit codes: 0 success, 1 a check failed, 2 bad usage or bad input (unknown
option, missing or unreadable file, invalid trace), 3 internal error (a bug).
Colours only on a terminal; set NO_COLOR to turn them off.`,
    );
  for (const c of COMMANDS) {
    if (only === undefined || only === c.name) c.load()(program, ctx);
    else listed.set(program.command(c.name).description(c.summary), c.term);
  }
  return program;
}

/** Run `nvx` with these arguments (without the node and script names); resolves to the exit code. */
export async function run(argv: string[], io: Partial<CliIO> = {}): Promise<number> {
  const ctx = new CliContext({ ...processIO(), ...io });
  const program = buildProgram(ctx, commandOf(argv) ?? null);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ctx.exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander has already printed its message (help, version or the usage error)
      return e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    return ctx.fail(e);
  }
}

/**
 * The Node.js nvx needs: binary traces checksum their chunks with
 * zlib.crc32, which Node has since 20.15 (package.json `engines` says the
 * same). Returns the message for an older Node, or null.
 */
export function nodeTooOld(z: object = zlib, version = process.version): string | null {
  if (typeof (z as { crc32?: unknown }).crc32 === 'function') return null;
  return `nvx needs Node.js 20.15 or later (zlib.crc32, for binary traces); this is Node.js ${version}`;
}

/** Entry point of the `nvx` executable. */
export function main(): void {
  const old = nodeTooOld();
  if (old) {
    process.stderr.write(`error: ${old}\n`);
    process.exitCode = EXIT.USAGE;
    return;
  }
  // `nvx trace cat big.nvxt | head` closes the pipe early: that is not an error
  for (const s of [process.stdout, process.stderr]) {
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
  run(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = EXIT.INTERNAL;
    },
  );
}
