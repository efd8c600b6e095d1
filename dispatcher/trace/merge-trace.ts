import { createReadStream } from 'node:fs';
import { PassThrough } from 'node:stream';
import { mergeCaptures } from '../merge/merge';
import { HOST_ATTACHMENT, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, ResultDoc, resultDocId, traceDocId } from '../store/layout';
import { StoreError, TraceStore } from '../store/store';
import type { Spool } from './spool';

/**
 * Merges the hosts' PCAPs of a finished trace into its merged.pcap in the
 * store, streaming: the hosts this dispatcher ran are read from its spool,
 * only peers' hosts come back from the store.
 */
export async function mergeTrace(store: TraceStore, spool: Spool, traceId: string, results: ResultDoc[]): ReturnType<typeof mergeCaptures> {
  let storeFailed: Error | null = null;
  const inputs = results
    .filter((r) => r._attachments?.[HOST_ATTACHMENT])
    .map((r) => {
      const local = spool.storedPcap(traceId, r.host);
      const stream = local ? createReadStream(local) : store.getAttachmentStream(resultDocId(traceId, r.host), HOST_ATTACHMENT);
      stream.once('error', (e: Error) => {
        if (e instanceof StoreError) storeFailed ??= e;
      });
      return { host: r.host, stream };
    });
  const merged = new PassThrough();
  const merging = mergeCaptures(inputs, merged).catch((e: Error) => {
    merged.destroy(e);
    throw e;
  });
  try {
    const [m] = await Promise.all([merging, store.putAttachmentStream(traceDocId(traceId), MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, merged)]);
    return m;
  } catch (e) {
    // An input read back from a store that went away is the store's failure: try the merge again later.
    if (storeFailed) throw storeFailed;
    throw e;
  }
}
