/*
 * One trace: its filter and state, one row per host updated live from
 * trace:update events, Cancel while it runs, then the SIP messages (table
 * and call-flow ladder) and the downloads. A finished trace is read from
 * the store (GET /api/traces/:id and its messages) exactly as it ended; a
 * running one is also watched on the `/client` socket.
 */

import { canTrace } from '../lib/api.js';
import { badge, h, replace } from '../lib/dom.js';
import { fmtBytes, fmtCount, fmtDateTime, fmtFilter } from '../lib/format.js';
import { FINAL_HOST, TraceTracker } from '../lib/tracker.js';
import { messageDetails, renderMessages } from './messages.js';
import { fullMessageLoader } from './full-message.js';
import { callsTable } from './calls.js';
import { renderStreams } from './streams.js';
import { renderClocks, renderHops } from './hops.js';

/** One line for the summary: the reference host and the largest offset. */
function clockSummary(c) {
  const placed = c.hosts.filter((x) => x.offsetMs !== null && x.host !== c.reference);
  if (placed.length === 0) return `reference ${c.reference}; no other host shares packets with it`;
  const worst = placed.reduce((a, b) => (Math.abs(b.offsetMs) > Math.abs(a.offsetMs) ? b : a));
  return `reference ${c.reference}; ${placed.length} host${placed.length === 1 ? '' : 's'} placed, largest offset ${worst.host} ${worst.offsetMs >= 0 ? '+' : ''}${worst.offsetMs.toFixed(3)} ms${c.aligned ? '; merged file on corrected clocks' : ''}`;
}

