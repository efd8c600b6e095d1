/*
 * The trace form: the filters of `tracefleet trace`, checked here with the
 * dispatcher's rules, then sent as trace:start on the `/client` socket. A
 * refusal from the dispatcher is shown next to the field it concerns.
 */

import { h, replace } from '../lib/dom.js';
import { ringShortfall } from '../lib/agents.js';
import { buildFollowRequest, buildRequest, fieldOf, WINDOWS, windowStart } from '../lib/request.js';
import { followSession } from './follow.js';

const FIELDS = ['number', 'callId', 'ip', 'port', 'window', 'from', 'to', 'filter', 'hosts', 'rtp', 'alignClocks', 'legs', 'duration', ''];
/** How long "Follow live" follows (the dispatcher's FOLLOW_LIMITS bound it). */
const FOLLOW_FOR = [
  { ms: 5 * 60_000, label: '5 min' },
  { ms: 10 * 60_000, label: '10 min' },
  { ms: 30 * 60_000, label: '30 min' },
  { ms: 60 * 60_000, label: '1 h' },
];

export function renderTraceForm(main, ctx) {
  ctx.setTitle('New trace');
  const saved = (ctx.shared.form ??= { number: '', callId: '', ip: '', port: '', filter: '', hostsMode: 'all', hosts: [], rtp: false, alignClocks: false, legs: true });
  const win = ctx.shared.window;

  const errorEls = {};
  const errorEl = (field) => (errorEls[field] = h('p', { class: 'field-error', id: `err-${field || 'form'}`, role: field ? null : 'alert', 'aria-live': field ? 'polite' : null }));
  const text = (field, label, hint, attrs = {}) => {
    const input = h('input', { id: `tf-${field}`, name: field, value: saved[field], 'aria-describedby': `hint-${field} err-${field}`, autocomplete: 'off', spellcheck: 'false', ...attrs });
    input.addEventListener('input', () => {
      saved[field] = input.value;
      setError(field, '');
    });
    return h('div', { class: 'field' }, h('label', { for: `tf-${field}` }, label), input, h('p', { class: 'hint', id: `hint-${field}` }, hint), errorEl(field));
  };

  // ---- time window -------------------------------------------------------------
  const from = h('input', { id: 'tf-from', name: 'from', type: 'datetime-local', step: 1, value: win.from, 'aria-describedby': 'err-from' });
  const to = h('input', { id: 'tf-to', name: 'to', type: 'datetime-local', step: 1, value: win.to, 'aria-describedby': 'err-to' });
  const custom = h(
    'div',
    { class: 'custom-window', hidden: win.window !== 'custom' },
    h('div', { class: 'field' }, h('label', { for: 'tf-from' }, 'From (UTC)'), from, errorEl('from')),
    h('div', { class: 'field' }, h('label', { for: 'tf-to' }, 'To (UTC, empty: now)'), to, errorEl('to')),
  );
  const windowRadios = WINDOWS.map((w) => {
    const r = h('input', { type: 'radio', name: 'window', id: `tf-window-${w.value}`, value: w.value, checked: win.window === w.value });
    r.addEventListener('change', () => {
      win.window = w.value;
      custom.hidden = w.value !== 'custom';
      setError('window', '');
      renderHosts();
    });
    return h('label', { class: 'choice', for: `tf-window-${w.value}` }, r, w.label);
  });
  for (const [input, key] of [[from, 'from'], [to, 'to']]) {
    input.addEventListener('input', () => {
      win[key] = input.value;
      setError(key, '');
      renderHosts();
    });
  }
  const windowSet = h('fieldset', { class: 'field' }, h('legend', {}, 'Time window'), h('div', { class: 'choices' }, windowRadios), errorEl('window'), custom);

  // ---- hosts ---------------------------------------------------------------------
  const hostList = h('div', { class: 'host-picks', id: 'tf-hosts', role: 'group', 'aria-label': 'Agents to trace' });
  let agents = null;
  let agentsError = '';
  const hostsModeRadio = (mode, label) => {
    const r = h('input', { type: 'radio', name: 'hostsMode', id: `tf-hosts-${mode}`, value: mode, checked: saved.hostsMode === mode });
    r.addEventListener('change', () => {
      saved.hostsMode = mode;
      setError('hosts', '');
      renderHosts();
    });
    return h('label', { class: 'choice', for: `tf-hosts-${mode}` }, r, label);
  };
  function renderHosts() {
    const start = windowStart(win);
    if (agentsError) return replace(hostList, h('p', { class: 'field-error' }, `the agent list is unavailable: ${agentsError}`));
    if (!agents) return replace(hostList, h('p', { class: 'hint' }, 'loading the fleet…'));
    if (!agents.length) return replace(hostList, h('p', { class: 'hint' }, 'no agent has connected to this dispatcher yet'));
    const picking = saved.hostsMode === 'pick';
    replace(
      hostList,
      agents.map((a) => {
        const id = `tf-host-${a.name}`;
        const box = h('input', { type: 'checkbox', id, value: a.name, checked: saved.hosts.includes(a.name), disabled: !picking });
        box.addEventListener('change', () => {
          saved.hosts = box.checked ? [...new Set([...saved.hosts, a.name])] : saved.hosts.filter((x) => x !== a.name);
          setError('hosts', '');
        });
        const short = ringShortfall(a, start);
        return h(
          'label',
          { class: `choice host-pick${a.connected ? '' : ' disconnected'}`, for: id, dataset: { host: a.name } },
          box,
          a.name,
          a.connected ? null : h('span', { class: 'badge state-disconnected' }, 'disconnected'),
          short ? h('span', { class: 'ring-short', title: short }, '⚠ ring too short') : null,
        );
      }),
    );
  }
  ctx.api.agents().then(
    (r) => {
      agents = r.agents.slice().sort((x, y) => (x.name < y.name ? -1 : 1));
      saved.hosts = saved.hosts.filter((n) => agents.some((a) => a.name === n));
      renderHosts();
    },
    (e) => {
      agentsError = e.message;
      renderHosts();
    },
  );
  const hostsSet = h(
    'fieldset',
    { class: 'field' },
    h('legend', {}, 'Hosts'),
    h('div', { class: 'choices' }, hostsModeRadio('all', 'All connected agents'), hostsModeRadio('pick', 'Only these:')),
    hostList,
    errorEl('hosts'),
  );

  const rtp = h('input', { type: 'checkbox', id: 'tf-rtp', name: 'rtp', checked: saved.rtp });
  rtp.addEventListener('change', () => (saved.rtp = rtp.checked));
  const alignClocks = h('input', { type: 'checkbox', id: 'tf-alignClocks', name: 'alignClocks', checked: saved.alignClocks });
  alignClocks.addEventListener('change', () => (saved.alignClocks = alignClocks.checked));
  const legs = h('input', { type: 'checkbox', id: 'tf-legs', name: 'legs', checked: saved.legs, 'aria-describedby': 'hint-legs' });
  legs.addEventListener('change', () => (saved.legs = legs.checked));

  const submit = h('button', { type: 'submit', id: 'tf-submit' }, 'Start trace');
  const followFor = h('select', { id: 'tf-duration', name: 'duration', 'aria-describedby': 'err-duration' }, FOLLOW_FOR.map((f) => h('option', { value: String(f.ms), selected: f.ms === (saved.followMs ?? 10 * 60_000) }, f.label)));
  followFor.addEventListener('change', () => (saved.followMs = Number(followFor.value)));
  const followButton = h('button', { type: 'button', id: 'tf-follow', class: 'secondary' }, 'Follow live');
  const followBox = h(
    'div',
    { class: 'follow-live' },
    followButton,
    h('label', { for: 'tf-duration' }, ' for '),
    followFor,
    h('p', { class: 'hint' }, 'From now on, not the window: the table and ladder grow as the calls happen; it is stored as a trace when it ends.'),
    errorEl('duration'),
  );
  const form = h(
    'form',
    { class: 'trace-form card', novalidate: true, 'aria-describedby': 'err-form' },
    h('h1', {}, 'New trace'),
    h('p', { class: 'lede' }, 'Give at least a number, Call-ID, IP or port. Several values: separate them with commas.'),
    h(
      'div',
      { class: 'grid' },
      text('number', 'Number', 'digits of the calling or called number, at least 4 (e.g. +1 555 0100 123)', { inputmode: 'tel' }),
      text('callId', 'Call-ID', 'the SIP Call-ID header'),
      text('ip', 'IP address', 'an IPv4 or IPv6 address the SIP packets come from or go to'),
      text('port', 'Port', 'a UDP or TCP port, 1–65535', { inputmode: 'numeric' }),
      text('filter', 'Method or status', 'only dialogs with these: INVITE, BYE, 486, 4xx'),
    ),
    windowSet,
    hostsSet,
    h('div', { class: 'field' }, h('label', { class: 'choice', for: 'tf-rtp' }, rtp, 'Include RTP (the calls’ media packets)'), errorEl('rtp')),
    h(
      'div',
      { class: 'field' },
      h('label', { class: 'choice', for: 'tf-legs' }, legs, 'Follow linked legs'),
      h('p', { class: 'hint', id: 'hint-legs' }, 'the other legs of the calls found (a B2BUA or SBC gives each side its own Call-ID): same X-CID, Session-ID, charging vector or relayed media'),
      errorEl('legs'),
    ),
    h(
      'div',
      { class: 'field' },
      h('label', { class: 'choice', for: 'tf-alignClocks' }, alignClocks, 'Align clocks (the merged file on corrected time, as PCAPNG; each host’s file keeps its own)'),
      errorEl('alignClocks'),
    ),
    errorEl(''),
    h('div', { class: 'actions' }, submit, followBox),
  );

  function setError(field, message) {
    const el = errorEls[field] ?? errorEls[''];
    el.textContent = message;
    const input = form.querySelector(`#tf-${field}`);
    if (input) {
      if (message) input.setAttribute('aria-invalid', 'true');
      else input.removeAttribute('aria-invalid');
    }
  }

  function showErrors(errors) {
    for (const f of FIELDS) setError(f, '');
    let first = null;
    for (const [field, message] of Object.entries(errors)) {
      // The custom window's inputs are hidden under a preset: say it at the window.
      const where = (field === 'from' || field === 'to') && custom.hidden ? 'window' : field;
      const existing = errorEls[where]?.textContent;
      setError(where, existing ? `${existing}; ${message}` : message);
      first ??= where;
    }
    const target = form.querySelector(`#tf-${first}`) ?? form.querySelector(`[name="${first}"]`) ?? errorEls[first];
    if (target && typeof target.focus === 'function') target.focus();
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const built = buildRequest({ ...saved, window: win.window, from: win.from, to: win.to });
    if (built.errors) return showErrors(built.errors);
    showErrors({});
    submit.disabled = true;
    submit.textContent = 'Starting…';
    const ack = await ctx.client.ask('trace:start', built.request);
    submit.disabled = false;
    submit.textContent = 'Start trace';
    if (ack && ack.ok) {
      ctx.navigate(`#/trace/${ack.trace.id}`);
      return;
    }
    const message = ack?.error ?? 'the dispatcher gave no answer';
    showErrors({ [fieldOf(ack)]: message });
  });

  followButton.addEventListener('click', async () => {
    const built = buildFollowRequest(saved, Number(followFor.value));
    if (built.errors) return showErrors(built.errors);
    showErrors({});
    followButton.disabled = true;
    followButton.textContent = 'Starting…';
    const follow = followSession(ctx);
    const ack = await ctx.client.ask('follow:start', built.request);
    followButton.disabled = false;
    followButton.textContent = 'Follow live';
    if (ack && ack.ok) return follow.show(main, ack.trace, built.request);
    follow.dispose();
    showErrors({ [fieldOf(ack)]: ack?.error ?? 'the dispatcher gave no answer' });
  });

  replace(main, form);
  renderHosts();
}
