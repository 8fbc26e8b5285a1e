/**
 * Outcomes: what L1, L2 or the host can see of one event. They are the
 * observations the differential check compares event by event, and what an
 * `expect` clause in a trace asserts. Costs and internal caches are never
 * part of an outcome.
 */
import { exitReasonByName, exitReasonName, vmxErrorByName, vmxErrorName } from '@nvx/arch';
import { TraceError, loneSurrogateAt } from './errors';

export type Outcome =
  /** the instruction or access completed (VMsucceed, a store, a WRMSR) */
  | { k: 'ok' }
  /** a value was read (VMREAD, RDMSR, a load, VMPTRST, an APIC-page read) */
  | { k: 'value'; value: bigint }
  | { k: 'vmfail-invalid' }
  | { k: 'vmfail-valid'; error: number }
  /** #GP(0) delivered to the instruction's issuer (RIP unchanged) */
  | { k: 'gp' }
  | { k: 'ud' }
  /** a nested VM-exit delivered to L1 (exit reason with flags, and exit qualification) */
  | { k: 'exit'; reason: number; qual: bigint }
  /** VMLAUNCH/VMRESUME entered L2 */
  | { k: 'entered' }
  | { k: 'cpuid'; eax: number; ebx: number; ecx: number; edx: number }
  /** the event cannot happen in the current state (an L2 event while L1 runs, an unknown memslot); says why */
  | { k: 'ignored'; why: string }
  /**
   * KVM_RUN returns to userspace: KVM_EXIT_MMIO (an access L0 emulates as MMIO
   * to a gpa no memslot backs), KVM_EXIT_INTERNAL_ERROR, or KVM_EXIT_SHUTDOWN
   * (a triple fault: the vCPU is shut down). Nothing reaches L1.
   */
  | { k: 'userspace'; exit: UserspaceExit; gpa?: bigint }
  /** a host ioctl refused with EINVAL (KVM_SET_NESTED_STATE's acceptance rules): nothing else happened */
  | { k: 'einval' }
  /** the header KVM_GET_NESTED_STATE returned (struct kvm_nested_state: flags, size, hdr.vmx.vmxon_pa, vmcs12_pa, smm.flags) */
  | { k: 'nested-state'; flags: number; size: number; vmxon: bigint; vmcs12: bigint; smm: number };

/** The exits to userspace an outcome names (KVM_EXIT_MMIO, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_SHUTDOWN). */
export type UserspaceExit = 'mmio' | 'internal-error' | 'shutdown';
const USERSPACE_EXITS: readonly UserspaceExit[] = ['mmio', 'internal-error', 'shutdown'];

export type OutcomeKind = Outcome['k'];

/**
 * An `expect` clause is an outcome; fields that are undefined are not checked
 * (`expect exit MSR_READ` accepts any qualification).
 */
export type Expect = Outcome;

const CODES: Record<OutcomeKind, number> = {
  ok: 0,
  value: 1,
  'vmfail-invalid': 2,
  'vmfail-valid': 3,
  gp: 4,
  ud: 5,
  exit: 6,
  entered: 7,
  cpuid: 8,
  ignored: 9,
  userspace: 10,
  einval: 11,
  'nested-state': 12,
};
const KINDS = Object.keys(CODES) as OutcomeKind[];
const KIND_BY_CODE = new Map<number, OutcomeKind>(KINDS.map((k) => [CODES[k], k]));

export const OUTCOME_KINDS: readonly OutcomeKind[] = KINDS;

export function outcomeEquals(a: Outcome, b: Outcome): boolean {
  if (a.k !== b.k) return false;
  switch (a.k) {
    case 'value':
      return a.value === (b as typeof a).value;
    case 'vmfail-valid':
      return a.error === (b as typeof a).error;
    case 'exit':
      return a.reason === (b as typeof a).reason && a.qual === (b as typeof a).qual;
    case 'cpuid': {
      const o = b as typeof a;
      return a.eax === o.eax && a.ebx === o.ebx && a.ecx === o.ecx && a.edx === o.edx;
    }
    case 'ignored':
      return a.why === (b as typeof a).why;
    case 'userspace':
      return a.exit === (b as typeof a).exit && a.gpa === (b as typeof a).gpa;
    case 'nested-state': {
      const o = b as typeof a;
      return a.flags === o.flags && a.size === o.size && a.vmxon === o.vmxon && a.vmcs12 === o.vmcs12 && a.smm === o.smm;
    }
    default:
      return true;
  }
}

/** Does `actual` satisfy the (possibly partial) expectation? */
export function outcomeMatches(expect: Expect, actual: Outcome): boolean {
  if (expect.k !== actual.k) return false;
  const e = expect as unknown as Record<string, unknown>;
  const a = actual as unknown as Record<string, unknown>;
  for (const key of Object.keys(e)) {
    if (key === 'k' || e[key] === undefined) continue;
    if (e[key] !== a[key]) return false;
  }
  return true;
}

