/*
 * The RTP streams of a trace: one row per stream and host with the figures
 * the agents computed (shared/rtp/figures.ts), and a small chart per stream
 * of jitter and loss over time. Every value is set as text or as a number in
 * an SVG attribute: nothing from the server becomes markup.
 */

import { h, replace } from '../lib/dom.js';

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

export function renderStreams(container, streams) {
  if (!streams.length) {
    replace(container, h('p', { class: 'hint' }, 'No RTP streams: the traced calls had no media in the rings, or their figures were not asked for.'));
    return;
  }
  const rows = streams.map((s) =>
    h(
      'tr',
      { dataset: { ssrc: s.ssrc, host: s.host } },
      COLUMNS.map(([, value]) => (value ? h('td', {}, value(s)) : h('td', {}, chart(s)))),
    ),
  );
  replace(
    container,
    h(
      'div',
      { class: 'table-scroll' },
      h(
        'table',
        { class: 'streams', id: 'stream-table' },
        h('caption', { class: 'visually-hidden' }, 'RTP streams and their quality figures'),
        h('thead', {}, h('tr', {}, COLUMNS.map(([t]) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows),
      ),
    ),
  );
}
