/*
 * The trace form's values to a TraceRequest (shared/query/query.ts), checked
 * here first with the rules the dispatcher and the agents apply: the
 * dispatcher serves them (GET /api/query-rules, built from shared/query), so
 * the page holds no copy. And the dispatcher's refusals mapped back to the
 * field they concern.
 */

async function loadRules() {
  const res = await fetch('/api/query-rules', { headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`the dispatcher did not give its query rules (HTTP ${res.status})`);
  return res.json();
}

/** { lists, timeMaxLength, selectiveKeys, minNumberDigits, port, patterns, windows }: see QUERY_RULES. */
export const RULES = await loadRules();
export const WINDOWS = RULES.windows;
const NUMBER_RE = new RegExp(RULES.patterns.number);
const METHOD_RE = new RegExp(RULES.patterns.method);
const STATUS_RE = new RegExp(RULES.patterns.status, 'i');
const PORT_RE = new RegExp(RULES.patterns.port);

/** Form fields that take several values, comma-separated. */
const splitList = (s) =>
  String(s ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function isIp(s) {
  if (IPV4.test(s)) return true;
  if (!s.includes(':') || !/^[0-9A-Fa-f:.]+$/.test(s)) return false;
  try {
    // The URL parser is the browser's own IPv6 validator.
    new URL(`http://[${s}]/`);
    return true;
  } catch {
    return false;
  }
}

/** 'YYYY-MM-DDTHH:MM[:SS]' from a datetime-local input, read as UTC, to ISO; null when empty or not a time. */
export function utcInput(v) {
  if (!v) return null;
  const t = Date.parse(`${v}${v.length === 16 ? ':00' : ''}Z`);
  return Number.isNaN(t) ? null : new Date(t).toISOString();
}

/** The start of the requested window as epoch ms, or null (custom without a from). */
export function windowStart(win, now = Date.now()) {
  if (!win) return null;
  if (win.window === 'custom') {
    const f = utcInput(win.from);
    return f ? Date.parse(f) : null;
  }
  const w = WINDOWS.find((x) => x.value === win.window);
  return w && w.ms ? now - w.ms : null;
}

/**
 * { request } or { errors: { field: message } } (field '' is the whole form).
 * values: { number, callId, ip, port, window, from, to, filter, hostsMode, hosts, rtp, alignClocks, legs }
 */
export function buildRequest(values) {
  const errors = {};
  const req = {};
  const numbers = splitList(values.number);
  for (const n of numbers) {
    if (!NUMBER_RE.test(n)) {
      errors.number = `"${n}" is not a phone number: use digits, with '+', spaces, '-', '.', '(' or ')' if you like`;
      break;
    }
    if (n.replace(/\D/g, '').length < RULES.minNumberDigits) {
      errors.number = `"${n}" has fewer than ${RULES.minNumberDigits} digits: give at least the last ${RULES.minNumberDigits} digits of the number`;
      break;
    }
  }
  if (numbers.length) req.number = numbers;

  const callIds = splitList(values.callId);
  if (callIds.some((c) => c.length > RULES.lists.callId.maxLength)) errors.callId = `a Call-ID is at most ${RULES.lists.callId.maxLength} characters`;
  if (callIds.length) req.callId = callIds;

  const ips = splitList(values.ip);
  const badIp = ips.find((i) => !isIp(i));
  if (badIp !== undefined) errors.ip = `"${badIp}" is not an IP address: give an IPv4 (192.0.2.10) or IPv6 (2001:db8::10) address`;
  if (ips.length) req.ip = ips;

  const ports = splitList(values.port);
  const badPort = ports.find((p) => !PORT_RE.test(p) || Number(p) < RULES.port.min || Number(p) > RULES.port.max);
  if (badPort !== undefined) errors.port = `"${badPort}" is not a port: give a number from ${RULES.port.min} to ${RULES.port.max}`;
  if (ports.length) req.port = ports;

  if (!numbers.length && !callIds.length && !ips.length && !ports.length && !errors.number) {
    errors.number = 'give at least one of: number, Call-ID, IP or port (time, method and status only narrow a trace)';
  }

  const methods = [];
  const statuses = [];
  for (const f of splitList(values.filter)) {
    // One field takes both: what starts with a digit is meant as a status (methods are tokens, so "9xx" would pass as one).
    if (STATUS_RE.test(f)) statuses.push(f.toLowerCase());
    else if (!/^[0-9]/.test(f) && METHOD_RE.test(f)) methods.push(f.toUpperCase());
    else {
      errors.filter = `"${f}" is neither a SIP method (INVITE, BYE) nor a status (486) or class (4xx)`;
      break;
    }
  }
  if (methods.length) req.method = methods;
  if (statuses.length) req.status = statuses;

  if (values.window === 'custom') {
    const from = utcInput(values.from);
    const to = utcInput(values.to);
    if (!from) errors.from = 'give the start of the window (UTC)';
    else req.since = from;
    if (values.to && !to) errors.to = 'not a time: use the date and time picker (UTC)';
    else if (to) req.until = to;
    if (from && to && Date.parse(from) > Date.parse(to)) errors.to = 'the end of the window is before its start';
  } else if (WINDOWS.some((w) => w.value === values.window)) {
    req.since = values.window;
  } else {
    errors.window = 'pick a time window';
  }

  if (values.rtp) req.rtp = true;
  if (values.alignClocks) req.alignClocks = true;
  if (values.legs) req.legs = true;

  if (values.hostsMode === 'pick') {
    if (!values.hosts || values.hosts.length === 0) errors.hosts = 'pick at least one host, or choose all connected agents';
    else req.hosts = [...values.hosts];
  }
  return Object.keys(errors).length ? { errors } : { request: req };
}

/**
 * A follow's request from the same form: the filters without a window,
 * and how long to follow. { request } or { errors }.
 */
export function buildFollowRequest(values, durationMs) {
  // Legs (on by default) and clock alignment are a stored trace's: a follow goes without them.
  const built = buildRequest({ ...values, window: WINDOWS.find((w) => w.value !== 'custom').value, rtp: false, legs: false, alignClocks: false });
  if (built.errors) return built;
  const { since: _since, until: _until, ...req } = built.request;
  if (values.rtp) return { errors: { rtp: 'RTP is not followed live yet: follow the call, then trace it with RTP over its window' } };
  return { request: { ...req, durationMs } };
}

/** Request keys (shared/query traceRequest) to the form field that sets them. */
const KEY_FIELD = { number: 'number', callId: 'callId', ip: 'ip', port: 'port', method: 'filter', status: 'filter', since: 'from', until: 'to', hosts: 'hosts', rtp: 'rtp', durationMs: 'duration', alignClocks: 'alignClocks', legs: 'legs' };
/** Refusals of the request as a whole (shared/errors codes) that one field can still fix: shown there. */
const CODE_FIELD = { TF_QUERY_NOT_SELECTIVE: 'number' };

/**
 * Which form field a dispatcher's refusal is about, from the `{code, field}`
 * every ack and REST error carries (shared/errors/catalogue.ts); '' when it
 * is about the request as a whole.
 */
export function fieldOf(refusal) {
  const key = refusal?.field;
  if (typeof key === 'string' && Object.hasOwn(KEY_FIELD, key)) return KEY_FIELD[key];
  const code = refusal?.code;
  return typeof code === 'string' && Object.hasOwn(CODE_FIELD, code) ? CODE_FIELD[code] : '';
}
