import { relayServer } from './couch';
import { rmSync } from 'node:fs';
import { startDaemon, DaemonHandle } from './proc';

/**
 * A TCP port inside a network namespace that reaches a server of the root
 * namespace (an Apache CouchDB named by COUCHDB_URL, say), without any
 * interface joining the two. The bytes cross through a Unix socket, which
 * lives in the file system and so is reachable from both sides: a small node
 * process inside the namespace listens on 127.0.0.1:port and connects to
 * the socket; this process accepts on the socket and connects to the target.
 */

export interface NsRelay {
  /** Port on 127.0.0.1 inside the namespace. */
  readonly port: number;
  close(): Promise<void>;
}

/** Inside the namespace: 127.0.0.1:PORT → Unix socket PATH. */
const NS_SIDE = `
const net = require('node:net');
const [port, path] = process.argv.slice(1);
const srv = net.createServer((c) => {
  const u = net.connect(path);
  const kill = () => { c.destroy(); u.destroy(); };
  c.on('error', kill); u.on('error', kill);
  c.pipe(u).pipe(c);
});
srv.listen(Number(port), '127.0.0.1', () => process.stderr.write('relay listening\\n'));
process.on('SIGTERM', () => process.exit(0));
`;

export async function startNsRelay(opts: { ns: string; socketPath: string; target: { host: string; port: number }; port: number }): Promise<NsRelay> {
  rmSync(opts.socketPath, { force: true });
  const { server, sockets } = relayServer(opts.target.port, opts.target.host);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.socketPath, () => resolve());
  });
  let inner: DaemonHandle | null = null;
  const closeServer = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
  try {
    inner = await startDaemon(process.execPath, ['-e', NS_SIDE, String(opts.port), opts.socketPath], { ns: opts.ns, stopGraceMs: 1000 });
    await inner.waitForOutput(/relay listening/, 10_000);
  } catch (e) {
    await inner?.stop();
    await closeServer();
    throw e;
  }
  return {
    port: opts.port,
    async close() {
      await inner?.stop();
      await closeServer();
      rmSync(opts.socketPath, { force: true });
    },
  };
}
