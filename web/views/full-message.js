/*
 * One SIP message whole, as the dispatcher decoded it from the host's stored
 * PCAP (GET /api/traces/:id/messages/:n): the start line, each header with
 * its name and value apart (long values wrap), the body, a copy button and
 * a raw view of the exact bytes. Every string is the sender's: it goes in
 * with text nodes only (h() and textContent), never as markup.
 */

import { h, replace } from '../lib/dom.js';

/** The bytes of a base64 string. */
function bytesOf(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/**
 * The exact bytes as text: printable ASCII as it is, CR and LF as \r and \n
 * (LF also ends the line), a backslash as \\, every other byte as \xHH, so
 * no control, bidi or zero-width character is drawn and none is hidden.
 */
export function escapedBytes(bytes) {
  let out = '';
  for (const b of bytes) {
    if (b === 0x0a) out += '\\n\n';
    else if (b === 0x0d) out += '\\r';
    else if (b === 0x5c) out += '\\\\';
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/**
 * Code points that would make text read as something it is not (bidi
 * overrides, zero-width characters) or act on a terminal it is pasted into
 * (C0/C1 controls), shown as visible escapes in the header view.
 */
// eslint-disable-next-line no-control-regex
const HIDDEN = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]/g;
function visible(s) {
  return String(s).replace(HIDDEN, (c) => {
    const n = c.charCodeAt(0);
    return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
}

/** The message as plain text for the clipboard: start line, headers, blank line, body, CRLF line ends. */
function asText(full) {
  return [full.startLine, ...full.headers.map((x) => `${x.name}: ${x.value}`), '', full.body].join('\r\n');
}

/** The "Whole message" panel for a message whose `full` was read; `full` null says why it is missing. */
export function fullMessageView(full, note) {
  if (!full) return h('p', { class: 'hint', id: 'full-missing' }, note ?? 'This message is not in the stored PCAP: only its summary is known.');
  const formatted = h(
    'div',
    { class: 'sip-formatted', id: 'full-formatted' },
    h('p', { class: 'sip-start' }, visible(full.startLine)),
    h(
      'dl',
      { class: 'sip-headers' },
      full.headers.map((x) => [h('dt', {}, visible(x.name)), h('dd', {}, visible(x.value))]),
    ),
    full.body ? h('pre', { class: 'sip-body', id: 'full-body' }, visible(full.body.replace(/\r\n/g, '\n'))) : null,
  );
  const raw = h('pre', { class: 'sip-raw', id: 'full-raw', hidden: true }, escapedBytes(bytesOf(full.raw)));
  const status = h('span', { class: 'hint', role: 'status' });
  const rawToggle = h('button', { type: 'button', id: 'full-raw-toggle', 'aria-pressed': 'false' }, 'Raw bytes');
  rawToggle.addEventListener('click', () => {
    const on = raw.hidden;
    raw.hidden = !on;
    formatted.hidden = on;
    rawToggle.setAttribute('aria-pressed', String(on));
  });
  const copy = h('button', { type: 'button', id: 'full-copy' }, 'Copy');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(asText(full));
      status.textContent = 'copied';
    } catch (e) {
      status.textContent = `could not copy: ${e.message}`;
    }
  });
  const sizes = `${full.length} bytes${full.cut ? ' (long: the first part is shown)' : ''}${full.truncated ? ' (cut by the capture’s snap length)' : ''}`;
  return h('div', { class: 'full-message', id: 'full-message' }, h('div', { class: 'table-tools' }, copy, rawToggle, h('span', { class: 'hint' }, sizes), status), formatted, raw);
}

/** Loads message n of the trace and shows it in `box`; the last call wins when several overlap. */
export function fullMessageLoader(api, traceId) {
  let seq = 0;
  return async (box, n) => {
    const mine = ++seq;
    replace(box, h('p', { class: 'hint' }, 'reading the whole message…'));
    try {
      const r = await api.message(traceId, n);
      if (mine !== seq) return;
      replace(box, fullMessageView(r.message.full, r.note));
    } catch (e) {
      if (mine !== seq) return;
      replace(box, h('p', { class: 'form-error' }, `the whole message could not be read: ${e.message}`));
    }
  };
}
