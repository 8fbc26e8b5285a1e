'use strict';
/**
 * The built nvx command (packages/cli/dist) as a child of the hostile-input
 * campaign: when fd 3 is a pipe, `{"maxRss": <KiB>}` is written there as the
 * process exits, so the campaign measures each run's peak memory without
 * touching its stdout and stderr. (child.ts does the same from source.)
 */
const fs = require('fs');
process.on('exit', () => {
  try {
    fs.writeSync(3, JSON.stringify({ maxRss: process.resourceUsage().maxRSS }) + '\n');
  } catch {
    /* no fd 3: run by hand */
  }
});
require('../../packages/cli/dist/main.js').main();
