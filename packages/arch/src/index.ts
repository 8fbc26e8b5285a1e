/**
 * @nvx/arch: the Intel SDM, Hyper-V TLFS and KVM facts the emulator needs,
 * as data: VMCS field encodings and KVM's vmcs12 field table (with shadow-VMCS
 * and eVMCS attributes), control bits, exit reasons, VM-instruction errors,
 * MSR indices and bitmap addressing, and eVMCS layout and constants.
 */
export * from './vmcs';
export * from './controls';
export * from './exits';
export * from './msr';
export * from './bitmap';
export * from './evmcs';
export * from './vmx-caps';
