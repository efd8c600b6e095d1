import { createHash, randomBytes } from 'node:crypto';
import { connect, Socket } from 'node:net';

/*
 * The least a simulated agent needs of a Socket.IO connection, written as
 * frames by hand: a WebSocket over one TCP connection (RFC 6455), Engine.IO
 * v4 packets in its frames, Socket.IO v5 packets in those, for one
 * namespace. bench/fanout runs thousands of agents on the dispatcher's own
 * two cores; socket.io-client spent about 250 µs of CPU an agent in a
 * trace's start (three writes, an emitter chain, the parser's binary walk),
 * more than the dispatcher, so the bench measured its own agents. Here an
 * agent's answer is a few strings joined to bytes made before the run, and
 * frames that go together leave in one write.
 *
 * What the dispatcher receives is what socket.io-client sends (the same
 * packets, a JSON text frame then the binary attachment for a Buffer), with
 * one difference a server cannot see: the masking key is zero. A client must
 * mask its frames and the server unmasks them as it would any key; the XOR
 * is the client's cost, which a real agent pays on its own machine.
 *
 * Not handled, since the dispatcher never sends them to an agent: binary
 * packets, fragmented frames, compression (not offered in the handshake).
 * Any of them ends the connection with an error, as does a frame over
 * MAX_FRAME bytes.
 */

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_FRAME = 4 * 1024 * 1024;
/** The HTTP answer to the upgrade, whole, within this many bytes. */
const MAX_HANDSHAKE = 16 * 1024;
const OP_TEXT = 1;
const OP_BINARY = 2;
const OP_CLOSE = 8;
const OP_PING = 9;
const OP_PONG = 10;

/** A client frame's header for `len` payload bytes, masked with a zero key (so the payload goes as it is). */
function frameHeader(opcode: number, len: number): Buffer {
  if (len < 126) return Buffer.from([0x80 | opcode, 0x80 | len, 0, 0, 0, 0]);
  if (len < 65536) return Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 0xff, 0, 0, 0, 0]);
  const h = Buffer.alloc(14);
  h[0] = 0x80 | opcode;
  h[1] = 0x80 | 127;
  h.writeBigUInt64BE(BigInt(len), 2);
  return h;
}

/** One client frame, header and payload. */
export function clientFrame(payload: Buffer, binary = false): Buffer {
  return Buffer.concat([frameHeader(binary ? OP_BINARY : OP_TEXT, payload.length), payload]);
}

/** A text frame of `parts` joined (strings as UTF-8, Buffers as they are): no copy of the parts made ahead. */
export function textFrame(...parts: Array<string | Buffer>): Buffer[] {
  const bufs = parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p));
  const len = bufs.reduce((a, b) => a + b.length, 0);
  return [frameHeader(OP_TEXT, len), ...bufs];
}

export interface RawSocketHandlers {
  /** A Socket.IO EVENT on the namespace; `ackId` is null when the server wants no ack. */
  event(name: string, args: unknown[], ackId: number | null): void;
  /** The connection ended or broke (once). */
  closed(reason: string): void;
}

/**
 * One agent's connection. connect() resolves once the namespace accepted
 * it (Socket.IO's CONNECT answered); emit() and ack() write at once.
 */
export class RawSocket {
  private input: Buffer = Buffer.alloc(0);
  private handshaken = false;
  private nextAckId = 0;
  private readonly acks = new Map<number, (args: unknown[]) => void>();
  private ended = false;
  private readonly prefix: string;
  private onConnect: ((err: Error | null) => void) | null = null;

  private constructor(
    private readonly sock: Socket,
    private readonly nsp: string,
    private readonly auth: object,
    private readonly key: string,
    private readonly handlers: RawSocketHandlers,
  ) {
    this.prefix = nsp === '/' ? '' : `${nsp},`;
  }

