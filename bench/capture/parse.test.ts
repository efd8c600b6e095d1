import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseAgentStats, parseCapinfosCount, parseDumpcapStats, parseTcpreplay } from './parse';

test('tcpreplay 4.4 summary: achieved rate and per-device counters', () => {
  const out = [
    'File Cache is enabled',
    'Actual: 1200000 packets (679924992 bytes) sent in 3.40 seconds',
    'Rated: 199942243.2 Bps, 1599.53 Mbps, 352878.17 pps',
    'Flows: 1 flows, 0.29 fps, 50000 unique flow packets, 0 unique non-flow packets',
    'Statistics for network device: l0',
    '\tSuccessful packets:        1199990',
    '\tFailed packets:            10',
    '\tTruncated packets:         0',
    '\tRetried packets (ENOBUFS): 3',
    '\tRetried packets (EAGAIN):  0',
  ].join('\n');
  assert.deepEqual(parseTcpreplay(out), {
    actualPackets: 1200000, actualBytes: 679924992, seconds: 3.4, mbps: 1599.53, pps: 352878.17,
    successful: 1199990, failed: 10, truncated: 0, retriedEnobufs: 3, retriedEagain: 0,
  });
  assert.throws(() => parseTcpreplay('tcpreplay: Fatal Error'), /no "Actual:" line/);
});

test('dumpcap drop report, with and without the breakdown', () => {
  const err = "Capturing on 'l0'\nFile: x.pcap\nPackets: 39886 Packets captured: 1966429\nPackets received/dropped on interface 'l0': 1966429/33584 (pcap:33584/dumpcap:0/flushed:0/ps_ifdrop:0) (98.3%)\n";
  assert.deepEqual(parseDumpcapStats(err), { received: 1966429, dropped: 33584, pcapDropped: 33584, dumpcapDropped: 0, flushed: 0, ifDropped: 0 });
  assert.deepEqual(parseDumpcapStats("Packets received/dropped on interface 'eth0': 10/0 (100.0%)"), {
    received: 10, dropped: 0, pcapDropped: 0, dumpcapDropped: 0, flushed: 0, ifDropped: 0,
  });
  assert.equal(parseDumpcapStats('Capturing on'), null);
});

test('agent stats lines of one interface among several', () => {
  const err = [
    JSON.stringify({ level: 30, time: 1, component: 'agent', interfaces: ['l0'], ring: '/r', filter: 'udp', msg: 'capturing' }),
    JSON.stringify({ level: 30, time: 2, component: 'agent', interfaces: { l0: { packets: 0, dropped: 0, ifDropped: 0 } }, indexErrors: 0, msg: 'capture stats' }),
    'a line that is not a record',
    JSON.stringify({ level: 30, time: 3, component: 'agent', interfaces: { eth1: { packets: 5, dropped: 1, ifDropped: 0 }, l0: { packets: 7000, dropped: 12, ifDropped: 3 } }, indexErrors: 2, msg: 'capture stats' }),
    JSON.stringify({ level: 30, time: 4, component: 'agent', interfaces: { eth1: { packets: 9, dropped: 0, ifDropped: 0 } }, indexErrors: 0, msg: 'capture stats' }),
    '{"level":30,"msg":"capture stats","interfaces":{"l0":{"packets":1',
  ].join('\n');
  assert.deepEqual(parseAgentStats(err, 'l0'), [
    { packets: 0, dropped: 0, ifDropped: 0, indexErrors: 0 },
    { packets: 7000, dropped: 12, ifDropped: 3, indexErrors: 2 },
  ]);
});

test('capinfos -c -M over several files is summed, a missing count refused', () => {
  const out = 'File name:           a.pcap\nNumber of packets:   1966429\nFile name:           b.pcap\nNumber of packets:   5\n';
  assert.equal(parseCapinfosCount(out, 2), 1966434);
  assert.throws(() => parseCapinfosCount(out, 3), /2 packet counts for 3 file/);
});
