/*
 * The SIP message table: one row per message as each host captured it,
 * filtered by a text box (any column) and sorted by clicking a column's
 * header (again: the other way). Time order is exact (`ts` compared as
 * seconds and nanoseconds), not the rounded clock shown.
 */

import { h, replace } from '../lib/dom.js';
import { fmtClock, fmtMethodStatus } from '../lib/format.js';
// The ladder's colours, one per call here.
import { DIALOG_COLOURS as LEG_COLOURS, clockCorrection, legsOf, legText } from '../ladder.js';

/** ts ('<seconds>.<nanoseconds>') as a sortable string: zero-padded seconds and nine decimals. */
function tsKey(ts) {
  const m = /^(\d{1,20})(?:\.(\d{1,9}))?$/.exec(String(ts ?? ''));
  return m ? `${m[1].padStart(20, '0')}.${(m[2] ?? '').padEnd(9, '0')}` : `~${ts}`;
}

/** 'HH:MM:SS.mmm' of an instant in nanoseconds since the epoch. */
function nsClock(ns) {
  return fmtClock(new Date(Number(ns / 1_000_000n)).toISOString());
}

/**
 * The time column. With clock offsets (the merge's estimate, per host) the
 * table is on the reference host's clock like the ladder: sorted by the
 * corrected time, and where a correction shows at millisecond precision
 * (`shown`) it shows the corrected time with the time as captured under it.
 */
function timeColumn(fix, shown) {
  if (!fix) return { key: 'time', label: 'Time (UTC)', value: (m) => fmtClock(m.time), sort: (m) => tsKey(m.ts) };
  const captured = (m) => `captured ${fmtClock(m.time)}`;
  return {
    key: 'time',
    label: shown ? 'Time (UTC, corrected)' : 'Time (UTC)',
    value: (m) => {
      const c = fix(m);
      return c.shifted && c.ns !== null ? `${nsClock(c.ns)} ${captured(m)}` : fmtClock(m.time);
    },
    cell: (m) => {
      const c = fix(m);
      if (!c.shifted || c.ns === null) return [fmtClock(m.time)];
      return [h('span', { class: 'corrected', title: `corrected by ${m.host}'s clock offset; captured at ${m.time}` }, nsClock(c.ns)), h('br'), h('span', { class: 'hint captured' }, captured(m))];
    },
    sort: (m) => {
      const c = fix(m);
      return c.ns !== null ? c.ns.toString().padStart(30, '0') : `~${m.ts}`;
    },
  };
}

const COLUMNS = [
  // "via HEP" under the host: the message was sent by a proxy's HEP agent, not sniffed.
  { key: 'host', label: 'Host', value: (m) => `${m.host ?? ''}${m.hep ? ' via HEP' : ''}`, cell: (m) => (m.hep ? [m.host ?? '', h('br'), 'via HEP'] : [m.host ?? '']) },
  { key: 'flow', label: 'Source → Destination', value: (m) => `${m.src} → ${m.dst}`, cell: (m) => [m.src, ' →', h('br'), m.dst] },
  { key: 'what', label: 'Method / status', value: (m) => fmtMethodStatus(m), sort: (m) => (m.method ? `0${m.method}` : `1${String(m.status).padStart(3, '0')}`) },
  { key: 'callId', label: 'Call-ID', value: (m) => m.callId ?? '' },
  { key: 'cseq', label: 'CSeq', value: (m) => m.cseq ?? '', sort: (m) => String(m.cseq ?? '').replace(/^\d+/, (d) => d.padStart(10, '0')) },
  { key: 'fromTo', label: 'From / To', value: (m) => `${m.from ?? '–'} / ${m.to ?? '–'}`, cell: (m) => [m.from ?? '–', ' /', h('br'), m.to ?? '–'] },
];

function kind(m) {
  if (m.method) return 'request';
  if (typeof m.status === 'number') return m.status < 200 ? 'provisional' : m.status < 300 ? 'success' : 'failure';
  return 'other';
}

/**
 * Renders into container; returns { highlight(msg) } to mark the row of a
 * message chosen elsewhere (the ladder), and add(messages) for a live view
 * (`live`: the table shows even while empty). onSelect(msg) when a row is chosen.
 * clockOffsetsMs: per host, its clock's offset from the trace's reference
 * (TraceView.clocks), as the ladder takes it.
 */
