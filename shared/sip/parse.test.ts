import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prng, sipInvite } from '../../test/support/packets';
import { CALL_ID, FROM, FUZZ_CORPUS, INVITE, mutate, sip, TO, TO_TAGGED, UAC_SDP, UAS_SDP, VIA } from '../../test/support/sip-corpus';
import { parseNameAddr, parseSip, uriUser } from './parse';
import type { SipMessage } from './types';

function mustParse(b: Buffer, opts?: { correlationHeader?: string }): SipMessage {
  const m = parseSip(b, opts);
  assert.ok(m, `expected SIP: ${JSON.stringify(b.toString('latin1').slice(0, 80))}`);
  return m;
}


test('sipp uac INVITE with SDP', () => {
  const m = mustParse(INVITE);
  assert.equal(m.method, 'INVITE');
  assert.equal(m.requestUri, 'sip:service@192.168.1.20:5060');
  assert.equal(m.ruriUser, 'service');
  assert.equal(m.status, null);
  assert.equal(m.reason, null);
  assert.equal(m.callId, CALL_ID);
  assert.deepEqual(m.cseq, { seq: 1, method: 'INVITE' });
  assert.deepEqual(m.from, { uri: 'sip:sipp@192.168.1.10:5061', user: 'sipp', tag: '12345SIPpTag001', display: 'sipp' });
  assert.deepEqual(m.to, { uri: 'sip:service@192.168.1.20:5060', user: 'service', tag: null, display: 'service' });
  assert.deepEqual(m.pai, []);
  assert.equal(m.correlation, null);
  assert.equal(m.headers.length, 10);
  assert.deepEqual(m.headers[0], ['via', 'SIP/2.0/UDP 192.168.1.10:5061;branch=z9hG4bK-12345-1-0']);
  assert.deepEqual(m.headers[9], ['content-length', String(UAC_SDP.length)]);
  assert.equal(m.headerLength, INVITE.length - UAC_SDP.length);
  assert.equal(INVITE.subarray(m.headerLength - 4, m.headerLength).toString(), '\r\n\r\n');
  assert.equal(m.body.toString(), UAC_SDP);
  assert.deepEqual(m.sdp, {
    connection: '192.168.1.10',
    media: [{ type: 'audio', port: 6000, addr: '192.168.1.10', proto: 'RTP/AVP', rtcpPort: null, rtcpAddr: null, rtpmap: [[0, 'PCMU/8000']] }],
  });
});

