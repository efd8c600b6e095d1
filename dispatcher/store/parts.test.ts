import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HOST_ATTACHMENT, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, resultDocId, TraceDoc, traceDocId } from './layout';
import { mergedPcap } from './parts';

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