export function renderMessages(container, messages, { onSelect, live = false, clockOffsetsMs } = {}) {
  // With legs asked for, a column names each message's call and leg, in the leg's colour as the ladder draws calls.
  const legs = legsOf(messages);
  const correction = clockCorrection(clockOffsetsMs);
  // Looked up for every sort comparison: computed once a message.
  const fixes = new WeakMap();
  const fix = (m) => fixes.get(m) ?? fixes.set(m, correction(m)).get(m);
  const hasOffsets = Object.values(clockOffsetsMs ?? {}).some((v) => typeof v === 'number' && v !== 0);
  const time = timeColumn(hasOffsets ? fix : null, messages.some((m) => correction(m).shifted));
  const columns = [time, ...COLUMNS];
  if ([...legs.values()].some((l) => l.legs > 1)) {
    const legOf = (m) => legs.get(m.callId);
    columns.splice(1, 0, {
      key: 'leg',
      label: 'Leg',
      value: (m) => (legOf(m) ? legText(legOf(m)) : ''),
      sort: (m) => (legOf(m) ? `${String(legOf(m).call).padStart(6, '0')}${legOf(m).leg.padStart(3, ' ')}${time.sort(m)}` : '~'),
      cell: (m) => {
        const l = legOf(m);
        if (!l) return '';
        const sw = h('span', { class: 'leg-swatch', 'aria-hidden': 'true' });
        sw.style.backgroundColor = LEG_COLOURS[(l.call - 1) % LEG_COLOURS.length];
        return [sw, `#${l.call} ${l.leg}`, ...(l.via ? [h('br'), h('span', { class: 'hint' }, l.via)] : [])];
      },
    });
  }
  const rowOf = (m, i) => ({ m, i, text: columns.map((c) => c.value(m)).join('\u0001').toLowerCase() });
  const rows = messages.map(rowOf);
  let sortKey = 'time';
  let dir = 1;
  let query = '';
  let selected = null;

  const filter = h('input', { type: 'search', id: 'msg-filter', placeholder: 'e.g. INVITE, 486, 198.18.0.2, a Call-ID', autocomplete: 'off', spellcheck: 'false', 'aria-controls': 'msg-table' });
  const count = h('span', { class: 'hint', id: 'msg-count', role: 'status', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const headers = columns.map((c) => {
    const button = h('button', { type: 'button', class: 'sort', dataset: { key: c.key } }, c.label);
    button.addEventListener('click', () => {
      if (sortKey === c.key) dir = -dir;
      else {
        sortKey = c.key;
        dir = 1;
      }
      draw();
    });
    return h('th', { scope: 'col', dataset: { key: c.key } }, button);
  });
  const table = h('table', { class: 'messages', id: 'msg-table' }, h('caption', { class: 'visually-hidden' }, 'SIP messages; choose a column header to sort'), h('thead', {}, h('tr', {}, headers)), tbody);

  function draw() {
    const col = columns.find((c) => c.key === sortKey);
    const key = col.sort ?? col.value;
    const shown = rows.filter((r) => !query || r.text.includes(query));
    shown.sort((a, b) => {
      const x = key(a.m);
      const y = key(b.m);
      return (x < y ? -1 : x > y ? 1 : 0) * dir || a.i - b.i;
    });
    for (const [i, c] of columns.entries()) headers[i].setAttribute('aria-sort', c.key === sortKey ? (dir > 0 ? 'ascending' : 'descending') : 'none');
    replace(
      tbody,
      shown.map((r) => {
        const tr = h(
          'tr',
          { class: `kind-${kind(r.m)}${selected === r.m ? ' selected' : ''}`, dataset: { index: r.i }, tabindex: 0, 'aria-selected': selected === r.m ? 'true' : 'false' },
          columns.map((c) => h('td', { class: `col-${c.key}` }, c.cell ? c.cell(r.m) : c.value(r.m))),
        );
        const choose = () => {
          selected = r.m;
          for (const other of tbody.querySelectorAll('tr.selected')) {
            other.classList.remove('selected');
            other.setAttribute('aria-selected', 'false');
          }
          tr.classList.add('selected');
          tr.setAttribute('aria-selected', 'true');
          onSelect?.(r.m);
        };
        tr.addEventListener('click', choose);
        tr.addEventListener('keydown', (ev) => {
          if (ev.key === 'Enter' || ev.key === ' ') {
            ev.preventDefault();
            choose();
          }
        });
        return tr;
      }),
    );
    count.textContent = query ? `${shown.length} of ${rows.length} messages` : `${rows.length} messages`;
  }

  filter.addEventListener('input', () => {
    query = filter.value.trim().toLowerCase();
    draw();
  });

  replace(
    container,
    h('div', { class: 'table-tools' }, h('label', { for: 'msg-filter' }, 'Filter'), filter, count),
    messages.length || live ? h('div', { class: 'table-scroll' }, table) : h('p', { class: 'hint' }, 'No SIP messages were captured for this trace.'),
  );
  draw();
  return {
    /** More messages (a live follow): the filter, the sort and the chosen row stay. */
    add(list) {
      for (const m of list) rows.push(rowOf(m, rows.length));
      draw();
    },
    highlight(msg) {
      selected = msg;
      draw();
      // Scroll the table's own box only: the page stays where the reader is (at the ladder).
      const row = tbody.querySelector('tr.selected');
      const box = row?.closest('.table-scroll');
      if (row && box) {
        const top = row.offsetTop - box.clientHeight / 2;
        box.scrollTop = Math.max(0, top);
      }
    },
  };
}

/** The chosen message's fields, as a definition list. */
export function messageDetails(m) {
  const rows = [
    ['Time (UTC)', m.time],
    ['Epoch', m.ts],
    ['Captured on', m.host],
    ['Transport', m.transport],
    ['Came', m.hep ? 'through HEP' : 'from the wire'],
    ['Source', m.src],
    ['Destination', m.dst],
    [m.method ? 'Method' : 'Status', fmtMethodStatus(m)],
    ['Request-URI', m.ruri],
    ['Call-ID', m.callId],
    ['CSeq', m.cseq],
    ['From', m.from],
    ['To', m.to],
    ['Correlation', m.correlation],
    ['Call (legs)', m.legGroup],
    ['Linked by', m.legVia],
    ['Size', `${m.bytes} bytes in ${m.packets} packet${m.packets === 1 ? '' : 's'}`],
  ];
  return h(
    'dl',
    { class: 'details' },
    rows.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]),
  );
}
