import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isSipKeepalive, sipDatagramLength, sipMessageLength, sipStartLikely, sipStartLineEnd } from './framing';
import { prng, sipInvite, sipResponse } from '../../test/support/packets';

const b = (s: string) => Buffer.from(s, 'latin1');

test('sipStartLineEnd accepts request and status lines, CRLF or LF', () => {
  const req = 'INVITE sip:bob@example.com SIP/2.0\r\n';
  assert.equal(sipStartLineEnd(b(req + 'Via: x\r\n'), 0), req.length);
  assert.equal(sipStartLineEnd(b('OPTIONS sips:host;transport=tcp SIP/2.0\nX: y\n'), 0), 'OPTIONS sips:host;transport=tcp SIP/2.0\n'.length);
  assert.equal(sipStartLineEnd(b('ACK tel:+15551234567 SIP/2.0\r\n'), 0), 30);
  const st = 'SIP/2.0 180 Ringing\r\n';
  assert.equal(sipStartLineEnd(b(st), 0), st.length);
  assert.equal(sipStartLineEnd(b('SIP/2.0 200 \r\n'), 0), 14);
  assert.equal(sipStartLineEnd(b('SIP/2.0 200\r\n'), 0), 13);
  assert.equal(sipStartLineEnd(b('SIP/2.0 603 Décliné\r\n'), 0), 'SIP/2.0 603 Décliné\r\n'.length);
  // A method that merely begins with "S".
  assert.equal(sipStartLineEnd(b('SUBSCRIBE sip:a@b SIP/2.0\r\n'), 0), 27);
  // Methods are RFC 3261 tokens, not only letters; long ones too.
  for (const m of ['INV1TE', 'X-NOTIFY2.v1', "PING_1!%*+`'~", '1', 'A'.repeat(40)]) {
    const line = `${m} sip:a@b SIP/2.0\r\n`;
    assert.equal(sipStartLineEnd(b(line), 0), line.length, line);
  }
  // Status codes are any three digits (extension-code).
  for (const st of ['SIP/2.0 099 Low\r\n', 'SIP/2.0 700 High\r\n']) assert.equal(sipStartLineEnd(b(st), 0), st.length, st);
  // Methods and Request-URIs RFC 3261 forbids but tshark shows as requests, on whole lines only.
  for (const line of ['X\xe6Y urn:bob@example.\x93om SIP/2.0\r\n', 'A@B x:y SIP/2.0\n', 'X\x01 1:2 SIP/2.0\r\n', 'INVITE sip: SIP/2.0\r\n', 'INVITE sip:a\x01b SIP/2.0\r\n']) {
    assert.equal(sipStartLineEnd(b(line), 0), line.length, JSON.stringify(line));
    assert.equal(sipStartLikely(b(line.slice(0, -3)), 0, line.length - 3), false, JSON.stringify(line));
  }
  // A lone CR ends the start line as tshark reads it.
  assert.equal(sipStartLineEnd(b('BYE sip:a@b SIP/2.0\rTo: x\r\n'), 0), 20);
  // The reason phrase is opaque to the line end: control bytes do not void it.
  for (const r of ['O\x00K', 'Ring\x07ing \x1b[8m', '\x7f']) {
    const line = `SIP/2.0 180 ${r}\r\n`;
    assert.equal(sipStartLineEnd(b(line + 'Via: x\r\n'), 0), line.length, JSON.stringify(line));
  }
  // At an offset.
  const two = b('xx' + req);
  assert.equal(sipStartLineEnd(two, 2), 2 + req.length);
});

