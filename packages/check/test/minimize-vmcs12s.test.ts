/**
 * The minimizer's form changes for traces that need two vmcs12s and a
 * posted-interrupt descriptor only to have one (minimize.ts fewerVmcs12s,
 * renameAddress): the bug-history witness of pi-pending-not-cleared (26
 * events, two vmcs12s, the descriptor at 0x7040) minimizes to one vmcs12
 * whose controls change between two entries, with the descriptor at the
 * address a fresh vmcs12 names (0), in at most 13 events (the must-be-1
 * bits of the pin-based, primary, VM-exit and VM-entry controls that
 * vmx_control_verify asks for are set by one l1.vmcs-ctls-must-be-1; the
 * second entry's posted-interrupt controls and their prerequisites are four
 * VMWRITEs; the second entry is a VMRESUME: VMLAUNCH and VMRESUME are one
 * kind of divergence); keeping the old form it stays above 14.
 */
import * as fs from 'fs';
import * as path from 'path';
import { VMCS } from '@nvx/arch';
import { parseProfile } from '@nvx/emulator';
import { parseTextTrace } from '@nvx/trace';
import { minimizeTrace } from '../src/minimize';
import { loadPluginModule } from '../src/plugins';

const BUG_HISTORY = path.resolve(__dirname, '../../../tools/bug-history');

describe('minimize: one vmcs12 for two, an address renamed to 0', () => {
  it('pi-pending-not-cleared: 26 events with two vmcs12s minimize to at most 13 with one', async () => {
    await loadPluginModule(path.join(BUG_HISTORY, 'plugins/pi-pending-not-cleared.ts'));
    const t = parseTextTrace(fs.readFileSync(path.join(BUG_HISTORY, 'traces/pi-pending-not-cleared.nvx'), 'utf8'));
    const reference = parseProfile('reference');
    const buggy = parseProfile('patch=bug-pi-pending-not-cleared');
    const m = minimizeTrace(t.header, t.events, reference, buggy, { timeLimitMs: 30_000 });
    expect(m.result.divergence?.verdict).toBe('bug');
    // a nested VM-entry: VMLAUNCH and VMRESUME are one kind of divergence (entryClass)
    expect(['l1.vmlaunch', 'l1.vmresume']).toContain(m.result.divergence?.event.kind);
    expect(m.events.length).toBeLessThanOrEqual(13);
    // the control set-up in one event (mustBe1Setup): before the first entry, nothing but the must-be-1 bits
    expect(m.events.filter((e) => e.kind === 'l1.vmcs-ctls-must-be-1')).toHaveLength(1);
    // one vmcs12, and no POSTED_INTR_DESC_ADDR write: the descriptor sits at 0
    expect(new Set(m.events.flatMap((e) => (e.kind === 'l1.vmptrld' ? [e.gpa] : []))).size).toBe(1);
    expect(m.events.some((e) => e.kind === 'l1.vmwrite' && e.field === VMCS.POSTED_INTR_DESC_ADDR)).toBe(false);
    const kept = minimizeTrace(t.header, t.events, reference, buggy, { timeLimitMs: 30_000, changeForm: false });
    expect(kept.events.length).toBeGreaterThan(14);
    expect(kept.events.some((e) => e.kind === 'l1.vmcs-ctls-must-be-1')).toBe(false);
  });
});
