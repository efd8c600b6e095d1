/*
 * Small SVG charts of our own (no library): bars for volumes, a line for
 * ratios. Built with createElementNS and attributes only, no markup; the
 * numbers come from the dispatcher's counts, the labels are set as text.
 */

const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/**
 * A chart of one series per window: `bars` (volumes, scaled to their max)
 * and `line` (percentages 0-100, null where there is no denominator).
 * label: what a screen reader is told; titles: one tooltip per window.
 */
export function windowChart({ bars = [], line = [], titles = [], label, width = 160, height = 32 }) {
  const n = Math.max(bars.length, line.length, 1);
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, class: 'chart', role: 'img', 'aria-label': label });
  const title = svg('title');
  title.textContent = label;
  root.appendChild(title);
  const step = width / n;
  const max = Math.max(1, ...bars);
  bars.forEach((v, i) => {
    const h = Math.max(v > 0 ? 1 : 0, Math.round((v / max) * (height - 2)));
    const r = svg('rect', { x: (i * step + step * 0.15).toFixed(1), y: height - h, width: Math.max(1, step * 0.7).toFixed(1), height: h, class: 'bar' });
    if (titles[i]) {
      const t = svg('title');
      t.textContent = titles[i];
      r.appendChild(t);
    }
    root.appendChild(r);
  });
  const points = [];
  line.forEach((v, i) => {
    if (v === null || v === undefined) return;
    points.push(`${(i * step + step / 2).toFixed(1)},${(height - 1 - (Math.min(100, Math.max(0, v)) / 100) * (height - 2)).toFixed(1)}`);
  });
  if (points.length === 1) {
    const [x, y] = points[0].split(',');
    root.appendChild(svg('circle', { cx: x, cy: y, r: 2, class: 'line-dot' }));
  } else if (points.length > 1) root.appendChild(svg('polyline', { points: points.join(' '), class: 'line' }));
  return root;
}
