/*
 * A trace's results written into a three-node Apache CouchDB cluster while
 * one node is SIGKILLed mid-upload and later started again: nothing is lost.
 * Real parts throughout: the whole dispatcher (startTestDispatcher, its
 * store through nano) on node 1's URL, real agents (agent/link +
 * agent/trace/serve) serving imported rings, the nodes killed by pid and
 * restarted with ../shared/couchdb/up.sh.
 *
 * Two cases, because the dispatcher talks to one node:
 *  - another node dies: CouchDB's quorum (n=3, w=2) takes the writes;
 *  - the dispatcher's own node dies: its writes fail, the spool keeps the
 *    result and the store jobs try again until the node is back.
 * Afterwards every document and attachment is read back through each of
 * the three nodes with the dispatcher's own store code, and each host's
 * packets.pcap must be byte for byte what the ring query writes.
 *
 * Runs when COUCHDB_CLUSTER_URL / COUCHDB_CLUSTER_DIR name a cluster (.ci/run
 * starts one); otherwise skipped, saying so.
 */

import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { TraceUpdate } from '../../shared/protocol/client';
import { CaptureStreamParser } from '../../shared/pcap/reader';
import { HOST_ATTACHMENT, MERGED_ATTACHMENT, resultDocId, traceDocId } from '../../dispatcher/store/layout';
import { TraceStore } from '../../dispatcher/store/store';
import { metricValue } from '../../dispatcher/trace/metrics';
import { clusterFromEnv, CouchCluster } from '../support/couch-cluster';
import { AGENT_TOKEN, startTestDispatcher, TestDispatcher } from '../support/dispatcher';
import { expectedPcap, makeTestRings, PROXY, startTestAgent, TestAgent, until } from '../support/trace';

const cluster = clusterFromEnv();
const skip = typeof cluster === 'string' ? cluster : false;

/** Host a's bulk packets (~1.25 kB each): about 37 MB, seconds of upload into a cluster on one machine. */
const BULK_A = 30_000;
/** Host b's: about 2.5 MB, over the inline limit, so it is streamed too. */
const BULK_B = 2_000;
const HOSTS = ['a', 'b'] as const;
type Host = (typeof HOSTS)[number];
const QUERY = { ip: [PROXY] };
/** The kill lands once this share of host a's packets.pcap has been received (its upload follows it). */
const KILL_AT = 0.3;
const MB = 1e6;