test('sipp call flow: 100, 180, 200 with SDP, ACK, BYE, 200', () => {
  const trying = mustParse(sip(['SIP/2.0 100 Trying', VIA, FROM, TO, `Call-ID: ${CALL_ID}`, 'CSeq: 1 INVITE', 'Content-Length: 0']));
  assert.equal(trying.status, 100);
  assert.equal(trying.reason, 'Trying');
  assert.equal(trying.method, null);
  assert.equal(trying.requestUri, null);
  assert.equal(trying.ruriUser, null);
  assert.equal(trying.body.length, 0);
  assert.equal(trying.sdp, null);

  const ringing = mustParse(
    sip(['SIP/2.0 180 Ringing', VIA, FROM, TO_TAGGED, `Call-ID: ${CALL_ID}`, 'CSeq: 1 INVITE', 'Contact: <sip:192.168.1.20:5060;transport=UDP>', 'Content-Length: 0']),
  );
  assert.equal(ringing.status, 180);
  assert.equal(ringing.reason, 'Ringing');
  assert.equal(ringing.to?.tag, '54321SIPpTag011');
  assert.deepEqual(ringing.cseq, { seq: 1, method: 'INVITE' });

  const ok = mustParse(
    sip(
      ['SIP/2.0 200 OK', VIA, FROM, TO_TAGGED, `Call-ID: ${CALL_ID}`, 'CSeq: 1 INVITE', 'Contact: <sip:192.168.1.20:5060;transport=UDP>', 'Content-Type: application/sdp', 'Content-Length: [len]'],
      UAS_SDP,
    ),
  );
  assert.equal(ok.status, 200);
  assert.equal(ok.reason, 'OK');
  assert.equal(ok.sdp?.connection, '192.168.1.20');
  assert.deepEqual(ok.sdp?.media, [{ type: 'audio', port: 6002, addr: '192.168.1.20', proto: 'RTP/AVP', rtcpPort: null, rtcpAddr: null, rtpmap: [[0, 'PCMU/8000']] }]);

  const ack = mustParse(
    sip([
      'ACK sip:service@192.168.1.20:5060 SIP/2.0',
      'Via: SIP/2.0/UDP 192.168.1.10:5061;branch=z9hG4bK-12345-1-5',
      FROM,
      TO_TAGGED,
      `Call-ID: ${CALL_ID}`,
      'CSeq: 1 ACK',
      'Contact: sip:sipp@192.168.1.10:5061',
      'Max-Forwards: 70',
      'Subject: Performance Test',
      'Content-Length: 0',
    ]),
  );
  assert.equal(ack.method, 'ACK');
  assert.deepEqual(ack.cseq, { seq: 1, method: 'ACK' });
  assert.equal(ack.to?.tag, '54321SIPpTag011');

  const bye = mustParse(
    sip([
      'BYE sip:service@192.168.1.20:5060 SIP/2.0',
      'Via: SIP/2.0/UDP 192.168.1.10:5061;branch=z9hG4bK-12345-1-7',
      FROM,
      TO_TAGGED,
      `Call-ID: ${CALL_ID}`,
      'CSeq: 2 BYE',
      'Contact: sip:sipp@192.168.1.10:5061',
      'Max-Forwards: 70',
      'Subject: Performance Test',
      'Content-Length: 0',
    ]),
  );
  assert.equal(bye.method, 'BYE');
  assert.deepEqual(bye.cseq, { seq: 2, method: 'BYE' });
  assert.equal(bye.callId, CALL_ID);

  const byeOk = mustParse(sip(['SIP/2.0 200 OK', VIA, FROM, TO_TAGGED, `Call-ID: ${CALL_ID}`, 'CSeq: 2 BYE', 'Content-Length: 0']));
  assert.equal(byeOk.status, 200);
  assert.deepEqual(byeOk.cseq, { seq: 2, method: 'BYE' });
});

test('compact header forms are expanded', () => {
  const body = 'v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n';
  const m = mustParse(
    sip(
      [
        'INVITE sip:bob@biloxi.example.com SIP/2.0',
        'v: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9',
        'f: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl',
        't: Bob <sip:bob@biloxi.example.com>',
        'i: 3848276298220188511@atlanta.example.com',
        'CSeq: 1 INVITE',
        'm: <sip:alice@client.atlanta.example.com;transport=tcp>',
        'k: timer',
        'x: 1800;refresher=uac',
        'c: application/sdp',
        'l: [len]',
      ],
      body,
    ),
  );
  assert.deepEqual(
    m.headers.map((h) => h[0]),
    ['via', 'from', 'to', 'call-id', 'cseq', 'contact', 'supported', 'session-expires', 'content-type', 'content-length'],
  );
  assert.equal(m.callId, '3848276298220188511@atlanta.example.com');
  assert.equal(m.from?.tag, '9fxced76sl');
  assert.equal(m.from?.user, 'alice');
  assert.equal(m.to?.user, 'bob');
  assert.equal(m.body.toString(), body);
  assert.equal(m.sdp?.media[0].port, 4000);
});

test('header names are case-insensitive', () => {
  const m = mustParse(
    sip([
      'OPTIONS sip:carol@chicago.example.com SIP/2.0',
      'VIA: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877',
      'fRoM: <sip:alice@atlanta.example.com>;TAG=1928301774',
      'TO: <sip:carol@chicago.example.com>',
      'CALL-id:   a84b4c76e66710  ',
      'cSeq: 63104 options',
      'Content-LENGTH: 0',
    ]),
  );
  assert.equal(m.method, 'OPTIONS');
  assert.equal(m.callId, 'a84b4c76e66710');
  assert.deepEqual(m.cseq, { seq: 63104, method: 'OPTIONS' });
  assert.equal(m.from?.tag, '1928301774');
  assert.equal(m.to?.user, 'carol');
  assert.deepEqual(m.headers[3], ['call-id', 'a84b4c76e66710']);
});

