/**
 * The minimizer's MSR form (minimize.ts otherMsrs): a finding of the
 * msr-bitmap path that merges only the x2APIC intercepts L1 clears
 * (d048c098218e) came on SELF_IPI, which KVM passes through only with
 * virtual-interrupt delivery, which needs external-interrupt exiting. On
 * the TPR, which "virtualize x2APIC mode" alone passes through, the same
 * signature needs two control writes fewer: 13 events become 12. Keeping
 * the form, the trace stays at 13.
 */
import * as path from 'path';
import { MSR, VMCS } from '@nvx/arch';
import { parseProfile } from '@nvx/emulator';
import { parseTextTrace } from '@nvx/trace';
import type { Divergence } from '../src/diff';
import { minimizeTrace } from '../src/minimize';
import { findingSignature } from '../src/fuzz';
import { loadPluginModule } from '../src/plugins';

const BUG_HISTORY = path.resolve(__dirname, '../../../tools/bug-history');

const FINDING = `nvx-trace 1
config vcpus=1
memslot 0 gfn=0x0 npages=0x40 flags=0
events
l1.write 0x1000 4 0x11e57ed0
l1.vmxon 0x1000
l1.write 0x5000 4 0x11e57ed0
l1.vmptrld 0x5000
l1.vmcs-ctls-must-be-1
l1.vmwrite PIN_BASED_VM_EXEC_CONTROL 0x17
l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x94206172
l1.vmwrite SECONDARY_VM_EXEC_CONTROL 0x210
l1.vmlaunch
l2.vmcall
l1.vmwrite CPU_BASED_VM_EXEC_CONTROL 0x14006172
l1.vmresume
l2.wrmsr MSR_X2APIC_SELF_IPI 0x0
`;

describe('minimize: the same L2 MSR access on an MSR that needs fewer controls', () => {
  it('d048c098218e: SELF_IPI (virtual-interrupt delivery, external-interrupt exiting) becomes the TPR (13 -> 12 events)', async () => {
    await loadPluginModule(path.join(BUG_HISTORY, 'plugins/x2apic-intercepts-only-cleared.ts'));
    const t = parseTextTrace(FINDING);
    const reference = parseProfile('reference');
    const spec = 'msr-bitmap=bug-d048c098218e';
    const buggy = parseProfile(spec);
    const signature = (d: Divergence) => findingSignature(spec, d);
    const m = minimizeTrace(t.header, t.events, reference, buggy, { timeLimitMs: 30_000, signature });
    const last = m.events[m.events.length - 1];
    expect(m.result.divergence?.verdict).toBe('bug');
    expect(signature(m.result.divergence!)).toBe(`${spec} | l2.wrmsr | state L2 msr | bug | none`);
    expect(last).toMatchObject({ kind: 'l2.wrmsr', msr: MSR.MSR_X2APIC_TPR });
    expect(m.events.length).toBeLessThanOrEqual(12);
    // neither virtual-interrupt delivery nor external-interrupt exiting is left
    expect(m.events.some((e) => e.kind === 'l1.vmwrite' && e.field === VMCS.PIN_BASED_VM_EXEC_CONTROL)).toBe(false);
    const kept = minimizeTrace(t.header, t.events, reference, buggy, { timeLimitMs: 30_000, signature, changeForm: false });
    expect(kept.events.length).toBe(13);
    expect(kept.events[kept.events.length - 1]).toMatchObject({ msr: MSR.MSR_X2APIC_SELF_IPI });
  });
});
