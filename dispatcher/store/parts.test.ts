import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HOST_ATTACHMENT, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, resultDocId, TraceDoc, traceDocId } from './layout';
import { byteRange, mergedPcap } from './parts';

const ID = '20261205T010000-abcdef';

function trace(extra: Partial<TraceDoc>): TraceDoc {
  return { _id: traceDocId(ID), type: 'trace', id: ID, request: {}, user: 'u', createdAt: '2026-12-05T01:00:00.000Z', hosts: ['a'], state: 'done', ...extra } as TraceDoc;
}

const ref = (doc: string) => ({ doc, name: HOST_ATTACHMENT, content_type: PCAP_CONTENT_TYPE, length: 100, digest: 'md5-x' });

test('mergedPcap: the trace’s own merged.pcap wins; else the host attachment it names; nothing else', () => {
  assert.equal(mergedPcap(trace({})), null);
  const named = mergedPcap(trace({ mergedAttachment: ref(resultDocId(ID, 'a')) }));
  assert.deepEqual(named, { docId: resultDocId(ID, 'a'), name: HOST_ATTACHMENT, stub: { content_type: PCAP_CONTENT_TYPE, length: 100, digest: 'md5-x' } });
  const own = mergedPcap(trace({ mergedAttachment: ref(resultDocId(ID, 'a')), _attachments: { [MERGED_ATTACHMENT]: { content_type: PCAP_CONTENT_TYPE, length: 7, digest: 'md5-y', stub: true } } } as Partial<TraceDoc>));
  assert.equal(own?.docId, traceDocId(ID));
  assert.equal(own?.name, MERGED_ATTACHMENT);
  // A reference to another trace's result (a document edited by hand) is not served.
  assert.equal(mergedPcap(trace({ mergedAttachment: ref(resultDocId('20261205T010000-000000', 'a')) })), null);
  assert.equal(mergedPcap(trace({ mergedAttachment: ref('users:admin') })), null);
});

test('byteRange: one range of bytes as RFC 9110 reads it, cut to the length; unsatisfiable past the end; else the whole', () => {
  assert.equal(byteRange(undefined, 100), null);
  assert.deepEqual(byteRange('bytes=0-9', 100), { start: 0, end: 9 });
  assert.deepEqual(byteRange('bytes=90-', 100), { start: 90, end: 99 });
  assert.deepEqual(byteRange('bytes=90-200', 100), { start: 90, end: 99 });
  assert.deepEqual(byteRange('bytes=-10', 100), { start: 90, end: 99 });
  assert.deepEqual(byteRange('bytes=-1000', 100), { start: 0, end: 99 });
  assert.deepEqual(byteRange(' Bytes = 5 - 5 ', 100), { start: 5, end: 5 });
  assert.equal(byteRange('bytes=100-', 100), 'unsatisfiable');
  assert.equal(byteRange('bytes=-0', 100), 'unsatisfiable');
  assert.equal(byteRange('bytes=0-', 0), 'unsatisfiable');
  for (const ignored of ['bytes=5-1', 'bytes=-', 'bytes=0-1,3-4', 'items=0-1', 'bytes=a-b', 'bytes=1234567890123456-']) assert.equal(byteRange(ignored, 100), null, ignored);
});
