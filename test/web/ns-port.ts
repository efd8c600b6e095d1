import { createServer, connect, Server, Socket } from 'node:net';
import { rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { startDaemon, DaemonHandle } from '../support/proc';

/**
 * A server inside a network namespace (the fleet testbed's dispatcher, say)
 * reached from a port on 127.0.0.1 of the root namespace, so a browser
 * running here can load its page. The mirror of test/support/nsrelay.ts:
 * no interface joins the namespaces; bytes cross a Unix socket, which lives
 * in the file system and so is reachable from both sides.
 */

export interface NsPort {
  /** http://127.0.0.1:<port> in the root namespace. */
  readonly url: string;
  close(): Promise<void>;
}

/** Inside the namespace: Unix socket PATH → HOST:PORT. */
const NS_SIDE = `
const net = require('node:net');
const [path, host, port] = process.argv.slice(1);
const srv = net.createServer((c) => {
  const u = net.connect(Number(port), host);
  const kill = () => { c.destroy(); u.destroy(); };
  c.on('error', kill); u.on('error', kill);
  c.on('close', kill); u.on('close', kill);
  c.pipe(u).pipe(c);
});
srv.listen(path, () => process.stderr.write('ns side listening\\n'));
process.on('SIGTERM', () => process.exit(0));
`;

export async function openNsPort(opts: { ns: string; socketPath: string; target: { host: string; port: number } }): Promise<NsPort> {
  rmSync(opts.socketPath, { force: true });
  const inner: DaemonHandle = await startDaemon(process.execPath, ['-e', NS_SIDE, opts.socketPath, opts.target.host, String(opts.target.port)], { ns: opts.ns, stopGraceMs: 1000 });
  try {
    await inner.waitForOutput(/ns side listening/, 10_000);
  } catch (e) {
    await inner.stop();
    throw e;
  }
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(opts.socketPath);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
  } catch (e) {
    await inner.stop();
    throw e;
  }
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      await inner.stop();
      rmSync(opts.socketPath, { force: true });
    },
  };
}
