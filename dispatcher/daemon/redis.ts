import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';
import type { Server } from 'socket.io';
import { redactUrl } from '../store/store';
import type { Logger } from '../../shared/log/log';
import { LocalSpentTokens, SPENT_GRACE_MS, SpentTokens } from '../auth/spent';

export interface RedisLink {
  /** Redacted, for logs. */
  url: string;
  /** Download tokens spent on any dispatcher of this Redis. */
  spentTokens: SpentTokens;
  close(): Promise<void>;
}

type RedisClient = ReturnType<typeof createClient>;

/** How long a download waits for Redis before settling for this dispatcher's own record. */
const SPENT_TIMEOUT_MS = 2_000;

/**
 * The spent download tokens of every dispatcher sharing this Redis: a key
 * per token, set only if absent (SET NX), gone when the token expires. When
 * Redis does not answer in time, a token is checked against this
 * dispatcher's own record of what it served (kept for every spend), so a
 * download never hangs on Redis; during such an outage a link could be
 * followed once per dispatcher, within its few minutes.
 */
export function redisSpentTokens(client: RedisClient, log: Logger): SpentTokens {
  const local = new LocalSpentTokens();
  const key = (id: string) => `tracefleet:download-spent:${id}`;
  const timed = <T>(p: Promise<T>): Promise<T> =>
    Promise.race([
      p,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${SPENT_TIMEOUT_MS} ms`)), SPENT_TIMEOUT_MS).unref()),
    ]);
  return {
    async spend(id, expiresAt) {
      let first: boolean;
      try {
        first = (await timed(client.set(key(id), '1', { NX: true, PX: Math.max(1, expiresAt + SPENT_GRACE_MS - Date.now()) }))) === 'OK';
      } catch (e) {
        log.warn({ reason: (e as Error).message }, 'Redis did not record a spent download token; this dispatcher alone checks it');
        return local.spendNow(id, expiresAt);
      }
      // Mirrored here for the outage case above; a token Redis refused is spent here too.
      const here = local.spendNow(id, expiresAt);
      return first && here;
    },
    async isSpent(id) {
      if (await local.isSpent(id)) return true;
      try {
        return (await timed(client.exists(key(id)))) > 0;
      } catch {
        return false;
      }
    },
  };
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
    spentTokens: redisSpentTokens(pub, log),
    async close() {
      await Promise.allSettled([pub.quit(), sub.quit()]);
    },
  };
}