test('sipStartLineEnd rejects text, HTTP, binary and near misses', () => {
  const bad = [
    '',
    'INVITE sip:bob@example.com SIP/2.0', // no line end yet
    'Call me at 555-123-4567 about SIP/2.0 pricing\r\n',
    'Your number is 5551234567\r\n',
    'GET /index.html HTTP/1.1\r\n',
    'HTTP/1.1 200 OK\r\n',
    'SIP/2.0 2000 OK\r\n',
    'SIP/2.1 200 OK\r\n',
    'SIP/2.0  200 OK\r\n',
    'INVITE  sip:a@b SIP/2.0\r\n',
    'INVITE sip:a@b SIP/2.0 \r\n',
    'INVITE sip:a@b SIP/3.0\r\n',
    'INVITE :a@b SIP/2.0\r\n',
    'INVITE bob@example.com SIP/2.0\r\n', // no scheme
    ' INVITE sip:a@b SIP/2.0\r\n',
    'A'.repeat(8200) + ' sip:a@b SIP/2.0\r\n', // past the longest start line
    '\x80INVITE sip:a@b SIP/2.0\r\n', // tshark wants a printable first byte
    '\x01INVITE sip:a@b SIP/2.0\r\n',
    'IN\x00VITE sip:a@b SIP/2.0\r\n', // nor NUL
  ];
  for (const s of bad) assert.equal(sipStartLineEnd(b(s), 0), -1, JSON.stringify(s));
  // RTP: version 2 header, payload type 0, then random payload that happens to contain "SIP".
  const rtp = Buffer.concat([Buffer.from([0x80, 0x00, 0x12, 0x34, 0, 0, 0, 160, 1, 2, 3, 4]), b('SIP/2.0 200 OK\r\n')]);
  assert.equal(sipStartLineEnd(rtp, 0), -1);
});

test('sipStartLikely accepts a start line cut short only past its telltale part', () => {
  const yes = ['INVITE sip:bob@exa', 'ACK sip:', 'SIP/2.0 1', 'SIP/2.0 180 Ring', 'BYE sip:a@b SIP/2', 'OPTIONS sip:a SIP/2.0\r\n'];
  for (const s of yes) assert.equal(sipStartLikely(b(s), 0, s.length), true, s);
  const no = ['INV', 'INVITE sip', 'more garbage', 'hello world, how are you', 'SIP/2.0 ', 'SIP/2.0 x', 'BYE sip:a@b HTTP', ''];
  for (const s of no) assert.equal(sipStartLikely(b(s), 0, s.length), false, s);
});

test('sipMessageLength frames by Content-Length, long or compact, any case, spaces around the colon', () => {
  const inv = sipInvite();
  assert.equal(sipMessageLength(inv, 0), inv.length);
  const body = 'hello';
  for (const h of ['Content-Length: 5', 'content-length:5', 'CONTENT-LENGTH   :   5  ', 'l: 5', 'L:5', 'l :\t5']) {
    const m = b(`MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n${h}\r\n\r\n${body}`);
    assert.equal(sipMessageLength(m, 0), m.length, h);
  }
  // Bare LF line ends.
  const lf = b('MESSAGE sip:a@b SIP/2.0\nl: 3\n\nabc');
  assert.equal(sipMessageLength(lf, 0), lf.length);
  // Missing Content-Length: no body in a stream.
  const noCl = b('OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n');
  assert.equal(sipMessageLength(Buffer.concat([noCl, b('garbage')]), 0), noCl.length);
  // Followed by another message, and at an offset.
  const two = Buffer.concat([inv, sipResponse()]);
  assert.equal(sipMessageLength(two, 0), inv.length);
  assert.equal(sipMessageLength(two, inv.length), two.length - inv.length);
  // Headers named like Content-Length but not it do not count.
  const lookalike = b('MESSAGE sip:a@b SIP/2.0\r\nX-Content-Length: 99\r\nll: 7\r\nl: 2\r\n\r\nhi');
  assert.equal(sipMessageLength(lookalike, 0), lookalike.length);
});

test('sipMessageLength asks for more bytes until the message is whole', () => {
  const inv = sipInvite();
  for (let n = 0; n < inv.length; n++) {
    assert.equal(sipMessageLength(inv.subarray(0, n), 0), 0, `prefix ${n}`);
  }
});

