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
  | { k: 'ignored'; why: string };

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
};
const KINDS = Object.keys(CODES) as OutcomeKind[];

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
  if (o.k === 'exit') return `nested VM-exit ${o.reason === undefined ? '?' : `${exitReasonName(o.reason)} (${o.reason >>> 0})`}${o.qual === undefined ? '' : ` qual ${hex(o.qual)}`}`;
  return formatOutcome(o);
}

function parseNum(tok: string, what: string): bigint {
  if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(tok)) throw new TraceError(`${what}: '${tok}' is not a number`);
  return BigInt(tok);
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
  const k = KINDS[t[0]];
  if (k === undefined) throw new TraceError(`expect: unknown outcome code ${t[0]}`);
  const want = { value: 2, 'vmfail-valid': 2, exit: 3, cpuid: 5, ignored: 2 } as Record<string, number>;
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
    default:
      return { k } as Outcome;
  }
}
