/*
 * Fleet health (#/health): the SIP statistics the agents count per window
 * (GET /api/stats), per peer and per host, the worst first; a cell per peer
 * and window; a click on a cell shows its failures, each a button that
 * starts a trace of exactly those calls (INVITEs that peer answered with
 * that status in that window, on the hosts that saw them).
 */

import { h, replace } from '../lib/dom.js';
import { canTrace } from '../lib/api.js';
import { windowChart } from '../lib/chart.js';
import { fmtClock, fmtCount } from '../lib/format.js';

const REFRESH_MS = 30_000;
const RANGES = [
  { value: '1h', label: 'Last hour', s: 3600 },
  { value: '6h', label: 'Last 6 hours', s: 6 * 3600 },
  { value: '24h', label: 'Last 24 hours', s: 86_400 },
];
/** Most peers listed (the worst ones): the rest are a click on another range or filter away. */
const MAX_PEERS = 50;
/** An address (not an operator's name or "other"): a trace can ask for it with --ip. */
const ADDRESS = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)$/;

/** HH:MM of an ISO time (UTC, as the whole page shows times). */
const hm = (iso) => String(iso).slice(11, 16);
const pct = (v) => (v === null || v === undefined ? '–' : `${v.toFixed(v >= 10 || v === 0 ? 0 : 1)}%`);
const level = (f) => (f.invites === 0 ? 'none' : (f.errorRatio ?? 0) >= 20 ? 'bad' : (f.errorRatio ?? 0) >= 5 ? 'warn' : 'ok');

/** The trace request that selects the INVITEs `peer` answered `status` in [since, until) on `hosts`. */
export function failureRequest(peer, status, since, until, hosts) {
  return { ip: [peer], method: ['INVITE'], status: [String(status)], since, until, hosts: [...hosts] };
}

