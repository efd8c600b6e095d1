import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HopCollector } from './hops';
import { ETH_IPV4, ethernet, ipv4, udp } from '../../test/support/packets';
import { LINKTYPE } from '../../shared/pcap/types';
import type { TraceClocks } from '../../shared/trace/vantage';

const T0 = 1_795_600_000;
const SRC = '192.0.2.1';
const DST = '198.51.100.2';
const SSRC = 0xcafe0001;

function rtpFrame(seq: number, ssrc = SSRC, sport = 4000): Buffer {
  const r = Buffer.alloc(172);
  r[0] = 0x80;
  r[1] = 0;
  r.writeUInt16BE(seq & 0xffff, 2);
  r.writeUInt32BE(ssrc, 8);
  return ethernet(ETH_IPV4, ipv4({ src: SRC, dst: DST, proto: 17 }, udp(sport, 5000, r)));
}

const ref = (host: string) => ({ host, ssrc: `0x${SSRC.toString(16)}`, src: `${SRC}:4000`, dst: `${DST}:5000` });

function clocks(offsets: Record<string, number | null>): TraceClocks {
  const hosts = Object.entries(offsets).map(([host, offsetMs]) => ({ host, offsetMs, spreadMs: 0, samples: 1, against: null, twoWay: true }));
  return { reference: hosts[0].host, hosts, aligned: false };
}

test('hops: three vantage points in path order on corrected clocks (raw clocks would put them otherwise), loss per hop, across a sequence wrap', () => {
  // The stream crosses x, then y, then z, 1 ms per hop; seq runs 65500..65599 (wraps at 65536).
  // y's clock is 5 ms behind, so raw times put y first; z's is 10 ms ahead.
  const h = new HopCollector([ref('x'), ref('y'), ref('z'), { ...ref('w'), ssrc: '0x00000001' }]);
  const lostXY = new Set([65510, 65535, 65536]);
  const lostYZ = new Set([65520, 65590]);
  const offNs = { x: 0, y: -5_000_000, z: 10_000_000 };
  for (let i = 0; i < 100; i++) {
    const seq = 65500 + i;
    const t = i * 20_000_000;
    const at = (host: keyof typeof offNs, hop: number, jitter = 0) => h.observe(host, LINKTYPE.ETHERNET, rtpFrame(seq), T0, t + hop * 1_000_000 + jitter + offNs[host] + 100_000_000);
    at('x', 0);
    if (lostXY.has(seq)) continue;
    at('y', 1, (i % 3) * 200_000);
    if (lostYZ.has(seq)) continue;
    at('z', 2, (i % 3) * 200_000);
  }
  // Another stream's packets and a packet of another SSRC on these ports are not counted.
  h.observe('x', LINKTYPE.ETHERNET, rtpFrame(1, 0x0badf00d), T0, 0);
  h.observe('x', LINKTYPE.ETHERNET, rtpFrame(1, SSRC, 4002), T0, 0);

  const hops = h.hops(clocks({ x: 0, y: -5, z: 10 }));
  assert.deepEqual(
    hops.map((x) => [x.from, x.to, x.packets, x.lost, x.unseenUpstream, x.corrected]),
    [
      ['x', 'y', 100, 3, 0, true],
      ['y', 'z', 97, 2, 0, true],
    ],
  );
  const [xy, yz] = hops;
  // x → y: 1 ms plus 0, 0.2 or 0.4 ms of jitter; y → z: exactly 1 ms, y's jitter carried on (none added).
  assert.ok(Math.abs(xy.delayMs! - 1.2) < 1e-6, `x → y ${xy.delayMs}`);
  assert.ok(Math.abs(xy.delayMaxMs! - 1.4) < 1e-6);
  assert.ok(xy.jitterAddedMeanMs! > 0.1);
  assert.ok(Math.abs(yz.delayMs! - 1) < 1e-6 && Math.abs(yz.delayMaxMs! - 1) < 1e-6, `y → z ${yz.delayMs}/${yz.delayMaxMs}`);
  assert.equal(yz.jitterAddedMaxMs, 0);

  // Without clock offsets the raw times order y first (5 ms "earlier"), and say so.
  const raw = h.hops(null);
  assert.deepEqual(raw.map((x) => [x.from, x.to, x.corrected]), [['y', 'x', false], ['x', 'z', false]]);
});

test('hops: a stream only one host listed is not followed; a host that missed packets upstream is counted as such', () => {
  const alone = new HopCollector([ref('x')]);
  assert.equal(alone.wanted, false);
  alone.observe('x', LINKTYPE.ETHERNET, rtpFrame(1), T0, 0);
  assert.deepEqual(alone.hops(null), []);

  const h = new HopCollector([ref('x'), ref('y')]);
  for (let seq = 0; seq < 10; seq++) {
    // x's capture dropped seq 4; y, downstream, has it.
    if (seq !== 4) h.observe('x', LINKTYPE.ETHERNET, rtpFrame(seq), T0, seq * 20_000_000);
    h.observe('y', LINKTYPE.ETHERNET, rtpFrame(seq), T0, seq * 20_000_000 + 300_000);
  }
  const [hop] = h.hops(clocks({ x: 0, y: 0 }));
  assert.deepEqual([hop.from, hop.to, hop.packets, hop.lost, hop.unseenUpstream, hop.delayMs], ['x', 'y', 9, 0, 1, 0.3]);
});

test('hops: a host whose result a limit cut short has no loss counted past its last packet', () => {
  const h = new HopCollector([ref('x'), ref('y')]);
  for (let seq = 0; seq < 20; seq++) {
    h.observe('x', LINKTYPE.ETHERNET, rtpFrame(seq), T0, seq * 20_000_000);
    // y lost seq 3 on the way, and its result stops at seq 11 (--max-packets).
    if (seq !== 3 && seq < 12) h.observe('y', LINKTYPE.ETHERNET, rtpFrame(seq), T0, seq * 20_000_000 + 300_000);
  }
  assert.equal(h.hops(clocks({ x: 0, y: 0 }))[0].lost, 9, 'not known to be cut: 8 left out look lost');
  assert.equal(h.hops(clocks({ x: 0, y: 0 }), new Set(['y']))[0].lost, 1, 'cut: only the one lost before its end');
});
