/**
 * Patches of the operations table: a wrapper that changes what a KVM
 * function does diverges from the reference under diff, a pass-through
 * wrapper does not (on every scenario it runs), wrappers see the calls one
 * operation makes to another, patches apply in order, and a module whose
 * patch does not fit is refused naming the file, the patch, the operation
 * and the problem.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { KVM_OPS, OP_NAMES, OP_PARAMS, PATCHES, Patch, ProfileError, parseProfile, registerPatch, unregisterPatch } from '@nvx/emulator';
import { readTraceFile } from '@nvx/trace';
import { diffEvents } from '../src/diff';
import { PluginError, loadPathModule, loadPluginModule } from '../src/plugins';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const SCENARIOS = path.join(ROOT, 'traces', 'scenarios');
let dir: string;
const file = (name: string, text: string) => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, text);
  return f;
};

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvx-patches-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function diffScenario(name: string, other: string) {
  const t = await readTraceFile(path.join(SCENARIOS, name));
  return diffEvents(t.header, t.events, parseProfile('reference'), parseProfile(other));
}

describe('the table', () => {
  test('every operation has a built-in entry taking the listed parameters', () => {
    for (const name of OP_NAMES) {
      expect(typeof KVM_OPS[name]).toBe('function');
      // default parameters shorten .length: an entry never declares more than the table says
      expect(KVM_OPS[name].length).toBeLessThanOrEqual(OP_PARAMS[name].length);
    }
    expect(parseProfile('reference').ops).toBe(KVM_OPS);
  });
});

describe('patches under diff', () => {
  test('a wrapper of nested_vmx_run that changes behaviour diverges; a pass-through wrapper does not', async () => {
    const f = file(
      'run-patches.ts',
      `import type { Patch } from '@nvx/emulator';
// VMLAUNCH emulated as VMRESUME: a clear vmcs12 then fails with VMfailValid 5
export const asResume: Patch = { kind: 'patch', name: 'test-launch-as-resume', summary: 'VMLAUNCH taken for VMRESUME', ops: {
  nested_vmx_run: (orig) => (ctx, w, v, _launch) => orig(ctx, w, v, false),
} };
export const through: Patch = { kind: 'patch', name: 'test-pass-through', summary: 'every wrapper calls the original', ops: {
  nested_vmx_run: (orig) => (ctx, w, v, launch) => orig(ctx, w, v, launch),
  nested_vmx_vmexit: (orig) => (...args) => orig(...args),
  copy_enlightened_to_vmcs12: (orig) => (ctx, w, v, clean) => orig(ctx, w, v, clean),
  kvm_gpc_check: (orig) => (ctx, w, gpc) => orig(ctx, w, gpc),
} };
`,
    );
    const { paths, patches } = await loadPluginModule(f);
    expect(paths).toEqual([]);
    expect(patches.map((p) => p.name)).toEqual(['test-launch-as-resume', 'test-pass-through']);

    const bad = await diffScenario('l1-intercepts-fs-base.nvx', 'patch=test-launch-as-resume');
    expect(bad.divergence).not.toBeNull();
    expect(bad.divergence!.kind).toBe('outcome');
    expect(bad.divergence!.event.kind).toBe('l1.vmlaunch');

    for (const t of ['l1-intercepts-fs-base.nvx', 'evmcs-enlightened-bitmap.nvx', 'pages-evmcs-memslot-move.nvx', 'shadow-l2-vmread-vmwrite.nvx']) {
      const ok = await diffScenario(t, 'patch=test-pass-through');
      expect({ t, divergence: ok.divergence }).toEqual({ t, divergence: null });
    }
    // combined with area picks: the same paths as without the patch, and no divergence from them
    const p = parseProfile('guest-pages=pfncache,patch=test-pass-through');
    expect(p.name).toBe('guest-pages=pfncache,patch=test-pass-through');
    expect(p.paths['guest-pages'].name).toBe('pfncache');
    const t = await readTraceFile(path.join(SCENARIOS, 'pages-evmcs-memslot-move.nvx'));
    expect(diffEvents(t.header, t.events, parseProfile('guest-pages=pfncache'), p).divergence).toBeNull();
  }, 20_000);

  test('the example patch (a wrapper of nested_vmx_run) diverges on its trace; the evmcs path alone does not', async () => {
    const { patches } = await loadPluginModule(path.join(ROOT, 'examples', 'patch-evmcs-launch-as-resume.ts'));
    expect(patches.map((p) => p.name)).toEqual(['evmcs-launch-as-resume']);
    const t = await readTraceFile(path.join(ROOT, 'examples', 'evmcs-launch-clean-bits.nvx'));
    const ref = parseProfile('reference');
    const bad = diffEvents(t.header, t.events, ref, parseProfile('evmcs=clean-fields,patch=evmcs-launch-as-resume'));
    expect(bad.divergence).toMatchObject({ index: 13, kind: 'outcome', verdict: 'bug', other: { k: 'vmfail-valid', error: 7 } });
    expect(diffEvents(t.header, t.events, ref, parseProfile('evmcs=clean-fields')).divergence).toBeNull();
  });

  test('a wrapper sees the calls other operations make (nested_vmx_vmexit from the L2 handlers)', async () => {
    const seen: number[] = [];
    const counting: Patch = {
      kind: 'patch',
      name: 'test-count-exits',
      summary: 'records every nested VM-exit reason',
      ops: { nested_vmx_vmexit: (orig) => (ctx, w, v, reason, qual) => (seen.push(reason), orig(ctx, w, v, reason, qual)) },
    };
    registerPatch(counting);
    try {
      const r = await diffScenario('shadow-l2-vmread-vmwrite.nvx', 'patch=test-count-exits');
      expect(r.divergence).toBeNull();
      // the trace's L2 VMREAD/VMWRITE exits to L1 (reasons 23 and 25) go through l2_vmread/l2_vmwrite
      expect(seen.some((x) => x === 23 || x === 25)).toBe(true);
    } finally {
      unregisterPatch('test-count-exits');
    }
  });

  test('patch=a+b applies a, then b over it; --profiles lists spell it patch=a,b', () => {
    const log: string[] = [];
    const mk = (name: string): Patch => ({
      kind: 'patch',
      name,
      summary: name,
      ops: { handle_vmptrst: (orig) => (ctx, w, v) => (log.push(name), orig(ctx, w, v)) },
    });
    registerPatch(mk('test-a'));
    registerPatch(mk('test-b'));
    try {
      const p = parseProfile('patch=test-a+test-b');
      expect(p.patches).toEqual(['test-a', 'test-b']);
      expect(parseProfile('msr-bitmap=merge,patch=test-a,test-b').patches).toEqual(['test-a', 'test-b']);
      const ctx = { inPlace: true, fresh: null, profile: p, cost: {} as never };
      const v = { nested: { vmxon: false } } as never;
      p.ops.handle_vmptrst(ctx, {} as never, v);
      // b is outermost: it runs first and calls a
      expect(log).toEqual(['test-b', 'test-a']);
    } finally {
      unregisterPatch('test-a');
      unregisterPatch('test-b');
    }
  });

  test('a profile naming an unknown patch, or patch twice, is refused', () => {
    expect(() => parseProfile('patch=test-nowhere')).toThrow(ProfileError);
    expect(() => parseProfile('patch=test-nowhere')).toThrow(/no patch 'test-nowhere'/);
    expect(() => parseProfile('patch=test-launch-as-resume,patch=test-pass-through')).toThrow(/patch given twice/);
  });
});

describe('patches that do not fit', () => {
  const refused = async (name: string, ops: string, message: RegExp) => {
    const f = file(name, `module.exports = { kind: 'patch', name: '${name.replace(/\.js$/, '')}', summary: 's', ops: { ${ops} } };\n`);
    await expect(loadPathModule(f)).rejects.toThrow(PluginError);
    await expect(loadPathModule(f)).rejects.toThrow(message);
    expect(PATCHES.has(name.replace(/\.js$/, ''))).toBe(false);
  };

  test('an unknown operation, with the closest names', () =>
    refused('test-typo.js', 'nested_vmx_runn: (orig) => (c, w, v, l) => orig(c, w, v, l)', /test-typo\.js: patch 'test-typo': no operation 'nested_vmx_runn' \(did you mean nested_vmx_run/));

  test('a wrapper whose function takes the wrong number of parameters', () =>
    refused('test-arity.js', 'nested_vmx_run: (orig) => (c, w, v) => orig(c, w, v, true)', /nested_vmx_run\(orig\) returns declares 3 parameters; nested_vmx_run takes 4: \(ctx, w, v, launch\)/));

  test('an entry that is not a function of the original', () => {
    return Promise.all([
      refused('test-notfn.js', 'handle_vmxon: 3', /handle_vmxon is a number, not a function \(orig\) => \(ctx, w, v, gpa\) => \.\.\./),
      refused('test-noret.js', 'handle_vmxon: (orig) => undefined', /handle_vmxon\(orig\) returned a undefined, not the operation to use/),
      refused('test-two.js', 'handle_vmxon: (orig, x) => orig', /handle_vmxon takes 2 parameters; it is a function of the original operation only/),
    ]);
  });

  test('no name, no summary, empty ops', async () => {
    const f1 = file('test-noname.js', `module.exports = { kind: 'patch', summary: 's', ops: {} };\n`);
    await expect(loadPathModule(f1)).rejects.toThrow(/has no name/);
    const f2 = file('test-nosum.js', `module.exports = { kind: 'patch', name: 'test-nosum', ops: {} };\n`);
    await expect(loadPathModule(f2)).rejects.toThrow(/patch 'test-nosum' has no summary/);
    const f3 = file('test-empty.js', `module.exports = { kind: 'patch', name: 'test-empty', summary: 's', ops: {} };\n`);
    await expect(loadPathModule(f3)).rejects.toThrow(/ops is empty/);
  });

  test('a patch name another module registered is refused', async () => {
    const body = `module.exports = { kind: 'patch', name: 'test-dup', summary: 's', ops: { handle_vmptrst: (o) => o } };\n`;
    await loadPathModule(file('dup1.js', body));
    await expect(loadPathModule(file('dup2.js', body))).rejects.toThrow(/there is already a patch named 'test-dup'/);
  });
});

describe('the mmu-notifier invalidation window', () => {
  const noRetry: Patch = {
    kind: 'patch',
    name: 'test-gpc-no-retry',
    summary: 'kvm_gpc_refresh caches the pfn as valid inside an invalidation window (no mmu_notifier_retry_cache)',
    ops: {
      kvm_gpc_refresh: (orig) => (ctx, w, gpc, gpa) => {
        const ok = orig(ctx, w, gpc, gpa);
        if (ok && gpc.pfn >= 0) gpc.valid = true;
        return ok;
      },
    },
  };

  test('the pfncache paths follow a page moved inside the window; a refresh without the retry check does not', async () => {
    registerPatch(noRetry);
    try {
      const t = await readTraceFile(path.join(SCENARIOS, 'pages-mmu-invalidate-window.nvx'));
      const ref = parseProfile('reference');
      for (const p of ['guest-pages=pfncache', 'guest-pages=pfncache-ctx']) {
        expect({ p, d: diffEvents(t.header, t.events, ref, parseProfile(p)).divergence }).toEqual({ p, d: null });
      }
      const bad = diffEvents(t.header, t.events, ref, parseProfile('guest-pages=pfncache,patch=test-gpc-no-retry')).divergence;
      expect(bad).toMatchObject({ kind: 'outcome', verdict: 'bug', event: { kind: 'l2.apic-write', offset: 0x300 } });
      // the window itself is what the patch misses: the same move as one host.page-migrate is caught at its start
      const single = t.events.filter((e) => e.kind !== 'host.mmu-invalidate-end').map((e) => (e.kind === 'host.mmu-invalidate-start' ? { kind: 'host.page-migrate' as const, gfn: e.gfn } : e));
      expect(diffEvents(t.header, single, ref, parseProfile('guest-pages=pfncache,patch=test-gpc-no-retry')).divergence).toBeNull();
    } finally {
      unregisterPatch('test-gpc-no-retry');
    }
  });
});

describe('in-page offsets of cached pages', () => {
  test('the pfncache paths find the descriptor at the offset the cache keeps; a refresh that loses it diverges', async () => {
    const dropOffset: Patch = {
      kind: 'patch',
      name: 'test-gpc-drops-offset',
      summary: 'kvm_gpc_refresh keeps the page but not offset_in_page(gpa)',
      ops: { kvm_gpc_refresh: (orig) => (ctx, w, gpc, gpa) => ((gpc.offset = 0), orig(ctx, w, gpc, gpa & ~0xfffn)) },
    };
    registerPatch(dropOffset);
    try {
      const t = await readTraceFile(path.join(SCENARIOS, 'pages-pi-desc-offset.nvx'));
      const ref = parseProfile('reference');
      expect(diffEvents(t.header, t.events, ref, parseProfile('guest-pages=pfncache')).divergence).toBeNull();
      const bad = diffEvents(t.header, t.events, ref, parseProfile('guest-pages=pfncache,patch=test-gpc-drops-offset')).divergence;
      // the first posted interrupt is lost: the CPU looks for ON at the start of the page
      expect(bad).toMatchObject({ kind: 'outcome', verdict: 'bug', event: { kind: 'l2.apic-read', offset: 0x230 } });
    } finally {
      unregisterPatch('test-gpc-drops-offset');
    }
  });
});
