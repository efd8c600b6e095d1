/*
 * The RTP streams of a trace: one row per stream and host with the figures
 * the agents computed (shared/rtp/figures.ts), and a small chart per stream
 * of jitter and loss over time. Every value is set as text or as a number in
 * an SVG attribute: nothing from the server becomes markup.
 */

import { h, replace } from '../lib/dom.js';
import { DIALOG_COLOURS as LEG_COLOURS, legsOf, legText } from '../ladder.js';

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

const ms = (v) => (v === null || v === undefined ? '–' : String(Math.round(v * 1000) / 1000));
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

const COLUMNS = [
  ['Host', (s) => s.host],
  ['SSRC', (s) => s.ssrc],
  ['Source → destination', (s) => `${s.src} → ${s.dst}`],
  ['Codec', (s) => s.codec ?? `PT ${s.payloadType}`],
  ['Packets', (s) => String(s.packets)],
  ['Expected', (s) => String(s.expected)],
  ['Lost', (s) => (s.expected ? `${s.lost} (${((100 * s.lost) / s.expected).toFixed(1)}%)` : String(s.lost))],
  ['Dup.', (s) => String(s.duplicated)],
  ['Out of order', (s) => String(s.outOfOrder)],
  ['Max gap ms', (s) => ms(s.maxGapMs)],
  ['Jitter ms mean / max', (s) => `${ms(s.jitterMeanMs)} / ${ms(s.jitterMaxMs)}`],
  ['Events', (s) => (s.eventCount ? s.events.map((e) => e.event).join('') + (s.eventCount > s.events.length ? '…' : '') : '')],
  ['R', (s) => (s.rFactor === null ? '–' : s.rFactor.toFixed(1))],
  ['MOS', (s) => (s.mos === null ? '–' : s.mos.toFixed(2))],
  ['Jitter (line) and loss (bars) over time', null],
];

/** Jitter as a line, packets lost as bars, over the stream's time buckets; its <title> says it in words. */
function chart(s) {
  const W = 180;
  const H = 40;
  const points = (s.series && Array.isArray(s.series.points) ? s.series.points : []).slice(0, 120);
  const el = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'stream-chart', role: 'img' });
  const title = svg('title');
  const worst = points.reduce((m, p) => Math.max(m, num(p.jitterMs)), 0);
  const lost = points.reduce((n, p) => n + num(p.lost), 0);
  title.textContent = `jitter up to ${ms(worst)} ms, ${lost} packets lost, over ${points.length} buckets of ${num(s.series?.bucketMs) / 1000} s`;
  el.appendChild(title);
  if (points.length === 0) return el;
  const tMax = Math.max(1, ...points.map((p) => num(p.t)));
  const jMax = Math.max(1, worst);
  const lMax = Math.max(1, ...points.map((p) => num(p.lost)));
  const x = (t) => 2 + ((W - 4) * num(t)) / tMax;
  for (const p of points) {
    if (num(p.lost) <= 0) continue;
    const bh = ((H - 4) * num(p.lost)) / lMax;
    el.appendChild(svg('rect', { x: x(p.t) - 1, y: H - 2 - bh, width: 2, height: bh, class: 'loss' }));
  }
  const line = points.map((p) => `${x(p.t).toFixed(1)},${(H - 2 - ((H - 4) * num(p.jitterMs)) / jMax).toFixed(1)}`).join(' ');
  el.appendChild(svg('polyline', { points: line, class: 'jitter', fill: 'none' }));
  return el;
}

/**
 * The streams by call: each stream's dialog (the agent names it) placed among
 * the legs of its call as the message table and the ladder place it
 * (legsOf); a dialog of no linked call is a group of its own, and streams no
 * dialog was named for (figures stored before agents sent it) come last.
 * @returns {Array<{ key: string, label: string, call: number|null, rows: Array<{ s: object, leg: object|null }> }>}
 */
