import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEmbeddedCouch, EmbeddedCouch } from '../store/embedded';
import { redactUrl, TraceStore } from '../store/store';
import { type Logger, componentLogger } from '../../shared/log/log';

export interface StoreAccessOptions {
  /** Apache CouchDB URL (--couchdb or COUCHDB_URL); absent: the embedded store in dataDir. */
  couchdbUrl?: string;
  dataDir: string;
  db?: string;
  logger?: Logger;
}

export interface StoreAccess {
  store: TraceStore;
  /** The server's URL as given (may hold credentials: never log it, use store.url). */
  url: string;
  /** Set when this process started the embedded server. */
  embedded: EmbeddedCouch | null;
  close(): Promise<void>;
}

/**
 * Where a running dispatcher writes the loopback URL of its embedded store,
 * credentials included, for `tracefleet user` and friends run as the same
 * user: 0600, like the credentials file it repeats.
 */
export function embeddedUrlFile(dataDir: string): string {
  return join(dataDir, 'store.url');
}

/**
 * Opens the dispatcher's store. With a CouchDB URL that server is used. Without
 * one, the embedded store in dataDir: reached through the URL a running
 * dispatcher left in dataDir/store.url (its LevelDB files are locked while it
 * runs), otherwise started here. `publish` makes this process the one that
 * writes store.url (the dispatcher daemon).
 */
export async function openStore(opts: StoreAccessOptions & { publish?: boolean }): Promise<StoreAccess> {
  const log = componentLogger('dispatcher.store', opts.logger);
  if (opts.couchdbUrl) {
    const store = await TraceStore.open({ url: opts.couchdbUrl, db: opts.db });
    log.info({ couchdb: redactUrl(opts.couchdbUrl), db: store.dbName }, 'store: CouchDB');
    return { store, url: opts.couchdbUrl, embedded: null, close: async () => {} };
  }
  const file = embeddedUrlFile(opts.dataDir);
  if (!opts.publish && existsSync(file)) {
    const url = readFileSync(file, 'utf8').trim();
    try {
      const store = await TraceStore.open({ url, db: opts.db });
      return { store, url, embedded: null, close: async () => {} };
    } catch {
      // A dispatcher that died without removing the file: its store is ours to start.
    }
  }
  // The spool and the store hold captured calls: nobody else on the machine may list or read them.
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  if (opts.publish) chmodSync(opts.dataDir, 0o700);
  const embedded = await startEmbeddedCouch({ dataDir: join(opts.dataDir, 'store'), logger: log });
  try {
    const store = await TraceStore.open({ url: embedded.url, db: opts.db });
    if (opts.publish) {
      writeFileSync(file, `${embedded.url}\n`, { mode: 0o600 });
      chmodSync(file, 0o600);
    }
    return {
      store,
      url: embedded.url,
      embedded,
      async close() {
        if (opts.publish) rmSync(file, { force: true });
        await embedded.stop();
      },
    };
  } catch (e) {
    await embedded.stop();
    throw e;
  }
}
