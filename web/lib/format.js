/* Numbers, times and filters as the page writes them. Times are UTC throughout, like the capture files. */

export function fmtBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '–';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function fmtCount(n) {
  return typeof n === 'number' && Number.isFinite(n) ? n.toLocaleString('en-US') : '–';
}

/** '2024-06-12 10:42:33' (UTC) from an ISO string; the text itself when it is not a date. */
export function fmtDateTime(iso) {
  if (!iso) return '–';
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return String(iso);
  return t.toISOString().slice(0, 19).replace('T', ' ');
}

/** 'HH:MM:SS.mmm' of a message's ISO time with nanoseconds (its text, so nothing is rounded). */
export function fmtClock(iso) {
  const m = /T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?/.exec(String(iso ?? ''));
  if (!m) return String(iso ?? '');
  return `${m[1]}.${(m[2] ?? '').padEnd(3, '0').slice(0, 3)}`;
}

/** '12 s ago', '3 min ago', '2 h ago' from an ISO time. */
export function fmtAgo(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '–';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** A trace request in one line: 'number 5550100123 · last 15m · RTP · hosts a, b'. */
export function fmtFilter(req) {
  if (!req || typeof req !== 'object') return '–';
  const parts = [];
  const list = (label, v) => {
    if (Array.isArray(v) && v.length) parts.push(`${label} ${v.join(', ')}`);
  };
  list('number', req.number);
  list('Call-ID', req.callId);
  list('IP', req.ip);
  list('port', req.port);
  list('correlation', req.correlation);
  list('method', req.method);
  list('status', req.status);
  if (req.all) parts.push('all');
  if (req.since && req.until) parts.push(`${fmtWhen(req.since)} to ${fmtWhen(req.until)}`);
  else if (req.since) parts.push(/^\d+(\.\d+)?(ms|s|m|h|d)$/.test(req.since) ? `last ${req.since}` : `since ${fmtWhen(req.since)}`);
  else if (req.until) parts.push(`until ${fmtWhen(req.until)}`);
  if (req.rtp) parts.push('RTP');
  if (req.alignClocks) parts.push('clocks aligned');
  if (Array.isArray(req.hosts) && req.hosts.length) parts.push(`hosts ${req.hosts.join(', ')}`);
  return parts.join(' · ') || '–';
}

function fmtWhen(s) {
  return /^\d{4}-\d{2}-\d{2}T/.test(s) ? fmtDateTime(s) : s;
}

/** A message's method, or its status and reason: 'INVITE', '180 Ringing'. */
export function fmtMethodStatus(m) {
  if (m.method) return m.method;
  if (m.status !== null && m.status !== undefined) return m.reason ? `${m.status} ${m.reason}` : String(m.status);
  return '?';
}
