import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { pcapHeaderBytes } from '../../shared/pcap/pcap';
import { encodePcapRecord } from '../../shared/pcap/writer';
import { Spool } from './spool';

const dir = mkdtempSync(join(tmpdir(), 'tf-spool-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function put(spool: Spool, host: string, bytes: Buffer): string {
  const path = spool.pcapPath('20261123T000000-abcdef', host);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, bytes);
  return path;
}

test('trimPcap keeps the whole records of a cut-short PCAP and says what it cut', async () => {
  const spool = new Spool(dir);
  const records = [1, 2, 3].map((i) => Buffer.concat(encodePcapRecord({ tsSec: 1_795_000_000 + i, tsNsec: i, origLen: 100 * i, data: Buffer.alloc(100 * i, i) }, true)));
  const whole = Buffer.concat([pcapHeaderBytes({ linkType: 1, nanos: true }), ...records]);
  const torn = records[2].length - 7;

  const path = put(spool, 'a', whole.subarray(0, whole.length - 7));
  assert.deepEqual(await spool.trimPcap('20261123T000000-abcdef', 'a'), { bytes: whole.length - records[2].length, packets: 2, cut: torn });
  assert.deepEqual(readFileSync(path), whole.subarray(0, whole.length - records[2].length), 'cut back to the end of the second record');

  put(spool, 'b', whole);
  assert.deepEqual(await spool.trimPcap('20261123T000000-abcdef', 'b'), { bytes: whole.length, packets: 3, cut: 0 }, 'a whole file is left alone');

  const headerOnly = put(spool, 'c', whole.subarray(0, 10));
  assert.deepEqual(await spool.trimPcap('20261123T000000-abcdef', 'c'), { bytes: 0, packets: 0, cut: 10 }, 'not even a file header: emptied');
  assert.equal(statSync(headerOnly).size, 0);

  put(spool, 'd', Buffer.alloc(0));
  assert.deepEqual(await spool.trimPcap('20261123T000000-abcdef', 'd'), { bytes: 0, packets: 0, cut: 0 });
  assert.deepEqual(await spool.trimPcap('20261123T000000-abcdef', 'never-sent'), { bytes: 0, packets: 0, cut: 0 });
});

test("removeTrace empties a trace's directory of many files, leaves other traces, and a removal cut short is finished by the next scan", async () => {
  const own = mkdtempSync(join(dir, 'rm-'));
  const spool = new Spool(own);
  const id = '20261123T000000-aaaaaa';
  const other = '20261123T000000-bbbbbb';
  spool.markOwned({ traceId: id, hosts: [], createdAt: '2026-11-23T00:00:00.000Z' });
  spool.markOwned({ traceId: other, hosts: [], createdAt: '2026-11-23T00:00:00.000Z' });
  for (let i = 0; i < 300; i++) writeFileSync(spool.pcapPath(id, `h${i}`), Buffer.alloc(i));
  await spool.removeTrace(id);
  assert.deepEqual(readdirSync(own), [other]);
  await spool.removeTrace(id);
  assert.deepEqual(readdirSync(own), [other], 'a trace already gone is no error');

  // What a restart finds when the dispatcher stopped mid-removal: not a trace, and removed.
  mkdirSync(join(own, `${id}~removing`));
  writeFileSync(join(own, `${id}~removing`, 'h1.pcap'), 'x');
  assert.deepEqual(spool.scan().map((t) => t.traceId), [other]);
  assert.equal(existsSync(join(own, `${id}~removing`)), false);

  // And one left beside the trace's directory (the same trace removed again, after a restart made it anew): both go.
  mkdirSync(join(own, `${id}~removing`));
  writeFileSync(join(own, `${id}~removing`, 'h1.pcap'), 'x');
  spool.markOwned({ traceId: id, hosts: [], createdAt: '2026-11-23T00:00:00.000Z' });
  await spool.removeTrace(id);
  assert.deepEqual(readdirSync(own), [other]);
});

test('markStored: the owner keeps the PCAP as the merge input and its final state becomes the mark; a peer keeps nothing; a restart finds nothing to store again', async () => {
  const own = mkdtempSync(join(dir, 'stored-'));
  const spool = new Spool(own);
  const id = '20261123T000000-cccccc';
  const final = { state: 'done' as const, packets: 1, bytes: 4, truncated: false, messages: [], hasPcap: true };
  spool.markOwned({ traceId: id, hosts: ['kept', 'peer', 'nofinal', 'nopcap'], createdAt: '2026-11-23T00:00:00.000Z' });
  for (const h of ['kept', 'peer', 'nofinal']) await spool.appendPcap(id, h, Buffer.from('pcap'), true);
  for (const h of ['kept', 'peer', 'nopcap']) await spool.writeFinal(id, h, h === 'nopcap' ? { ...final, bytes: 0, hasPcap: false } : final);
  assert.deepEqual(spool.scan()[0].finals.map((f) => f.host).sort(), ['kept', 'nopcap', 'peer']);
  assert.deepEqual(spool.scan()[0].unfinished, ['nofinal']);

  await spool.markStored(id, 'kept', true);
  await spool.markStored(id, 'peer', false);
  // Its final state was never spooled (a full disk): marked all the same.
  await spool.markStored(id, 'nofinal', true);
  await spool.markStored(id, 'nopcap', true);
  assert.equal(spool.storedPcap(id, 'kept'), spool.pcapPath(id, 'kept'));
  assert.equal(spool.storedPcap(id, 'nofinal'), spool.pcapPath(id, 'nofinal'));
  assert.equal(spool.storedPcap(id, 'peer'), null);
  assert.equal(spool.storedPcap(id, 'nopcap'), null);
  assert.deepEqual(readdirSync(spool.traceDir(id)).sort(), ['kept.pcap', 'kept.stored', 'nofinal.pcap', 'nofinal.stored', 'trace.json']);
  assert.deepEqual(JSON.parse(readFileSync(join(spool.traceDir(id), 'kept.stored'), 'utf8')), final);
  const [t] = spool.scan();
  assert.deepEqual([t.finals, t.unfinished], [[], []]);
});
