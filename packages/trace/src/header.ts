/**
 * The trace header: format version, the world L0 runs in, and where the
 * trace came from.
 */
import { TraceError, describeValue, loneSurrogateAt } from './errors';

export const FORMAT_VERSION = 1;

/** Limits that keep a bad header from asking for unbounded work or memory. */
export const LIMITS = {
  maxVcpus: 64,
  maxPcpus: 64,
  maxMemslots: 512,
  maxMemslotPages: 1 << 20,
  maxProvenanceEntries: 64,
  maxProvenanceValue: 4096,
} as const;

export interface MemslotConfig {
  slot: number;
  gfn: bigint;
  npages: number;
  flags: number;
}

/** The world configuration: what KVM exposes to L1 and what the host has. */
export interface WorldConfig {
  /** L1 may use an enlightened VMCS (Hyper-V on KVM) */
  evmcs: boolean;
  /** hardware VMCS shadowing is used for L1's VMREAD/VMWRITE */
  shadowVmcs: boolean;
  /** IA32_VMX_MISC bit 29 as L1 sees it: VMWRITE to any supported field, read-only ones included */
  vmwriteAnyField: boolean;
  /** the host CPU supports CPUID faulting (MSR_PLATFORM_INFO bit 31) */
  cpuidFaultHw: boolean;
  /** guest memory is not managed by the kernel (no struct page: memremap per map) */
  unmanagedMemory: boolean;
  /** hardware features that decide which RW shadow fields KVM may use */
  apicv: boolean;
  pml: boolean;
  preemptionTimer: boolean;
  /** a CPUID in L2 with L1's faulting on raises #GP in L2 (the architectural order) instead of exiting to L1 (KVM's) */
  l2CpuidFaultArchitectural: boolean;
  /**
   * VM capabilities and features KVM exposes to L1 (KVM's defaults: all on).
   * msrPlatformInfo: KVM_CAP_MSR_PLATFORM_INFO (off: the guest's RDMSR of
   * MSR_PLATFORM_INFO is #GP). ept, vpid: nested EPT and VPID in L1's VMX
   * capability MSRs (secondary controls, IA32_VMX_EPT_VPID_CAP), which decide
   * INVEPT/INVVPID.
   */
  msrPlatformInfo: boolean;
  ept: boolean;
  vpid: boolean;
  vcpus: number;
  pcpus: number;
  /** memslots that exist before the first event */
  memslots: MemslotConfig[];
}

export interface TraceHeader {
  version: number;
  config: WorldConfig;
  /** generator, seed, source file, nvx version, replay path, expected verdict ...: free-form strings */
  provenance: Record<string, string>;
}

export function defaultConfig(over: Partial<WorldConfig> = {}): WorldConfig {
  return {
    evmcs: false,
    shadowVmcs: false,
    vmwriteAnyField: true,
    cpuidFaultHw: true,
    unmanagedMemory: false,
    apicv: true,
    pml: true,
    preemptionTimer: true,
    l2CpuidFaultArchitectural: false,
    msrPlatformInfo: true,
    ept: true,
    vpid: true,
    vcpus: 1,
    pcpus: 1,
    memslots: [{ slot: 0, gfn: 0n, npages: 0x400, flags: 0 }],
    ...over,
  };
}

export function makeHeader(config: Partial<WorldConfig> = {}, provenance: Record<string, string> = {}): TraceHeader {
  return { version: FORMAT_VERSION, config: defaultConfig(config), provenance: { ...provenance } };
}

export const CONFIG_FLAGS = [
  'evmcs',
  'shadowVmcs',
  'vmwriteAnyField',
  'cpuidFaultHw',
  'unmanagedMemory',
  'apicv',
  'pml',
  'preemptionTimer',
  'l2CpuidFaultArchitectural',
  'msrPlatformInfo',
  'ept',
  'vpid',
] as const satisfies readonly (keyof WorldConfig)[];

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function u64(v: unknown, field: string): bigint {
  if (typeof v === 'bigint' && v >= 0n && v <= 0xffffffffffffffffn) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  throw new TraceError('not an unsigned 64-bit value', { field });
}

function intIn(v: unknown, lo: number, hi: number, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw new TraceError(`must be an integer in ${lo}..${hi}, got ${describeValue(v)}`, { field });
  return v;
}

/**
 * Validate a decoded header (from either form). Unknown keys are errors, so a
 * misspelt flag is never silently ignored; keys left out take the defaults.
 */
