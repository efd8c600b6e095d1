import { isIP } from 'node:net';
import { describeRule, type AlertEvent, type AlertRule } from '../../shared/alerts/rule';
import type { FleetStats } from '../stats/fleet-stats';
import type { StatsCell } from '../../shared/stats/answer';
import { sumCounts } from '../../shared/stats/figures';
import { cell } from '../../shared/stats/answer';
import type { TraceStore } from '../store/store';
import type { TraceRequest } from '../../shared/query/query';
import { type Logger, componentLogger } from '../../shared/log/log';

/**
 * Alert rules evaluated on the fleet's statistics as windows arrive (at
 * most once per EVAL_MS: heartbeats come in bursts). Each rule, in each of
 * its scopes, fires when its figure is past the threshold with at least
 * minInvites INVITE dialogs behind it, and clears when an evaluation with
 * enough of them finds it back, or when a whole window has passed since it
 * was last past the threshold without enough calls to say. Raised and
 * cleared alerts are stored, handed to `publish` (the pages) and to the
 * webhook; none of it waits on the others.
 */
export interface AlertsOptions {
  store: Pick<TraceStore, 'listAlertRules' | 'putAlertRule' | 'deleteAlertRule' | 'putAlert' | 'listAlerts'>;
  stats: FleetStats;
  publish?: (e: AlertEvent) => void;
  webhook?: { send(e: AlertEvent): void };
  logger?: Logger;
  now?: () => number;
  evalMs?: number;
}

const EVAL_MS = 1000;
const MAX_STORING = 1000;

interface Active {
  event: AlertEvent;
  /** Start of the newest window the figure was past the threshold in (Unix seconds). */
  lastBad: number;
}

/** Codes of the failed INVITEs a figure counts: what a trace of the alert asks for. */
function failureCodes(rule: AlertRule, finals: Record<string, number>): string[] {
  const codes = Object.keys(finals).filter((c) => {
    const n = Number(c);
    if (rule.figure === 'isa') return [408, 500, 503, 504].includes(n);
    if (rule.figure === 'errorRatio') return n >= 400 && ![486, 600, 408, 480, 487].includes(n);
    return n >= 300;
  });
  return codes.sort((a, b) => finals[b] - finals[a]).slice(0, 32);
}

export class Alerts {
  private rules = new Map<string, AlertRule>();
  private readonly active = new Map<string, Active>();
  private readonly log: Logger;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  /** Newest window start and length seen since the last evaluation. */
  private pending: { start: number; seconds: number } | null = null;
  private closed = false;

