/*
 * SIP messages and a mutator for the tests that feed parsers hostile input
 * (shared/sip/parse.test.ts, agent/index/native-scan.test.ts).
 */

/**
 * Builds a message the way sipp does from a scenario: lines joined with CRLF,
 * `[len]` replaced by the body's byte length.
 */
export function sip(lines: string[], body = '', eol = '\r\n'): Buffer {
  const head = lines.join(eol).replace('[len]', String(Buffer.byteLength(body)));
  return Buffer.from(head + eol + eol + body);
}

// The call flow of sipp's built-in uac/uas scenarios, sipp on 192.168.1.10:5061 calling 192.168.1.20:5060.
export const CALL_ID = '1-12345@192.168.1.10';
export const VIA = 'Via: SIP/2.0/UDP 192.168.1.10:5061;branch=z9hG4bK-12345-1-0';
export const FROM = 'From: sipp <sip:sipp@192.168.1.10:5061>;tag=12345SIPpTag001';
export const TO = 'To: service <sip:service@192.168.1.20:5060>';
export const TO_TAGGED = 'To: service <sip:service@192.168.1.20:5060>;tag=54321SIPpTag011';
export const UAC_SDP =
  'v=0\r\n' +
  'o=user1 53655765 2353687637 IN IP4 192.168.1.10\r\n' +
  's=-\r\n' +
  'c=IN IP4 192.168.1.10\r\n' +
  't=0 0\r\n' +
  'm=audio 6000 RTP/AVP 0\r\n' +
  'a=rtpmap:0 PCMU/8000\r\n';
export const UAS_SDP =
  'v=0\r\n' +
  'o=user1 53655765 2353687637 IN IP4 192.168.1.20\r\n' +
  's=-\r\n' +
  'c=IN IP4 192.168.1.20\r\n' +
  't=0 0\r\n' +
  'm=audio 6002 RTP/AVP 0\r\n' +
  'a=rtpmap:0 PCMU/8000\r\n';

export const INVITE = sip(
  [
    'INVITE sip:service@192.168.1.20:5060 SIP/2.0',
    VIA,
    FROM,
    TO,
    `Call-ID: ${CALL_ID}`,
    'CSeq: 1 INVITE',
    'Contact: sip:sipp@192.168.1.10:5061',
    'Max-Forwards: 70',
    'Subject: Performance Test',
    'Content-Type: application/sdp',
    'Content-Length: [len]',
  ],
  UAC_SDP,
);

export const INTERESTING = Buffer.from(':;<>",\\%@= \t\r\n\x00\xff/0123456789=-', 'latin1');
export const TOKENS = [
  '\r\n', '\n', '\r\n\r\n', '\r\n ', ';tag=', ';xref=', '<', '>', '"', '\\', '%', '%2', '%C3', 'sip:', 'tel:', '@', ',',
  'Content-Length: 99999\r\n', 'l: -1\r\n', 'Content-Type: multipart/mixed;boundary=b\r\n', '--b\r\n', '--b--',
  'c: application/sdp\r\n', 'm=audio 99999999 RTP/AVP 0\r\n', 'c=IN IP6 /\r\n', 'v=0\r\n', 'P-Asserted-Identity: ',
  'CSeq: 99999999999 X\r\n', 'SIP/2.0 ', '\xc3', '\xe2\x82',
].map((s) => Buffer.from(s, 'latin1'));

/** 1 to 8 random edits of `base`: bytes set, tokens inserted, spans cut, copied or junk added, the end cut. */
export function mutate(base: Buffer, rnd: () => number): Buffer {
  let b = Buffer.from(base);
  const edits = 1 + Math.floor(rnd() * 8);
  for (let e = 0; e < edits; e++) {
    const at = Math.floor(rnd() * (b.length + 1));
    switch (Math.floor(rnd() * 7)) {
      case 0:
        if (at < b.length) b[at] = Math.floor(rnd() * 256);
        break;
      case 1:
        if (at < b.length) b[at] = INTERESTING[Math.floor(rnd() * INTERESTING.length)];
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, at), TOKENS[Math.floor(rnd() * TOKENS.length)], b.subarray(at)]);
        break;
      case 3: {
        const n = Math.floor(rnd() * 40);
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + n))]);
        break;
      }
      case 4:
        b = b.subarray(0, at);
        break;
      case 5: {
        const from = Math.floor(rnd() * b.length);
        const n = Math.floor(rnd() * 60);
        b = Buffer.concat([b.subarray(0, at), b.subarray(from, from + n), b.subarray(at)]);
        break;
      }
      default: {
        const n = Math.floor(rnd() * 30);
        const junk = Buffer.alloc(n);
        for (let i = 0; i < n; i++) junk[i] = Math.floor(rnd() * 256);
        b = Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]);
        break;
      }
    }
  }
  return b;
}

export const FUZZ_CORPUS: Buffer[] = [
  INVITE,
  sip(['SIP/2.0 200 OK', VIA, FROM, TO_TAGGED, `Call-ID: ${CALL_ID}`, 'CSeq: 1 INVITE', 'Content-Type: application/sdp', 'Content-Length: [len]'], UAS_SDP),
  sip(['INVITE tel:+15551234567;xref=z SIP/2.0', 'f: "A, \\"B\\" <c>" <sip:%2B1@x;user=phone>;tag=t', 't: sip:b@y;tag=u', 'i: q', 'P-Asserted-Identity: "X" <sip:1@a>, <tel:2>', 'X-CID: c1']),
  sip(
    ['MESSAGE sip:a@b SIP/2.0', 'Content-Type: multipart/mixed;boundary=b', 'Content-Length: [len]'],
    '--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nc=IN IP4 1.2.3.4/127\r\nm=audio 5004/2 RTP/AVP 0\r\n--b--\r\n',
  ),
];
