import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { decodePacket, isDecodeFailure } from '../../shared/decode/packet';
import { CaptureStreamParser } from '../../shared/pcap/reader';
import { withTmp } from '../../test/support/with-tmp';
import { generateBulkCapture, MEDIA_IP } from './gen';

test(
  'bulk capture: as long as it says, every packet to or from the media IP, in time order',
  withTmp((dir) => {
    const path = join(dir, 'bulk.pcap');
    const asked = 1024 * 1024;
    const g = generateBulkCapture(path, asked, 10);
    assert.equal(statSync(path).size, g.bytes);
    assert.ok(g.bytes <= asked && g.bytes > asked - 10 * 300, `${g.bytes} bytes for ${asked} asked`);
    const p = new CaptureStreamParser(path);
    const recs = p.push(readFileSync(path));
    assert.equal(p.end().tornBytes, 0);
    assert.equal(recs.length, g.packets);
    assert.equal(g.packets, g.rtpPackets + g.sipPackets);
    let prev = -1;
    for (const r of recs) {
      const d = decodePacket(1, r.data);
      assert.ok(!isDecodeFailure(d), String(d));
      assert.ok(d.src === MEDIA_IP || d.dst === MEDIA_IP, `${d.src} -> ${d.dst}`);
      const t = r.tsSec * 1e9 + r.tsNsec;
      assert.ok(t >= prev, 'packets in time order');
      prev = t;
    }
  }),
);

test('bulk capture: a size too small to hold a dialog is refused', () => {
  assert.throws(() => generateBulkCapture('/nonexistent/x.pcap', 1000), /at least 64 KiB/);
});
