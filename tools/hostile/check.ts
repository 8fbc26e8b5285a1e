/**
 * What the campaign checks for each hostile input, in process: both readers
 * (in memory and streaming from a file) either accept it or throw a
 * TraceError whose message is one line of at most 1,000 bytes that says
 * what the trace got wrong (never a JavaScript runtime error); the two
 * readers agree; and whatever is accepted converts to the other form and
 * back without loss.
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  TraceError,
  TraceEvent,
  TraceHeader,
  decodeBinaryTrace,
  decodeTextTrace,
  encodeBinaryTrace,
  formatTextTrace,
  isBinaryTrace,
  openTrace,
  parseTextTrace,
} from '@nvx/trace';

/** Texts that only a JavaScript runtime error (or a decoder's internals) would put in a message. */
export const RUNTIME_ERROR_RE =
  /Maximum call stack|Cannot read propert|Cannot set propert|Cannot convert|is not a function|is not iterable|is not defined|undefined is not|null is not|Invalid array length|Invalid string length|out of memory|RangeError|TypeError|SyntaxError|ReferenceError|Unexpected token|Unexpected end of JSON|in JSON at position|\bat .*\(.*:\d+:\d+\)|Data read, but end of buffer not reached|Unexpected end of MessagePack|BigInt|\[object Object\]/;

/** The longest message line allowed (bytes, with the `error: ` the CLI puts before it). */
export const MAX_MESSAGE_BYTES = 1000;

export type Problem = 'crash' | 'runtime-message' | 'multi-line' | 'long-message' | 'readers-disagree' | 'lossy' | 'slow';

export interface InputResult {
  /** accepted (with or without warnings) or rejected with a TraceError */
  verdict: 'accepted' | 'rejected' | 'crash';
  message?: string;
  events?: number;
  problems: { problem: Problem; detail: string }[];
  /** the slower reader's time */
  ms: number;
}

/** A message's shape problems: not one line, too long, or a runtime error's text. */
export function messageProblems(message: string): { problem: Problem; detail: string }[] {
  const out: { problem: Problem; detail: string }[] = [];
  if (/[\n\r]/.test(message)) out.push({ problem: 'multi-line', detail: message.slice(0, 300) });
  const bytes = Buffer.byteLength(`error: ${message}`, 'utf8');
  if (bytes > MAX_MESSAGE_BYTES) out.push({ problem: 'long-message', detail: `${bytes} bytes: ${message.slice(0, 200)}` });
  if (RUNTIME_ERROR_RE.test(message)) out.push({ problem: 'runtime-message', detail: message.slice(0, 300) });
  return out;
}

interface ReadResult {
  ok: boolean;
  header?: TraceHeader;
  events?: TraceEvent[];
  message?: string;
  crash?: string;
  ms: number;
}

function classify(e: unknown, t0: number): ReadResult {
  const ms = performance.now() - t0;
  if (e instanceof TraceError) return { ok: false, message: e.message, ms };
  const m = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return { ok: false, crash: m.slice(0, 500), ms };
}

function inMemory(bytes: Buffer, binary: boolean): ReadResult {
  const t0 = performance.now();
  try {
    const r = binary ? decodeBinaryTrace(bytes, 'input') : decodeTextTrace(bytes, 'input');
    return { ok: true, header: r.header, events: r.events, ms: performance.now() - t0 };
  } catch (e) {
    return classify(e, t0);
  }
}

async function streaming(file: string, binary: boolean): Promise<ReadResult> {
  const t0 = performance.now();
  try {
    const r = await openTrace(file, { form: binary ? 'binary' : 'text' });
    const events: TraceEvent[] = [];
    try {
      for await (const c of r.chunks()) for (const e of c) events.push(e);
    } finally {
      await r.close();
    }
    return { ok: true, header: r.header, events, ms: performance.now() - t0 };
  } catch (e) {
    return classify(e, t0);
  }
}

/** Text -> binary -> text (or binary -> text -> binary) gives the same trace; a refusal by the writer counts as a loss. */
function lossless(header: TraceHeader, events: TraceEvent[]): string | undefined {
  try {
    const text = formatTextTrace(header, events);
    const viaText = parseTextTrace(text);
    const bin = encodeBinaryTrace(viaText.header, viaText.events);
    const back = decodeBinaryTrace(bin);
    const again = formatTextTrace(back.header, back.events);
    if (again !== text) return 'text -> binary -> text differs';
    return undefined;
  } catch (e) {
    return `conversion of an accepted trace failed: ${e instanceof Error ? e.message.slice(0, 200) : String(e)}`;
  }
}

/** Run one input through both readers. `file` is a scratch path the input is written to for the streaming reader. */
export async function checkInput(bytes: Buffer, file: string, slowMs = 2000): Promise<InputResult> {
  const binary = isBinaryTrace(bytes.subarray(0, 4)) || path.extname(file) === '.nvxt';
  fs.writeFileSync(file, bytes);
  const a = inMemory(bytes, binary);
  const b = await streaming(file, binary);
  const problems: InputResult['problems'] = [];
  for (const r of [a, b]) {
    if (r.crash !== undefined) problems.push({ problem: 'crash', detail: r.crash });
    if (r.message !== undefined) problems.push(...messageProblems(r.message));
  }
  if (a.crash === undefined && b.crash === undefined) {
    if (a.ok !== b.ok) problems.push({ problem: 'readers-disagree', detail: `in memory ${a.ok ? 'accepts' : `rejects: ${a.message}`}; streaming ${b.ok ? 'accepts' : `rejects: ${b.message}`}`.slice(0, 400) });
    else if (a.ok && a.events!.length !== b.events!.length) problems.push({ problem: 'readers-disagree', detail: `in memory ${a.events!.length} events, streaming ${b.events!.length}` });
  }
  if (a.ok) {
    const loss = lossless(a.header!, a.events!);
    if (loss) problems.push({ problem: 'lossy', detail: loss });
  }
  const ms = Math.max(a.ms, b.ms);
  if (ms > slowMs) problems.push({ problem: 'slow', detail: `${Math.round(ms)} ms for ${bytes.length} bytes` });
  const verdict = a.crash !== undefined || b.crash !== undefined ? 'crash' : a.ok ? 'accepted' : 'rejected';
  return { verdict, message: a.message ?? b.message, events: a.events?.length, problems, ms };
}
