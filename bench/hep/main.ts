import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateSipCapture } from '../common/sipgen';
import { Figures, progress } from '../common/report';
import { parsePcapHeader, PCAP_HEADER_LEN, PCAP_RECORD_HEADER_LEN, writePcapRecordHeader } from '../../shared/pcap/pcap';
import { scanPcapRecords } from '../../shared/pcap/pcap';
import { decodePacket } from '../../shared/decode/packet';
import { addressBytes, encodeHep3 } from '../../shared/hep/hep';
import { HepIngest, HEP_BATCH_BYTES } from '../../agent/hep/ingest';
import { emptyHepDrops } from '../../agent/hep/worker';
import { SegmentWriter } from '../../agent/ring/writer';
import { CaptureEngine } from '../../agent/capture/capture';
import { HEP_STREAM } from '../../agent/ring/layout';

/*
 * HEP ingest against the capture path, on one core. The same SIP packets
 * (generated calls) go through each path's own work in this one thread:
 *   capture: the records libpcap hands the capture worker, gathered into a
 *            2 MiB batch and written to a ring segment (agent/ring/writer);
 *   HEP:     the same messages as HEP3 datagrams, through HepIngest (flood
 *            rule, bounded parse, password, the packet synthesised) and the
 *            same segment writer.
 * Best of several alternated runs each; the ratio is HEP's rate over the
 * capture path's. Then, end to end, the HEP listener thread taking
 * datagrams from a UDP socket on loopback (the sender in this thread: the
 * two share the machine's cores), bounded in count and time.
 * Usage: node dist/bench/hep/main.js [MiB of SIP] [runs] [e2e datagrams]
 */

