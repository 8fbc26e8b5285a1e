/** `nvx paths`: the areas, their paths and the built-in profiles. */
import type { Command } from 'commander';
import { AREAS, AREA_IDS, BUILTIN_PROFILES, KVM_MODELLED_KERNEL, KVM_PROFILE_NOTES } from '@nvx/emulator';
import type { CliContext } from '../output';
import { jsonText } from '../report';

export function registerPathsCommands(program: Command, ctx: CliContext): void {
  program
    .command('paths')
    .description('list the modelled areas, their paths (reference and optimized) and the built-in profiles')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) => {
      const areas = AREA_IDS.map((a) => ({
        area: a,
        summary: AREAS[a].summary,
        reference: AREAS[a].reference,
        optimized: AREAS[a].optimized,
        paths: [...AREAS[a].paths.values()].map((p) => ({ name: p.name, summary: p.summary })),
      }));
      const profiles = Object.entries(BUILTIN_PROFILES).map(([name, spec]) => ({ name, spec: spec || '(every area on its reference path)' }));
      const kvm = { kernel: KVM_MODELLED_KERNEL, areas: KVM_PROFILE_NOTES };
      if (o.json) return ctx.line(jsonText({ areas, profiles, kvm }));
      for (const a of areas) {
        ctx.line(`${ctx.c.bold(a.area)}: ${a.summary}`);
        for (const p of a.paths) {
          const tag = p.name === a.reference ? ' (reference)' : p.name === a.optimized ? ' (optimized)' : '';
          ctx.line(`  ${(p.name + tag).padEnd(28)} ${p.summary}`);
        }
      }
      ctx.line('');
      ctx.line(ctx.c.bold('profiles'));
      for (const p of profiles) ctx.line(`  ${p.name.padEnd(12)} ${p.spec}`);
      ctx.line("  or area=path[,area=path...]: areas left out take their reference path");
      ctx.line('');
      ctx.line(`${ctx.c.bold('kvm')} models upstream ${KVM_MODELLED_KERNEL} (nested.c and friends); per area:`);
      for (const a of AREA_IDS) ctx.line(`  ${a.padEnd(12)} ${KVM_PROFILE_NOTES[a]}`);
    });
}