const hex = (v: bigint | number) => '0x' + v.toString(16);

const NESTED_STATE_KEYS = ['flags', 'size', 'vmxon', 'vmcs12', 'smm'] as const;

/** The text form: `ok`, `value 0x10`, `vmfail-valid 12`, `exit MSR_READ qual=0x0`, `cpuid eax=0x1 ...`. */
export function formatOutcome(o: Outcome): string {
  switch (o.k) {
    case 'value':
      return `value ${hex(o.value)}`;
    case 'vmfail-valid':
      return o.error === undefined ? 'vmfail-valid' : `vmfail-valid ${o.error}`;
    case 'exit': {
      let s = `exit ${o.reason === undefined ? '' : exitReasonName(o.reason)}`.trimEnd();
      if (o.qual !== undefined) s += ` qual=${hex(o.qual)}`;
      return s;
    }
    case 'cpuid':
      return ['cpuid', ...(['eax', 'ebx', 'ecx', 'edx'] as const).filter((r) => o[r] !== undefined).map((r) => `${r}=${hex(o[r])}`)].join(' ');
    case 'ignored':
      return o.why === undefined ? 'ignored' : `ignored ${JSON.stringify(o.why)}`;
    case 'userspace':
      return ['userspace', o.exit, o.gpa === undefined ? undefined : `gpa=${hex(o.gpa)}`].filter((x) => x !== undefined).join(' ');
    case 'nested-state':
      return ['nested-state', ...NESTED_STATE_KEYS.filter((r) => o[r] !== undefined).map((r) => `${r}=${hex(o[r])}`)].join(' ');
    default:
      return o.k;
  }
}

/** A longer description for people: error and exit names spelled out. */
export function describeOutcome(o: Outcome): string {
  if (o.k === 'vmfail-valid' && o.error !== undefined) return `VMfailValid(${o.error} ${vmxErrorName(o.error)})`;
  if (o.k === 'vmfail-invalid') return 'VMfailInvalid';
  if (o.k === 'gp') return '#GP(0)';
  if (o.k === 'ud') return '#UD';
  if (o.k === 'userspace') return `exit to userspace ${o.exit === 'internal-error' ? 'KVM_EXIT_INTERNAL_ERROR' : o.exit === 'mmio' ? 'KVM_EXIT_MMIO' : o.exit === 'shutdown' ? 'KVM_EXIT_SHUTDOWN' : '(any)'}${o.gpa === undefined ? '' : ` gpa ${hex(o.gpa)}`}`;
  if (o.k === 'exit') return `nested VM-exit ${o.reason === undefined ? '?' : `${exitReasonName(o.reason)} (${o.reason >>> 0})`}${o.qual === undefined ? '' : ` qual ${hex(o.qual)}`}`;
  return formatOutcome(o);
}

function parseNum(tok: string, what: string): bigint {
  if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(tok)) throw new TraceError(`${what}: '${tok}' is not a number`);
  return BigInt(tok);
}

function parseU64(tok: string, what: string): bigint {
  const v = parseNum(tok, what);
  if (v > 0xffffffffffffffffn) throw new TraceError(`${what}: ${tok} does not fit in 64 bits`);
  return v;
}

function parseU32(tok: string, what: string): number {
  const v = parseNum(tok, what);
  if (v > 0xffffffffn) throw new TraceError(`${what}: ${tok} does not fit in 32 bits`);
  return Number(v);
}

/**
 * Parse the text after `expect`. Throws TraceError (without location; the
 * caller adds the line) on anything it does not understand.
 */
