import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fstatSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../agent/capture/pcap-native';
import { type Logger, componentLogger } from '../shared/log/log';

/** Made-up numbers (the 555-01xx range is reserved for fiction). */
export const DEMO_NUMBERS = ['+15550100101', '+15550100102', '+15550100103', '+15550100104', '+15550100105', '+15550100106'];

/** One finished demo call, from the caller's log. */
export interface DemoCall {
  from: string;
  to: string;
  callId: string;
}

export interface DemoTrafficOptions {
  /** UDP port of the answering sipp on 127.0.0.1 (default 5090); the caller uses the next one. */
  uasPort?: number;
  /** Time between call starts (default 2000 ms). */
  everyMs?: number;
  /** Calls placed before the caller stops by itself (default 20 000: about 11 h at one every 2 s). */
  maxCalls?: number;
  logger?: Logger;
  /** Called for each call that ended with the 200 to its BYE. */
  onCall?: (call: DemoCall) => void;
}

export interface DemoTraffic {
  /** Calls finished so far. */
  calls(): number;
  /** Process ids of the sipp processes (for checks that nothing is left). */
  pids(): number[];
  /** Stops both sipp processes (SIGTERM, then SIGKILL after 2 s) and removes their work files. */
  stop(): Promise<void>;
}

const LOG_POLL_MS = 500;
const STOP_GRACE_MS = 2000;
/** Most bytes of the call log read per poll: the log grows ~100 bytes per call. */
const LOG_READ_MAX = 1 << 20;

/**
 * When util-linux's setpriv is there, sipp runs under `setpriv --pdeathsig
 * KILL`: the kernel kills it when this process dies, even by SIGKILL, so a
 * crashed demo never leaves sipp bound to the demo's ports.
 */
function deathSigPrefix(): string[] {
  const r = spawnSync('setpriv', ['--help'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('--pdeathsig') ? ['setpriv', '--pdeathsig', 'KILL', '--'] : [];
}

/**
 * Real SIP calls between made-up numbers on loopback, from sipp: something to
 * trace on a machine with no traffic of its own. Each call is INVITE, 100,
 * 180, 200, ACK, a 3 s pause, BYE, 200 (demo/uac-demo.xml and
 * uas-demo.xml), labelled `Subject: tracefleet demo traffic`. Bounded:
 * `maxCalls` calls at one every `everyMs`.
 */
export function startDemoTraffic(opts: DemoTrafficOptions = {}): DemoTraffic {
  const log = componentLogger('demo.traffic', opts.logger);
  const uasPort = opts.uasPort ?? 5090;
  const uacPort = uasPort + 1;
  const dir = mkdtempSync(join(tmpdir(), 'tracefleet-demo-'));
  const csv = join(dir, 'numbers.csv');
  const callLog = join(dir, 'calls.log');
  const lines = ['SEQUENTIAL'];
  for (const from of DEMO_NUMBERS) for (const to of DEMO_NUMBERS) if (from !== to) lines.push(`${from};${to};`);
  writeFileSync(csv, lines.join('\n') + '\n');
  const rate = 1000 / (opts.everyMs ?? 2000);
  const scenarios = join(repoRoot(), 'demo');
  const common = ['-i', '127.0.0.1', '-nostdin', '-t', 'u1', '-trace_err'];
  const prefix = deathSigPrefix();
  const procs: ChildProcess[] = [];
  let stopping = false;
  let calls = 0;

  const startSipp = (role: string, args: string[]): ChildProcess => {
    const errFile = join(dir, `${role}-errors.log`);
    const [cmd, ...pre] = prefix.length ? prefix : ['sipp'];
    // A process group of its own: a terminal's Ctrl-C reaches only the demo, which stops sipp itself
    // (sipp ending on the same SIGINT would look like a failure of the demo traffic).
    const p = spawn(cmd, [...pre, ...(prefix.length ? ['sipp'] : []), ...args, ...common, '-error_file', errFile], { stdio: 'ignore', detached: true });
    procs.push(p);
    p.on('error', (e) => log.error({ err: e, role }, 'cannot run sipp; install it: apt-get install sip-tester'));
    p.on('exit', (code, signal) => {
      if (stopping) return;
      const errors = existsSync(errFile) ? readFileSync(errFile, 'utf8').trim().split('\n').slice(-3).join(' | ') : '';
      log.error({ role, exit: code ?? signal, sippErrors: errors.slice(0, 500) || undefined, port: role === 'callee' ? uasPort : uacPort }, 'DEMO TRAFFIC stopped: sipp exited; is its udp port on 127.0.0.1 taken? (--sip-port changes it)');
    });
    return p;
  };

  startSipp('callee', ['-sf', join(scenarios, 'uas-demo.xml'), '-p', String(uasPort)]);
  // The callee needs a moment to bind before the first INVITE.
  const timer = setTimeout(() => {
    startSipp('caller', [
      `127.0.0.1:${uasPort}`, '-sf', join(scenarios, 'uac-demo.xml'), '-inf', csv, '-p', String(uacPort),
      '-r', String(rate), '-rp', '1000', '-m', String(opts.maxCalls ?? 20_000), '-l', '20',
      // sipp matches answers to calls by its own Call-ID: the demo's are made recognisable by its format.
      '-cid_str', 'demo-%u-%p@%s', '-trace_logs', '-log_file', callLog,
    ]);
  }, 500);

  // The caller logs "DONE <from> <to> <call-id>" for every finished call (uac-demo.xml).
  let offset = 0;
  let partial = '';
  const readCalls = () => {
    if (!existsSync(callLog)) return;
    let fd: number | null = null;
    try {
      fd = openSync(callLog, 'r');
      const size = fstatSync(fd).size;
      if (size <= offset) return;
      const buf = Buffer.alloc(Math.min(size - offset, LOG_READ_MAX));
      const n = readSync(fd, buf, 0, buf.length, offset);
      offset += n;
      const text = partial + buf.subarray(0, n).toString('utf8');
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        const m = /DONE (\S+) (\S+) (\S+)/.exec(line);
        if (!m) continue;
        calls++;
        opts.onCall?.({ from: m[1], to: m[2], callId: m[3] });
      }
    } catch {
      // The log is ours and only read for progress lines: a read that fails is tried again next poll.
    } finally {
      if (fd !== null) closeSync(fd);
    }
  };
  const poll = setInterval(readCalls, LOG_POLL_MS);

  return {
    calls: () => calls,
    pids: () => procs.map((p) => p.pid).filter((p): p is number => p !== undefined),
    async stop() {
      if (stopping) return;
      stopping = true;
      clearTimeout(timer);
      clearInterval(poll);
      const running = procs.filter((p) => p.exitCode === null && p.signalCode === null);
      await Promise.all(
        running.map(
          (p) =>
            new Promise<void>((resolve) => {
              const kill = setTimeout(() => p.kill('SIGKILL'), STOP_GRACE_MS);
              p.once('exit', () => {
                clearTimeout(kill);
                resolve();
              });
              p.kill('SIGTERM');
            }),
        ),
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
