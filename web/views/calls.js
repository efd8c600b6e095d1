/*
 * The figures of each dialog as the dispatcher worked them out
 * (shared/query/call-figures.ts, in GET /api/traces/:id/messages `calls`):
 * one row per dialog and host. Text nodes only.
 */

import { h } from '../lib/dom.js';

const secs = (ms) => (ms === null || ms === undefined ? '–' : `${(ms / 1000).toFixed(3)} s`);

export function callsTable(calls) {
  if (!calls?.length) return h('p', { class: 'hint' }, 'No INVITE dialog in this trace.');
  const head = ['Call-ID', 'Host', 'Final status', 'Ended by', 'Setup delay (SRD)', 'Answer', 'Duration', 'Retransmissions'];
  return h(
    'div',
    { class: 'table-scroll' },
    h(
      'table',
      { class: 'calls', id: 'calls-table' },
      h('caption', { class: 'visually-hidden' }, 'Per dialog: final status, who ended it, setup delay (INVITE to the first 18x, RFC 6076 SRD), INVITE to answer, duration and retransmissions'),
      h('thead', {}, h('tr', {}, head.map((t) => h('th', { scope: 'col' }, t)))),
      h(
        'tbody',
        {},
        calls.map((c) =>
          h(
            'tr',
            { dataset: { callId: c.callId, host: c.host } },
            h('td', {}, c.callId),
            h('td', {}, c.host),
            h('td', {}, c.finalStatus === null ? '–' : `${c.finalStatus}${c.finalReason ? ` ${c.finalReason}` : ''}`),
            h('td', {}, c.endedBy ? `${c.endedBy} (${c.endedWith})` : '–'),
            h('td', { class: 'num' }, secs(c.srdMs)),
            h('td', { class: 'num' }, secs(c.answerMs)),
            h('td', { class: 'num' }, secs(c.durationMs)),
            h('td', { class: 'num' }, String(c.retransmissions)),
          ),
        ),
      ),
    ),
  );
}
