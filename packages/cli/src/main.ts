/**
 * The `nvx` command. `run(argv)` does everything and returns the exit code,
 * so tests drive it in-process; `bin/nvx.js` calls `main()`, which exits.
 *
 * Commands live in `commands/*.ts`, each exporting a
 * `register...Commands(program, ctx)` added to REGISTRARS below.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { Command, CommanderError } from 'commander';
import { CliContext, CliIO, EXIT, processIO } from './output';
import { registerBisectCommands } from './commands/bisect';
import { registerCheckCommands } from './commands/check';
import { registerDiffCommands } from './commands/diff';
import { registerFuzzCommands } from './commands/fuzz';
import { registerImportCommands } from './commands/import';
import { registerMinimizeCommands } from './commands/minimize';
import { registerPathsCommands } from './commands/paths';
import { registerReportCommands } from './commands/report';
import { registerRunCommands } from './commands/run';
import { registerStatCommands } from './commands/stat';
import { registerTraceCommands } from './commands/trace';

export type Registrar = (program: Command, ctx: CliContext) => void;

/** Every command group, in the order `nvx --help` lists them. */
export const REGISTRARS: Registrar[] = [registerCheckCommands, registerRunCommands, registerDiffCommands, registerFuzzCommands, registerMinimizeCommands, registerBisectCommands, registerStatCommands, registerReportCommands, registerPathsCommands, registerTraceCommands, registerImportCommands];

function version(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/** The program with every command registered, writing through `ctx`. */
export function buildProgram(ctx: CliContext): Command {
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
    .addHelpText(
      'after',
      `
Exit codes: 0 success, 1 a check failed, 2 bad usage or bad input (unknown
option, missing or unreadable file, invalid trace), 3 internal error (a bug).
Colours only on a terminal; set NO_COLOR to turn them off.`,
    );
  for (const register of REGISTRARS) register(program, ctx);
  return program;
}

/** Run `nvx` with these arguments (without the node and script names); resolves to the exit code. */
export async function run(argv: string[], io: Partial<CliIO> = {}): Promise<number> {
  const ctx = new CliContext({ ...processIO(), ...io });
  const program = buildProgram(ctx);
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
