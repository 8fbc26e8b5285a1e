/**
 * The text of `trace-cmd report` for the kvm tracepoints, one line at a time.
 *
 * A record line is `comm-pid [cpu] [flags] timestamp: tracepoint: fields`,
 * where the fields are the tracepoint's TP_printk output
 * (arch/x86/kvm/trace.h). The formats changed over the years; every variant
 * below is accepted:
 *
 * - kvm_exit, kvm_nested_vmexit (TRACE_EVENT_KVM_EXIT, 5.10 and later):
 *   `vcpu 0 reason MSR_READ rip 0x... info1 0x... info2 0x... intr_info 0x... error_code 0x...`
 *   (flags such as FAILED_VMENTRY follow the reason name). Before 5.10,
 *   kvm_exit printed `reason MSR_READ rip 0x... info 0 0` and
 *   kvm_nested_vmexit `rip: 0x... reason: MSR_READ ext_inf1: 0x... ...`.
 * - kvm_nested_vmexit_inject: `reason: MSR_READ ext_inf1: 0x... ext_inf2: 0x... ext_int: 0x... ext_int_err: 0x...`
 *   (ext_inf1 is the exit qualification vmcs12 gets).
 * - kvm_entry: `vcpu 0`, `vcpu 0, rip 0x...`, `vcpu 0, rip 0x...[immediate exit]`.
 * - kvm_msr: `msr_read 10 = 0x2f`, `msr_write c0000100 = 0x0 (#GP)`.
 * - kvm_cpuid: `func 1 idx 0 rax 906ea rbx 800 rcx fffa3223 rdx 1f8bfbff, cpuid entry found`
 *   (`idx` is absent before 5.7; the suffix varies).
 * - kvm_nested_vmenter (`rip: 0x... vmcs: 0x... nested_rip: 0x... ...`, with
 *   `nested_ept: on`, `nested_ept=y nested_eptp: 0x...` or `guest_pgd: ...`
 *   after it depending on the kernel) and its predecessor kvm_nested_vmrun
 *   (`vmcb:`, AMD only).
 * - kvm_nested_intr_vmexit: `rip: 0x...`; kvm_nested_vmenter_failed: a message.
 *
 * Values printed with `%x`/`%lx` carry no `0x`; those with `0x%...` do.
 *
 * Reports pasted into bug trackers and mails often lose the
 * `comm-pid [cpu] timestamp:` prefix: a line that is just
 * `kvm_exit: reason MSR_READ rip 0x... info 0 0` is a *bare* record, of one
 * unnamed thread on CPU 0 at no particular time; its vCPU is the one its
 * fields name (`vcpu N`, 4.4 and later), else that of the last bare record
 * that named one.
 */
import { EXIT_REASON, exitReasonByName, exitReasonName, VMX_EXIT_REASONS_FAILED_VMENTRY, VMX_EXIT_REASONS_SGX_ENCLAVE_MODE } from '@nvx/arch';

/** One record line of the report. */
export interface TraceCmdRecord {
  comm: string;
  pid: number;
  cpu: number;
  /** seconds, as printed */
  ts: number;
  tracepoint: string;
  body: string;
  /** the line had no `comm-pid [cpu] timestamp:` prefix (comm '', pid -1, cpu 0, ts 0) */
  bare?: boolean;
}

export type TraceCmdLine =
  | { t: 'record'; rec: TraceCmdRecord }
  /** report headers (`version = 6`, `cpus=8`, `CPU 3 is empty`) and blank lines */
  | { t: 'meta' }
  /** `CPU:7 [204600 EVENTS DROPPED]` or `CPU:7 [EVENTS DROPPED]` */
  | { t: 'dropped'; cpu: number; count: number | null }
  | { t: 'bad'; why: string };

