/**
 * The form-changing minimizer measured: for every broken fixture path
 * (packages/check/src/fixtures) and every bug-history plugin with a
 * diverging status (tools/bug-history), a fixed-seed `nvx fuzz` campaign on
 * that profile alone finds a diverging generated trace; it is then minimized
 * twice with the same time limit, keeping its form (`--keep-form`) and
 * changing it (the default), and the sizes are printed: generated events,
 * minimized keeping the form, minimized changing it, and whether the
 * finding's signature stayed.
 *
 *   npx tsx tools/minimize-forms.ts [--seed 1000] [--runs 2000] [--time 20s] [--only name,...] [--skip-bug-history] [--show] [--json]
 *
 * `--show` prints both minimized traces.
 */
import * as path from 'path';
import { BROKEN_PATHS, FuzzEngine, findingSignature, loadPathModule, minimizeTrace, observationOf, parseDuration, resolveConfig } from '@nvx/check';
import fc from 'fast-check';
import { formatTextTrace } from '@nvx/trace';
import { parseProfile, registerPath } from '@nvx/emulator';
import { BUG_HISTORY } from './bug-history/catalog';

interface Row {
  name: string;
  profile: string;
  found: boolean;
  runs: number;
  generated: number;
  keepForm: number;
  changeForm: number;
  keepMs: number;
  changeMs: number;
  sameSignature: boolean;
  vcpusKept: number;
  vcpusChanged: number;
  evmcsKept: boolean;
  evmcsChanged: boolean;
}

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

async function main(): Promise<void> {
  const seed = Number(arg('--seed', '1000'));
  const runs = Number(arg('--runs', '2000'));
  const timeMs = parseDuration(arg('--time', '20s'));
  const only = arg('--only', '').split(',').filter(Boolean);
  const json = process.argv.includes('--json');
  const targets: { name: string; profile: string }[] = [];
  for (const b of BROKEN_PATHS) {
    registerPath(b.path);
    targets.push({ name: b.path.name, profile: `${b.path.area}=${b.path.name}` });
  }
  if (!process.argv.includes('--skip-bug-history'))
    for (const e of BUG_HISTORY) {
      if (e.status !== 'diverges' || !e.plugin || !e.profile) continue;
      await loadPathModule(path.join(__dirname, 'bug-history', e.plugin));
      targets.push({ name: `${e.commit} ${path.basename(e.plugin, '.ts')}`, profile: e.profile });
    }
  const rows: Row[] = [];
  const ref = parseProfile('reference');
  for (const t of targets) {
    if (only.length && !only.some((o) => t.name.includes(o))) continue;
    const other = parseProfile(t.profile);
    const cfg = resolveConfig({ profiles: [t.profile], minimizeMs: 0 });
    const engine = new FuzzEngine(cfg);
    let hit: { header: Parameters<typeof minimizeTrace>[0]; events: Parameters<typeof minimizeTrace>[1] } | null = null;
    let n = 0;
    for (let b = 0; !hit && n < runs; b++) {
      const r = engine.runBlock({ block: b, seed: seed + b, runs: 100 }, { finding: () => undefined });
      n += r.runs;
      if (Object.keys(r.signatures).length) {
        // the block's first diverging trace, found again by replaying the block
        fc.check(
          fc.property(engine.arbitrary, (tr) => {
            if (hit) return;
            if (engine.checkTrace(tr, undefined, undefined, engine.profiles).length) hit = { header: tr.header, events: tr.events };
          }),
          { seed: seed + b, numRuns: 100 },
        );
      }
    }
    if (!hit) {
      if (!json) console.log(`${t.name.padEnd(52)} not found in ${n} runs`);
      rows.push({ name: t.name, profile: t.profile, found: false, runs: n, generated: 0, keepForm: 0, changeForm: 0, keepMs: 0, changeMs: 0, sameSignature: false, vcpusKept: 0, vcpusChanged: 0, evmcsKept: false, evmcsChanged: false });
      continue;
    }
    const h = hit as { header: Parameters<typeof minimizeTrace>[0]; events: Parameters<typeof minimizeTrace>[1] };
    const keep = minimizeTrace(h.header, h.events, ref, other, { timeLimitMs: timeMs, signature: observationOf, changeForm: false });
    const change = minimizeTrace(h.header, h.events, ref, other, { timeLimitMs: timeMs, signature: observationOf });
    const sig = (m: typeof keep) => findingSignature(t.profile, m.result.divergence!);
    rows.push({
      name: t.name,
      profile: t.profile,
      found: true,
      runs: n,
      generated: h.events.length,
      keepForm: keep.after,
      changeForm: change.after,
      keepMs: keep.ms,
      changeMs: change.ms,
      sameSignature: sig(keep) === sig(change),
      vcpusKept: keep.header.config.vcpus,
      vcpusChanged: change.header.config.vcpus,
      evmcsKept: keep.events.some((e) => e.kind.startsWith('l1.evmcs-')),
      evmcsChanged: change.events.some((e) => e.kind.startsWith('l1.evmcs-')),
    });
    const r = rows[rows.length - 1];
    if (process.argv.includes('--show')) for (const m of [keep, change]) console.log(formatTextTrace(m.header, m.events));
    if (!json) console.log(`${r.name.padEnd(52)} ${String(r.generated).padStart(4)} -> keep form ${String(r.keepForm).padStart(3)} (${r.vcpusKept} vCPU${r.evmcsKept ? ', eVMCS' : ''}), change form ${String(r.changeForm).padStart(3)} (${r.vcpusChanged} vCPU${r.evmcsChanged ? ', eVMCS' : ''})${r.sameSignature ? '' : ' SIGNATURE CHANGED'}`);
  }
  if (json) console.log(JSON.stringify(rows, null, 2));
  else {
    const found = rows.filter((r) => r.found);
    const small = (k: 'keepForm' | 'changeForm') => found.filter((r) => r[k] <= 12).length;
    console.log(`found ${found.length}/${rows.length}; at most 12 events: ${small('keepForm')} keeping the form, ${small('changeForm')} changing it; smaller by changing the form: ${found.filter((r) => r.changeForm < r.keepForm).length}`);
  }
}

main().catch((e: unknown) => {
  console.error((e as Error).stack ?? String(e));
  process.exit(3);
});
