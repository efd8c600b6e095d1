import type { AlertEvent } from '../../shared/alerts/rule';
import { type Logger, componentLogger } from '../../shared/log/log';

/**
 * Alerts to a webhook in the JSON shape Prometheus Alertmanager sends its
 * webhook receivers (version "4"), so whatever already takes Alertmanager's
 * notifications (or Alertmanager itself, through a relay) takes these.
 * Bounded and never in anyone's way: events wait in a queue of MAX_QUEUE
 * (the oldest dropped and counted when it is full), one POST at a time, each
 * retried with backoff up to MAX_ATTEMPTS times within its own timeout.
 */

export interface AlertmanagerAlert {
  status: 'firing' | 'resolved';
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  generatorURL: string;
  fingerprint: string;
}

export interface AlertmanagerMessage {
  version: '4';
  groupKey: string;
  truncatedAlerts: number;
  status: 'firing' | 'resolved';
  receiver: string;
  groupLabels: Record<string, string>;
  commonLabels: Record<string, string>;
  commonAnnotations: Record<string, string>;
  externalURL: string;
  alerts: AlertmanagerAlert[];
}

/** Alertmanager's "not ended yet". */
const ZERO_TIME = '0001-01-01T00:00:00Z';
const MAX_QUEUE = 1000;
const MAX_ATTEMPTS = 5;
const TIMEOUT_MS = 5000;

/** Label values are printable text (names are checked where they come in; this is the last guard). */
const label = (s: string) => s.replace(/[\u0000-\u001f\u007f]/g, '?').slice(0, 200);

export function fingerprint(key: string): string {
  // FNV-1a 64-bit, hex: Alertmanager's fingerprints are 16 hex digits too.
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(key)) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h.toString(16).padStart(16, '0');
}

/** The Alertmanager webhook message of one alert event; baseUrl: the dispatcher's, for links. */
export function alertmanagerMessage(e: AlertEvent, baseUrl: string): AlertmanagerMessage {
  const labels: Record<string, string> = { alertname: label(e.rule), severity: e.severity, scope: e.scope, figure: e.figure };
  if (e.host) labels.host = label(e.host);
  if (e.peer) labels.peer = label(e.peer);
  const annotations: Record<string, string> = { summary: label(e.summary), value: e.value === null ? '' : String(e.value), threshold: String(e.threshold), invites: String(e.invites), window: `${e.since}/${e.until}` };
  if (e.trace) annotations.trace_request = JSON.stringify(e.trace);
  const groupLabels = { alertname: labels.alertname };
  return {
    version: '4',
    groupKey: `{}:{alertname=${JSON.stringify(labels.alertname)}}`,
    truncatedAlerts: 0,
    status: e.status,
    receiver: 'tracefleet',
    groupLabels,
    commonLabels: labels,
    commonAnnotations: annotations,
    externalURL: baseUrl,
    alerts: [{ status: e.status, labels, annotations, startsAt: e.startsAt, endsAt: e.endsAt ?? ZERO_TIME, generatorURL: `${baseUrl}/#/health`, fingerprint: fingerprint(e.key) }],
  };
}

export class AlertWebhook {
  private readonly queue: AlertmanagerMessage[] = [];
  private sending = false;
  private closed = false;
  readonly counts = { sent: 0, failed: 0, dropped: 0 };
  private readonly log: Logger;

  constructor(private readonly url: string, private readonly baseUrl: () => string, logger?: Logger, private readonly retryMs = 1000) {
    this.log = componentLogger('dispatcher.alerts.webhook', logger);
  }

  send(e: AlertEvent): void {
    if (this.closed) return;
    if (this.queue.length >= MAX_QUEUE) {
      this.queue.shift();
      this.counts.dropped++;
    }
    this.queue.push(alertmanagerMessage(e, this.baseUrl()));
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      while (!this.closed && this.queue.length > 0) {
        const m = this.queue[0];
        let ok = false;
        for (let attempt = 1; attempt <= MAX_ATTEMPTS && !this.closed && !ok; attempt++) {
          try {
            const res = await fetch(this.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(m), signal: AbortSignal.timeout(TIMEOUT_MS) });
            await res.arrayBuffer().catch(() => undefined);
            ok = res.ok;
            if (!ok) this.log.warn({ status: res.status, attempt }, 'alert webhook refused the alert');
          } catch (err) {
            this.log.warn({ reason: (err as Error).message, attempt }, 'alert webhook unreachable');
          }
          if (!ok && attempt < MAX_ATTEMPTS) await new Promise((r) => setTimeout(r, this.retryMs * 2 ** (attempt - 1)).unref());
        }
        this.queue.shift();
        if (ok) this.counts.sent++;
        else {
          this.counts.failed++;
          this.log.error({ alert: m.groupLabels.alertname, status: m.status }, 'alert not delivered to the webhook; given up');
        }
      }
    } finally {
      this.sending = false;
    }
  }

  close(): void {
    this.closed = true;
    this.queue.length = 0;
  }
}