  /**
   * `url` is http://host:port; `nsp` the namespace ("/agent"); `auth` what io(url, { auth }) would send.
   * The handlers are given here: what the server sends right after the namespace's CONNECT can come in the same read.
   */
  static connect(url: string, nsp: string, auth: object, handlers: RawSocketHandlers, timeoutMs: number): Promise<RawSocket> {
    const u = new URL(url);
    if (u.protocol !== 'http:') return Promise.reject(new Error(`only http:// URLs are simulated, not ${u.protocol}`));
    const key = randomBytes(16).toString('base64');
    const sock = connect({ host: u.hostname, port: Number(u.port || 80) });
    sock.setNoDelay(true);
    const s = new RawSocket(sock, nsp, auth, key, handlers);
    return new Promise<RawSocket>((resolve, reject) => {
      const t = setTimeout(() => s.fail(`no connection to ${nsp} within ${timeoutMs / 1000} s`), timeoutMs);
      s.onConnect = (err) => {
        clearTimeout(t);
        s.onConnect = null;
        if (err) reject(err);
        else resolve(s);
      };
      sock.on('connect', () => {
        sock.write(
          `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      sock.on('data', (d: Buffer) => s.onData(d));
      sock.on('error', (e) => s.fail(e.message));
      sock.on('close', () => s.fail('connection closed'));
    });
  }

  /** Emits `name` with `data`; with `ack`, its answer's arguments go there. */
  emit(name: string, data: unknown, ack?: (args: unknown[]) => void): void {
    const id = ack ? this.takeAckId(ack) : '';
    this.write(textFrame(`42${this.prefix}${id}${JSON.stringify([name, data])}`));
  }

  /** A new ack id whose answer goes to `ack`: for a packet built by the caller. */
  takeAckId(ack: (args: unknown[]) => void): number {
    const id = this.nextAckId++;
    this.acks.set(id, ack);
    return id;
  }

  /** The text that starts an EVENT packet of this namespace ("42/agent,"), or a BINARY_EVENT's with one attachment. */
  eventHead(binary: boolean): string {
    return `${binary ? '451-' : '42'}${this.prefix}`;
  }

  /** The text that starts the ACK packet for `id` ("43/agent,7"). */
  ackHead(id: number): string {
    return `43${this.prefix}${id}`;
  }

  /** Frames (each header and payload parts) in one write to the socket. */
  write(parts: Buffer[]): void {
    if (this.ended) return;
    this.sock.write(parts.length === 1 ? parts[0] : Buffer.concat(parts));
  }

  /** Acks without waiting on it any more (the connection is going away, or the bench stopped waiting). */
  dropAcks(): number {
    const n = this.acks.size;
    this.acks.clear();
    return n;
  }

  close(): void {
    if (this.ended) return;
    this.write(textFrame(`41${this.prefix}`));
    this.ended = true;
    this.sock.end();
  }

  private fail(reason: string): void {
    if (this.ended && !this.onConnect) return;
    this.ended = true;
    this.sock.destroy();
    if (this.onConnect) this.onConnect(new Error(reason));
    else this.handlers.closed(reason);
  }

  private onData(d: Buffer): void {
    this.input = this.input.length ? Buffer.concat([this.input, d]) : d;
    if (!this.handshaken && !this.readHandshake()) return;
    let off = 0;
    // Bounded by the input: each pass takes a whole frame or stops.
    while (!this.ended && this.input.length - off >= 2) {
      const b0 = this.input[off];
      const b1 = this.input[off + 1];
      if (b1 & 0x80) return this.fail('the server masked a frame');
      if (!(b0 & 0x80) || (b0 & 0x0f) === 0) return this.fail('a fragmented frame (not simulated)');
      if (b0 & 0x70) return this.fail('a frame with RSV bits (no extension was offered)');
      let len = b1 & 0x7f;
      let head = 2;
      if (len === 126) {
        if (this.input.length - off < 4) break;
        len = this.input.readUInt16BE(off + 2);
        head = 4;
      } else if (len === 127) {
        if (this.input.length - off < 10) break;
        const big = this.input.readBigUInt64BE(off + 2);
        if (big > BigInt(MAX_FRAME)) return this.fail(`a frame of ${big} bytes (over ${MAX_FRAME})`);
        len = Number(big);
        head = 10;
      }
      if (len > MAX_FRAME) return this.fail(`a frame of ${len} bytes (over ${MAX_FRAME})`);
      if (this.input.length - off < head + len) break;
      const payload = this.input.subarray(off + head, off + head + len);
      off += head + len;
      this.onFrame(b0 & 0x0f, payload);
    }
    this.input = off >= this.input.length ? Buffer.alloc(0) : this.input.subarray(off);
  }

  /** Reads the server's 101 answer; false until it is whole. */
  private readHandshake(): boolean {
    const end = this.input.indexOf('\r\n\r\n');
    if (end < 0) {
      if (this.input.length > MAX_HANDSHAKE) this.fail('the upgrade answer is too long');
      return false;
    }
    const head = this.input.toString('latin1', 0, end);
    this.input = this.input.subarray(end + 4);
    const lines = head.split('\r\n');
    if (!/^HTTP\/1\.1 101 /.test(lines[0])) {
      this.fail(`upgrade refused: ${lines[0].slice(0, 200)}`);
      return false;
    }
    const accept = lines.find((l) => /^sec-websocket-accept:/i.test(l))?.slice(21).trim();
    const want = createHash('sha1').update(this.key + WS_GUID).digest('base64');
    if (accept !== want) {
      this.fail('the upgrade answer has the wrong Sec-WebSocket-Accept');
      return false;
    }
    this.handshaken = true;
    return true;
  }

  private onFrame(op: number, payload: Buffer): void {
    switch (op) {
      case OP_TEXT:
        return this.onEnginePacket(payload.toString('utf8'));
      case OP_BINARY:
        return this.fail('a binary message (no binary packet is simulated)');
      case OP_PING:
        return this.write([frameHeader(OP_PONG, payload.length), payload]);
      case OP_PONG:
        return;
      case OP_CLOSE:
        return this.fail(`the server closed the WebSocket${payload.length >= 2 ? ` (${payload.readUInt16BE(0)})` : ''}`);
      default:
        return this.fail(`an unknown frame opcode ${op}`);
    }
  }

  private onEnginePacket(p: string): void {
    switch (p[0]) {
      case '0':
        // Engine.IO open: join the namespace.
        return this.write(textFrame(`40${this.prefix}${JSON.stringify(this.auth)}`));
      case '2':
        return this.write(textFrame(`3${p.slice(1)}`));
      case '4':
        return this.onSocketPacket(p.slice(1));
      case '1':
        return this.fail('the server closed the Engine.IO session');
      default:
        return;
    }
  }

  private onSocketPacket(p: string): void {
    const type = p[0];
    let i = 1;
    if (p[i] === '/') {
      const comma = p.indexOf(',', i);
      const nsp = comma < 0 ? p.slice(i) : p.slice(i, comma);
      if (nsp !== this.nsp) return;
      i = comma < 0 ? p.length : comma + 1;
    } else if (this.nsp !== '/') return;
    const idStart = i;
    // An id is at most a few digits; bounded by the packet.
    while (i < p.length && p.charCodeAt(i) >= 48 && p.charCodeAt(i) <= 57) i++;
    const id = i > idStart ? Number(p.slice(idStart, i)) : null;
    let body: unknown = undefined;
    if (i < p.length) {
      try {
        body = JSON.parse(p.slice(i));
      } catch {
        return this.fail('a packet whose JSON does not parse');
      }
    }
    switch (type) {
      case '0':
        return this.onConnect?.(null);
      case '4':
        return this.fail(`connect refused: ${String((body as { message?: unknown } | undefined)?.message ?? 'no reason')}`);
      case '1':
        return this.fail('the server left the namespace');
      case '2': {
        if (!Array.isArray(body) || typeof body[0] !== 'string') return this.fail('an event that is not [name, ...args]');
        this.handlers.event(body[0], body.slice(1), id);
        return;
      }
      case '3': {
        const ack = id === null ? undefined : this.acks.get(id);
        if (!ack) return;
        this.acks.delete(id!);
        ack(Array.isArray(body) ? body : []);
        return;
      }
      default:
        return this.fail(`a Socket.IO packet of type ${type} (not simulated)`);
    }
  }
}
