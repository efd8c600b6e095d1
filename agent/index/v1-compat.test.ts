import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { ethernet, ipv4, udp, ETH_IPV4, sipInvite, sipResponse } from '../../test/support/packets';
import { SegmentIndexer } from './builder';
import { DIALOGS_PER_BLOCK, FOOTER_FLAG, FOOTER_LEN, INDEX_HEADER_LEN, REC, RECORD_PREFIX_LEN } from './format';
import { readBinaryRecord } from './message-binary';
import { SealedIndex, replayJournal } from './reader';

/*
 * Indexes written before the binary records (version 1: JSON `M` records,
 * dialog blocks of JSON lines, which were JSON.stringify of the records and of
 * { c, msgs }) must still be read as they were. The version 1 files here are
 * made from a version 2 index by rewriting exactly those parts as version 1
 * wrote them; everything else in the file is the same.
 */

function segment(dir: string): string {
  const path = join(dir, 'seg.pcap');
  const fd = openSync(path, 'w');
  const w = new PcapFileWriterSync(fd, { linkType: 1, nanos: true });
  const hostile = 'X-CID: q"u\\o{te\r\nP-Asserted-Identity: <sip:+4930123456@h>\r\nSession-ID: ab12ab12ab12ab12ab12ab12ab12ab12;remote=cd34cd34cd34cd34cd34cd34cd34cd34\r\n';
  for (let i = 0; i < 80; i++) {
    const msgs = [sipInvite(`c${i}@x${'\u00e9'.repeat(i % 3)}`, i % 2 ? hostile : ''), sipResponse(i % 5 ? 200 : 486, i % 5 ? 'OK' : 'Busy "Here"', `c${i}@x${'\u00e9'.repeat(i % 3)}`)];
    for (const [k, msg] of msgs.entries()) {
      const f = ethernet(ETH_IPV4, ipv4({ src: '192.0.2.1', dst: `192.0.2.${2 + (i % 4)}`, proto: 17 }, udp(5060, 5060 + k, msg)));
      w.write({ tsSec: 1_795_000_000 + i, tsNsec: k, origLen: f.length, data: f });
    }
  }
  w.flush();
  closeSync(fd);
  return path;
}

interface Rec { type: number; body: Buffer; at: number }

function records(file: Buffer, end: number): Rec[] {
  const out: Rec[] = [];
  for (let p = INDEX_HEADER_LEN; p + RECORD_PREFIX_LEN <= end; ) {
    const len = file.readUInt32LE(p);
    out.push({ type: file[p + 4], body: file.subarray(p + RECORD_PREFIX_LEN, p + 4 + len), at: p + RECORD_PREFIX_LEN });
    p += 4 + len;
  }
  return out;
}

function prefixed(type: number, body: Buffer): Buffer {
  const p = Buffer.alloc(RECORD_PREFIX_LEN);
  p.writeUInt32LE(body.length + 1, 0);
  p[4] = type;
  return Buffer.concat([p, body]);
}

function v1Header(file: Buffer): Buffer {
  const h = Buffer.from(file.subarray(0, INDEX_HEADER_LEN));
  h.writeUInt32LE(1, 8);
  return h;
}

/** A version 2 journal as version 1 wrote it: each binary message record as its JSON text. */
function journalToV1(file: Buffer): Buffer {
  const parts = [v1Header(file)];
  for (const r of records(file, file.length)) {
    parts.push(r.type === REC.MESSAGE_BIN ? prefixed(REC.MESSAGE, Buffer.from(JSON.stringify(readBinaryRecord(r.body, 0, r.body.length)), 'utf8')) : prefixed(r.type, r.body));
  }
  return Buffer.concat(parts);
}

