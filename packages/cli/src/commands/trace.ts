/**
 * `nvx trace ...`: look at, print, convert and validate trace files.
 */
import { Command, Option } from 'commander';
import {
  EVENT_KINDS,
  OpenTraceReader,
  TraceError,
  TraceForm,
  TraceHeader,
  TraceWarning,
  TraceWriter,
  checkOutputPath,
  createTraceWriter,
  formatEvent,
  formatTextHeader,
  openTrace,
  traceFormOf,
} from '@nvx/trace';
import { CliContext, EXIT, UsageError } from '../output';

const FORMS: TraceForm[] = ['text', 'binary'];

function formOption(flag: string, what: string): Option {
  return new Option(`${flag} <form>`, what).choices(FORMS);
}

function describeWarning(w: TraceWarning): string {
  const at = w.offset === undefined || w.message.includes(`offset ${w.offset}`) ? undefined : `offset ${w.offset}`;
  const where = [w.file, at].filter((x) => x !== undefined).join(', ');
  return where ? `${where}: ${w.message}` : w.message;
}

function printWarnings(ctx: CliContext, warnings: readonly TraceWarning[]): void {
  for (const w of warnings) ctx.warn(describeWarning(w));
}

const hex = (v: bigint | number) => '0x' + v.toString(16);

/** The header as JSON-safe data (64-bit values as 0x-hex strings). */
function headerJson(h: TraceHeader): Record<string, unknown> {
  return {
    version: h.version,
    config: { ...h.config, memslots: h.config.memslots.map((m) => ({ slot: m.slot, gfn: hex(m.gfn), npages: m.npages, flags: m.flags })) },
    provenance: { ...h.provenance },
  };
}

function json(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? hex(x) : x), 2);
}

async function withReader<T>(file: string, form: TraceForm | undefined, body: (r: OpenTraceReader) => Promise<T>): Promise<T> {
  const r = await openTrace(file, { form });
  try {
    return await body(r);
  } finally {
    await r.close();
  }
}

// ---------------------------------------------------------------- info

interface InfoOptions {
  json?: boolean;
  form?: TraceForm;
}

async function info(ctx: CliContext, file: string, opts: InfoOptions): Promise<void> {
  await withReader(file, opts.form, async (r) => {
    const byKind = new Map<string, number>();
    let total = 0;
    let withExpect = 0;
    for await (const chunk of r.chunks()) {
      for (const e of chunk) {
        byKind.set(e.kind, (byKind.get(e.kind) ?? 0) + 1);
        if (e.expect) withExpect++;
      }
      total += chunk.length;
    }
    const kinds = EVENT_KINDS.filter((k) => byKind.has(k));
    const h = r.header;
    printWarnings(ctx, r.warnings);
    if (opts.json) {
      ctx.line(
        json({
          file,
          form: r.form,
          ...(r.binaryVersion === undefined ? {} : { binaryVersion: r.binaryVersion }),
          ...headerJson(h),
          events: total,
          withExpect,
          byKind: Object.fromEntries(kinds.map((k) => [k, byKind.get(k)])),
          truncated: r.warnings.length > 0,
          warnings: r.warnings.map((w) => ({ ...w })),
        }),
      );
      return;
    }
    const c = ctx.c;
    const label = (s: string) => c.bold(s.padEnd(12));
    const cont = ' '.repeat(12);
    const cfg = h.config as unknown as Record<string, unknown>;
    const keys = Object.keys(cfg).filter((k) => k !== 'memslots');
    ctx.line(`${label('file')}${file} (${r.form}, format ${h.version}${r.binaryVersion === undefined ? '' : `, binary version ${r.binaryVersion}`})`);
    const nums = keys.filter((k) => typeof cfg[k] !== 'boolean').map((k) => `${k}=${String(cfg[k])}`);
    const on = keys.filter((k) => cfg[k] === true);
    const off = keys.filter((k) => cfg[k] === false);
    ctx.line(`${label('config')}${nums.join(' ')}`);
    ctx.line(`${cont}on:  ${on.length ? on.join(' ') : c.dim('(none)')}`);
    ctx.line(`${cont}off: ${off.length ? off.join(' ') : c.dim('(none)')}`);
    if (h.config.memslots.length === 0) ctx.line(`${label('memslots')}${c.dim('(none)')}`);
    h.config.memslots.forEach((m, i) =>
      ctx.line(`${i === 0 ? label('memslots') : cont}slot ${m.slot}: gfn ${hex(m.gfn)}, ${hex(m.npages)} pages, flags ${m.flags}`),
    );
    const prov = Object.entries(h.provenance);
    if (prov.length === 0) ctx.line(`${label('provenance')}${c.dim('(none)')}`);
    prov.forEach(([k, v], i) => ctx.line(`${i === 0 ? label('provenance') : cont}${k}: ${JSON.stringify(v)}`));
    ctx.line(`${label('events')}${total}${withExpect ? ` (${withExpect} with expect)` : ''}`);
    const w = Math.max(0, ...kinds.map((k) => k.length));
    for (const k of kinds) ctx.line(`${cont}${k.padEnd(w)}  ${String(byKind.get(k)).padStart(String(total).length)}`);
    if (r.warnings.length) ctx.line(`${label('warnings')}${c.yellow(`${r.warnings.length}: ${r.warnings.map(describeWarning).join('; ')}`)}`);
  });
}

