import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TraceView } from '../../shared/protocol/client';
import { FleetBed, fleetSkipReason, ROOT } from '../support/fleet';
import type { TestNet } from '../support/netns';
import { haveCommand, run } from '../support/proc';
import { uacPcapScenario } from '../support/sipp';

/*
 * Which hop went bad, on a real network: a sipp caller in host a plays
 * sip-tester's G.711 capture to a sipp callee in host b that echoes it
 * (-rtp_echo), through router r (ip_forward on). r's forwarding of the
 * caller's RTP goes through an iptables NFQUEUE bound to a program of this
 * test (test/support/nfqueue/impair.c) that drops packets a seeded PRNG
 * picks, and says which. Agents capture a's and b's link to r, so both
 * streams are seen on both sides of the router: the per-hop table must put
 * exactly those drops on the caller's stream's a → b hop, and no loss on the
 * echo's b → a hop.
 */

const IMPAIR_SRC = join(ROOT, 'test', 'support', 'nfqueue', 'impair.c');
const NFQ_HEADER = '/usr/include/libnetfilter_queue/libnetfilter_queue.h';
const skip =
  fleetSkipReason() ||
  (!haveCommand('iptables') || !haveCommand('gcc') || !existsSync(NFQ_HEADER) || !haveCommand('sipp')
    ? 'needs iptables, gcc, libnetfilter-queue-dev and sipp (scripts/setup.sh installs them)'
    : false);

/** The media path's own subnets, apart from the fleet's 198.18.0.0/24 segment. */
const A = '198.19.1.1';
const R_A = '198.19.1.254';
const B = '198.19.2.1';
const R_B = '198.19.2.254';
const A_MEDIA = 6000;
const B_MEDIA = 7000;
const NUMBER = '5551234';
const SEED = 20261204;
/** 4 % of the caller's RTP. */
const DROP_PERMILLE = 40;
const QUEUE = 7;

/** a — r — b through veths of their own (named eth1 at a and b, ra and rb at r); r forwards. */
async function mediaPath(net: TestNet): Promise<void> {
  const ip = (args: string[]) => run('ip', args, { timeoutMs: 15_000 });
  await ip(['-n', net.ns('a'), 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'ra', 'netns', net.ns('r')]);
  await ip(['-n', net.ns('b'), 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'rb', 'netns', net.ns('r')]);
  for (const [host, dev, addr] of [['a', 'eth1', `${A}/24`], ['b', 'eth1', `${B}/24`], ['r', 'ra', `${R_A}/24`], ['r', 'rb', `${R_B}/24`]] as const) {
    await ip(['-n', net.ns(host), 'addr', 'add', addr, 'dev', dev]);
    await ip(['-n', net.ns(host), 'link', 'set', dev, 'up']);
    // As TestNet does for its own links: checksums filled in by the kernel, so captures hold what the wire would.
    if (haveCommand('ethtool')) await run('ethtool', ['-K', dev, 'tx', 'off', 'rx', 'off'], { ns: net.ns(host), check: false, timeoutMs: 15_000 });
  }
  await ip(['-n', net.ns('a'), 'route', 'add', '198.19.2.0/24', 'via', R_A]);
  await ip(['-n', net.ns('b'), 'route', 'add', '198.19.1.0/24', 'via', R_B]);
  await run('sysctl', ['-qw', 'net.ipv4.ip_forward=1'], { ns: net.ns('r'), timeoutMs: 15_000 });
}

