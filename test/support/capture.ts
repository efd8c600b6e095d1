/**
 * Helpers for the capture tests: loopback-only UDP traffic that the tests
 * can pick out of whatever else is on `lo` (other suites run beside them),
 * and reading segments back with tshark, the reference reader.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnSync } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const LOOPBACK = '127.0.0.1';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export const NEEDS_ROOT = 'needs root to capture on lo: libpcap needs CAP_NET_RAW and CAP_NET_ADMIN, run the tests as root';

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

function bind(sock: Socket, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const onErr = () => resolve(false);
    sock.once('error', onErr);
    sock.bind(port, LOOPBACK, () => {
      sock.off('error', onErr);
      resolve(true);
    });
  });
}

/**
 * A UDP socket on 127.0.0.1 at a free port in the given range, so the
 * datagrams sent to it are consumed and no ICMP port-unreachable replies
 * join the capture.
 */
export async function udpReceiver(lo: number, hi: number): Promise<{ sock: Socket; port: number }> {
  const span = hi - lo + 1;
  const first = Math.floor(Math.random() * span);
  for (let i = 0; i < Math.min(span, 64); i++) {
    const port = lo + ((first + i * 7) % span);
    const sock = createSocket('udp4');
    if (await bind(sock, port)) {
      sock.on('message', () => undefined);
      return { sock, port };
    }
    sock.close();
  }
  throw new Error(`no free UDP port on ${LOOPBACK} in ${lo}-${hi}`);
}

/** An ephemeral-port receiver (32768+ on Linux, outside every SIP range). */
export async function ephemeralReceiver(): Promise<{ sock: Socket; port: number }> {
  const sock = createSocket('udp4');
  if (!(await bind(sock, 0))) throw new Error('cannot bind a UDP socket on 127.0.0.1');
  sock.on('message', () => undefined);
  return { sock, port: sock.address().port };
}

/** A sender bound to its own ephemeral port: its source port tags the test's packets. */
export async function udpSender(): Promise<{ sock: Socket; port: number }> {
  return ephemeralReceiver();
}

export function sipPayload(tag: string, seq: number): Buffer {
  return Buffer.from(
    `OPTIONS sip:probe@${LOOPBACK} SIP/2.0\r\n` +
      `Via: SIP/2.0/UDP ${LOOPBACK};branch=z9hG4bK-${tag}-${seq}\r\n` +
      `Call-ID: ${tag}-${seq}\r\n` +
      `CSeq: ${seq + 1} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n`,
  );
}

/**
 * Sends count datagrams to 127.0.0.1:port, in bursts that wait for the
 * kernel, so a slow machine does not drop them at the socket. Only ever to
 * loopback.
 */
export async function sendBurst(
  sock: Socket,
  port: number,
  count: number,
  payload: (seq: number) => Buffer,
  opts: { burst?: number; pauseMs?: number } = {},
): Promise<void> {
  const burst = opts.burst ?? 50;
  for (let i = 0; i < count; i += burst) {
    const n = Math.min(burst, count - i);
    await Promise.all(
      Array.from(
        { length: n },
        (_, k) =>
          new Promise<void>((resolve, reject) =>
            sock.send(payload(i + k), port, LOOPBACK, (err) => (err ? reject(err) : resolve())),
          ),
      ),
    );
    if (opts.pauseMs) await sleep(opts.pauseMs);
    else await new Promise((r) => setImmediate(r));
  }
}

// The capture tests import it from here beside the other helpers; it is node's own, not a copy.
export { sleep };

/** Polls cond every 20 ms for at most timeoutMs; true if it came true. */
export async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (cond()) return true;
    await sleep(20);
  }
  return cond();
}

export interface TsharkPacket {
  /** Nanoseconds since the epoch, as tshark printed them. */
  tsNs: bigint;
  /** The digits after the point, as printed (9 for a nanosecond file). */
  fracDigits: number;
  srcPort: number;
  dstPort: number;
  payload: Buffer;
}

export interface TsharkResult {
  status: number | null;
  stderr: string;
  packets: TsharkPacket[];
}

/** Reads a capture file with tshark; packets without UDP have ports 0. */
export function tsharkRead(file: string): TsharkResult {
  const r = spawnSync(
    'tshark',
    ['-n', '-r', file, '-T', 'fields', '-E', 'separator=\t', '-e', 'frame.time_epoch', '-e', 'udp.srcport', '-e', 'udp.dstport', '-e', 'udp.payload'],
    { encoding: 'utf8', timeout: 60_000, maxBuffer: 256 * 1024 * 1024 },
  );
  if (r.error) throw new Error(`tshark could not run: ${r.error.message}`);
  const packets: TsharkPacket[] = [];
  for (const line of r.stdout.split('\n')) {
    if (!line) continue;
    const [epoch, sp, dp, hex] = line.split('\t');
    const [sec, frac = ''] = epoch.split('.');
    packets.push({
      tsNs: BigInt(sec) * 1_000_000_000n + BigInt((frac + '000000000').slice(0, 9)),
      fracDigits: frac.length,
      srcPort: Number(sp || 0),
      dstPort: Number(dp || 0),
      payload: Buffer.from(hex ?? '', 'hex'),
    });
  }
  return { status: r.status, stderr: r.stderr.replace(/^Running as user "root".*\n?/m, ''), packets };
}

/** The seq numbers in the Call-IDs of this run's packets, in file order. */
export function seqsOf(packets: TsharkPacket[], tag: string): number[] {
  const re = new RegExp(`Call-ID: ${tag}-(\\d+)\\r\\n`);
  const out: number[] = [];
  for (const p of packets) {
    const m = re.exec(p.payload.toString('latin1'));
    if (m) out.push(Number(m[1]));
  }
  return out;
}
