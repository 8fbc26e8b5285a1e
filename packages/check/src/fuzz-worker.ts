/**
 * A fuzz worker thread: loads the plugin path modules it was given, then
 * runs the blocks the campaign sends, reporting progress, findings (as soon
 * as each is minimized) and each block's counts. The campaign thread writes
 * every file.
 */
import { parentPort, workerData } from 'worker_threads';
import { FromWorker, FuzzConfig, FuzzEngine, ToWorker } from './fuzz';
import { loadPathModule } from './plugins';

const port = parentPort!;
const post = (m: FromWorker) => port.postMessage(m);

async function main(): Promise<void> {
  const cfg = workerData as FuzzConfig;
  for (const m of cfg.pathModules) await loadPathModule(m);
  const engine = new FuzzEngine(cfg);
  let stopping = false;
  port.on('message', (m: ToWorker) => {
    if (m.type === 'stop') {
      stopping = true;
      port.close();
      return;
    }
    try {
      const result = engine.runBlock(m.spec, {
        progress: (runs, events) => post({ type: 'progress', runs, events }),
        finding: (finding) => post({ type: 'finding', finding }),
        shouldStop: () => stopping,
      });
      post({ type: 'block-done', result });
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      post({ type: 'error', message: err.message, stack: err.stack });
    }
  });
  post({ type: 'ready' });
}

main().catch((e: unknown) => {
  const err = e instanceof Error ? e : new Error(String(e));
  post({ type: 'error', message: err.message, stack: err.stack });
});