export function validateHeader(raw: unknown): TraceHeader {
  if (!isObj(raw)) throw new TraceError('header is not a map', { field: 'header' });
  for (const k of Object.keys(raw)) if (!['version', 'config', 'provenance'].includes(k)) throw new TraceError(`unknown header key`, { field: k });
  const version = intIn(raw.version, 1, 0xffff, 'version');
  if (version > FORMAT_VERSION) throw new TraceError(`trace format version ${version} is newer than this nvx understands (${FORMAT_VERSION})`, { field: 'version' });
  const c = raw.config === undefined ? {} : raw.config;
  if (!isObj(c)) throw new TraceError('not a map', { field: 'config' });
  const config = defaultConfig();
  for (const [k, v] of Object.entries(c)) {
    if ((CONFIG_FLAGS as readonly string[]).includes(k)) {
      if (typeof v !== 'boolean') throw new TraceError('must be true or false', { field: `config.${k}` });
      (config as unknown as Record<string, unknown>)[k] = v;
    } else if (k === 'vcpus') config.vcpus = intIn(v, 1, LIMITS.maxVcpus, 'config.vcpus');
    else if (k === 'pcpus') config.pcpus = intIn(v, 1, LIMITS.maxPcpus, 'config.pcpus');
    else if (k === 'memslots') {
      if (!Array.isArray(v)) throw new TraceError('not a list', { field: 'config.memslots' });
      if (v.length > LIMITS.maxMemslots) throw new TraceError(`more than ${LIMITS.maxMemslots} memslots`, { field: 'config.memslots' });
      const seen = new Set<number>();
      config.memslots = v.map((m, i) => {
        const f = `config.memslots[${i}]`;
        if (!isObj(m)) throw new TraceError('not a map', { field: f });
        for (const mk of Object.keys(m)) if (!['slot', 'gfn', 'npages', 'flags'].includes(mk)) throw new TraceError('unknown key', { field: `${f}.${mk}` });
        const slot = intIn(m.slot, 0, 0xffff, `${f}.slot`);
        if (seen.has(slot)) throw new TraceError(`memslot ${slot} defined twice`, { field: f });
        seen.add(slot);
        const gfn = u64(m.gfn, `${f}.gfn`);
        if (gfn > 0xfffffffffffffn) throw new TraceError('gfn beyond 52-bit physical addresses', { field: `${f}.gfn` });
        return { slot, gfn, npages: intIn(m.npages, 1, LIMITS.maxMemslotPages, `${f}.npages`), flags: intIn(m.flags ?? 0, 0, 0xff, `${f}.flags`) };
      });
    } else throw new TraceError('unknown configuration key', { field: `config.${k}` });
  }
  if (config.pcpus < 1) config.pcpus = 1;
  const p = raw.provenance === undefined ? {} : raw.provenance;
  if (!isObj(p)) throw new TraceError('not a map', { field: 'provenance' });
  const entries = Object.entries(p);
  if (entries.length > LIMITS.maxProvenanceEntries) throw new TraceError(`more than ${LIMITS.maxProvenanceEntries} entries`, { field: 'provenance' });
  const provenance: Record<string, string> = {};
  for (const [k, v] of entries) {
    checkProvenanceString(k, 'key', k);
    if (typeof v !== 'string' || v.length > LIMITS.maxProvenanceValue) throw new TraceError(`must be a string of at most ${LIMITS.maxProvenanceValue} characters`, { field: `provenance.${k}` });
    checkProvenanceString(v, 'value', k);
    provenance[k] = v;
  }
  return { version, config, provenance };
}

/** Keys that would reach the prototype of the plain object a header decodes into: refused, never silently dropped. */
const RESERVED_PROVENANCE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * A provenance key or value both forms can hold and give back unchanged:
 * bounded, not a reserved object key, and without a lone UTF-16 surrogate
 * (the binary form holds UTF-8, which cannot encode one; refusing it in
 * every writer and reader keeps text <-> binary lossless).
 */
function checkProvenanceString(s: string, what: 'key' | 'value', key: string): void {
  const field = `provenance.${key}`;
  if (what === 'key') {
    if (s.length > LIMITS.maxProvenanceValue) throw new TraceError(`key longer than ${LIMITS.maxProvenanceValue} characters`, { field: 'provenance' });
    if (RESERVED_PROVENANCE_KEYS.has(s)) throw new TraceError(`'${s}' is a reserved key`, { field });
  }
  const at = loneSurrogateAt(s);
  if (at >= 0) throw new TraceError(`${what} holds a lone surrogate (\\u${s.charCodeAt(at).toString(16)} at character ${at}), which a trace cannot hold (its strings are UTF-8)`, { field });
}

/** The header as plain msgpack-able data (bigints kept). */
export function headerToPlain(h: TraceHeader): Record<string, unknown> {
  return {
    version: h.version,
    config: { ...h.config, memslots: h.config.memslots.map((m) => ({ ...m })) },
    provenance: { ...h.provenance },
  };
}
