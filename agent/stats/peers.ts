import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';

/**
 * Who a SIP message's remote peer is, and which way it went: the agent's
 * own addresses (or the ones the operator says are local) against the
 * operator's names for addresses and subnets. Inputs are operator
 * configuration, parsed here once; per message only lookups happen.
 */

export type { Direction } from '../../shared/stats/counts';
import type { Direction } from '../../shared/stats/counts';

export interface PeerConfig {
  /** ADDR, ADDR/PREFIX, IPv4:PORT or [IPv6]:PORT: this host's side. Default: the host's interface addresses. */
  local?: string[];
  /** NAME=ADDR or NAME=ADDR/PREFIX; the longest prefix that matches names the peer. */
  names?: string[];
}

interface Net {
  list: BlockList;
  prefix: number;
}

const CACHE_MAX = 10_000;

/** A message's remote peer and which way the message went. */
export type PeerSide = Readonly<{ peer: string; dir: Direction }>;

interface AddressInfo {
  name: string;
  /** Meaningful only when no local entry names a port. */
  local: boolean;
  /** The answers of classify() with this address as the peer, made once: none is built per message. */
  asIn: PeerSide;
  asOut: PeerSide;
}

export class PeerConfigError extends Error {}

function parseNet(s: string, what: string): Net & { port: number | null } {
  const t = s.trim();
  let m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(t) ?? /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(t);
  let addr: string;
  let prefix: number | null = null;
  let port: number | null = null;
  if (m) {
    addr = m[1];
    port = Number(m[2]);
    if (port < 1 || port > 65535) throw new PeerConfigError(`bad ${what} '${s}': port out of range`);
  } else {
    m = /^([0-9a-fA-F:.]+)(?:\/(\d{1,3}))?$/.exec(t);
    if (!m) throw new PeerConfigError(`bad ${what} '${s}': give ADDR, ADDR/PREFIX or ADDR:PORT`);
    addr = m[1];
    if (m[2] !== undefined) prefix = Number(m[2]);
  }
  const v = isIP(addr);
  if (v === 0) throw new PeerConfigError(`bad ${what} '${s}': '${addr}' is not an IP address`);
  const max = v === 4 ? 32 : 128;
  const p = prefix ?? max;
  if (p > max) throw new PeerConfigError(`bad ${what} '${s}': prefix over ${max}`);
  const list = new BlockList();
  list.addSubnet(addr, p, v === 4 ? 'ipv4' : 'ipv6');
  return { list, prefix: p, port };
}

function family(addr: string): 'ipv4' | 'ipv6' | null {
  const v = isIP(addr);
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : null;
}

export class PeerResolver {
  private readonly local: Array<Net & { port: number | null }>;
  /** No local entry names a port: the answer depends on the address alone. */
  private readonly anyPort: boolean;
  private readonly names: Array<Net & { name: string }>;
  /**
   * Per address, its name and (when no local entry names a port) whether it
   * is local: one lookup where there were two, per side of each message.
   * BlockList.check builds a SocketAddress per call, a large share of the
   * cost per message: the answers are remembered.
   */
  private readonly addrCache = new Map<string, AddressInfo>();
  /** Local answers by "addr port", when a local entry names a port. */
  private readonly portCache = new Map<string, boolean>();

  constructor(cfg: PeerConfig = {}) {
    const local = cfg.local ?? Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((i) => i.address.split('%')[0]));
    this.local = local.map((s) => parseNet(s, 'local address'));
    this.anyPort = this.local.every((n) => n.port === null);
    this.names = (cfg.names ?? []).map((s) => {
      const eq = s.indexOf('=');
      const name = eq > 0 ? s.slice(0, eq).trim() : '';
      // A name becomes a label and a table cell: keep it to plain printable characters.
      if (!/^[A-Za-z0-9_.:@+-]{1,64}$/.test(name)) throw new PeerConfigError(`bad peer name in '${s}': give NAME=ADDR[/PREFIX], NAME 1-64 letters, digits or _ . : @ + -`);
      return { name, ...parseNet(s.slice(eq + 1), 'peer address') };
    }).sort((a, b) => b.prefix - a.prefix);
  }

  private checkLocal(addr: string, port: number | null): boolean {
    const f = family(addr);
    return !!f && this.local.some((n) => (n.port === null || n.port === port) && n.list.check(addr, f));
  }

  private info(addr: string): AddressInfo {
    let i = this.addrCache.get(addr);
    if (i !== undefined) return i;
    const f = family(addr);
    const name = (f && this.names.find((x) => x.list.check(addr, f))?.name) || addr;
    i = { name, local: this.anyPort && this.checkLocal(addr, null), asIn: Object.freeze({ peer: name, dir: 'in' }), asOut: Object.freeze({ peer: name, dir: 'out' }) };
    // Bounded: past it (a scan from many addresses) answers are computed each time.
    if (this.addrCache.size < CACHE_MAX) this.addrCache.set(addr, i);
    return i;
  }

  isLocal(addr: string, port: number): boolean {
    if (this.anyPort) return this.info(addr).local;
    const key = `${addr} ${port}`;
    let yes = this.portCache.get(key);
    if (yes !== undefined) return yes;
    yes = this.checkLocal(addr, port);
    if (this.portCache.size < CACHE_MAX) this.portCache.set(key, yes);
    return yes;
  }

  /** The operator's name for an address, else the address itself. */
  nameOf(addr: string): string {
    return this.info(addr).name;
  }

  /**
   * The remote side of a message and whether it came in or went out. When
   * both ends or neither are local (a capture on a span port, or lo), the
   * sender is taken as the peer and the message as incoming. The answer is
   * shared between calls (made once per address): read it, do not keep it.
   */
  classify(src: string, sp: number, dst: string, dp: number): PeerSide {
    const s = this.info(src);
    const d = this.info(dst);
    const srcLocal = this.anyPort ? s.local : this.isLocal(src, sp);
    const dstLocal = this.anyPort ? d.local : this.isLocal(dst, dp);
    return srcLocal && !dstLocal ? d.asOut : s.asIn;
  }
}
