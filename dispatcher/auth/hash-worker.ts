/*
 * Worker-thread entry of the password hashing pool (hash-pool.ts): scrypt,
 * synchronously, on this thread. Run here rather than through crypto.scrypt's
 * callback form, which takes one of libuv's four pool threads per hash: a
 * login flood then queued every trace's file reads behind the hashes.
 */

import { scryptSync } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import type { HashJob, HashReply } from './hash-pool';

parentPort?.on('message', (job: HashJob) => {
  let reply: HashReply;
  try {
    const key = scryptSync(job.password, Buffer.from(job.salt), job.keyBytes, job.params);
    reply = { id: job.id, key: new Uint8Array(key) };
  } catch (e) {
    reply = { id: job.id, error: (e as Error).message };
  }
  parentPort?.postMessage(reply);
});
