import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';
import type { Server } from 'socket.io';
import { redactUrl } from '../store/store';
import type { Logger } from '../../shared/log/log';

export interface RedisLink {
  /** Redacted, for logs. */
  url: string;
  close(): Promise<void>;
}

/**
 * Puts the dispatcher's Socket.IO server on Socket.IO's Redis adapter, so
 * that dispatchers sharing REDIS_URL share rooms, fetchSockets() and
 * serverSideEmit(): a client on one can trace agents connected to another.
 */
export async function connectRedis(io: Server, url: string, log: Logger): Promise<RedisLink> {
  const shown = redactUrl(url);
  const pub = createClient({ url, socket: { reconnectStrategy: (n) => Math.min(5_000, 100 * 2 ** n) } });
  const sub = pub.duplicate();
  let lastError = '';
  for (const c of [pub, sub]) {
    c.on('error', (e: Error) => {
      // The client reconnects by itself; say so once per distinct failure, not every retry.
      if (e.message !== lastError) log.warn({ redis: shown, reason: e.message }, 'Redis unreachable; reconnecting');
      lastError = e.message;
    });
    c.on('ready', () => {
      if (lastError) log.info({ redis: shown }, 'Redis is back');
      lastError = '';
    });
  }
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`cannot reach Redis at ${shown} within 10 s: start redis-server, or unset REDIS_URL to run a single dispatcher`)), 10_000).unref(),
  );
  try {
    await Promise.race([Promise.all([pub.connect(), sub.connect()]), timeout]);
  } catch (e) {
    await Promise.allSettled([pub.disconnect(), sub.disconnect()]);
    throw e;
  }
  io.adapter(createAdapter(pub, sub, { requestsTimeout: 5_000 }));
  return {
    url: shown,
    async close() {
      await Promise.allSettled([pub.quit(), sub.quit()]);
    },
  };
}
