/**
 * A fuzz worker thread: loads the plugin path modules it was given, then
 * runs the blocks the campaign sends, reporting progress, findings (as soon
 * as each is minimized) and each block's counts. The campaign thread writes
 * every file. It stops between runs when the campaign raises the shared
 * stop flag, and still reports the block it was in.
 */
import { parentPort, workerData } from 'worker_threads';
import { FromWorker, FuzzEngine, ToWorker, WorkerInit } from './fuzz';
import { loadPathModule } from './plugins';

const port = parentPort!;
const post = (m: FromWorker) => port.postMessage(m);

async function main(): Promise<void> {
  const { cfg, stop } = workerData as WorkerInit;
  const flag = new Int32Array(stop);
  for (const m of cfg.pathModules) await loadPathModule(m);
  const engine = new FuzzEngine(cfg);
  port.on('message', (m: ToWorker) => {
    if (m.type === 'stop') {
      port.close();
      return;
    }
    try {
      const result = engine.runBlock(m.spec, {
        progress: (runs, events) => post({ type: 'progress', runs, events }),
        finding: (finding) => post({ type: 'finding', finding }),
        shouldStop: () => Atomics.load(flag, 0) !== 0,
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