test('folded header lines are joined', () => {
  const m = mustParse(
    sip([
      'SIP/2.0 486 Busy Here',
      'Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK776asdhds',
      'Subject: I know you\'re there,',
      '         pick up the phone',
      '\tand talk to me!',
      'From: "Alice"',
      ' <sip:alice@atlanta.example.com>;tag=88sja8x',
      'To: <sip:bob@biloxi.example.com>;tag=a6c85cf',
      'Call-ID: a84b4c76e66710',
      'CSeq: 1 INVITE',
      'Content-Length: 0',
    ]),
  );
  assert.equal(m.status, 486);
  assert.equal(m.reason, 'Busy Here');
  assert.deepEqual(m.headers[1], ['subject', "I know you're there, pick up the phone and talk to me!"]);
  assert.deepEqual(m.from, { uri: 'sip:alice@atlanta.example.com', user: 'alice', tag: '88sja8x', display: 'Alice' });
  assert.equal(m.headers.length, 7);
});

test('tel: Request-URI and escaped / parameterised sip users', () => {
  const m = mustParse(
    sip([
      'INVITE tel:+1-555-123-4567;phone-context=example.com SIP/2.0',
      'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1',
      'From: <sip:%2B4930123456;npdi;rn=%2B4930999@gw.example.com;user=phone>;tag=a',
      'To: <tel:+1-555-123-4567>',
      'Call-ID: c1',
      'CSeq: 1 INVITE',
    ]),
  );
  assert.equal(m.requestUri, 'tel:+1-555-123-4567;phone-context=example.com');
  assert.equal(m.ruriUser, '+1-555-123-4567');
  assert.equal(m.from?.user, '+4930123456');
  assert.equal(m.from?.uri, 'sip:%2B4930123456;npdi;rn=%2B4930999@gw.example.com;user=phone');
  assert.equal(m.to?.user, '+1-555-123-4567');

  assert.equal(uriUser('SIPS:bob:secret@example.com'), 'bob');
  assert.equal(uriUser('sip:example.com'), null);
  assert.equal(uriUser('sip:@example.com'), null);
  assert.equal(uriUser('mailto:bob@example.com'), null);
  assert.equal(uriUser('sip:J%C3%BCrgen@example.com'), 'Jürgen');
  assert.equal(uriUser('sip:100%@example.com'), '100%');
  assert.equal(uriUser('sip:%ZZ%4@example.com'), '%ZZ%4');
  assert.equal(uriUser('sip:%FF@example.com'), '\ufffd');
});

test('P-Asserted-Identity: list and repeated header, commas in quotes and <> do not split', () => {
  const m = mustParse(
    sip([
      'INVITE sip:+15551234567@ims.example.net;user=phone SIP/2.0',
      'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1',
      'From: <sip:anonymous@anonymous.invalid>;tag=x1',
      'To: <sip:+15551234567@ims.example.net;user=phone>',
      'Call-ID: pai-1',
      'CSeq: 1 INVITE',
      'P-Asserted-Identity: "Smith, John" <sip:+15557654321@ims.example.net;user=phone;x=a,b>, <tel:+15557654321>',
      'P-Asserted-Identity: sip:ops@example.net',
    ]),
  );
  assert.equal(m.ruriUser, '+15551234567');
  assert.equal(m.pai.length, 3);
  assert.deepEqual(m.pai[0], {
    uri: 'sip:+15557654321@ims.example.net;user=phone;x=a,b',
    user: '+15557654321',
    tag: null,
    display: 'Smith, John',
  });
  assert.deepEqual(m.pai[1], { uri: 'tel:+15557654321', user: '+15557654321', tag: null, display: null });
  assert.deepEqual(m.pai[2], { uri: 'sip:ops@example.net', user: 'ops', tag: null, display: null });
});

