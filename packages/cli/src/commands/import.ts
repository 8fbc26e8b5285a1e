/**
 * `nvx import trace-cmd <report.txt> -o <trace>`: a host's kvm tracepoints,
 * as `trace-cmd report` prints them, into an nvx trace whose `expect`
 * clauses are what the host recorded (see docs/import.md).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { pipeline } from 'stream/promises';
import type { Command } from 'commander';
import { checkOutputPath, traceFormOf } from '@nvx/trace';
import { CliContext, UsageError } from '../output';
import { jsonText } from '../report';
import { ImportResult, importTraceCmd } from '../importers/trace-cmd';
import { progressBar } from '../importers/progress';

export function registerImportCommands(program: Command, ctx: CliContext): void {
  const imp = program.command('import').description('turn traces recorded elsewhere into nvx traces');
  imp
    .command('trace-cmd')
    .description("import the text of `trace-cmd report` for a KVM host's kvm tracepoints (record with `trace-cmd record -e kvm`)")
    .argument('<report>', "the output of `trace-cmd report`, as text; '-' reads standard input")
    .requiredOption('-o, --output <trace>', 'the trace to write (.nvx text or .nvxt binary)')
    .option('--skip-bad', 'skip lines that do not parse (counted in the header) instead of failing on the first')
    .option('--json', 'print one JSON object instead of text')
    .option('-q, --quiet', 'print nothing but errors and warnings')
    .action(async (report: string, o: { output: string; skipBad?: boolean; json?: boolean; quiet?: boolean }) => {
      if (!traceFormOf(o.output)) throw new UsageError(`--output ${o.output}: use a .nvx (text) or .nvxt (binary) name`);
      checkOutputPath(o.output);
      const bar = progressBar(ctx, 'importing', { quiet: o.quiet || o.json, unit: 'bytes' });
      let r: ImportResult;
      try {
        if (report === '-') r = await importStdin(ctx, o.output, { skipBad: o.skipBad });
        else r = await importTraceCmd(report, o.output, { skipBad: o.skipBad, onProgress: (d, t) => bar.update(d, t) });
      } finally {
        bar.stop();
      }
      for (const w of r.warnings) ctx.warn(`${report}: ${w}`);
      if (o.json) {
        const { header, ...rest } = r;
        ctx.line(jsonText({ ...rest, provenance: header.provenance }));
        return;
      }
      if (o.quiet) return;
      for (const l of importLines(r)) ctx.line(l);
    });
}

/**
 * `-`: the importer reads its source three times (threads, facts, events),
 * so standard input goes to a private temporary file first, removed after.
 */
async function importStdin(ctx: CliContext, output: string, opts: { skipBad?: boolean }): Promise<ImportResult> {
  const stdin = ctx.io.stdin;
  if (!stdin) throw new UsageError("'-': no standard input");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-stdin-'));
  try {
    const tmp = path.join(dir, 'report.txt');
    await pipeline(stdin, fs.createWriteStream(tmp, { mode: 0o600 }));
    return await importTraceCmd(tmp, output, { ...opts, name: '-' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function table(m: Record<string, number>, indent = '    '): string[] {
  const rows = Object.entries(m).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const w = Math.max(0, ...rows.map(([k]) => k.length));
  return rows.map(([k, n]) => `${indent}${k.padEnd(w)} ${String(n).padStart(8)}`);
}

export function importLines(r: ImportResult): string[] {
  const out: string[] = [];
  out.push(`${r.source} -> ${r.output}: ${r.events} events (${r.preambleEvents} of them the L1 preamble) for ${r.vcpus} vCPU${r.vcpus === 1 ? '' : 's'} on ${r.pcpus} CPU${r.pcpus === 1 ? '' : 's'}, from ${r.lines} lines`);
  out.push(`  ${r.expects} events carry the host's outcome as expect; check them with: nvx run ${r.output}`);
  const tps = table(r.tracepoints);
  if (tps.length) out.push('  lines by tracepoint:', ...tps);
  const sk = table(r.skipped);
  out.push(sk.length ? '  not turned into events:' : '  every line was used');
  out.push(...sk);
  const si = table(r.standins);
  if (si.length) out.push('  nested exits with no nvx event, replayed as a stand-in l2.vmcall (no expect):', ...si);
  if (r.unknownMsr) out.push(`  ${r.unknownMsr} L2 MSR exits reflected to L1 name no MSR (L0 does not emulate them): imported as MSR 0xffffffff`);
  if (r.inferred.entries || r.inferred.exits) out.push(`  inferred (not in the report): ${r.inferred.entries} nested entries, ${r.inferred.exits} nested exits`);
  return out;
}