function groupByLeg(streams, messages) {
  const legs = legsOf(messages);
  const groups = new Map();
  for (const s of streams) {
    const leg = typeof s.callId === 'string' ? legs.get(s.callId) ?? null : null;
    const key = leg ? `call:${leg.call}` : typeof s.callId === 'string' ? `dialog:${s.callId}` : 'none';
    let g = groups.get(key);
    if (!g) {
      const label = leg
        ? `Call #${leg.call}: ${leg.legs} leg${leg.legs === 1 ? '' : 's'} (${leg.callIds.join(', ')})`
        : typeof s.callId === 'string'
          ? `Dialog ${s.callId}`
          : 'Streams of no named dialog';
      groups.set(key, (g = { key, label, call: leg ? leg.call : null, rows: [] }));
    }
    g.rows.push({ s, leg });
  }
  // Streams come by first packet time: a group's place is its first stream's, linked calls first in their own order.
  const list = [...groups.values()];
  const rank = (g) => (g.call !== null ? g.call : g.key === 'none' ? Infinity : 1e9);
  list.sort((a, b) => rank(a) - rank(b));
  for (const g of list) g.rows.sort((a, b) => (a.leg && b.leg && a.leg.leg !== b.leg.leg ? (a.leg.leg.length - b.leg.leg.length || (a.leg.leg < b.leg.leg ? -1 : 1)) : 0));
  return list;
}

/** The leg cell: the call's colour, '#1 B' and how the leg was linked; the Call-ID otherwise. */
function legCell(row) {
  const { s, leg } = row;
  if (!leg) return typeof s.callId === 'string' ? h('span', { class: 'mono' }, s.callId) : '–';
  const sw = h('span', { class: 'leg-swatch', 'aria-hidden': 'true' });
  sw.style.backgroundColor = LEG_COLOURS[(leg.call - 1) % LEG_COLOURS.length];
  return h('span', { title: `${legText(leg)}: ${s.callId}` }, sw, `#${leg.call} ${leg.leg}`, leg.via ? [h('br'), h('span', { class: 'hint' }, leg.via)] : null);
}

/**
 * `messages`: the trace's SIP messages, whose leg groups (with legs asked
 * for) place each stream's dialog in its call.
 */
export function renderStreams(container, streams, messages = []) {
  if (!streams.length) {
    replace(container, h('p', { class: 'hint' }, 'No RTP streams: the traced calls had no media in the rings, or their figures were not asked for.'));
    return;
  }
  const groups = groupByLeg(streams, messages);
  // One call of one dialog (or figures with no dialog named): nothing to group, the table stays as it was.
  const grouped = groups.length > 1 || groups.some((g) => g.rows.some((r) => r.leg && r.leg.legs > 1));
  const columns = grouped ? [['Call / leg', legCell], ...COLUMNS.map(([t, v]) => [t, v && ((r) => v(r.s))])] : COLUMNS.map(([t, v]) => [t, v && ((r) => v(r.s))]);
  const row = (r) =>
    h(
      'tr',
      { dataset: { ssrc: r.s.ssrc, host: r.s.host, ...(typeof r.s.callId === 'string' ? { callId: r.s.callId } : {}), ...(r.leg ? { leg: `${r.leg.call}${r.leg.leg}` } : {}) } },
      columns.map(([, value]) => (value ? h('td', {}, value(r)) : h('td', {}, chart(r.s)))),
    );
  const bodies = grouped
    ? groups.map((g) =>
        h(
          'tbody',
          { class: 'stream-group', dataset: { group: g.key } },
          h('tr', { class: 'group-head' }, h('th', { scope: 'rowgroup', colspan: columns.length }, g.label)),
          g.rows.map(row),
        ),
      )
    : [h('tbody', {}, groups.flatMap((g) => g.rows).map(row))];
  replace(
    container,
    h(
      'div',
      { class: 'table-scroll' },
      h(
        'table',
        { class: 'streams', id: 'stream-table' },
        h('caption', { class: 'visually-hidden' }, grouped ? 'RTP streams and their quality figures, grouped by call and leg' : 'RTP streams and their quality figures'),
        h('thead', {}, h('tr', {}, columns.map(([t]) => h('th', { scope: 'col' }, t)))),
        bodies,
      ),
    ),
  );
}
