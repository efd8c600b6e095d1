/*
 * Whose request is this: the socket's peer, or, when that peer is one of the
 * reverse proxies named with --trust-proxy, the client X-Forwarded-For says
 * it forwarded for. Nobody else's X-Forwarded-For is believed: any client can
 * send one, and failed-login limits are counted per address.
 */

import type { IncomingMessage } from 'node:http';

type TrustFn = (addr: string, hop: number) => boolean;
interface ProxyAddr {
  (req: IncomingMessage, trust: TrustFn): string;
  compile(list: string[]): TrustFn;
}
// proxy-addr is what express's own 'trust proxy' uses; it ships no types.
const proxyaddr = require('proxy-addr') as ProxyAddr;

export type ClientAddress = (req: IncomingMessage) => string;

/**
 * The address function for these proxies (addresses or CIDRs, e.g.
 * 10.0.0.5, 192.0.2.0/24, ::1, or 'loopback'); throws with the bad entry
 * named when one is not an address.
 */
export function clientAddress(trustProxy: readonly string[] = []): ClientAddress {
  if (trustProxy.length === 0) return (req) => req.socket.remoteAddress ?? '';
  let trust: TrustFn;
  try {
    trust = proxyaddr.compile([...trustProxy]);
  } catch (e) {
    throw new Error(`--trust-proxy: ${(e as Error).message}: give proxy addresses or CIDRs such as 10.0.0.5 or 10.0.0.0/8`);
  }
  return (req) => proxyaddr(req, trust);
}
