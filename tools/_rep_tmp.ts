import { run } from '@nvx/cli';
import { registerOpenBitmap } from '../packages/cli/test/fixtures/open-bitmap-path';
registerOpenBitmap();
(async () => { process.exitCode = await run(process.argv.slice(2)); })();