const RECORD = /^\s*(.*?)-(\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(\d+)\]\s+(?:(\S+)\s+)?(\d+(?:\.\d+)?):\s+([A-Za-z_][\w]*):\s*(.*)$/;
/** A record without its prefix: `kvm_exit: vcpu 0 reason ...` (tracepoint names are lower-case identifiers). */
const BARE = /^\s*([a-z_][a-z0-9_]*):\s+(.*)$/;
/** The pid bare records share. */
export const BARE_PID = -1;
const DROPPED = /^\s*CPU:\s*(\d+)\s+\[(?:(\d+)\s+)?EVENTS DROPPED\]\s*$/i;
const META = [/^\s*$/, /^\s*version\s*=\s*\S+\s*$/i, /^\s*cpus\s*=\s*\d+\s*$/i, /^\s*CPU\s+\d+\s+is empty\s*$/i, /^\s*#/];

export function parseLine(line: string): TraceCmdLine {
  const m = RECORD.exec(line);
  if (m) {
    return {
      t: 'record',
      rec: { comm: m[1].trim(), pid: Number(m[2]), cpu: Number(m[3]), ts: Number(m[5]), tracepoint: m[6], body: m[7].trim() },
    };
  }
  const b = BARE.exec(line);
  if (b) return { t: 'record', rec: { comm: '', pid: BARE_PID, cpu: 0, ts: 0, tracepoint: b[1], body: b[2].trim(), bare: true } };
  const d = DROPPED.exec(line);
  if (d) return { t: 'dropped', cpu: Number(d[1]), count: d[2] === undefined ? null : Number(d[2]) };
  for (const re of META) if (re.test(line)) return { t: 'meta' };
  return { t: 'bad', why: "not a trace-cmd report line ('comm-pid [cpu] timestamp: tracepoint: fields', or 'tracepoint: fields')" };
}

/** A field list that does not have the shape its tracepoint prints. */
export class FormatError extends Error {}

// ---- exit reasons as TP_printk prints them ----

/** Names older kernels printed for reasons arch knows by another name. */
const OLD_REASON_NAMES: Record<string, number> = {
  PENDING_INTERRUPT: EXIT_REASON.INTERRUPT_WINDOW,
};

const FLAG_NAMES: Record<string, number> = {
  FAILED_VMENTRY: VMX_EXIT_REASONS_FAILED_VMENTRY,
  SGX_ENCLAVE_MODE: VMX_EXIT_REASONS_SGX_ENCLAVE_MODE,
};

export interface ExitReason {
  /** the 32-bit exit reason when known (basic reason and flags) */
  value: number | undefined;
  /** the basic reason's name as printed (unknown reasons keep their printed form) */
  name: string;
  /** an AMD (SVM) reason: lower-case names such as `msr`, `npf`, `vmrun` */
  svm: boolean;
}

/** `MSR_READ`, `INVALID_STATE FAILED_VMENTRY`, `0x4a`, `msr` (SVM). */
export function parseExitReason(tokens: readonly string[]): ExitReason {
  if (tokens.length === 0) throw new FormatError('no exit reason');
  const first = tokens[0];
  let value: number | undefined;
  let name = first;
  if (/^0x[0-9a-f]+$/i.test(first)) {
    value = Number.parseInt(first, 16) >>> 0;
    name = exitReasonName(value & 0xffff);
  } else if (/^\d+$/.test(first)) {
    value = Number(first) >>> 0;
    name = exitReasonName(value & 0xffff);
  } else if (/^[a-z][a-z_0-9]*$/.test(first)) {
    // VMX_EXIT_REASONS are upper case; SVM_EXIT_REASONS lower case
    return { value: undefined, name: first, svm: true };
  } else {
    value = OLD_REASON_NAMES[first] ?? exitReasonByName(first);
    if (value !== undefined) name = exitReasonName(value);
  }
  for (const f of tokens.slice(1)) {
    const bit = FLAG_NAMES[f] ?? (/^0x[0-9a-f]+$/i.test(f) ? Number.parseInt(f, 16) : undefined);
    if (bit === undefined) throw new FormatError(`unknown exit-reason flag '${f}'`);
    if (value !== undefined) value = (value | bit) >>> 0;
  }
  return { value, name, svm: false };
}

/**
 * Split `key value... key value...` into a map, for the known keys. A key may
 * end in ':' (`reason:`, `ext_inf1:`); commas between fields are ignored.
 */
function fields(body: string, keys: ReadonlySet<string>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let cur: string[] | undefined;
  for (const raw of body.split(/[\s,]+/)) {
    if (!raw) continue;
    const k = raw.endsWith(':') ? raw.slice(0, -1) : raw;
    if (keys.has(k) && !out.has(k)) {
      cur = [];
      out.set(k, cur);
      continue;
    }
    if (!cur) throw new FormatError(`unexpected '${raw}'`);
    cur.push(raw);
  }
  return out;
}

function hex(tok: string | undefined, what: string): bigint {
  if (tok === undefined) throw new FormatError(`missing ${what}`);
  const s = tok.replace(/^0x/i, '');
  if (!/^[0-9a-f]+$/i.test(s) || s.length > 16) throw new FormatError(`${what}: '${tok}' is not a hexadecimal number`);
  return BigInt('0x' + s);
}

function dec(tok: string | undefined, what: string): number {
  if (tok === undefined || !/^\d+$/.test(tok)) throw new FormatError(`${what}: '${tok ?? ''}' is not a number`);
  return Number(tok);
}

const EXIT_KEYS = new Set(['vcpu', 'reason', 'rip', 'info1', 'info2', 'info', 'intr_info', 'error_code', 'ext_inf1', 'ext_inf2', 'ext_int', 'ext_int_err']);

export interface ExitFields {
  vcpu: number | undefined;
  reason: ExitReason;
  /** exit qualification (info1 / ext_inf1 / the first `info` value) */
  qual: bigint;
}

/** kvm_exit and kvm_nested_vmexit, every variant. */
export function parseExit(body: string): ExitFields {
  const f = fields(body, EXIT_KEYS);
  const reason = f.get('reason');
  if (!reason || reason.length === 0) throw new FormatError('no reason');
  const vcpu = f.has('vcpu') ? dec(f.get('vcpu')![0], 'vcpu') : undefined;
  const q = f.get('info1')?.[0] ?? f.get('ext_inf1')?.[0] ?? f.get('info')?.[0] ?? '0';
  return { vcpu, reason: parseExitReason(reason), qual: hex(q, 'exit qualification') };
}

/** kvm_nested_vmexit_inject: the exit reason and qualification L1 gets. */
export function parseInject(body: string): { reason: ExitReason; qual: bigint } {
  const f = fields(body, EXIT_KEYS);
  const reason = f.get('reason');
  if (!reason || reason.length === 0) throw new FormatError('no reason');
  return { reason: parseExitReason(reason), qual: hex(f.get('ext_inf1')?.[0] ?? '0', 'ext_inf1') };
}

const ENTRY_KEYS = new Set(['vcpu', 'rip']);

/** kvm_entry: `vcpu 0[, rip 0x...][immediate exit]` */
export function parseEntry(body: string): { vcpu: number } {
  const f = fields(body.replace(/\[immediate exit\]\s*$/, ''), ENTRY_KEYS);
  const v = f.get('vcpu');
  if (!v) throw new FormatError('no vcpu');
  return { vcpu: dec(v[0], 'vcpu') };
}

const MSR_RE = /^msr_(read|write)\s+([0-9a-f]+)\s*=\s*(0x[0-9a-f]+)(\s*\(#GP\))?$/i;

/** kvm_msr: `msr_read 10 = 0x2f`, `msr_write c0000100 = 0x1 (#GP)` */
export function parseMsr(body: string): { write: boolean; index: number; value: bigint; gp: boolean } {
  const m = MSR_RE.exec(body);
  if (!m) throw new FormatError("expected 'msr_read|msr_write <index> = 0x<value>[ (#GP)]'");
  const index = hex(m[2], 'MSR index');
  if (index > 0xffffffffn) throw new FormatError(`MSR index ${m[2]} does not fit in 32 bits`);
  return { write: m[1].toLowerCase() === 'write', index: Number(index), value: hex(m[3], 'MSR value'), gp: m[4] !== undefined };
}

const CPUID_RE = /^func\s+([0-9a-f]+)(?:\s+idx\s+([0-9a-f]+))?\s+rax\s+([0-9a-f]+)\s+rbx\s+([0-9a-f]+)\s+rcx\s+([0-9a-f]+)\s+rdx\s+([0-9a-f]+)\b/i;

export interface CpuidFields {
  leaf: number;
  subleaf: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** kvm_cpuid: `func 1 idx 0 rax ... rdx ..., cpuid entry found` (registers as 32-bit values) */
export function parseCpuid(body: string): CpuidFields {
  const m = CPUID_RE.exec(body);
  if (!m) throw new FormatError("expected 'func <leaf> [idx <subleaf>] rax <v> rbx <v> rcx <v> rdx <v>'");
  const u32 = (s: string, what: string) => Number(hex(s, what) & 0xffffffffn);
  return { leaf: u32(m[1], 'func'), subleaf: m[2] === undefined ? 0 : u32(m[2], 'idx'), eax: u32(m[3], 'rax'), ebx: u32(m[4], 'rbx'), ecx: u32(m[5], 'rcx'), edx: u32(m[6], 'rdx') };
}

const VMENTER_RE = /\b(vmcs|vmcb):\s*(0x[0-9a-f]+)/i;

/** kvm_nested_vmenter / kvm_nested_vmrun: the VMCS (or VMCB) pointer L1 entered with. */
export function parseVmenter(body: string): { ptr: bigint; svm: boolean } {
  const m = VMENTER_RE.exec(body);
  if (!m || !/^rip:?\s/i.test(body)) throw new FormatError("expected 'rip: 0x... vmcs: 0x... ...'");
  return { ptr: hex(m[2], m[1]), svm: m[1].toLowerCase() === 'vmcb' };
}

/** kvm_nested_intr_vmexit: `rip: 0x...` */
export function parseIntrVmexit(body: string): void {
  if (!/^rip:?\s+(0x)?[0-9a-f]+\s*$/i.test(body)) throw new FormatError("expected 'rip: 0x...'");
}

/** The tracepoints the importer reads; every other line is counted by name and skipped. */
export const KVM_TRACEPOINTS = [
  'kvm_entry',
  'kvm_exit',
  'kvm_nested_vmenter',
  'kvm_nested_vmrun',
  'kvm_nested_vmexit',
  'kvm_nested_vmexit_inject',
  'kvm_nested_intr_vmexit',
  'kvm_msr',
  'kvm_cpuid',
  'kvm_nested_vmenter_failed',
] as const;
