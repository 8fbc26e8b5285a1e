/**
 * Writing a file so that its name only ever holds a complete file: every
 * writer of nvx (both trace writers, the HTML report, fuzz findings and
 * summaries, minimized traces and jest tests, the bisect log) goes through
 * this module, so they all behave the same way:
 *
 * - the output path is checked before any work: its directory must exist
 *   (it is never created here; a caller that owns a directory, such as the
 *   fuzz findings directory, creates it first) and the path must not be a
 *   directory or anything but a regular file;
 * - the data goes to a temporary file in the same directory (so the rename
 *   stays on one file system) named `.<name>.<pid>.<8 hex>.tmp`, created
 *   exclusively;
 * - commit() fsyncs the file, renames it onto the final name and fsyncs the
 *   directory (where the platform can), so after a crash the name holds
 *   either the old file or the whole new one;
 * - abort(), an error, SIGINT, SIGTERM or SIGHUP (when nothing else handles
 *   them) and process exit remove the temporary file;
 * - a temporary file that a killed process left behind (kill -9, a power
 *   cut) is removed the next time anything is written in that directory:
 *   one whose process is gone, or any older than a day.
 */
import * as fs from 'fs';
import * as nodePath from 'path';
import { TraceError, fsProblem } from './errors';

/** The names of temporary files: `.<name>.<pid>.<8 hex>.tmp`. */
export const TEMP_NAME_RE = /^\..+\.([0-9]+)\.[0-9a-f]{8}\.tmp$/;
/** A temporary file older than this is stale even when a process with its pid runs (pids are reused). */
export const STALE_TEMP_AGE_MS = 24 * 60 * 60 * 1000;

