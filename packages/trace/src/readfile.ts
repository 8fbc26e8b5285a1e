/**
 * Opening a trace for reading: only a regular file is a trace. A FIFO would
 * block the open and the reads forever, a device would never end; both are
 * refused with a TraceError before anything is read.
 */
import * as fs from 'fs';
import { TraceError, fsProblem } from './errors';

/** What a path that is not a regular file is, in words. */
export function nonFileKind(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

// O_NONBLOCK: a FIFO put in place after a check must not hang the open (it does nothing to a regular file)
const READ_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0);

/** Open `path` for reading if it is a regular file; a TraceError naming the file otherwise. */
export async function openForReading(path: string): Promise<fs.promises.FileHandle> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(path, READ_FLAGS);
  } catch (e) {
    throw new TraceError(fsProblem(e), { file: path });
  }
  let st: fs.Stats;
  try {
    st = await fh.stat();
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw new TraceError(fsProblem(e), { file: path });
  }
  if (!st.isFile()) {
    await fh.close().catch(() => undefined);
    throw new TraceError(st.isDirectory() ? 'is a directory, not a trace file' : `is ${nonFileKind(st)}, not a regular file: nvx reads traces from regular files`, { file: path });
  }
  return fh;
}
