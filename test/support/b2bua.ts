import { createSocket, Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import type { SippEndpoint } from './sipp';

/*
 * A small back-to-back user agent over UDP, written for the legs tests: for
 * each INVITE it receives it answers on that side (the A leg) and places a new
 * call with its own Call-ID, From and branch on the other (the B leg), relays
 * the provisional and final responses, ACK and BYE. What ties the two legs is
 * chosen per dialled user, one key at a time, so a test can tell which key
 * linked them. Enough SIP for sipp's UAC and UAS scenarios of
 * test/support/sipp.ts; not a SIP stack.
 */

export type LegTie = 'correlation' | 'session-id' | 'icid' | 'call-id-prefix' | 'media';

export interface B2buaRoute {
  /** The callee (a sipp UAS). */
  target: SippEndpoint;
  /** What the two legs share. Only `media` relays the SDP as it is; the others anchor it (new ends per leg). */
  tie: LegTie;
}

export interface B2buaOptions {
  /** Where it listens and sends from, both sides. */
  at: SippEndpoint;
  /** By the Request-URI's user (the dialled number). */
  routes: Record<string, B2buaRoute>;
  /** Prefix of a B leg's Call-ID with tie `call-id-prefix`. */
  callIdPrefix?: string;
}

export interface B2buaCall {
  aCallId: string;
  bCallId: string;
  tie: LegTie;
}

export interface B2bua {
  /** Calls placed so far, in order. */
  readonly calls: B2buaCall[];
  /** Messages it could not place in a call (a test fails on any). */
  readonly errors: string[];
  close(): Promise<void>;
}

interface Msg {
  start: string;
  headers: Array<[string, string]>;
  body: string;
}

function parse(text: string): Msg | null {
  const split = text.indexOf('\r\n\r\n');
  if (split < 0) return null;
  const lines = text.slice(0, split).split('\r\n');
  const headers: Array<[string, string]> = [];
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':');
    if (c > 0) headers.push([l.slice(0, c).trim(), l.slice(c + 1).trim()]);
  }
  return { start: lines[0], headers, body: text.slice(split + 4) };
}

const get = (m: Msg, name: string) => m.headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1] ?? null;

