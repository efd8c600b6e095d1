import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TraceUpdate } from '../../shared/protocol/client';
import { UPDATE_WINDOW_MS, UPDATES_MAX, UpdateBatcher } from './update-batch';

const up = (traceId: string, host: string | null, state: string): TraceUpdate => ({ traceId, host, state, packets: 0, bytes: 0, at: '2026-12-04T00:00:00.000Z' });

function recorder() {
  const sent: Array<{ traceId: string; states: string[] }> = [];
  const b = new UpdateBatcher((traceId, us) => sent.push({ traceId, states: us.map((u) => `${u.host ?? '*'}:${u.state}`) }));
  return { sent, b };
}

test("a trace's host updates of one turn go out together, in order, on the next; a lone one alone", async () => {
  const { sent, b } = recorder();
  b.push(up('t1', 'a', 'queued'));
  b.push(up('t1', 'b', 'queued'));
  b.push(up('t2', 'c', 'queued'));
  b.push(up('t1', 'a', 'started'));
  assert.equal(sent.length, 0, 'nothing is sent within the turn');
  await sleep(5);
  assert.deepEqual(sent, [
    { traceId: 't1', states: ['a:queued', 'b:queued', 'a:started'] },
    { traceId: 't2', states: ['c:queued'] },
  ]);
  // Within the window after a send, updates wait for its end.
  b.push(up('t1', 'a', 'done'));
  await sleep(5);
  assert.equal(sent.length, 2);
  await sleep(UPDATE_WINDOW_MS + 20);
  assert.deepEqual(sent[2], { traceId: 't1', states: ['a:done'] });
  // Windows with nothing in them end the rooms.
  await sleep(2 * UPDATE_WINDOW_MS + 40);
  assert.equal(b.active, 0);
});

test("the trace's own update goes alone, after the host updates gathered before it", async () => {
  const { sent, b } = recorder();
  b.push(up('t1', null, 'running'));
  b.push(up('t1', 'a', 'done'));
  b.push(up('t1', 'b', 'done'));
  b.push(up('t1', null, 'done'));
  assert.deepEqual(sent, [
    { traceId: 't1', states: ['*:running'] },
    { traceId: 't1', states: ['a:done', 'b:done'] },
    { traceId: 't1', states: ['*:done'] },
  ]);
  await sleep(UPDATE_WINDOW_MS + 20);
  assert.equal(sent.length, 3, 'nothing is sent twice');
  b.close();
});

test('a full batch goes at once; memory is bounded by UPDATES_MAX per trace', () => {
  const { sent, b } = recorder();
  for (let i = 0; i < UPDATES_MAX * 2 + 1; i++) b.push(up('t1', `h${i}`, 'queued'));
  assert.deepEqual(
    sent.map((s) => s.states.length),
    [UPDATES_MAX, UPDATES_MAX],
  );
  b.close();
  assert.deepEqual(sent[2].states, [`h${UPDATES_MAX * 2}:queued`], 'close sends what is left');
});