// ---------------------------------------------------------------- cat

async function cat(ctx: CliContext, file: string, opts: { form?: TraceForm }): Promise<void> {
  await withReader(file, opts.form, async (r) => {
    await ctx.write(formatTextHeader(r.header));
    for await (const chunk of r.chunks()) {
      let s = '';
      for (const e of chunk) s += formatEvent(e) + '\n';
      await ctx.write(s);
    }
    printWarnings(ctx, r.warnings);
  });
}

// ---------------------------------------------------------------- convert

interface ConvertOptions {
  to?: TraceForm;
  from?: TraceForm;
  quiet?: boolean;
}

async function convert(ctx: CliContext, input: string, output: string, opts: ConvertOptions): Promise<void> {
  const to = opts.to ?? traceFormOf(output);
  if (!to) throw new UsageError(`cannot tell the output form from '${output}': name it .nvx (text) or .nvxt (binary), or give --to text|binary`);
  checkOutputPath(output); // before reading anything: a missing directory or a directory as the output
  await withReader(input, opts.from, async (r) => {
    let w: TraceWriter | undefined;
    try {
      w = createTraceWriter(output, r.header, { form: to });
      for await (const chunk of r.chunks()) for (const e of chunk) w.write(e);
      w.close();
    } catch (e) {
      w?.abort();
      throw e;
    }
    printWarnings(ctx, r.warnings);
    if (r.warnings.length) ctx.warn(`${output}: holds the ${w.count} complete events read before the cut`);
    if (!opts.quiet) ctx.err(`${input} (${r.form}) -> ${output} (${to}): ${w.count} events\n`);
  });
}

// ---------------------------------------------------------------- validate

async function validate(ctx: CliContext, file: string, opts: InfoOptions): Promise<void> {
  let count = 0;
  let form: TraceForm | undefined;
  let warnings: TraceWarning[] = [];
  try {
    await withReader(file, opts.form, async (r) => {
      form = r.form;
      warnings = r.warnings;
      for await (const chunk of r.chunks()) count += chunk.length;
    });
  } catch (e) {
    if (!opts.json || !(e instanceof TraceError)) throw e;
    ctx.line(json({ file, form, valid: false, events: count, error: { message: e.problem, ...e.where } }));
    ctx.error(e.message);
    ctx.exitCode = EXIT.USAGE;
    return;
  }
  printWarnings(ctx, warnings);
  const truncated = warnings.length > 0;
  if (opts.json) {
    ctx.line(json({ file, form, valid: true, events: count, truncated, warnings: warnings.map((w) => ({ ...w })) }));
    return;
  }
  const c = ctx.c;
  if (truncated) {
    const at = warnings.find((w) => w.offset !== undefined)?.offset;
    ctx.line(`${c.yellow('OK (truncated)')} ${file}: ${count} complete events before the cut${at === undefined ? '' : ` at offset ${at}`} (${form})`);
  } else {
    ctx.line(`${c.green('OK')} ${file}: ${count} events (${form})`);
  }
}

// ---------------------------------------------------------------- registration

export function registerTraceCommands(program: Command, ctx: CliContext): void {
  const trace = program
    .command('trace')
    .description('look at, print, convert and validate trace files (.nvx text, .nvxt binary)')
    .addHelpText(
      'after',
      `
The form of a file comes from its extension (.nvx text, .nvxt binary); other
names are recognised by their content. Examples:
  nvx trace info run.nvxt
  nvx trace cat run.nvxt | less
  nvx trace convert scenario.nvx scenario.nvxt
  nvx trace validate --json run.nvxt`,
    );

  trace
    .command('info')
    .description('show the header (world configuration, memslots, provenance), the event count by kind, and warnings such as a cut-off file')
    .argument('<file>', 'trace file')
    .option('--json', 'print one JSON object instead of text')
    .addOption(formOption('--form', 'read the file as this form, whatever its name'))
    .action((file: string, opts: InfoOptions) => info(ctx, file, opts));

  trace
    .command('cat')
    .description('print a trace in the text form to stdout (streaming, for traces of any size)')
    .argument('<file>', 'trace file')
    .addOption(formOption('--form', 'read the file as this form, whatever its name'))
    .action((file: string, opts: { form?: TraceForm }) => cat(ctx, file, opts));

  trace
    .command('convert')
    .description(
      'convert a trace between the text and binary forms (streaming); the output is written to a temporary file and renamed, so on error nothing is left under its name',
    )
    .argument('<in>', 'input trace')
    .argument('<out>', 'output trace (.nvx text or .nvxt binary, unless --to says)')
    .addOption(formOption('--to', 'output form, whatever the output name'))
    .addOption(formOption('--from', 'read the input as this form, whatever its name'))
    .option('-q, --quiet', 'print nothing on success')
    .action((input: string, output: string, opts: ConvertOptions) => convert(ctx, input, output, opts));

  trace
    .command('validate')
    .description(
      'read and check every event (schema, ranges, the header\'s vCPU count, checksums); exit 0 if valid (a cut-off binary trace is valid up to the cut and is reported as truncated), 2 if not',
    )
    .argument('<file>', 'trace file')
    .option('--json', 'print one JSON object: {valid, events, truncated, warnings} or {valid: false, error}')
    .addOption(formOption('--form', 'read the file as this form, whatever its name'))
    .action((file: string, opts: InfoOptions) => validate(ctx, file, opts));
}
