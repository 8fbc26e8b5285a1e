export { run, main, buildProgram, REGISTRARS } from './main';
export type { Registrar } from './main';
export { CliContext, EXIT, UsageError, colorsWanted } from './output';
export type { CliIO, OutStream } from './output';
export { registerTraceCommands } from './commands/trace';