  constructor(private readonly opts: AlertsOptions) {
    this.log = componentLogger('dispatcher.alerts', opts.logger);
    this.now = opts.now ?? (() => Date.now());
    opts.stats.onWindows((_host, windows) => {
      for (const w of windows) if (!this.pending || w.start > this.pending.start) this.pending = { start: w.start, seconds: w.seconds };
      if (!this.timer && !this.closed) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.evaluateNow();
        }, opts.evalMs ?? EVAL_MS);
        this.timer.unref();
      }
    });
  }

  /** Reads the rules, and the alerts still firing when the dispatcher stopped (so they can clear). */
  async load(): Promise<void> {
    this.rules = new Map((await this.opts.store.listAlertRules()).map((d) => [d.rule.name, d.rule]));
    for (const e of await this.opts.store.listAlerts(500)) {
      if (e.status === 'firing' && !this.active.has(e.key) && this.rules.has(e.rule)) this.active.set(e.key, { event: e, lastBad: Date.parse(e.since) / 1000 });
    }
  }

  ruleList(): AlertRule[] {
    return [...this.rules.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async putRule(rule: AlertRule, user: string): Promise<void> {
    await this.opts.store.putAlertRule(rule, user);
    this.rules.set(rule.name, rule);
    // A changed rule starts afresh: its alerts clear and fire again if they still hold.
    this.resolveRule(rule.name, 'the rule was changed');
  }

  async removeRule(name: string): Promise<boolean> {
    const gone = await this.opts.store.deleteAlertRule(name);
    this.rules.delete(name);
    this.resolveRule(name, 'the rule was removed');
    return gone;
  }

  /** Alerts firing now. */
  firing(): AlertEvent[] {
    return [...this.active.values()].map((a) => a.event).sort((a, b) => a.startsAt.localeCompare(b.startsAt));
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private resolveRule(name: string, why: string): void {
    for (const [key, a] of this.active) if (a.event.rule === name) this.finish(key, a, null, a.event.invites, why);
  }

  /** Evaluates every rule at the newest window seen (tests and the timer). */
  evaluateNow(): void {
    const at = this.pending;
    this.pending = null;
    if (!at || this.closed) return;
    for (const rule of this.rules.values()) {
      try {
        this.evaluate(rule, at);
      } catch (e) {
        this.log.error({ err: e, rule: rule.name }, 'alert rule evaluation failed');
      }
    }
  }

  private evaluate(rule: AlertRule, at: { start: number; seconds: number }): void {
    const from = at.start - (rule.windows - 1) * at.seconds;
    const to = at.start + at.seconds;
    const ans = this.opts.stats.query({ from, to, ...(rule.scope === 'host' && rule.match ? { host: [rule.match] } : {}), ...(rule.scope === 'peer' && rule.match ? { peer: [rule.match] } : {}) });
    const scopes: Array<{ key: string; host: string | null; peer: string | null; hosts: string[]; c: StatsCell }> = [];
    if (rule.scope === 'fleet') {
      if (ans.windows.length > 0) scopes.push({ key: rule.name, host: null, peer: null, hosts: [...new Set(ans.windows.flatMap((w) => w.hosts))].sort(), c: cell(sumCounts(ans.windows.map((w) => w.total.counts))) });
    } else if (rule.scope === 'host') {
      for (const x of ans.hosts) scopes.push({ key: `${rule.name}:${x.host}`, host: x.host, peer: null, hosts: [x.host], c: x });
    } else {
      // Both directions of a peer together: its failures, whoever sent the INVITEs.
      const byPeer = new Map<string, { hosts: Set<string>; counts: StatsCell['counts'][] }>();
      for (const p of ans.peers) {
        let e = byPeer.get(p.peer);
        if (!e) byPeer.set(p.peer, (e = { hosts: new Set(), counts: [] }));
        for (const h of p.hosts) e.hosts.add(h);
        e.counts.push(p.counts);
      }
      for (const [peer, e] of byPeer) scopes.push({ key: `${rule.name}:${peer}`, host: null, peer, hosts: [...e.hosts].sort(), c: cell(sumCounts(e.counts)) });
    }
    const seen = new Set<string>();
    const since = new Date(from * 1000).toISOString();
    const until = new Date(to * 1000).toISOString();
    for (const s of scopes) {
      seen.add(s.key);
      const value = s.c.figures[rule.figure];
      const enough = s.c.figures.invites >= rule.minInvites && value !== null;
      const bad = enough && (rule.op === 'below' ? value! < rule.threshold : value! > rule.threshold);
      const a = this.active.get(s.key);
      if (bad) {
        const trace = this.traceOf(rule, s, since, until);
        if (a) {
          a.lastBad = at.start;
          a.event = { ...a.event, value, invites: s.c.figures.invites, since: a.event.since < since ? a.event.since : since, until, trace: trace ?? a.event.trace };
        } else {
          const event: AlertEvent = {
            key: s.key, rule: rule.name, status: 'firing', severity: rule.severity, figure: rule.figure, value, threshold: rule.threshold, op: rule.op,
            invites: s.c.figures.invites, scope: rule.scope, host: s.host, peer: s.peer, since, until, startsAt: new Date(this.now()).toISOString(), endsAt: null,
            summary: `${rule.name}: ${rule.figure} ${value!.toFixed(1)} ${rule.op === 'below' ? '<' : '>'} ${rule.threshold} over ${s.c.figures.invites} INVITEs${s.peer ? ` with peer ${s.peer}` : ''}${s.host ? ` on host ${s.host}` : ''} (${describeRule(rule)})`,
            trace,
          };
          this.active.set(s.key, { event, lastBad: at.start });
          this.emit(event);
        }
      } else if (a && (enough || at.start >= a.lastBad + (rule.windows + 1) * at.seconds)) {
        this.finish(s.key, a, value, s.c.figures.invites, enough ? 'back within the threshold' : 'a whole window without enough calls');
      }
    }
    // Scopes with no calls at all in the range: cleared once a whole window has passed.
    for (const [key, a] of this.active) {
      if (a.event.rule === rule.name && !seen.has(key) && at.start >= a.lastBad + (rule.windows + 1) * at.seconds) this.finish(key, a, null, 0, 'no calls any more');
    }
  }

  private traceOf(rule: AlertRule, s: { host: string | null; peer: string | null; hosts: string[]; c: StatsCell }, since: string, until: string): TraceRequest | null {
    const status = failureCodes(rule, s.c.counts.finals);
    if (status.length === 0 || s.hosts.length === 0) return null;
    const base = { method: ['INVITE'], status, since, until, hosts: s.hosts };
    if (s.peer !== null) return isIP(s.peer) ? { ip: [s.peer], ...base } : null;
    return { ...base, all: true };
  }

  private finish(key: string, a: Active, value: number | null, invites: number, why: string): void {
    this.active.delete(key);
    const event: AlertEvent = { ...a.event, status: 'resolved', value, invites, endsAt: new Date(this.now()).toISOString(), summary: `${a.event.summary}; cleared: ${why}` };
    this.emit(event);
  }

  private emit(e: AlertEvent): void {
    this.log.info({ rule: e.rule, key: e.key, status: e.status, value: e.value }, e.status === 'firing' ? 'alert raised' : 'alert cleared');
    try {
      this.opts.publish?.(e);
    } catch (err) {
      this.log.error({ err }, 'publishing an alert failed');
    }
    this.opts.webhook?.send(e);
    // In order, so a clearing never lands before its raising; bounded, so a store away costs no memory.
    if (this.storing >= MAX_STORING) {
      this.log.error({ key: e.key, status: e.status }, 'alert not stored: too many writes waiting for the store');
      return;
    }
    this.storing++;
    this.stored = this.stored
      .then(() => this.opts.store.putAlert(e))
      .catch((err) => this.log.error({ err, key: e.key }, 'storing an alert failed'))
      .finally(() => this.storing--);
  }

  private stored: Promise<void> = Promise.resolve();
  private storing = 0;

  /** Resolves once the alerts emitted so far are stored (or failed to be). */
  flushed(): Promise<void> {
    return this.stored;
  }
}
