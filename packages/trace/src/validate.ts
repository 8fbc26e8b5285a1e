/**
 * Event validation and the compact tuple form used by the binary codec.
 *
 * A tuple is `[code, field1, field2, ...]` in schema order, with the event's
 * `expect` outcome tuple appended when there is one. 64-bit fields are
 * written as plain numbers when they fit in 32 bits (msgpack packs those in
 * 1-5 bytes) and as bigints otherwise; they always decode to bigint.
 */
import { TraceError, describeValue } from './errors';
import { EVENT_SCHEMA, EventKind, FieldType, TraceEvent, isEventKind, kindByCode } from './events';
import type { WorldConfig } from './header';
import { outcomeFromTuple, outcomeToTuple } from './outcome';

const U64_MAX = 0xffffffffffffffffn;

/** Check one field value; returns the normalized value or throws with the field name. */
function checkField(type: FieldType, v: unknown, field: string, index: number | undefined, cfg?: WorldConfig): unknown {
  const bad = (what: string) => new TraceError(`${what}, got ${describe(v)}`, { index, field });
  switch (type) {
    case 'u64':
      if (typeof v === 'bigint') {
        if (v < 0n || v > U64_MAX) throw bad('must be an unsigned 64-bit value');
        return v;
      }
      if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff) return BigInt(v);
      throw bad('must be an unsigned 64-bit value (bigint)');
    case 'bool':
      if (typeof v !== 'boolean') throw bad('must be true or false');
      return v;
    case 'access':
      if (v !== 'read' && v !== 'write') throw bad("must be 'read' or 'write'");
      return v;
    default: {
      if (typeof v !== 'number' || !Number.isInteger(v)) throw bad('must be an integer');
      const max = RANGE[type];
      if (v < 0 || v > max) throw bad(`must be in 0..${max}`);
      if (type === 'size' && v !== 1 && v !== 2 && v !== 4 && v !== 8) throw bad('must be 1, 2, 4 or 8');
      if (type === 'vcpu' && cfg && v >= cfg.vcpus) throw bad(`must be a vCPU below config.vcpus (${cfg.vcpus})`);
      if (type === 'cpu' && cfg && v >= cfg.pcpus) throw bad(`must be a physical CPU below config.pcpus (${cfg.pcpus})`);
      return v;
    }
  }
}

const RANGE: Record<Exclude<FieldType, 'u64' | 'bool' | 'access'>, number> = {
  vcpu: 255,
  cpu: 255,
  u8: 0xff,
  u16: 0xffff,
  u32: 0xffffffff,
  cpl: 3,
  field: 0xffffffff,
  msr: 0xffffffff,
  size: 8,
};

const describe = describeValue;

/**
 * Validate an event given as a plain object (from JSON, a plugin, a test).
 * Unknown kinds, missing fields, extra fields and ill-typed or out-of-range
 * values are errors naming the event index and the field.
 */
export function validateEvent(raw: unknown, index?: number, cfg?: WorldConfig): TraceEvent {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new TraceError(`event is ${describe(raw)}, not a map`, { index });
  const r = raw as Record<string, unknown>;
  if (typeof r.kind !== 'string') throw new TraceError('missing event kind', { index, field: 'kind' });
  if (!isEventKind(r.kind)) throw new TraceError(`unknown event kind '${r.kind}'`, { index, field: 'kind' });
  const def = EVENT_SCHEMA[r.kind];
  const out: Record<string, unknown> = { kind: r.kind };
  for (const [name, type] of def.fields) {
    if (!(name in r)) throw new TraceError(`missing field for ${r.kind}`, { index, field: name });
    out[name] = checkField(type, r[name], name, index, cfg);
  }
  for (const key of Object.keys(r)) {
    if (key === 'kind' || key === 'expect') continue;
    if (!def.fields.some((f) => f[0] === key)) throw new TraceError(`unknown field for ${r.kind}`, { index, field: key });
  }
  if (r.expect !== undefined) {
    try {
      out.expect = outcomeFromTuple(outcomeToTuple(r.expect as never));
    } catch (e) {
      throw e instanceof TraceError ? new TraceError(e.problem, { index, field: 'expect' }) : new TraceError('malformed expect', { index, field: 'expect' });
    }
  }
  return out as TraceEvent;
}

export function eventToTuple(e: TraceEvent): unknown[] {
  const def = EVENT_SCHEMA[e.kind];
  const t: unknown[] = [def.code];
  const r = e as unknown as Record<string, unknown>;
  for (const [name, type] of def.fields) {
    const v = r[name];
    if (type === 'u64') t.push((v as bigint) <= 0xffffffffn ? Number(v) : v);
    else if (type === 'access') t.push(v === 'write' ? 1 : 0);
    else t.push(v);
  }
  if (e.expect) t.push(outcomeToTuple(e.expect));
  return t;
}

/** Decode a tuple into a validated event; throws TraceError naming the index and field. */
export function eventFromTuple(t: unknown, index: number, cfg?: WorldConfig): TraceEvent {
  if (!Array.isArray(t) || t.length === 0) throw new TraceError(`event is ${describe(t)}, not an event tuple`, { index });
  const code = t[0];
  const kind: EventKind | undefined = typeof code === 'number' ? kindByCode(code) : undefined;
  if (kind === undefined) throw new TraceError(`unknown event code ${describe(code)}`, { index, field: 'kind' });
  const def = EVENT_SCHEMA[kind];
  const n = def.fields.length;
  if (t.length !== n + 1 && t.length !== n + 2) throw new TraceError(`${kind} has ${t.length - 1} values, wanted ${n} (or ${n + 1} with expect)`, { index });
  const out: Record<string, unknown> = { kind };
  for (let i = 0; i < n; i++) {
    const [name, type] = def.fields[i];
    let v = t[i + 1];
    if (type === 'access') {
      if (v !== 0 && v !== 1) throw new TraceError(`must be 0 (read) or 1 (write), got ${describe(v)}`, { index, field: name });
      v = v === 1 ? 'write' : 'read';
    }
    out[name] = checkField(type, v, name, index, cfg);
  }
  if (t.length === n + 2) {
    try {
      out.expect = outcomeFromTuple(t[n + 1]);
    } catch (e) {
      if (e instanceof TraceError) throw new TraceError(e.problem, { index, field: 'expect' });
      throw e;
    }
  }
  return out as TraceEvent;
}