export function renderHealth(main, ctx, opts = {}) {
  ctx.setTitle('Health');
  const state = { range: opts.range ?? '1h', answer: null, selected: null };
  const status = h('p', { class: 'status-line', role: 'status', 'aria-live': 'polite' }, 'loading…');
  const select = h('select', { id: 'health-range' }, RANGES.map((r) => h('option', { value: r.value, selected: r.value === state.range }, r.label)));
  const fleetBox = h('div', { class: 'health-fleet' });
  const peersBox = h('div', { class: 'table-scroll' });
  const detail = h('div', { class: 'health-detail', id: 'health-detail', 'aria-live': 'polite' });
  const hostsBox = h('div', { class: 'table-scroll' });
  const rulesBox = h('div', { class: 'health-rules' });
  let timer = null;
  let left = false;
  ctx.onLeave(() => {
    left = true;
    clearTimeout(timer);
  });
  select.addEventListener('change', () => {
    state.range = select.value;
    state.selected = null;
    void load();
  });
  replace(
    main,
    h('h1', {}, 'Health'),
    h('div', { class: 'table-tools' }, h('label', { for: 'health-range' }, 'Range'), select, h('span', { class: 'hint' }, 'INVITE dialogs per window; error ratio: failed (4xx–6xx other than busy, no answer, cancelled; or unanswered) over all')),
    status,
    h('h2', {}, 'Fleet'),
    fleetBox,
    h('h2', {}, 'Peers, worst first'),
    peersBox,
    detail,
    h('h2', {}, 'Hosts'),
    hostsBox,
    h('h2', {}, 'Alert rules'),
    rulesBox,
  );

  async function load() {
    clearTimeout(timer);
    const range = RANGES.find((r) => r.value === state.range) ?? RANGES[0];
    const to = new Date();
    const from = new Date(to.getTime() - range.s * 1000);
    try {
      state.answer = await ctx.api.stats({ from: from.toISOString(), to: to.toISOString() });
      status.textContent = state.answer.windows.length === 0 ? 'No statistics in this range: no agent counted SIP then.' : `Updated ${fmtClock(to.toISOString())}`;
      draw();
    } catch (e) {
      status.textContent = `Could not load the statistics: ${e.message}`;
    }
    if (!left) timer = setTimeout(load, REFRESH_MS);
  }

  function series(rows) {
    const w = state.answer.windows;
    return {
      bars: w.map((x) => rows(x).reduce((n, r) => n + r.counts.invites, 0)),
      line: w.map((x) => {
        const rs = rows(x);
        const inv = rs.reduce((n, r) => n + r.counts.invites, 0);
        const err = rs.reduce((n, r) => n + (r.figures.errorRatio ?? 0) * r.counts.invites, 0);
        return inv > 0 ? err / inv : null;
      }),
      titles: w.map((x) => `${hm(x.start)}: ${rows(x).reduce((n, r) => n + r.counts.invites, 0)} INVITEs`),
    };
  }

  function draw() {
    const a = state.answer;
    const windows = a.windows;
    const fs = series((w) => [w.total]);
    replace(
      fleetBox,
      windowChart({ ...fs, label: `INVITEs per window (bars) and error ratio (line), ${windows.length} windows`, width: 480, height: 60 }),
      h('p', { class: 'hint' }, `${fmtCount(fs.bars.reduce((x, y) => x + y, 0))} INVITE dialogs in ${windows.length} windows`),
    );
    const peers = a.peers.slice(0, MAX_PEERS);
    const cellOf = (p, w) => w.rows.filter((r) => r.peer === p.peer && r.dir === p.dir);
    replace(
      peersBox,
      peers.length === 0
        ? h('p', { class: 'hint' }, 'No peer in this range.')
        : h(
            'table',
            { class: 'health', id: 'health-peers' },
            h('thead', {}, h('tr', {}, ['Peer', 'Dir', 'Hosts', 'INVITEs', 'Answered', 'Errors', 'SER', 'ISA', 'Trend'].map((t) => h('th', { scope: 'col' }, t)), windows.map((w) => h('th', { scope: 'col', class: 'win' }, hm(w.start))))),
            h(
              'tbody',
              {},
              peers.map((p) => {
                const s = series((w) => cellOf(p, w));
                return h(
                  'tr',
                  { dataset: { peer: p.peer, dir: p.dir } },
                  h('th', { scope: 'row' }, p.peer),
                  h('td', {}, p.dir),
                  h('td', {}, p.hosts.join(', ')),
                  h('td', { class: 'num' }, fmtCount(p.figures.invites)),
                  h('td', { class: 'num' }, pct(p.figures.answerRatio)),
                  h('td', { class: `num level-${level(p.figures)}` }, pct(p.figures.errorRatio)),
                  h('td', { class: 'num' }, pct(p.figures.ser)),
                  h('td', { class: 'num' }, pct(p.figures.isa)),
                  h('td', {}, windowChart({ ...s, label: `${p.peer} ${p.dir}: INVITEs and error ratio per window` })),
                  windows.map((w) => {
                    const rows = cellOf(p, w);
                    if (rows.length === 0) return h('td', { class: 'cell level-none' }, '');
                    const inv = rows.reduce((n, r) => n + r.counts.invites, 0);
                    const f = { invites: inv, errorRatio: inv > 0 ? rows.reduce((n, r) => n + (r.figures.errorRatio ?? 0) * r.counts.invites, 0) / inv : null };
                    return h(
                      'td',
                      { class: `cell level-${level(f)}` },
                      h('button', { type: 'button', class: 'cell-button', title: `${p.peer} ${p.dir}, window ${hm(w.start)}: ${inv} INVITEs, errors ${pct(f.errorRatio)}`, onclick: () => select1(p, w, rows) }, inv > 0 ? pct(f.errorRatio) : '·'),
                    );
                  }),
                );
              }),
            ),
          ),
    );
    replace(
      hostsBox,
      a.hosts.length === 0
        ? h('p', { class: 'hint' }, 'No host in this range.')
        : h(
            'table',
            { class: 'health', id: 'health-hosts' },
            h('thead', {}, h('tr', {}, ['Host', 'INVITEs', 'Answered', 'Errors', 'SER', 'ISA', 'Trend'].map((t) => h('th', { scope: 'col' }, t)))),
            h(
              'tbody',
              {},
              a.hosts.map((x) =>
                h(
                  'tr',
                  {},
                  h('th', { scope: 'row' }, x.host),
                  h('td', { class: 'num' }, fmtCount(x.figures.invites)),
                  h('td', { class: 'num' }, pct(x.figures.answerRatio)),
                  h('td', { class: `num level-${level(x.figures)}` }, pct(x.figures.errorRatio)),
                  h('td', { class: 'num' }, pct(x.figures.ser)),
                  h('td', { class: 'num' }, pct(x.figures.isa)),
                  h('td', {}, windowChart({ ...series((w) => w.rows.filter((r) => r.host === x.host)), label: `${x.host}: INVITEs and error ratio per window` })),
                ),
              ),
            ),
          ),
    );
    if (state.selected) {
      const { peer, dir, start } = state.selected;
      const p = a.peers.find((x) => x.peer === peer && x.dir === dir);
      const w = windows.find((x) => x.start === start);
      if (p && w) select1(p, w, cellOf(p, w));
    }
  }

  /** One cell: its outcomes, each failure a button that traces exactly those calls. */
  function select1(p, w, rows) {
    state.selected = { peer: p.peer, dir: p.dir, start: w.start };
    const since = w.start;
    const until = new Date(Date.parse(w.start) + w.seconds * 1000).toISOString();
    const hosts = [...new Set(rows.map((r) => r.host))].sort();
    const finals = {};
    for (const r of rows) for (const [code, n] of Object.entries(r.counts.finals)) finals[code] = (finals[code] ?? 0) + n;
    const failing = Object.entries(finals).filter(([c]) => Number(c) >= 300).sort((x, y) => y[1] - x[1]);
    const traceable = ADDRESS.test(p.peer);
    const mayTrace = canTrace(ctx.session);
    const note = h('p', { class: 'form-error', role: 'alert' });
    replace(
      detail,
      h('h3', {}, `${p.peer} (${p.dir}), ${hm(w.start)}–${hm(until)} UTC, on ${hosts.join(', ')}`),
      h('p', {}, `${rows.reduce((n, r) => n + r.counts.invites, 0)} INVITE dialogs; finals: ${Object.entries(finals).map(([c, n]) => `${c} ×${n}`).join(', ') || 'none yet'}`),
      failing.length === 0
        ? h('p', { class: 'hint' }, 'No failed INVITE in this cell.')
        : h(
            'div',
            { class: 'failures' },
            failing.map(([code, n]) =>
              h(
                'button',
                {
                  type: 'button',
                  class: 'trace-failure',
                  dataset: { status: code },
                  disabled: !traceable || !mayTrace,
                  title: !traceable ? `${p.peer} is a name, not an address: trace its addresses from the trace form` : !mayTrace ? 'tracing needs the tracer or admin role' : `trace the INVITEs answered ${code} with ${p.peer} in this window`,
                  onclick: async (ev) => {
                    ev.currentTarget.disabled = true;
                    const ack = await ctx.client.ask('trace:start', failureRequest(p.peer, code, since, until, hosts));
                    if (ack && ack.ok) ctx.navigate(`#/trace/${ack.trace.id}`);
                    else {
                      note.textContent = ack?.error ?? 'the dispatcher gave no answer';
                      ev.currentTarget.disabled = false;
                    }
                  },
                },
                `Trace the ${n} INVITE${n === 1 ? '' : 's'} answered ${code}`,
              ),
            ),
          ),
      note,
    );
  }

  async function loadRules() {
    try {
      drawRules((await ctx.api.alertRules()).rules);
    } catch (e) {
      replace(rulesBox, h('p', { class: 'form-error' }, `Could not load the alert rules: ${e.message}`));
    }
  }

  function drawRules(rules) {
    const admin = ctx.session.roles.includes('admin');
    const list = rules.length === 0
      ? h('p', { class: 'hint' }, 'No alert rule yet.')
      : h(
          'table',
          { class: 'health', id: 'alert-rules' },
          h('thead', {}, h('tr', {}, ['Name', 'Figure', 'Threshold', 'Min INVITEs', 'Windows', 'Scope', 'Severity', ''].map((t) => h('th', { scope: 'col' }, t)))),
          h(
            'tbody',
            {},
            rules.map((r) =>
              h(
                'tr',
                {},
                h('th', { scope: 'row' }, r.name),
                h('td', {}, r.figure),
                h('td', {}, `${r.op} ${r.threshold}`),
                h('td', { class: 'num' }, String(r.minInvites)),
                h('td', { class: 'num' }, String(r.windows)),
                h('td', {}, r.match ? `${r.scope} ${r.match}` : r.scope === 'fleet' ? 'fleet' : `each ${r.scope}`),
                h('td', {}, r.severity),
                h('td', {}, admin ? h('button', { type: 'button', class: 'secondary', onclick: async () => { await ctx.api.deleteAlertRule(r.name).catch(() => {}); void loadRules(); } }, 'Remove') : ''),
              ),
            ),
          ),
        );
    if (!admin) return replace(rulesBox, list, h('p', { class: 'hint' }, 'Admins edit the rules.'));
    const field = (name, label, input) => h('label', {}, label, input, h('span', { class: 'field-error', dataset: { for: name } }));
    const inputs = {
      name: h('input', { name: 'name', required: true, size: 14, pattern: '[A-Za-z0-9_.\\-]{1,64}' }),
      figure: h('select', { name: 'figure' }, ['errorRatio', 'ser', 'seer', 'isa', 'answerRatio', 'srd', 'meanDuration', 'invites', 'messages'].map((f) => h('option', { value: f }, f))),
      op: h('select', { name: 'op' }, h('option', { value: 'above' }, 'above'), h('option', { value: 'below' }, 'below')),
      threshold: h('input', { name: 'threshold', type: 'number', step: 'any', required: true, size: 6 }),
      minInvites: h('input', { name: 'minInvites', type: 'number', min: 0, value: 10, size: 6 }),
      windows: h('input', { name: 'windows', type: 'number', min: 1, max: 240, value: 1, size: 4 }),
      scope: h('select', { name: 'scope' }, ['peer', 'host', 'fleet'].map((v) => h('option', { value: v }, v))),
      match: h('input', { name: 'match', size: 14, placeholder: 'each' }),
      severity: h('select', { name: 'severity' }, h('option', { value: 'warning' }, 'warning'), h('option', { value: 'critical' }, 'critical')),
    };
    const formError = h('p', { class: 'form-error', role: 'alert' });
    const form = h(
      'form',
      { class: 'rule-form', id: 'rule-form', novalidate: true },
      field('name', 'Name', inputs.name),
      field('figure', 'Figure', inputs.figure),
      field('op', 'Fires', inputs.op),
      field('threshold', 'Threshold', inputs.threshold),
      field('minInvites', 'Min INVITEs', inputs.minInvites),
      field('windows', 'Windows', inputs.windows),
      field('scope', 'Scope', inputs.scope),
      field('match', 'Only (host or peer)', inputs.match),
      field('severity', 'Severity', inputs.severity),
      h('button', { type: 'submit' }, 'Save rule'),
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
      for (const el of Object.values(inputs)) el.removeAttribute('aria-invalid');
      formError.textContent = '';
      const num = (el) => (el.value.trim() === '' ? undefined : Number(el.value));
      const rule = { name: inputs.name.value.trim(), figure: inputs.figure.value, op: inputs.op.value, threshold: num(inputs.threshold), minInvites: num(inputs.minInvites), windows: num(inputs.windows), scope: inputs.scope.value, severity: inputs.severity.value };
      if (inputs.match.value.trim()) rule.match = inputs.match.value.trim();
      try {
        await ctx.api.putAlertRule(rule);
        void loadRules();
      } catch (e) {
        // The dispatcher names the field at fault (TF_ALERT_RULE_INVALID).
        const at = e.field && form.querySelector(`.field-error[data-for="${CSS.escape(e.field)}"]`);
        if (at) {
          at.textContent = e.message;
          inputs[e.field]?.setAttribute('aria-invalid', 'true');
          inputs[e.field]?.focus();
        } else formError.textContent = e.message;
      }
    });
    replace(rulesBox, list, h('h3', {}, 'Add or replace a rule'), form, formError);
  }

  void load();
  void loadRules();
}
