/**
 * The SIP methods registered with IANA (RFC 3261 and its extensions). A
 * method name is hostile input: counters and statistics keyed by it use
 * these and fold anything else into "other", so a sender cannot grow a
 * label set or a map without bound.
 */
export const SIP_METHODS = ['INVITE', 'ACK', 'BYE', 'CANCEL', 'OPTIONS', 'REGISTER', 'PRACK', 'SUBSCRIBE', 'NOTIFY', 'PUBLISH', 'INFO', 'REFER', 'MESSAGE', 'UPDATE'] as const;
export type SipMethodLabel = (typeof SIP_METHODS)[number] | 'other';

const KNOWN = new Set<string>(SIP_METHODS);

export function methodLabel(method: string): SipMethodLabel {
  return KNOWN.has(method) ? (method as SipMethodLabel) : 'other';
}

/** "1xx".."6xx"; a status outside 100-699 (the parser never yields one) is "other". */
export function statusClass(status: number): string {
  return status >= 100 && status <= 699 ? `${Math.floor(status / 100)}xx` : 'other';
}
