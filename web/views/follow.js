/*
 * Following live (the trace form's "Follow live"): the SIP messages the
 * dispatcher pushes with follow:data grow the message table and the ladder
 * as they come; Pause holds the drawing (the follow goes on and every chunk
 * is still acknowledged, so the dispatcher never drops the page for it),
 * Stop ends it. A row per host says its part as the dispatcher reports it
 * (asked, following, ended, refused, lost, unreachable) and how far behind
 * its messages arrive. The ladder is redrawn as messages come, keeping the
 * chosen arrow, the dialog picked and the scroll (at the bottom it stays at
 * the newest). When it ends it is a stored trace: a link opens it like any
 * in History.
 * Leaving the view stops the follow: nobody would see it.
 */

import { badge, h, replace } from '../lib/dom.js';
import { fmtCount, fmtFilter } from '../lib/format.js';
import { messageDetails, renderMessages } from './messages.js';

/** What the page keeps of one follow; past it the table and ladder stop growing (the stored trace has everything). */
const MAX_MESSAGES = 5000;
/** Redraws at most this often while messages pour in. */
const DRAW_MS = 250;

const END_REASONS = {
  duration: 'its time ran out',
  packets: 'its packet limit was reached',
  bytes: 'its size limit was reached',
  stopped: 'stopped',
  'client-gone': 'this page went away',
  'slow-client': 'this page fell behind',
  'agents-gone': 'no agent follows any more',
  shutdown: 'the dispatcher is shutting down',
};

/** A host's part, in the page's words (FOLLOW_HOST_STATES in shared/protocol/client.ts); the badge's class is the state. */
const HOST_STATES = {
  asking: 'starting',
  following: 'following',
  ended: 'ended',
  refused: 'refused',
  lost: 'lost',
  unreachable: 'unreachable',
};

/** Milliseconds from the capture time `ts` ('<seconds>.<nanoseconds>') to `arrived`. */
function lagMs(ts, arrived) {
  const m = /^(\d{1,20})(?:\.(\d{1,9}))?$/.exec(String(ts ?? ''));
  if (!m) return null;
  return arrived - (Number(m[1]) * 1000 + Number((m[2] ?? '').padEnd(9, '0').slice(0, 3)));
}

