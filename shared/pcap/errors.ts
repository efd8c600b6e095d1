import { TracefleetError } from '../errors/catalogue';

/**
 * A capture file (or stream) cannot be read as PCAP/PCAPNG. The message is
 * meant for the operator: it names the file, the byte offset where reading
 * went wrong when there is one, and what to do about it.
 */
export class CaptureFormatError extends TracefleetError {
  /** File name or description given by the caller, if any. */
  readonly file: string | undefined;
  /** Byte offset in the file where the problem was found, if known. */
  readonly offset: number | undefined;

  constructor(message: string, details: { file?: string; offset?: number } = {}) {
    super('TF_CAPTURE_FORMAT', { message });
    this.name = 'CaptureFormatError';
    this.file = details.file;
    this.offset = details.offset;
  }
}

/** Used in messages when the caller did not name the source. */
export function displayName(name: string | undefined): string {
  return name ?? 'capture data';
}

/**
 * Builds the error for bytes that start neither format. A few look-alikes are
 * common enough in practice (compressed captures, the old Kuznetzov patched
 * format) that a specific hint saves the operator a round trip.
 */
export function notACaptureError(name: string | undefined, head: Buffer): CaptureFormatError {
  const shown = displayName(name);
  const first = head.length > 0 ? `first bytes 0x${head.subarray(0, 4).toString('hex')}` : 'no bytes';
  let hint = 'give a capture file';
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) {
    hint = 'it looks gzip-compressed; decompress it first';
  } else if (head.length >= 4 && (head.readUInt32LE(0) === 0xa1b2cd34 || head.readUInt32BE(0) === 0xa1b2cd34)) {
    hint = 'it is the modified (Kuznetzov) libpcap format; convert it with "editcap -F pcap"';
  } else if (head.length >= 4 && head.readUInt32BE(0) === 0x28b52ffd) {
    hint = 'it looks zstd-compressed; decompress it first';
  }
  return new CaptureFormatError(
    `${shown} is not a PCAP or PCAPNG file (${first}); ${hint}`,
    { file: name, offset: 0 },
  );
}
