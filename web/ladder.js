// @ts-check
/**
 * Call-flow ladder diagram of a trace's SIP messages: one lane per
 * address:port, one arrow per message in time order, a details panel for the
 * selected arrow. A standalone browser ES module: no build step, no
 * dependencies. Every string from the trace goes into the page through
 * textContent or setAttribute, never as markup, since SIP headers are
 * attacker-controlled text.
 *
 *   import { renderLadder } from './ladder.js';
 *   const ladder = renderLadder(div, result.messages, { onSelect: (m) => ..., dialog: 'all' });
 *   ladder.destroy();
 *
 * The module links its own stylesheet (ladder.css, beside it) once per document.
 */

/**
 * One SIP message as the dispatcher hands it out (agent/query/engine.ts
 * MessageSummary, plus the host that captured it; dispatcher/api/messages.ts).
 * @typedef {object} LadderMessage
 * @property {string} [host]  agent that captured it; absent in one agent's own result
 * @property {string} ts      epoch seconds with nine decimals, exact (a double cannot hold it)
 * @property {string} time    the same instant as ISO 8601 with nanoseconds, UTC
 * @property {string} src     'addr:port', IPv6 as '[addr]:port'
 * @property {string} dst
 * @property {'udp'|'tcp'} transport
 * @property {string|null} method   requests only
 * @property {number|null} status   responses only
 * @property {string|null} reason
 * @property {string} callId
 * @property {string|null} cseq     "<n> <METHOD>"
 * @property {string|null} from     user parts
 * @property {string|null} to
 * @property {string|null} ruri
 * @property {string|null} correlation
 * @property {number} bytes
 * @property {number} packets
 * @property {string} [legGroup]  with legs asked for: the call its dialog is a leg of (its earliest leg's Call-ID, as one host saw it)
 * @property {string} [legVia]    how a linked leg was found (correlation, session-id, icid, call-id-rule, media)
 */

/**
 * A dialog's place among the legs of its call.
 * @typedef {object} LegInfo
 * @property {number} call      1-based, calls in order of first message
 * @property {string} leg       'A', 'B', ... in order of first message within the call
 * @property {number} legs      legs the call has
 * @property {string|null} via  how it was linked; null for a dialog the trace selected itself
 * @property {string[]} callIds every leg of the call, in order
 */

/**
 * @typedef {object} LadderOptions
 * @property {(msg: LadderMessage) => void} [onSelect]  called with the selected arrow's message (its first capture)
 * @property {string} [dialog]  a Call-ID to show only that dialog, or 'all' (the default)
 * @property {Record<string, number>} [clockOffsetsMs]  per host, how far its clock is ahead of the trace's reference
 *   (the merge's estimate, TraceView.clocks): arrows are ordered by the times less these
 * @property {LadderState} [restore]  a previous ladder's state (a live view redrawn as messages come): its dialog,
 *   its chosen message (quietly: onSelect is not called again), its scroll, and the focus when it was in the diagram
 */

/**
 * What a redraw keeps of a ladder.
 * @typedef {object} LadderState
 * @property {string} dialog
 * @property {LadderMessage|null} selected  the chosen arrow's message (the same object as in `messages`)
 * @property {number} scrollTop
 * @property {number} scrollLeft
 * @property {boolean} atBottom  scrolled to the end: a live view stays at the newest arrows
 * @property {boolean} focused   the keyboard focus was on an arrow
 */

/** @typedef {'request'|'provisional'|'success'|'failure'} Kind */

/**
 * One arrow: a message, with every capture of it by other hosts folded in.
 * @typedef {object} Entry
 * @property {LadderMessage} msg          first capture (what onSelect gets)
 * @property {LadderMessage[]} copies     every capture, msg first
 * @property {string[]} hosts             hosts that captured it, in capture order
 * @property {bigint|null} ns             msg.ts in nanoseconds; null when malformed
 * @property {string} key                 what makes two captures the same message
 * @property {Kind} kind
 * @property {number} seq                 position among all arrows of the trace
 * @property {Entry|null} retransmitOf    first transmission, when this is a retransmission
 * @property {Dialog|null} dialog
 */

/**
 * @typedef {object} Dialog
 * @property {string} callId
 * @property {number} index      1-based, in order of first message
 * @property {string} colour
 * @property {string} summary    first method and numbers, e.g. "INVITE 1001 → 2002"
 * @property {number} count      arrows in it
 * @property {LegInfo|null} leg  its call's legs, when the trace asked for them and the call has several
 */

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * Two hosts' captures of one packet differ by clock skew and capture latency;
 * a SIP retransmission comes T1 (500 ms) later at the earliest, so 50 ms
 * tells them apart with room on both sides.
 */
const SAME_PACKET_WINDOW_NS = 50_000_000n;

/** Above this many arrows the SVG gets too heavy to scroll; the dialog selector narrows it. */
const MAX_ROWS = 3000;
/** Dialogs named in the colour legend; the '#n' tag on each row names the rest. */
const MAX_LEGEND_DIALOGS = 24;

