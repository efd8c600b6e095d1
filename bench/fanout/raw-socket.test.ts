import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { Server } from 'socket.io';
import { clientFrame, RawSocket, textFrame } from './raw-socket';

/** A real Socket.IO server with a /agent namespace that checks the auth as the dispatcher's does. */
async function server(): Promise<{ url: string; io: Server; close: () => Promise<void> }> {
  const http = createServer();
  const io = new Server(http, { serveClient: false, maxHttpBufferSize: 1e6 });
  io.of('/agent').use((s, next) => (s.handshake.auth?.token === 'good' ? next() : next(new Error('unauthorized: bad token'))));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  return { url, io, close: () => new Promise<void>((r) => io.close(() => r())) };
}

test('raw socket: joins the namespace, events and acks both ways, a binary attachment arrives as the Buffer it was', async () => {
  const s = await server();
  try {
    const got: Array<{ ev: string; args: unknown[] }> = [];
    s.io.of('/agent').on('connection', (sock) => {
      assert.deepEqual(sock.handshake.auth, { token: 'good', name: 'a1' });
      sock.onAny((ev: string, ...args: unknown[]) => {
        const ack = typeof args[args.length - 1] === 'function' ? (args.pop() as (r: unknown) => void) : null;
        got.push({ ev, args });
        ack?.({ ok: true, ev });
      });
      sock.emit('trace:run', { traceId: 'T1', query: { callId: ['x'] }, result: true }, (a: unknown) => got.push({ ev: 'run-ack', args: [a] }));
    });
    const runs: Array<{ args: unknown[]; ackId: number | null }> = [];
    let ranNow: () => void = () => {};
    const ran = new Promise<void>((r) => (ranNow = r));
    // The server's trace:run comes right behind its CONNECT answer, often in the same read.
    const c = await RawSocket.connect(
      s.url,
      '/agent',
      { token: 'good', name: 'a1' },
      {
        event: (ev, args, ackId) => {
          if (ev === 'trace:run') runs.push({ args, ackId });
          ranNow();
        },
        closed: () => {},
      },
      5000,
    );
    await ran;
    assert.deepEqual(runs[0].args, [{ traceId: 'T1', query: { callId: ['x'] }, result: true }]);
    const acks: unknown[][] = [];
    const hello = new Promise<void>((r) => c.emit('agent:hello', { hostname: 'a1', n: 'é' }, (a) => (acks.push(a), r())));
    await hello;
    // The ack to trace:run, then a binary event built as the simulator builds it: text frame, then the attachment's frame.
    const pcap = Buffer.from([0xd4, 0xc3, 0xb2, 0xa1, 0, 1, 2, 255]);
    const acked = new Promise<unknown[]>((r) => {
      const id = c.takeAckId(r);
      c.write([
        ...textFrame(c.ackHead(runs[0].ackId!), '[{"accepted":true}]'),
        ...textFrame(`${c.eventHead(true)}${id}["trace:result",{"traceId":"T1"`, Buffer.from(',"packets":1,"data":{"_placeholder":true,"num":0}}]')),
        clientFrame(pcap, true),
      ]);
    });
    assert.deepEqual(await acked, [{ ok: true, ev: 'trace:result' }]);
    assert.deepEqual(acks[0], [{ ok: true, ev: 'agent:hello' }]);
    assert.deepEqual(got.find((g) => g.ev === 'run-ack')?.args, [{ accepted: true }]);
    const result = got.find((g) => g.ev === 'trace:result')!.args[0] as { traceId: string; packets: number; data: Buffer };
    assert.equal(result.traceId, 'T1');
    assert.equal(result.packets, 1);
    assert.ok(Buffer.isBuffer(result.data) && result.data.equals(pcap), 'the attachment is the same bytes');
    assert.deepEqual(got.find((g) => g.ev === 'agent:hello')?.args, [{ hostname: 'a1', n: 'é' }]);
    // A large frame (16-bit length) goes through too.
    const big = 'x'.repeat(70_000);
    const bigAck = await new Promise<unknown[]>((r) => c.emit('big', big, r));
    assert.deepEqual(bigAck, [{ ok: true, ev: 'big' }]);
    assert.equal(got.find((g) => g.ev === 'big')?.args[0], big);
    const closed = new Promise<void>((r) => s.io.of('/agent').sockets.forEach((x) => x.once('disconnect', () => r())));
    c.close();
    await closed;
  } finally {
    await s.close();
  }
});

test('raw socket: a refused connection rejects with the server\'s reason', async () => {
  const s = await server();
  try {
    await assert.rejects(RawSocket.connect(s.url, '/agent', { token: 'bad', name: 'a1' }, { event: () => {}, closed: () => {} }, 5000), /connect refused: unauthorized: bad token/);
  } finally {
    await s.close();
  }
});
