import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent } from '../../agent/daemon/run';
import { freePort, haveCommand, isRoot, run, startDaemon } from '../support/proc';
import { runSippCalls } from '../support/sipp';
import { waitFor } from '../support/capture';
import { tsharkSipMessages } from '../support/tshark';

const BIN = join(__dirname, '..', '..', 'bin', 'main.js');

/** Each SIP message of a PCAP as one line: time to the microsecond (HEP's), addresses, ports, and its bytes. */
async function sipLines(pcap: string, sipPorts: number[]): Promise<string[]> {
  const dec = sipPorts.flatMap((p) => ['-d', `udp.port==${p},sip`]);
  const r = await run('tshark', ['-r', pcap, '-n', ...dec, '-Y', 'sip', '-T', 'fields', '-E', 'separator=/t', '-e', 'frame.time_epoch', '-e', 'ip.src', '-e', 'udp.srcport', '-e', 'ip.dst', '-e', 'udp.dstport'], { timeoutMs: 60_000 });
  const heads = r.stdout.trim().split('\n').filter(Boolean).map((l) => {
    const [t, ...rest] = l.split('\t');
    const [s, f = ''] = t.split('.');
    return [`${s}.${f.padEnd(9, '0').slice(0, 6)}`, ...rest].join(' ');
  });
  const raws = await tsharkSipMessages(pcap, { sipPorts });
  assert.equal(raws.length, heads.length, `${pcap}: one SIP message per packet`);
  return heads.map((h, i) => `${h} ${raws[i].raw.toString('base64')}`).sort();
}

const skip = !isRoot() ? 'needs root (capture on lo)' : !haveCommand('sngrep') ? 'needs sngrep (scripts/setup.sh --test installs it)' : !haveCommand('sipp') ? 'needs sipp' : false;

test('HEP out read by sngrep: what sngrep saves from the agent\'s HEP is the agent\'s SIP, message for message', { skip, timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-hep-out-'));
  const ring = join(dir, 'ring');
  const [hepPort, uasPort, uacPort] = [await freePort(), await freePort(), await freePort()];
  const saved = join(dir, 'sngrep.pcap');
  // sngrep with -L and no -d listens for HEP only: it opens no capture device.
  const sngrep = await startDaemon('sngrep', ['-N', '-q', '-L', `udp:127.0.0.1:${hepPort}`, '-O', saved], { stopGraceMs: 5000 });
  let agent: Awaited<ReturnType<typeof startAgent>> | null = null;
  try {
    const listening = async () => (await run('ss', ['-Hlnu'], { timeoutMs: 10_000 })).stdout.includes(`127.0.0.1:${hepPort} `);
    for (let i = 0; i < 100 && !(await listening()); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(await listening(), `sngrep does not listen for HEP: ${sngrep.stderr()}`);
    agent = await startAgent({
      ringDir: ring, interfaces: ['lo'], filter: `udp port ${uasPort}`, ringMaxBytes: 64 * 1024 * 1024, maxSegmentBytes: 1024 * 1024, minFreeBytes: 0, indexerNice: 0,
      hepOut: { host: '127.0.0.1', port: hepPort, captureId: 2001, nodeName: 'tf-test', rtcp: false },
    });
    const r = await runSippCalls({ transport: 'udp', uasHost: { addr: '127.0.0.1', port: uasPort }, uacHost: { addr: '127.0.0.1', port: uacPort }, calls: 3, rate: 10 });
    assert.equal(r.successful, 3, r.errors);
    // 7 messages a call, each seen once on lo by the agent.
    assert.ok(await waitFor(() => (agent!.indexer.hepOut?.sent ?? 0) >= 21, 15_000), `HEP out sent ${JSON.stringify(agent.indexer.hepOut)}`);
    await new Promise((res) => setTimeout(res, 500));
    await sngrep.stop();
    await agent.stop();

    // The agent's SIP, as its own query writes it.
    const mine = join(dir, 'agent.pcap');
    await run(process.execPath, [BIN, 'query', '--ring', ring, '--port', String(uasPort), '-o', mine], { timeoutMs: 60_000 });
    const want = await sipLines(mine, [uasPort, uacPort]);
    assert.ok(want.length >= 21, `the agent captured the calls: ${want.length} messages`);
    const got = await sipLines(saved, [uasPort, uacPort]);
    assert.deepEqual(got, want, 'sngrep saved the agent\'s SIP: same messages, bytes, addresses, ports and times');
    assert.deepEqual(agent.indexer.hepOut, { sent: want.length, dropped: 0, failed: 0 });
  } finally {
    await sngrep.stop();
    await agent?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