// Okabe-Ito colours (told apart with every common colour-vision deficiency),
// each kind also with its own line style and label cue so colour is never
// the only signal. Labels use a darker shade of the line's hue for contrast
// as text on white.
/** @type {Record<Kind, { line: string, text: string, dash: string, width: number, prefix: string, name: string }>} */
const KINDS = {
  request: { line: '#0072B2', text: '#005A8C', dash: '', width: 1.6, prefix: '', name: 'request' },
  provisional: { line: '#E69F00', text: '#8A5A00', dash: '6 4', width: 2, prefix: '', name: '1xx provisional' },
  success: { line: '#009E73', text: '#00704F', dash: '', width: 2.6, prefix: '✓ ', name: '2xx success' },
  failure: { line: '#D55E00', text: '#A84400', dash: '9 3 2 3', width: 2.2, prefix: '✗ ', name: '3xx–6xx failure' },
};
const RETRANSMIT_PREFIX = '↻ ';

// Paul Tol's palettes, pale members left out so a thin line stays visible on white.
export const DIALOG_COLOURS = ['#332288', '#117733', '#AA4499', '#CC6677', '#44AA99', '#882255', '#999933', '#DDAA33', '#4477AA', '#EE6677'];

// Geometry (px). Labels are monospace so their width can be estimated without measuring.
const CHAR_W = 7.3;
const TIME_W = 150;
const HEAD_H = 50;
const ROW_H = 44;
const TOP_PAD = 8;
const MIN_LANE_GAP = 210;
const SELF_LOOP_W = 40;

/**
 * Draws the ladder of `messages` into `container` (appended; nothing already
 * there is touched).
 * @param {HTMLElement} container
 * @param {LadderMessage[]} messages
 * @param {LadderOptions} [opts]
 * @returns {{ destroy(): void, state(): LadderState }}
 */
export function renderLadder(container, messages, opts = {}) {
  if (!container || typeof container !== 'object' || container.nodeType !== 1) {
    throw new TypeError('renderLadder: the first argument must be the HTML element to draw the ladder in');
  }
  if (!Array.isArray(messages)) {
    throw new TypeError('renderLadder: messages must be an array of SIP message summaries (a trace result\'s "messages")');
  }
  const doc = container.ownerDocument;
  linkStylesheet(doc);

  const valid = messages.filter(isMessage);
  const entries = buildEntries(valid, offsetsNs(opts.clockOffsetsMs));
  const legs = legsOf(valid);
  const dialogs = buildDialogs(entries, legs);
  /** Calls with several legs, by the 'call:<n>' value of the selector. @type {Map<string, Set<string>>} */
  const calls = new Map();
  for (const l of legs.values()) if (l.legs > 1) calls.set(`call:${l.call}`, new Set(l.callIds));
  const hostsByIp = hostsAtAddresses(entries);
  const several = dialogs.size > 1;
  const wanted = opts.restore?.dialog ?? opts.dialog;
  /** @type {string} */
  let current = wanted && wanted !== 'all' && (dialogs.has(wanted) || calls.has(wanted)) ? wanted : 'all';
  const keepMsg = opts.restore?.selected ?? null;
  /** @type {Entry|null} */
  let selected = keepMsg ? entries.find((e) => e.copies.includes(keepMsg)) ?? null : null;
  /** @type {Entry[]} */
  let shown = [];

  const root = h(doc, 'div', 'ladder-view');
  const toolbar = h(doc, 'div', 'ladder-toolbar');
  const dialogLegend = h(doc, 'div', 'ladder-dialog-legend');
  const notes = h(doc, 'p', 'ladder-note');
  const scroll = h(doc, 'div', 'ladder-scroll');
  const details = h(doc, 'section', 'ladder-details');
  details.setAttribute('aria-live', 'polite');
  details.setAttribute('aria-label', 'Selected message');
  root.append(toolbar, dialogLegend, notes, scroll, details);

  if (several) {
    const label = h(doc, 'label', 'ladder-dialog-select');
    label.append(text(doc, 'Dialog '));
    const select = /** @type {HTMLSelectElement} */ (h(doc, 'select'));
    select.append(option(doc, 'all', `All dialogs (${dialogs.size})`));
    // A call's legs together: each keeps its colour, and the lanes are every address:port any of them used.
    for (const [value, ids] of calls) select.append(option(doc, value, `Call #${value.slice(5)}: all ${ids.size} legs`));
    for (const d of dialogs.values()) {
      select.append(option(doc, d.callId, `#${d.index} ${d.summary} · ${clip(d.callId, 80)} (${d.count})`));
    }
    select.value = current;
    select.addEventListener('change', () => {
      current = select.value;
      draw();
    });
    label.append(select);
    toolbar.append(label);
  }
  toolbar.append(kindLegend(doc));

  scroll.addEventListener('click', (ev) => {
    const g = arrowOf(ev.target);
    if (g) choose(g, false);
  });
  scroll.addEventListener('keydown', (ev) => {
    const g = arrowOf(ev.target);
    if (!g) return;
    if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault(); // Space would scroll the page
      choose(g, false);
    } else if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp' || ev.key === 'Home' || ev.key === 'End') {
      ev.preventDefault();
      const all = arrows();
      const i = all.indexOf(g);
      const j = ev.key === 'Home' ? 0 : ev.key === 'End' ? all.length - 1 : Math.max(0, Math.min(all.length - 1, i + (ev.key === 'ArrowDown' ? 1 : -1)));
      focusArrow(all[j]);
    }
  });

  draw();
  container.append(root);
  if (opts.restore) {
    const r = opts.restore;
    scroll.scrollLeft = r.scrollLeft;
    scroll.scrollTop = r.atBottom ? scroll.scrollHeight : r.scrollTop;
    if (r.focused) {
      const g = selected ? arrows()[shown.indexOf(selected)] : undefined;
      if (g) g.focus({ preventScroll: true });
    }
  }

  return {
    destroy() {
      root.remove();
      shown = [];
      selected = null;
    },
    /** @returns {LadderState} */
    state() {
      return {
        dialog: current,
        selected: selected ? selected.msg : null,
        scrollTop: scroll.scrollTop,
        scrollLeft: scroll.scrollLeft,
        atBottom: scroll.scrollTop + scroll.clientHeight >= scroll.scrollHeight - 2,
        focused: root.contains(doc.activeElement) && scroll.contains(doc.activeElement),
      };
    },
  };

  function arrows() {
    return /** @type {SVGGElement[]} */ ([...scroll.querySelectorAll('.ladder-arrow')]);
  }

  /** Roving tabindex: one Tab stop for the whole diagram, arrow keys within it. */
  function focusArrow(/** @type {SVGGElement | undefined} */ g) {
    if (!g) return;
    for (const a of arrows()) a.setAttribute('tabindex', a === g ? '0' : '-1');
    g.focus();
  }

  function choose(/** @type {SVGGElement} */ g, quiet = false) {
    const e = shown[Number(g.dataset.row)];
    if (!e) return;
    selected = e;
    for (const a of arrows()) {
      const on = a === g;
      a.classList.toggle('selected', on);
      a.setAttribute('aria-pressed', on ? 'true' : 'false');
      a.setAttribute('tabindex', on ? '0' : '-1');
    }
    showDetails(doc, details, e, shown[0] ?? e, dialogs.size > 1);
    if (!quiet && typeof opts.onSelect === 'function') opts.onSelect(e.msg);
  }

  function draw() {
    const legSet = calls.get(current);
    const all = current === 'all' ? entries : legSet ? entries.filter((e) => legSet.has(e.msg.callId)) : entries.filter((e) => e.msg.callId === current);
    shown = all.slice(0, MAX_ROWS);
    const byDialog = (current === 'all' || legSet !== undefined) && several;
    notes.replaceChildren();
    if (all.length > MAX_ROWS) {
      notes.textContent = `Showing the first ${MAX_ROWS} of ${all.length} messages; pick one dialog to see all of it.`;
    }
    dialogLegend.replaceChildren();
    dialogLegend.hidden = !byDialog;
    if (byDialog) fillDialogLegend(doc, dialogLegend, [...dialogs.values()].filter((d) => !legSet || legSet.has(d.callId)));
    scroll.replaceChildren();
    if (shown.length === 0) {
      scroll.append(h(doc, 'p', 'ladder-empty', 'No SIP messages to draw.'));
    } else {
      scroll.append(diagram(doc, shown, hostsByIp, byDialog));
    }
    // A selection survives a change of dialog when its arrow is still drawn.
    const keep = selected ? shown.indexOf(selected) : -1;
    const g = keep >= 0 ? arrows()[keep] : undefined;
    if (g) {
      choose(g, true);
    } else {
      selected = null;
      showDetails(doc, details, null, null, false);
    }
  }
}

