/*
 * What the merge learnt from packets several hosts captured
 * (shared/trace/vantage.ts): each host's clock against the reference host,
 * and per RTP stream seen on several hosts, what each hop between two of
 * them lost, delayed and jittered. Every value is set as text.
 */

import { h, replace } from '../lib/dom.js';

const ms = (v) => (v === null || v === undefined ? '–' : String(Math.round(v * 1000) / 1000));
const signed = (v) => (v === null || v === undefined ? '–' : `${v >= 0 ? '+' : ''}${v.toFixed(3)}`);

const CLOCK_COLUMNS = [
  ['Host', (c) => c.host],
  ['Offset ms', (c, ref) => (c.host === ref ? 'reference' : signed(c.offsetMs))],
  ['Spread ms', (c) => ms(c.spreadMs)],
  ['Common packets', (c) => String(c.samples)],
  ['Against', (c) => c.against ?? '–'],
  ['Directions', (c) => (c.against === null ? '' : c.twoWay ? 'both ways' : 'one way (offset includes the path delay)')],
];

/** The hosts' clocks; a hint when no two hosts shared a packet. */
export function renderClocks(container, clocks) {
  if (!clocks) {
    replace(container, h('p', { class: 'hint' }, 'No two hosts captured a common packet, so their clocks could not be compared; times are as each host captured them.'));
    return;
  }
  replace(
    container,
    h('p', { class: 'hint' }, `Offsets against ${clocks.reference}, from packets two hosts both captured; the ladder and the message table are ordered by corrected time (the table shows each message's capture time under it).${clocks.aligned ? ' The merged file has corrected timestamps (PCAPNG; each host’s offset is in its interface comment).' : ''}`),
    h(
      'div',
      { class: 'table-scroll' },
      h(
        'table',
        { class: 'clocks', id: 'clock-table' },
        h('caption', { class: 'visually-hidden' }, 'Clock offset of each host'),
        h('thead', {}, h('tr', {}, CLOCK_COLUMNS.map(([t]) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, clocks.hosts.map((c) => h('tr', { dataset: { host: c.host } }, CLOCK_COLUMNS.map(([, v]) => h('td', {}, v(c, clocks.reference)))))),
      ),
    ),
  );
}

const HOP_COLUMNS = [
  ['SSRC', (x) => x.ssrc],
  ['Stream', (x) => `${x.src} → ${x.dst}`],
  ['Hop', (x) => `${x.from} → ${x.to}`],
  ['Packets', (x) => String(x.packets)],
  ['Lost on hop', (x) => (x.packets ? `${x.lost} (${((100 * x.lost) / x.packets).toFixed(1)}%)` : String(x.lost))],
  ['Unseen upstream', (x) => String(x.unseenUpstream)],
  ['Delay ms median / max', (x) => `${ms(x.delayMs)} / ${ms(x.delayMaxMs)}`],
  ['Jitter added ms mean / max', (x) => `${ms(x.jitterAddedMeanMs)} / ${ms(x.jitterAddedMaxMs)}`],
  ['Clocks', (x) => (x.corrected ? 'corrected' : 'raw')],
];

/** One row per hop; the rows with loss are marked so the bad hop stands out. */
export function renderHops(container, hops) {
  if (!hops || hops.length === 0) {
    replace(container, h('p', { class: 'hint' }, 'No RTP stream was seen by two hosts with its packets: the hop table needs the RTP packets (the RTP switch) and two hosts on the media path.'));
    return;
  }
  replace(
    container,
    h(
      'div',
      { class: 'table-scroll' },
      h(
        'table',
        { class: 'hops', id: 'hop-table' },
        h('caption', { class: 'visually-hidden' }, 'What each hop between two capturing hosts did to each RTP stream'),
        h('thead', {}, h('tr', {}, HOP_COLUMNS.map(([t]) => h('th', { scope: 'col' }, t)))),
        h(
          'tbody',
          {},
          hops.map((x) => h('tr', { dataset: { ssrc: x.ssrc, from: x.from, to: x.to }, class: x.lost > 0 ? 'hop-loss' : null }, HOP_COLUMNS.map(([, v]) => h('td', {}, v(x))))),
        ),
      ),
    ),
  );
}
