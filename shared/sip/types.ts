/** A parsed SIP message: what the index, the query and the ladder need. */
export interface SipMessage {
  /** Request method (upper case) or null for a response. */
  method: string | null;
  /** Request-URI, for requests. */
  requestUri: string | null;
  /** Status code, for responses. */
  status: number | null;
  reason: string | null;
  callId: string | null;
  cseq: { seq: number; method: string } | null;
  from: NameAddr | null;
  to: NameAddr | null;
  /** P-Asserted-Identity entries, in order. */
  pai: NameAddr[];
  /** User part of the Request-URI (requests only). */
  ruriUser: string | null;
  /** Value of the configured correlation header (e.g. X-CID), or of an `xref` parameter, when present. */
  correlation: string | null;
  /** The sender's UUID of an RFC 7989 Session-ID (32 lower-case hex digits; never the null UUID). */
  sessionId: string | null;
  /** Its `remote` parameter: the peer's UUID (same form; null when absent or the null UUID). */
  sessionRemote: string | null;
  /** The icid-value of a P-Charging-Vector (RFC 7315). */
  icid: string | null;
  /** Every header in order: [lower-case long-form name, raw value]. Compact forms are expanded (i -> call-id). */
  headers: Array<[string, string]>;
  /** Byte length of the start line plus headers, including the blank line. */
  headerLength: number;
  /** Body bytes (Content-Length of them when given). */
  body: Buffer;
  /** Media endpoints of an SDP body, when there is one. */
  sdp: SdpInfo | null;
  /** With the asWritten option: the start line, and each header's name as written (parallel to `headers`). */
  asWritten?: { startLine: string; names: string[] };
}

export interface NameAddr {
  uri: string;
  /** User part of the URI (before '@'), unescaped, null when none. */
  user: string | null;
  tag: string | null;
  display: string | null;
}

export interface SdpInfo {
  /** Session-level connection address (c=), or null. */
  connection: string | null;
  media: SdpMedia[];
}

export interface SdpMedia {
  /** audio, video, image, ... */
  type: string;
  port: number;
  /** Media-level c= address, or the session-level one. */
  addr: string | null;
  proto: string;
  /** RTCP port and address from `a=rtcp` (RFC 3605), null when absent (then RTCP is on port + 1). */
  rtcpPort: number | null;
  rtcpAddr: string | null;
  /** `a=rtpmap` entries: payload type -> encoding name/clock rate, e.g. [0, 'PCMU/8000']. */
  rtpmap: Array<[number, string]>;
}
