import { spawn, ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../capture/pcap-native';

/** Made-up numbers (the 555-01xx range is reserved for fiction). */
export const DEMO_NUMBERS = ['+15550100101', '+15550100102', '+15550100103', '+15550100104', '+15550100105', '+15550100106'];

export interface DemoTraffic {
  stop(): void;
}

/**
 * Real SIP calls between made-up numbers on loopback, from sipp: something to
 * trace on a machine with no traffic of its own. Bounded: `maxCalls` calls at
 * one every `everyMs`.
 */
export function startDemoTraffic(opts: { uasPort?: number; uacPort?: number; everyMs?: number; maxCalls?: number; log?: (l: string) => void } = {}): DemoTraffic {
  const uasPort = opts.uasPort ?? 5090;
  const uacPort = opts.uacPort ?? 5091;
  const dir = mkdtempSync(join(tmpdir(), 'tracefleet-demo-'));
  const csv = join(dir, 'numbers.csv');
  const lines = ['SEQUENTIAL'];
  for (const from of DEMO_NUMBERS) for (const to of DEMO_NUMBERS) if (from !== to) lines.push(`${from};${to};`);
  writeFileSync(csv, lines.join('\n') + '\n');
  const rate = 1000 / (opts.everyMs ?? 2000);
  const common = ['-i', '127.0.0.1', '-nostdin', '-t', 'u1', '-trace_err', '-error_file', join(dir, 'err.log')];
  const procs: ChildProcess[] = [];
  const uas = spawn('sipp', ['-sn', 'uas', '-p', String(uasPort), ...common], { stdio: 'ignore' });
  procs.push(uas);
  // The UAS needs a moment to bind before the first INVITE.
  const timer = setTimeout(() => {
    const uac = spawn(
      'sipp',
      [`127.0.0.1:${uasPort}`, '-sf', join(repoRoot(), 'agent', 'demo', 'uac-demo.xml'), '-inf', csv, '-p', String(uacPort),
        '-r', String(rate), '-rp', '1000', '-m', String(opts.maxCalls ?? 20_000), '-l', '20', ...common],
      { stdio: 'ignore' },
    );
    procs.push(uac);
    uac.on('error', (e) => opts.log?.(`demo traffic: cannot run sipp: ${e.message} (install sip-tester)`));
  }, 500);
  uas.on('error', (e) => opts.log?.(`demo traffic: cannot run sipp: ${e.message} (install sip-tester)`));
  return {
    stop() {
      clearTimeout(timer);
      for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
