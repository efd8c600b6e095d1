import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HeldEvent, StartHold } from './start-hold';

function ev(agent: string, event: string, n: number, data?: Record<string, unknown>): HeldEvent {
  return { agent, socketId: `s-${agent}`, event, data: { traceId: 't1', n, ...data }, ack: () => undefined };
}

const seen = (handled: HeldEvent[]) => handled.map((e) => `${e.agent}:${(e.data as { n: number }).n}`);

test('answers about a trace being started are held, then handed on in arrival order, later ones behind them', async () => {
  const handled: HeldEvent[] = [];
  const hold = new StartHold((e) => handled.push(e));
  assert.equal(hold.offer('t1', ev('a', 'trace:started', 1)), false, 'a trace not being started is not held');
  hold.hold('t1', 2);
  assert.equal(hold.offer('t1', ev('a', 'trace:started', 2)), true);
  assert.equal(hold.offer('t1', ev('b', 'trace:started', 3)), true);
  assert.equal(hold.offer('t1', ev('a', 'trace:chunk', 4, { data: Buffer.alloc(10) })), true);
  assert.equal(hold.offer('t2', ev('a', 'trace:started', 5)), false, 'another trace is not held');
  assert.deepEqual(handled, []);
  await hold.release('t1');
  assert.deepEqual(seen(handled), ['a:2', 'b:3', 'a:4']);
  assert.equal(hold.holding, 0);
  assert.equal(hold.offer('t1', ev('a', 'trace:done', 7)), false, 'nothing is held once released');
});

test('a long queue is handed on a slice a turn, and in order', async () => {
  const handled: HeldEvent[] = [];
  const hold = new StartHold((e) => handled.push(e));
  hold.hold('t1', 1000);
  for (let i = 0; i < 1200; i++) assert.equal(hold.offer('t1', ev(`h${i}`, 'trace:started', i)), true);
  const released = hold.release('t1');
  assert.equal(handled.length, 500, 'the first slice in this turn, the rest later');
  // What comes while they are handed on queues behind them.
  assert.equal(hold.offer('t1', ev('h0', 'trace:done', 1200)), true);
  await released;
  assert.deepEqual(
    handled.map((e) => (e.data as { n: number }).n),
    Array.from({ length: 1201 }, (_, i) => i),
  );
});

test('past its bounds, what is held is handled at once, before the message that did not fit', () => {
  const handled: HeldEvent[] = [];
  const hold = new StartHold((e) => handled.push(e));
  // 1 host: 8 messages a host + 1000.
  hold.hold('t1', 1);
  for (let i = 0; i < 1008; i++) assert.equal(hold.offer('t1', ev('a', 'trace:progress', i)), true);
  assert.equal(hold.offer('t1', ev('a', 'trace:progress', 1008)), false, 'the caller handles this one, after the held ones');
  assert.equal(handled.length, 1008);
  assert.equal(hold.holding, 0);

  // Chunk bytes: 64 MiB across traces.
  handled.length = 0;
  hold.hold('t1', 100);
  const mib = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < 64; i++) assert.equal(hold.offer('t1', ev(`h${i}`, 'trace:chunk', i, { data: mib })), true);
  assert.equal(hold.offer('t1', ev('h64', 'trace:chunk', 64, { data: mib })), false);
  assert.deepEqual(
    handled.map((e) => (e.data as { n: number }).n),
    Array.from({ length: 64 }, (_, i) => i),
  );
  // The bytes handed on are counted out: the next trace holds again.
  hold.hold('t1', 100);
  assert.equal(hold.offer('t1', ev('h0', 'trace:chunk', 65, { data: mib })), true);
});

test("an agent gone: its held messages are handled at once, in order, the others' stay held", async () => {
  const handled: HeldEvent[] = [];
  const hold = new StartHold((e) => handled.push(e));
  hold.hold('t1', 3);
  hold.offer('t1', ev('a', 'trace:started', 1));
  hold.offer('t1', ev('b', 'trace:started', 2));
  hold.offer('t1', ev('a', 'trace:chunk', 3, { data: Buffer.alloc(4) }));
  hold.offer('t1', ev('a', 'trace:done', 4));
  hold.flushAgent('a', 's-other');
  assert.deepEqual(handled, [], "another connection of the same agent is not this one's");
  hold.flushAgent('a', 's-a');
  assert.deepEqual(seen(handled), ['a:1', 'a:3', 'a:4']);
  await hold.release('t1');
  assert.deepEqual(seen(handled), ['a:1', 'a:3', 'a:4', 'b:2'], 'handed on once, not twice');
});