test('display names with quotes, <, comma and ; ; URI params are not header params', () => {
  const m = mustParse(
    sip([
      'MESSAGE sip:bob@example.com SIP/2.0',
      'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1',
      'From: "Bob \\"The Boss\\" <CEO>, Inc; tag=fake" <sip:bob@example.com;tag=uriparam>;tag=real-tag',
      'To: Plain Name <sip:alice@example.com;transport=tcp>',
      'Call-ID: dn-1',
      'CSeq: 5 MESSAGE',
    ]),
  );
  assert.deepEqual(m.from, {
    uri: 'sip:bob@example.com;tag=uriparam',
    user: 'bob',
    tag: 'real-tag',
    display: 'Bob "The Boss" <CEO>, Inc; tag=fake',
  });
  assert.deepEqual(m.to, { uri: 'sip:alice@example.com;transport=tcp', user: 'alice', tag: null, display: 'Plain Name' });
});

test('From without <> takes the parameters after the URI as header parameters', () => {
  const m = mustParse(
    sip([
      'REGISTER sip:registrar.example.com SIP/2.0',
      'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1',
      'From: sip:alice@example.com;tag=a73kszlfl',
      'To: sip:alice@example.com',
      'Call-ID: reg-1',
      'CSeq: 1 REGISTER',
    ]),
  );
  assert.equal(m.ruriUser, null);
  assert.deepEqual(m.from, { uri: 'sip:alice@example.com', user: 'alice', tag: 'a73kszlfl', display: null });
  assert.deepEqual(m.to, { uri: 'sip:alice@example.com', user: 'alice', tag: null, display: null });
});

test('name-addr edge cases', () => {
  assert.deepEqual(parseNameAddr('"" <sip:a@b>'), { uri: 'sip:a@b', user: 'a', tag: null, display: null });
  assert.deepEqual(parseNameAddr('<sip:a@b>;foo="x;tag=no";tag=yes'), { uri: 'sip:a@b', user: 'a', tag: 'yes', display: null });
  assert.equal(parseNameAddr('"unterminated <sip:a@b>'), null);
  assert.equal(parseNameAddr('<sip:a@b'), null);
  assert.equal(parseNameAddr('garbage'), null);
  assert.equal(parseNameAddr('"Name" sip:a@b'), null);
  assert.equal(parseNameAddr(''), null);
  assert.equal(parseNameAddr('<>'), null);
});

test('correlation: X-CID header, configurable name, xref parameter fallback', () => {
  const base = ['INVITE sip:1234@pbx.example.com;xref=from-ruri SIP/2.0', 'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1', 'Call-ID: corr-1', 'CSeq: 1 INVITE'];
  assert.equal(mustParse(sip([...base, 'x-cid:  ab-12-cd '])).correlation, 'ab-12-cd');
  assert.equal(mustParse(sip([...base, 'X-CID: ab-12-cd', 'X-Session: s-9']), { correlationHeader: 'x-session' }).correlation, 's-9');
  // Without the header the Request-URI's xref parameter is used.
  assert.equal(mustParse(sip(base)).correlation, 'from-ruri');
  // ...or one in any header, inside <> or as a header parameter.
  const noRuri = ['INVITE sip:1234@pbx.example.com SIP/2.0', 'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1', 'Call-ID: corr-2', 'CSeq: 1 INVITE'];
  assert.equal(mustParse(sip([...noRuri, 'Record-Route: <sip:sbc.example.com;lr;XREF=rr-77>'])).correlation, 'rr-77');
  assert.equal(mustParse(sip([...noRuri, 'From: <sip:a@b>;tag=1; xref = "q 1"'])).correlation, 'q 1');
  // An xref inside a quoted display name is not a parameter.
  assert.equal(mustParse(sip([...noRuri, 'From: "x;xref=no" <sip:a@b>;tag=1'])).correlation, null);
  assert.equal(mustParse(sip(noRuri)).correlation, null);
  // An empty configured header does not hide the xref fallback.
  assert.equal(mustParse(sip([...base, 'X-CID:'])).correlation, 'from-ruri');
});

