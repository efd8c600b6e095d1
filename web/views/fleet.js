/*
 * The fleet: every agent the dispatcher knows, refreshed every 5 s while
 * shown. An agent whose ring does not reach back to the start of the trace
 * form's time window is marked: a trace of that window would miss packets
 * there.
 */

import { badge, h, replace } from '../lib/dom.js';
import { captureTotals, ringShortfall } from '../lib/agents.js';
import { fmtAgo, fmtBytes, fmtCount, fmtDateTime } from '../lib/format.js';
import { WINDOWS, windowStart } from '../lib/request.js';

const REFRESH_MS = 5000;

export function renderFleet(main, ctx) {
  ctx.setTitle('Fleet');
  const win = ctx.shared.window;
  const status = h('p', { class: 'status-line', role: 'status', 'aria-live': 'polite' }, 'loading…');
  const body = h('tbody');
  const table = h(
    'table',
    { class: 'fleet', id: 'fleet-table' },
    h('caption', { class: 'visually-hidden' }, 'Agents'),
    h('thead', {}, h('tr', {}, ['Agent', 'Status', 'Last heartbeat', 'Version', 'Interfaces', 'Ring span (UTC)', 'Ring bytes', 'Packets', 'Drops', 'Index errors'].map((t) => h('th', { scope: 'col' }, t)))),
    body,
  );
  const select = h(
    'select',
    { id: 'fleet-window' },
    WINDOWS.map((w) => h('option', { value: w.value, selected: w.value === win.window }, w.value === 'custom' ? `Custom (from ${win.from ? `${win.from.replace('T', ' ')} UTC` : 'not set'})` : w.label)),
  );
  let agents = null;
  let timer = null;
  let left = false;
  ctx.onLeave(() => {
    left = true;
    clearTimeout(timer);
  });
  select.addEventListener('change', () => {
    win.window = select.value;
    draw();
  });

  replace(
    main,
    h('h1', {}, 'Fleet'),
    h('div', { class: 'table-tools' }, h('label', { for: 'fleet-window' }, 'Check rings against the window'), select, h('span', { class: 'hint' }, 'the trace form uses the same window')),
    status,
    h('div', { class: 'table-scroll' }, table),
  );

  function draw() {
    if (!agents) return;
    const start = windowStart(win);
    let short = 0;
    replace(
      body,
      agents.map((a) => {
        const shortfall = ringShortfall(a, start);
        if (shortfall) short++;
        const { packets, dropped } = captureTotals(a);
        const perIf = Object.entries(a.capture ?? {}).map(([i, c]) => `${i}: ${c.packets} packets, ${c.dropped} dropped by the capture, ${c.ifDropped} by the interface${c.running ? '' : ' (stopped)'}`);
        return h(
          'tr',
          { dataset: { agent: a.name, connected: a.connected, short: Boolean(shortfall) }, class: shortfall ? 'short-ring' : null },
          h('th', { scope: 'row' }, a.name, a.hostname && a.hostname !== a.name ? h('span', { class: 'hint' }, ` (${a.hostname})`) : null),
          h('td', {}, badge(a.connected ? 'connected' : 'disconnected')),
          h('td', { title: a.lastSeen }, fmtAgo(a.lastSeen), h('br'), h('span', { class: 'hint' }, fmtDateTime(a.lastSeen))),
          h('td', {}, a.version ?? '–'),
          h('td', {}, a.interfaces.length ? a.interfaces.join(', ') : '–'),
          h(
            'td',
            { class: 'ring-span' },
            a.ring?.oldest ? `${fmtDateTime(a.ring.oldest)} → ${fmtDateTime(a.ring.newest)}` : 'empty',
            shortfall ? h('div', { class: 'ring-short', role: 'note' }, `⚠ does not reach the window: ${shortfall}`) : null,
          ),
          h('td', { class: 'num' }, a.ring ? fmtBytes(a.ring.bytes) : '–'),
          h('td', { class: 'num' }, fmtCount(packets)),
          h('td', { class: `num${dropped ? ' warn' : ''}`, title: perIf.join('\n') }, fmtCount(dropped)),
          h('td', { class: `num${a.indexErrors ? ' warn' : ''}` }, fmtCount(a.indexErrors)),
        );
      }),
    );
    const up = agents.filter((a) => a.connected).length;
    status.textContent = `${agents.length} agent${agents.length === 1 ? '' : 's'}, ${up} connected${short ? `; ${short} with a ring that does not reach back to the window's start` : ''}. Updated ${fmtDateTime(new Date().toISOString())} UTC.`;
  }

  async function load() {
    try {
      const r = await ctx.api.agents();
      if (left) return;
      agents = r.agents.slice().sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
      draw();
    } catch (e) {
      if (left) return;
      status.textContent = `the agent list could not be read: ${e.message}`;
    }
    if (!left) timer = setTimeout(load, REFRESH_MS);
  }
  void load();
}
