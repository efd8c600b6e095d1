/*
 * Test helpers for anything that touches storage. A test gets a real server
 * over HTTP: Apache CouchDB when COUCHDB_URL is set, the embedded store
 * otherwise, and a database of its own, so tests can share one server and
 * leave nothing behind.
 */

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { AddressInfo, createServer, Server, Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nano from 'nano';
import { startEmbeddedCouch } from '../../dispatcher/store/embedded';
import { TraceStore } from '../../dispatcher/store/store';
import { silentLogger } from '../../shared/log/log';

export interface TestCouch {
  url: string;
  /** True when COUCHDB_URL named the server. */
  external: boolean;
  stop(): Promise<void>;
}

export async function startTestCouch(): Promise<TestCouch> {
  const external = process.env.COUCHDB_URL;
  if (external) return { url: external, external: true, stop: async () => {} };
  const dataDir = mkdtempSync(join(tmpdir(), 'tracefleet-store-'));
  const couch = await startEmbeddedCouch({ dataDir, logger: silentLogger });
  return {
    url: couch.url,
    external: false,
    async stop() {
      await couch.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export function uniqueDbName(): string {
  return `tracefleet_test_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

/** A store on a fresh database, and a function that drops that database. */
export async function openTestStore(url: string, db = uniqueDbName()): Promise<{ store: TraceStore; drop(): Promise<void> }> {
  const store = await TraceStore.open({ url, db });
  return {
    store,
    async drop() {
      await nano(url).db.destroy(db).catch(() => {});
    },
  };
}

/**
 * A server that pipes every connection to host:port; `sockets` holds both
 * ends of each, so that closing the relay can cut them all at once.
 */
export function relayServer(port: number, host: string): { server: Server; sockets: Set<Socket> } {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(port, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  return { server, sockets };
}

/**
 * A loopback TCP relay in front of a server: stopping it makes the server
 * unreachable for whoever used the relay's URL, even when the server is a
 * CouchDB the tests must not stop.
 */
export async function startRelay(targetUrl: string, listenPort = 0): Promise<{ url: string; stop(): Promise<void> }> {
  const target = new URL(targetUrl);
  const port = Number(target.port || (target.protocol === 'https:' ? 443 : 80));
  const { server, sockets } = relayServer(port, target.hostname.replace(/^\[|\]$/g, ''));
  await new Promise<void>((resolve) => server.listen(listenPort, '127.0.0.1', resolve));
  const relayed = new URL(targetUrl);
  relayed.hostname = '127.0.0.1';
  relayed.port = String((server.address() as AddressInfo).port);
  return {
    url: relayed.toString().replace(/\/$/, ''),
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

/** A loopback port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
