/**
 * The control set-up in one event, in the eVMCS form (minimize.ts
 * mustBe1Setups): a finding of the msr-bitmap path that merges only the
 * intercepts L1 clears (67f4b9969c30) came in the eVMCS form, with three
 * eVMCS stores of nothing but must-be-1 bits. They fold into one
 * l1.evmcs-ctls-must-be-1 of that eVMCS, so the trace minimizes to 11
 * events; keeping the old form it stays at 13.
 */
import * as path from 'path';
import { parseProfile } from '@nvx/emulator';
import { parseTextTrace } from '@nvx/trace';
import { minimizeTrace } from '../src/minimize';
import { loadPluginModule } from '../src/plugins';

const BUG_HISTORY = path.resolve(__dirname, '../../../tools/bug-history');

const FINDING = `nvx-trace 1
config vcpus=1 evmcs=true
memslot 0 gfn=0x0 npages=0x40 flags=0
events
l1.write 0x1000 4 0x11e57ed0
l1.vmxon 0x1000
l1.write 0x10000 4 0x1
l1.evmcs-ptr 0x10000
l1.evmcs-write 0x10000 PIN_BASED_VM_EXEC_CONTROL 0x16
l1.evmcs-write 0x10000 VM_EXIT_CONTROLS 0x36dfb
l1.evmcs-write 0x10000 VM_ENTRY_CONTROLS 0x11fb
l1.evmcs-write 0x10000 CPU_BASED_VM_EXEC_CONTROL 0x14006172
l1.vmresume
l2.vmcall
l1.write 0xc20 8 0x4
l1.vmresume
l2.wrmsr MSR_KERNEL_GS_BASE 0x0
`;

describe('minimize: the eVMCS control set-up in one event', () => {
  it('67f4b9969c30: three pure must-be-1 eVMCS stores fold into l1.evmcs-ctls-must-be-1 (13 -> 11 events)', async () => {
    await loadPluginModule(path.join(BUG_HISTORY, 'plugins/msr-intercepts-only-cleared.ts'));
    const t = parseTextTrace(FINDING);
    const reference = parseProfile('reference');
    const buggy = parseProfile('msr-bitmap=bug-67f4b9969c30');
    const m = minimizeTrace(t.header, t.events, reference, buggy, { timeLimitMs: 30_000 });
    expect(m.result.divergence?.verdict).toBe('bug');
    expect(m.result.divergence?.event.kind).toBe('l2.wrmsr');
    expect(m.events.length).toBeLessThanOrEqual(11);
    const setups = m.events.filter((e) => e.kind === 'l1.evmcs-ctls-must-be-1' || e.kind === 'l1.vmcs-ctls-must-be-1');
    expect(setups).toHaveLength(1);
    // no store of must-be-1 bits alone is left
    expect(m.events.filter((e) => e.kind === 'l1.evmcs-write' || e.kind === 'l1.vmwrite')).toHaveLength(1);
    const kept = minimizeTrace(t.header, t.events, reference, buggy, { timeLimitMs: 30_000, changeForm: false });
    expect(kept.events.length).toBe(13);
  });
});
