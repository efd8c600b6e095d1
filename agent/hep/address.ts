import { parseListen } from '../metrics/metrics';
import type { HepListen } from './worker';

/** HEP's customary port (Kamailio's, HOMER's, heplify-server's default). */
export const HEP_DEFAULT_PORT = 9060;

/**
 * An address as --hep-listen and --hep-out take it: `udp:HOST:PORT`,
 * `tcp:HOST:PORT`, `HOST:PORT` (UDP), or without the port (9060); an IPv6
 * host in brackets. Null when it is none of those.
 */
export function parseHepAddress(s: string, defaultHost = '0.0.0.0'): HepListen | null {
  const m = /^(udp|tcp):(.*)$/i.exec(s.trim());
  const transport = (m ? m[1].toLowerCase() : 'udp') as 'udp' | 'tcp';
  const rest = m ? m[2] : s.trim();
  if (rest === '') return { transport, host: defaultHost, port: HEP_DEFAULT_PORT };
  const full = parseListen(rest);
  if (full) return { transport, ...full };
  const bare = /^\[([0-9a-fA-F:.]+)\]$/.exec(rest)?.[1] ?? (/^[^:[\]]+$/.test(rest) ? rest : null);
  return bare ? { transport, host: bare, port: HEP_DEFAULT_PORT } : null;
}