function fmtLag(ms) {
  if (ms === null) return '–';
  return ms < 1000 ? `${Math.max(0, Math.round(ms))} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Takes the follow's events from the moment it is made (data may come
 * before follow:start's ack does), so create it before asking.
 * show(main, trace, request) draws the view; dispose() when the start failed.
 */
export function followSession(ctx) {
  let trace = null;
  let view = null;
  const early = [];
  let disposed = false;

  ctx.onFollow((kind, payload, ack) => {
    if (disposed) return ack({});
    if (trace && payload?.traceId !== trace.id) return ack({});
    if (view) view.take(kind, payload);
    else early.push([kind, payload]);
    ack({});
  });

  return {
    dispose() {
      disposed = true;
    },
    show(main, t, request) {
      trace = t;
      view = renderFollow(main, ctx, t, request);
      for (const [kind, payload] of early.splice(0)) if (payload?.traceId === t.id) view.take(kind, payload);
    },
  };
}

function renderFollow(main, ctx, trace, request) {
  ctx.setTitle('Following live');
  const id = trace.id;
  const messages = [];
  let dropped = 0;
  let paused = false;
  let ended = null;
  let drawTimer = null;
  let ladder = null;
  let ladderModule = null;
  let left = false;
  /** host -> { state, error, messages, lag, last } */
  const hostRow = () => ({ state: 'asking', error: null, messages: 0, lag: null, last: null });
  const hosts = new Map(trace.hosts.map((x) => [x.host, hostRow()]));

  const status = h('p', { class: 'status-line', id: 'follow-status', role: 'status', 'aria-live': 'polite', dataset: { state: 'running' } }, 'Following: waiting for matching SIP messages…');
  const pause = h('button', { type: 'button', id: 'follow-pause' }, 'Pause');
  const stop = h('button', { type: 'button', id: 'follow-stop', class: 'danger' }, 'Stop');
  const problem = h('p', { class: 'form-error', role: 'alert' });
  const storedLink = h('p', { id: 'follow-stored', hidden: true });
  const hostBody = h('tbody');
  const hostTable = h(
    'table',
    { class: 'hosts', id: 'follow-hosts' },
    h('caption', { class: 'visually-hidden' }, 'Each host of the follow and how far behind its messages arrive'),
    h('thead', {}, h('tr', {}, ['Host', 'State', 'Messages', 'Behind (capture → here)', 'Last message'].map((x) => h('th', { scope: 'col' }, x)))),
    hostBody,
  );
  const ladderBox = h('div', { class: 'ladder-box', id: 'ladder' });
  const tableBox = h('div', { class: 'message-table', id: 'message-table' });
  const details = h('div', { class: 'message-details', id: 'message-details', 'aria-live': 'polite' }, h('p', { class: 'hint' }, 'Choose a message in the table to see it here.'));

  replace(
    main,
    h(
      'div',
      { class: 'trace-page follow-page' },
      h('div', { class: 'title-row' }, h('h1', {}, 'Following live'), h('div', { class: 'actions' }, pause, stop)),
      status,
      problem,
      storedLink,
      h('dl', { class: 'summary' }, h('dt', {}, 'Filter'), h('dd', {}, fmtFilter(request)), h('dt', {}, 'Stored as'), h('dd', { class: 'mono' }, id)),
      h('section', { 'aria-labelledby': 'h-fhosts' }, h('h2', { id: 'h-fhosts' }, 'Hosts'), h('div', { class: 'table-scroll' }, hostTable)),
      h(
        'section',
        { 'aria-labelledby': 'h-fmsgs' },
        h('h2', { id: 'h-fmsgs' }, 'SIP messages and call flow'),
        h('h3', {}, 'Call flow'),
        ladderBox,
        h('div', { class: 'results-grid' }, h('div', {}, h('h3', {}, 'Messages'), tableBox), details),
      ),
    ),
  );

  const show = (m) => replace(details, h('h3', {}, 'Message'), messageDetails(m));

  function drawHosts() {
    const now = Date.now();
    replace(
      hostBody,
      [...hosts.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([host, x]) =>
          h(
            'tr',
            { dataset: { host, state: x.state } },
            h('th', { scope: 'row' }, host),
            h('td', { dataset: { field: 'state' } }, h('span', { class: `badge state-${x.state}`, title: x.error ?? undefined }, HOST_STATES[x.state] ?? x.state), x.error ? [h('br'), h('span', { class: 'error-text' }, x.error)] : null),
            h('td', { class: 'num', dataset: { field: 'messages' } }, fmtCount(x.messages)),
            h('td', { class: 'num', dataset: { field: 'behind' } }, fmtLag(x.lag)),
            h('td', { dataset: { field: 'last' } }, x.last === null ? 'none yet' : `${Math.round((now - x.last) / 1000)} s ago`),
          ),
        ),
    );
  }

  const table = renderMessages(tableBox, [], { onSelect: show, live: true });
  /** How many of `messages` the table has. */
  let inTable = 0;

  async function drawMessages() {
    drawTimer = null;
    if (left) return;
    table.add(messages.slice(inTable));
    inTable = messages.length;
    try {
      ladderModule ??= await import('../ladder.js');
      if (left) return;
      // The chosen arrow, the dialog picked and the scroll survive the redraw.
      const restore = ladder?.state();
      ladder?.destroy();
      ladder = ladderModule.renderLadder(ladderBox, messages, {
        restore,
        onSelect: (m) => {
          table.highlight(m);
          show(m);
        },
      });
    } catch (e) {
      replace(ladderBox, h('p', { class: 'form-error' }, `the call-flow ladder could not be drawn: ${e.message}`));
    }
  }

  function drawStatus() {
    if (ended) return;
    const n = messages.length + dropped;
    status.textContent = `${paused ? 'Paused (still following)' : 'Following'}: ${fmtCount(n)} SIP message${n === 1 ? '' : 's'}${dropped ? `, the first ${fmtCount(MAX_MESSAGES)} shown (the stored trace has every one)` : ''}.`;
    status.dataset.state = paused ? 'paused' : 'running';
  }

  /** `messagesToo`: the table and the ladder have something new (packets alone or a host's state do not redraw them). */
  function schedule(messagesToo) {
    drawStatus();
    drawHosts();
    if (messagesToo && !paused && drawTimer === null) drawTimer = setTimeout(() => void drawMessages(), DRAW_MS);
  }

  async function finished(e) {
    ended = e;
    // Hosts still at it when the follow ended stopped with it.
    for (const x of hosts.values()) if (x.state === 'asking' || x.state === 'following') x.state = 'ended';
    drawHosts();
    clearInterval(ticker);
    pause.hidden = true;
    stop.hidden = true;
    paused = false;
    status.dataset.state = 'ended';
    status.textContent = `The follow ended (${END_REASONS[e.reason] ?? e.reason})${typeof e.packets === 'number' ? `: ${fmtCount(e.packets)} packets` : ''}.${e.message ? ` ${e.message}` : ''}`;
    replace(storedLink, 'It is stored as a trace: ', h('a', { href: `#/trace/${id}`, id: 'follow-trace-link' }, `open trace ${id}`), ' (also in the ', h('a', { href: '#/history' }, 'History'), ').');
    storedLink.hidden = false;
    if (drawTimer !== null) clearTimeout(drawTimer);
    await drawMessages();
  }

  pause.addEventListener('click', () => {
    paused = !paused;
    pause.textContent = paused ? 'Resume' : 'Pause';
    pause.setAttribute('aria-pressed', String(paused));
    schedule(inTable < messages.length);
  });
  stop.addEventListener('click', async () => {
    stop.disabled = true;
    problem.textContent = '';
    const ack = await ctx.client.ask('follow:stop', { traceId: id });
    if (!ack.ok) {
      stop.disabled = false;
      problem.textContent = `stop failed: ${ack.error}`;
    }
  });
  const ticker = setInterval(drawHosts, 1000);
  // A follow belongs to the socket that started it: when that connection dropped, the dispatcher ended and stored it.
  ctx.onReconnect(() => {
    if (!ended && !left) void finished({ traceId: id, reason: 'client-gone', packets: null, message: 'The connection to the dispatcher dropped, which ends a follow.' });
  });
  ctx.onLeave(() => {
    left = true;
    clearInterval(ticker);
    if (drawTimer !== null) clearTimeout(drawTimer);
    ladder?.destroy();
    if (!ended) void ctx.client.ask('follow:stop', { traceId: id });
  });
  drawHosts();

  return {
    take(kind, payload) {
      if (left || ended) return;
      if (kind === 'end') return void finished(payload);
      const now = Date.now();
      for (const st of payload.hosts ?? []) {
        const x = hosts.get(st.host) ?? hostRow();
        hosts.set(st.host, x);
        x.state = st.state;
        x.error = st.error ?? null;
      }
      for (const m of payload.messages ?? []) {
        const x = hosts.get(m.host) ?? hostRow();
        hosts.set(m.host, x);
        x.messages++;
        x.lag = lagMs(m.ts, now);
        x.last = now;
        if (messages.length < MAX_MESSAGES) messages.push(m);
        else dropped++;
      }
      schedule(inTable < messages.length);
    },
  };
}
