/** `nvx paths`: the areas, their paths, the operations table, the loaded patches and the built-in profiles. */
import type { Command } from 'commander';
import { AREAS, AREA_IDS, BUILTIN_PROFILES, KVM_MODELLED_KERNEL, KVM_PROFILE_NOTES, OP_NAMES, OP_PARAMS, PATCHES } from '@nvx/emulator';
import type { CliContext } from '../output';
import { addPathModuleOption, loadPathModules } from '../plugins';
import { jsonText } from '../report';

export function registerPathsCommands(program: Command, ctx: CliContext): void {
  addPathModuleOption(program.command('paths'))
    .description('list the modelled areas and their paths (reference and optimized), the operations a patch can wrap, the loaded patches and the built-in profiles')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean; pathModule?: string[] }) => {
      await loadPathModules(o, (m) => ctx.warn(m));
      const areas = AREA_IDS.map((a) => ({
        area: a,
        summary: AREAS[a].summary,
        reference: AREAS[a].reference,
        optimized: AREAS[a].optimized,
        paths: [...AREAS[a].paths.values()].map((p) => ({ name: p.name, summary: p.summary })),
      }));
      const operations = OP_NAMES.map((name) => ({ name, params: [...OP_PARAMS[name]] }));
      const patches = [...PATCHES.values()].map((p) => ({ name: p.name, summary: p.summary, ops: Object.keys(p.ops) }));
      const profiles = Object.entries(BUILTIN_PROFILES).map(([name, spec]) => ({ name, spec: spec || '(every area on its reference path)' }));
      const kvm = { kernel: KVM_MODELLED_KERNEL, areas: KVM_PROFILE_NOTES };
      if (o.json) return ctx.line(jsonText({ areas, operations, patches, profiles, kvm }));
      for (const a of areas) {
        ctx.line(`${ctx.c.bold(a.area)}: ${a.summary}`);
        for (const p of a.paths) {
          const tag = p.name === a.reference ? ' (reference)' : p.name === a.optimized ? ' (optimized)' : '';
          ctx.line(`  ${(p.name + tag).padEnd(28)} ${p.summary}`);
        }
      }
      ctx.line('');
      ctx.line(`${ctx.c.bold('operations')}: the KVM functions a patch can replace or wrap (docs/plugins.md)`);
      for (const op of operations) ctx.line(`  ${op.name}(${op.params.join(', ')})`);
      ctx.line('');
      ctx.line(`${ctx.c.bold('patches')}: ${patches.length ? '' : 'none loaded (--path-module <file> loads a plugin that exports one)'}`);
      for (const p of patches) ctx.line(`  ${p.name.padEnd(28)} ${p.summary} [${p.ops.join(', ')}]`);
      ctx.line('');
      ctx.line(ctx.c.bold('profiles'));
      for (const p of profiles) ctx.line(`  ${p.name.padEnd(12)} ${p.spec}`);
      ctx.line('  or area=path[,area=path...][,patch=name[+name...]]: areas left out take their reference path; patches apply in order');
      ctx.line('');
      ctx.line(`${ctx.c.bold('kvm')} models upstream ${KVM_MODELLED_KERNEL} (nested.c and friends); per area:`);
      for (const a of AREA_IDS) ctx.line(`  ${a.padEnd(12)} ${KVM_PROFILE_NOTES[a]}`);
    });
}
