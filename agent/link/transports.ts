import { isIP } from 'node:net';
import { NodeWebSocket, NodeXHR, WebTransport } from 'engine.io-client';

/**
 * A WebSocket client frame must carry a masking key so that bytes an
 * attacker chose (a browser script's, in RFC 6455; here, what the agent
 * captured from anyone on the internet) never appear as they are to an
 * intermediary that might read them as HTTP (cache poisoning). No
 * intermediary sees them inside TLS (wss:) or on loopback: there the key is
 * all zeros, so ws neither copies each frame into a fresh buffer nor XORs
 * it, and the receiving ws skips its unmask (masking a 200 MiB result cost
 * the agent about a tenth of its CPU: the copy, the XOR and the collections
 * of those buffers; bench:stream). Over plain ws: to another host, frames
 * keep ws's random key.
 */
function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

/** No intermediary can read the frames: TLS, or a loopback peer. */
export function unmaskedIsSafe(uri: string): boolean {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return false;
  }
  if (url.protocol === 'wss:') return true;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/** engine.io-client's Node WebSocket transport, its frames unmasked where that is safe (see zeroMask). */
class AgentWebSocket extends NodeWebSocket {
  override createSocket(uri: string, protocols: string | string[] | undefined, opts: Record<string, unknown>): unknown {
    return super.createSocket(uri, protocols, unmaskedIsSafe(uri) ? { ...opts, generateMask: zeroMask } : opts);
  }
}

/** The agent's transports, in Socket.IO's default order (long-polling first, then the upgrade). */
export const AGENT_TRANSPORTS = [NodeXHR, AgentWebSocket, WebTransport];
