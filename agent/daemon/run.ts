import { mkdirSync } from 'node:fs';
import { CaptureEngine, CaptureEngineOptions } from '../capture/capture';
import { LiveIndexer } from '../index/live';
import { lockRing } from '../ring/lock';

export interface AgentOptions extends CaptureEngineOptions {
  correlationHeader?: string;
  /** Where progress lines go; default stderr. */
  log?: (line: string) => void;
}

export interface RunningAgent {
  engine: CaptureEngine;
  indexer: LiveIndexer;
  stop(): Promise<void>;
}

/**
 * Starts capture into a ring with live indexing: the agent's core, without a
 * dispatcher. Owns the ring (agent.pid) until stopped.
 */
export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  mkdirSync(opts.ringDir, { recursive: true });
  const release = lockRing(opts.ringDir);
  const indexer = new LiveIndexer(opts.ringDir, { correlationHeader: opts.correlationHeader });
  try {
    for (const note of indexer.repairAll()) log(`tracefleet agent: ${note}`);
  } catch (e) {
    release();
    throw e;
  }
  const engine = new CaptureEngine(opts);
  engine.on('segment-open', (m: { path: string }) => indexer.segmentOpened(m.path));
  engine.on('flushed', (m: { path: string }) => indexer.flushed(m.path));
  engine.on('segment-closed', (m: { path: string }) => indexer.segmentClosed(m.path));
  engine.on('segment-deleted', (m: { path: string }) => indexer.segmentDeleted(m.path));
  engine.on('error', (e: Error) => log(`tracefleet agent: ${e.message}`));
  try {
    await engine.start();
  } catch (e) {
    indexer.stop();
    release();
    throw e;
  }
  let stopped = false;
  return {
    engine,
    indexer,
    async stop() {
      if (stopped) return;
      stopped = true;
      await engine.stop();
      indexer.stop();
      release();
    },
  };
}