test('leg keys: Session-ID sender UUID (never the null UUID) and P-Charging-Vector icid-value', () => {
  const base = ['INVITE sip:1234@pbx.example.com SIP/2.0', 'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1', 'Call-ID: leg-1', 'CSeq: 1 INVITE'];
  const m = mustParse(sip([...base, 'Session-ID: AB30317F1A784DC48FF824D0D3715D86;remote=47755a9de7794ba387653f2099600ef2', 'P-Charging-Vector: icid-value="1234bc9876e";icid-generated-at=192.0.6.8;orig-ioi=home1.net']));
  assert.equal(m.sessionId, 'ab30317f1a784dc48ff824d0d3715d86');
  assert.equal(m.sessionRemote, '47755a9de7794ba387653f2099600ef2');
  assert.equal(m.icid, '1234bc9876e');
  assert.equal(mustParse(sip([...base, 'session-id:  47755a9de7794ba387653f2099600ef2 ', 'p-charging-vector: icid-value=abc'])).sessionId, '47755a9de7794ba387653f2099600ef2');
  assert.equal(mustParse(sip([...base, 'p-charging-vector: orig-ioi=x; icid-value = k-9'])).icid, 'k-9');
  // A UA that does not know the UUID yet sends the null one: it would link every such call.
  const nul = mustParse(sip([...base, 'Session-ID: 00000000000000000000000000000000;remote=47755a9de7794ba387653f2099600ef2']));
  assert.equal(nul.sessionId, null);
  assert.equal(nul.sessionRemote, '47755a9de7794ba387653f2099600ef2');
  assert.equal(mustParse(sip([...base, 'Session-ID: 47755a9de7794ba387653f2099600ef2;remote=00000000000000000000000000000000'])).sessionRemote, null);
  assert.equal(mustParse(sip([...base, 'Session-ID: not-a-uuid'])).sessionId, null);
  assert.equal(mustParse(sip([...base, 'P-Charging-Vector: orig-ioi=x'])).icid, null);
  assert.equal(mustParse(sip(base)).sessionId, null);
  // The indexer's parse (no header list) reads them too.
  const lean = parseSip(sip([...base, 'Session-ID: ab30317f1a784dc48ff824d0d3715d86', 'P-Charging-Vector: icid-value=z1']), { allHeaders: false })!;
  assert.equal(lean.sessionId, 'ab30317f1a784dc48ff824d0d3715d86');
  assert.equal(lean.icid, 'z1');
});

test('multipart/mixed body with an SDP part', () => {
  const body =
    '--unique-boundary-1\r\n' +
    'Content-Type: application/ISUP;version=nxv3;base=etsi121\r\n' +
    'Content-Disposition: signal;handling=optional\r\n' +
    '\r\n' +
    '\x01\x00\x49\x00\x00\x03\x02\x00\x07\x04\x10\x00\x33\x63\x21\x43\x00\x00\x03\x06\x0d\x03\x80\x90\xa2\x07\x03\x10\x03\x63\x53\x00\r\n' +
    '--unique-boundary-1\r\n' +
    'Content-Type: application/sdp\r\n' +
    '\r\n' +
    'v=0\r\n' +
    'o=Sonus_UAC 8765 4321 IN IP4 198.51.100.7\r\n' +
    's=SIP Media Capabilities\r\n' +
    'c=IN IP4 198.51.100.7\r\n' +
    't=0 0\r\n' +
    'm=audio 20000 RTP/AVP 0 101\r\n' +
    '--unique-boundary-1--\r\n';
  const m = mustParse(
    sip(
      [
        'INVITE sip:+12125551212@gw.example.com;user=phone SIP/2.0',
        'Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK2',
        'Call-ID: mp-1',
        'CSeq: 1 INVITE',
        'Content-Type: multipart/mixed; boundary="unique-boundary-1"',
        'MIME-Version: 1.0',
        'Content-Length: [len]',
      ],
      body,
    ),
  );
  assert.equal(m.body.length, Buffer.byteLength(body));
  assert.deepEqual(m.sdp, { connection: '198.51.100.7', media: [{ type: 'audio', port: 20000, addr: '198.51.100.7', proto: 'RTP/AVP', rtcpPort: null, rtcpAddr: null, rtpmap: [] }] });

  const noSdpPart = body.replace('application/sdp', 'application/pidf+xml');
  const m2 = mustParse(sip(['MESSAGE sip:a@b SIP/2.0', 'Content-Type: multipart/mixed;boundary=unique-boundary-1', 'Content-Length: [len]'], noSdpPart));
  assert.equal(m2.sdp, null);
});

