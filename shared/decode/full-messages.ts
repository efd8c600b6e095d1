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
const LATE_SLACK_SEC = 2;

/** ts as [seconds, nanoseconds], null when it is not `<seconds>[.<digits>]`. Numbers, not BigInt: this runs per record. */
function secNsec(ts: string): [number, number] | null {
  const m = /^(\d{1,15})(?:\.(\d{1,9}))?$/.exec(ts);
  return m ? [Number(m[1]), Number((m[2] ?? '').padEnd(9, '0'))] : null;
}

const exactKey = (ends: string, sec: number, nsec: number): string => `${ends}@${sec}.${nsec}`;
const microKey = (ends: string, sec: number, nsec: number): string => `${ends}@${sec}.${Math.floor(nsec / 1000)}`;

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
  // Keyed by ends and exact time, and by ends and microsecond: a lookup per message, whatever the count asked for.
  const exact = new Map<string, number[]>();
  const micros = new Map<string, number[]>();
  const add = (m: Map<string, number[]>, k: string, i: number): void => {
    const list = m.get(k);
    if (list) list.push(i);
    else m.set(k, [i]);
  };
  const taken = new Uint8Array(keys.length);
  let lastSec = -1;
  let remaining = 0;
  for (const [i, k] of keys.entries()) {
    const t = secNsec(k.ts);
    if (t === null) continue;
    const ends = `${k.src}>${k.dst}/${k.transport}`;
    add(exact, exactKey(ends, t[0], t[1]), i);
    add(micros, microKey(ends, t[0], t[1]), i);
    if (t[0] > lastSec) lastSec = t[0];
    remaining++;
  }
  /** The first of the list not yet taken, taken; -1 when none. */
  const take = (list: number[] | undefined): number => {
    if (!list) return -1;
    for (const i of list) {
      if (taken[i] === 0) {
        taken[i] = 1;
        return i;
      }
    }
    return -1;
  };
  const reader = new CaptureStreamReader(stream, name);
  const dissector = new Dissector();
  let packets = 0;
  try {
    while (remaining > 0) {
      const rec = await reader.next();
      if (rec === null) break;
      packets++;
      if (rec.tsSec > lastSec + LATE_SLACK_SEC) break;
      const r = dissector.push(packets, rec.linkType, rec.data, rec.tsSec, rec.capLen < rec.origLen);
      for (const m of r.messages) {
        const ends = `${endpointText(m.src, m.sport)}>${endpointText(m.dst, m.dport)}/${m.proto === IPPROTO.TCP ? 'tcp' : 'udp'}`;
        let i = take(exact.get(exactKey(ends, rec.tsSec, rec.tsNsec)));
        if (i < 0 && !rec.nanos) i = take(micros.get(microKey(ends, rec.tsSec, rec.tsNsec)));
        if (i < 0) continue;
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