let dir = '';
let rings: Record<Host, string>;
const expected = {} as Record<Host, Awaited<ReturnType<typeof digestOf>>>;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'tf-cluster-'));
  const all = await makeTestRings(dir, { bulk: { a: BULK_A, b: BULK_B } });
  rings = { a: all.a, b: all.b };
  for (const h of HOSTS) {
    // What the agent sends is what its own query engine writes for this ring and query.
    expected[h] = await digestOf(Readable.from([await expectedPcap(rings[h], QUERY)]));
  }
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * How much of host a's PCAP the dispatcher has received. Its packets.pcap is uploaded while it is
 * received (a follower of the spool file that ends only when the file is complete), so once part of
 * it is in, the upload is under way and cannot have finished. (The upload and the merge read the
 * file with positional reads, which leave a descriptor's offset at 0: it cannot be watched there.)
 */
function receivedBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** Every file under the spool with its size: what the dispatcher holds for the store. */
function spoolSnapshot(spoolDir: string): Record<string, number> {
  const out: Record<string, number> = {};
  if (!existsSync(spoolDir)) return out;
  for (const t of readdirSync(spoolDir)) {
    const td = join(spoolDir, t);
    try {
      for (const f of readdirSync(td)) out[`${t}/${f}`] = statSync(join(td, f)).size;
    } catch {
      /* removed meanwhile */
    }
  }
  return out;
}

/** Digest, length and packet count of a PCAP download (which fails itself when it stops short of the stored length). */
async function digestOf(s: Readable): Promise<{ sha256: string; bytes: number; packets: number }> {
  const h = createHash('sha256');
  const parser = new CaptureStreamParser('download');
  let bytes = 0;
  let packets = 0;
  for await (const c of s) {
    h.update(c as Buffer);
    bytes += (c as Buffer).length;
    packets += parser.push(c as Buffer).length;
  }
  assert.equal(parser.end().tornBytes, 0, 'a whole PCAP');
  return { sha256: h.digest('hex'), bytes, packets };
}

/** The trace as each node serves it, read with the dispatcher's own store code. */
async function checkEveryNode(c: CouchCluster, db: string, traceId: string): Promise<void> {
  let mergedSha: string | null = null;
  for (const node of c.nodes) {
    const store = await TraceStore.open({ url: node.url, db });
    const at = `through node ${node.index}`;
    const trace = await store.getTrace(traceId);
    assert.equal(trace?.state, 'done', `the trace doc ${at}`);
    assert.deepEqual(trace?.merged, { packets: expected.a.packets + expected.b.packets, bytes: trace?.merged?.bytes, duplicates: 0 }, `merged figures ${at}`);
    for (const h of HOSTS) {
      const r = await store.getResult(traceId, h);
      assert.equal(r?.state, 'done', `host ${h}'s result doc ${at}`);
      assert.equal(r?.packets, expected[h].packets, `host ${h}'s packets ${at}`);
      const got = await digestOf(store.getAttachmentStream(resultDocId(traceId, h), HOST_ATTACHMENT));
      assert.deepEqual(got, expected[h], `host ${h}'s packets.pcap ${at} is what its agent's query wrote`);
    }
    const merged = await digestOf(store.getAttachmentStream(traceDocId(traceId), MERGED_ATTACHMENT));
    assert.equal(merged.packets, expected.a.packets + expected.b.packets, `merged.pcap's packets ${at}`);
    mergedSha ??= merged.sha256;
    assert.equal(merged.sha256, mergedSha, `merged.pcap ${at} is the same bytes as through node 1`);
  }
}

async function killMidUpload(t: TestContext, c: CouchCluster, victim: number): Promise<void> {
  const d: TestDispatcher = await startTestDispatcher(c.url);
  const agents: TestAgent[] = [];
  let down = false;
  try {
    for (const name of HOSTS) {
      agents.push(startTestAgent({ url: d.url, token: AGENT_TOKEN, name, ringDir: rings[name] }));
      await until(async () => (await d.orchestrator.agents()).some((a) => a.name === name && a.connected), `agent ${name} connected`);
    }
    const updates: Array<TraceUpdate & { seenAt: number }> = [];
    d.orchestrator.onUpdate((u) => updates.push({ ...u, seenAt: Date.now() }));
    const final = (id: string) => updates.find((u) => u.traceId === id && u.host === null && u.state !== 'running');
    const spoolDir = realpathSync(join(d.dataDir, 'spool'));
    const metrics = d.orchestrator.metrics;

    const t0 = Date.now();
    const view = await d.orchestrator.start(QUERY, 'ada');
    const pcapA = join(spoolDir, view.id, 'a.pcap');
    let offset = 0;
    await until(
      () => {
        assert.equal(final(view.id), undefined, `the trace finished before ${KILL_AT * 100}% of a's packets.pcap was received: make BULK_A bigger`);
        offset = receivedBytes(pcapA);
        return offset >= KILL_AT * expected.a.bytes;
      },
      "host a's upload into the store under way",
      120_000,
    );
    const errorsBefore = await metricValue(metrics.errors, { kind: 'store' });
    const killedPid = await c.kill(victim);
    down = true;
    const killedAt = Date.now();
    const atKill = spoolSnapshot(spoolDir);
    const figures: Record<string, unknown> = {
      victim: `node ${victim}${victim === 1 ? " (the dispatcher's)" : ''}`,
      pid: killedPid,
      startToKillMs: killedAt - t0,
      receivedMbAtKill: +(offset / MB).toFixed(1),
      hostAMb: +(expected.a.bytes / MB).toFixed(1),
      spoolAtKill: atKill,
    };

    let restartMs: number;
    if (victim === 1) {
      // Its store is gone: the writes fail, the spool keeps them, nothing finishes.
      await until(async () => (await metricValue(metrics.errors, { kind: 'store' })) > errorsBefore && (await metricValue(metrics.pendingStores)) > 0, 'a store write failing while its node is down', 60_000);
      await new Promise((r) => setTimeout(r, 3000));
      const held = spoolSnapshot(spoolDir);
      assert.equal(final(view.id), undefined, 'the trace cannot finish while its store is down');
      assert.equal(held[`${view.id}/a.pcap`], expected.a.bytes, "the spool holds host a's whole result");
      // Its upload follows its arrival, so a may be wholly stored before the kill (then the merge waits for the store).
      assert.ok(`${view.id}/a.final.json` in held || (`${view.id}/a.stored` in held && `${view.id}/merged.pending` in held), "and its final state still to be stored, or the merge");
      figures.spoolWhileDown = held;
      figures.pendingStoresWhileDown = await metricValue(metrics.pendingStores);
      figures.downMs = Date.now() - killedAt;
      restartMs = await c.restart();
      down = false;
      const backAt = Date.now();
      await until(() => final(view.id) !== undefined, 'the trace to finish once the node is back', 180_000);
      figures.restartMs = restartMs;
      figures.backToFinalMs = final(view.id)!.seenAt - backAt;
    } else {
      // The other two nodes still make a write quorum: the trace finishes while this one is down.
      await until(() => final(view.id) !== undefined, 'the trace to finish with a node down', 180_000);
      figures.killToFinalMs = final(view.id)!.seenAt - killedAt;
      figures.downMs = Date.now() - killedAt;
      restartMs = await c.restart();
      down = false;
      figures.restartMs = restartMs;
    }
    figures.startToFinalMs = final(view.id)!.seenAt - t0;
    figures.storeWriteFailures = (await metricValue(metrics.errors, { kind: 'store' })) - errorsBefore;
    figures.loadavg1 = +loadavg()[0].toFixed(2);

    assert.equal(final(view.id)!.state, 'done');
    // The final update is published before the spool is cleared, and the clearing runs off the event loop (rename, then
    // unlink: spool.removeTrace): the spool empties just after it, not with it.
    await until(() => Object.keys(spoolSnapshot(spoolDir)).length === 0, 'the spool to be emptied once the trace is final', 30_000).catch(() => undefined);
    assert.deepEqual(spoolSnapshot(spoolDir), {}, 'the spool is empty once the store has everything');
    assert.equal(await metricValue(metrics.pendingStores), 0);
    await checkEveryNode(c, d.db, view.id);
    t.diagnostic(JSON.stringify(figures));
  } finally {
    for (const a of agents) a.close();
    if (down) await c.restart();
    await d.stop();
  }
}

test('CouchDB cluster: a node other than the dispatcher\'s SIGKILLed mid-upload and restarted: the quorum takes the writes, nothing is lost, every node serves it all', { skip, timeout: 360_000 }, async (t) => {
  await killMidUpload(t, cluster as CouchCluster, 3);
});

test("CouchDB cluster: the dispatcher's own node SIGKILLed mid-upload and restarted: the spool holds the result until it is back, nothing is lost, every node serves it all", { skip, timeout: 360_000 }, async (t) => {
  await killMidUpload(t, cluster as CouchCluster, 1);
});