// ---------------------------------------------------------------- data

/** @param {unknown} m @returns {m is LadderMessage} */
function isMessage(m) {
  if (!m || typeof m !== 'object') return false;
  const x = /** @type {Record<string, unknown>} */ (m);
  return typeof x.ts === 'string' && typeof x.src === 'string' && typeof x.dst === 'string' && typeof x.callId === 'string';
}

/**
 * Per host, its clock offset in nanoseconds; hosts with a value that is not a finite number are left out.
 * @param {Record<string, number>|undefined} ms
 * @returns {Map<string, bigint>}
 */
function offsetsNs(ms) {
  const out = new Map();
  for (const [host, v] of Object.entries(ms ?? {})) if (typeof v === 'number' && Number.isFinite(v)) out.set(host, BigInt(Math.round(v * 1e6)));
  return out;
}

/**
 * A message's time in nanoseconds on the reference host's clock: its capture
 * time less its host's offset (none for a host the merge did not place).
 * @param {Map<string, bigint>} offsets  from offsetsNs
 * @returns {(m: LadderMessage) => bigint|null}  null when ts is malformed
 */
function correctedNs(offsets) {
  return (m) => {
    const ns = tsNanos(m.ts);
    const off = typeof m.host === 'string' ? offsets.get(m.host) : undefined;
    return ns !== null && off !== undefined ? ns - off : ns;
  };
}

/**
 * The same for the message table: per message its corrected nanoseconds, and
 * whether the correction shows at the table's millisecond precision (hosts
 * on one clock differ by microseconds of capture latency: not worth a line).
 * @param {Record<string, number>|undefined} clockOffsetsMs  as LadderOptions has it
 * @returns {(m: LadderMessage) => { ns: bigint|null, shifted: boolean }}
 */
export function clockCorrection(clockOffsetsMs) {
  const offsets = offsetsNs(clockOffsetsMs);
  const corrected = correctedNs(offsets);
  return (m) => {
    const off = typeof m.host === 'string' ? offsets.get(m.host) ?? 0n : 0n;
    return { ns: corrected(m), shifted: off >= 1_000_000n || off <= -1_000_000n };
  };
}

/**
 * `ts` ("<seconds>.<nine digits>") as nanoseconds since the epoch, exactly;
 * null when it is not in that form.
 * @param {string} ts
 * @returns {bigint|null}
 */