test('sipMessageLength rejects what is not a SIP message or has a malformed header', () => {
  const bad = [
    'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
    'MESSAGE sip:a@b SIP/2.0\r\nContent-Length: abc\r\n\r\n',
    'MESSAGE sip:a@b SIP/2.0\r\nContent-Length:\r\n\r\n',
    'MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 5 5\r\n\r\nhello',
    'MESSAGE sip:a@b SIP/2.0\r\nContent-Length: -5\r\n\r\n',
    'MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 1234567890\r\n\r\n',
    'MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 5\r\nl: 6\r\n\r\nhello!',
    'MESSAGE sip:a@b SIP/2.0\r\nno colon here\r\n\r\n',
    'MESSAGE sip:a@b SIP/2.0\r\n: empty name\r\n\r\n',
    'MESSAGE sip:a@b SIP/2.0\r\n folded first\r\n\r\n',
    'MESSAGE sip:a@b SIP/2.0\r\nl: 0\r\r\n\r\n',
  ];
  for (const s of bad) assert.equal(sipMessageLength(b(s), 0), -1, JSON.stringify(s));
  // Header section over 64 KiB, complete or not.
  const big = 'MESSAGE sip:a@b SIP/2.0\r\n' + 'X-Pad: '.concat('a'.repeat(1000), '\r\n').repeat(70);
  assert.equal(sipMessageLength(b(big), 0), -1);
  assert.equal(sipMessageLength(b(big + '\r\n'), 0), -1);
  // A start line that never ends.
  assert.equal(sipMessageLength(b('MESSAGE sip:' + 'a'.repeat(9000)), 0), -1);
  // Same Content-Length twice is fine.
  const dup = b('MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 2\r\nl: 2\r\n\r\nhi');
  assert.equal(sipMessageLength(dup, 0), dup.length);
  // A folded header after the first is fine.
  const fold = b('MESSAGE sip:a@b SIP/2.0\r\nSubject: a\r\n  b\r\nl: 0\r\n\r\n');
  assert.equal(sipMessageLength(fold, 0), fold.length);
});

test('sipDatagramLength: without Content-Length the body runs to the end of the datagram', () => {
  const noCl = b('MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nbody bytes');
  assert.equal(sipDatagramLength(noCl, 0, noCl.length), noCl.length);
  const cl = b('MESSAGE sip:a@b SIP/2.0\r\nl: 4\r\n\r\nbodyTRAILER');
  assert.equal(sipDatagramLength(cl, 0, cl.length), cl.length - 'TRAILER'.length);
  const short = b('MESSAGE sip:a@b SIP/2.0\r\nl: 40\r\n\r\nbody');
  assert.equal(sipDatagramLength(short, 0, short.length), short.length);
  assert.equal(sipDatagramLength(b('MESSAGE sip:a@b SIP/2.0\r\nl: 4\r\n'), 0, 34), -1);
});

test('isSipKeepalive', () => {
  assert.equal(isSipKeepalive(b('\r\n\r\n'), 0, 4), true);
  assert.equal(isSipKeepalive(b('\r\n'), 0, 2), true);
  assert.equal(isSipKeepalive(b('x\r\n'), 1, 3), true);
  assert.equal(isSipKeepalive(b('\r\nx'), 0, 3), false);
  assert.equal(isSipKeepalive(b(''), 0, 0), false);
  assert.equal(isSipKeepalive(b('\r\n'), 0, 9), true);
});

test('framing never throws on random or mutated input', () => {
  const rnd = prng(5060);
  const seeds = [sipInvite(), sipResponse(), b('MESSAGE sip:a@b SIP/2.0\nl: 3\n\nabc')];
  for (let i = 0; i < 20000; i++) {
    let buf: Buffer;
    if (i % 4 === 0) {
      buf = Buffer.alloc(Math.floor(rnd() * 200));
      for (let j = 0; j < buf.length; j++) buf[j] = Math.floor(rnd() * 256);
    } else {
      buf = Buffer.from(seeds[i % seeds.length]);
      const flips = 1 + Math.floor(rnd() * 4);
      for (let j = 0; j < flips; j++) {
        const p = Math.floor(rnd() * buf.length);
        buf[p] = [0x0d, 0x0a, 0x20, 0x3a, 0x30 + Math.floor(rnd() * 10), Math.floor(rnd() * 256)][Math.floor(rnd() * 6)];
      }
      buf = buf.subarray(0, Math.floor(rnd() * (buf.length + 1)));
    }
    const off = buf.length > 0 ? Math.floor(rnd() * 3) % buf.length : 0;
    const e = sipStartLineEnd(buf, off);
    assert.ok(e === -1 || (e > off && e <= buf.length));
    const m = sipMessageLength(buf, off);
    assert.ok(m === -1 || m === 0 || (m > 0 && off + m <= buf.length));
    const d = sipDatagramLength(buf, off, buf.length);
    assert.ok(d === -1 || (d > 0 && off + d <= buf.length));
    isSipKeepalive(buf, off, buf.length);
    sipStartLikely(buf, off, buf.length);
  }
});