test('IPv6 SDP', () => {
  const body =
    'v=0\r\no=- 20518 0 IN IP6 2001:db8::10\r\ns=-\r\nc=IN IP6 2001:db8::10\r\nt=0 0\r\n' +
    'm=audio 49170 RTP/AVP 0\r\nm=video 51372 RTP/AVP 99\r\nc=IN IP6 2001:db8::20\r\n';
  const m = mustParse(sip(['SIP/2.0 200 OK', 'Call-ID: v6', 'CSeq: 1 INVITE', 'Content-Type: Application/SDP; charset=utf-8', 'Content-Length: [len]'], body));
  assert.deepEqual(m.sdp, {
    connection: '2001:db8::10',
    media: [
      { type: 'audio', port: 49170, addr: '2001:db8::10', proto: 'RTP/AVP', rtcpPort: null, rtcpAddr: null, rtpmap: [] },
      { type: 'video', port: 51372, addr: '2001:db8::20', proto: 'RTP/AVP', rtcpPort: null, rtcpAddr: null, rtpmap: [] },
    ],
  });
});

test('LF-only line ends', () => {
  const body = 'v=0\no=- 1 1 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\nm=audio 7078 RTP/AVP 0\n';
  const b = sip(
    ['INVITE sip:bob@example.com SIP/2.0', 'Via: SIP/2.0/UDP 10.1.1.1;branch=z9hG4bK3', 'From: <sip:alice@example.com>;tag=lf', 'To: <sip:bob@example.com>', 'Call-ID: lf-1', 'CSeq: 7 INVITE', 'Content-Type: application/sdp', 'Content-Length: [len]'],
    body,
    '\n',
  );
  const m = mustParse(b);
  assert.equal(m.callId, 'lf-1');
  assert.equal(m.from?.tag, 'lf');
  assert.equal(m.headers.length, 7);
  assert.equal(m.headerLength, b.length - body.length);
  assert.equal(m.body.toString(), body);
  assert.equal(m.sdp?.media[0].port, 7078);
});

test('Content-Length: larger than available, smaller than available, absent, and no blank line', () => {
  const head = ['SIP/2.0 200 OK', 'Call-ID: cl', 'CSeq: 1 MESSAGE'];
  const big = mustParse(sip([...head, 'Content-Length: 500'], 'only twenty-one byte'));
  assert.equal(big.body.toString(), 'only twenty-one byte');

  const small = mustParse(sip([...head, 'Content-Length: 4'], 'abcdefgh'));
  assert.equal(small.body.toString(), 'abcd');

  const none = mustParse(sip(head, 'rest of datagram'));
  assert.equal(none.body.toString(), 'rest of datagram');

  const junk = mustParse(sip([...head, 'Content-Length: 12abc'], 'whole body'));
  assert.equal(junk.body.toString(), 'whole body');

  const truncated = Buffer.from('SIP/2.0 200 OK\r\nCall-ID: cut\r\nCSeq: 1');
  const t = mustParse(truncated);
  assert.equal(t.headerLength, truncated.length);
  assert.equal(t.body.length, 0);
  assert.equal(t.callId, 'cut');
  assert.equal(t.cseq, null);
});

