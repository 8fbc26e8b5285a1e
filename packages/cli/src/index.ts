export { run, main, buildProgram, commandOf, COMMANDS } from './main';
export type { CommandEntry, Registrar } from './main';
export { CliContext, EXIT, UsageError, colorsWanted } from './output';
export type { CliIO, OutStream } from './output';
export { registerTraceCommands } from './commands/trace';