export function parseOutcome(text: string): Expect {
  const toks = text.trim().split(/\s+/).filter(Boolean);
  const k = toks[0];
  const rest = toks.slice(1);
  const kv = (allowed: string[]) => {
    const m: Record<string, string> = {};
    for (const t of rest) {
      const eq = t.indexOf('=');
      if (eq < 0) continue;
      const key = t.slice(0, eq);
      if (!allowed.includes(key)) throw new TraceError(`expect ${k}: unknown key '${key}' (known: ${allowed.join(', ')})`);
      m[key] = t.slice(eq + 1);
    }
    return m;
  };
  switch (k) {
    case 'ok':
    case 'vmfail-invalid':
    case 'gp':
    case 'ud':
    case 'entered':
    case 'einval':
      if (rest.length) throw new TraceError(`expect ${k} takes no arguments, got '${rest.join(' ')}'`);
      return { k } as Expect;
    case 'value':
      if (rest.length !== 1) throw new TraceError('expect value needs exactly one value');
      return { k, value: parseNum(rest[0], 'expect value') };
    case 'vmfail-valid': {
      if (rest.length > 1) throw new TraceError('expect vmfail-valid takes one error number or name');
      if (rest.length === 0) return { k, error: undefined as unknown as number };
      const byName = vmxErrorByName(rest[0]);
      const error = byName ?? parseU32(rest[0], 'expect vmfail-valid');
      return { k, error };
    }
    case 'exit': {
      const pos = rest.filter((t) => !t.includes('='));
      if (pos.length > 1) throw new TraceError(`expect exit: unexpected '${pos.slice(1).join(' ')}'`);
      let reason: number | undefined;
      if (pos.length === 1) {
        reason = parseExitReason(pos[0]);
      }
      const m = kv(['qual']);
      return { k, reason: reason as number, qual: m.qual === undefined ? (undefined as unknown as bigint) : parseNum(m.qual, 'expect exit qual') };
    }
    case 'cpuid': {
      const m = kv(['eax', 'ebx', 'ecx', 'edx']);
      const r = (n: string) => (m[n] === undefined ? (undefined as unknown as number) : parseU32(m[n], `expect cpuid ${n}`));
      return { k, eax: r('eax'), ebx: r('ebx'), ecx: r('ecx'), edx: r('edx') };
    }
    case 'ignored': {
      if (!rest.length) return { k, why: undefined as unknown as string };
      let why: unknown;
      try {
        why = JSON.parse(rest.join(' '));
      } catch {
        why = undefined;
      }
      if (typeof why !== 'string') throw new TraceError('expect ignored: the reason must be a JSON string');
      return { k, why: checkedWhy(why) };
    }
    case 'userspace': {
      // `userspace`, `userspace mmio`, `userspace mmio gpa=0xfee00000`, `userspace internal-error`, `userspace shutdown`
      const pos = rest.filter((t) => !t.includes('='));
      if (pos.length > 1) throw new TraceError(`expect userspace: unexpected '${pos.slice(1).join(' ')}'`);
      let exit: UserspaceExit | undefined;
      if (pos.length === 1) {
        if (!(USERSPACE_EXITS as readonly string[]).includes(pos[0])) throw new TraceError(`expect userspace: unknown exit '${pos[0]}' (known: ${USERSPACE_EXITS.join(', ')})`);
        exit = pos[0] as UserspaceExit;
      }
      const m = kv(['gpa']);
      if (m.gpa !== undefined && exit !== 'mmio') throw new TraceError('expect userspace: gpa= goes with mmio');
      const o: Extract<Outcome, { k: 'userspace' }> = { k, exit: exit as UserspaceExit };
      if (m.gpa !== undefined) o.gpa = parseNum(m.gpa, 'expect userspace gpa');
      return o;
    }
    case 'nested-state': {
      if (rest.some((t) => !t.includes('='))) throw new TraceError(`expect nested-state takes key=value pairs (${NESTED_STATE_KEYS.join(', ')})`);
      const m = kv([...NESTED_STATE_KEYS]);
      const r32 = (n: string, max: number) => {
        if (m[n] === undefined) return undefined as unknown as number;
        const x = parseU32(m[n], `expect nested-state ${n}`);
        if (x > max) throw new TraceError(`expect nested-state ${n}: ${m[n]} is out of range`);
        return x;
      };
      const r64 = (n: string) => (m[n] === undefined ? (undefined as unknown as bigint) : parseU64(m[n], `expect nested-state ${n}`));
      return { k, flags: r32('flags', 0xffff), size: r32('size', 0xffffffff), vmxon: r64('vmxon'), vmcs12: r64('vmcs12'), smm: r32('smm', 0xffff) };
    }
    default:
      throw new TraceError(`unknown outcome '${k ?? ''}' (known: ${KINDS.join(', ')})`);
  }
}

/** `MSR_READ`, `EXIT_REASON_MSR_READ`, `31`, `INVALID_STATE|FAILED_VMENTRY` or a number with the flag. */
export function parseExitReason(tok: string): number {
  let flags = 0;
  let base = tok;
  if (base.endsWith('|FAILED_VMENTRY')) {
    flags = 0x80000000;
    base = base.slice(0, -'|FAILED_VMENTRY'.length);
  }
  const named = exitReasonByName(base);
  if (named !== undefined) return (named | flags) >>> 0;
  return (parseU32(base, 'exit reason') | flags) >>> 0;
}

// ---- binary tuples: [code, ...fields]; undefined fields (partial expects) are encoded as null ----

