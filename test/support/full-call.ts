import { ETH_IPV4, TCP_FLAG, ethernet, fragmentIpv4, ipv4, sipInvite, sipResponse, tcp, udp, writePcap } from './packets';

/*
 * One SIP call whose messages come whole from one UDP datagram, from IP
 * fragments and from TCP segments (two in one segment too), with headers
 * carrying markup, a script and terminal escapes: what the full-message
 * tests of the query, the REST API, the CLI and the page all trace.
 */

const T0 = 1_795_200_000;
const CID = 'full-msg@192.0.2.1';
const A = '192.0.2.1';
const B = '198.51.100.7';
/** Markup, a script and terminal escapes: shown as text, never run. */
export const HOSTILE_HEADERS = 'X-Evil: <img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>\r\nSubject: \x1b[2J\x1b]0;owned\x07 \u202eevil\r\n';

/** The frames one microsecond apart from T0. */
function writeFrames(path: string, frames: Buffer[]): void {
  writePcap(path, frames.map((frame, i) => ({ sec: T0, nsec: i * 1000, frame })));
}

/** A call over UDP (hostile headers), fragmented UDP and segmented TCP; what the tests of the REST API and the page trace too. */
export function callFrames(): Buffer[] {
  const u = (src: string, dst: string, p: Buffer) => ethernet(ETH_IPV4, ipv4({ src, dst, proto: 17 }, udp(5060, 5060, p)));
  // sipInvite writes Latin-1; the right-to-left override goes on the wire as UTF-8.
  const [before, after] = sipInvite(CID, 'X-Marker: 1\r\n').toString('latin1').split('X-Marker: 1\r\n');
  const invite = Buffer.concat([Buffer.from(before, 'latin1'), Buffer.from(HOSTILE_HEADERS, 'utf8'), Buffer.from(after, 'latin1')]);
  const bigInvite = sipInvite(CID, 'X-Note: re-INVITE\r\n', 2400).toString('latin1').replace('CSeq: 314159 INVITE', 'CSeq: 314160 INVITE');
  const frags = fragmentIpv4({ src: A, dst: B, proto: 17, id: 0x4242 }, udp(5060, 5060, Buffer.from(bigInvite, 'latin1')), [1200, 1200, 1600]);
  // Over TCP: a BYE cut in three segments, then its 200 and a second message in one segment.
  const bye = Buffer.from(
    `BYE sip:bob@${B} SIP/2.0\r\nVia: SIP/2.0/TCP ${A};branch=z9hG4bKbye\r\nFrom: "Alice" <sip:alice@example.com>;tag=1928301774\r\n` +
      `To: <sip:+15551234567@example.com>;tag=a6c85cf\r\nCall-ID: ${CID}\r\nCSeq: 314161 BYE\r\nContent-Length: 0\r\n\r\n`,
    'latin1',
  );
  const ok = sipResponse(200, 'OK', CID, '314161 BYE');
  const info = sipResponse(200, 'OK', CID, '314162 INFO');
  const t = (src: string, dst: string, sport: number, dport: number, seq: number, p: Buffer) =>
    ethernet(ETH_IPV4, ipv4({ src, dst, proto: 6 }, tcp({ sport, dport, seq, ack: 1, flags: TCP_FLAG.ACK | TCP_FLAG.PSH }, p)));
  return [
    u(A, B, invite),
    u(B, A, sipResponse(180, 'Ringing', CID)),
    u(B, A, sipResponse(200, 'OK', CID)),
    ...frags.map((f) => ethernet(ETH_IPV4, f)),
    u(B, A, sipResponse(200, 'OK', CID, '314160 INVITE')),
    t(A, B, 40000, 5060, 1000, bye.subarray(0, 40)),
    t(A, B, 40000, 5060, 1040, bye.subarray(40, 150)),
    t(A, B, 40000, 5060, 1150, bye.subarray(150)),
    t(B, A, 5060, 40000, 5000, Buffer.concat([ok, info])),
  ];
}

export { CID as FULL_CALL_ID, T0 as FULL_T0, A as FULL_A, B as FULL_B };

export function writeCallPcap(path: string): void {
  writeFrames(path, callFrames());
}

