import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSdp } from './sdp';

test('session-level c= applies to every m= without its own', () => {
  const sdp = parseSdp(
    Buffer.from(
      'v=0\r\n' +
        'o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5\r\n' +
        's=SDP Seminar\r\n' +
        'c=IN IP4 224.2.17.12/127\r\n' +
        't=2873397496 2873404696\r\n' +
        'a=recvonly\r\n' +
        'm=audio 49170 RTP/AVP 0\r\n' +
        'm=video 51372 RTP/AVP 99\r\n' +
        'c=IN IP4 224.2.17.14/127/3\r\n' +
        'a=rtpmap:99 h263-1998/90000\r\n',
    ),
  );
  assert.deepEqual(sdp, {
    connection: '224.2.17.12',
    media: [
      { type: 'audio', port: 49170, addr: '224.2.17.12', proto: 'RTP/AVP', rtcpPort: null, rtcpAddr: null, rtpmap: [] },
      { type: 'video', port: 51372, addr: '224.2.17.14', proto: 'RTP/AVP', rtcpPort: null, rtcpAddr: null, rtpmap: [[99, 'h263-1998/90000']] },
    ],
  });
});

test('media-level c= only, port 0 kept, port/count and T.38', () => {
  const sdp = parseSdp(
    'v=0\n' +
      'o=- 1 2 IN IP4 192.0.2.1\n' +
      's=-\n' +
      't=0 0\n' +
      'm=audio 0 RTP/AVP 0\n' +
      'c=IN IP4 192.0.2.10\n' +
      'm=video 5004/2 RTP/AVP 96\n' +
      'm=image 6000 udptl t38\n' +
      'c=IN IP4 192.0.2.11\n',
  );
  assert.deepEqual(sdp, {
    connection: null,
    media: [
      { type: 'audio', port: 0, addr: '192.0.2.10', proto: 'RTP/AVP', rtcpPort: null, rtcpAddr: null, rtpmap: [] },
      { type: 'video', port: 5004, addr: null, proto: 'RTP/AVP', rtcpPort: null, rtcpAddr: null, rtpmap: [] },
      { type: 'image', port: 6000, addr: '192.0.2.11', proto: 'udptl', rtcpPort: null, rtcpAddr: null, rtpmap: [] },
    ],
  });
});

test('IPv6 connection addresses', () => {
  const sdp = parseSdp('v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:DB8::1\r\nt=0 0\r\nm=audio 40000 RTP/SAVP 0\r\n');
  assert.deepEqual(sdp, { connection: '2001:DB8::1', media: [{ type: 'audio', port: 40000, addr: '2001:DB8::1', proto: 'RTP/SAVP', rtcpPort: null, rtcpAddr: null, rtpmap: [] }] });
});

test('malformed m= and c= lines are skipped; a bad m= still owns its c=', () => {
  const sdp = parseSdp(
    'v=0\r\n' +
      'c=IN IP4\r\n' +
      'c=IN IPX 1.2.3.4\r\n' +
      'c=XX IP4 1.2.3.4\r\n' +
      'c=IN IP4 10.0.0.1\r\n' +
      'm=audio 70000 RTP/AVP 0\r\n' +
      'c=IN IP4 10.9.9.9\r\n' +
      'm=audio x RTP/AVP 0\r\n' +
      'm=audio 1234\r\n' +
      'm=audio 8000 RTP/AVP 0 \r\n',
  );
  assert.deepEqual(sdp, { connection: '10.0.0.1', media: [{ type: 'audio', port: 8000, addr: '10.0.0.1', proto: 'RTP/AVP', rtcpPort: null, rtcpAddr: null, rtpmap: [] }] });
});

test('not SDP', () => {
  assert.equal(parseSdp(''), null);
  assert.equal(parseSdp('hello world'), null);
  assert.equal(parseSdp('v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nc=IN IP4 1.1.1.1\r\nt=0 0\r\n'), null);
  assert.equal(parseSdp('m=audio 1000 RTP/AVP 0\r\n'), null);
  assert.equal(parseSdp(Buffer.from([0x80, 0x00, 0x76, 0x3d, 0x30, 0x0a, 0x6d, 0x3d])), null);
});

test('arbitrary bytes never throw', () => {
  let a = 12345;
  const rnd = () => {
    a = (Math.imul(a, 1103515245) + 12345) >>> 0;
    return a >>> 16;
  };
  const alphabet = Buffer.from('vmc=IN P46 0123456789./:\r\n\t RTP/AVPaudio', 'latin1');
  let parsed = 0;
  for (let i = 0; i < 5000; i++) {
    const b = Buffer.alloc(rnd() % 200);
    for (let j = 0; j < b.length; j++) b[j] = rnd() % 8 === 0 ? rnd() & 0xff : alphabet[rnd() % alphabet.length];
    const s = parseSdp(Buffer.concat([Buffer.from('v=0\nm=audio 1 RTP/AVP 0\n'), b]));
    assert.ok(s !== null);
    parsed++;
    for (const m of s.media) assert.ok(Number.isInteger(m.port) && m.port >= 0 && m.port <= 65535);
    parseSdp(b);
  }
  assert.equal(parsed, 5000);
});

test('a=rtcp (RFC 3605) and a=rtpmap belong to their media section; junk in them is skipped', () => {
  const sdp = parseSdp(
    'v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp:4005\r\n' +
      'm=audio 5000 RTP/AVP 8\r\na=rtcp:53020 IN IP4 198.51.100.4\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:200 X/1\r\na=rtpmap:9 \x1b[2J\r\na=rtcp:99999\r\n',
  );
  assert.deepEqual(sdp?.media.map((m) => [m.port, m.rtcpPort, m.rtcpAddr, m.rtpmap]), [
    [4000, 4005, null, [[0, 'PCMU/8000'], [101, 'telephone-event/8000']]],
    [5000, 53020, '198.51.100.4', [[8, 'PCMA/8000']]],
  ]);
});
