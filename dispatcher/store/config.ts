/* Config documents shared by every dispatcher of a store (a signing key, for one). */

import type { StoreClient } from './client';
import { isConflict, StoreError } from './errors';
import { ConfigDoc, JsonValue, configDocId } from './layout';

/**
 * The config document `name`, created with `initial` when missing. Several
 * dispatchers starting at once all get the one stored first, so a value
 * drawn at random (a signing key) ends up the same everywhere.
 */
export async function ensureConfig(c: StoreClient, name: string, initial: { [key: string]: JsonValue }): Promise<ConfigDoc> {
  const id = configDocId(name);
  for (let attempt = 0; attempt < c.maxConflictRetries; attempt++) {
    const current = await c.getRaw<ConfigDoc>(id);
    if (current) return current;
    try {
      return await c.create<ConfigDoc>({ _id: id, type: 'config', name, data: initial }, `creating ${id}`);
    } catch (err) {
      // Someone else created it (or created and deleted it): read theirs.
      if (!isConflict(err)) throw err;
      c.conflictRetries.inc();
    }
  }
  throw new StoreError(`creating ${id}: still conflicting after ${c.maxConflictRetries} attempts`, 409, 'conflict');
}
