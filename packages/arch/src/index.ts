/**
 * @nvx/arch: the Intel SDM, Hyper-V TLFS and KVM facts the emulator needs,
 * as data: VMCS field encodings and KVM's vmcs12 field table (with shadow-VMCS
 * and eVMCS attributes), control bits, exit reasons, VM-instruction errors,
 * MSR indices and bitmap addressing, and eVMCS layout and constants.
 */
import * as vmcs from './vmcs';
import * as controls from './controls';
import * as exits from './exits';
import * as msr from './msr';
import * as bitmap from './bitmap';
import * as evmcs from './evmcs';
import * as vmxCaps from './vmx-caps';
// The TypeScript compiler's CommonJS output re-exports `export *` as one
// getter per name, run on every use of the name through this index; the
// reducer and the lockstep use such names on every event (the getters were
// about a tenth of a replay's time: docs/performance.md). Copying the names
// first makes them plain properties (`export *` leaves a name the index
// already has alone); every binding here is a constant.
Object.assign(exports, vmcs, controls, exits, msr, bitmap, evmcs, vmxCaps);
export * from './vmcs';
export * from './controls';
export * from './exits';
export * from './msr';
export * from './bitmap';
export * from './evmcs';
export * from './vmx-caps';
