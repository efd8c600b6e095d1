import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PACKET_ENTRY_LEN } from './format';
import { IndexState } from './state';

/** The entry layout (format.ts) written field by field, as addPacket wrote it before its word stores. */
function entry(offset: number, sec: number, nsec: number, src: number, dst: number, sport: number, dport: number, proto: number, flags: number, capLen: number): Buffer {
  const e = Buffer.alloc(PACKET_ENTRY_LEN);
  e.writeUInt32LE(offset, 0);
  e.writeUInt32LE(sec, 4);
  e.writeUInt32LE(nsec, 8);
  e.writeUInt32LE(src, 12);
  e.writeUInt32LE(dst, 16);
  e.writeUInt16LE(sport, 20);
  e.writeUInt16LE(dport, 22);
  e[24] = proto;
  e[25] = flags;
  e.writeUInt16LE(capLen > 0xffff ? 0 : capLen, 26);
  return e;
}

test('addPacket writes each entry as the field-by-field layout, across growth; an offset past 32 bits is refused', () => {
  const st = new IndexState();
  const want: Buffer[] = [];
  // More than the first allocation (4,096 entries), so that the copy on growth is covered too.
  for (let i = 0; i < 10_000; i++) {
    const f = [i * 1517, 0xffffffff - i, (i * 7919) % 1_000_000_000, i % 300, 0xffffffff - (i % 5), (i * 31) & 0xffff, 65535 - (i & 0xff), i & 0xff, (i * 3) & 0xff, i % 3 === 0 ? 65536 + i : i * 6] as const;
    assert.equal(st.addPacket(...f), i);
    want.push(entry(...f));
  }
  assert.deepEqual(st.packetEntries(), Buffer.concat(want));
  assert.deepEqual(st.packetEntries(4095, 4097), Buffer.concat(want.slice(4095, 4097)));
  assert.throws(() => st.addPacket(2 ** 32, 0, 0, 0, 0, 0, 0, 17, 0, 100), RangeError);
  assert.throws(() => st.addPacket(-1, 0, 0, 0, 0, 0, 0, 17, 0, 100), RangeError);
  assert.equal(st.packetCount, 10_000);
  // Replayed entries land after them as they are.
  st.addPacketEntries(Buffer.concat(want.slice(0, 3)));
  assert.deepEqual(st.packetEntries(10_000), Buffer.concat(want.slice(0, 3)));
});