/** A sealed version 2 index as version 1 wrote it: dialog blocks of JSON lines, the footer's offsets after them moved. */
function sealedToV1(file: Buffer): Buffer {
  const footer = Buffer.from(file.subarray(file.length - FOOTER_LEN));
  const parts = [v1Header(file)];
  let pos = INDEX_HEADER_LEN;
  const offsetOf = new Map<number, number>();
  for (const r of records(file, file.length - FOOTER_LEN)) {
    let body = r.body;
    if (r.type === REC.DIALOGS) {
      const dialogs = body.readUInt32LE(0);
      const nBlocks = body.readUInt32LE(4);
      const blocks: Buffer[] = [];
      for (let b = 0; b < nBlocks; b++) {
        const data = inflateRawSync(body.subarray(body.readUInt32LE(8 + 4 * b), body.readUInt32LE(12 + 4 * b)));
        const lines: string[] = [];
        for (let at = 0; at < data.length; ) {
          const n = data.readUInt32LE(at);
          at += 4;
          const msgs = [];
          for (let k = 0; k < n; k++) {
            const len = data.readUInt32LE(at);
            msgs.push(readBinaryRecord(data, at + 4, at + 4 + len));
            at += 4 + len;
          }
          lines.push(JSON.stringify({ c: msgs[0].c, msgs }));
        }
        assert.ok(lines.length <= DIALOGS_PER_BLOCK);
        blocks.push(deflateRawSync(Buffer.from(lines.join('\n'), 'utf8'), { level: 1 }));
      }
      const table = Buffer.alloc(8 + 4 * (nBlocks + 1));
      table.writeUInt32LE(dialogs, 0);
      table.writeUInt32LE(nBlocks, 4);
      let at = table.length;
      blocks.forEach((b, i) => {
        table.writeUInt32LE(at, 8 + 4 * i);
        at += b.length;
      });
      table.writeUInt32LE(at, 8 + 4 * nBlocks);
      body = Buffer.concat([table, ...blocks]);
      footer.writeUInt32LE(body.length, 96);
    }
    offsetOf.set(r.at, pos + RECORD_PREFIX_LEN);
    const rec = prefixed(r.type, body);
    parts.push(rec);
    pos += rec.length;
  }
  for (const at of [44, 52, 60, 68, 76]) footer.writeDoubleLE(offsetOf.get(footer.readDoubleLE(at))!, at);
  const flags = footer.readUInt32LE(100);
  if (flags & FOOTER_FLAG.FLOWS) footer.writeDoubleLE(offsetOf.get(footer.readDoubleLE(104))!, 104);
  footer.writeUInt32LE(flags & ~FOOTER_FLAG.BINARY_RECORDS, 100);
  parts.push(footer);
  return Buffer.concat(parts);
}

test('version 1 indexes (JSON records), journal and sealed, are read as the version 2 index of the same segment', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-index-v1-'));
  try {
    const seg = segment(dir);
    const idx = join(dir, 'seg.idx');
    const ix = new SegmentIndexer(seg, idx, { correlationHeader: 'X-CID' });
    ix.catchUp();
    const journal = readFileSync(idx);
    assert.ok(records(journal, journal.length).some((r) => r.type === REC.MESSAGE_BIN));
    ix.seal();
    const sealed = readFileSync(idx);

    const v1Journal = join(dir, 'v1-journal.idx');
    writeFileSync(v1Journal, journalToV1(journal));
    assert.ok(records(readFileSync(v1Journal), readFileSync(v1Journal).length).some((r) => r.type === REC.MESSAGE));

    const v1Sealed = join(dir, 'v1-sealed.idx');
    writeFileSync(v1Sealed, sealedToV1(sealed));
    const s2 = SealedIndex.open(idx)!;
    const s1 = SealedIndex.open(v1Sealed)!;
    try {
      const all2 = s2.allDialogs();
      assert.equal(all2.length, 80);
      assert.deepEqual(s1.allDialogs(), all2);
      // The replayed version 1 journal holds the same messages.
      const v2j = join(dir, 'v2-journal.idx');
      writeFileSync(v2j, journal);
      assert.deepEqual(replayJournal(v1Journal).state.dialogs(), replayJournal(v2j).state.dialogs());
      assert.deepEqual(replayJournal(v2j).state.dialogs(), all2);
      for (const d of all2) {
        assert.deepEqual(s1.dialogsByCallId(d.c), [d]);
        assert.deepEqual(s2.dialogsByCallId(d.c), [d]);
      }
      assert.deepEqual(s1.dialogsByNumber('30123456'), s2.dialogsByNumber('30123456'));
      assert.equal(s2.dialogsByNumber('30123456').length, 40);
      assert.deepEqual(s1.dialogsByCorrelation('q"u\\o{te'), s2.dialogsByCorrelation('q"u\\o{te'));
      assert.equal(s2.dialogsByCorrelation('q"u\\o{te').length, 40);
      assert.deepEqual(s1.dialogsByLegKey('s', 'cd34cd34cd34cd34cd34cd34cd34cd34'), s2.dialogsByLegKey('s', 'cd34cd34cd34cd34cd34cd34cd34cd34'));
      assert.equal(s2.dialogsByLegKey('s', 'cd34cd34cd34cd34cd34cd34cd34cd34').length, 40);
      assert.equal(s1.messageCount, 160);
    } finally {
      s1.close();
      s2.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
