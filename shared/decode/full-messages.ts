import type { Readable } from 'node:stream';
import { CaptureStreamReader } from '../pcap/stream-reader';
import { endpointText, type MessageSummary } from '../query/query';
import { fullSipMessage, type FullMessage } from '../sip/message';
import { Dissector } from './dissector';
import { IPPROTO } from './ip';

/** What finds a summarised message in a capture: the time of its last packet, its ends and transport. */
export type MessageKey = Pick<MessageSummary, 'ts' | 'src' | 'dst' | 'transport'>;

export interface FullMessagesResult {
  /** Parallel to the keys asked for; null where the capture holds no such message. */
  messages: Array<FullMessage | null>;
  /** Packets read before every message was found or the capture went past the last one. */
  packets: number;
}

/**
 * Records written out of time order by the merge (an input that went back
 * further than its read-ahead) may come this long after the last message
 * asked for; reading stops once the capture is past it by more.
 */
const LATE_SLACK_NS = 2_000_000_000n;

function nanos(ts: string): bigint | null {
  const m = /^(\d{1,20})(?:\.(\d{1,9}))?$/.exec(ts);
  return m ? BigInt(m[1]) * 1_000_000_000n + BigInt((m[2] ?? '').padEnd(9, '0')) : null;
}

/**
 * Finds the given messages in a capture stream (a trace's merged PCAP, a
 * query's result) and returns each whole, reassembled by the same dissector
 * the index uses, so a message is exactly what the index summarised. The
 * stream is read once, record by record, and left as soon as every message
 * is found or the capture is past the last one: memory is one record and
 * the reassembly state, whatever the capture's size. A message is matched on
 * its ends, its transport and the timestamp of its last packet: exactly, or
 * to the microsecond when the capture holds microseconds (a merge of
 * microsecond captures). Copies of one message seen by two hosts have their
 * own timestamps, so each host's summary gets its own copy. With `drain`
 * the rest of the stream is read and dropped instead of the stream being
 * destroyed (its writer also feeds a file).
 */
export async function readFullMessages(stream: Readable, keys: MessageKey[], name?: string, opts: { drain?: boolean } = {}): Promise<FullMessagesResult> {
  const messages: Array<FullMessage | null> = keys.map(() => null);
  const byEnds = new Map<string, Array<{ i: number; ns: bigint }>>();
  let last = -1n;
  for (const [i, k] of keys.entries()) {
    const ns = nanos(k.ts);
    if (ns === null) continue;
    const key = `${k.src}>${k.dst}/${k.transport}`;
    let list = byEnds.get(key);
    if (!list) byEnds.set(key, (list = []));
    list.push({ i, ns });
    if (ns > last) last = ns;
  }
  let remaining = [...byEnds.values()].reduce((n, l) => n + l.length, 0);
  const reader = new CaptureStreamReader(stream, name);
  const dissector = new Dissector();
  let packets = 0;
  try {
    while (remaining > 0) {
      const rec = await reader.next();
      if (rec === null) break;
      packets++;
      const recNs = BigInt(rec.tsSec) * 1_000_000_000n + BigInt(rec.tsNsec);
      if (recNs > last + LATE_SLACK_NS) break;
      const r = dissector.push(packets, rec.linkType, rec.data, rec.tsSec, rec.capLen < rec.origLen);
      for (const m of r.messages) {
        const list = byEnds.get(`${endpointText(m.src, m.sport)}>${endpointText(m.dst, m.dport)}/${m.proto === IPPROTO.TCP ? 'tcp' : 'udp'}`);
        if (!list) continue;
        let hit = list.findIndex((c) => c.ns === recNs);
        if (hit < 0 && !rec.nanos) hit = list.findIndex((c) => c.ns / 1000n === recNs / 1000n);
        if (hit < 0) continue;
        const { i } = list[hit];
        list.splice(hit, 1);
        remaining--;
        messages[i] = fullSipMessage(m.bytes, m.truncated);
      }
    }
    if (opts.drain) while ((await reader.next()) !== null);
  } finally {
    reader.release();
  }
  return { messages, packets };
}
