import { closeSync, openSync, writeSync } from 'node:fs';
import { ethernet, ETH_IPV4, ipv4, sipInvite, sipResponse, udp } from '../../test/support/packets';
import { pcapHeaderBytes, PCAP_HEADER_LEN, PCAP_RECORD_HEADER_LEN, writePcapRecordHeader } from '../../shared/pcap/pcap';
import { LINKTYPE } from '../../shared/pcap/types';

/*
 * The capture behind bench/stream: one SIP dialog between a media server
 * (MEDIA_IP) and a caller, and RTP-like audio (G.711 sizes: 160-byte payload
 * every 20 ms) from the media server to `streams` peers, until the file
 * holds `bytes`. Every packet has MEDIA_IP as source or destination, so a
 * trace for that IP selects the whole file: the result PCAP is exactly as
 * long as this file (a 24-byte header and the same records). Addresses are
 * from the documentation ranges; the packets exist only in the file.
 */

export const GEN_VERSION = 1;
export const MEDIA_IP = '192.0.2.50';
export const CALLER_IP = '198.51.100.20';
export const CALL_ID = 'bench-stream-dialog@bench.example.net';
/** 2026-01-15T10:00:00Z: a fixed start, so the file is the same on every run. */
const START_SEC = 1768471200;
const RTP_PAYLOAD = 160;
const PTIME_NS = 20_000_000;

export interface BulkCapture {
  path: string;
  bytes: number;
  packets: number;
  sipPackets: number;
  rtpPackets: number;
  streams: number;
  firstSec: number;
  lastSec: number;
}

function sipBye(callId: string): Buffer {
  return Buffer.from(
    'BYE sip:alice@pc33.example.com SIP/2.0\r\n' +
      'Via: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bK-bye1\r\n' +
      'Max-Forwards: 70\r\n' +
      'From: <sip:+15551234567@example.com>;tag=a6c85cf\r\n' +
      'To: "Alice" <sip:alice@example.com>;tag=1928301774\r\n' +
      `Call-ID: ${callId}\r\n` +
      'CSeq: 1 BYE\r\n' +
      'Content-Length: 0\r\n\r\n',
    'latin1',
  );
}

/**
 * Writes the capture to `path` (nanosecond PCAP), at least `bytes` long minus
 * one record. `offsetNs` (under a second) moves every packet later, so that
 * captures of several hosts made with different offsets interleave in a merge.
 */
export function generateBulkCapture(path: string, bytes: number, streams = 100, offsetNs = 0): BulkCapture {
  if (!(bytes >= 64 * 1024)) throw new RangeError(`a bulk capture needs at least 64 KiB, not ${bytes}`);
  if (!(Number.isInteger(offsetNs) && offsetNs >= 0 && offsetNs < 1e9)) throw new RangeError(`offsetNs ${offsetNs} must be a whole number of nanoseconds under a second`);
  const fd = openSync(path, 'w');
  const BUF = 4 * 1024 * 1024;
  const buf = Buffer.allocUnsafe(BUF);
  let used = 0;
  let written = 0;
  let packets = 0;
  let lastSec = START_SEC;
  const flush = () => {
    writeSync(fd, buf, 0, used);
    written += used;
    used = 0;
  };
  const put = (frame: Buffer, sec: number, nsec: number) => {
    nsec += offsetNs;
    if (nsec >= 1e9) {
      sec++;
      nsec -= 1e9;
    }
    if (used + PCAP_RECORD_HEADER_LEN + frame.length > BUF) flush();
    writePcapRecordHeader(buf, used, sec, nsec, frame.length, frame.length, true);
    frame.copy(buf, used + PCAP_RECORD_HEADER_LEN);
    used += PCAP_RECORD_HEADER_LEN + frame.length;
    packets++;
    lastSec = sec;
  };
  const sipFrame = (src: string, dst: string, payload: Buffer) => ethernet(ETH_IPV4, ipv4({ src, dst, proto: 17 }, udp(5060, 5060, payload)));
  try {
    pcapHeaderBytes({ linkType: LINKTYPE.ETHERNET, nanos: true }).copy(buf, 0);
    used = PCAP_HEADER_LEN;
    put(sipFrame(CALLER_IP, MEDIA_IP, sipInvite(CALL_ID)), START_SEC, 0);
    put(sipFrame(MEDIA_IP, CALLER_IP, sipResponse(100, 'Trying', CALL_ID)), START_SEC, 2_000_000);
    put(sipFrame(MEDIA_IP, CALLER_IP, sipResponse(200, 'OK', CALL_ID)), START_SEC, 900_000_000);

    // One frame template per stream; each packet patches sequence, timestamp and a payload byte.
    const templates = Array.from({ length: streams }, (_, k) => {
      const rtp = Buffer.alloc(12 + RTP_PAYLOAD, 0xd5); // 0xd5: PCMA silence
      rtp[0] = 0x80;
      rtp[1] = 8; // PT 8, PCMA
      rtp.writeUInt32BE(0x5eed0000 + k, 8);
      return ethernet(ETH_IPV4, ipv4({ src: MEDIA_IP, dst: `198.51.100.${1 + (k % 200)}`, proto: 17, id: k }, udp(20000 + 2 * k, 30000 + 2 * k, rtp)));
    });
    const rtpAt = 14 + 20 + 8;
    const tail = 2 * (PCAP_RECORD_HEADER_LEN + 200); // room for the BYE and its 200 OK
    let step = 0;
    let rtpPackets = 0;
    // Bounded by the size asked for: each step adds `streams` records of fixed size.
    const maxSteps = Math.ceil(bytes / ((PCAP_RECORD_HEADER_LEN + templates[0].length) * streams)) + 1;
    for (; step < maxSteps && written + used + tail + streams * (PCAP_RECORD_HEADER_LEN + templates[0].length) <= bytes; step++) {
      const baseNs = 1_000_000_000 + step * PTIME_NS;
      for (let k = 0; k < streams; k++) {
        const f = templates[k];
        f.writeUInt16BE(step & 0xffff, rtpAt + 2);
        f.writeUInt32BE((step * RTP_PAYLOAD) >>> 0, rtpAt + 4);
        f[rtpAt + 12] = step & 0xff;
        const ns = baseNs + k * 100_000; // streams 0.1 ms apart
        put(f, START_SEC + Math.floor(ns / 1e9), ns % 1e9);
        rtpPackets++;
      }
    }
    const endNs = 1_000_000_000 + step * PTIME_NS + 10_000_000;
    const endSec = START_SEC + Math.floor(endNs / 1e9);
    put(sipFrame(MEDIA_IP, CALLER_IP, sipBye(CALL_ID)), endSec, endNs % 1e9);
    put(sipFrame(CALLER_IP, MEDIA_IP, sipResponse(200, 'OK', CALL_ID, '1 BYE')), endSec, (endNs % 1e9) + 3_000_000);
    flush();
    return { path, bytes: written, packets, sipPackets: 5, rtpPackets, streams, firstSec: START_SEC, lastSec };
  } finally {
    closeSync(fd);
  }
}
