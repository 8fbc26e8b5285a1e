'use strict';
/**
 * The built nvx command (packages/cli/dist) as a child of the hostile-input
 * campaign: when fd 3 is a pipe, `{"maxRss": <KiB>}` (the peak RSS) is written there as the
 * process exits, so the campaign measures each run's peak memory without
 * touching its stdout and stderr. (child.ts does the same from source.)
 */
const fs = require('fs');
// The peak RSS of this process's own memory: VmHWM (getrusage's maxrss on Linux also counts the
// parent's memory at the fork that started this process, so it would measure the campaign, not nvx).
function peakRssKiB() {
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
require('../../packages/cli/dist/main.js').main();
