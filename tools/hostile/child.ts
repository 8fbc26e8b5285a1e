/**
 * The nvx command as a child of the hostile-input campaign: runs `nvx` from
 * source with the given arguments and, when fd 3 is a pipe, writes
 * `{"maxRss": <KiB>}` (the peak RSS) there as it exits, so the campaign measures the peak
 * memory of each run without touching its stdout and stderr.
 */
import * as fs from 'fs';
import { main } from '../../packages/cli/src/main';

// The peak RSS of this process's own memory: VmHWM (getrusage's maxrss on Linux also counts the
// parent's memory at the fork that started this process, so it would measure the campaign, not nvx).
function peakRssKiB(): number {
  try {
    const m = /VmHWM:\s*(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]);
  } catch {
    /* not Linux */
  }
  return process.resourceUsage().maxRSS;
}

process.on('exit', () => {
  try {
    fs.writeSync(3, JSON.stringify({ maxRss: peakRssKiB() }) + '\n');
  } catch {
    /* no fd 3: run by hand */
  }
});
main();