/** A temporary name next to `path`, so the final rename stays on one file system. */
export function tempPathFor(path: string): string {
  // crypto loads here, with the first file written: commands that only read (nvx run) start without it
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { randomBytes } = require('crypto') as typeof import('crypto');
  return nodePath.join(nodePath.dirname(path), `.${nodePath.basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Check that `path` can be written before any work is done: its directory
 * exists and is one, and the path itself is absent or a regular file.
 * Throws a TraceError naming the path and what is wrong.
 */
export function checkOutputPath(path: string): void {
  const dir = nodePath.dirname(path);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new TraceError(`cannot write the output: ${fsProblem(e)}`, { file: path });
  }
  if (st?.isDirectory()) throw new TraceError('the output is a directory: give a file name', { file: path });
  if (st && !st.isFile()) throw new TraceError('the output exists and is not a regular file (a device, a FIFO or a socket): give a file name', { file: path });
  let dst: fs.Stats;
  try {
    dst = fs.statSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new TraceError(
      code === 'ENOENT' || code === 'ENOTDIR' ? `the directory '${dir}' does not exist` : `cannot write in the directory '${dir}': ${fsProblem(e)}`,
      { file: path },
    );
  }
  if (!dst.isDirectory()) throw new TraceError(`'${dir}' is not a directory`, { file: path });
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (e) {
    throw new TraceError(`cannot write in the directory '${dir}': ${fsProblem(e)}`, { file: path });
  }
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const cleanedDirs = new Set<string>();

/**
 * Remove the temporary files a killed writer left in `dir`: those whose
 * process is gone, and any older than `maxAgeMs`. Returns how many were
 * removed. Never throws (a file another process just removed, a directory
 * we cannot list: nothing to do).
 */
export function cleanStaleTemps(dir: string, maxAgeMs = STALE_TEMP_AGE_MS, now = Date.now()): number {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const m = TEMP_NAME_RE.exec(name);
    if (!m) continue;
    const file = nodePath.join(dir, name);
    try {
      const st = fs.lstatSync(file);
      if (!st.isFile()) continue;
      if (live.has(file)) continue;
      if (pidAlive(Number(m[1])) && now - st.mtimeMs < maxAgeMs) continue;
      fs.unlinkSync(file);
      removed++;
    } catch {
      /* gone already, or not ours to remove */
    }
  }
  return removed;
}

// ---------------------------------------------------------------- signals and exit

/** Temporary files this process is writing now. */
const live = new Set<string>();
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
let installed = false;

function removeLive(): void {
  for (const f of live) {
    try {
      fs.unlinkSync(f);
    } catch {
      /* already gone */
    }
  }
  live.clear();
}

function onSignal(sig: NodeJS.Signals): void {
  // Another handler (a command that stops gracefully and aborts its writers itself) decides what the signal means.
  if (process.listenerCount(sig) > 1) return;
  removeLive();
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  installed = false;
  process.kill(process.pid, sig); // die of the signal, as without a handler
}

function install(): void {
  if (installed) return;
  installed = true;
  for (const s of SIGNALS) process.on(s, onSignal);
  process.on('exit', removeLive);
}

function track(tmp: string): void {
  live.add(tmp);
  install();
}

function untrack(tmp: string): void {
  live.delete(tmp);
  if (live.size === 0 && installed) {
    for (const s of SIGNALS) process.removeListener(s, onSignal);
    process.removeListener('exit', removeLive);
    installed = false;
  }
}

// ---------------------------------------------------------------- the file

/** A file written under a temporary name and renamed onto its final name by commit(). */
export class AtomicFile {
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    readonly tmpPath: string,
    fd: number,
  ) {
    this.fd = fd;
  }

  /** Check the output path, clean stale temporary files next to it, and create the temporary file. */
  static open(path: string, mode = 0o644): AtomicFile {
    checkOutputPath(path);
    const dir = nodePath.dirname(path);
    const key = nodePath.resolve(dir);
    if (!cleanedDirs.has(key)) {
      cleanedDirs.add(key);
      cleanStaleTemps(dir);
    }
    const tmp = tempPathFor(path);
    let fd: number;
    try {
      fd = fs.openSync(tmp, 'wx', mode);
    } catch (e) {
      throw new TraceError(`cannot create the output: ${fsProblem(e)}`, { file: path });
    }
    track(tmp);
    return new AtomicFile(path, tmp, fd);
  }

  get open(): boolean {
    return this.fd !== undefined;
  }

  /** Append data; on an error (a full disk) the temporary file is removed and a TraceError names the output. */
  write(data: Uint8Array | string): void {
    const fd = this.fd;
    if (fd === undefined) throw new TraceError('write after the output was closed', { file: this.path });
    const b = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    try {
      let off = 0;
      while (off < b.length) off += fs.writeSync(fd, b, off, b.length - off);
    } catch (e) {
      this.abort();
      throw new TraceError(`cannot write: ${fsProblem(e)}`, { file: this.path });
    }
  }

  /** fsync, rename onto the final name, fsync the directory. On an error nothing is left and the old file is untouched. */
  commit(): void {
    const fd = this.fd;
    if (fd === undefined) throw new TraceError('the output was already closed', { file: this.path });
    try {
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      this.fd = undefined;
      fs.renameSync(this.tmpPath, this.path);
    } catch (e) {
      this.abort();
      throw new TraceError(`cannot finish writing: ${fsProblem(e)}`, { file: this.path });
    }
    untrack(this.tmpPath);
    syncDir(nodePath.dirname(this.path));
  }

  /** Drop everything written: the temporary file is removed, the final name is untouched. Never throws. */
  abort(): void {
    if (this.fd !== undefined) {
      try {
        fs.closeSync(this.fd);
      } catch {
        /* already unusable; removing the file is what matters */
      }
      this.fd = undefined;
    }
    try {
      fs.unlinkSync(this.tmpPath);
    } catch {
      /* already gone */
    }
    untrack(this.tmpPath);
  }
}

function syncDir(dir: string): void {
  let dfd: number | undefined;
  try {
    dfd = fs.openSync(dir, 'r');
    fs.fsyncSync(dfd);
  } catch {
    // not every platform can fsync a directory; the rename itself is done
  } finally {
    if (dfd !== undefined) fs.closeSync(dfd);
  }
}

/** Write a whole file atomically (see the module comment). */
export function writeFileAtomic(path: string, data: Uint8Array | string, mode?: number): void {
  const f = AtomicFile.open(path, mode);
  f.write(data);
  f.commit();
}