test('per-hop table: the drops of an NFQUEUE-impaired router are found, exactly, on the caller stream a → b, and none on the echo b → a', { skip, timeout: 300_000 }, async (t) => {
  const bed = await FleetBed.create(t, { agents: ['a', 'b'], others: ['r'] });
  const { net, dir } = bed;
  await mediaPath(net);
  const impair = join(dir, 'impair');
  await run('gcc', ['-O2', '-Wall', '-o', impair, IMPAIR_SRC, '-lnetfilter_queue'], { timeoutMs: 120_000 });
  const queue = await net.spawn('r', impair, [String(QUEUE), String(SEED), String(DROP_PERMILLE), '240']);
  await queue.waitForOutput(/^ready$/m, 10_000);
  // Only the caller's RTP to the callee's media port is impaired: SIP and the echo pass untouched.
  await run('iptables', ['-A', 'FORWARD', '-p', 'udp', '-s', A, '-d', B, '--dport', String(B_MEDIA), '-j', 'NFQUEUE', '--queue-num', String(QUEUE)], { ns: net.ns('r'), timeoutMs: 15_000 });

  await bed.startDispatcher();
  await bed.addTracer();
  // RTP is captured only on the ports an operator names.
  for (const h of ['a', 'b']) await bed.startAgent(h, { iface: 'eth1', args: ['--rtp-ports', `${A_MEDIA}-${B_MEDIA + 1}`] });
  await bed.waitAgentsConnected(['a', 'b'], 20_000);

  const scenario = await uacPcapScenario(dir, 'uac_pcap.xml', null);
  const uas = await net.spawn('b', 'sipp', ['-sn', 'uas', '-i', B, '-p', '5060', '-mi', B, '-mp', String(B_MEDIA), '-rtp_echo', '-m', '1', '-nostdin'], { cwd: dir });
  await sleep(500);
  const uac = await net.exec('a', 'sipp', [`${B}:5060`, '-sf', scenario, '-s', NUMBER, '-i', A, '-p', '5060', '-mi', A, '-mp', String(A_MEDIA), '-m', '1', '-nostdin', '-timeout', '60s'], {
    cwd: dir,
    timeoutMs: 70_000,
    check: false,
  });
  assert.equal(uac.code, 0, `sipp uac: ${uac.stderr.slice(-800)}`);
  await uas.waitForExit(20_000).catch(() => undefined);

  // What the router dropped, by SSRC: the test's own account.
  const verdicts = queue
    .stdout()
    .split('\n')
    .map((l) => /^(drop|pass) (\d+) (\d+)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null);
  const drops = new Map<string, number>();
  for (const m of verdicts) if (m[1] === 'drop') drops.set(`0x${Number(m[2]).toString(16).padStart(8, '0')}`, (drops.get(`0x${Number(m[2]).toString(16).padStart(8, '0')}`) ?? 0) + 1);
  const totalDrops = [...drops.values()].reduce((a, b) => a + b, 0);
  t.diagnostic(`router: ${verdicts.length} RTP packets queued, ${totalDrops} dropped (${[...drops].map(([s, n]) => `${s}: ${n}`).join(', ')})`);
  assert.ok(verdicts.length > 200, `the caller's RTP went through the queue (${verdicts.length} packets)`);
  assert.ok(totalDrops > 0, 'the seeded PRNG dropped some');

  // Let the agents index the last packets.
  await sleep(2000);
  const tr = await bed.tracefleet(['trace', '--number', NUMBER, '--rtp', '--hosts', 'a,b', '--json'], { timeoutMs: 120_000 });
  assert.equal(tr.code, 0, `tracefleet trace exited ${tr.code}; stderr: ${tr.stderr}\n${bed.logs()}`);
  const v = JSON.parse(tr.stdout) as TraceView;
  const hops = v.hops ?? [];
  t.diagnostic(`hops: ${JSON.stringify(hops)}`);
  t.diagnostic(`clocks: ${JSON.stringify(v.clocks)}`);
  t.diagnostic(`hosts: ${JSON.stringify(v.hosts.map((h) => [h.host, h.state, h.packets]))}`);
  if (hops.length === 0) {
    const s = await bed.tracefleet(['show', v.id, '--json', '--messages']);
    t.diagnostic(`show: ${s.stdout.replace(/\s+/g, " ").slice(0, 6000)}`);
    const q = await bed.tracefleet(['query', '--ring', bed.ring('a'), '--number', NUMBER, '--rtp', '--json'], { host: 'a' });
    t.diagnostic(`local query on a: ${q.stdout.replace(/\s+/g, " ").slice(0, 3000)} ${q.stderr.slice(0, 1000)}`);
  }

  const forward = hops.filter((h) => h.src === `${A}:${A_MEDIA}` && h.dst === `${B}:${B_MEDIA}`);
  const echo = hops.filter((h) => h.src === `${B}:${B_MEDIA}` && h.dst === `${A}:${A_MEDIA}`);
  assert.ok(forward.length >= 1, 'the caller stream has a hop');
  assert.ok(echo.length >= 1, 'the echo stream has a hop');
  for (const h of forward) {
    assert.deepEqual([h.from, h.to], ['a', 'b'], 'the caller stream goes a → b');
    assert.equal(h.lost, drops.get(h.ssrc) ?? 0, `stream ${h.ssrc}: the hop lost exactly what the router dropped`);
    assert.equal(h.unseenUpstream, 0);
    assert.ok(h.delayMs !== null && h.delayMs >= 0 && h.delayMs < 50, `a → b delay ${h.delayMs} ms`);
  }
  assert.equal(forward.reduce((n, h) => n + h.lost, 0), totalDrops, 'every drop is on the impaired hop');
  for (const h of echo) {
    assert.deepEqual([h.from, h.to], ['b', 'a'], 'the echo goes b → a');
    assert.equal(h.lost, 0, `stream ${h.ssrc}: the clean hop lost nothing`);
  }
  // The hosts share a kernel clock: what the merge estimates is the path's asymmetry, well under a millisecond.
  const bClock = v.clocks?.hosts.find((h) => h.host !== v.clocks?.reference);
  assert.ok(bClock && bClock.offsetMs !== null && Math.abs(bClock.offsetMs) < 1, `clock offset ${bClock?.offsetMs} ms`);

  // The CLI's show prints the per-hop table.
  const show = await bed.tracefleet(['show', v.id]);
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /RTP hops \(which hop went bad\)/);
  const lossRow = forward.find((h) => h.lost > 0)!;
  assert.match(show.stdout, new RegExp(`${lossRow.ssrc} .* a → b +${lossRow.packets} +${lossRow.lost} +0 `));
});
