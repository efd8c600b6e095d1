import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../support/proc';
import { FleetBed, fleetSkipReason } from '../support/fleet';
import { runSippCalls } from '../support/sipp';
import { sameRecords, tsharkPackets, tsharkSelect } from '../support/tshark';
import { readRecords } from '../support/pcapfile';
import type { ResultDoc, TraceDoc } from '../../dispatcher/store/layout';

/*
 * The fleet end to end: a dispatcher and three agents, each in a network
 * namespace of its own, real sipp calls crossing agents a and b, unrelated
 * calls everywhere, and a trace by number from the CLI. Every byte the
 * fleet hands out is checked against an independent source: the store's
 * documents, each agent's own ring read locally, tshark and mergecap.
 */

const skip = fleetSkipReason();

const NUMBER = '+15550100123';
const TRACED = NUMBER.slice(-7);

const show = (x: unknown) => String(JSON.stringify(x, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))).slice(0, 1500);

async function assertSame(what: string, a: string, b: string, mode: 'ordered' | 'set') {
  const cmp = await sameRecords(a, b, mode);
  assert.ok(cmp.same, `${what}: ${cmp.countA} vs ${cmp.countB} records; first mismatch ${show(cmp.firstMismatch)}; only in first ${show(cmp.onlyInA)}; only in second ${show(cmp.onlyInB)}`);
  return cmp.countA;
}

function assertTimeOrdered(what: string, file: string) {
  const recs = readRecords(file);
  for (let i = 1; i < recs.length; i++) assert.ok(recs[i].epochNs >= recs[i - 1].epochNs, `${what}: not time-ordered at record ${i + 1}`);
}

