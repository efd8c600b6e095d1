/* Alert rules and alerts (dispatcher/alerts): one document each, listed by id prefix. */

import type { StoreClient } from './client';
import { isConflict, StoreError } from './errors';
import { AlertDoc, AlertRuleDoc, alertDocId, alertRuleDocId } from './layout';
import type { AlertEvent, AlertRule } from '../../shared/alerts/rule';

async function listPrefix<T>(c: StoreClient, prefix: string, what: string, opts: { descending?: boolean; limit?: number } = {}): Promise<T[]> {
  // Ids sort by what follows the prefix; ';' is the character after ':'.
  const lo = `${prefix}:`;
  const hi = `${prefix};`;
  const res = await c.call(what, () =>
    c.db.list({ ...(opts.descending ? { startkey: hi, endkey: lo, descending: true } : { startkey: lo, endkey: hi }), inclusive_end: false, include_docs: true, ...(opts.limit ? { limit: opts.limit } : {}) }),
  );
  return res.rows.filter((r) => r.doc).map((r) => r.doc as T);
}

/** Creates or replaces the rule of that name. */
export async function putAlertRule(c: StoreClient, rule: AlertRule, user: string): Promise<AlertRuleDoc> {
  const id = alertRuleDocId(rule.name);
  const fields = { rule, user, updatedAt: new Date().toISOString() };
  const created = await c.serial(id, async () => {
    try {
      return await c.create<AlertRuleDoc>({ _id: id, type: 'alertrule', ...fields }, `creating alert rule ${rule.name}`);
    } catch (err) {
      if (isConflict(err)) return null;
      throw err;
    }
  });
  return created ?? c.update<AlertRuleDoc>(id, (d) => ({ ...d, ...fields }));
}

export function listAlertRules(c: StoreClient): Promise<AlertRuleDoc[]> {
  return listPrefix<AlertRuleDoc>(c, 'alertrule', 'listing alert rules');
}

export async function deleteAlertRule(c: StoreClient, name: string): Promise<boolean> {
  return (await c.deleteDocs([alertRuleDocId(name)])) === 1;
}

/** Stores an alert when raised, and again (the same document) when cleared. */
export async function putAlert(c: StoreClient, e: AlertEvent): Promise<void> {
  const id = alertDocId(e.startsAt, e.key);
  try {
    await c.create<AlertDoc>({ _id: id, type: 'alert', alert: e }, `storing alert ${e.key}`);
  } catch (err) {
    if (!isConflict(err)) throw err;
    await c.update<AlertDoc>(id, (d) => ({ ...d, alert: e }));
  }
}

/** The latest alerts, newest first. */
export async function listAlerts(c: StoreClient, limit: number): Promise<AlertEvent[]> {
  if (!(limit >= 1 && limit <= 10_000)) throw new StoreError(`listing alerts: limit ${limit} is not 1 to 10000`);
  return (await listPrefix<AlertDoc>(c, 'alert', 'listing alerts', { descending: true, limit })).filter((d) => d.type === 'alert').map((d) => d.alert);
}
