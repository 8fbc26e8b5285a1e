import { run } from '@nvx/cli';
(async () => {
  const code = await run(process.argv.slice(2));
  process.exitCode = code;
})();
