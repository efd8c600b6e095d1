/*
 * Building DOM without innerHTML: every string from the server goes in as
 * text (textContent or attribute values), so a Call-ID or a From header can
 * never become markup.
 */

/**
 * h('tr', { class: 'x', dataset: { host: 'a' }, onclick: fn }, 'text', child)
 * Attributes: `class`, `dataset` (object), `on<event>` (function), booleans
 * (true sets the attribute, false/null/undefined leaves it out), anything
 * else as a string attribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') {
      for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
    } else if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

/** Appends children: nodes as they are, strings and numbers as text, arrays flattened, null/false skipped. */
export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** An <svg>-free status badge: the state's word is always written out, colour only helps. */
export function badge(state, extraClass = '') {
  return h('span', { class: `badge state-${String(state).replace(/[^a-z-]/gi, '')} ${extraClass}`.trim() }, state);
}