function build(start: string, headers: Array<[string, string | null]>, body = ''): Buffer {
  const hs = headers.filter((h): h is [string, string] => h[1] !== null).map(([n, v]) => `${n}: ${v}\r\n`).join('');
  const ct = body ? 'Content-Type: application/sdp\r\n' : '';
  return Buffer.from(`${start}\r\n${hs}${ct}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

/** The SDP with its c= and m= rewritten to the B2BUA's own address and a port of the leg's. */
function anchor(sdp: string, addr: string, port: number): string {
  return sdp.replace(/^c=IN IP4 .*$/m, `c=IN IP4 ${addr}`).replace(/^o=(\S+ \S+ \S+) IN IP4 .*$/m, `o=$1 IN IP4 ${addr}`).replace(/^m=audio \d+/m, `m=audio ${port}`);
}

interface Call {
  tie: LegTie;
  a: { addr: string; port: number; invite: Msg; toTag: string };
  b: { callId: string; target: SippEndpoint; fromTag: string; toTag: string | null; cseq: number; ruri: string; byeOf: Msg | null };
  uuid: string;
  /** The Session-ID UUID the B2BUA answers the A side with (the callee's side). */
  answerUuid: string;
  icid: string;
  /** Ports announced for this call's anchored media, per leg. */
  mediaPort: number;
}

export async function startB2bua(opts: B2buaOptions): Promise<B2bua> {
  const sock: Socket = createSocket('udp4');
  await new Promise<void>((ok, ko) => {
    sock.once('error', ko);
    sock.bind(opts.at.port, opts.at.addr, () => ok());
  });
  const me = `${opts.at.addr}:${opts.at.port}`;
  const byA = new Map<string, Call>();
  const byB = new Map<string, Call>();
  const calls: B2buaCall[] = [];
  const errors: string[] = [];
  let n = 0;
  const send = (buf: Buffer, addr: string, port: number) => sock.send(buf, port, addr);
  const branch = () => `z9hG4bK-b2b-${randomBytes(6).toString('hex')}`;

  /** A response to the A leg's request `req`, with the B2BUA's To tag and the tie's headers. */
  const toA = (call: Call, req: Msg, status: string, body = '') => {
    const to = get(req, 'To')!;
    send(
      build(`SIP/2.0 ${status}`, [
        ['Via', get(req, 'Via')],
        ['From', get(req, 'From')],
        ['To', status.startsWith('100') || to.includes('tag=') ? to : `${to};tag=${call.a.toTag}`],
        ['Call-ID', get(req, 'Call-ID')],
        ['CSeq', get(req, 'CSeq')],
        ['Contact', status.startsWith('100') ? null : `<sip:${me}>`],
        ['Session-ID', call.tie === 'session-id' ? `${call.answerUuid};remote=${call.uuid}` : null],
        ['P-Charging-Vector', call.tie === 'icid' ? `icid-value=${call.icid};orig-ioi=b2bua.test` : null],
      ], body),
      call.a.addr,
      call.a.port,
    );
  };
  /** A request on the B leg. */
  const toB = (call: Call, method: string, cseq: number, body = '') => {
    const b = call.b;
    send(
      build(`${method} ${b.ruri} SIP/2.0`, [
        ['Via', `SIP/2.0/UDP ${me};branch=${branch()}`],
        ['From', `b2bua <sip:b2bua@${me}>;tag=${b.fromTag}`],
        ['To', `<${b.ruri}>${b.toTag ? `;tag=${b.toTag}` : ''}`],
        ['Call-ID', b.callId],
        ['CSeq', `${cseq} ${method}`],
        ['Contact', `<sip:b2bua@${me}>`],
        ['Max-Forwards', '70'],
        ['X-CID', call.tie === 'correlation' ? get(call.a.invite, 'Call-ID') : null],
        ['Session-ID', call.tie === 'session-id' ? `${call.uuid};remote=00000000000000000000000000000000` : null],
        ['P-Charging-Vector', call.tie === 'icid' ? `icid-value=${call.icid};orig-ioi=b2bua.test` : null],
      ], body),
      b.target.addr,
      b.target.port,
    );
  };

  sock.on('message', (data, rinfo) => {
    const m = parse(data.toString('latin1'));
    if (!m) return void errors.push(`unparsable datagram from ${rinfo.address}:${rinfo.port}`);
    const callId = get(m, 'Call-ID') ?? '';
    const isResponse = m.start.startsWith('SIP/2.0 ');
    if (!isResponse) {
      const method = m.start.split(' ')[0];
      if (method === 'INVITE') {
        const known = byA.get(callId);
        if (known) return void toA(known, m, '100 Trying'); // a retransmission
        const user = /^INVITE sip:([^@]+)@/.exec(m.start)?.[1] ?? '';
        const route = opts.routes[user];
        if (!route) return void errors.push(`no route for ${user}`);
        n++;
        const bCallId = route.tie === 'call-id-prefix' ? `${opts.callIdPrefix ?? 'b2b-'}${callId}` : `b2b${n}-${randomBytes(8).toString('hex')}@${opts.at.addr}`;
        const call: Call = {
          tie: route.tie,
          a: { addr: rinfo.address, port: rinfo.port, invite: m, toTag: randomBytes(4).toString('hex') },
          b: { callId: bCallId, target: route.target, fromTag: randomBytes(4).toString('hex'), toTag: null, cseq: 1, ruri: `sip:${user}@${route.target.addr}:${route.target.port}`, byeOf: null },
          uuid: randomBytes(16).toString('hex'),
          answerUuid: randomBytes(16).toString('hex'),
          icid: `icid-${randomBytes(6).toString('hex')}`,
          mediaPort: 30000 + 4 * n,
        };
        byA.set(callId, call);
        byB.set(bCallId, call);
        calls.push({ aCallId: callId, bCallId, tie: route.tie });
        toA(call, m, '100 Trying');
        const sdp = route.tie === 'media' ? m.body : anchor(m.body, opts.at.addr, call.mediaPort);
        toB(call, 'INVITE', 1, sdp);
        return;
      }
      const call = byA.get(callId);
      if (!call) return void errors.push(`${method} for unknown call ${callId}`);
      if (method === 'ACK') return void toB(call, 'ACK', 1);
      if (method === 'BYE') {
        call.b.byeOf = m;
        return void toB(call, 'BYE', ++call.b.cseq);
      }
      return void errors.push(`unexpected ${method}`);
    }
    // A response on the B leg.
    const call = byB.get(callId);
    if (!call) return void errors.push(`response for unknown call ${callId}`);
    const status = m.start.slice(8);
    const cseq = get(m, 'CSeq') ?? '';
    const tag = /;tag=([^;>\s]+)/.exec(get(m, 'To') ?? '')?.[1];
    if (tag) call.b.toTag = tag;
    if (cseq.endsWith('INVITE')) {
      if (status.startsWith('100')) return;
      const sdp = m.body ? (call.tie === 'media' ? m.body : anchor(m.body, opts.at.addr, call.mediaPort + 2)) : '';
      toA(call, call.a.invite, status, sdp);
    } else if (cseq.endsWith('BYE') && call.b.byeOf) {
      toA(call, call.b.byeOf, status);
    }
  });

  return {
    calls,
    errors,
    close: () => new Promise<void>((ok) => sock.close(() => ok())),
  };
}