function tsNanos(ts) {
  const m = /^(\d{1,20})(?:\.(\d{1,9}))?$/.exec(ts);
  if (!m) return null;
  return BigInt(m[1]) * 1_000_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

/** @param {LadderMessage} m @returns {Kind} */
function kindOf(m) {
  if (m.method !== null && m.method !== undefined) return 'request';
  const s = Number(m.status);
  if (s >= 100 && s < 200) return 'provisional';
  if (s >= 200 && s < 300) return 'success';
  return 'failure';
}

/**
 * Time-ordered arrows, each message once.
 *
 * Why dedup here: when two agents sit on the path of a packet (the caller's
 * and the callee's host, or a proxy and a SBC), each captures it, and the
 * dispatcher's merged message list holds both captures. Drawn twice, one SIP
 * message would look like a retransmission. Two captures are the same packet
 * when they agree on source, destination, Call-ID, CSeq and method/status,
 * come from different hosts and lie within SAME_PACKET_WINDOW_NS (clock skew
 * between hosts). The same message again from the same host, or later, is a
 * real retransmission and gets its own arrow, marked.
 * Times are corrected by each host's clock offset first, so the order (and
 * the window) is on the reference host's clock.
 * @param {LadderMessage[]} messages
 * @param {Map<string, bigint>} offsets
 * @returns {Entry[]}
 */
function buildEntries(messages, offsets) {
  const corrected = correctedNs(offsets);
  const sorted = messages.map((m, i) => ({ m, i, ns: corrected(m) }));
  sorted.sort((a, b) => {
    if (a.ns !== null && b.ns !== null && a.ns !== b.ns) return a.ns < b.ns ? -1 : 1;
    if (a.ns === null && b.ns !== null) return 1;
    if (a.ns !== null && b.ns === null) return -1;
    if (a.ns === null && b.ns === null && a.m.ts !== b.m.ts) return a.m.ts < b.m.ts ? -1 : 1;
    return a.i - b.i;
  });
  /** @type {Entry[]} */
  const entries = [];
  /** @type {Map<string, Entry[]>} */
  const byKey = new Map();
  for (const { m, ns } of sorted) {
    const key = [m.src, m.dst, m.callId, m.cseq ?? '', m.method ?? '', m.status ?? ''].join('\u0000');
    const host = typeof m.host === 'string' && m.host !== '' ? m.host : null;
    const same = byKey.get(key);
    /** @type {Entry|null} */
    let copyOf = null;
    if (same && host !== null && ns !== null) {
      // Same-key entries are in time order: walk back while inside the window.
      for (let j = same.length - 1; j >= 0; j--) {
        const e = same[j];
        if (e.ns === null || ns - e.ns > SAME_PACKET_WINDOW_NS) break;
        if (!e.hosts.includes(host)) {
          copyOf = e;
          break;
        }
      }
    }
    if (copyOf) {
      copyOf.copies.push(m);
      if (host !== null) copyOf.hosts.push(host);
      continue;
    }
    /** @type {Entry} */
    const e = {
      msg: m,
      copies: [m],
      hosts: host !== null ? [host] : [],
      ns,
      key,
      kind: kindOf(m),
      seq: entries.length,
      retransmitOf: same && same.length ? same[0] : null,
      dialog: null,
    };
    entries.push(e);
    if (same) same.push(e);
    else byKey.set(key, [e]);
  }
  return entries;
}

/**
 * The legs of each call, from the leg groups the agents gave: dialogs one
 * host put in one group are legs of one call, and a dialog two hosts grouped
 * differently joins both groups into one call. Empty when the trace did not
 * ask for legs.
 * @param {LadderMessage[]} messages
 * @returns {Map<string, LegInfo>} by Call-ID
 */
export function legsOf(messages) {
  /** @type {Map<string, string>} */
  const parent = new Map();
  const find = (/** @type {string} */ c) => {
    let r = c;
    while (parent.get(r) !== r) r = /** @type {string} */ (parent.get(r));
    parent.set(c, r);
    return r;
  };
  const add = (/** @type {string} */ c) => {
    if (!parent.has(c)) parent.set(c, c);
  };
  /** @type {Map<string, bigint>} */
  const first = new Map();
  /** @type {Map<string, string>} */
  const via = new Map();
  for (const m of messages) {
    if (typeof m.legGroup !== 'string') continue;
    add(m.callId);
    add(m.legGroup);
    const a = find(m.callId);
    const b = find(m.legGroup);
    if (a !== b) parent.set(a, b);
    const ns = tsNanos(m.ts) ?? 0n;
    const had = first.get(m.callId);
    if (had === undefined || ns < had) first.set(m.callId, ns);
    if (typeof m.legVia === 'string') via.set(m.callId, m.legVia);
  }
  /** @type {Map<string, string[]>} */
  const members = new Map();
  // A group may name a Call-ID no message here carries (the host saw only the other leg): such names are no legs.
  for (const c of parent.keys()) {
    if (!first.has(c)) continue;
    const r = find(c);
    const list = members.get(r);
    if (list) list.push(c);
    else members.set(r, [c]);
  }
  const when = (/** @type {string} */ c) => /** @type {bigint} */ (first.get(c));
  const byTime = (/** @type {string} */ a, /** @type {string} */ b) => (when(a) < when(b) ? -1 : when(a) > when(b) ? 1 : a < b ? -1 : a > b ? 1 : 0);
  const groups = [...members.values()].map((l) => l.sort(byTime)).sort((a, b) => byTime(a[0], b[0]));
  /** @type {Map<string, LegInfo>} */
  const out = new Map();
  groups.forEach((ids, i) => {
    ids.forEach((c, j) => {
      out.set(c, { call: i + 1, leg: j < 26 ? String.fromCharCode(65 + j) : String(j + 1), legs: ids.length, via: via.get(c) ?? null, callIds: ids });
    });
  });
  return out;
}

/** The leg of a dialog as a short text: "call #2 leg B (session-id)". @param {LegInfo} l */
export function legText(l) {
  return `call #${l.call} leg ${l.leg}${l.via ? ` (${l.via})` : ''}`;
}

/** @param {Entry[]} entries @param {Map<string, LegInfo>} legs @returns {Map<string, Dialog>} */
function buildDialogs(entries, legs) {
  /** @type {Map<string, Dialog>} */
  const dialogs = new Map();
  /** @type {Map<string, Entry[]>} */
  const members = new Map();
  for (const e of entries) {
    const id = e.msg.callId;
    let list = members.get(id);
    if (!list) members.set(id, (list = []));
    list.push(e);
  }
  for (const [callId, list] of members) {
    const index = dialogs.size + 1;
    const req = list.find((e) => e.msg.method) ?? list[0];
    const method = req.msg.method ?? (req.msg.cseq ? req.msg.cseq.slice(req.msg.cseq.indexOf(' ') + 1) : String(req.msg.status ?? ''));
    const from = list.find((e) => e.msg.from)?.msg.from ?? null;
    const to = list.find((e) => e.msg.to)?.msg.to ?? null;
    const who = from || to ? ` ${from ?? '?'} → ${to ?? '?'}` : '';
    /** @type {Dialog} */
    const l = legs.get(callId);
    const leg = l && l.legs > 1 ? l : null;
    const d = { callId, index, colour: DIALOG_COLOURS[(index - 1) % DIALOG_COLOURS.length], summary: `${leg ? `${legText(leg)}: ` : ''}${method}${who}`, count: list.length, leg };
    dialogs.set(callId, d);
    for (const e of list) e.dialog = d;
  }
  return dialogs;
}

/** The address part of 'addr:port' or '[v6]:port'. @param {string} a */
function ipOf(a) {
  const v6 = /^\[(.*)\]:\d+$/.exec(a);
  if (v6) return v6[1];
  const v4 = /^(.*):\d+$/.exec(a);
  return v4 ? v4[1] : a;
}

/**
 * Which hosts sit at which address. A host capturing on its own interfaces
 * sees its own address in every message (as source or destination); when
 * exactly one address is common to all of a host's messages, that is where
 * it sits. A host that saw only one conversation (two addresses, both common)
 * is ambiguous and labels no lane.
 * @param {Entry[]} entries
 * @returns {Map<string, string[]>} address → hosts
 */
function hostsAtAddresses(entries) {
  /** @type {Map<string, Set<string>>} */
  const common = new Map();
  for (const e of entries) {
    for (const c of e.copies) {
      if (typeof c.host !== 'string' || c.host === '') continue;
      const here = new Set([ipOf(c.src), ipOf(c.dst)]);
      const before = common.get(c.host);
      common.set(c.host, before ? new Set([...before].filter((x) => here.has(x))) : here);
    }
  }
  /** @type {Map<string, string[]>} */
  const byIp = new Map();
  for (const [host, ips] of common) {
    if (ips.size !== 1) continue;
    const [ip] = ips;
    const list = byIp.get(ip);
    if (list) list.push(host);
    else byIp.set(ip, [host]);
  }
  return byIp;
}

// ---------------------------------------------------------------- text

/** HH:MM:SS.mmm (UTC) of an entry. @param {Entry} e */
function clock(e) {
  if (e.ns !== null) {
    const sec = e.ns / 1_000_000_000n;
    const ms = (e.ns % 1_000_000_000n) / 1_000_000n;
    const d = Number(sec % 86_400n);
    return `${pad(Math.floor(d / 3600))}:${pad(Math.floor(d / 60) % 60)}:${pad(d % 60)}.${String(ms).padStart(3, '0')}`;
  }
  const m = /T(\d\d:\d\d:\d\d)(?:\.(\d{1,3}))?/.exec(e.msg.time ?? '');
  return m ? `${m[1]}.${(m[2] ?? '').padEnd(3, '0')}` : '??:??:??.???';
}

/** @param {number} n */
function pad(n) {
  return String(n).padStart(2, '0');
}

/**
 * "+1.503 s" after `first`, truncated to the millisecond like the clock
 * column (rounding would put +0.004 beside a clock reading .003).
 * @param {Entry} e @param {Entry} first
 */
function delta(e, first) {
  if (e.ns === null || first.ns === null || e.ns < first.ns) return '';
  const ms = (e.ns - first.ns) / 1_000_000n;
  return `+${ms / 1000n}.${String(ms % 1000n).padStart(3, '0')} s`;
}

/** What the arrow says: the method, or status and reason. @param {LadderMessage} m */
function baseLabel(m) {
  if (m.method !== null && m.method !== undefined) return m.method;
  return `${m.status ?? '?'} ${m.reason ?? ''}`.trim();
}

/** @param {Entry} e */
function arrowLabel(e) {
  return `${e.retransmitOf ? RETRANSMIT_PREFIX : ''}${KINDS[e.kind].prefix}${baseLabel(e.msg)}`;
}

/** @param {string} s @param {number} n */
function clip(s, n) {
  if (n < 2) return '';
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

// ---------------------------------------------------------------- DOM helpers

/**
 * @param {Document} doc @param {string} tag @param {string} [cls] @param {string} [content]
 * @returns {HTMLElement}
 */
function h(doc, tag, cls, content) {
  const x = doc.createElement(tag);
  if (cls) x.className = cls;
  if (content !== undefined) x.textContent = content;
  return x;
}

/**
 * @param {Document} doc @param {string} tag @param {Record<string, string|number>} [attrs] @param {string} [content]
 * @returns {SVGElement}
 */
function s(doc, tag, attrs = {}, content) {
  const x = /** @type {SVGElement} */ (doc.createElementNS(SVG_NS, tag));
  for (const [k, v] of Object.entries(attrs)) x.setAttribute(k, String(v));
  if (content !== undefined) x.textContent = content;
  return x;
}

/** @param {Document} doc @param {string} t */
function text(doc, t) {
  return doc.createTextNode(t);
}

/** @param {Document} doc @param {string} value @param {string} label */
function option(doc, value, label) {
  const o = /** @type {HTMLOptionElement} */ (doc.createElement('option'));
  o.value = value;
  o.textContent = label;
  return o;
}

/** @param {EventTarget|null} t @returns {SVGGElement|null} */
function arrowOf(t) {
  const el = /** @type {Element|null} */ (t && /** @type {Element} */ (t).closest ? t : null);
  return el ? /** @type {SVGGElement|null} */ (el.closest('.ladder-arrow')) : null;
}

/** @param {Document} doc */
function linkStylesheet(doc) {
  const href = new URL('./ladder.css', import.meta.url).href;
  for (const l of doc.querySelectorAll('link[rel="stylesheet"]')) {
    if (/** @type {HTMLLinkElement} */ (l).href === href) return;
  }
  const link = /** @type {HTMLLinkElement} */ (doc.createElement('link'));
  link.rel = 'stylesheet';
  link.href = href;
  link.dataset.ladderCss = '';
  doc.head.append(link);
}

// ---------------------------------------------------------------- drawing

/** A sample of each arrow style. @param {Document} doc */
function kindLegend(doc) {
  const box = h(doc, 'ul', 'ladder-legend');
  box.setAttribute('aria-label', 'Arrow styles');
  /** @type {Array<[Kind, string, boolean]>} */
  const items = [
    ['request', 'request', false],
    ['provisional', '1xx provisional', false],
    ['success', `${KINDS.success.prefix}2xx success`, false],
    ['failure', `${KINDS.failure.prefix}3xx–6xx failure`, false],
    ['request', `${RETRANSMIT_PREFIX}retransmission`, true],
  ];
  for (const [kind, label, retx] of items) {
    const k = KINDS[kind];
    const li = h(doc, 'li');
    li.dataset.kind = retx ? 'retransmission' : kind;
    const svg = s(doc, 'svg', { width: 34, height: 10, 'aria-hidden': 'true' });
    svg.append(
      s(doc, 'line', { x1: 1, y1: 5, x2: 26, y2: 5, stroke: k.line, 'stroke-width': k.width, 'stroke-dasharray': k.dash || 'none', opacity: retx ? 0.55 : 1 }),
      s(doc, 'path', { d: 'M33 5 L24 1 L24 9 Z', fill: k.line, opacity: retx ? 0.55 : 1 }),
    );
    const t = h(doc, 'span', undefined, label);
    t.style.color = k.text;
    li.append(svg, t);
    box.append(li);
  }
  return box;
}

/** @param {Document} doc @param {HTMLElement} box @param {Dialog[]} list */
function fillDialogLegend(doc, box, list) {
  box.append(h(doc, 'span', 'ladder-dialog-legend-title', 'Line colour = dialog; label colour and style = kind.'));
  const ul = h(doc, 'ul');
  for (const d of list.slice(0, MAX_LEGEND_DIALOGS)) {
    const li = h(doc, 'li');
    li.dataset.callId = d.callId;
    const sw = h(doc, 'span', 'ladder-swatch');
    sw.style.backgroundColor = d.colour;
    li.append(sw, h(doc, 'b', undefined, `#${d.index}`), text(doc, ` ${d.summary} · ${clip(d.callId, 40)}`));
    li.title = d.callId;
    ul.append(li);
  }
  if (list.length > MAX_LEGEND_DIALOGS) {
    ul.append(h(doc, 'li', undefined, `and ${list.length - MAX_LEGEND_DIALOGS} more (colours repeat; the #n tag on each row names the dialog)`));
  }
  box.append(ul);
}

/**
 * The scrolling grid: a corner, the lane headers (sticky top), the time
 * column (sticky left) and the arrows.
 * @param {Document} doc @param {Entry[]} shown @param {Map<string, string[]>} hostsByIp @param {boolean} byDialog
 */
function diagram(doc, shown, hostsByIp, byDialog) {
  /** @type {string[]} */
  const lanes = [];
  /** @type {Map<string, number>} */
  const laneIndex = new Map();
  for (const e of shown) {
    for (const a of [e.msg.src, e.msg.dst]) {
      if (!laneIndex.has(a)) {
        laneIndex.set(a, lanes.length);
        lanes.push(a);
      }
    }
  }
  const widest = Math.max(...lanes.map((l) => l.length), ...shown.map((e) => arrowLabel(e).length));
  const gap = Math.max(MIN_LANE_GAP, Math.min(420, Math.ceil(widest * CHAR_W + 36)));
  const laneX = (/** @type {number} */ i) => gap / 2 + i * gap;
  const width = lanes.length * gap + SELF_LOOP_W;
  const height = TOP_PAD * 2 + shown.length * ROW_H;
  const lineY = (/** @type {number} */ row) => TOP_PAD + row * ROW_H + 24;
  const first = shown[0];

  const grid = h(doc, 'div', 'ladder-grid');
  grid.style.gridTemplateColumns = `${TIME_W}px ${width}px`;

  const corner = h(doc, 'div', 'ladder-corner', 'Time (UTC)');

  // Lane headers.
  const head = h(doc, 'div', 'ladder-head');
  const hs = s(doc, 'svg', { width, height: HEAD_H, class: 'ladder-lanes' });
  lanes.forEach((addr, i) => {
    const x = laneX(i);
    const hosts = hostsByIp.get(ipOf(addr)) ?? [];
    const g = s(doc, 'g', { class: 'ladder-lane', 'data-lane': addr, 'data-x': x });
    g.append(
      s(doc, 'title', {}, hosts.length ? `${addr}, host ${hosts.join(', ')}` : addr),
      s(doc, 'rect', { x: x - gap / 2 + 8, y: 5, width: gap - 16, height: HEAD_H - 10, rx: 5, class: 'ladder-lane-box' }),
      s(doc, 'text', { x, y: hosts.length ? 22 : 30, 'text-anchor': 'middle', class: 'ladder-lane-addr' }, clip(addr, Math.floor((gap - 24) / CHAR_W))),
    );
    if (hosts.length) {
      g.append(s(doc, 'text', { x, y: 38, 'text-anchor': 'middle', class: 'ladder-lane-host' }, clip(hosts.join(', '), Math.floor((gap - 24) / 6.5))));
    }
    hs.append(g);
  });
  head.append(hs);

  // Time column.
  const times = h(doc, 'div', 'ladder-times');
  const ts = s(doc, 'svg', { width: TIME_W, height, 'aria-hidden': 'true' });
  shown.forEach((e, row) => {
    const y = lineY(row);
    const g = s(doc, 'g', { class: 'ladder-time', 'data-row': row });
    if (row % 2 === 1) g.append(s(doc, 'rect', { x: 0, y: y - 24, width: TIME_W, height: ROW_H, class: 'ladder-band' }));
    g.append(
      s(doc, 'text', { x: 8, y: y - 3, class: 'ladder-clock' }, clock(e)),
      s(doc, 'text', { x: 8, y: y + 12, class: 'ladder-delta' }, delta(e, first)),
    );
    if (byDialog && e.dialog) {
      g.append(s(doc, 'text', { x: TIME_W - 8, y: y - 3, 'text-anchor': 'end', class: 'ladder-dialog-tag', fill: e.dialog.colour }, `#${e.dialog.index}`));
    }
    ts.append(g);
  });
  times.append(ts);

  // Arrows.
  const body = h(doc, 'div', 'ladder-body');
  const bs = s(doc, 'svg', { width, height, role: 'group', 'aria-label': `Call flow: ${shown.length} messages between ${lanes.length} addresses. Arrow keys move between messages; Enter shows one.` });
  shown.forEach((_, row) => {
    if (row % 2 === 1) bs.append(s(doc, 'rect', { x: 0, y: lineY(row) - 24, width, height: ROW_H, class: 'ladder-band' }));
  });
  lanes.forEach((addr, i) => {
    bs.append(s(doc, 'line', { x1: laneX(i), y1: 0, x2: laneX(i), y2: height, class: 'ladder-lane-line', 'data-lane': addr }));
  });
  shown.forEach((e, row) => {
    bs.append(arrow(doc, e, row, laneX(laneIndex.get(e.msg.src) ?? 0), laneX(laneIndex.get(e.msg.dst) ?? 0), lineY(row), gap, byDialog, first));
  });
  body.append(bs);

  grid.append(corner, head, times, body);
  const arrowsIn = bs.querySelectorAll('.ladder-arrow');
  if (arrowsIn[0]) arrowsIn[0].setAttribute('tabindex', '0');
  return grid;
}

/**
 * One arrow group: a hit area, the line, its head, the label above and the
 * capturing hosts below.
 * @param {Document} doc @param {Entry} e @param {number} row @param {number} x1 @param {number} x2
 * @param {number} y @param {number} gap @param {boolean} byDialog @param {Entry} first
 */
function arrow(doc, e, row, x1, x2, y, gap, byDialog, first) {
  const k = KINDS[e.kind];
  const m = e.msg;
  const stroke = byDialog && e.dialog ? e.dialog.colour : k.line;
  const label = arrowLabel(e);
  const retx = e.retransmitOf !== null;
  const hostsText = e.hosts.join(', ');
  const g = s(doc, 'g', {
    class: `ladder-arrow kind-${e.kind}${retx ? ' retransmission' : ''}`,
    role: 'button',
    tabindex: -1,
    'aria-pressed': 'false',
    'data-row': row,
    'data-kind': e.kind,
    'data-call-id': m.callId,
    'data-src': m.src,
    'data-dst': m.dst,
    'data-hosts': hostsText,
    'aria-label': [
      `${baseLabel(m)} (${k.name})`,
      `from ${m.src} to ${m.dst}`,
      `at ${clock(e)} ${delta(e, first)}`.trim(),
      retx ? 'retransmission' : '',
      e.hosts.length ? `captured by ${e.hosts.join(' and ')}` : '',
      byDialog && e.dialog ? `dialog ${e.dialog.index}` : '',
    ].filter(Boolean).join(', '),
  });
  if (byDialog && e.dialog) g.setAttribute('data-dialog', String(e.dialog.index));
  const lineAttrs = { stroke, 'stroke-width': k.width, 'stroke-dasharray': k.dash || 'none', class: 'ladder-line', fill: 'none' };
  g.append(s(doc, 'title', {}, `${label} · ${m.src} → ${m.dst}${hostsText ? ` · ${hostsText}` : ''}`));
  if (x1 === x2) {
    // A message from an address to itself: a loop out to the right and back.
    const xr = x1 + SELF_LOOP_W - 6;
    g.append(
      s(doc, 'rect', { x: x1 - 4, y: y - 20, width: gap / 2 + SELF_LOOP_W - 4, height: 40, class: 'ladder-hit', fill: 'transparent' }),
      s(doc, 'path', { d: `M${x1 + 2} ${y - 6} H${xr} V${y + 8} H${x1 + 10}`, ...lineAttrs }),
      s(doc, 'path', { d: `M${x1 + 1} ${y + 8} L${x1 + 10} ${y + 3.5} L${x1 + 10} ${y + 12.5} Z`, fill: stroke, class: 'ladder-head' }),
      s(doc, 'text', { x: xr + 6, y: y + 1, class: 'ladder-label', fill: k.text }, clip(label, Math.floor((gap / 2 - 8) / CHAR_W))),
    );
    if (hostsText) g.append(s(doc, 'text', { x: xr + 6, y: y + 14, class: 'ladder-hosts' }, clip(hostsText, Math.floor((gap / 2 - 8) / 6.5))));
    return g;
  }
  const dir = x2 > x1 ? 1 : -1;
  const tip = x2 - dir * 1;
  const mid = (x1 + x2) / 2;
  const room = Math.abs(x2 - x1) - 16;
  g.append(
    s(doc, 'rect', { x: Math.min(x1, x2), y: y - 22, width: Math.abs(x2 - x1), height: 42, class: 'ladder-hit', fill: 'transparent' }),
    s(doc, 'line', { x1: x1 + dir * 2, y1: y, x2: tip - dir * 9, y2: y, ...lineAttrs }),
    s(doc, 'path', { d: `M${tip} ${y} L${tip - dir * 11} ${y - 5} L${tip - dir * 11} ${y + 5} Z`, fill: stroke, class: 'ladder-head' }),
    s(doc, 'text', { x: mid, y: y - 7, 'text-anchor': 'middle', class: 'ladder-label', fill: k.text }, clip(label, Math.floor(room / CHAR_W))),
  );
  if (hostsText) {
    g.append(s(doc, 'text', { x: mid, y: y + 15, 'text-anchor': 'middle', class: 'ladder-hosts' }, clip(hostsText, Math.floor(room / 6.5))));
  }
  return g;
}

/**
 * Fills the details panel with every field the summary has; null shows the hint.
 * @param {Document} doc @param {HTMLElement} box @param {Entry|null} e @param {Entry|null} first @param {boolean} several
 */
function showDetails(doc, box, e, first, several) {
  box.replaceChildren();
  if (!e || !first) {
    box.append(h(doc, 'p', 'ladder-details-hint', 'Click an arrow (or Tab to the diagram, move with ↑/↓ and press Enter) to see that message.'));
    return;
  }
  const m = e.msg;
  const k = KINDS[e.kind];
  const title = h(doc, 'h3', undefined, `${KINDS[e.kind].prefix}${baseLabel(m)}`);
  title.style.color = k.text;
  box.append(title);
  const dl = h(doc, 'dl');
  const orDash = (/** @type {string|null|undefined} */ v) => (v === null || v === undefined || v === '' ? '—' : v);
  /** @type {Array<[string, string]>} */
  const rows = [
    ['Kind', k.name + (e.retransmitOf ? ` — retransmission of the message at ${clock(e.retransmitOf)}` : '')],
    [m.method ? 'Method' : 'Status', m.method ? m.method : `${m.status ?? '?'} ${m.reason ?? ''}`.trim()],
    ['From', orDash(m.from)],
    ['To', orDash(m.to)],
    ['Request-URI', orDash(m.ruri)],
    ['Call-ID', m.callId],
    ['CSeq', orDash(m.cseq)],
    ['Correlation', orDash(m.correlation)],
    ['Source → destination', `${m.src} → ${m.dst}`],
    ['Transport', String(m.transport ?? '').toUpperCase() || '—'],
    ['Came', m.hep ? 'through HEP (sent by a proxy\'s HEP agent, not sniffed)' : 'from the wire'],
    ['Captured by', e.copies.map((c) => `${c.host || '(this agent)'} at ${c.ts}`).join('; ')],
    ['Time', `${orDash(m.time)} (${delta(e, first) || '—'} from the first message)`],
    ['Size', `${m.bytes} bytes in ${m.packets} packet${m.packets === 1 ? '' : 's'}`],
  ];
  if (several && e.dialog) rows.splice(6, 0, ['Dialog', `#${e.dialog.index} ${e.dialog.summary}`]);
  for (const [name, value] of rows) {
    const dt = h(doc, 'dt', undefined, name);
    const dd = h(doc, 'dd', undefined, value);
    dd.dataset.field = name;
    dl.append(dt, dd);
  }
  box.append(dl, h(doc, 'p', 'ladder-details-hint', 'These are the fields the trace index keeps; the full SIP headers are in the trace\'s PCAP.'));
}
