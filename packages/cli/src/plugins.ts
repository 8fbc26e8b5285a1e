/**
 * `--path-module <file>` for the commands that replay: load a user's path
 * module (a plugin, see docs/plugins.md) before the profiles are resolved,
 * so `--profile msr-bitmap=my-path` can name it. Repeatable.
 */
import type { Command } from 'commander';
import { UsageError } from './output';

export const PATH_MODULE_HELP = 'load a path plugin (.js or .ts module exporting a path, or an array of paths) before resolving profiles; repeatable';

/** Add a repeatable `--path-module <file>` to a command. */
export function addPathModuleOption(cmd: Command): Command {
  return cmd.option('--path-module <file>', PATH_MODULE_HELP, (v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
}

/**
 * Load every module given with --path-module, in order, registering their
 * paths. A module that cannot be loaded or does not fit its area's
 * interface becomes a UsageError (exit 2) naming the file, the area and
 * what is missing. `warn` hears about members no interface knows.
 * Returns the paths the modules register, as `area=name`.
 */
export async function loadPathModules(opts: { pathModule?: string[] }, warn?: (message: string) => void): Promise<string[]> {
  const names: string[] = [];
  if (!opts.pathModule?.length) return names;
  // the checker (and what it loads) only when there is a module to load: `nvx run` starts without it
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { PluginError, loadPathModule } = require('@nvx/check') as typeof import('@nvx/check');
  for (const file of opts.pathModule) {
    try {
      for (const p of await loadPathModule(file, { warn })) if (!names.includes(`${p.area}=${p.name}`)) names.push(`${p.area}=${p.name}`);
    } catch (e) {
      if (e instanceof PluginError) throw new UsageError(e.message);
      throw new UsageError(`${file}: cannot load the path module: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return names;
}
