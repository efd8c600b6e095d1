/**
 * The SIP methods registered with IANA (RFC 3261 and its extensions). A
 * method name is hostile input: counters and statistics keyed by it use
 * these and fold anything else into "other", so a sender cannot grow a
 * label set or a map without bound.
 */
export const SIP_METHODS = ['INVITE', 'ACK', 'BYE', 'CANCEL', 'OPTIONS', 'REGISTER', 'PRACK', 'SUBSCRIBE', 'NOTIFY', 'PUBLISH', 'INFO', 'REFER', 'MESSAGE', 'UPDATE'] as const;
export type SipMethodLabel = (typeof SIP_METHODS)[number] | 'other';

/**
 * To the label itself, not merely whether it is one: the parser's method is
 * a string of its own per message, and counting under the shared constant
 * keeps the counters' property lookups from hashing and interning it again.
 */
const KNOWN = new Map<string, SipMethodLabel>(SIP_METHODS.map((m) => [m, m]));

export function methodLabel(method: string): SipMethodLabel {
  return KNOWN.get(method) ?? 'other';
}

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', '6xx'];

/** "1xx".."6xx"; a status outside 100-699 (the parser never yields one) is "other". Made once: it is asked per response indexed. */
export function statusClass(status: number): string {
  return status >= 100 && status <= 699 ? STATUS_CLASSES[Math.floor(status / 100) - 1] : 'other';
}
