/**
 * Helpers for the HEP tests: HEP3 packets for a SIP
 * message, and sending them over UDP or TCP to a listener on loopback.
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { addressBytes, encodeHep3 } from '../../shared/hep/hep';

export interface HepMessage {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** 17 UDP, 6 TCP. */
  proto: number;
  /** Milliseconds since the epoch, with a microsecond fraction allowed. */
  atMs: number;
  payload: Buffer;
  password?: string;
  protoType?: number;
}

export function hepOf(m: HepMessage): Buffer {
  const src = addressBytes(m.src)!;
  const micros = Math.round(m.atMs * 1000);
  const b = encodeHep3({
    family: src.length === 4 ? 4 : 6, proto: m.proto, src, dst: addressBytes(m.dst)!, sport: m.sport, dport: m.dport,
    tsSec: Math.floor(micros / 1e6), tsUsec: micros % 1e6, protoType: m.protoType ?? 1, captureId: 1,
    authKey: m.password !== undefined ? Buffer.from(m.password) : null, payload: m.payload,
  });
  if (!b) throw new Error('HEP packet too big');
  return b;
}

/** Sends datagrams to 127.0.0.1:port, one after another, each waited for. Only ever to loopback. */
export async function sendHepUdp(port: number, packets: Buffer[]): Promise<void> {
  const s = createSocket('udp4');
  try {
    for (const p of packets) await new Promise<void>((resolve, reject) => s.send(p, port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
  } finally {
    s.close();
  }
}

/** Writes the packets back to back on one TCP connection to 127.0.0.1:port, then closes it. */
export async function sendHepTcp(port: number, packets: Buffer[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const c = connect(port, '127.0.0.1', () => {
      c.end(Buffer.concat(packets));
    });
    c.on('error', reject);
    c.on('close', () => resolve());
  });
}
