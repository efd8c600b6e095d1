/** RTP header and G.711 A-law payload (20 ms at 8 kHz): what the benches put in their media packets. */
export const RTP_G711_LEN = 172;

export function rtpPacket(seq: number, ts: number, ssrc: number): Buffer {
  const b = Buffer.alloc(RTP_G711_LEN, 0xd5);
  b[0] = 0x80;
  b[1] = 8;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE(ts >>> 0, 4);
  b.writeUInt32BE(ssrc >>> 0, 8);
  return b;
}
