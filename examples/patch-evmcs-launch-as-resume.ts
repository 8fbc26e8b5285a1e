/**
 * An example patch of the operations table: a wrapper of nested_vmx_run.
 *
 * The "optimization": L1 running on an enlightened VMCS has no launch state
 * anyway, so take every enlightened VMLAUNCH for a VMRESUME and skip the
 * work KVM does on a launch (nested_vmx_handle_enlightened_vmptrld clears
 * every clean bit and starts vmcs12 from zero, because KVM keeps one vmcs12
 * per vCPU and nothing in it may be trusted after a launch).
 *
 * It is wrong: after the launch, copy_enlightened_to_vmcs12 trusts the clean
 * bits L1 left in the new eVMCS, so groups L1 wrote before the VMLAUNCH but
 * marked clean never reach vmcs12. Under the reference evmcs path (copy-all)
 * the clean bits do not matter, so the patch shows up with the path that
 * uses them:
 *
 *   npx nvx diff traces/scenarios/evmcs-launch-clean-bits.nvx \
 *     --path-module examples/patch-evmcs-launch-as-resume.ts \
 *     --profile evmcs=clean-fields,patch=evmcs-launch-as-resume
 *
 * nvx reports a bug divergence at the first VM-exit L1 reads (exit 1);
 * `--profile evmcs=clean-fields` alone matches the reference (exit 0).
 */
import { INVALID_GPA } from '@nvx/arch';
import type { Patch } from '@nvx/emulator';

const patch: Patch = {
  kind: 'patch',
  name: 'evmcs-launch-as-resume',
  summary: 'an enlightened VMLAUNCH is run as a VMRESUME (keeps L1\'s clean bits and vmcs12): wrong, for the example',
  ops: {
    // A wrapper: it receives KVM's nested_vmx_run (or an earlier patch's) and calls it.
    nested_vmx_run: (orig) => (ctx, w, v, launch) => orig(ctx, w, v, launch && v.nested.vpAssistEvmcs === INVALID_GPA),
  },
};

export default patch;
