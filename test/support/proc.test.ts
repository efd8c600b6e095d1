import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { run, startDaemon, nsWrap, ProcError, freePort } from './proc';

test('run returns exit code and both streams', async () => {
  const r = await run('sh', ['-c', 'echo out; echo err >&2; exit 3'], { check: false });
  assert.deepEqual({ code: r.code, stdout: r.stdout, stderr: r.stderr }, { code: 3, stdout: 'out\n', stderr: 'err\n' });
});

test('run throws on non-zero exit with the command and the stderr tail', async () => {
  await assert.rejects(run('sh', ['-c', 'echo "the reason it broke" >&2; exit 7']), (e: unknown) => {
    assert.ok(e instanceof ProcError);
    assert.match(e.message, /sh -c/);
    assert.match(e.message, /exited with 7/);
    assert.match(e.message, /the reason it broke/);
    return true;
  });
});

test('run kills a command that outlives its timeout, including its children', async () => {
  const started = Date.now();
  // The shell's background child holds the pipes open; only a group kill ends it.
  await assert.rejects(run('sh', ['-c', 'sleep 30 & sleep 30'], { timeoutMs: 300 }), /timed out after 300 ms/);
  assert.ok(Date.now() - started < 5000, 'run waited for the children instead of killing them');
});

test('run feeds input to stdin', async () => {
  const r = await run('cat', [], { input: 'hello' });
  assert.equal(r.stdout, 'hello');
});

test('run reports a missing program clearly', async () => {
  await assert.rejects(run('tracefleet-no-such-program', []), /cannot start tracefleet-no-such-program/);
});

test('daemon: waitForOutput sees readiness, stop() escalates to SIGKILL when SIGTERM is ignored', async () => {
  const d = await startDaemon('sh', ['-c', 'trap "" TERM; echo ready on port 1234; while :; do sleep 0.1; done']);
  try {
    const m = await d.waitForOutput(/ready on port (\d+)/, 5000);
    assert.equal(m[1], '1234');
    const t0 = Date.now();
    const st = await d.stop(300);
    assert.equal(st.signal, 'SIGKILL');
    assert.ok(Date.now() - t0 >= 250, 'stop() did not give the grace period');
  } finally {
    await d.stop(0);
  }
});

test('daemon: stop() on a process that honours SIGTERM ends it with SIGTERM', async () => {
  const d = await startDaemon('sleep', ['30']);
  const st = await d.stop(5000);
  assert.equal(st.signal, 'SIGTERM');
  assert.deepEqual(await d.stop(), st, 'a second stop() returns the same status');
});

test('daemon: waitForOutput rejects when the process exits first, quoting its stderr', async () => {
  const d = await startDaemon('sh', ['-c', 'echo "bind failed" >&2; exit 2']);
  await assert.rejects(d.waitForOutput(/listening/, 5000), /exited with 2 before printing.*bind failed/s);
});

test('daemon: waitForOutput times out', async () => {
  const d = await startDaemon('sleep', ['30']);
  try {
    await assert.rejects(d.waitForOutput(/never/, 200), /did not print \/never\/ within 200 ms/);
  } finally {
    await d.stop();
  }
});

test('nsWrap puts ip netns exec in front only when a namespace is given', () => {
  assert.deepEqual(nsWrap(undefined, 'sipp', ['-v']), ['sipp', ['-v']]);
  assert.deepEqual(nsWrap('tf-1-0-a', 'sipp', ['-v']), ['ip', ['netns', 'exec', 'tf-1-0-a', 'sipp', '-v']]);
});

test('freePort returns a port free for TCP and UDP, outside the kernel\'s ephemeral range (where outgoing sockets could take it first)', async () => {
  const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  for (let i = 0; i < 20; i++) {
    const p = await freePort();
    assert.ok(p >= 1024 && p < 65536, `${p}`);
    if (hi - lo < 60_000 && lo > 11_000) assert.ok(p < lo || p > hi, `${p} is inside the ephemeral range ${lo}-${hi}`);
    await new Promise<void>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(p, '127.0.0.1', () => srv.close(() => resolve()));
    });
  }
});
