/**
 * A progress bar on stderr for long imports and reports, only when stderr
 * is a terminal (never in a pipe, a file or a test's captured output unless
 * it says it is a TTY).
 */
import { SingleBar } from 'cli-progress';
import type { CliContext } from '../output';

export interface Progress {
  /** set the done and total amounts (any unit) */
  update(done: number, total: number): void;
  stop(): void;
}

const NONE: Progress = { update: () => undefined, stop: () => undefined };

export function progressBar(ctx: CliContext, label: string, opts: { quiet?: boolean; unit?: 'bytes' | 'events' } = {}): Progress {
  const err = ctx.io.stderr;
  if (opts.quiet || err.isTTY !== true) return NONE;
  const unit = opts.unit ?? 'events';
  const bar = new SingleBar({
    stream: err as unknown as NodeJS.WritableStream,
    format: `${label} [{bar}] {percentage}% {shown} | ETA {eta_formatted}`,
    barsize: 30,
    hideCursor: false,
    clearOnComplete: true,
    etaBuffer: 50,
    fps: 10,
  });
  let started = false;
  const shown = (n: number) => (unit === 'bytes' ? `${(n / 1048576).toFixed(1)} MiB` : String(n));
  return {
    update(done: number, total: number) {
      if (!started) {
        bar.start(Math.max(1, total), done, { shown: shown(done) });
        started = true;
      } else {
        if (bar.getTotal() !== total) bar.setTotal(Math.max(1, total));
        bar.update(done, { shown: shown(done) });
      }
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}
