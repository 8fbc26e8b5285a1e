/**
 * The nvx command as a child of the hostile-input campaign: runs `nvx` from
 * source with the given arguments and, when fd 3 is a pipe, writes
 * `{"maxRss": <KiB>}` there as it exits, so the campaign measures the peak
 * memory of each run without touching its stdout and stderr.
 */
import * as fs from 'fs';
import { main } from '../../packages/cli/src/main';

process.on('exit', () => {
  try {
    fs.writeSync(3, JSON.stringify({ maxRss: process.resourceUsage().maxRSS }) + '\n');
  } catch {
    /* no fd 3: run by hand */
  }
});
main();