const mib = Number(process.argv[2] ?? 64);
const runs = Number(process.argv[3] ?? 7);
const e2eCount = Number(process.argv[4] ?? 100_000);
const PASSWORD = 'bench-secret';

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tf-bench-hep-'));
  try {
    progress(`generating ${mib} MiB of SIP calls`);
    const gen = generateSipCapture({ outDir: dir, totalBytes: mib * 2 ** 20, fileBytes: mib * 2 ** 20 + 2 ** 20, seed: 11 });
    const file = readFileSync(gen.files[0]);
    const header = parsePcapHeader(file.subarray(0, PCAP_HEADER_LEN));
    const records: Buffer[] = [];
    const heps: Buffer[] = [];
    scanPcapRecords(file.subarray(PCAP_HEADER_LEN), PCAP_HEADER_LEN, header, (rec) => {
      const d = decodePacket(rec.linkType, rec.data);
      if (typeof d === 'string' || d.proto !== 17 || d.fragment) return;
      const r = Buffer.allocUnsafe(PCAP_RECORD_HEADER_LEN + rec.capLen);
      writePcapRecordHeader(r, 0, rec.tsSec, rec.tsNsec, rec.capLen, rec.origLen, true);
      rec.data.copy(r, PCAP_RECORD_HEADER_LEN);
      records.push(r);
      const h = encodeHep3({
        family: d.ipVersion === 6 ? 6 : 4, proto: 17, src: addressBytes(d.src)!, dst: addressBytes(d.dst)!, sport: d.sport, dport: d.dport,
        tsSec: rec.tsSec, tsUsec: Math.floor(rec.tsNsec / 1000), protoType: 1, captureId: 2001, authKey: Buffer.from(PASSWORD), nodeName: Buffer.from('bench'), payload: d.payload,
      });
      if (h) heps.push(h);
    });
    const packets = records.length;
    progress(`${packets} SIP packets (${gen.dialogs} dialogs)`);

    const writerIn = (ring: string, linkType: number) =>
      new SegmentWriter({ ringDir: ring, stream: 'bench', linkType, nanos: true, maxSegmentBytes: 64 * 2 ** 20, maxSegmentSeconds: 3600 });

    const capturePath = (ring: string): number => {
      const w = writerIn(ring, header.linkType);
      const batch = Buffer.allocUnsafe(HEP_BATCH_BYTES);
      const t = process.hrtime.bigint();
      let used = 0;
      for (const r of records) {
        if (used + r.length > batch.length) {
          w.append(batch, used, Date.now() * 1000);
          used = 0;
        }
        // The kernel's copy into libpcap's buffer, as the capture worker gets it.
        r.copy(batch, used);
        used += r.length;
      }
      if (used) w.append(batch, used, Date.now() * 1000);
      w.close();
      return Number(process.hrtime.bigint() - t) / 1e9;
    };

    const hepPath = (ring: string): number => {
      const w = writerIn(ring, 1);
      const ingest = new HepIngest({ password: PASSWORD, perSenderPerSecond: Number.MAX_SAFE_INTEGER }, emptyHepDrops());
      const t = process.hrtime.bigint();
      for (const h of heps) {
        if (ingest.take(h, '192.0.2.1') === 'full') {
          w.append(ingest.batch, ingest.used, Date.now() * 1000);
          ingest.clear();
          ingest.take(h, '192.0.2.1', true);
        }
      }
      if (ingest.used) w.append(ingest.batch, ingest.used, Date.now() * 1000);
      w.close();
      const s = Number(process.hrtime.bigint() - t) / 1e9;
      const dropped = Object.values(ingest.drops).reduce((a, b) => a + b, 0);
      if (dropped) throw new Error(`the bench's own HEP was dropped: ${JSON.stringify(ingest.drops)}`);
      return s;
    };

    const best = { capture: Infinity, hep: Infinity };
    for (let i = 0; i < runs; i++) {
      const ring = join(dir, `ring-${i}`);
      best.capture = Math.min(best.capture, capturePath(join(ring, 'c')));
      best.hep = Math.min(best.hep, hepPath(join(ring, 'h')));
      rmSync(ring, { recursive: true, force: true });
      progress(`run ${i + 1}/${runs}: capture ${Math.round(packets / best.capture)} /s, HEP ${Math.round(heps.length / best.hep)} /s (best so far)`);
    }
    const captureRate = packets / best.capture;
    const hepRate = heps.length / best.hep;

    // End to end: the HEP listener thread, fed over loopback UDP.
    progress(`end to end: ${e2eCount} HEP datagrams over loopback to the HEP listener thread`);
    const ring = join(dir, 'ring-e2e');
    const port = 20000 + Math.floor(Math.random() * 20000);
    const engine = new CaptureEngine({
      ringDir: ring, interfaces: [], ringMaxBytes: 1024 * 2 ** 20, maxSegmentBytes: 64 * 2 ** 20, minFreeBytes: 0,
      hep: { listen: [{ transport: 'udp', host: '127.0.0.1', port }], password: PASSWORD, perSenderPerSecond: Number.MAX_SAFE_INTEGER },
    });
    await engine.start();
    const sock = createSocket('udp4');
    const t0 = Date.now();
    const deadline = t0 + 30_000;
    let sent = 0;
    try {
      while (sent < e2eCount && Date.now() < deadline) {
        // Bursts the socket buffer absorbs, each waited for: the kernel drops what a burst overflows.
        const burst = Math.min(64, e2eCount - sent);
        await Promise.all(Array.from({ length: burst }, (_, k) => new Promise<void>((res) => sock.send(heps[(sent + k) % heps.length], port, '127.0.0.1', () => res()))));
        sent += burst;
      }
      const sendS = (Date.now() - t0) / 1000;
      // Done when the count stops growing (the kernel drops what overflows the socket): its last growth ends the clock.
      const written = () => engine.stats().interfaces[HEP_STREAM].packets;
      let last = -1;
      let lastAt = Date.now();
      for (let i = 0; i < 100 && written() < sent; i++) {
        await sleep(100);
        const w = written();
        if (w !== last) {
          last = w;
          lastAt = Date.now();
        } else if (Date.now() - lastAt > 1500) break;
      }
      // The worker reports its counts once a second: the clock is that coarse.
      const e2eS = (lastAt - t0) / 1000;
      const st = engine.stats().interfaces[HEP_STREAM];
      const f = new Figures('hep');
      f.section(`one core, ${packets} SIP packets (${mib} MiB of generated calls), best of ${runs}`)
        .add('capture_pps', 'capture path (records batched and written)', Math.round(captureRate), 'packets/s', 0)
        .add('hep_pps', 'HEP ingest (flood rule, parse, password, synthesis, write)', Math.round(hepRate), 'packets/s', 0)
        .add('hep_over_capture', 'HEP ingest rate / capture path rate', hepRate / captureRate, '', 3)
        .section('end to end: HEP listener thread, UDP over loopback, sender in the same process')
        .add('e2e_sent', 'datagrams sent', sent, '', 0)
        .add('e2e_received', 'received by the listener', st.received, '', 0)
        .add('e2e_written', 'written to the ring', st.packets, '', 0)
        .add('e2e_kernel_dropped', 'lost at the socket (sent - received)', sent - st.received, '', 0)
        .add('e2e_pps', 'written per second (sending included; 1 s resolution)', Math.round(st.packets / e2eS), 'packets/s', 0)
        .extra('e2e_send_seconds', sendS)
        .extra('hep_drops', st.hepDrops);
      f.print();
    } finally {
      sock.close();
      await engine.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`bench/hep: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