export function outcomeToTuple(o: Outcome): unknown[] {
  const c = CODES[o.k];
  const small = (v: bigint | undefined) => (v === undefined ? null : v <= 0xffffffffn ? Number(v) : v);
  const opt = (v: number | string | undefined) => (v === undefined ? null : v);
  switch (o.k) {
    case 'value':
      return [c, small(o.value)];
    case 'vmfail-valid':
      return [c, opt(o.error)];
    case 'exit':
      return [c, opt(o.reason), small(o.qual)];
    case 'cpuid':
      return [c, opt(o.eax), opt(o.ebx), opt(o.ecx), opt(o.edx)];
    case 'ignored':
      return [c, opt(o.why)];
    case 'userspace':
      return [c, o.exit === undefined ? null : USERSPACE_EXITS.indexOf(o.exit), small(o.gpa)];
    case 'nested-state':
      return [c, opt(o.flags), opt(o.size), small(o.vmxon), small(o.vmcs12), opt(o.smm)];
    default:
      return [c];
  }
}

function tupleU64(v: unknown, what: string): bigint | undefined {
  if (v === null) return undefined;
  if (typeof v === 'bigint') {
    if (v < 0n || v > 0xffffffffffffffffn) throw new TraceError(`${what} out of 64-bit range`);
    return v;
  }
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff) return BigInt(v);
  throw new TraceError(`${what} is not a 64-bit value`);
}

function tupleU32(v: unknown, what: string): number | undefined {
  if (v === null) return undefined;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff) return v;
  throw new TraceError(`${what} is not a 32-bit value`);
}

/** An `ignored` reason both trace forms hold unchanged: no lone surrogate (the binary form is UTF-8). */
function checkedWhy(why: string): string {
  const at = loneSurrogateAt(why);
  if (at >= 0) throw new TraceError(`expect ignored: the reason holds a lone surrogate (\\u${why.charCodeAt(at).toString(16)} at character ${at}), which a trace cannot hold`);
  return why;
}

/** Decode and validate an outcome tuple; throws TraceError naming the problem. */
export function outcomeFromTuple(t: unknown): Outcome {
  if (!Array.isArray(t) || t.length === 0 || typeof t[0] !== 'number') throw new TraceError('expect: not an outcome tuple');
  const k = KIND_BY_CODE.get(t[0]);
  if (k === undefined) throw new TraceError(`expect: unknown outcome code ${t[0]}`);
  const want = { value: 2, 'vmfail-valid': 2, exit: 3, cpuid: 5, ignored: 2, userspace: 3, 'nested-state': 6 } as Record<string, number>;
  const n = want[k] ?? 1;
  if (t.length !== n) throw new TraceError(`expect ${k}: ${t.length - 1} fields, wanted ${n - 1}`);
  switch (k) {
    case 'value': {
      const value = tupleU64(t[1], 'expect value');
      if (value === undefined) throw new TraceError('expect value: missing value');
      return { k, value };
    }
    case 'vmfail-valid':
      return { k, error: tupleU32(t[1], 'expect vmfail-valid error') as number };
    case 'exit':
      return { k, reason: tupleU32(t[1], 'expect exit reason') as number, qual: tupleU64(t[2], 'expect exit qual') as bigint };
    case 'cpuid':
      return {
        k,
        eax: tupleU32(t[1], 'expect cpuid eax') as number,
        ebx: tupleU32(t[2], 'expect cpuid ebx') as number,
        ecx: tupleU32(t[3], 'expect cpuid ecx') as number,
        edx: tupleU32(t[4], 'expect cpuid edx') as number,
      };
    case 'ignored':
      if (t[1] !== null && typeof t[1] !== 'string') throw new TraceError('expect ignored: reason is not a string');
      return { k, why: t[1] === null ? (undefined as unknown as string) : checkedWhy(t[1]) };
    case 'userspace': {
      const x = t[1] === null ? undefined : USERSPACE_EXITS[tupleU32(t[1], 'expect userspace exit')!];
      if (t[1] !== null && x === undefined) throw new TraceError(`expect userspace: unknown exit code ${String(t[1])}`);
      const gpa = tupleU64(t[2], 'expect userspace gpa');
      if (gpa !== undefined && x !== 'mmio') throw new TraceError('expect userspace: a gpa goes with mmio');
      const o: Extract<Outcome, { k: 'userspace' }> = { k, exit: x as UserspaceExit };
      if (gpa !== undefined) o.gpa = gpa;
      return o;
    }
    case 'nested-state': {
      const u16 = (x: unknown, what: string) => {
        const r = tupleU32(x, what);
        if (r !== undefined && r > 0xffff) throw new TraceError(`${what} is not a 16-bit value`);
        return r as number;
      };
      return {
        k,
        flags: u16(t[1], 'expect nested-state flags'),
        size: tupleU32(t[2], 'expect nested-state size') as number,
        vmxon: tupleU64(t[3], 'expect nested-state vmxon') as bigint,
        vmcs12: tupleU64(t[4], 'expect nested-state vmcs12') as bigint,
        smm: u16(t[5], 'expect nested-state smm'),
      };
    }
    default:
      return { k } as Outcome;
  }
}