test('fleet: a trace by number across three agents, stored, merged and downloaded exactly', { skip, timeout: 180_000 }, async (t) => {
  const started = Date.now();
  const phase = (name: string) => t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s: ${name}`);
  const bed = await FleetBed.create(t, { agents: ['a', 'b', 'c'], others: ['d'] });
  const { net, dir } = bed;
  await bed.startDispatcher();
  await bed.addTracer();
  for (const h of ['a', 'b', 'c']) await bed.startAgent(h);
  await bed.waitAgentsConnected(['a', 'b', 'c'], 20_000);

  // The traced calls cross a and b; other calls on a/b and on c/d must stay out of the result.
  const [traced, otherAB, otherCD] = await Promise.all([
    runSippCalls({
      uacNs: net.ns('a'), uasNs: net.ns('b'), transport: 'udp',
      uacHost: { addr: net.addr('a'), port: 5060 }, uasHost: { addr: net.addr('b'), port: 5060 },
      calls: 3, number: NUMBER, fromUser: '+15550100999',
    }),
    runSippCalls({
      uacNs: net.ns('a'), uasNs: net.ns('b'), transport: 'udp',
      uacHost: { addr: net.addr('a'), port: 5062 }, uasHost: { addr: net.addr('b'), port: 5062 },
      calls: 2, number: '+15550166001', fromUser: '+15550166002',
    }),
    runSippCalls({
      uacNs: net.ns('c'), uasNs: net.ns('d'), transport: 'udp',
      uacHost: { addr: net.addr('c'), port: 5060 }, uasHost: { addr: net.addr('d'), port: 5060 },
      calls: 3, number: '+15550177001', fromUser: '+15550177002',
    }),
  ]);
  for (const [name, r] of [['traced', traced], ['a-b unrelated', otherAB], ['c-d unrelated', otherCD]] as const) {
    assert.equal(r.successful, r.callIds.length, `${name} sipp calls failed: ${r.errors}`);
  }

  phase('setup and calls done');
  const merged = join(dir, 'merged.pcap');
  const tr = await bed.tracefleet(['trace', '--number', TRACED, '-o', merged]);
  assert.equal(tr.code, 0, `tracefleet trace exited ${tr.code}; stderr: ${tr.stderr}\n${bed.logs()}`);

  phase('trace done');
  const list = await bed.api<{ traces: Array<{ id: string }> }>('GET', '/api/traces?limit=10');
  assert.equal(list.status, 200, show(list.json));
  assert.equal(list.json.traces.length, 1, `expected one trace, got ${show(list.json)}`);
  const id = list.json.traces[0].id;

  // ---- the store, read directly ------------------------------------------------
  const tdoc = await bed.storeDoc<TraceDoc>(`trace:${id}`);
  assert.ok(tdoc, `no trace:${id} in the store`);
  assert.equal(tdoc.state, 'done');
  t.diagnostic(`trace ${id}: created ${tdoc.createdAt}, finished ${tdoc.finishedAt}`);
  assert.deepEqual([...tdoc.hosts].sort(), ['a', 'b', 'c']);
  assert.ok(tdoc._attachments?.['merged.pcap'], 'trace doc has no merged.pcap');
  assert.equal(tdoc.merged?.duplicates, 0, `merge dropped duplicates: ${show(tdoc.merged)}`);

  const stored: Record<string, string> = {};
  const counts: Record<string, number> = {};
  for (const h of ['a', 'b', 'c']) {
    const r = await bed.storeDoc<ResultDoc>(`trace:${id}:${h}`);
    assert.ok(r, `no trace:${id}:${h} in the store`);
    assert.equal(r.state, 'done', `host ${h}: ${show(r)}`);
    const file = join(dir, `stored-${h}.pcap`);
    const has = await bed.storeAttachment(`trace:${id}:${h}`, 'packets.pcap', file);
    if (h === 'c') {
      assert.equal(r.packets, 0, `c selected packets it should not have: ${show(r)}`);
      if (has) assert.equal(readRecords(file).length, 0, "c's stored PCAP holds packets");
      continue;
    }
    assert.ok(has, `host ${h} has no packets.pcap`);
    assert.ok(r.packets >= 7 * traced.callIds.length, `host ${h}: only ${r.packets} packets for ${traced.callIds.length} calls`);
    assert.equal(r.bytes, readFileSync(file).length, `host ${h}: doc bytes vs attachment length`);
    counts[h] = (await tsharkPackets(file)).length;
    assert.equal(counts[h], r.packets, `host ${h}: doc packets vs tshark's count of the attachment`);
    stored[h] = file;
  }

  phase('store read');
  // ---- each host's packets are what its own ring answers locally ---------------
  for (const h of ['a', 'b']) {
    const local = join(dir, `local-${h}.pcap`);
    const q = await bed.tracefleet(['query', '--ring', bed.ring(h), '--number', TRACED, '-o', local], { host: h });
    assert.equal(q.code, 0, q.stderr);
    await assertSame(`host ${h}: stored result vs local query of its ring`, stored[h], local, 'ordered');
  }
  const qc = await bed.tracefleet(['query', '--ring', bed.ring('c'), '--number', TRACED, '--json'], { host: 'c' });
  assert.equal(qc.code, 0, qc.stderr);
  assert.equal(JSON.parse(qc.stdout).packets, 0, "c's ring answers the number locally");
  const qcOther = await bed.tracefleet(['query', '--ring', bed.ring('c'), '--number', '0177001', '--json'], { host: 'c' });
  assert.ok(JSON.parse(qcOther.stdout).packets >= 7 * otherCD.callIds.length, 'c did not capture its own calls: the zero above proves nothing');

  phase('local queries compared');
  // ---- merged = the union of the hosts' packets, time-ordered --------------------
  const storedMerged = join(dir, 'stored-merged.pcap');
  assert.ok(await bed.storeAttachment(`trace:${id}`, 'merged.pcap', storedMerged));
  assert.deepEqual(readFileSync(merged), readFileSync(storedMerged), "the CLI's -o file differs from the stored merged.pcap");
  const union = join(dir, 'union.pcapng');
  await run('mergecap', ['-w', union, stored.a, stored.b]);
  const n = await assertSame('merged.pcap vs mergecap of the hosts', storedMerged, union, 'set');
  assert.equal(n, counts.a + counts.b);
  assertTimeOrdered('merged.pcap', storedMerged);
  for (const cid of traced.callIds) {
    const f = await tsharkSelect([storedMerged], `sip.Call-ID == "${cid}"`);
    assert.ok(f.length >= 14, `call ${cid}: only ${f.length} packets in merged.pcap (7+ seen on each of a and b)`);
  }
  const strangers = [...otherAB.callIds, ...otherCD.callIds].map((c) => `sip.Call-ID == "${c}"`).join(' || ');
  assert.equal((await tsharkSelect([storedMerged], strangers)).length, 0, 'unrelated calls in merged.pcap');

  phase('merged compared');
  // ---- REST downloads are the stored bytes -------------------------------------
  const restMerged = join(dir, 'rest-merged.pcap');
  assert.equal(await bed.apiDownload(`/api/traces/${id}/merged.pcap`, restMerged), 200);
  assert.deepEqual(readFileSync(restMerged), readFileSync(storedMerged), 'REST merged.pcap differs from the store');
  for (const h of ['a', 'b']) {
    const f = join(dir, `rest-${h}.pcap`);
    assert.equal(await bed.apiDownload(`/api/traces/${id}/hosts/${h}/packets.pcap`, f), 200);
    assert.deepEqual(readFileSync(f), readFileSync(stored[h]), `REST packets.pcap of ${h} differs from the store`);
  }

  phase('REST compared');
  // ---- trace.tar ----------------------------------------------------------------
  const tarFile = join(dir, 'trace.tar');
  assert.equal(await bed.apiDownload(`/api/traces/${id}/trace.tar`, tarFile), 200);
  const listing = (await run('tar', ['-tf', tarFile])).stdout.split('\n').filter(Boolean).sort();
  const top = `trace-${id}`;
  for (const want of [`${top}/summary.json`, `${top}/merged.pcap`, `${top}/hosts/a.pcap`, `${top}/hosts/b.pcap`]) {
    assert.ok(listing.includes(want), `trace.tar lacks ${want}: ${listing.join(', ')}`);
  }
  const x = join(dir, 'untar');
  mkdirSync(x);
  await run('tar', ['-xf', tarFile, '-C', x]);
  assert.deepEqual(readFileSync(join(x, top, 'merged.pcap')), readFileSync(storedMerged), 'tar merged.pcap differs from the store');
  for (const h of ['a', 'b']) assert.deepEqual(readFileSync(join(x, top, 'hosts', `${h}.pcap`)), readFileSync(stored[h]), `tar ${h}.pcap differs from the store`);
  const summary = JSON.parse(readFileSync(join(x, top, 'summary.json'), 'utf8'));
  assert.equal(summary.trace.id, id);
  assert.equal(summary.trace.state, 'done');
  assert.deepEqual(summary.trace.hosts.map((h: { host: string; state: string }) => `${h.host}:${h.state}`).sort(), ['a:done', 'b:done', 'c:done']);

  phase('tar compared');
  // ---- -o - into a pipe ---------------------------------------------------------
  const piped = join(dir, 'piped.pcapng');
  const p = await bed.shell(`$TF trace --number ${TRACED} -o - | tshark -r - -w ${piped}`);
  assert.equal(p.code, 0, `pipeline exited ${p.code}; stderr: ${p.stderr}\n${bed.logs()}`);
  await assertSame('trace -o - | tshark -r - vs the first trace', piped, storedMerged, 'set');

  t.diagnostic(`fleet e2e took ${((Date.now() - started) / 1000).toFixed(1)} s; merged ${n} packets (a ${counts.a}, b ${counts.b})`);
});