test('leading CRLF keepalives are skipped and counted in headerLength', () => {
  const b = Buffer.concat([Buffer.from('\r\n\r\n'), sip(['SIP/2.0 200 OK', 'Call-ID: ka', 'Content-Length: 2'], 'hi')]);
  const m = mustParse(b);
  assert.equal(m.status, 200);
  assert.equal(m.body.toString(), 'hi');
  assert.equal(m.headerLength, b.length - 2);
  assert.equal(parseSip(Buffer.from('\r\n\r\n')), null);
});

test('UTF-8 display names decode; malformed header lines and fields become nulls', () => {
  const m = mustParse(
    sip([
      'INVITE sip:bob@example.com SIP/2.0',
      'From: "Jürgen Müller" <sip:juergen@example.com>;tag=u8',
      'To bob@example.com',
      ': no name',
      'Bad Name: x',
      '   orphan continuation',
      'Call-ID:',
      'CSeq: x INVITE',
      'Content-Type: application/sdp',
      'Content-Length: [len]',
    ], 'not sdp at all'),
  );
  assert.equal(m.from?.display, 'Jürgen Müller');
  assert.equal(m.to, null);
  assert.equal(m.callId, null);
  assert.equal(m.cseq, null);
  assert.equal(m.sdp, null);
  assert.deepEqual(
    m.headers.map((h) => h[0]),
    ['from', 'call-id', 'cseq', 'content-type', 'content-length'],
  );
});

test('CSeq and status edge cases', () => {
  const cs = (v: string) => mustParse(sip(['SIP/2.0 200 OK', `CSeq: ${v}`])).cseq;
  assert.deepEqual(cs('4294967295 invite'), { seq: 4294967295, method: 'INVITE' });
  assert.equal(cs('4294967296 INVITE'), null);
  assert.equal(cs('12345678901 INVITE'), null);
  assert.equal(cs('1INVITE'), null);
  assert.equal(cs('1 INVITE extra'), null);
  assert.equal(cs('1'), null);
  const noReason = mustParse(Buffer.from('SIP/2.0 503\r\nCall-ID: x\r\n\r\n'));
  assert.equal(noReason.status, 503);
  assert.equal(noReason.reason, '');
  assert.equal(mustParse(Buffer.from('SIP/2.0 699 Whatever Reason Phrase \r\n\r\n')).reason, 'Whatever Reason Phrase');
  assert.equal(mustParse(Buffer.from('info sip:a@b SIP/2.0\r\n\r\n')).method, 'INFO');
});

test('start lines tshark reads as SIP though RFC 3261 does not allow them are parsed, so no viewer shows a message the trace lacks', () => {
  assert.equal(mustParse(Buffer.from('SIP/2.0 099 Low\r\n\r\n')).status, 99);
  assert.equal(mustParse(Buffer.from('SIP/2.0 700 High\r\n\r\n')).status, 700);
  assert.equal(mustParse(Buffer.from('SIP/2.0 180 Ring\x07ing\x1b[8m\r\n\r\n', 'latin1')).reason, 'Ring\x07ing\x1b[8m');
  const lax = mustParse(Buffer.from('IN(VITE 1sip:x SIP/2.0\r\nCall-ID: c1\r\n\r\n'));
  assert.equal(lax.method, 'IN(VITE');
  assert.equal(lax.requestUri, '1sip:x');
  // A lone CR ends a line, in the start line and in the headers.
  const cr = mustParse(Buffer.from('BYE sip:a@b SIP/2.0\r\xc7To: <sip:b@c>\r\nCall-ID: c2\rX: 1\r\n\r\n', 'latin1'));
  assert.equal(cr.method, 'BYE');
  assert.equal(cr.callId, 'c2');
});

