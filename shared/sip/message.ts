import { z } from 'zod';
import { parseSip } from './parse';

/*
 * The whole of one SIP message as an engineer reads it: start line, every
 * header (name as written, value unfolded), the body, and the exact bytes.
 * Made from a payload the dissector reassembled; the parsing is parseSip's.
 * Every string here is untrusted text: the page sets it with textContent,
 * the CLI prints it through safeText.
 */

/**
 * Bounds on what one message costs on the wire and in a page. A UDP message
 * is at most 64 KiB; a TCP one may be longer (a body of megabytes): its first
 * MAX_RAW_BYTES are kept and `cut` says so.
 */
export const FULL_MESSAGE_LIMITS = {
  rawBytes: 256 * 1024,
  headers: 1000,
  valueChars: 16 * 1024,
} as const;

export const fullMessage = z.object({
  startLine: z.string(),
  headers: z.array(z.object({ name: z.string(), value: z.string() })),
  /** The body as text (UTF-8 when it is valid UTF-8, else Latin-1: one character per byte). */
  body: z.string(),
  /** The message's bytes as they crossed the wire, base64 (the first rawBytes of them when `cut`). */
  raw: z.string(),
  /** Length of the whole message in bytes, before any cut. */
  length: z.number().int().nonnegative(),
  /** A limit of FULL_MESSAGE_LIMITS left something out (raw bytes, headers, or characters of a value). */
  cut: z.boolean(),
  /** The capture's snap length cut a packet of it: the message is what was captured. */
  truncated: z.boolean(),
});
export type FullMessage = z.infer<typeof fullMessage>;

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function bodyText(b: Buffer): string {
  try {
    return UTF8.decode(b);
  } catch {
    return b.toString('latin1');
  }
}

/** The full message of a reassembled SIP payload; null when the bytes are not SIP. */
export function fullSipMessage(bytes: Buffer, truncated = false): FullMessage | null {
  const length = bytes.length;
  const kept = length > FULL_MESSAGE_LIMITS.rawBytes ? bytes.subarray(0, FULL_MESSAGE_LIMITS.rawBytes) : bytes;
  let cut = kept.length < length;
  const sip = parseSip(kept, { asWritten: true, truncated: truncated || cut });
  if (!sip || !sip.asWritten) return null;
  const names = sip.asWritten.names;
  const n = Math.min(sip.headers.length, FULL_MESSAGE_LIMITS.headers);
  if (n < sip.headers.length) cut = true;
  const headers: FullMessage['headers'] = [];
  for (let i = 0; i < n; i++) {
    let value = sip.headers[i][1];
    if (value.length > FULL_MESSAGE_LIMITS.valueChars) {
      value = value.slice(0, FULL_MESSAGE_LIMITS.valueChars);
      cut = true;
    }
    headers.push({ name: names[i], value });
  }
  return {
    startLine: sip.asWritten.startLine,
    headers,
    body: bodyText(sip.body),
    raw: kept.toString('base64'),
    length,
    cut,
    truncated,
  };
}
