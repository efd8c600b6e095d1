/*
 * Alert banners, on every page while logged in: the alerts firing when the
 * page starts (GET /api/alerts), then each raised or cleared one as the
 * dispatcher pushes it (`alert` on /client). A banner's button starts the
 * trace of the calls behind the alert; a cleared alert's banner goes.
 * Summaries hold peer names from agents' configuration and are set as text.
 */

import { h, replace } from '../lib/dom.js';
import { canTrace } from '../lib/api.js';

/** Banners kept at most (the oldest go first). */
const MAX_BANNERS = 5;

export function alertBanners(box, ctx) {
  const shown = new Map();

  function draw() {
    replace(
      box,
      [...shown.values()].map((e) =>
        h(
          'div',
          { class: `alert-banner severity-${e.severity === 'critical' ? 'critical' : 'warning'}`, role: 'alert', dataset: { key: e.key } },
          h('strong', {}, e.severity === 'critical' ? 'Critical: ' : 'Alert: '),
          h('span', { class: 'alert-summary' }, e.summary),
          ' ',
          e.trace && canTrace(ctx.session)
            ? h(
                'button',
                {
                  type: 'button',
                  class: 'alert-trace',
                  onclick: async (ev) => {
                    ev.currentTarget.disabled = true;
                    const ack = await ctx.client.ask('trace:start', e.trace);
                    if (ack && ack.ok) ctx.navigate(`#/trace/${ack.trace.id}`);
                    else ev.currentTarget.disabled = false;
                  },
                },
                'Trace these calls',
              )
            : h('a', { href: '#/health', class: 'alert-trace' }, 'See Health'),
          ' ',
          h('button', { type: 'button', class: 'secondary alert-dismiss', 'aria-label': 'Dismiss this alert', onclick: () => { shown.delete(e.key); draw(); } }, '×'),
        ),
      ),
    );
  }

  return {
    take(e) {
      if (!e || typeof e.key !== 'string') return;
      if (e.status === 'firing') {
        shown.delete(e.key);
        shown.set(e.key, e);
        while (shown.size > MAX_BANNERS) shown.delete(shown.keys().next().value);
      } else shown.delete(e.key);
      draw();
    },
    async load() {
      try {
        const a = await ctx.api.alerts();
        for (const e of a.firing) this.take(e);
      } catch {
        /* the live ones still come */
      }
    },
    clear() {
      shown.clear();
      draw();
    },
  };
}
