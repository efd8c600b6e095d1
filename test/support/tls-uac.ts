/**
 * One SIP call over TLS through a proxy, for the HEP tests: Debian's sipp
 * is built without TLS, so the caller here is node:tls (a UAC sending
 * INVITE, ACK, BYE on one connection) and the callee a small UDP UAS
 * (100, 180, 200 with SDP; 200 to BYE). Loopback only; every wait bounded.
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:tls';
import { randomBytes } from 'node:crypto';
import type { SippEndpoint } from './sipp';

const WAIT_MS = 10_000;

function framed(buf: Buffer): { msg: string; rest: Buffer } | null {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const head = buf.subarray(0, end).toString('latin1');
  const len = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
  if (buf.length < end + 4 + len) return null;
  return { msg: buf.subarray(0, end + 4 + len).toString('latin1'), rest: buf.subarray(end + 4 + len) };
}

const headerOf = (msg: string, name: string) => new RegExp(`\\r\\n${name}:\\s*([^\\r\\n]*)`, 'i').exec(msg)?.[1] ?? '';

const SDP = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n';

/** Makes the call; resolves with its Call-ID once the BYE is answered. */
export async function tlsCall(o: { proxy: SippEndpoint; uas: SippEndpoint; number: string }): Promise<string> {
  const uas = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    uas.once('error', reject);
    uas.bind(o.uas.port, o.uas.addr, () => resolve());
  });
  const toTag = randomBytes(4).toString('hex');
  uas.on('message', (m, ri) => {
    const msg = m.toString('latin1');
    if (msg.startsWith('SIP/2.0')) return;
    const method = msg.slice(0, msg.indexOf(' '));
    const vias = msg.split('\r\n').filter((l) => /^via:/i.test(l)).join('\r\n');
    const reply = (status: string, withTag: boolean, body = '') =>
      uas.send(Buffer.from(
        `SIP/2.0 ${status}\r\n${vias}\r\nFrom: ${headerOf(msg, 'From')}\r\nTo: ${headerOf(msg, 'To')}${withTag && !/;tag=/.test(headerOf(msg, 'To')) ? `;tag=${toTag}` : ''}\r\n` +
        `Call-ID: ${headerOf(msg, 'Call-ID')}\r\nCSeq: ${headerOf(msg, 'CSeq')}\r\nContact: <sip:uas@${o.uas.addr}:${o.uas.port}>\r\n` +
        (body ? 'Content-Type: application/sdp\r\n' : '') + `Content-Length: ${body.length}\r\n\r\n${body}`, 'latin1'), ri.port, ri.address);
    if (method === 'INVITE') {
      reply('100 Trying', false);
      reply('180 Ringing', true);
      reply('200 OK', true, SDP);
    } else if (method === 'BYE') reply('200 OK', true);
  });
  const callId = `tls-${randomBytes(6).toString('hex')}@127.0.0.1`;
  const sock = connect({ host: o.proxy.addr, port: o.proxy.port, rejectUnauthorized: false });
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('secureConnect', () => resolve());
      sock.once('error', reject);
      setTimeout(() => reject(new Error('TLS connect to the proxy timed out')), WAIT_MS).unref();
    });
    const local = `127.0.0.1:${sock.localPort}`;
    const fromTag = randomBytes(4).toString('hex');
    let buf: Buffer = Buffer.alloc(0);
    const waiting: Array<(m: string) => void> = [];
    const got: string[] = [];
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (let f = framed(buf); f; f = framed(buf)) {
        buf = f.rest;
        const w = waiting.shift();
        if (w) w(f.msg);
        else got.push(f.msg);
      }
    });
    const next = () => new Promise<string>((resolve, reject) => {
      const m = got.shift();
      if (m !== undefined) return resolve(m);
      waiting.push(resolve);
      setTimeout(() => reject(new Error('no answer from the proxy over TLS')), WAIT_MS).unref();
    });
    const request = (method: string, cseq: number, to: string, body = '') =>
      `${method} sip:${o.number}@${o.proxy.addr}:${o.proxy.port};transport=tls SIP/2.0\r\n` +
      `Via: SIP/2.0/TLS ${local};branch=z9hG4bK-${randomBytes(5).toString('hex')};rport\r\nMax-Forwards: 70\r\n` +
      `From: <sip:bob@127.0.0.1>;tag=${fromTag}\r\nTo: ${to}\r\nCall-ID: ${callId}\r\nCSeq: ${cseq} ${method}\r\n` +
      `Contact: <sip:bob@${local};transport=tls>\r\n` + (body ? 'Content-Type: application/sdp\r\n' : '') + `Content-Length: ${body.length}\r\n\r\n${body}`;
    // The final answer to a request: provisional ones (and late ones to the request before) may come first, in any order.
    const finalTo = async (cseq: string): Promise<string> => {
      for (let i = 0; i < 10; i++) {
        const m = await next();
        if (headerOf(m, 'CSeq') === cseq && /^SIP\/2\.0 [2-6]\d\d/.test(m)) return m;
      }
      throw new Error(`no final answer to ${cseq} over TLS`);
    };
    sock.write(request('INVITE', 1, `<sip:${o.number}@127.0.0.1>`, SDP));
    const ok = await finalTo('1 INVITE');
    if (!/^SIP\/2\.0 200/.test(ok)) throw new Error(`INVITE over TLS answered: ${ok.split('\r\n')[0]}`);
    const to = headerOf(ok, 'To');
    sock.write(request('ACK', 1, to));
    sock.write(request('BYE', 2, to));
    const bye = await finalTo('2 BYE');
    if (!/^SIP\/2\.0 200/.test(bye)) throw new Error(`BYE over TLS answered: ${bye.split('\r\n')[0]}`);
    return callId;
  } finally {
    sock.destroy();
    uas.close();
  }
}
