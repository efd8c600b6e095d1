/* Past traces, newest first (GET /api/traces), a page at a time; each opens its stored results. */

import { badge, h, replace } from '../lib/dom.js';
import { fmtBytes, fmtCount, fmtDateTime, fmtFilter } from '../lib/format.js';

const PAGE = 20;

export function renderHistory(main, ctx) {
  ctx.setTitle('History');
  // Every visit starts at the newest page. stack: the bookmarks of the pages before this one (the first has none).
  const paging = { stack: [], bookmark: undefined };
  const status = h('p', { class: 'status-line', role: 'status', 'aria-live': 'polite' }, 'loading…');
  const body = h('tbody');
  const table = h(
    'table',
    { class: 'history', id: 'history-table' },
    h('caption', { class: 'visually-hidden' }, 'Traces, newest first'),
    h('thead', {}, h('tr', {}, ['Trace', 'Started (UTC)', 'Run by', 'Filter', 'Hosts', 'State', 'Merged'].map((t) => h('th', { scope: 'col' }, t)))),
    body,
  );
  const newer = h('button', { type: 'button', class: 'secondary', id: 'history-newer' }, '← Newer');
  const older = h('button', { type: 'button', class: 'secondary', id: 'history-older' }, 'Older →');
  const refresh = h('button', { type: 'button', class: 'secondary', id: 'history-refresh' }, 'Refresh');
  let left = false;
  let next;
  ctx.onLeave(() => (left = true));

  replace(
    main,
    h('div', { class: 'title-row' }, h('h1', {}, 'History'), refresh),
    status,
    h('div', { class: 'table-scroll' }, table),
    h('div', { class: 'pager' }, newer, older),
  );

  async function load() {
    status.textContent = 'loading…';
    newer.disabled = true;
    older.disabled = true;
    let page;
    try {
      page = await ctx.api.traces({ limit: PAGE, bookmark: paging.bookmark });
    } catch (e) {
      if (left) return;
      status.textContent = `the history could not be read: ${e.message}`;
      newer.disabled = paging.stack.length === 0;
      return;
    }
    if (left) return;
    next = page.bookmark;
    replace(
      body,
      page.traces.map((t) =>
        h(
          'tr',
          { dataset: { id: t.id, state: t.state } },
          h('th', { scope: 'row' }, h('a', { href: `#/trace/${t.id}`, class: 'mono' }, t.id)),
          h('td', {}, fmtDateTime(t.createdAt)),
          h('td', {}, t.user),
          h('td', { class: 'filter' }, fmtFilter(t.request)),
          h('td', { class: 'num' }, String(t.hosts.length)),
          h('td', {}, badge(t.state)),
          h('td', { class: 'num' }, t.merged ? `${fmtCount(t.merged.packets)} pkts, ${fmtBytes(t.merged.bytes)}` : '–'),
        ),
      ),
    );
    const first = paging.stack.length * PAGE + 1;
    status.textContent = page.traces.length ? `Traces ${first}–${first + page.traces.length - 1}, newest first.` : paging.stack.length ? 'No older traces.' : 'No traces yet.';
    newer.disabled = paging.stack.length === 0;
    older.disabled = !next || page.traces.length < PAGE;
  }

  older.addEventListener('click', () => {
    if (!next) return;
    paging.stack.push(paging.bookmark);
    paging.bookmark = next;
    void load();
  });
  newer.addEventListener('click', () => {
    if (!paging.stack.length) return;
    paging.bookmark = paging.stack.pop();
    void load();
  });
  refresh.addEventListener('click', () => void load());
  void load();
}