export function renderTrace(main, ctx, id) {
  ctx.setTitle(`Trace ${id}`);
  let tracker = null;
  let left = false;
  let resultsLoaded = false;
  let watching = false;

  const status = h('p', { class: 'status-line', id: 'trace-status', role: 'status', 'aria-live': 'polite' }, 'loading…');
  const summary = h('dl', { class: 'summary', id: 'trace-summary' });
  const cancel = h('button', { type: 'button', id: 'trace-cancel', class: 'danger', hidden: true }, 'Cancel trace');
  const actionError = h('p', { class: 'form-error', role: 'alert' });
  const hostBody = h('tbody');
  const hostTable = h(
    'table',
    { class: 'hosts', id: 'trace-hosts' },
    h('caption', { class: 'visually-hidden' }, 'Progress of each host'),
    h('thead', {}, h('tr', {}, ['Host', 'State', 'Packets', 'Bytes', 'Details'].map((t) => h('th', { scope: 'col' }, t)))),
    hostBody,
  );
  const downloads = h('div', { id: 'trace-downloads' });
  const results = h('div', { id: 'trace-results' });
  const heading = h('h1', {}, 'Trace ', h('span', { class: 'mono' }, id));

  replace(
    main,
    h(
      'div',
      { class: 'trace-page' },
      h('div', { class: 'title-row' }, heading, cancel),
      status,
      actionError,
      summary,
      h('section', { 'aria-labelledby': 'h-hosts' }, h('h2', { id: 'h-hosts' }, 'Hosts'), h('div', { class: 'table-scroll' }, hostTable)),
      h('section', { 'aria-labelledby': 'h-downloads' }, h('h2', { id: 'h-downloads' }, 'Downloads'), downloads),
      h('section', { 'aria-labelledby': 'h-results' }, h('h2', { id: 'h-results' }, 'SIP messages and call flow'), results),
    ),
  );

  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    actionError.textContent = '';
    const ack = await ctx.client.ask('trace:cancel', { traceId: id });
    cancel.disabled = false;
    if (ack.ok) apply(() => tracker.applyView(ack.trace));
    else actionError.textContent = `cancel failed: ${ack.error}`;
  });

  function drawSummary() {
    const t = tracker;
    const rows = [
      ['State', badge(t.merging ? 'merging' : t.state)],
      ['Filter', fmtFilter(t.request)],
      ['Run by', t.user],
      ['Started (UTC)', fmtDateTime(t.createdAt)],
      ['Finished (UTC)', t.finishedAt ? fmtDateTime(t.finishedAt) : '–'],
      ['Clocks', t.clocks ? clockSummary(t.clocks) : '–'],
      ['Merged', t.merged ? `${fmtCount(t.merged.packets)} packets, ${fmtBytes(t.merged.bytes)}${t.merged.duplicates ? `, ${fmtCount(t.merged.duplicates)} duplicates dropped` : ''}` : '–'],
    ];
    replace(summary, rows.map(([k, v]) => [h('dt', {}, k), h('dd', { dataset: { field: k.split(' ')[0].toLowerCase() } }, v)]));
    summary.dataset.state = t.state;
  }

  function drawHosts() {
    const hosts = [...tracker.hosts.values()].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
    replace(
      hostBody,
      hosts.map((x) =>
        h(
          'tr',
          { dataset: { host: x.host, state: x.state } },
          h('th', { scope: 'row' }, x.host),
          h('td', {}, badge(x.state)),
          h('td', { class: 'num', dataset: { field: 'packets' } }, fmtCount(x.packets)),
          h('td', { class: 'num', dataset: { field: 'bytes' } }, fmtBytes(x.bytes)),
          h(
            'td',
            { class: 'details-cell' },
            x.truncated ? h('span', { class: 'warn' }, 'truncated: the result hit its size limit') : null,
            x.error ? h('span', { class: 'error-text' }, x.error) : null,
          ),
        ),
      ),
    );
    const done = hosts.filter((x) => FINAL_HOST.has(x.state)).length;
    status.textContent = tracker.final
      ? `Trace ${tracker.state}: ${hosts.length} host${hosts.length === 1 ? '' : 's'}.`
      : tracker.merging
        ? `Every host finished; merging their packets…`
        : `Running: ${done} of ${hosts.length} hosts finished.`;
    status.dataset.state = tracker.state;
  }

  function drawDownloads() {
    if (!tracker.final) {
      replace(downloads, h('p', { class: 'hint' }, 'The files are ready when the trace has finished.'));
      return;
    }
    const link = (what, label, note) => {
      const path = ctx.api.downloadPath(id, what);
      const problem = h('span', { class: 'error-text', role: 'alert' });
      const follow = async (e) => {
        e.preventDefault();
        problem.textContent = '';
        try {
          // Fetched at the click, not with the page: the token lives minutes.
          const a = h('a', { href: await ctx.api.downloadUrl(path), download: '', hidden: true });
          document.body.append(a);
          a.click();
          a.remove();
        } catch (err) {
          problem.textContent = ` The download could not start: ${err.message}`;
        }
      };
      return h('li', {}, h('a', { href: path, download: '', class: 'download', onclick: follow, dataset: { what: typeof what === 'string' ? what : `host:${what.host}` } }, label), note ? h('span', { class: 'hint' }, ` ${note}`) : null, problem);
    };
    const items = [];
    if (tracker.merged) items.push(link('merged', 'Merged PCAP of every host', `${fmtCount(tracker.merged.packets)} packets, ${fmtBytes(tracker.merged.bytes)}`));
    for (const x of [...tracker.hosts.values()].sort((a, b) => (a.host < b.host ? -1 : 1))) {
      if (x.stored) items.push(link({ host: x.host }, `PCAP of host ${x.host}`, `${fmtCount(x.packets)} packets, ${fmtBytes(x.bytes)}`));
    }
    items.push(link('tar', 'Everything as a tar archive', 'summary.json, merged and per-host PCAPs'));
    replace(downloads, tracker.merged ? null : h('p', { class: 'hint' }, 'No host stored packets, so there is no merged PCAP.'), h('ul', { class: 'download-list' }, items));
  }

  function draw() {
    drawSummary();
    drawHosts();
    drawDownloads();
    cancel.hidden = tracker.final || !canTrace(ctx.session);
  }

  // A trace:updates message brings up to 1,000 host updates at once: the page is drawn once after them, not once each.
  let drawQueued = false;
  function apply(change) {
    if (left || !tracker) return;
    const wasFinal = tracker.final;
    change();
    if (tracker.final && !wasFinal) {
      draw();
      void finished();
    } else if (!drawQueued) {
      drawQueued = true;
      queueMicrotask(() => {
        drawQueued = false;
        if (!left) draw();
      });
    }
  }

  /** The trace ended while we watched: read what the store now holds, then the messages. */
  async function finished() {
    try {
      const r = await ctx.api.trace(id);
      if (left) return;
      tracker.applyView(r.trace);
      draw();
    } catch (e) {
      actionError.textContent = e.message;
    }
    await loadResults();
  }

  async function loadResults() {
    if (resultsLoaded || left) return;
    resultsLoaded = true;
    replace(results, h('p', { class: 'hint' }, 'loading the SIP messages…'));
    let messages;
    let calls;
    let streams;
    try {
      [{ messages, calls }, streams] = await Promise.all([ctx.api.messages(id), ctx.api.streams(id).then((r) => r.streams)]);
    } catch (e) {
      resultsLoaded = false;
      replace(results, h('p', { class: 'form-error' }, `the SIP messages could not be read: ${e.message}`));
      return;
    }
    if (left) return;
    const details = h('div', { class: 'message-details', id: 'message-details', 'aria-live': 'polite' }, h('p', { class: 'hint' }, 'Choose a message in the table to see it here.'));
    const ladder = h('div', { class: 'ladder-box', id: 'ladder' });
    const tableBox = h('div', { class: 'message-table', id: 'message-table' });
    const whole = fullMessageLoader(ctx.api, id);
    const show = (m) => {
      const box = h('div', { class: 'full-box', id: 'full-box' });
      replace(details, h('h3', {}, 'Message'), messageDetails(m), h('h3', {}, 'Whole message'), box);
      const n = messages.indexOf(m);
      if (n >= 0) void whole(box, n);
    };
    const streamBox = h('div', { id: 'trace-streams' });
    renderStreams(streamBox, streams, messages);
    const hopBox = h('div', { id: 'trace-hops' });
    renderHops(hopBox, tracker.hops ?? []);
    const clockBox = h('div', { id: 'trace-clocks' });
    renderClocks(clockBox, tracker.clocks ?? null);
    replace(
      results,
      h('h3', {}, 'Calls'),
      callsTable(calls),
      h('h3', {}, 'Call flow'),
      ladder,
      h('div', { class: 'results-grid' }, h('div', {}, h('h3', {}, 'Messages'), tableBox), details),
      h('h3', {}, 'RTP streams'),
      streamBox,
      // Right under the streams, full width: the hop table is as wide as the stream table.
      h('h3', {}, 'RTP hops: which hop went bad'),
      hopBox,
      h('h3', {}, 'Host clocks'),
      clockBox,
    );
    // The merge's estimate of each host's clock offset: the table and the ladder both order by corrected time.
    const clockOffsetsMs = Object.fromEntries((tracker.clocks?.hosts ?? []).filter((c) => c.offsetMs !== null).map((c) => [c.host, c.offsetMs]));
    const table = renderMessages(tableBox, messages, { onSelect: show, clockOffsetsMs });
    try {
      // Loaded on demand: the page works (table, downloads) even if the ladder cannot load.
      const { renderLadder } = await import('../ladder.js');
      if (left) return;
      // The ladder shows the chosen arrow's summary itself; the table marks the same message and the panel shows it whole.
      renderLadder(ladder, messages, {
        clockOffsetsMs,
        onSelect: (m) => {
          table.highlight(m);
          show(m);
        },
      });
    } catch (e) {
      replace(ladder, h('p', { class: 'form-error' }, `the call-flow ladder could not be drawn: ${e.message}`));
    }
  }

  async function watch() {
    const ack = await ctx.client.ask('trace:watch', { traceId: id });
    if (left) return;
    if (ack.ok) {
      watching = true;
      apply(() => tracker.applyView(ack.trace));
    } else actionError.textContent = `live updates unavailable: ${ack.error}`;
  }

  ctx.onUpdate((u) => {
    if (u.traceId === id) apply(() => tracker.applyUpdate(u));
  });
  // After a reconnection the socket is in no room: watch again; the ack holds whatever was missed.
  ctx.onReconnect(() => {
    if (tracker && !tracker.final) void watch();
  });
  ctx.onLeave(() => {
    left = true;
    if (watching) void ctx.client.ask('trace:unwatch', { traceId: id });
  });

  (async () => {
    let view;
    try {
      view = (await ctx.api.trace(id)).trace;
    } catch (e) {
      if (left) return;
      status.textContent = '';
      actionError.textContent = e.status === 404 ? `There is no trace ${id}. Find traces in the History.` : e.message;
      return;
    }
    if (left) return;
    tracker = new TraceTracker(view);
    draw();
    if (tracker.final) await loadResults();
    else await watch();
  })();
}