test('not SIP', () => {
  const notSip: Array<string | Buffer> = [
    'call +1 555 123 4567 now',
    'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: example.com\r\n\r\n',
    'SIP/2.0 2000 OK\r\n\r\n',
    'SIP/2.0 20 OK\r\n\r\n',
    'SIP/2.0200 OK\r\n\r\n',
    'SIP/2.1 200 OK\r\n\r\n',
    'INVITE sip:x SIP/3.0\r\n\r\n',
    'INVITE sip:x SIP/2.0 \r\n\r\n',
    'INVITE sip:x  SIP/2.0\r\n\r\n',
    'INVITE  sip:x SIP/2.0\r\n\r\n',
    'INVITE sip:x\r\n\r\n',
    'INVITE bob SIP/2.0\r\n\r\n',
    'OPTIONS * SIP/2.0\r\n\r\n',
    'The SIP/2.0 spec says INVITE sip:x SIP/2.0\r\n\r\n',
    ' INVITE sip:x SIP/2.0\r\n\r\n',
    '',
    // RTP: version 2, PT 0, then seq/timestamp/SSRC and a PCMU payload.
    Buffer.from([0x80, 0x00, 0x1f, 0x40, 0x00, 0x00, 0xa0, 0x00, 0xde, 0xad, 0xbe, 0xef, ...Array(160).fill(0xff)]),
    // RTP marker bit + dynamic PT that happens to be ASCII 'S'.
    Buffer.from([0x53, 0x49, 0x50, 0x00, 0x0d, 0x0a, 0x0d, 0x0a]),
    // TLS ClientHello record header.
    Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]),
  ];
  for (const x of notSip) {
    const b = typeof x === 'string' ? Buffer.from(x, 'latin1') : x;
    assert.equal(parseSip(b), null, `should not be SIP: ${JSON.stringify(b.toString('latin1').slice(0, 40))}`);
  }
});

test('randomized robustness: 20k mutated messages never throw and stay consistent', () => {
  const corpus = FUZZ_CORPUS;
  const rnd = prng(0x5eed5); // seeded so a failure reproduces
  let parsed = 0;
  let rejected = 0;
  for (let i = 0; i < 20_000; i++) {
    const b = mutate(corpus[i % corpus.length], rnd);
    let m: SipMessage | null;
    try {
      m = parseSip(b);
    } catch (err) {
      assert.fail(`parseSip threw on case ${i} ${JSON.stringify(b.toString('latin1'))}: ${String(err)}`);
    }
    if (m === null) {
      rejected++;
      continue;
    }
    parsed++;
    assert.ok(m.headerLength > 0 && m.headerLength <= b.length, `headerLength out of range on case ${i}`);
    assert.ok(m.body.length <= b.length - m.headerLength);
    assert.ok((m.method === null) !== (m.status === null));
    for (const [name, value] of m.headers) {
      assert.equal(typeof name, 'string');
      assert.equal(typeof value, 'string');
    }
  }
  // Both outcomes must occur, or the mutations are not exercising the parser.
  assert.ok(parsed > 1000, `only ${parsed} mutated messages parsed`);
  assert.ok(rejected > 1000, `only ${rejected} mutated messages rejected`);
});

test('a message the capture cut: its complete headers are read, a last line without its end is left out', () => {
  const msg = sipInvite('cut@pc33');
  const at = (s: string, more: number) => msg.subarray(0, msg.indexOf(s, 0, 'latin1') + more);
  // Cut inside the Call-ID value: no Call-ID rather than a shorter one.
  const inCallId = parseSip(at('Call-ID: cut@pc33', 13), { truncated: true });
  assert.equal(inCallId?.callId, null);
  assert.equal(inCallId?.from?.user, 'alice');
  assert.equal(parseSip(at('Call-ID: cut@pc33', 13))?.callId, 'cut@', 'without the option the fragment is read as the value');
  // Cut right after it: the Call-ID is whole.
  assert.equal(parseSip(at('CSeq:', 0), { truncated: true })?.callId, 'cut@pc33');
  // Cut in the SDP's m= line: no media from a port that lost digits.
  const inSdp = parseSip(at('m=audio 49170', 10), { truncated: true });
  assert.equal(inSdp?.callId, 'cut@pc33');
  assert.deepEqual(inSdp?.sdp?.media ?? [], []);
  // Cut after it: the media line is whole.
  assert.deepEqual(parseSip(at('a=rtpmap:0', 0), { truncated: true })?.sdp?.media.map((m) => m.port), [49170]);
});
