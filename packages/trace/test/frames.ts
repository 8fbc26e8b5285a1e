/** Helpers the binary-format tests share: a file's frames, and the TraceError a call throws. */
import { FILE_HEADER_SIZE, FRAME_HEADER_SIZE } from '../src/binary';
import { TraceError } from '../src/errors';

/** Every frame of a binary trace: its type byte, where it starts, its payload length. */
export function framesOf(buf: Buffer): { type: number; offset: number; length: number }[] {
  const out = [];
  for (let pos = FILE_HEADER_SIZE; pos < buf.length; ) {
    const length = buf.readUInt32LE(pos + 1);
    out.push({ type: buf[pos], offset: pos, length });
    pos += FRAME_HEADER_SIZE + length;
  }
  return out;
}

/** The TraceError `f` throws; anything else (or nothing) fails the test. */
export function traceError(f: () => unknown): TraceError {
  try {
    f();
  } catch (e) {
    if (e instanceof TraceError) return e;
    throw new Error(`expected a TraceError, got ${String(e)}`);
  }
  throw new Error('expected a TraceError, nothing was thrown');
}
